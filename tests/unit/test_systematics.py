"""Systematic variations (issue 30): the registry, the refusals, the evaluation's paired
differences and verdict under every variation, and a short robust training (the hooks' closed-form
cases: tests/unit/test_systematic_hooks.py)."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from mutomo.config import build_problem, parse_config
from mutomo.config.build import evaluation_settings, settings_from
from mutomo.config.schema import ConfigError
from mutomo.detector.as_built import AsBuilt
from mutomo.errors import MutomoError
from mutomo.muons import FluxSource, GenerationPlane, TabulatedFlux
from mutomo.optimise.evaluate import observe_design, observe_variation, systematics_json
from mutomo.optimise.loop import TrainingSettings, epoch_variation, optimise
from mutomo.optimise.systematics import NOMINAL, VARIATIONS, SystematicSizes, Variation, build_variations
from mutomo.optimise.verdict import systematics_envelope, systematics_lines
from mutomo.plotting.report import systematics_section
from mutomo.volume.scattering import DEFAULT_SCATTER

PLANE = GenerationPlane(z=2.0, x_range=(0.2, 0.8), y_range=(0.2, 0.8))


def test_every_variation_builds_and_changes_what_it_names():
    source = FluxSource(PLANE, TabulatedFlux(momentum_range=(0.1, 1000.0)))
    built = {v.name: v for v in build_variations(["all"], SystematicSizes(), source)}
    assert list(built) == list(VARIATIONS)
    assert built["core_width_up"].scatter.core_scale == pytest.approx(1.04)
    assert built["core_width_down"].scatter.core_scale == pytest.approx(0.96)
    assert not built["tail_off"].scatter.single_scatter
    assert built["exposure_up"].muons(1000) == 1100 and built["exposure_down"].muons(1000) == 900
    assert built["detector_worse"].as_built == AsBuilt(resolution_factor=1.2, efficiency_factor=0.8)
    assert built["misalignment"].as_built.misalignment == pytest.approx(0.003)
    cos = torch.tensor([0.9], dtype=torch.float64)
    nominal_mean = float(source.flux.mean_momentum(cos))
    for name in ("flux_model", "index_up", "index_down"):
        sky = built[name].sky
        assert isinstance(sky, FluxSource) and sky.plane == source.plane
        assert float(sky.flux.mean_momentum(cos)) != pytest.approx(nominal_mean, rel=0.01), name
    muons = built["fixed_momentum"].sky.sample(10, torch.Generator().manual_seed(0))  # type: ignore[union-attr]
    assert bool((muons.momentum == 5.0).all())
    for v in built.values():  # everything else is nominal
        changed = {
            "scatter": v.scatter != DEFAULT_SCATTER,
            "sky": v.sky is not None,
            "as_built": not v.as_built.nominal,
            "exposure": v.exposure_factor != 1.0,
        }
        assert sum(changed.values()) == 1, (v.name, changed)


# ----------------------------------------------------------------------------- refusals


def test_bad_variations_are_refused_naming_the_field():
    ladle = {"extends": "ladle_furnace"}
    with pytest.raises(ConfigError, match=r"evaluation\.systematics\.variations: .*unknown variation.*'gravity'"):
        parse_config({**ladle, "evaluation": {"systematics": {"variations": ["gravity"]}}})
    with pytest.raises(ConfigError, match=r"evaluation\.systematics\.core_width: .*greater than 0"):
        parse_config({**ladle, "evaluation": {"systematics": {"variations": ["core_width_up"], "core_width": -0.04}}})
    with pytest.raises(ConfigError, match=r"evaluation\.systematics\.resolution_factor"):
        parse_config({**ladle, "evaluation": {"systematics": {"resolution_factor": 0}}})
    with pytest.raises(ConfigError, match=r"evaluation\.systematics\.efficiency_factor = 1\.5 .* > 1"):
        parse_config(
            {**ladle, "evaluation": {"systematics": {"variations": ["detector_worse"], "efficiency_factor": 1.5}}}
        )
    with pytest.raises(ConfigError, match=r"evaluation\.systematics\.flux_model: .*unknown flux model"):
        parse_config({**ladle, "evaluation": {"systematics": {"flux_model": "Gaisser90"}}})
    with pytest.raises(ConfigError, match=r"training\.systematics: .*unknown variation"):
        parse_config({**ladle, "training": {"systematics": ["tail_on"]}})
    with pytest.raises(ConfigError, match="named twice"):
        parse_config({**ladle, "evaluation": {"systematics": {"variations": ["all", "tail_off"]}}})
    with pytest.raises(MutomoError, match="exposure_factor"):
        Variation("x", exposure_factor=-1.0)


# ----------------------------------------------------------------------------- evaluation and verdict


@pytest.fixture(scope="module")
def ladle():
    config = parse_config(
        {
            "extends": "ladle_furnace",
            "task": {"muons_per_volume": 300},
            "evaluation": {
                "n_volumes": 4,
                "calibration_volumes": 2,
                "systematics": {"variations": ["tail_off", "misalignment"]},
            },
        }
    )
    problem = build_problem(config)
    return config, problem


def test_every_design_is_judged_under_each_variation_on_the_same_volumes(ladle):
    config, problem = ladle
    settings = evaluation_settings(config, problem)
    assert [v.name for v in settings.systematics] == ["tail_off", "misalignment"]
    designs = {name: problem.design(name, ()) for name in ("human_acceptance", "human_resolution")}
    under = {
        v.name: {n: observe_variation(d, problem, settings, v) for n, d in designs.items()}
        for v in settings.systematics
    }
    obs = under["tail_off"]["human_acceptance"]
    assert list(obs.test) == ["physical"] and obs.test["physical"].outputs.shape[0] == 4
    assert len(obs.calibration["physical"].truths) == 2
    # The same volumes for every design and variation; the muons see another world.
    truths = [o.test["physical"].truths for by_design in under.values() for o in by_design.values()]
    assert all(np.array_equal(t, truths[0]) for t in truths)
    nominal = observe_variation(designs["human_acceptance"], problem, settings, NOMINAL)
    assert not np.array_equal(nominal.test["physical"].outputs, obs.test["physical"].outputs)
    # The nominal world through this path is the nominal evaluation, draw for draw.
    full = observe_design(designs["human_acceptance"], problem, settings)
    assert np.array_equal(nominal.test["physical"].outputs, full.test["physical"].outputs)
    assert np.array_equal(nominal.calibration["physical"].outputs, full.calibration["physical"].outputs)
    record = systematics_json(problem, settings, under, [("human_acceptance", "human_resolution")])
    assert record["metric"] == "mse" and record["higher_is_better"] is False
    entry = record["variations"]["misalignment"]
    assert set(entry["designs"]) == set(designs) and "mm" in entry["summary"]
    difference = entry["paired"]["human_acceptance - human_resolution"]["mse"]
    assert all(isinstance(x, float) and math.isfinite(x) for x in difference)


def _evaluations(differences: dict[str, list[float]]) -> dict:
    return {
        "readouts": ["smooth", "physical"],
        "paired": {"optimised - human": {"physical": {"mse": [-2.0e-3, 0.25e-3]}}},
        "systematics": {
            "readout": "physical",
            "metric": "mse",
            "higher_is_better": False,
            "variations": {
                name: {"summary": f"{name} summary", "designs": {}, "paired": {"optimised - human": {"mse": d}}}
                for name, d in differences.items()
            },
        },
    }


def test_a_comparison_reads_wins_under_all_variations_or_names_those_it_does_not():
    wins = _evaluations({"tail_off": [-1.9e-3, 0.3e-3], "fixed_momentum": [-1.2e-3, 0.3e-3]})
    envelope = systematics_envelope(wins)["optimised - human"]
    assert envelope["low"] == pytest.approx(-2.0e-3) and envelope["high"] == pytest.approx(-1.2e-3)
    assert envelope["sigmas"]["fixed_momentum"] == pytest.approx(4.0)
    (line,) = systematics_lines(wins)
    assert line.startswith("optimised wins against human under all 2 variations (by > 3 standard errors)")
    mixed = _evaluations(
        {"tail_off": [-1.9e-3, 0.3e-3], "fixed_momentum": [-0.3e-3, 0.3e-3], "index_up": [0.6e-3, 0.3e-3]}
    )
    (line,) = systematics_lines(mixed)
    assert "under 1 of 3 variations" in line
    assert "not under fixed_momentum (1.0 standard errors), index_up (-2.0 standard errors)" in line
    tie = _evaluations({"tail_off": [-1.9e-3, 0.3e-3], "exposure_up": [0.0, 0.0]})
    assert "not under exposure_up (undefined: no error)" in systematics_lines(tie)[0]
    loses = _evaluations({"tail_off": [0.1e-3, 0.3e-3]})
    (line,) = systematics_lines(loses)
    assert line.startswith("optimised does not win against human by > 3 standard errors under any of the 1 variations")
    assert "(standard errors in its favour: tail_off (-0.3 standard errors))" in line
    html = systematics_section(mixed)
    assert "paired difference in MSE (m²)" in html and "index_up" in html and "-2.0" in html
    assert systematics_lines({"paired": {}}) == [] and systematics_section({"paired": {}}) == ""


# ----------------------------------------------------------------------------- robust training


def test_each_epoch_draws_its_world():
    variations = build_variations(["tail_off", "exposure_up"], SystematicSizes(), FluxSource(PLANE, TabulatedFlux()))
    settings = TrainingSettings(epochs=40, systematics=variations)
    drawn = [epoch_variation(settings, e).name for e in range(40)]
    assert set(drawn) == {"nominal", "tail_off", "exposure_up"}
    assert drawn == [epoch_variation(settings, e).name for e in range(40)]  # reproducible (resume)
    assert epoch_variation(TrainingSettings(), 3) is NOMINAL


def test_a_short_robust_training_moves_the_design_with_finite_gradients():
    config = parse_config(
        {
            "extends": "ladle_furnace",
            "training": {"systematics": ["misalignment", "detector_worse", "core_width_up"], "seed": 3},
        }
    )
    problem = build_problem(config)
    settings = replace(
        settings_from(config, problem),
        epochs=4,
        volumes_per_epoch=4,
        muons_per_volume=200,
        validation_volumes=0,
        warmup_epochs=1,
    )
    assert len(settings.systematics) == 3
    design = problem.design("poor", ("xy", "z", "size"), 6000.0)
    before = {k: v.detach().clone() for k, v in design.state_dict().items()}
    history = optimise(design, problem, settings, progress=False)
    assert not any(r.skipped_step for r in history.records)  # every gradient finite
    assert all(math.isfinite(r.loss["total"]) for r in history.records)
    assert {r.variation for r in history.records} <= {"nominal", "misalignment", "detector_worse", "core_width_up"}
    assert any(r.variation != "nominal" for r in history.records)
    after = design.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_normalised_weighting_counts_each_world_by_its_relative_improvement():
    """Closed form: a world whose loss is ten times another's gets the same objective (1 at its
    first visit), and the same relative gradient; each world's scale is then a running mean."""
    from mutomo.optimise.loop import WORLD_SCALE_DECAY, _weighted

    variations = build_variations(["misalignment"], SystematicSizes(), FluxSource(PLANE, TabulatedFlux()))
    settings = TrainingSettings(epochs=40, systematics=variations, systematics_weighting="normalised")
    scales: dict[str, float] = {}
    for world in ("nominal", "misalignment"):
        x = torch.tensor(2.0, requires_grad=True)
        size = 10.0 if world == "misalignment" else 1.0
        objective = _weighted(size * x**2, settings, world, scales)
        objective.backward()
        assert float(objective.detach()) == pytest.approx(1.0) and float(x.grad) == pytest.approx(1.0)  # d(x²/4)/dx
    assert scales == {"nominal": pytest.approx(4.0), "misalignment": pytest.approx(40.0)}
    _weighted(torch.tensor(2.0), settings, "nominal", scales)  # a second visit to the nominal world
    assert scales["nominal"] == pytest.approx((1 - WORLD_SCALE_DECAY) * 4.0 + WORLD_SCALE_DECAY * 2.0)
    uniform = replace(settings, systematics_weighting="uniform")
    assert float(_weighted(torch.tensor(7.0), uniform, "nominal", {})) == 7.0
    with pytest.raises(MutomoError, match="systematics_weighting"):
        TrainingSettings(systematics_weighting="by_hand")
    with pytest.raises(ConfigError, match="systematics_weighting"):
        parse_config({"extends": "ladle_furnace", "training": {"systematics_weighting": "by_hand"}})


