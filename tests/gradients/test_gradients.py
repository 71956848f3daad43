"""Gradients: float64 gradcheck of the primitives, finite differences end to end, no NaN/inf."""

import pytest
import torch
from torch import nn
from torch.autograd import gradcheck

from mutomo.detector import AreaCostModel, Detector, DetectorPanel, smooth_acceptance
from mutomo.muons import FluxSource, GenerationPlane, TabulatedFlux
from mutomo.simulate import simulate
from mutomo.volume import PassiveVolume
from mutomo.volume.scattering import ScatterState, draw_scatter_randoms, scatter_step

D = torch.float64


def test_gradcheck_acceptance():
    xy = torch.rand(3, 5, 2, dtype=D) * 1.4 - 0.2
    centre = torch.full((3, 2), 0.5, dtype=D, requires_grad=True)
    span = torch.full((3, 2), 0.8, dtype=D, requires_grad=True)
    assert gradcheck(lambda c, s: smooth_acceptance(xy, c, s, 0.05), (centre, span))


def test_gradcheck_hits_and_weights_wrt_every_panel_parameter():
    gen = torch.Generator().manual_seed(0)
    muons = FluxSource(GenerationPlane(2.0, (0.0, 1.0), (0.0, 1.0)), TabulatedFlux(momentum_range=(1, 100))).sample(
        20, gen, dtype=D
    )
    noise = torch.randn(1, 20, 2, generator=gen, dtype=D)

    def hits(centre, span, resolution, efficiency):
        panel = DetectorPanel(centre, span, resolution, efficiency, dtype=D)  # plain tensors keep the graph
        det = Detector([panel], [DetectorPanel((0.5, 0.5, 0.0), (1.0, 1.0), dtype=D)], smoothness=0.05)
        h = det.hits(muons, "above", noise)
        return h.xy, h.weight

    args = (
        torch.tensor([0.5, 0.5, 1.5], dtype=D, requires_grad=True),
        torch.tensor([0.7, 0.9], dtype=D, requires_grad=True),
        torch.tensor([1e-3], dtype=D, requires_grad=True),
        torch.tensor([0.9], dtype=D, requires_grad=True),
    )
    assert gradcheck(hits, args)


def test_gradcheck_cost():
    model = AreaCostModel()
    args = (
        torch.tensor([[1.0, 2.0]], dtype=D, requires_grad=True),
        torch.tensor([2e-4], dtype=D, requires_grad=True),
        torch.tensor([0.8], dtype=D, requires_grad=True),
    )
    assert gradcheck(model, args)


def test_gradcheck_scatter_step_wrt_x0():
    n = 6
    gen = torch.Generator().manual_seed(1)
    p = torch.linspace(1, 50, n, dtype=D)
    unit = torch.nn.functional.normalize(torch.tensor([0.1, -0.2, -1.0], dtype=D), dim=0)
    direction = tuple(torch.full((n,), float(c), dtype=D) for c in unit)
    randoms = draw_scatter_randoms(n, gen, D, None)
    randoms[4] = 0.9  # no hard scatter: the step is smooth in x0

    def step(x0):
        full = lambda v: torch.full((n,), v, dtype=D)  # noqa: E731
        d, disp, _ = scatter_step(
            direction,
            p,
            full(1.0),
            ScatterState.zeros(p),
            full(0.01),
            x0,
            full(2.7e-5),
            full(2e-11),
            full(0.05),
            randoms,
        )
        return (*d, *disp)

    assert gradcheck(step, (torch.full((n,), 0.0176, dtype=D, requires_grad=True),))


def small_setup(z_above=1.3):
    volume = PassiveVolume.uniform("iron", (1.0, 1.0, 0.4), 0.1, z_low=0.4, dtype=D)
    above = [
        DetectorPanel(
            nn.Parameter(torch.tensor([0.5, 0.5, z], dtype=D)),
            nn.Parameter(torch.tensor([0.8, 0.8], dtype=D)),
            nn.Parameter(torch.tensor([1e-3], dtype=D)),
            nn.Parameter(torch.tensor([0.9], dtype=D)),
            dtype=D,
        )
        for z in (z_above, 1.2)
    ]
    below = [DetectorPanel((0.5, 0.5, z), (1.0, 1.0), 1e-3, 0.9, dtype=D) for z in (0.3, 0.2)]
    return volume, Detector(above, below, smoothness=0.02)


