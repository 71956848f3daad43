"""GDML export (mutomo.io.gdml, `mutomo export`): written with pyg4ometry, read back with its GDML
reader and checked panel by panel and material by material against what was exported."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
import torch

from mutomo import Material, MutomoError
from mutomo.app.cli import main
from mutomo.detector import Detector, DetectorPanel
from mutomo.io.gdml import compare_gdml, merge_voxels, read_gdml, require_pyg4ometry, write_gdml
from mutomo.volume import PassiveVolume

GLASS = Material.from_composition("my_glass", 2500.0, {"Si": 1, "O": 2, "Na": 0.1}, by="atoms")


def _detector() -> Detector:
    above = [DetectorPanel((0.0, 0.4, z), (1.0, 0.8), 1e-4, 0.9) for z in (1.2, 1.0)]
    below = [DetectorPanel((0.05, 0.4, 0.1), (0.9, 0.9), 2e-4, 0.95)]
    return Detector(above, below)


def _volume() -> PassiveVolume:
    index = torch.zeros(4, 3, 5, dtype=torch.long)  # air
    index[:, :, 0] = 3  # a concrete floor of 12 voxels: one box
    index[1:3, :, 1:3] = 1  # a lead block of 12 voxels: one box
    index[0, 0, 4] = 2  # one voxel of the user's glass
    index[3, 2, 2:4] = 2  # two more, apart from it
    return PassiveVolume(["air", "lead", GLASS, "concrete"], index, (0.1, 0.2, 0.05), origin=(-0.2, 0.1, 0.3))


def test_merged_boxes_cover_every_voxel_once_with_one_material():
    rng = np.random.default_rng(0)
    index = rng.integers(0, 3, size=(6, 5, 4))
    index[:, :, :2] = 1  # a uniform slab merges into one box
    boxes = merge_voxels(index, skip=[0])
    covered = np.zeros(index.shape, dtype=int)
    for b in boxes:
        block = tuple(slice(lo, lo + n) for lo, n in zip(b.low, b.count, strict=True))
        assert np.all(index[block] == b.material) and b.material != 0
        covered[block] += 1
    np.testing.assert_array_equal(covered, (index != 0).astype(int))
    assert next(b.count for b in boxes if b.low == (0, 0, 0)) == (6, 5, 2)  # the slab is one box


def test_round_trip_panels_materials_and_volumes(tmp_path):
    pytest.importorskip("pyg4ometry")
    detector, volume = _detector(), _volume()
    path = write_gdml(tmp_path / "out" / "scene.gdml", detector, volume, panel_thickness=2e-3)
    text = path.read_text()
    assert 'auxtype="SensDet"' in text and '<material name="lead">' in text and 'lunit="mm"' in text
    contents = read_gdml(path)
    assert compare_gdml(contents, detector, volume, panel_thickness=2e-3) == []
    # Independently of the writer's own helpers: the numbers given to the constructors, in m.
    assert set(contents.panels) == {"panel_above_0", "panel_above_1", "panel_below_0"}
    below = contents.panels["panel_below_0"]
    assert below.centre == pytest.approx((0.05, 0.4, 0.1), abs=1e-12)
    assert below.size == pytest.approx((0.9, 0.9, 2e-3), abs=1e-12)
    assert below.sensitive_detector == "PanelSD" and below.copy_number == 2
    assert below.resolution == pytest.approx(2e-4, rel=1e-7) and below.efficiency == pytest.approx(0.95, rel=1e-7)
    above = contents.panels["panel_above_0"]
    assert above.resolution == pytest.approx(1e-4, rel=1e-7) and above.efficiency == pytest.approx(0.9, rel=1e-7)
    assert 'auxtype="Resolution" auxvalue="0.2" auxunit="mm"' in text and 'auxtype="Efficiency" auxvalue="0.95"' in text
    assert contents.panels["panel_above_1"].centre == pytest.approx((0.0, 0.4, 1.0), abs=1e-12)
    assert set(contents.materials) == {"lead", "my_glass", "concrete"}  # air voxels are the world's G4_AIR
    assert contents.world_material == "G4_AIR"
    glass = contents.materials["my_glass"]
    assert glass.density == pytest.approx(2500.0)
    assert glass.composition == pytest.approx(dict(GLASS.composition), abs=1e-12)
    voxel = 0.1 * 0.2 * 0.05
    assert contents.material_volumes == pytest.approx(
        {"lead": 12 * voxel, "my_glass": 3 * voxel, "concrete": 12 * voxel}
    )
    assert contents.n_boxes == 4  # floor, lead block, and the glass in two pieces
    half = [s / 2 for s in contents.world_size]
    assert half[2] > 1.2 and half[0] > 0.5 and half[1] > 0.8  # the world holds the panels


def test_compare_names_what_differs(tmp_path):
    pytest.importorskip("pyg4ometry")
    detector, volume = _detector(), _volume()
    contents = read_gdml(write_gdml(tmp_path / "scene.gdml", detector, volume))
    moved = Detector(
        [DetectorPanel((0.0, 0.4, 1.25), (1.0, 0.8)), DetectorPanel((0.0, 0.4, 1.0), (1.0, 0.8))],
        [DetectorPanel((0.05, 0.4, 0.1), (0.9, 0.9)), DetectorPanel((0.05, 0.4, 0.0), (0.9, 0.9))],
    )
    index = volume.material_index.clone()
    index[0, 1, 4] = 1  # one more lead voxel
    problems = compare_gdml(contents, moved, PassiveVolume(volume.materials, index, volume.voxel_size, volume.origin))
    assert any(p.startswith("panel panel_above_0: centre") for p in problems)
    assert "panel panel_below_1: missing" in problems
    assert any(p.startswith("material lead: boxes of") for p in problems)
    # the moved detector's panels have the default resolution 1e-4 m and efficiency 0.9; panel_below_0 was 2e-4, 0.95
    assert "panel panel_below_0: Resolution 0.0002 m, expected 0.0001 m" in problems
    assert "panel panel_below_0: Efficiency 0.95, expected 0.9" in problems
    assert len(problems) == 5, problems


def test_refusals(tmp_path, monkeypatch):
    pytest.importorskip("pyg4ometry")
    detector, volume = _detector(), _volume()
    with pytest.raises(MutomoError, match="panel_below_0 .* overlaps the volume.*give a thinner panel_thickness"):
        write_gdml(tmp_path / "a.gdml", detector, volume, panel_thickness=0.5)
    inside = Detector(
        [DetectorPanel((0.0, 0.4, 1.2), (1.0, 0.8)), DetectorPanel((0.0, 0.4, 0.4), (1.0, 0.8))],
        [DetectorPanel((0.05, 0.4, 0.1), (0.9, 0.9))],
    )
    with pytest.raises(MutomoError, match=r"panel_above_1 \(z = 0.4 m\) lies inside the scanned volume") as info:
        write_gdml(tmp_path / "a.gdml", inside, volume, panel_thickness=1e-3)
    assert "thinner" not in str(info.value) and "overlaps the volume whatever its thickness" in str(info.value)
    with pytest.raises(MutomoError, match="panel_above_1 and panel_above_0 overlap"):
        write_gdml(tmp_path / "a.gdml", detector, volume, panel_thickness=0.3)
    with pytest.raises(MutomoError, match="G4_NOTHING.* not a Geant4 NIST material"):
        write_gdml(tmp_path / "a.gdml", detector, volume, panel_material="G4_NOTHING")
    with pytest.raises(MutomoError, match="panel_thickness must be"):
        write_gdml(tmp_path / "a.gdml", detector, volume, panel_thickness=math.nan)
    clash = Material.from_composition("G4_WATER", 1000.0, {"H": 2, "O": 1}, by="atoms")
    with pytest.raises(MutomoError, match="'G4_WATER'.* reserved"):
        write_gdml(tmp_path / "a.gdml", detector, PassiveVolume.uniform(clash, (0.2, 0.2, 0.2), 0.1, z_low=0.3))
    monkeypatch.setitem(sys.modules, "pyg4ometry", None)  # as if it were not installed
    with pytest.raises(MutomoError, match=r"needs the package pyg4ometry.*pip install"):
        require_pyg4ometry()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished run's files, by hand: the waste-block configuration (a presence scene) and its
    first human design as the optimised one."""
    from mutomo.config.build import build_problem
    from mutomo.config.schema import load_config

    config = load_config("waste_block")
    problem = build_problem(config)
    run = tmp_path_factory.mktemp("run")
    (run / "config.json").write_text(config.model_dump_json(indent=2))
    design = problem.design(next(iter(config.designs)), (), None)
    (run / "design_final.json").write_text(design.to_json())
    return run, problem, design, config


