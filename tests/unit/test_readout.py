"""The physical readout: hard edges, Bernoulli hits, trigger; and where it must equal the smooth one."""

import math

import numpy as np
import pytest
import torch

from mutomo.config.build import load_benchmark
from mutomo.detector import Detector, DetectorPanel
from mutomo.detector.readout import physical_readout, sampled_readout
from mutomo.muons import FluxSource, TabulatedFlux
from mutomo.optimise.evaluate import EvaluationSettings, observe_design
from mutomo.simulate import acceptance_plane, simulate
from mutomo.volume import PassiveVolume


def _run(efficiency: float, smoothness: float = 0.01, n: int = 20_000):
    panel = lambda z: DetectorPanel((0.5, 0.5, z), (0.8, 0.8), 1e-4, efficiency)  # noqa: E731
    det = Detector([panel(1.6), panel(1.5), panel(1.45)], [panel(0.3), panel(0.2), panel(0.1)], smoothness)
    vol = PassiveVolume.uniform("water", (1.0, 1.0, 1.0), 0.1, z_low=0.4)
    source = FluxSource(acceptance_plane(det, math.radians(40)), TabulatedFlux(theta_max=math.radians(40)))
    return det, simulate(det, vol, source, n, torch.Generator().manual_seed(0))


def test_hits_are_recorded_with_the_panel_efficiency_inside_hard_edges_only():
    det, r = _run(0.7)
    hits = physical_readout(r.hits_above, det, "above", r.muons_in.weight, torch.Generator().manual_seed(1), 1)
    w = hits.weight
    assert set(torch.unique(w).tolist()) <= {0.0, 1.0}
    inside = ((r.hits_above.true_xy - 0.5).abs() <= 0.4).all(-1)
    assert not bool((w.bool() & ~inside).any())  # never a hit outside a panel
    rate = float(w[inside].mean())
    n = int(inside.sum())
    assert abs(rate - 0.7) < 4 * math.sqrt(0.21 / n)


def test_the_trigger_keeps_a_side_only_with_enough_hits():
    det, r = _run(0.7)
    gen = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    for need in (2, 3, None):
        w = physical_readout(r.hits_above, det, "above", r.muons_in.weight, gen(), need).weight
        count = w.sum(0)
        assert bool(((count == 0) | (count >= (need or 3))).all())
    with pytest.raises(ValueError, match="min_hits"):
        physical_readout(r.hits_above, det, "above", r.muons_in.weight, gen(), 4)


def test_physical_equals_smooth_with_perfect_efficiency_and_sharp_edges():
    det, r = _run(1.0, smoothness=1e-7)
    hits = physical_readout(r.hits_above, det, "above", r.muons_in.weight, torch.Generator().manual_seed(1), 1)
    agree = torch.isclose(hits.weight, r.hits_above.weight, atol=1e-4)
    assert float(agree.float().mean()) > 0.9999


def test_evaluations_agree_where_they_must():
    """Ladle furnace, a design with efficiency 1 and sharp edges: the physical and smooth readouts
    give the same fill statistic on every test volume; with efficiency 0.9 they differ."""
    problem = load_benchmark("ladle_furnace")
    settings = EvaluationSettings(n_volumes=4, calibration_volumes=2, min_hits=(2,), smoothness=1e-7)
    design = problem.design("human_acceptance", ())
    with torch.no_grad():
        design.logit_efficiency.fill_(30.0)  # efficiency 1 - 1e-13
    obs = observe_design(design, problem, settings)
    np.testing.assert_allclose(obs.test["physical"].outputs, obs.test["smooth"].outputs, rtol=1e-4)
    lossy = observe_design(problem.design("human_acceptance", ()), problem, settings)
    assert not np.allclose(lossy.test["physical"].outputs, lossy.test["smooth"].outputs, rtol=1e-4)


def test_sampled_hits_keep_the_acceptance_draw_the_efficiency_and_pass_its_gradient():
    det, r = _run(0.7, n=5000)
    efficiency = torch.nn.Parameter(torch.tensor([0.7]))
    panels = [DetectorPanel((0.5, 0.5, z), (0.8, 0.8), 1e-4, efficiency) for z in (1.6, 1.5, 1.45)]
    trainable = Detector(panels, [DetectorPanel((0.5, 0.5, 0.2), (0.8, 0.8))] * 2, 0.01)
    hits = trainable.hits(r.muons_in, "above", torch.zeros(3, 5000, 2))
    sampled = sampled_readout(hits, trainable, "above", torch.Generator().manual_seed(3))
    acceptance = hits.weight / 0.7
    kept = sampled.weight > 0
    # Each hit is its smooth acceptance or nothing, kept with the panel's efficiency.
    assert torch.allclose(sampled.weight[kept], acceptance[kept], rtol=1e-5)
    inside = acceptance > 0.99
    rate = float(kept[inside].float().mean())
    assert abs(rate - 0.7) < 4 * math.sqrt(0.21 / int(inside.sum()))
    # Straight through: d(sum of weights)/d(efficiency) = sum of acceptances, as for the expectation.
    sampled.weight.sum().backward()
    assert float(efficiency.grad) == pytest.approx(float(acceptance.detach().sum()), rel=1e-4)
