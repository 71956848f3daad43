"""The ideal-detector bounds and a design's share of the possible gain (mutomo.studies.bounds,
``mutomo bound``, the bounds in a run's evaluations)."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from mutomo.app.bound import bound
from mutomo.app.cli import main
from mutomo.config import build_design, build_problem, parse_config
from mutomo.config.build import evaluation_settings
from mutomo.config.schema import ConfigError
from mutomo.design.base import DesignBounds
from mutomo.errors import MutomoError
from mutomo.optimise.evaluate import observe_design
from mutomo.reco.momentum_options import MOMENTUM_OPTIONS, MomentumContext, measured_momentum, smear_factor
from mutomo.studies.bounds import gain_shares, ideal_design, momentum_problem, share_of_gain
from mutomo.tasks import Metric

TINY = {
    "extends": "ladle_furnace",
    "task": {"muons_per_volume": 200},
    "evaluation": {"n_volumes": 8, "calibration_volumes": 6, "min_hits": [2]},
}


def _tiny(**evaluation):
    return parse_config({**TINY, "evaluation": {**TINY["evaluation"], **evaluation}})


def test_the_ideal_detector_covers_the_region_at_its_best_and_ignores_cost():
    config = _tiny()
    problem = build_problem(config)
    start = build_design(config, problem)
    ideal = ideal_design(problem, start)
    b = problem.bounds
    assert ideal.budget is None and ideal.trainable == ()  # no budget: cost ignored
    assert ideal.n_above == start.n_above and ideal.xy.shape == start.xy.shape  # as many panels a side
    for (x, y), span in zip(ideal.xy.detach().tolist(), ideal.span.detach().tolist(), strict=True):
        # every (square) panel covers the whole region's footprint
        assert x - span / 2 <= b.x[0] + 1e-6 and x + span / 2 >= b.x[1] - 1e-6
        assert y - span / 2 <= b.y[0] + 1e-6 and y + span / 2 >= b.y[1] - 1e-6
    torch.testing.assert_close(ideal.resolution, torch.full((8,), b.resolution[0]))
    torch.testing.assert_close(ideal.efficiency, torch.full((8,), b.efficiency[1]))
    z = ideal.z.detach()
    above, below = z[: ideal.n_above], z[ideal.n_above :]
    assert float(above.min()) == pytest.approx(b.z_above[0]) and float(above.max()) == pytest.approx(b.z_above[1])
    assert float(below.min()) == pytest.approx(b.z_below[0]) and float(below.max()) == pytest.approx(b.z_below[1])
    # it costs more than the start's whole budget: the bound is what money cannot buy
    assert float(ideal.cost().detach()) > start.budget


def test_a_region_that_is_not_finite_is_refused_naming_the_field():
    problem = build_problem(_tiny())
    unbounded = dataclasses.replace(
        problem, bounds=DesignBounds((-math.inf, 1.5), (-0.5, 1.5), (1.42, 2.2), (-0.4, 0.38))
    )
    with pytest.raises(ConfigError, match=r"region\.x must be finite"):
        ideal_design(unbounded)


@pytest.mark.parametrize("resolution", [0.0, -0.1, 1.5])
def test_a_momentum_resolution_outside_zero_one_is_refused_naming_the_field(resolution):
    with pytest.raises(MutomoError, match="bound_momentum_resolution"):
        _tiny(bound_momentum_resolution=resolution)
    with pytest.raises(ConfigError, match=r"evaluation\.bound_momentum_resolution must be in \(0, 1\]"):
        momentum_problem(build_problem(_tiny()), resolution)


def test_share_of_gain_closed_forms():
    # a design equal to the start: no gain, whatever the errors
    same = share_of_gain(Metric(0.0, 0.0), Metric(-4.0, 0.5), Metric(4.0, 0.5), higher_is_better=False)
    assert same == Metric(0.0, 0.0)
    # a design equal to the ideal: all of it
    full = share_of_gain(Metric(-4.0, 0.5), Metric(-4.0, 0.5), Metric(0.0, 0.0), higher_is_better=False)
    assert full == Metric(1.0, 0.0)
    # higher is better (AUC): half way; independent errors (var(D_d - D_i) = var_d + var_i, cov 0)
    half = share_of_gain(Metric(0.1, 0.03), Metric(0.2, 0.04), Metric(-0.1, 0.05), higher_is_better=True)
    assert half.value == pytest.approx(0.5)
    assert half.error == pytest.approx(math.sqrt(0.03**2 + 0.25 * 0.04**2) / 0.2)
    # no possible gain: undefined, not infinite
    assert math.isnan(share_of_gain(Metric(0.1, 0.1), Metric(0.0, 0.1), Metric(0.1, 0.1), True).value)


def test_gain_shares_of_the_start_and_of_the_ideal_are_zero_and_one_on_real_observations():
    config = _tiny()
    problem = build_problem(config)
    settings = evaluation_settings(config)
    start = observe_design(build_design(config, problem), problem, settings)
    ideal = observe_design(ideal_design(problem), problem, settings)
    shares = gain_shares(problem, {"start": start, "ideal": ideal, "again": start, "twin": ideal}, start="start")
    for readout in ("smooth", "physical"):
        assert shares["again"][readout]["mse"] == Metric(0.0, 0.0)
        assert shares["twin"][readout]["mse"].value == pytest.approx(1.0)
        assert shares["twin"][readout]["mse"].error == pytest.approx(0.0, abs=1e-9)


def _context(n: int = 20_000, seed: int = 0) -> MomentumContext:
    config = _tiny()
    problem = build_problem(config)
    generator = torch.Generator().manual_seed(seed)
    muons = problem.source.sample(n, generator)
    out = dataclasses.replace(muons, momentum=muons.momentum * 0.99)
    sample = problem.sample((1, 2, 3), index=0)
    return MomentumContext(muons, out, sample.volume, problem.scene.nominal_background(), problem.source.flux)


def test_zero_smearing_is_the_true_momentum_and_ten_percent_smears_by_ten_percent():
    c = _context()
    true = MOMENTUM_OPTIONS["true"]
    exact = measured_momentum(0.0)
    torch.testing.assert_close(exact.measured_momenta(c), true.measured_momenta(c), rtol=0, atol=0)
    torch.testing.assert_close(exact.momentum_loss(c), true.momentum_loss(c), rtol=0, atol=0)
    smeared = measured_momentum(0.1)
    ratio = (smeared.measured_momenta(c) / true.measured_momenta(c)).numpy()
    assert ratio.mean() == pytest.approx(1.0, abs=3 * 0.1 / np.sqrt(ratio.size))
    assert ratio.std() == pytest.approx(0.1, rel=0.03)
    # the loss in the volume is measured with the same factor, and the same muons get the same draws
    loss_ratio = (smeared.momentum_loss(c) / true.momentum_loss(c)).numpy()
    np.testing.assert_allclose(loss_ratio, ratio, rtol=1e-6)
    torch.testing.assert_close(smear_factor(c, 0.1), smear_factor(c, 0.1), rtol=0, atol=0)
    other = smear_factor(_context(seed=1), 0.1)
    assert not torch.equal(other, smear_factor(c, 0.1))  # another volume's muons: other draws
    assert float(smear_factor(c, 1.0).min()) > 0  # never a negative momentum


def test_zero_smearing_observes_what_the_true_momentum_observes_in_a_problem():
    config = _tiny()
    problem = build_problem(config)
    settings = evaluation_settings(config)
    design = ideal_design(problem)
    exact = dataclasses.replace(problem, momentum=measured_momentum(0.0))
    oracle = dataclasses.replace(problem, momentum=MOMENTUM_OPTIONS["true"])
    a, b = observe_design(design, exact, settings), observe_design(design, oracle, settings)
    for name in a.test:
        np.testing.assert_array_equal(a.test[name].outputs, b.test[name].outputs)


def test_mutomo_bound_on_a_configuration(tmp_path, capsys):
    """A short bound run from a configuration file, as a user types it."""
    path = tmp_path / "tiny.toml"
    path.write_text(
        'extends = "ladle_furnace"\n[task]\nmuons_per_volume = 200\n'
        "[evaluation]\nn_volumes = 8\ncalibration_volumes = 6\nmin_hits = [2]\nbound_momentum_resolution = 0.2\n"
    )
    out = tmp_path / "bound.json"
    design = tmp_path / "mine.json"
    design.write_text(build_problem(_tiny()).design("human_resolution").to_json())
    args = ["bound", str(path), "--design", "human_acceptance", "--design", f"mine={design}", "--json", str(out)]
    assert main(args) == 0
    result = json.loads(out.read_text())
    names = {"start", "human_resolution", "human_acceptance", "mine", "ideal", "ideal_momentum"}
    assert set(result["designs"]) == names
    assert result["bounds"]["momentum_resolution"] == 0.2 and "cost ignored" in result["bounds"]["ideal"]
    assert "ideal - start" in result["paired"] and "ideal_momentum - ideal" in result["paired"]
    assert set(result["shares"]) == names - {"start", "ideal"}
    assert result["shares"]["mine"] == result["shares"]["human_resolution"]  # the same design, the same share
    # the fill statistic uses no momentum: measuring it adds exactly nothing
    assert result["paired"]["ideal_momentum - ideal"]["physical"]["mse"] == [0.0, 0.0]
    printed = capsys.readouterr().out
    assert "share of the possible gain" in printed and "human_acceptance" in printed


def test_bound_refuses_an_unknown_design_naming_the_option(tmp_path):
    with pytest.raises(ConfigError, match="--design"):
        bound(_tiny(), ["no_such_design"], tmp_path / "b.json", progress=False)


def test_a_repeated_bound_with_a_cache_observes_only_the_new_design(tmp_path, monkeypatch):
    """``--cache``: the second bound of the same configuration reads back what the first observed,
    observes only the design added since, and gives the same numbers for the designs both saw; a
    folder holding another configuration's work is refused."""
    cache = tmp_path / "cache"
    first = bound(_tiny(bounds=["ideal"]), [], tmp_path / "a.json", progress=False, cache=cache)
    observed: list[str] = []
    real = bound.__globals__["observations_cached"]

    def counting(folder, name, *args, **kwargs):
        if not (folder / "observations" / f"{name}.npz").exists():
            observed.append(name)
        return real(folder, name, *args, **kwargs)

    monkeypatch.setitem(bound.__globals__, "observations_cached", counting)
    second = bound(_tiny(bounds=["ideal"]), ["human_acceptance"], tmp_path / "b.json", progress=False, cache=cache)
    assert observed == [] and set(second["designs"]) == set(first["designs"])  # human_acceptance is compared
    later = tmp_path / "later.json"
    later.write_text(build_problem(_tiny()).design("poor").to_json())
    third = bound(_tiny(bounds=["ideal"]), [f"later={later}"], tmp_path / "c.json", progress=False, cache=cache)
    assert observed == ["later"]
    for name, values in first["designs"].items():
        assert third["designs"][name]["physical"] == values["physical"]
    with pytest.raises(ConfigError, match="different configuration"):
        bound(_tiny(bounds=["ideal"], n_volumes=9), [], tmp_path / "d.json", progress=False, cache=cache)


def test_a_folder_saved_before_a_field_was_added_is_the_same_configuration(tmp_path):
    """A configuration saved by an earlier version, without a field added since at its default,
    still claims its folder (cached work is reused across such upgrades); a changed value does not."""
    from mutomo.app.observations import claim_folder

    config = parse_config({"extends": "waste_block"})
    saved = json.loads(config.model_dump_json())
    for obj in saved["scene"]["objects"]:
        del obj["below_fill"]  # as written before scene objects had the option
    (tmp_path / "config.json").write_text(json.dumps(saved))
    claim_folder(tmp_path, config, "remedy")
    with pytest.raises(ConfigError, match="different configuration; remedy"):
        claim_folder(tmp_path, parse_config({"extends": "waste_block", "task": {"exposure_s": 300}}), "remedy")
