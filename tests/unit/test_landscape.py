"""Multi-start in one pass, grouping of designs, gradient-free baselines, landscape settings."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from mutomo.app.cli import main
from mutomo.config.build import load_benchmark
from mutomo.design.describe import design_from_description
from mutomo.design.panels import DetectorDesign
from mutomo.design.stacked import StackedDesign
from mutomo.errors import MutomoError
from mutomo.optimise.evaluate import EvaluationSettings, observe_design
from mutomo.optimise.loop import TrainingSettings, batch_loss, batch_losses
from mutomo.studies.baselines import search
from mutomo.studies.grouping import aligned_parameters, design_distance, group_designs
from mutomo.studies.landscape import LandscapeSettings, front_envelope, near_optimal, observe_designs
from mutomo.studies.search import DesignVector, design_objective
from mutomo.studies.starts import jittered_starts, random_starts


@pytest.fixture(scope="module")
def ladle():
    return load_benchmark("ladle_furnace")


def template(problem, trainable=("xy", "z", "size"), budget=6000.0) -> DetectorDesign:
    design = problem.design("human_acceptance", trainable, budget)
    assert isinstance(design, DetectorDesign)
    return design


SMALL = TrainingSettings(epochs=2, volumes_per_epoch=4, muons_per_volume=200, validation_volumes=0)


# ----------------------------------------------------------------------------- one pass = loop


def test_stacked_design_gives_the_loop_values_and_gradients(ladle):
    """The stacked loss is the sum of the members' losses, each member's gradient its own.

    Compared in float64: in float32 the stacked pass sums its muons in another order than the
    loop, and a gradient element that is a near-cancelling sum of ~800 muons' terms differed by
    0.35 % on one machine (the summation order depends on the CPU's vector width). In float64
    the same sums agree to ~1e-12 of the largest element, so the identity is tested tightly."""
    members = [d.to(torch.float64) for d in random_starts(template(ladle), 3, seed=4)]
    loop_values, loop_grads = [], []
    for d in members:
        parts = batch_loss(d, ladle, (0, 0, 0), 4, 200, ladle.task.loss, SMALL)
        parts.total.backward()
        loop_values.append(parts.total.detach())
        loop_grads.append([p.grad.clone() for p in (d.xy, d.z, d.share_logit)])
        d.zero_grad()
    stacked = StackedDesign(members)
    per = batch_losses(stacked, ladle, (0, 0, 0), 4, 200, ladle.task.loss, SMALL)
    assert per.total.shape == (3,)
    assert per.total.dtype == torch.float64
    torch.testing.assert_close(per.total.detach(), torch.stack(loop_values), rtol=1e-10, atol=0.0)
    total = batch_loss(stacked, ladle, (0, 0, 0), 4, 200, ladle.task.loss, SMALL)
    torch.testing.assert_close(total.total.detach(), per.total.detach().sum())
    total.total.backward()
    for d, grads in zip(members, loop_grads, strict=True):
        for p, g in zip((d.xy, d.z, d.share_logit), grads, strict=True):
            # float64 rounding of a sum of ~800 terms, relative to the parameter's largest element
            torch.testing.assert_close(p.grad, g, rtol=1e-9, atol=1e-10 * float(g.abs().max()))
    assert any(bool(p.grad.abs().max() > 0) for d in members for p in (d.xy, d.z, d.share_logit))
    assert not torch.allclose(loop_values[0], loop_values[1])  # the members differ


def test_stacked_design_falls_back_to_a_loop_for_a_task_without_design_batches():
    problem = load_benchmark("ladle_furnace")
    problem.task.design_batches = False  # as for ASR, which refuses several designs at once
    members = random_starts(template(problem), 2, seed=5)
    per = batch_losses(StackedDesign(members), problem, (0, 0, 1), 4, 200, problem.task.loss, SMALL)
    loop = [batch_loss(d, problem, (0, 0, 1), 4, 200, problem.task.loss, SMALL).total for d in members]
    torch.testing.assert_close(per.total, torch.stack(loop))
    assert per.total.requires_grad


def test_stacked_design_parts_and_description(ladle):
    members = random_starts(template(ladle), 2, seed=1)
    stacked = StackedDesign(members)
    assert stacked.detector().design_shape == (2,)
    assert stacked.cost().shape == (2,)
    assert len(stacked.parameter_groups()["xy"]) == 2
    stacked.smoothness = 0.02
    assert all(d.smoothness == 0.02 for d in stacked)
    copy = design_from_description(json.loads(stacked.to_json()))
    assert isinstance(copy, StackedDesign) and len(copy) == 2
    torch.testing.assert_close(copy.cost(), stacked.cost().detach())


def test_stacked_evaluation_equals_one_at_a_time_in_the_smooth_readout(ladle):
    designs = random_starts(template(ladle), 2, seed=2)
    settings = EvaluationSettings(n_volumes=4, calibration_volumes=2, min_hits=(2,))
    together = observe_designs(designs, ladle, settings)
    alone = observe_design(designs[1], ladle, settings)
    np.testing.assert_allclose(together[1].test["smooth"].outputs, alone.test["smooth"].outputs, rtol=1e-4)
    assert together[1].test["physical"].outputs.shape == alone.test["physical"].outputs.shape


def test_random_starts_lie_in_the_region_and_keep_the_budget(ladle):
    t = template(ladle)
    starts = random_starts(t, 5, seed=0)
    b = t.bounds
    for d in starts:
        assert bool(((d.xy[:, 0] >= b.x[0]) & (d.xy[:, 0] <= b.x[1])).all())
        assert bool(((d.z[:4] >= b.z_above[0]) & (d.z[:4] <= b.z_above[1])).all())
        assert bool(((d.z[4:] >= b.z_below[0]) & (d.z[4:] <= b.z_below[1])).all())
        assert float(d.cost().detach()) == pytest.approx(6000.0, rel=1e-4)
    assert design_distance(starts[0], starts[1]) > 0.05
    again = random_starts(t, 5, seed=0)
    torch.testing.assert_close(again[3].xy, starts[3].xy)
    jittered = jittered_starts(t, 3, seed=0, jitter=0.05)
    assert design_distance(jittered[0], t) == 0.0 and 0 < design_distance(jittered[1], t) < 0.5


# ----------------------------------------------------------------------------- grouping


def relabelled(design: DetectorDesign, seed: int) -> DetectorDesign:
    """The same detector with the panels of each side in another order."""
    d = design.describe()
    rng = np.random.default_rng(seed)
    n, na = len(d["z"]), d["n_above"]
    order = np.concatenate([rng.permutation(na), na + rng.permutation(n - na)])
    for key in ("xy", "z", "span", "resolution", "efficiency"):
        d[key] = [d[key][i] for i in order]
    return DetectorDesign.from_description(d)


def test_relabelled_panels_are_the_same_design_and_different_designs_are_not(ladle):
    a, b = random_starts(template(ladle), 2, seed=3)
    a2 = relabelled(a, 0)
    assert not torch.allclose(a2.z, a.z)  # the order did change
    assert design_distance(a, a2) == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        near = relabelled(a, 1)
        near.z.add_(0.01)  # 1 cm away: the same solution at a 5 cm threshold
    labels = group_designs([a, a2, b, near, relabelled(b, 2)], threshold=0.05)
    assert list(labels) == [0, 0, 1, 0, 1]
    assert list(group_designs([a, near], threshold=0.005)) == [0, 1]
    names, params = aligned_parameters([a2, a], a)
    np.testing.assert_allclose(params[0], params[1], atol=1e-6)
    assert names[0] == "above1.x" and len(names) == 8 * 4


def test_grouping_refuses_a_bad_threshold(ladle):
    a = template(ladle)
    with pytest.raises(MutomoError, match="threshold"):
        group_designs([a, a], threshold=0.0)


# ----------------------------------------------------------------------------- baselines


OPTIMUM = np.array([0.3, -0.2, 0.5, 0.1])
BOX = (np.full(4, -1.0), np.full(4, 1.0))


def quadratic(x: np.ndarray) -> float:
    return float(((x - OPTIMUM) ** 2).sum())


@pytest.mark.parametrize(
    ("method", "calls", "tolerance"),
    [("random", 400, 0.25), ("cma", 300, 0.05), ("tpe", 150, 0.15), ("gp", 20, 0.3)],
)
def test_each_baseline_finds_the_optimum_of_a_quadratic(method, calls, tolerance):
    """Distance to the known optimum after ``calls`` evaluations; random search in a 4-d box of
    side 2 with 400 draws lands ~0.1 from it, the model-based methods much closer."""
    start = quadratic(np.zeros(4))
    result = search(method, quadratic, BOX, calls * 10, muons_per_call=10, seed=1)
    assert result.calls == calls and result.muons == calls * 10
    assert np.linalg.norm(result.x - OPTIMUM) < tolerance
    assert quadratic(result.x) < 0.1 * start
    assert np.all(result.x >= BOX[0]) and np.all(result.x <= BOX[1])


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"method": "annealing"}, "method"),
        ({"budget": 0}, "budget"),
        ({"budget": -5}, "budget"),
        ({"muons_per_call": 0}, "muons_per_call"),
        ({"budget": 5, "muons_per_call": 10}, "budget"),
        ({"bounds": (np.zeros(2), np.zeros(2))}, "bounds"),
    ],
)
def test_baselines_refuse_bad_input_naming_the_field(kwargs, field):
    args = {"method": "random", "objective": quadratic, "bounds": BOX, "budget": 100, **kwargs}
    method = args.pop("method")
    muons = args.pop("muons_per_call", 1)
    with pytest.raises(MutomoError, match=field):
        search(method, args["objective"], args["bounds"], args["budget"], muons_per_call=muons)


def test_design_vector_round_trip_and_objective(ladle):
    d = template(ladle, ("z",))
    vec = DesignVector(d)
    assert len(vec) == 8 and vec.names[0] == "panel0.z"
    x = vec.get()
    x[0] = 1.9
    vec.set_(x)
    assert float(d.z[0].detach()) == pytest.approx(1.9)
    big = DesignVector(template(ladle))
    assert len(big) == 8 * 4  # xy (16) + z (8) + budget shares (8)
    settings = replace(SMALL, epochs=3)
    objective, muons = design_objective(d, ladle, settings)
    assert muons == 4 * 200
    first = objective(vec.get())
    assert np.isfinite(first)
    assert objective(vec.get()) != first  # call 2 sees the next epoch's batch
    objective(vec.get())
    assert objective(vec.get()) == pytest.approx(first)  # call 4 = epoch 0 again


# ----------------------------------------------------------------------------- landscape settings


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"starts": 0}, "starts"),
        ({"tolerance_sigma": -1.0}, "tolerance_sigma"),
        ({"tolerance_sigma": 11.0}, "tolerance_sigma"),
        ({"tolerance_fraction": 1.5}, "tolerance_fraction"),
        ({"tolerance_fraction": 0.0}, "tolerance_fraction"),
        ({"tolerance_sigma": None, "tolerance_fraction": None}, "tolerance_sigma"),
        ({"threshold": 0.0}, "threshold"),
        ({"budgets": (100.0, -1.0)}, "budgets"),
        ({"jitter": 0.0}, "jitter"),
    ],
)
def test_landscape_settings_refuse_bad_input_naming_the_field(kwargs, field):
    with pytest.raises(MutomoError, match=field):
        LandscapeSettings(**kwargs)


def test_near_optimal_tolerance():
    s = LandscapeSettings(tolerance_sigma=2.0, tolerance_fraction=None)
    assert near_optimal(0.0, 0.1, 1.0, s) and near_optimal(0.19, 0.1, 1.0, s) and not near_optimal(0.21, 0.1, 1.0, s)
    assert not near_optimal(17.0, 11.0, 0.01, s)  # within 2 s.e., but measured too poorly to say
    assert not near_optimal(float("nan"), 0.1, 1.0, s)
    f = LandscapeSettings(tolerance_sigma=None, tolerance_fraction=0.1)
    assert near_optimal(0.09, 0.001, 1.0, f) and not near_optimal(0.11, 0.5, 1.0, f)


def test_cli_landscape_refuses_bad_input_naming_the_argument(capsys, tmp_path):
    assert main(["landscape", "ladle_furnace", "--starts", "0", "--output", str(tmp_path)]) == 2
    assert "starts" in capsys.readouterr().err
    assert main(["landscape", "ladle_furnace", "--starts", "2", "--tolerance-fraction", "2"]) == 2
    assert "tolerance_fraction" in capsys.readouterr().err
    assert main(["landscape", "ladle_furnace", "--starts", "2", "--budgets", "-3"]) == 2
    assert "budgets" in capsys.readouterr().err


def test_front_envelope_is_monotone_and_exact_on_a_toy_front():
    """Toy: the best error at budget b is 1/b, measured with noise that breaks monotonicity; the
    envelope is monotone, and equals the true front where the noise happens to be small."""
    budgets = [8.0, 1.0, 4.0, 2.0, 16.0]
    noisy = [1 / 8 + 0.3, 1.0, 1 / 4, 1 / 2, 1 / 16]
    env = front_envelope(budgets, noisy)
    order = np.argsort(budgets)
    assert all(np.diff(np.array(env)[order]) <= 0)
    assert env == [0.25, 1.0, 0.25, 0.5, 1 / 16]
    assert front_envelope([1.0, 2.0], [0.2, 0.9], higher_is_better=True) == [0.2, 0.9]
    with pytest.raises(MutomoError, match="one length"):
        front_envelope([1.0], [0.1, 0.2])


SMALL_LADLE = """extends = "ladle_furnace"
[task]
muons_per_volume = 200
[evaluation]
n_volumes = 4
calibration_volumes = 2
min_hits = [2]
"""


def test_cli_landscape_writes_the_landscape_the_front_and_the_figures(tmp_path, capsys):
    config = tmp_path / "small.toml"
    config.write_text(SMALL_LADLE)
    args = ["landscape", str(config), "--starts", "2", "--epochs", "1", "--volumes", "4", "--muons", "50"]
    args += ["--budgets", "3000", "--front-starts", "1", "--output", str(tmp_path)]
    assert main(args) == 0
    result = json.loads((tmp_path / "landscape.json").read_text())
    assert len(result["starts"]) == 2 and result["muons"] == 1 * 4 * 50
    assert sum(c["size"] for c in result["clusters"]) == 2
    assert set(result["humans"]) == {"human_resolution", "human_acceptance"}
    assert result["front"]["budgets"][0]["budget"] == 3000.0
    assert result["front"]["humans"]["human_acceptance"]["scaled"][0]["cost"] == pytest.approx(3000.0, rel=1e-4)
    for name in ("landscape_views", "metric_vs_cost", "budget_front"):
        assert (tmp_path / "figures" / f"{name}.png").stat().st_size > 0
    assert "distinct designs" in capsys.readouterr().out
    best = json.loads((tmp_path / "designs" / "best.json").read_text())
    assert best["made_for"]["problem"] == "ladle_furnace" and len(best["made_for"]["fingerprint"]) == 12
    report = (tmp_path / "report.html").read_text()
    for heading in ("Distinct designs and the human designs", "Budget front", "Figure 3."):
        assert heading in report
    assert "human_acceptance" in report and "Trials" not in report  # a landscape has no trials


def test_a_fixed_budget_design_file_keeps_its_budget_beyond_the_span_bounds(ladle, tmp_path):
    """A design found under a fixed budget may have panels wider than the span bounds (they do
    not apply to budget shares); its file evaluates as it was found."""
    design = template(ladle, budget=60000.0)
    with torch.no_grad():
        design.share_logit[0] = 10.0  # nearly the whole budget to one panel: ~7.7 m wide
    assert float(design.span[0].detach()) > design.bounds.span[1]
    path = tmp_path / "wide.json"
    path.write_text(json.dumps(design.describe()))
    loaded = ladle.design(str(path), (), None)
    assert loaded.budget == pytest.approx(60000.0)
    torch.testing.assert_close(loaded.span, design.span.detach())
