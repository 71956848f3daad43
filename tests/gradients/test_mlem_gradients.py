"""ML/EM gradients: float64 gradcheck of its primitives (path lengths, transverse data, the EM
step, the log-likelihood), and the unrolled reconstruction against central finite differences
in a detector parameter, with fixed random draws."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch.autograd import gradcheck

from mutomo.reco import ExpectedMomentum, MaximumLikelihoodEM, ScatterData, Tracks, compute_scatters, measure
from mutomo.reco.mlem import em_update, log_likelihood, path_lengths, transverse_scatters, with_momentum_classes
from mutomo.volume import PassiveVolume
from tests.gradients.test_gradients import lead_in_water_run

D = torch.float64


def test_gradcheck_path_lengths_and_tails_in_the_vertices():
    volume = PassiveVolume.uniform("water", (0.6, 0.6, 0.6), (0.1, 0.15, 0.2), z_low=0.4, dtype=D)
    gen = torch.Generator().manual_seed(0)
    # Generic points (no vertex on a grid plane): entry above, a kink inside, exit below the grid.
    vertices = torch.stack(
        [
            torch.cat([torch.rand(5, 2, generator=gen, dtype=D) * 0.6, torch.full((5, 1), 1.05, dtype=D)], -1),
            torch.rand(5, 3, generator=gen, dtype=D) * 0.5 + torch.tensor([0.05, 0.05, 0.45], dtype=D),
            torch.cat([torch.rand(5, 2, generator=gen, dtype=D) * 0.6, torch.full((5, 1), 0.35, dtype=D)], -1),
        ],
        1,
    ).requires_grad_()

    def f(v):
        p = path_lengths(v, volume)
        return p.length, p.tail

    assert gradcheck(f, (vertices,))


def test_gradcheck_transverse_data_and_measurement_covariance():
    gen = torch.Generator().manual_seed(1)
    n = 3
    a = torch.randn(n, 4, 4, generator=gen, dtype=D) * 1e-2
    cov_in = (a @ a.transpose(-1, -2)).requires_grad_()
    cov_out = 2 * cov_in.detach()
    params = torch.cat([torch.rand(n, 2, generator=gen, dtype=D), torch.randn(n, 2, generator=gen, dtype=D) * 0.3], -1)
    p_in = params.clone().requires_grad_()
    p_out = (params + 1e-2 * torch.randn(n, 4, generator=gen, dtype=D)).requires_grad_()

    def f(p_in, p_out, cov_in):
        one = torch.ones(n, dtype=D)
        t_in = Tracks(1.0, p_in[:, :2], p_in[:, 2:], cov_in, 0 * one, one, one)
        t_out = Tracks(0.4, p_out[:, :2], p_out[:, 2:], cov_out, 0 * one, one, one)
        obs = transverse_scatters(t_in, t_out, 0.4)
        return obs.deflection, obs.noise

    assert gradcheck(f, (p_in, p_out, cov_in))


def small_problem():
    """A real EM problem from 6 muons through two layers (float64)."""
    volume = PassiveVolume.uniform("water", (1.0, 1.0, 0.5), (1.0, 1.0, 0.25), z_low=0.4, dtype=D)
    gen = torch.Generator().manual_seed(2)
    n = 6
    one = torch.ones(n, dtype=D)
    cov = torch.diag(torch.tensor([1e-8, 1e-8, 1e-6, 1e-6], dtype=D)).expand(n, 4, 4)
    xy = 0.3 + 0.4 * torch.rand(n, 2, generator=gen, dtype=D)
    slope = torch.randn(n, 2, generator=gen, dtype=D) * 0.2
    incoming = Tracks(0.9, xy, slope, cov, 0 * one, one, one)
    out_slope = slope + torch.randn(n, 2, generator=gen, dtype=D) * 0.02
    outgoing = Tracks(
        0.4, xy - 0.5 * slope + torch.randn(n, 2, generator=gen, dtype=D) * 3e-3, out_slope, cov, 0 * one, one, one
    )
    data = ScatterData(
        incoming, outgoing, compute_scatters(incoming, outgoing, 0.65, covariance=False), 2.0 + one, 0.5 + 0.5 * one
    )
    return MaximumLikelihoodEM().problem(data, volume)


@pytest.mark.parametrize("classes", [False, True])
def test_gradcheck_em_step_and_log_likelihood_in_everything_they_read(classes):
    """Inputs are passed in units of their own size (gradcheck's step is absolute, and the noise
    is ~1e-6), the noise as a symmetric matrix. ``classes``: each muon's momentum a hidden
    class among three (one excluded for every muon by its prior, so dropped), the E-step's
    posteriors on the graph."""
    problem = small_problem()
    if classes:
        n = problem.weight.shape[0]
        log_prior = torch.log(torch.tensor([0.0, 0.3, 0.7], dtype=D)).expand(n, -1)
        momentum = torch.tensor([0.5, 2.0, 8.0], dtype=D).expand(n, -1)
        problem = with_momentum_classes(problem, log_prior, momentum)
        assert problem.classes == 2  # the class no muon may be in is dropped
    rho = torch.tensor([3.0, 40.0], dtype=D, requires_grad=True)
    # With classes the path entries carry W alone (~0.1-1) and each class row its scale c (~1e-5).
    units = {"deflection": 1e-2, "noise": 1e-6, "scaled_w": float(problem.scaled_w.abs().max()), "scale": 1e-5}
    deflection = (problem.deflection / units["deflection"]).requires_grad_()
    noise_half = (problem.noise / (2 * units["noise"])).requires_grad_()
    scaled_w = (problem.scaled_w / units["scaled_w"]).requires_grad_()
    scale = (problem.scale / units["scale"]).requires_grad_()
    weight = problem.weight.clone().requires_grad_()

    def f(rho, deflection, noise_half, scaled_w, scale, weight):
        p = replace(
            problem,
            deflection=deflection * units["deflection"],
            noise=(noise_half + noise_half.transpose(-1, -2)) * units["noise"],
            scaled_w=scaled_w * units["scaled_w"],
            scale=scale * units["scale"],
            weight=weight,
        )
        return em_update(rho, p), log_likelihood(rho, p)

    assert gradcheck(f, (rho, deflection, noise_half, scaled_w, scale, weight))


def lead_in_water_mlem(
    resolution: float, z_top: float, iterations: int = 5, checkpoint: bool = True, unknown_momentum: bool = False
):
    """The lead-in-water set-up of the gradient tests (:func:`lead_in_water_run`); the ML/EM map
    and the detector. ``unknown_momentum``: the EM marginalises over each muon's momentum with
    the flux prior above the range cut of water (8 classes) instead of reading the truth."""
    r, volume, det = lead_in_water_run(resolution, z_top)
    data = measure(r.hits_above, r.hits_below, volume, r.muons_in.momentum, r.muons_in.weight)
    prior = ExpectedMomentum(volume, "water", n_bins=8) if unknown_momentum else None
    method = MaximumLikelihoodEM(iterations=iterations, min_path=0.2, checkpoint=checkpoint, momentum_prior=prior)
    return method(data, volume), det


def quantity(resolution: float, z_top: float, checkpoint: bool = True, unknown_momentum: bool = False):
    vmap, det = lead_in_water_mlem(resolution, z_top, checkpoint=checkpoint, unknown_momentum=unknown_momentum)
    centre = vmap.score[3:7, 3:7, 1:3].sum()
    return centre / vmap.score.sum(), det


@pytest.mark.parametrize("unknown_momentum", [False, True])
def test_unrolled_mlem_gradient_matches_finite_differences(unknown_momentum):
    """d(share of 1/X0 in the lead's voxels)/d(resolution, z of the top panel): autograd through
    the 5 unrolled (over-relaxed) EM iterations, the paths and the data, against central
    differences; with the true momenta, and with the momentum a hidden class (the E-step's
    class posteriors on the graph too)."""
    value, det = quantity(2e-3, 1.1, unknown_momentum=unknown_momentum)
    value.backward()
    panel = det.above[0].panels[0]
    grads = float(panel.resolution.grad), float(panel.centre.grad[2])
    h_res, h_z = 1e-8, 1e-6

    def q(res, z):
        return float(quantity(res, z, unknown_momentum=unknown_momentum)[0].detach())

    fd = (
        (q(2e-3 + h_res, 1.1) - q(2e-3 - h_res, 1.1)) / (2 * h_res),
        (q(2e-3, 1.1 + h_z) - q(2e-3, 1.1 - h_z)) / (2 * h_z),
    )
    for g, f in zip(grads, fd, strict=True):
        assert g != 0.0
        assert g == pytest.approx(f, rel=2e-3, abs=1e-6)
    for p in det.parameters():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all())
    assert math.isfinite(float(value.detach()))
    # Recomputing the iterations in the backward pass (the default) changes nothing.
    stored, det_stored = quantity(2e-3, 1.1, checkpoint=False, unknown_momentum=unknown_momentum)
    stored.backward()
    for p, q in zip(det.parameters(), det_stored.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-12, atol=0)