def score(z_above: float) -> torch.Tensor:
    """A scalar built from hits: weighted spread of the hit residuals plus a weighted count."""
    volume, det = small_setup(z_above)
    plane = GenerationPlane(1.5, (-0.2, 1.2), (-0.2, 1.2))
    source = FluxSource(plane, TabulatedFlux(momentum_range=(1.0, 100.0)))
    r = simulate(det, volume, source, 2000, torch.Generator().manual_seed(5))
    h = r.hits_above
    return (h.weight * (h.xy - 0.5).pow(2).sum(-1)).mean() + h.weight.mean()


def test_end_to_end_gradient_matches_finite_differences():
    """d score / d z of the top panel, autograd vs central differences with the same random draws."""
    z = 1.3
    volume, det = small_setup(z)
    plane = GenerationPlane(1.5, (-0.2, 1.2), (-0.2, 1.2))
    source = FluxSource(plane, TabulatedFlux(momentum_range=(1.0, 100.0)))
    r = simulate(det, volume, source, 2000, torch.Generator().manual_seed(5))
    h = r.hits_above
    value = (h.weight * (h.xy - 0.5).pow(2).sum(-1)).mean() + h.weight.mean()
    value.backward()
    grad = float(det.above[0].panels[0].centre.grad[2])
    eps = 1e-4
    numeric = (float(score(z + eps).detach()) - float(score(z - eps).detach())) / (2 * eps)
    assert abs(grad - numeric) <= 1e-4 * max(1.0, abs(numeric)) + 1e-6
    for p in det.parameters():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all())


def test_no_nan_for_muons_missing_or_grazing_panels():
    volume, det = small_setup()
    # Muons far outside, exactly on the edges, and inside.
    plane = GenerationPlane(1.5, (-5.0, 6.0), (-5.0, 6.0))
    source = FluxSource(plane, TabulatedFlux(momentum_range=(0.2, 100.0)))
    r = simulate(det, volume, source, 5000, torch.Generator().manual_seed(2))
    loss = (r.hits_above.weight * r.hits_above.xy.sum(-1)).sum() + r.hits_below.weight.sum() + det.cost()
    loss.backward()
    for name, p in det.named_parameters():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()), name
    edge = torch.tensor([[[0.1, 0.5]]], dtype=D)  # exactly on an edge of a 0.8 m panel centred at 0.5
    centre = torch.tensor([[0.5, 0.5]], dtype=D, requires_grad=True)
    w = smooth_acceptance(edge, centre, torch.tensor([[0.8, 0.8]], dtype=D), 1e-6)
    w.sum().backward()
    assert bool(torch.isfinite(centre.grad).all())


def lead_in_water_run(resolution: float, z_top: float):
    """A lead block in water seen by 3 + 3 panels, the top one's resolution and centre trainable;
    fixed draws, float64. Returns (simulation result, volume, detector)."""
    volume = PassiveVolume.uniform("water", (1.0, 1.0, 0.4), 0.1, z_low=0.4, dtype=D).with_box(
        "lead", (0.3, 0.3, 0.5), (0.7, 0.7, 0.7)
    )
    res = nn.Parameter(torch.tensor([resolution], dtype=D))
    z = nn.Parameter(torch.tensor([0.5, 0.5, z_top], dtype=D))
    above = [DetectorPanel(z, (1.2, 1.2), res, 0.9, dtype=D)] + [
        DetectorPanel((0.5, 0.5, zz), (1.2, 1.2), 1e-3, 0.9, dtype=D) for zz in (1.0, 0.9)
    ]
    below = [DetectorPanel((0.5, 0.5, zz), (1.2, 1.2), 1e-3, 0.9, dtype=D) for zz in (0.3, 0.2, 0.1)]
    det = Detector(above, below, smoothness=0.02)
    source = FluxSource(GenerationPlane(1.3, (-0.1, 1.1), (-0.1, 1.1)), TabulatedFlux(momentum_range=(0.5, 50.0)))
    return simulate(det, volume, source, 3000, torch.Generator().manual_seed(9)), volume, det


def reco_quantity(resolution: float, z_top: float) -> tuple[torch.Tensor, Detector]:
    """Extended-PoCA weight of high-angle scatters in the central voxels, with fixed draws."""
    from mutomo.reco import compute_scatters, extended_poca, fit_tracks

    r, volume, det = lead_in_water_run(resolution, z_top)
    tin = fit_tracks(r.hits_above, volume.z_high, r.muons_in.weight)
    tout = fit_tracks(r.hits_below, volume.z_low)
    sc = compute_scatters(tin, tout, 0.6)
    grid = extended_poca(sc.poca, sc.poca_covariance, sc.weight, volume).to_grid(volume.shape, values=sc.theta**2)
    return grid[3:7, 3:7, 1:3].sum() / grid.sum(), det


