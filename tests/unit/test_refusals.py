"""The corpus of malformed inputs (issue 14): every one is refused with a MutomoError whose
message names the file, the field or the row, and on the command line with exit code 2, one
line on stderr and no traceback.

Each case builds its bad input in a temporary folder. Command-line cases run ``mutomo`` with
the simulation replaced by a tripwire, so that input which slipped through fails at once
instead of starting a run.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import mutomo.app.run  # noqa: F401
import mutomo.optimise.evaluate  # noqa: F401  (loaded for the tripwire)
import mutomo.studies.landscape  # noqa: F401
from mutomo import Material, MuonBatch, MutomoError
from mutomo.app.cli import main
from mutomo.design.base import DesignBounds
from mutomo.design.files import read_design_file
from mutomo.design.panels import DetectorDesign
from mutomo.detector import DetectorPanel
from mutomo.errors import CheckpointError, HitsFileError
from mutomo.io import read_csv, read_hdf5, read_root, write_hdf5, write_root
from mutomo.io.hits import HitsData
from mutomo.optimise.checkpoint import read_checkpoint, save_checkpoint
from mutomo.volume import PassiveVolume

# ----------------------------------------------------------------------------- command line


class TripwireError(Exception):
    """Raised if a refused input reaches the simulation."""


@pytest.fixture
def tripwire(monkeypatch):
    def refuse(*args, **kwargs):
        raise TripwireError("bad input reached the simulation")

    for module in (
        "mutomo.app.observations",
        "mutomo.app.bound",
        "mutomo.optimise.evaluate",
        "mutomo.studies.landscape",
    ):
        monkeypatch.setattr(sys.modules[module], "observe_design", refuse)
    monkeypatch.setattr(sys.modules["mutomo.app.run"], "optimise", refuse)


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err
    return code, err


def assert_refused(code: int, err: str, message: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    assert err.startswith("error: ") or err.startswith("usage: "), err
    assert _search(message, err), f"{message!r} not in {err!r}"


def _search(pattern: str, text: str) -> bool:
    import re

    return re.search(pattern, text, re.S) is not None


BASE = 'extends = "waste_block"\n'

# Configuration files: (file name, text, what the message must say).
CONFIG_CASES = [
    ("empty.toml", "", r"configuration is empty"),
    ("unclosed.toml", "[training\n", r"not valid TOML"),
    ("bad.yaml", "a: [1,\n", r"not valid YAML"),
    ("list.yaml", "- 1\n- 2\n", r"top level must be a table"),
    ("config.json", "{}", r"unknown configuration format '.json'"),
    ("section.toml", BASE + "[trainin]\nepochs = 3\n", r"trainin: Extra inputs are not permitted"),
    ("extra.toml", BASE + "[training]\nepoch = 3\n", r"training\.epoch: Extra inputs"),
    ("epochs.toml", BASE + "[training]\nepochs = 0\n", r"training\.epochs: .*greater than or equal to 1"),
    ("type.toml", BASE + '[training]\nmuons_per_volume = "many"\n', r"training\.muons_per_volume"),
    ("nan.toml", BASE + "[task]\nkind='presence'\ninference='asr'\nexposure_s = nan\n", r"task\.exposure_s"),
    ("inf.toml", BASE + "[task]\nkind='presence'\ninference='asr'\nexposure_s = inf\n", r"task\.exposure_s"),
    ("kind.toml", BASE + "[task]\nkind = 'volcano'\ninference='asr'\nexposure_s=60\n", r"task\.kind"),
    ("inference.toml", BASE + "[task]\nkind='presence'\ninference='crystal_ball'\nexposure_s=60\n", r"inference"),
    ("size.toml", BASE + "[scene]\nsize = [1.0, -1.0, 1.0]\n", r"scene: .*size and voxel must be > 0 m; axis y"),
    ("voxel.toml", BASE + "[scene]\nvoxel = 0\n", r"scene: .*size and voxel must be > 0 m; axis x has 1.0 and 0.0"),
    ("voxel_nan.toml", BASE + "[scene]\nvoxel = nan\n", r"scene: .*axis x has 1.0 and nan"),
    ("material.toml", BASE + "[scene]\nbackground = { material = 'unobtainium' }\n", r"unknown material.*unobtainium"),
    (
        "outside.toml",
        BASE + "[[scene.objects]]\nmaterial='lead'\nsize=[0.1,0.1,0.1]\nlow=[0.95,0.0,0.0]\n",
        r"outside the scene",
    ),
    (
        "probability.toml",
        BASE + "[[scene.objects]]\nmaterial='lead'\nsize=[0.1,0.1,0.1]\nlow=[0.1,0.1,0.1]\nprobability=1.5\n",
        r"scene\.objects\.\d\.probability",
    ),
    (
        "clutter.toml",
        BASE + "[scene]\nbackground = { clutter = { iron = 0.5, air = 0.4 } }\n",
        r"fractions must sum to 1",
    ),
    (
        "element.toml",
        BASE + "[[materials]]\nname='x'\ndensity=1000\ncomposition={ Xx = 1.0 }\n",
        r"materials\[0\] \(x\): .*unknown element symbol 'Xx'",
    ),
    (
        "density.toml",
        BASE + "[[materials]]\nname='x'\ndensity=-5\ncomposition={ Fe = 1.0 }\n",
        r"materials\.0\.density",
    ),
    (
        "heavy.toml",
        BASE + "[[materials]]\nname='x'\ndensity=1000\ncomposition={ Am = 1.0 }\n",
        r"element 'Am' has Z = 95; only Z = 1..94",
    ),
    ("extends.toml", 'extends = "ladle_furnaces"\n', r"extends: 'ladle_furnaces' is neither a built-in benchmark"),
    ("region.toml", BASE + "[region]\nx = [1.5, -0.5]\n", r"region: DesignBounds\.x must have max > min"),
    ("cost.toml", BASE + "[cost]\nper_m2 = -1\n", r"cost\.per_m2"),
    ("start.toml", BASE + "[design]\nstart = 'nobody'\n", r"design\.start: 'nobody' is neither a design"),
    ("compare.toml", BASE + "[evaluation]\ncompare = ['nobody']\n", r"evaluation\.compare"),
    ("min_hits.toml", BASE + "[evaluation]\nmin_hits = [1]\n", r"evaluation\.min_hits"),
    (
        "span.toml",
        BASE + "[designs.human_close]\nxy=[0.5,0.5]\nz_above=[1.25,1.15]\nz_below=[-0.05,-0.15]\nspan=-1\n",
        r"span",
    ),
    ("odd.toml", BASE + "[training]\nvolumes_per_epoch = 7\n", r"training\.volumes_per_epoch"),
    ("theta.toml", BASE + "[muons]\ntheta_max_deg = 95\n", r"muons\.theta_max_deg"),
    (
        "no_module.toml",
        BASE + "[designs.mods]\nmodules = [[0.5, 0.5, 1.5], [0.5, 0.5, -0.5]]\n",
        r"designs \['mods'\] place modules: describe the module in a \[hodoscope\] table",
    ),
    (
        "module_overlap.toml",
        'extends = "lorry_uranium"\n[designs.poor]\n'
        "modules = [[1.0, 1.2, 3.65], [1.5, 1.2, 3.65], [1.0, 1.2, -0.25]]\n",
        r"design\.start 'poor' \(designs\.poor\): .*modules 0 and 1 overlap",
    ),
    (
        "module_in_lorry.toml",
        'extends = "lorry_uranium"\n[designs.poor]\nmodules = [[1.0, 1.2, 3.0], [1.0, 1.2, -0.25]]\n',
        r"module 0 \(above\): centre z = 3 m puts its box outside",
    ),
    (
        "module_panels.toml",
        'extends = "lorry_uranium"\n[hodoscope]\nsize = [1.0, 1.0, 0.3]\npanel_heights = [0.0, 0.5]\n',
        r"hodoscope: HodoscopeModule\.panel_heights\[1\] = 0\.5 m lies outside the module's box",
    ),
    (
        "module_none.toml",
        'extends = "lorry_uranium"\n[hodoscope]\nsize = [1.0, 1.0, 0.3]\npanel_heights = []\n',
        r"hodoscope\.panel_heights",
    ),
    (
        "module_count.toml",
        'extends = "lorry_uranium"\n[designs.poor]\nmodules = []\n',
        r"designs\.poor\.modules",
    ),
    (
        "portal_module_too_big.toml",
        'extends = "border_portal"\n[hodoscope]\nsize = [8.0, 1.5, 0.3]\npanel_heights = [0.0, 0.15, 0.3]\n',
        r"module 0 \(above\) is 8 m along x, larger than the allowed region's 7 m",
    ),
    (
        "portal_too_many_modules.toml",
        'extends = "border_portal"\n[designs.poor]\nmodules = [[0.3, 1.25, 4.05], [1.8, 1.25, 4.05], '
        "[3.3, 1.25, 4.05], [4.8, 1.25, 4.05], [5.8, 1.25, 4.05], [1.0, 1.25, -0.2]]\n",
        r"design\.start 'poor' \(designs\.poor\): .*modules 3 and 4 overlap",
    ),
    ("portal_scan_time.toml", 'extends = "border_portal"\n[task]\nexposure_s = 0\n', r"task\.exposure_s"),
    (
        "portal_target_outside.toml",
        'extends = "border_portal"\n[[scene.objects]]\nname = "cube"\nmaterial = "uranium"\nsize = [0.1, 0.1, 0.1]\n'
        "low = { min = [0.1, 0.1, 0.1], max = [6.1, 2.3, 2.4] }\n",
        r"objects\[0\] \(cube\) can reach outside the scene on axis x",
    ),
    (
        "below_fill_without_fill.toml",
        BASE + "[[scene.objects]]\nmaterial='lead'\nsize=[0.1,0.1,0.1]\nlow=[0.1,0.1,0.1]\nbelow_fill=true\n",
        r"objects\[0\] \(lead\)\.below_fill needs a fill height",
    ),
    ("momentum.toml", BASE + "[muons]\nmomentum_range = [10.0, 1.0]\n", r"muons\.momentum_range"),
    (
        "marginal.toml",
        BASE + '[task]\nkind = "presence"\ninference = "asr"\nexposure_s = 600\nmomentum = "marginal"\n',
        r"task: .*momentum 'marginal' needs inference 'mlem'.*got inference 'asr'",
    ),
    (
        "posterior.toml",
        BASE + '[task]\nkind = "presence"\ninference = "mlem"\nexposure_s = 600\nmomentum = "posterior"\n',
        r"task: .*momentum 'posterior'.*got inference 'mlem'.*momentum 'marginal'",
    ),
    ("hits.toml", BASE + "[training]\nhits = 'telepathic'\n", r"training\.hits"),
    (
        "inside.toml",
        BASE + "[designs.poor]\nxy=[0.5,0.5]\nz_above=[1.12,0.5,1.04]\nz_below=[-0.04,-0.08,-0.12]\nspan=1.6\n",
        r"design\.start 'poor' \(designs\.poor\): panel 1 \(above\): z = 0\.5 m is outside",
    ),
]


@pytest.mark.parametrize(("name", "text", "message"), CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_bad_configuration_files_are_refused(tmp_path, capsys, tripwire, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    code, err = run_cli(["optimise", str(path), "--output", str(tmp_path / "run"), "--no-report"], capsys)
    assert_refused(code, err, message)
    assert str(path) in err


GOOD_DESIGN = {
    "n_above": 2,
    "xy": [[0.5, 0.5]] * 4,
    "z": [2.0, 1.9, 0.3, 0.2],
    "span": 1.0,
    "resolution": 1e-4,
    "efficiency": 0.9,
}


def _design(**changes) -> str:
    d = {**GOOD_DESIGN, **changes}
    return json.dumps({k: v for k, v in d.items() if v is not None})


# Design files given to `mutomo evaluate`: (case, file text, what the message must say).
DESIGN_CASES = [
    ("truncated", _design()[:40], r"not valid JSON"),
    ("empty", "", r"not valid JSON"),
    ("list", "[1, 2, 3]", r"must hold a JSON object"),
    ("missing", _design(z=None), r"lacks \['z'\]"),
    ("extra", _design(colour="blue"), r"unknown key\(s\) \['colour'\]"),
    ("nan", _design().replace("2.0,", "NaN,", 1), r"NaN is not a number"),
    ("infinity", _design(span=1.0).replace('"span": 1.0', '"span": Infinity'), r"Infinity is not a number"),
    ("string", _design(resolution="fine"), r"resolution must be a number or a list of numbers"),
    ("ragged", _design(xy=[[0.5, 0.5], [0.5], [0.5, 0.5], [0.5, 0.5]]), r"xy|shape|sequence"),
    ("n_above_float", _design(n_above=2.5), r"n_above must be an integer"),
    ("n_above_zero", _design(n_above=0), r"n_above must be in \[1, 3\]"),
    ("inside", _design(z=[2.0, 1.0, 0.3, 0.2]), r"panel 1 \(above\): z = 1 m"),
    ("span", _design(span=-1.0), r"span"),
    ("efficiency", _design(efficiency=1.5), r"efficienc"),
    ("length", _design(z=[2.0, 1.9, 0.3]), r"z needs 4 values"),
    ("bool", _design(n_above=True), r"n_above must be an integer"),
]


@pytest.mark.parametrize(("case", "text", "message"), DESIGN_CASES, ids=[c[0] for c in DESIGN_CASES])
def test_bad_design_files_are_refused(tmp_path, capsys, tripwire, case, text, message):
    path = tmp_path / f"{case}.json"
    path.write_text(text)
    out = tmp_path / "metrics.json"
    code, err = run_cli(["evaluate", str(path), "--config", "ladle_furnace", "--json", str(out)], capsys)
    assert_refused(code, err, message)
    assert str(path) in err
    assert not out.exists()


def test_binary_and_absent_design_files_are_refused(tmp_path, capsys, tripwire):
    path = tmp_path / "garbage.json"
    path.write_bytes(bytes(range(256)))
    assert_refused(*run_cli(["evaluate", str(path)], capsys), r"garbage\.json: (cannot be read|not valid JSON)")
    with pytest.raises(MutomoError, match="design file must be a path"):
        read_design_file(3)  # type: ignore[arg-type]
    absent = tmp_path / "absent.json"
    assert_refused(*run_cli(["evaluate", str(absent)], capsys), r"'.*absent\.json' is neither a design")


# Command-line arguments and run directories: (case, argv builder, what the message must say).
def _file(tmp_path: Path) -> Path:
    path = tmp_path / "a_file"
    path.write_text("x")
    return path


def _finished_run(tmp_path: Path, damage: str) -> Path:
    """A run directory with the files `mutomo report` reads, one of them damaged."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"extends": "ladle_furnace"}))
    (run / "evaluations.json").write_text(json.dumps({"designs": {"optimised": {}}}))
    if damage == "evaluations":
        (run / "evaluations.json").write_text('{"designs": ')
    elif damage == "config":
        (run / "config.json").unlink()
    elif damage == "observations":
        (run / "observations").mkdir()
        (run / "observations" / "optimised.npz").write_bytes(b"PK\x03\x04 truncated")
    return run


