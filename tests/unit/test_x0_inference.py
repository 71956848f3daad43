"""The X0 estimator on data drawn exactly from its own model: closure, pulls and 1/sqrt(N)."""

import math

import numpy as np
import pytest
import torch
from torch.autograd import gradcheck

from mutomo.reco import Scatters, Tracks, poca_voxel_weights
from mutomo.reco.x0 import HighlandX0Inferrer, highland_inverse
from mutomo.units import HIGHLAND_E0
from mutomo.volume import PassiveVolume
from mutomo.volume.scattering import highland_g

D = torch.float64


def test_inverse_is_exact_and_differentiable():
    t = torch.logspace(-4, 2, 50, dtype=D)
    assert torch.allclose(highland_inverse(highland_g(t)), t, rtol=1e-10)
    g = highland_g(torch.tensor([0.01, 1.0, 20.0], dtype=D)).requires_grad_()
    assert gradcheck(highland_inverse, (g,))


def synthetic(volume: PassiveVolume, x0_true: float, n: int, seed: int):
    """Muons through a uniform block with Highland-Gaussian deflections and perfect tracks."""
    gen = torch.Generator().manual_seed(seed)
    slope = (torch.rand(n, 2, generator=gen, dtype=D) - 0.5) * 0.6
    p = torch.exp(torch.empty(n, dtype=D).uniform_(math.log(1.0), math.log(100.0), generator=gen))
    path = (volume.z_high - volume.z_low) * torch.sqrt(1 + (slope**2).sum(-1))
    theta0 = HIGHLAND_E0 / p * torch.sqrt(highland_g(path / x0_true))  # beta = 1 at these momenta
    theta = theta0[:, None] * torch.randn(n, 2, generator=gen, dtype=D)
    poca = torch.rand(n, 3, generator=gen, dtype=D) * torch.tensor([1.0, 1.0, 0.5], dtype=D) + torch.tensor(
        [0.0, 0.0, volume.z_low], dtype=D
    )
    ones = torch.ones(n, dtype=D)
    zero_cov = torch.zeros(n, 4, 4, dtype=D)
    tracks_in = Tracks(volume.z_high, poca[:, :2], slope, zero_cov, ones, ones, ones)
    tracks_out = Tracks(volume.z_low, poca[:, :2], torch.tan(torch.atan(slope) + theta), zero_cov, ones, ones, ones)
    scatters = Scatters(theta.norm(dim=-1), theta, poca, torch.zeros(n, 3, 3, dtype=D), ones)
    return scatters, tracks_in, tracks_out, p, poca_voxel_weights(poca, ones, volume)


@pytest.mark.parametrize("material", ["iron", "lead", "water"])
def test_closure_on_exact_highland_data(material):
    volume = PassiveVolume.uniform(material, (1.0, 1.0, 0.5), (0.5, 0.5, 0.5), z_low=0.2, dtype=D)
    x0 = volume.materials[0].x0
    est = HighlandX0Inferrer()(*synthetic(volume, x0, 40_000, seed=1), volume)
    pulls = (est.x0 - x0) / est.uncertainty
    assert bool((pulls.abs() < 3.5).all()), pulls
    assert float(est.x0.mean()) == pytest.approx(x0, rel=0.03)


def test_one_poorly_measured_fast_muon_does_not_collapse_a_voxel():
    """60 muons of exact Highland deflections through 1 m of water and one 600 GeV/c muon
    measured with an angular variance of 1e-6 rad^2 (normalised: ~2000, against g(t) ~ 3) and
    no deflection. Its measurement-subtracted square, ~ -2000, once pulled the voxel's starting
    moment below zero, the iterations kept almost no core and X0 came out 15x too large (a water
    voxel of benchmarks/voxel_pulls.py); weighted by its inverse variance it changes nothing."""
    volume = PassiveVolume.uniform("water", (1.0, 1.0, 1.0), (1.0, 1.0, 1.0), z_low=0.2, dtype=D)
    x0 = volume.materials[0].x0
    scatters, tin, tout, p, _ = synthetic(volume, x0, 61, seed=3)
    p[0] = 600.0
    scatters.theta_xy[0] = 0.0
    cov = torch.zeros(61, 4, 4, dtype=D)
    cov[0, 2, 2] = cov[0, 3, 3] = 0.5e-6  # each track: the deflection's variance is the sum
    tin, tout = (Tracks(t.z_ref, t.xy, t.slope.clone(), cov, t.chi2, t.ndof, t.weight) for t in (tin, tout))
    tout.slope[0] = tin.slope[0]
    ones = torch.ones(61, dtype=D)
    everyone = HighlandX0Inferrer()(scatters, tin, tout, p, poca_voxel_weights(scatters.poca, ones, volume), volume)
    without = ones.clone()
    without[0] = 0.0
    others = HighlandX0Inferrer()(scatters, tin, tout, p, poca_voxel_weights(scatters.poca, without, volume), volume)
    assert float(everyone.x0) == pytest.approx(float(others.x0), rel=0.02)
    assert abs(math.log(float(everyone.x0) / x0)) < 3.5 * float(everyone.uncertainty / everyone.x0)


def test_error_falls_like_one_over_sqrt_n():
    volume = PassiveVolume.uniform("iron", (1.0, 1.0, 0.5), (1.0, 1.0, 0.5), z_low=0.2, dtype=D)
    x0 = volume.materials[0].x0
    sizes = [1000, 4000, 16000, 64000]
    spreads = []
    for n in sizes:
        estimates = [float(HighlandX0Inferrer()(*synthetic(volume, x0, n, seed=s), volume).x0) for s in range(12)]
        spreads.append(np.std(estimates))
    slope = np.polyfit(np.log(sizes), np.log(spreads), 1)[0]
    assert slope == pytest.approx(-0.5, abs=0.12)


