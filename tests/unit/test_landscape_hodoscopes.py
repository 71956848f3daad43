"""Landscapes, fronts, methods and sweeps of hodoscope designs (rigid modules whose centres move):
starts, stacking, grouping, design vectors, the module-count front and the refusals."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from mutomo.app.cli import main
from mutomo.config.build import build_design, build_problem, evaluation_settings, load_benchmark, settings_from
from mutomo.config.schema import load_config
from mutomo.design.describe import design_from_description
from mutomo.design.hodoscopes import HodoscopeDesign, HodoscopeModule, tiled_placement
from mutomo.design.stacked import StackedDesign
from mutomo.errors import MutomoError
from mutomo.optimise.loop import TrainingSettings, batch_loss
from mutomo.studies.baselines import search
from mutomo.studies.grouping import aligned_parameters, design_distance, group_designs
from mutomo.studies.landscape import LandscapeSettings, check_front, front_starts
from mutomo.studies.search import DesignVector, design_objective
from mutomo.studies.starts import MAX_DRAWS, jittered_starts, random_starts
from mutomo.sweep.gather import gather
from mutomo.sweep.plan import SweepPlan
from mutomo.sweep.trial import run_trial, setting

# A lorry in miniature: a 1.2 x 0.8 x 0.8 m cargo of water that may hide a 20 cm uranium cube,
# four 0.4 m modules of two panels tiled over and under it.
TINY_LORRY = """name = "tiny_lorry"
[task]
kind = "presence"
inference = "poca"
muons_per_volume = 400
reference = "clean"

[scene]
size = [1.2, 0.8, 0.8]
origin = [0.0, 0.0, 1.0]
voxel = 0.2

[scene.background]
material = "water"

[[scene.objects]]
name = "uranium cube"
material = "uranium"
size = [0.2, 0.2, 0.2]
low = { min = [0.0, 0.0, 0.0], max = [1.0, 0.6, 0.6] }
probability = 0.5

[muons]
theta_max_deg = 30.0

[hodoscope]
size = [0.4, 0.4, 0.1]
panel_heights = [0.0, 0.1]
cost = 1000.0

[region]
x = [-0.2, 1.4]
y = [-0.2, 1.0]
z_above = [1.9, 2.6]
z_below = [0.2, 0.9]

[designs.tiled]
modules = [[0.3, 0.4, 1.95], [0.9, 0.4, 1.95], [0.3, 0.4, 0.85], [0.9, 0.4, 0.85]]

[design]
start = "tiled"
trainable = ["xy", "z"]
fixed_budget = false

[training]
epochs = 1
volumes_per_epoch = 6
validation_volumes = 0