def test_cli_export(run_dir, tmp_path, capsys):
    pytest.importorskip("pyg4ometry")
    from mutomo.optimise.evaluate import TEST_STREAM

    run, problem, design, config = run_dir
    out = tmp_path / "waste.gdml"
    assert main(["export", str(run), "--gdml", str(out), "--volume-index", "1"]) == 0
    assert "GDML written to" in capsys.readouterr().out
    sample = problem.scene.sample((config.evaluation.seed, TEST_STREAM, 1), present=True)
    assert sample.present  # the uranium cube is in the exported volume
    contents = read_gdml(out)
    with torch.no_grad():
        assert compare_gdml(contents, design.detector(), sample.volume) == []
    assert contents.material_volumes["uranium"] == pytest.approx(0.1**3)
    # the same design as a file, and refusals that name what is wrong
    assert main(["export", str(run), "--gdml", str(out), "--design", str(run / "design_final.json")]) == 0
    capsys.readouterr()
    assert main(["export", str(run), "--gdml", str(out), "--design", "best_validated"]) == 2
    assert "design_best.json: missing" in capsys.readouterr().err
    assert main(["export", str(run), "--gdml", str(out), "--design", "nothing"]) == 2
    assert "neither a design of the run ['optimised'] nor a design file" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nowhere"), "--gdml", str(out)]) == 2
    assert "nowhere: no such run directory" in capsys.readouterr().err
    assert main(["export", str(run), "--gdml", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"n_above": 1, "bounds": {}}))
    assert main(["export", str(run), "--gdml", str(out), "--design", str(bad)]) == 2
    assert f"design file {bad}: not a design description" in capsys.readouterr().err