def test_bad_arguments():
    with pytest.raises(ValueError, match="truncation_passes"):
        HighlandX0Inferrer(truncation_passes=-1)


def test_gradient_is_finite_where_the_variance_of_a_voxel_is_zero():
    """Regression (property tests, issue 14): a voxel whose projections all equal the estimate
    (here one muon deflected equally in x and y) once had a zero sandwich variance, and the square
    root of its uncertainty turned the zero gradient into NaN, even with the voxel unmeasured; the
    other voxels (no projection) still have a zero sum under the square root."""
    volume = PassiveVolume.uniform("iron", (1.0, 1.0, 0.5), (1.0, 1.0, 0.5), z_low=0.2, dtype=D)
    theta = torch.full((1, 2), 3e-3, dtype=D, requires_grad=True)
    poca = torch.tensor([[0.5, 0.5, 0.4]], dtype=D)
    ones = torch.ones(1, dtype=D)
    slope = torch.zeros(1, 2, dtype=D)
    cov = torch.zeros(1, 4, 4, dtype=D)
    tin = Tracks(volume.z_high, poca[:, :2], slope, cov, ones, ones, ones)
    for min_muons in (1.0, 2.0):  # measured, and not
        tout = Tracks(volume.z_low, poca[:, :2], torch.tan(theta), cov, ones, ones, ones)
        scatters = Scatters(theta.norm(dim=-1), theta, poca, torch.zeros(1, 3, 3, dtype=D), ones)
        voxels = poca_voxel_weights(poca, ones, volume)
        est = HighlandX0Inferrer(min_muons=min_muons)(scatters, tin, tout, 5 * ones, voxels, volume)
        assert bool(est.measured.any()) == (min_muons == 1.0)
        finite = torch.where(est.measured, est.uncertainty, torch.zeros_like(est.uncertainty))
        (grad,) = torch.autograd.grad(est.x0.sum() + finite.sum(), theta)
        assert bool(torch.isfinite(grad).all())


def test_float32_gradient_is_finite_for_a_voxel_of_tiny_weights():
    """Regression (property tests, issue 14): a voxel seen only by a muon whose incoming track has
    no lever arm (three panels at one height: slope variance ~5e5) gets a truncated-moment weight
    ~1e-30; in float32 the derivative num / den^2 of the weighted mean underflowed to 0 / 0 and
    made every panel gradient NaN."""
    from torch import nn

    from mutomo.detector import Detector, DetectorPanel
    from mutomo.muons import MuonBatch
    from mutomo.reco import extended_poca, measure

    volume = PassiveVolume.uniform("air", (0.02, 0.02, 0.02), 0.02)

    def panel(z: float, resolution: float) -> DetectorPanel:
        return DetectorPanel(nn.Parameter(torch.tensor([0.01, 0.01, z])), (0.02, 0.02), resolution, 1.0)

    above = [panel(0.020000001, r) for r in (8.9e-4, 6.3e-4, 9.1e-4)]
    det = Detector(above, [panel(-1e-6, 5.3e-4), panel(-1e-6, 1e-6)], smoothness=1e-6)
    muons = MuonBatch.create(
        torch.tensor([[0.0197, 0.0064, 0.0200001]]), torch.tensor([[0.0, 0.0, -1.0]]), torch.tensor([223.6])
    )
    zero = torch.zeros(3, 1, 2)
    data = measure(det.hits(muons, "above", zero), det.hits(muons, "below", zero[:2]), volume, muons.momentum)
    assert data.weight.numel() == 1 and float(data.incoming.covariance[0, 2, 2].detach()) > 1e4
    voxels = extended_poca(data.scatters.poca, data.scatters.poca_covariance, data.weight, volume).sparse()
    est = HighlandX0Inferrer(min_muons=1.0)(data.scatters, data.incoming, data.outgoing, data.momentum, voxels, volume)
    (est.x0.sum() + torch.where(est.measured, est.uncertainty, torch.zeros_like(est.uncertainty)).sum()).backward()
    assert all(bool(torch.isfinite(p.grad).all()) for p in det.parameters())


def test_dropping_the_floor_tails_of_extended_poca_changes_no_map():
    """Issue 32: PocaX0 drops the extended-PoCA entries below ``tail_share`` of their muon's window
    (cells ~7 standard deviations out, at the floor of the interval probabilities). On TomOpt's
    test geometry they are most of the entries, and every X0, error, count and measured flag stays
    bit for bit what the exact sparse form gives."""
    from mutomo.reco import extended_poca, measure, poca_within_height
    from mutomo.reco.voxelise import tail_share
    from mutomo.simulate import simulate
    from mutomo.studies.reference_geometries import detector, source
    from mutomo.studies.reference_geometries import volume as reference_volume

    vol = reference_volume()
    result = simulate(detector(), vol, source(), 20_000, torch.Generator().manual_seed(4))
    momentum = 0.5 * (result.muons_in.momentum + result.muons_out.momentum)
    data = measure(result.hits_above, result.hits_below, vol, momentum, result.muons_in.weight)
    points = poca_within_height(data.scatters.poca, data.incoming, data.outgoing, vol)
    window = extended_poca(points, data.scatters.poca_covariance, data.weight, vol)
    exact, pruned = window.sparse(), window.sparse(tail_share(points.dtype))
    assert pruned.weight.shape[0] < 0.5 * exact.weight.shape[0]
    infer = HighlandX0Inferrer()
    a, b = (infer(data.scatters, data.incoming, data.outgoing, data.momentum, v, vol) for v in (exact, pruned))
    assert int(a.measured.sum()) > 50
    for name in ("x0", "uncertainty", "count", "weight", "measured"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