def test_a_normalised_robust_training_keeps_its_world_scales_across_a_resume(tmp_path):
    config = parse_config(
        {
            "extends": "ladle_furnace",
            "training": {"systematics": ["misalignment"], "systematics_weighting": "normalised", "seed": 3},
        }
    )
    problem = build_problem(config)
    settings = replace(
        settings_from(config, problem), epochs=4, volumes_per_epoch=4, muons_per_volume=200, validation_volumes=0
    )
    assert settings.systematics_weighting == "normalised"
    whole = problem.design("poor", ("xy", "z", "size"), 6000.0)
    optimise(whole, problem, settings, progress=False)
    halves = problem.design("poor", ("xy", "z", "size"), 6000.0)
    optimise(halves, problem, settings, progress=False, run_dir=tmp_path, stopping=lambda h: len(h.records) >= 2)
    from mutomo.optimise.checkpoint import load_latest

    state = load_latest(tmp_path)
    assert state is not None and state["world_scales"]
    optimise(halves, problem, settings, progress=False, run_dir=tmp_path, resume=True)
    for k, v in whole.state_dict().items():
        assert torch.allclose(v, halves.state_dict()[k]), k


# ----------------------------------------------------------------------------- the commands

TINY = {
    "extends": "ladle_furnace",
    "task": {"muons_per_volume": 300},
    "training": {"epochs": 1, "volumes_per_epoch": 4, "muons_per_volume": 200, "validation_volumes": 0},
    "evaluation": {
        "n_volumes": 4,
        "calibration_volumes": 2,
        "compare": ["human_resolution"],
        "bounds": [],
        "systematics": {"variations": ["tail_off", "exposure_up"]},
    },
}