CLI_CASES: list[tuple[str, Callable[[Path], list[str]], str]] = [
    ("no_command", lambda t: [], r"required: COMMAND"),
    ("unknown_command", lambda t: ["optimize"], r"invalid choice: 'optimize'"),
    ("muons_zero", lambda t: ["demo", "--muons", "0", "--output", str(t)], r"--muons must be >= 1"),
    ("muons_text", lambda t: ["demo", "--muons", "many"], r"--muons: invalid int value"),
    ("unknown_option", lambda t: ["optimise", "ladle_furnace", "--fast"], r"unrecognized arguments: --fast"),
    ("missing_config", lambda t: ["optimise", str(t / "nowhere.toml")], r"no such configuration file"),
    ("unknown_builtin", lambda t: ["optimise", "ladle_furnac"], r"ladle_furnac: no such configuration file"),
    ("report_missing", lambda t: ["report", str(t / "nowhere")], r"not a finished run directory"),
    ("report_file", lambda t: ["report", str(_file(t))], r"not a finished run directory"),
    (
        "report_evaluations",
        lambda t: ["report", str(_finished_run(t, "evaluations"))],
        r"evaluations\.json: unreadable",
    ),
    ("report_config", lambda t: ["report", str(_finished_run(t, "config"))], r"config\.json: missing"),
    (
        "report_observations",
        lambda t: ["report", str(_finished_run(t, "observations"))],
        r"optimised\.npz: unreadable",
    ),
    (
        "output_under_file",
        lambda t: ["optimise", "ladle_furnace", "--output", str(_file(t) / "run")],
        r"run directory .*a_file/run: cannot create the folder",
    ),
    ("json_is_folder", lambda t: ["evaluate", "human_acceptance", "--json", str(t)], r"--json .*: is a folder"),
    (
        "demo_output_under_file",
        lambda t: ["demo", "--output", str(_file(t) / "figs"), "--muons", "10"],
        r"--output .*a_file/figs: cannot create",
    ),
    ("evaluate_unknown_design", lambda t: ["evaluate", "nobody"], r"design: 'nobody' is neither a design"),
]