def test_reconstructed_quantity_gradient_matches_finite_differences():
    """d(quantity)/d(resolution, z) of a reconstruction-level quantity, autograd vs central differences."""
    value, det = reco_quantity(2e-3, 1.1)
    value.backward()
    panel = det.above[0].panels[0]
    grad_res, grad_z = float(panel.resolution.grad), float(panel.centre.grad[2])
    h_res, h_z = 1e-8, 1e-6
    fd_res = (
        float(reco_quantity(2e-3 + h_res, 1.1)[0].detach()) - float(reco_quantity(2e-3 - h_res, 1.1)[0].detach())
    ) / (2 * h_res)
    fd_z = (float(reco_quantity(2e-3, 1.1 + h_z)[0].detach()) - float(reco_quantity(2e-3, 1.1 - h_z)[0].detach())) / (
        2 * h_z
    )
    assert grad_res == pytest.approx(fd_res, rel=1e-3, abs=1e-6)
    assert grad_z == pytest.approx(fd_z, rel=1e-3, abs=1e-6)
    for p in det.parameters():
        assert bool(torch.isfinite(p.grad).all())


def scatter_data(resolution: float, z_top: float):
    """ScatterData (and the detector) of :func:`lead_in_water_run`."""
    from mutomo.reco import measure

    r, volume, det = lead_in_water_run(resolution, z_top)
    return measure(r.hits_above, r.hits_below, volume, r.muons_in.momentum, r.muons_in.weight), volume, det


def task_quantities(resolution: float, z_top: float):
    from mutomo.reco import AngleStatisticsReconstruction, BinnedClustering
    from mutomo.reco.x0 import PocaX0
    from mutomo.tasks.statistics import poca_height, presence_score

    data, volume, det = scatter_data(resolution, z_top)
    quantities = {
        "fill_height": poca_height(data, volume),
        "presence_extended_poca": presence_score(PocaX0()(data, volume)),
        "asr_mean": AngleStatisticsReconstruction(min_weight=1.0)(data, volume).score.mean(),
        "bca_mean": BinnedClustering()(data, volume).score.mean(),
    }
    return quantities, det


@pytest.mark.parametrize("name", ["fill_height", "presence_extended_poca", "asr_mean", "bca_mean"])
def test_task_quantity_gradients_match_finite_differences(name):
    """d(task answer)/d(resolution, z of the top panel): autograd vs central differences, same draws."""
    value, det = task_quantities(2e-3, 1.1)
    value[name].backward()
    panel = det.above[0].panels[0]
    grads = float(panel.resolution.grad), float(panel.centre.grad[2])
    h_res, h_z = 1e-9, 1e-7

    def q(res, z):
        return float(task_quantities(res, z)[0][name].detach())

    fd = (
        (q(2e-3 + h_res, 1.1) - q(2e-3 - h_res, 1.1)) / (2 * h_res),
        (q(2e-3, 1.1 + h_z) - q(2e-3, 1.1 - h_z)) / (2 * h_z),
    )
    for g, f in zip(grads, fd, strict=True):
        assert g == pytest.approx(f, rel=2e-3, abs=1e-6)
    for p in det.parameters():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all())


def test_measure_compaction_changes_neither_values_nor_gradients():
    """Keeping only the muons of nonzero weight (the default) gives the X0 map, the fill height
    and their gradients of keeping every muon, to float64 rounding."""
    from mutomo.reco import measure
    from mutomo.reco.x0 import PocaX0
    from mutomo.tasks.statistics import poca_height

    results = []
    for compact in (True, False):
        r, volume, det = lead_in_water_run(2e-3, 1.1)
        data = measure(r.hits_above, r.hits_below, volume, r.muons_in.momentum, r.muons_in.weight, compact=compact)
        vmap = PocaX0()(data, volume)
        (vmap.x0.sum() + poca_height(data, volume)).backward()
        results.append((vmap.x0.detach(), [p.grad.clone() for p in det.parameters()], len(data.weight)))
    (x0_c, grads_c, n_c), (x0_a, grads_a, n_a) = results
    assert n_c < n_a  # some muons were dropped
    torch.testing.assert_close(x0_c, x0_a, rtol=1e-9, atol=1e-12)
    for gc, ga in zip(grads_c, grads_a, strict=True):
        torch.testing.assert_close(gc, ga, rtol=1e-7, atol=1e-12)