[evaluation]
n_volumes = 4
calibration_volumes = 2
min_hits = [2]
exposure_factors = [1.0]
compare = ["tiled"]
"""


def tiny_config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "tiny_lorry.toml"
    path.write_text(TINY_LORRY + extra)
    return path


@pytest.fixture(scope="module")
def lorry():
    return load_benchmark("lorry_uranium")


def lorry_template(problem, trainable=("xy", "z")) -> HodoscopeDesign:
    design = problem.design("poor", trainable)
    assert isinstance(design, HodoscopeDesign)
    return design


def valid(design: HodoscopeDesign) -> bool:
    """No module overlaps another or a keep-out box, and every centre lies in its range."""
    centres = design.centres.detach().double().numpy()
    ranges = np.array(design.centre_ranges())
    inside = (centres >= ranges[..., 0] - 1e-6) & (centres <= ranges[..., 1] + 1e-6)
    return design._layout.overlaps(centres) == [] and bool(inside.all())


# ----------------------------------------------------------------------------- starts


def test_random_hodoscope_starts_are_valid_deterministic_and_keep_each_module_on_its_side(lorry):
    template = lorry_template(lorry)
    starts = random_starts(template, 6, seed=3)
    for d in starts:
        assert isinstance(d, HodoscopeDesign) and valid(d)
        assert d.above == template.above and d.rotated == template.rotated
    assert min(design_distance(a, b) for i, a in enumerate(starts) for b in starts[i + 1 :]) > 0.05
    again = random_starts(template, 6, seed=3)
    for a, b in zip(starts, again, strict=True):
        torch.testing.assert_close(a.centres, b.centres, rtol=0, atol=0)
    assert not torch.allclose(random_starts(template, 1, seed=4)[0].centres, starts[0].centres)
    # Only the trainable groups are drawn: with xy alone every module keeps its height.
    flat = random_starts(lorry_template(lorry, ("xy",)), 3, seed=0)
    for d in flat:
        torch.testing.assert_close(d.module_z, template.module_z)
        assert valid(d)
    jittered = jittered_starts(template, 3, seed=0, jitter=0.3)
    assert design_distance(jittered[0], template) == 0.0 and all(valid(d) for d in jittered)
    assert 0 < design_distance(jittered[1], template) < 2.0


def test_random_hodoscope_starts_redraw_a_bounded_number_of_times_then_refuse(lorry, monkeypatch):
    calls = []

    def never(self, centres):
        calls.append(centres.clone())
        return False

    monkeypatch.setattr(HodoscopeDesign, "place_", never)
    with pytest.raises(MutomoError, match="could not be placed apart"):
        random_starts(lorry_template(lorry), 1, seed=0)
    assert len(calls) == MAX_DRAWS and not torch.equal(calls[0], calls[1])  # each a fresh draw


def test_a_tiled_last_row_with_fewer_modules_stays_centred(lorry):
    """Six modules a side: a row of four and a row of two, each spread evenly over the cargo's
    length, so that the short row sits in the middle, not at one end."""
    six = tiled_placement(lorry.bounds, lorry.scene.box, lorry.hodoscope, 12, keep_out=lorry.keep_out)
    x0, x1 = lorry.scene.box[:2]
    middle = 0.5 * (x0 + x1)
    for side in (True, False):
        rows: dict[float, list[float]] = {}
        for (x, y, _), above in zip(six.centres.tolist(), six.above, strict=True):
            if above == side:
                rows.setdefault(round(y, 6), []).append(x)
        assert sorted(len(r) for r in rows.values()) == [2, 4]
        for xs in rows.values():
            assert sum(xs) / len(xs) == pytest.approx(middle, abs=1e-6)


def test_tiled_placement_is_the_lorry_human_design_and_refuses_what_does_not_fit(lorry):
    tiled = tiled_placement(lorry.bounds, lorry.scene.box, lorry.hodoscope, 4, keep_out=lorry.keep_out)
    human = lorry.design("tiled", ())
    torch.testing.assert_close(tiled.centres, human.centres)
    eight = tiled_placement(lorry.bounds, lorry.scene.box, lorry.hodoscope, 8, keep_out=lorry.keep_out)
    assert eight.above == [True] * 4 + [False] * 4 and valid(eight)
    with pytest.raises(MutomoError, match=">= 2"):
        tiled_placement(lorry.bounds, lorry.scene.box, lorry.hodoscope, 1)
    wide = HodoscopeModule(size=(4.0, 4.0, 0.3), panel_heights=(0.0, 0.3))  # two do not fit the 6 m region
    with pytest.raises(MutomoError, match="tiled placement of 4 modules does not fit"):
        tiled_placement(lorry.bounds, lorry.scene.box, wide, 4, keep_out=lorry.keep_out)


# ----------------------------------------------------------------------------- stacking


def test_stacked_hodoscope_members_get_their_own_gradients_in_float64():
    """Each member of a stack of hodoscope designs (panel groups flattened by Detector.stack)
    gets the gradient it gets trained alone on the same volumes and muons."""
    problem = load_benchmark("ladle_furnace")  # a task that observes several designs in one pass
    problem.scene.dtype = torch.float64
    module = HodoscopeModule(size=(0.5, 0.5, 0.1), panel_heights=(0.0, 0.1))
    centres = [[0.25, 0.25, 1.5], [0.75, 0.75, 1.5], [0.25, 0.75, 0.3], [0.75, 0.25, 0.3]]
    template = HodoscopeDesign(module, centres, problem.bounds, keep_out=[problem.scene.box], dtype=torch.float64)
    members = random_starts(template, 3, seed=1)
    settings = TrainingSettings(epochs=1, volumes_per_epoch=4, muons_per_volume=300, validation_volumes=0)
    alone = []
    for d in members:
        assert d.module_xy.dtype == torch.float64
        batch_loss(d, problem, (0, 0, 0), 4, 300, problem.task.loss, settings).total.backward()
        alone.append((d.module_xy.grad.clone(), d.module_z.grad.clone()))
        d.zero_grad()
    stacked = StackedDesign(members)
    assert stacked.detector().design_shape == (3,)
    batch_loss(stacked, problem, (0, 0, 0), 4, 300, problem.task.loss, settings).total.backward()
    for d, (gxy, gz) in zip(members, alone, strict=True):
        assert float(gxy.abs().sum()) > 0
        torch.testing.assert_close(d.module_xy.grad, gxy, rtol=1e-7, atol=1e-10)
        torch.testing.assert_close(d.module_z.grad, gz, rtol=1e-7, atol=1e-10)


# ----------------------------------------------------------------------------- grouping


def reordered(design: HodoscopeDesign) -> HodoscopeDesign:
    """The same placement with the modules listed in reverse order."""
    d = design.describe()
    d["centres"], d["rotated"] = d["centres"][::-1], d["rotated"][::-1]
    return HodoscopeDesign.from_description(d)


def test_grouping_compares_module_centres_ignoring_their_order(lorry):
    a, b = random_starts(lorry_template(lorry), 2, seed=5)
    a2 = reordered(a)
    assert a2.centres.tolist() != a.centres.tolist()
    assert design_distance(a, a2) == pytest.approx(0.0, abs=1e-6)
    far = design_distance(a, b)
    assert far > 0.05
    assert group_designs([a, a2, b], threshold=0.05).tolist() == [0, 0, 1]
    names, params = aligned_parameters([a2, a, b], a)
    assert names[:3] == ["above1.x", "above1.y", "above1.z"] and len(names) == 4 * 3
    np.testing.assert_allclose(params[0], params[1], atol=1e-6)
    assert np.abs(params[2] - params[1]).max() == pytest.approx(far, rel=0.5)
    six = tiled_placement(lorry.bounds, lorry.scene.box, lorry.hodoscope, 6, keep_out=lorry.keep_out)
    assert design_distance(a, six) == float("inf")  # other module counts: infinitely far apart


# ----------------------------------------------------------------------------- methods


def test_design_vector_of_modules_round_trip_and_projection(lorry):
    design = lorry_template(lorry)
    vec = DesignVector(design)
    assert len(vec) == 12 and vec.names[:3] == ["module0.x", "module0.y", "module1.x"] and vec.names[8] == "module0.z"
    ranges = np.array(design.centre_ranges())
    np.testing.assert_allclose(vec.lower[:8], ranges[:, :2, 0].reshape(-1))
    np.testing.assert_allclose(vec.upper[8:], ranges[:, 2, 1])
    x = vec.get()
    x[8] -= 0.35  # module 0 lowered clear of module 1 (beside it at the same height)
    vec.set_(x)
    np.testing.assert_allclose(vec.get(), x, atol=1e-5)
    bunched = vec.lower.copy()  # every module on the same corner: overlapping until projected
    vec.set_(bunched)
    assert valid(design) and not np.allclose(vec.get(), bunched)


@pytest.mark.parametrize("method", ["random", "cma", "tpe", "gp", "surrogate"])
def test_every_method_runs_on_a_hodoscope_objective_and_places_only_valid_designs(tmp_path, method):
    config = load_config(tiny_config(tmp_path))
    problem = build_problem(config)
    design = build_design(config, problem)
    assert isinstance(design, HodoscopeDesign)
    training = replace(settings_from(config, problem), muons_per_volume=50)
    vec = DesignVector(design)
    objective, per_call = design_objective(design, problem, training, vector=vec)
    seen: list[bool] = []

    def checked(x: np.ndarray) -> float:
        value = objective(x)
        seen.append(valid(design))
        return value

    calls = 24 if method == "surrogate" else 4  # the surrogate needs 2 x 12 points an iteration
    found = search(method, checked, vec.bounds, calls * per_call, muons_per_call=per_call, seed=0, x0=vec.get())
    vec.set_(found.x)
    assert seen and all(seen) and valid(design) and found.calls == len(seen)


# ----------------------------------------------------------------------------- landscape, front, sweep


def test_cli_landscape_of_three_hodoscope_starts_with_a_module_count_front(tmp_path, capsys):
    config = tiny_config(tmp_path)
    out = tmp_path / "out"
    args = ["landscape", str(config), "--starts", "3", "--modules", "2", "4", "--front-starts", "1"]
    assert main([*args, "--output", str(out)]) == 0
    result = json.loads((out / "landscape.json").read_text())
    assert len(result["starts"]) == 3 and all(s["design"]["kind"] == "hodoscopes" for s in result["starts"])
    assert result["clusters"][0]["sets_apart"]["parameter"].startswith(("above", "below"))
    assert set(result["humans"]) == {"tiled"}
    best = design_from_description(json.loads((out / "designs" / "best.json").read_text()))
    assert isinstance(best, HodoscopeDesign) and valid(best)
    front = result["front"]
    assert front["axis"] == "modules" and [p["modules"] for p in front["budgets"]] == [2, 4]
    assert [p["budget"] for p in front["budgets"]] == [2000.0, 4000.0]  # K x the module's price
    assert [len(p["design"]["centres"]) for p in front["budgets"]] == [2, 4]
    tiled = front["humans"]["tiled placement"]["scaled"]
    assert [(t["modules"], t["cost"]) for t in tiled] == [(2, 2000.0), (4, 4000.0)]
    assert front["humans"]["tiled"]["cost"] == 4000.0  # the configuration's human design, as given
    assert (out / "figures" / "module_front.png").stat().st_size > 0
    report = (out / "report.html").read_text()
    assert "Module-count front" in report and "tiled placement" in report
    assert "2 modules (cost 2000)" in capsys.readouterr().out


def test_sweep_trials_of_a_hodoscope_design_without_ray(tmp_path):
    """Start, module-count front and CMA-ES trials of a hodoscope sweep, run as a Ray worker runs
    them, then gathered as the sweep gathers them."""
    config = load_config(
        tiny_config(
            tmp_path, '[sweep]\nstarts = 2\nmodules = [2, 4]\nfront_starts = 1\nmethods = ["cma"]\nmethod_seeds = 1\n'
        )
    )
    plan = SweepPlan.from_config(config)
    trials = plan.trials()
    names = [t.name for t in trials]
    assert names == ["start_000", "start_001", "front_k2_s0", "front_k4_s0", "cma_s0"]
    sizes = {"epochs": 2, "muons_per_volume": 100}
    threads = torch.get_num_threads()
    try:
        results = {t.name: run_trial(config, plan, t, str(tmp_path / "trials" / t.name), sizes, 1) for t in trials}
    finally:
        torch.set_num_threads(threads)
    assert [len(results[n]["design"]["centres"]) for n in names] == [4, 4, 2, 4, 4]
    assert results["cma_s0"]["start"] == results["start_000"]["start"] and results["cma_s0"]["calls"] == 2
    s = setting(config, sizes)
    humans = {"tiled": s.problem.design("tiled", ())}
    out = gather(s.problem, plan, results, evaluation_settings(config), humans, s.template)
    assert [e["trial"] for e in out["starts"]] == ["start_000", "start_001"]
    assert out["front"]["axis"] == "modules" and [p["modules"] for p in out["front"]["budgets"]] == [2, 4]
    assert out["methods"]["cma"]["seeds"] == [0]


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("kwargs", "said"),
    [
        ({"modules": (1,)}, "modules must be integers >= 2"),
        ({"modules": (2.5,)}, "modules must be integers >= 2"),
        ({"modules": (True,)}, "modules must be integers >= 2"),
        ({"modules": (2,), "budgets": (100.0,)}, "budgets and modules"),
    ],
)
def test_landscape_settings_refuse_bad_module_counts_naming_the_field(kwargs, said):
    with pytest.raises(MutomoError, match=said):
        LandscapeSettings(**kwargs)


def test_fronts_are_refused_where_they_make_no_sense(lorry):
    template = lorry_template(lorry)
    with pytest.raises(MutomoError, match="budgets: .*hodoscope modules are bought as built"):
        check_front(template, LandscapeSettings(budgets=(1000.0,)))
    ladle = load_benchmark("ladle_furnace")
    with pytest.raises(MutomoError, match="modules: a module-count front needs a design of hodoscope modules"):
        check_front(ladle.design("human_acceptance", ("xy",), 6000.0), LandscapeSettings(modules=(2,)))
    free = replace(template.module, cost=0.0)
    priceless = HodoscopeDesign(free, template.centres.detach(), template.bounds, keep_out=template.keep_out)
    with pytest.raises(MutomoError, match=r"hodoscope.cost > 0"):
        check_front(priceless, LandscapeSettings(modules=(2,)))
    with pytest.raises(MutomoError, match="scene's box"):
        front_starts(template, LandscapeSettings(modules=(2,)))


@pytest.mark.parametrize(
    ("sweep", "said"),
    [
        ("budgets = [1000.0]", "sweep.budgets: a budget front scales panels"),
        ("modules = [1, 4]", "sweep.modules"),
        ("modules = [2.5]", "sweep.modules"),
        ("modules = [2]\nbudgets = [1000.0]", "not both"),
    ],
)
def test_sweep_refuses_budgets_with_hodoscopes_and_bad_module_counts(tmp_path, capsys, sweep, said):
    config = tiny_config(tmp_path, f"[sweep]\nstarts = 1\n{sweep}\n")
    assert main(["sweep", str(config), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # refused before any trial started


def test_cli_landscape_refuses_budgets_with_hodoscopes_and_bad_module_counts(tmp_path, capsys):
    config = str(tiny_config(tmp_path))
    assert main(["landscape", config, "--starts", "2", "--budgets", "1000", "--output", str(tmp_path / "a")]) == 2
    assert "--budgets: a budget front scales panels" in capsys.readouterr().err
    assert main(["landscape", config, "--starts", "2", "--modules", "1", "--output", str(tmp_path / "b")]) == 2
    assert "modules must be integers >= 2" in capsys.readouterr().err
    assert main(["landscape", "ladle_furnace", "--starts", "2", "--modules", "2", "--output", str(tmp_path / "c")]) == 2
    assert "--modules: a module-count front needs a design of hodoscope modules" in capsys.readouterr().err