@pytest.mark.parametrize(("case", "argv", "message"), CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_bad_command_lines_are_refused(tmp_path, capsys, tripwire, case, argv, message):
    assert_refused(*run_cli(argv(tmp_path), capsys), message)


def test_a_failure_that_is_not_the_input_says_so_and_debug_shows_the_traceback(tmp_path, capsys, tripwire):
    code, err = run_cli(["evaluate", "human_acceptance", "--json", str(tmp_path / "m.json")], capsys)
    assert code == 1
    assert "this is a bug, not your input" in err and "Traceback" not in err
    code, err = run_cli(["--debug", "evaluate", "human_acceptance", "--json", str(tmp_path / "m.json")], capsys)
    assert code == 1 and "Traceback" in err and "TripwireError" in err


def test_version_and_help(capsys):
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("mutomo ") and "torch" in out
    for command in ("optimise", "evaluate", "report", "demo", "tasks", "landscape", "check"):
        assert main([command, "--help"]) == 0
        text = capsys.readouterr().out
        assert "exit codes: 0 success; 2 input refused" in text
        assert text.count("help") >= 1


# ------------------------------------------------------------------------------------ hits files

CSV_HEADER = "E,X0,X1,X2,X3,Y0,Y1,Y2,Y3,Z0,Z1,Z2,Z3\n"
CSV_ROW = "1000,1,2,3,4,5,6,7,8,1500,1400,200,100\n"

HITS_CASES: list[tuple[str, Callable[[Path], Path], Callable[[Path], object], str]] = []


def _csv(text: str) -> Callable[[Path], Path]:
    def make(tmp_path: Path) -> Path:
        path = tmp_path / "hits.csv"
        path.write_text(text)
        return path

    return make


def read_csv_file(path: Path) -> object:
    return read_csv(path, resolution=1e-4, z_split=0.8)


def read_root_file(path: Path) -> object:
    return read_root(path, resolution=1e-4, z_split=0.8)


def _simulated_hits(n: int = 6) -> HitsData:
    from mutomo.detector.panel import Hits

    g = torch.Generator().manual_seed(0)

    def side(z: list[float]) -> Hits:
        k = len(z)
        return Hits(
            xy=torch.rand(k, n, 2, generator=g),
            z=torch.tensor(z),
            resolution=torch.full((k,), 1e-4),
            weight=torch.ones(k, n),
        )

    return HitsData(above=side([1.5, 1.4]), below=side([0.2, 0.1]), momentum=torch.full((n,), 3.0))


def _hdf5(field: str, value: float) -> Callable[[Path], Path]:
    def make(tmp_path: Path) -> Path:
        path = write_hdf5(tmp_path / "hits.h5", _simulated_hits())
        with h5py.File(path, "r+") as f:
            data = f[field][()]
            data.reshape(-1)[min(3, data.size - 1)] = value
            f[field][...] = data
        return path

    return make


def _truncated(writer: Callable[[Path], Path], keep: float) -> Callable[[Path], Path]:
    def make(tmp_path: Path) -> Path:
        path = writer(tmp_path)
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * keep)])
        return path

    return make