def test_cli_export_without_pyg4ometry(run_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyg4ometry", None)
    assert main(["export", str(run_dir[0]), "--gdml", str(tmp_path / "a.gdml")]) == 2
    assert 'pip install "mutomo[export]"' in capsys.readouterr().err


def test_hodoscope_design_exports_its_panels(tmp_path):
    pytest.importorskip("pyg4ometry")
    from mutomo.design.base import DesignBounds
    from mutomo.design.hodoscopes import HodoscopeDesign, HodoscopeModule

    module = HodoscopeModule(size=(2.0, 1.0, 0.3), panel_heights=(0.0, 0.3))
    bounds = DesignBounds(x=(-1.0, 3.0), y=(-1.0, 2.0), z_above=(2.1, 4.0), z_below=(-1.0, 0.9))
    centres = [[0.5, 1.0, 3.0], [1.0, 0.5, 0.0]]
    design = HodoscopeDesign(module, centres, bounds, rotated=[True, False], dtype=torch.float64)
    volume = PassiveVolume.uniform("iron", (2.0, 1.0, 1.0), 0.25, z_low=1.0, dtype=torch.float64)
    with torch.no_grad():
        detector = design.detector()
    contents = read_gdml(write_gdml(tmp_path / "hodoscopes.gdml", detector, volume))
    assert compare_gdml(contents, detector, volume) == []
    d = design.describe()
    names = ["panel_above_0", "panel_above_1", "panel_below_0", "panel_below_1"]
    for i, name in enumerate(names):
        assert contents.panels[name].centre == pytest.approx((*d["xy"][i], d["z"][i]), abs=1e-12)
        assert contents.panels[name].size[:2] == pytest.approx(d["span_xy"][i], abs=1e-12)
    assert contents.panels["panel_above_0"].size[:2] == pytest.approx((1.0, 2.0))  # the turned module
    assert contents.material_volumes == pytest.approx({"iron": 2.0}) and contents.n_boxes == 1