def test_mutomo_evaluate_prints_and_writes_the_difference_under_each_variation(tmp_path, capsys):
    from mutomo.app.cli import main

    config = tmp_path / "tiny.toml"
    config.write_text(
        'extends = "ladle_furnace"\n[task]\nmuons_per_volume = 300\n[evaluation]\nn_volumes = 4\n'
        'calibration_volumes = 2\ncompare = ["human_resolution"]\n'
        '[evaluation.systematics]\nvariations = ["tail_off", "exposure_up"]\n'
    )
    out = tmp_path / "m.json"
    assert main(["evaluate", "human_acceptance", "--config", str(config), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "paired difference under each systematic variation (physical, MSE (m²))" in printed
    assert "tail_off" in printed and "muon rate +10 %" in printed
    assert "human_acceptance " in printed and " against human_resolution " in printed
    record = json.loads(out.read_text())["systematics"]
    assert list(record["variations"]) == ["tail_off", "exposure_up"]
    assert set(record["envelope"]) == {"human_acceptance - human_resolution"}


def test_a_run_writes_the_systematics_into_evaluations_and_the_report(tmp_path):
    from mutomo.app.run import run
    from mutomo.plotting.run_report import write_run_report

    evaluations = run(parse_config(TINY), tmp_path / "run", progress=False)
    record = evaluations["systematics"]
    assert set(record["variations"]["tail_off"]["paired"]) == {
        "optimised - initial",
        "optimised - human_resolution",
    }
    assert set(record["variations"]["exposure_up"]["designs"]) == {"initial", "human_resolution", "optimised"}
    assert (tmp_path / "run" / "observations" / "systematics" / "tail_off" / "optimised.npz").exists()
    saved = json.loads((tmp_path / "run" / "evaluations.json").read_text())
    assert saved["systematics"]["envelope"] == record["envelope"]
    timing = json.loads((tmp_path / "run" / "timing.json").read_text())
    assert timing["systematics_seconds"] > 0
    assert timing["total_seconds"] >= timing["training_seconds"] + timing["systematics_seconds"]
    html = write_run_report(tmp_path / "run").read_text()
    assert "Does the win survive what we do not know?" in html and "exposure_up" in html


def test_mutomo_check_lists_the_variations_and_the_robust_training(tmp_path, capsys):
    from mutomo.app.cli import main

    config = tmp_path / "robust.toml"
    config.write_text(
        'extends = "ladle_furnace"\n[training]\nsystematics = ["misalignment"]\n'
        '[evaluation.systematics]\nvariations = ["fixed_momentum", "exposure_down"]\n'
    )
    assert main(["check", str(config), "--no-timing", "--no-figure"]) == 0
    out = capsys.readouterr().out
    assert "systematic variations (2): every design evaluated again under each" in out
    assert "fixed_momentum: every muon at 5 GeV/c; exposure_down: muon rate -10 %" in out
    assert "robust training: each epoch in a world drawn from nominal, misalignment" in out


def test_mutomo_tasks_lists_every_variation(capsys):
    from mutomo.app.cli import main

    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    assert "systematic variations (evaluation.systematics.variations, training.systematics" in out
    assert all(f"    {name}: " in out for name in VARIATIONS)