def _root_file(tmp_path: Path) -> Path:
    return write_root(tmp_path / "hits.root", _simulated_hits())


HITS_CASES = [
    ("csv_inf", _csv(CSV_HEADER + CSV_ROW + CSV_ROW.replace(",5,", ",inf,")), read_csv_file, r"row 3, column Y0"),
    ("csv_far", _csv(CSV_HEADER + CSV_ROW.replace(",2,", ",2e9,")), read_csv_file, r"row 2, column X1: 2e\+06 m"),
    ("csv_energy", _csv(CSV_HEADER + CSV_ROW.replace("1000,", "1e15,", 1)), read_csv_file, r"column E.*at most"),
    ("csv_absent", lambda t: t / "absent.csv", read_csv_file, r"absent\.csv: cannot be read"),
    ("csv_binary", lambda t: (t / "b.csv", (t / "b.csv").write_bytes(bytes(range(256))))[0], read_csv_file, r"b\.csv"),
    (
        "root_truncated",
        _truncated(_root_file, 0.5),
        read_root_file,
        r"hits\.root: (not a readable ROOT file|cannot be read; the file is truncated)",
    ),
    ("root_text", _csv("not root at all\n"), read_root_file, r"not a readable ROOT file"),
    ("hdf5_nan", _hdf5("above/xy", math.nan), read_hdf5, r"'above/xy' at index 0, 1, 1 is NaN"),
    ("hdf5_far", _hdf5("below/xy", 5e4), read_hdf5, r"'below/xy' at index 0, 1, 1: 50000 m"),
    ("hdf5_weight", _hdf5("above/weight", 2.0), read_hdf5, r"'above/weight'.* = 2; must be finite and in \[0, 1\]"),
    ("hdf5_resolution", _hdf5("below/resolution", 0.0), read_hdf5, r"'below/resolution' at index \(1,\) = 0"),
    ("hdf5_momentum", _hdf5("momentum", -1.0), read_hdf5, r"'momentum'\[3\] = -1 GeV/c"),
    (
        "hdf5_truncated",
        _truncated(lambda t: write_hdf5(t / "hits.h5", _simulated_hits()), 0.3),
        read_hdf5,
        r"not a readable HDF5 file",
    ),
]


