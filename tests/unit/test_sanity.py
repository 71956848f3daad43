"""Sanity warnings before a run and the verdict after it (issue 26): each warning with the input
that triggers it and one that does not."""

from __future__ import annotations

import json

import pytest

from mutomo.app.cli import main
from mutomo.config import build_problem, load_config, parse_config
from mutomo.config.sanity import before_run, design_warnings, exposure_warnings, material_warnings, muons_per_voxel
from mutomo.optimise.verdict import chance_lines

IRON = {"name": "scrap_iron", "composition": {"Fe": 1.0}}


@pytest.mark.parametrize(
    "material, said",
    [
        (
            {**IRON, "density": 7.85},
            r"density 7.85 kg/m\^3 is implausible for a material holding Fe: did you give g/cm\^3",
        ),
        ({**IRON, "density": 30_000.0}, "above that of osmium"),
        ({**IRON, "density": 7850.0}, None),
        ({"name": "my_air", "density": 1.2, "composition": {"N": 0.76, "O": 0.24}}, None),  # a gas may be light
        ({"name": "foam", "density": 35.0, "composition": {"C": 0.92, "H": 0.08}}, None),
    ],
)
def test_material_density_warning(material, said):
    config = parse_config({"extends": "waste_block", "materials": [material]})
    warnings = material_warnings(config)
    if said is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and f"materials[0] ({material['name']})" in warnings[0]
        assert pytest.importorskip("re").search(said, warnings[0])


def test_builtin_benchmarks_raise_no_warning():
    for name in ("ladle_furnace", "waste_block", "lorry_uranium"):
        config = load_config(name)
        assert before_run(config, build_problem(config)) == [], name


def test_inherited_designs_that_do_not_fit_a_moved_scene_are_named():
    mine = {"xy": [5.5, 5.5], "z_above": [1.2, 1.1], "z_below": [-0.1, -0.2], "span": 1.2}
    config = parse_config(
        {
            "extends": "waste_block",
            "scene": {"origin": [5.0, 5.0, 0.0]},
            "region": {"x": [4.0, 7.0], "y": [4.0, 7.0]},
            "designs": {"mine": mine},
            "design": {"start": "mine"},
            "evaluation": {"compare": []},
        }
    )
    assert config.inherited_designs == dict.fromkeys(["human_close", "human_separated", "poor"], "waste_block")
    warnings = design_warnings(config, build_problem(config))
    assert len(warnings) == 3 and not any("'mine'" in w for w in warnings)
    for name in ("human_close", "human_separated", "poor"):
        assert any(
            f"design {name!r} (inherited from waste_block) does not fit this scene: panel 0: x = " in w
            and "outside the allowed range [4.0, 7.0]" in w
            for w in warnings
        )


def test_a_design_beside_the_scene_is_warned_but_one_over_it_is_not():
    beside = {"xy": [1.4, 1.4], "z_above": [1.2, 1.1], "z_below": [-0.1, -0.2], "span": 0.3}
    over = {**beside, "xy": [1.1, 1.1]}  # reaches x 0.95..1.25: over the block's corner
    config = parse_config({"extends": "waste_block", "designs": {"beside": beside, "over": over}})
    warnings = design_warnings(config, build_problem(config))
    assert len(warnings) == 1 and "design 'beside' covers none of the scene" in warnings[0]


def test_an_exposure_of_few_muons_per_voxel_is_warned():
    short = parse_config({"extends": "waste_block", "task": {"exposure_s": 2.0}})
    problem = build_problem(short)
    assert muons_per_voxel(problem) == pytest.approx(problem.n_muons / (1.2 * 1.2) / 100, rel=1e-6)
    (warning,) = exposure_warnings(short, problem)
    assert "task.exposure_s = 2 s gives about" in warning and "asr map is mostly noise" in warning
    enough = parse_config({"extends": "waste_block", "task": {"exposure_s": 20.0}})
    assert exposure_warnings(enough, build_problem(enough)) == []
    # the regression's fill statistic pools every muon: not warned at the ladle's 2.5 muons per voxel
    ladle = load_config("ladle_furnace")
    assert muons_per_voxel(build_problem(ladle)) < 5 and exposure_warnings(ladle, build_problem(ladle)) == []


def _evaluations(kind, metrics, no_information=None):
    return {
        "task": {"kind": kind, "exposure_s": 300.0, "no_information": no_information or {}},
        "designs": {name: {"physical": m} for name, m in metrics.items()},
    }


def test_chance_verdict_for_presence():
    at_chance = _evaluations("presence", {"a": {"auc": [0.46, 0.05]}, "b": {"auc": [0.64, 0.08]}})
    lines = chance_lines(at_chance)
    assert lines[0].startswith("The question cannot be answered as posed at 300 s of exposure: every design is no")
    assert "a: AUC 0.460 +- 0.050; b: AUC 0.640 +- 0.080" in lines[0] and "longer exposure" in lines[1]
    one_better = _evaluations("presence", {"a": {"auc": [0.46, 0.05]}, "b": {"auc": [0.80, 0.05]}})
    assert chance_lines(one_better) == []