@pytest.mark.parametrize(("case", "make", "reader", "message"), HITS_CASES, ids=[c[0] for c in HITS_CASES])
def test_bad_hits_files_are_refused(tmp_path, case, make, reader, message):
    path = make(tmp_path)
    with pytest.raises(HitsFileError, match=message):
        reader(path)


# ------------------------------------------------------------------------------------ checkpoints


def _checkpoint(tmp_path: Path) -> Path:
    return save_checkpoint(tmp_path, {"epoch": 3, "design": {}, "optimisers": {}, "history": "[]"})


def _rewrite(path: Path, data: bytes, checksum: bool) -> None:
    import hashlib

    path.write_bytes(data)
    if checksum:
        path.with_name(path.name + ".sha256").write_text(hashlib.sha256(data).hexdigest())


CHECKPOINT_CASES: list[tuple[str, Callable[[Path], None], str]] = [
    ("truncated", lambda p: p.write_bytes(p.read_bytes()[:100]), r"checksum mismatch"),
    ("garbage", lambda p: _rewrite(p, b"not a checkpoint", True), r"not a readable checkpoint"),
    ("no_checksum", lambda p: p.with_name(p.name + ".sha256").unlink(), r"checksum file .* is missing"),
    ("fields", lambda p: _rewrite(p, _torch_bytes({"epoch": 1}), True), r"lacks \['design', 'optimisers'"),
]


def _torch_bytes(obj: object) -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(("case", "damage", "message"), CHECKPOINT_CASES, ids=[c[0] for c in CHECKPOINT_CASES])
def test_damaged_checkpoints_are_detected(tmp_path, case, damage, message):
    path = _checkpoint(tmp_path)
    assert read_checkpoint(path)["epoch"] == 3
    damage(path)
    with pytest.raises(CheckpointError, match=message):
        read_checkpoint(path)


# ------------------------------------------------------------------------------ public constructors

BOUNDS = DesignBounds(x=(0, 1), y=(0, 1), z_above=(1.1, 2.5), z_below=(-1, 0.4))
API_CASES: list[tuple[str, Callable[[], object], str]] = [
    ("panel_nan_centre", lambda: DetectorPanel((math.nan, 0.5, 1.0), (1.0, 1.0)), r"DetectorPanel\.centre"),
    ("panel_span", lambda: DetectorPanel((0.5, 0.5, 1.0), (0.0, 1.0)), r"DetectorPanel\.span"),
    ("panel_resolution_nan", lambda: DetectorPanel((0.5, 0.5, 1.0), (1.0, 1.0), math.nan), r"\.resolution"),
    ("panel_efficiency", lambda: DetectorPanel((0.5, 0.5, 1.0), (1.0, 1.0), 1e-4, 1.5), r"\.efficiency"),
    ("volume_size", lambda: PassiveVolume.uniform("iron", (1.0, -1.0, 1.0), 0.1), r"size"),
    ("volume_voxel_nan", lambda: PassiveVolume.uniform("iron", (1.0, 1.0, 1.0), math.nan), r"voxel"),
    ("volume_material", lambda: PassiveVolume.uniform("kryptonite", (1.0, 1.0, 1.0), 0.1), r"kryptonite"),
    (
        "material_heavy",
        lambda: Material.from_composition("americium", 13_670.0, {"Am": 1.0}),
        r"Am",
    ),
    ("material_density", lambda: Material.from_composition("x", -1.0, {"Fe": 1.0}), r"density"),
    ("material_infinite_x0", lambda: Material("x", math.inf, 1000.0, 0.5, 1e-7, {"H": 1.0}), r"x0 must be finite"),
    (
        "muons_nan_momentum",
        lambda: MuonBatch.create(torch.zeros(2, 3), torch.tensor([[0.0, 0, -1]] * 2), torch.tensor([1.0, math.nan])),
        r"MuonBatch\.momentum .*muon 1",
    ),
    (
        "muons_zero_direction",
        lambda: MuonBatch.create(torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(2)),
        r"MuonBatch\.direction",
    ),
    (
        "muons_weight",
        lambda: MuonBatch.create(
            torch.zeros(2, 3), torch.tensor([[0.0, 0, -1]] * 2), torch.ones(2), None, 2 * torch.ones(2)
        ),
        r"MuonBatch\.weight",
    ),
    (
        "design_nan",
        lambda: DetectorDesign([[0.5, 0.5]] * 4, [2.0, math.nan, 0.3, 0.2], 2, 1.0, 1e-4, 0.9, BOUNDS),
        r"DetectorDesign\.z: panel 1 has a value that is not finite",
    ),
    (
        "design_efficiency_nan",
        lambda: DetectorDesign([[0.5, 0.5]] * 4, [2.0, 1.9, 0.3, 0.2], 2, 1.0, 1e-4, math.nan, BOUNDS),
        r"DetectorDesign\.efficiency",
    ),
    ("hits_path_type", lambda: read_csv(3.5, resolution=1e-4, z_split=0.8), r"hits file must be a path"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("case", "build", "message"), API_CASES, ids=[c[0] for c in API_CASES])
def test_public_constructors_refuse_bad_values(case, build, message):
    with pytest.raises(MutomoError, match=message):
        build()


def test_optimise_refuses_a_run_dir_that_is_not_a_path_before_any_epoch():
    from mutomo.config.build import load_benchmark
    from mutomo.optimise.loop import TrainingSettings, optimise

    problem = load_benchmark("ladle_furnace")
    design = problem.design("poor", ("z",), None)
    with pytest.raises(MutomoError, match="run_dir must be a path"):
        optimise(design, problem, TrainingSettings(epochs=1), run_dir=42)  # type: ignore[arg-type]


def test_the_corpus_has_at_least_sixty_cases():
    counted = len(CONFIG_CASES) + len(DESIGN_CASES) + len(CLI_CASES) + len(HITS_CASES)
    counted += len(CHECKPOINT_CASES) + len(API_CASES)
    assert counted >= 60, counted
    assert len(np.unique([c[0] for c in CONFIG_CASES])) == len(CONFIG_CASES)