def test_chance_verdict_leaves_the_ideal_detectors_out_and_says_what_they_show():
    """The bounds are not designs one can build: every built design at chance is still the
    verdict, and the ideal detector says whether a better detector would help."""
    designs = {"a": {"auc": [0.46, 0.05]}, "ideal_momentum": {"auc": [0.95, 0.02]}}
    better = _evaluations("presence", {**designs, "ideal": {"auc": [0.85, 0.04]}})
    assert "a better detector would help" in chance_lines(better)[0]
    worse = _evaluations("presence", {**designs, "ideal": {"auc": [0.55, 0.05]}})
    assert "no detector answers it like this" in chance_lines(worse)[0]
    assert "ideal" not in chance_lines(worse)[0].split("(")[1]  # not listed among the designs at chance


def test_chance_verdict_for_regression():
    chance = {"mse": [0.05, 0.005]}
    assert chance_lines(_evaluations("regression", {"a": {"mse": [0.049, 0.004]}}, chance))[0].startswith(
        "The question cannot be answered"
    )
    assert chance_lines(_evaluations("regression", {"a": {"mse": [0.01, 0.002]}}, chance)) == []
    assert chance_lines(_evaluations("regression", {"a": {"mse": [0.049, 0.004]}})) == []  # no baseline: no claim


TINY_AT_CHANCE = """extends = "waste_block"
[task]
exposure_s = 0.5
[training]
epochs = 1
volumes_per_epoch = 6
exposure_s = 0.5
validation_volumes = 0
[evaluation]
n_volumes = 8
calibration_volumes = 4
compare = []
exposure_factors = [1.0]
[output]
x0_muons = 0
"""


def test_a_run_at_chance_says_so_on_the_command_line_and_in_the_report(tmp_path, capsys):
    """Half a second of exposure (~90 muons through a 10 x 10 x 10 voxel block): every design
    at chance; warned before (muons per voxel) and after (the verdict), on stderr and in the
    report."""
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_AT_CHANCE)
    run_dir = tmp_path / "run"
    assert main(["optimise", str(path), "--output", str(run_dir)]) == 0
    err = capsys.readouterr().err
    assert "warning: task.exposure_s = 0.5 s gives about" in err
    assert "evaluating initial on 8 test + 4 calibration volumes x 90 muons ..." in err  # no silent minutes
    assert "evaluated optimised in" in err
    evaluations = json.loads((run_dir / "evaluations.json").read_text())
    aucs = [d["physical"]["auc"] for d in evaluations["designs"].values()]
    assert all(abs(v - 0.5) <= 2 * e for v, e in aucs), aucs  # the seeds are fixed: always at chance
    assert "warning: The question cannot be answered as posed at 0.502 s of exposure" in err
    assert "warning: What would help: a longer exposure" in err
    assert "The question cannot be answered as posed" in (run_dir / "report.html").read_text()


def test_advice_leaves_out_what_the_task_already_does():
    base = {"kind": "presence", "exposure_s": 30.0}
    asr_clean = chance_lines(
        {
            **_evaluations("presence", {"a": {"auc": [0.5, 0.1]}}),
            "task": {**base, "inference": "asr", "reference": "clean"},
        }
    )[1]
    assert "longer exposure" in asr_clean and "task.reference" not in asr_clean and "task.inference" not in asr_clean
    poca_volume = chance_lines(
        {
            **_evaluations("presence", {"a": {"auc": [0.5, 0.1]}}),
            "task": {**base, "inference": "poca", "reference": "volume"},
        }
    )[1]
    assert 'task.reference = "clean"' in poca_volume and 'task.inference = "asr"' in poca_volume
    mlem = chance_lines(
        {
            **_evaluations("presence", {"a": {"auc": [0.5, 0.1]}}),
            "task": {**base, "inference": "mlem", "momentum": "flux_mean"},
        }
    )[1]
    assert 'task.momentum = "marginal"' in mlem


def test_sweep_prints_the_warnings_before_anything_runs(tmp_path, capsys):
    config = tmp_path / "scrap.toml"
    config.write_text(
        'extends = "waste_block"\n[[materials]]\nname = "scrap"\ndensity = 7.85\ncomposition = { Fe = 1.0 }\n'
        '[scene]\nbackground = { material = "scrap" }\n[sweep]\nstarts = 1\n'
    )
    blocked = tmp_path / "a_file"
    blocked.write_text("not a folder")
    assert main(["sweep", str(config), "--output", str(blocked)]) == 2  # refused before any trial
    captured = capsys.readouterr()
    assert "warning: materials[0] (scrap): density 7.85 kg/m^3 is implausible" in captured.out
    assert "--output" in captured.err


def test_the_verdict_reads_the_headline_trigger():
    """With evaluation.min_hits = [3, 2] the headline is physical_min3: a design at chance there
    is at chance even if its 2-hit readout ("physical") is not."""
    evaluations = {
        "task": {"kind": "presence", "exposure_s": 60.0},
        "readouts": ["smooth", "physical_min3", "physical"],
        "designs": {"a": {"physical_min3": {"auc": [0.52, 0.06]}, "physical": {"auc": [0.9, 0.03]}}},
    }
    assert chance_lines(evaluations)[0].startswith("The question cannot be answered")
    evaluations["readouts"] = ["smooth", "physical", "physical_min3"]
    assert chance_lines(evaluations) == []
