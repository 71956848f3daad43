"""ML/EM reconstruction (mutomo.reco.mlem): path lengths, the transverse frame, the EM on toys
whose data are drawn from the model itself (exact answers), batches, and refusals."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar

from mutomo.reco import MaximumLikelihoodEM, ScatterData, Tracks, compute_scatters
from mutomo.reco.mlem import (
    em_update,
    fisher_diagonal,
    fisher_matrix,
    log_likelihood,
    marginal_variance,
    muon_path,
    path_lengths,
    transverse_scatters,
)
from mutomo.units import HIGHLAND_E0, MUON_MASS
from mutomo.volume import PassiveVolume

D = torch.float64
Z_LOW = 0.4


# ----------------------------------------------------------------------------- toy muons
def frame(slope: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Direction of travel (towards -z) and two orthonormal transverse vectors, built directly."""
    tx, ty = slope.unbind(-1)
    one = torch.ones_like(tx)
    travel = -torch.stack([tx, ty, one], -1)
    travel = travel / travel.norm(dim=-1, keepdim=True)
    u = torch.stack([one, torch.zeros_like(tx), -tx], -1)
    u = u / u.norm(dim=-1, keepdim=True)
    return travel, u, torch.linalg.cross(u, travel, dim=-1)


def tracks(z_ref: float, xy: torch.Tensor, slope: torch.Tensor, cov: torch.Tensor) -> Tracks:
    n = xy.shape[0]
    one = torch.ones(n, dtype=xy.dtype)
    return Tracks(z_ref=z_ref, xy=xy, slope=slope, covariance=cov, chi2=0 * one, ndof=one, weight=one)


def scattered_tracks(entry_xy, slope, angle, offset, z_high, z_low, cov):
    """Incoming track through ``entry_xy`` at ``z_high``; the outgoing one turned by ``angle``
    ``(mu, 2)`` about the transverse axes (u, v) and shifted by ``offset`` ``(mu, 2)``
    perpendicular to the incoming direction, by plain 3D geometry."""
    travel, u, v = frame(slope)
    entry = torch.cat([entry_xy, torch.full_like(entry_xy[:, :1], z_high)], -1)
    straight_exit = entry + travel * ((z_low - z_high) / travel[:, 2:3])
    out_dir = travel + angle[:, :1] * u + angle[:, 1:] * v
    point = straight_exit + offset[:, :1] * u + offset[:, 1:] * v
    exit_ = point + out_dir * ((z_low - point[:, 2:3]) / out_dir[:, 2:3])
    return tracks(z_high, entry_xy, slope, cov), tracks(z_low, exit_[:, :2], out_dir[:, :2] / out_dir[:, 2:3], cov)


def w_matrix(L: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    """``(mu, 2, 2)`` Fermi-Eyges moments of a path L followed by T (integrals of 1, s, s^2)."""
    a = L
    b = ((L + T) ** 2 - T**2) / 2
    c = ((L + T) ** 3 - T**3) / 3
    return torch.stack([torch.stack([a, b], -1), torch.stack([b, c], -1)], -2)


@dataclass
class Toy:
    data: ScatterData
    volume: PassiveVolume
    rho: torch.Tensor  # (layers,) true 1/X0, top layer first
    moments: torch.Tensor  # (mu, layers, 2, 2): c_i W(L, T) per layer, analytic
    draws: torch.Tensor  # (mu, 2, 2) the drawn (angle, offset) per transverse direction


def toy(n, layers, seed, p_range=(1.0, 10.0), track_sigma=None, max_slope=0.3, p_classes=None, tail=None) -> Toy:
    """Muons through horizontal layers ``[(thickness, x0), ...]`` (top first), their scattering
    drawn from the ML/EM model's Gaussian with the true densities, tracks built by geometry.
    ``track_sigma = (position, slope)`` adds measurement errors of that size to every track.
    ``p_classes = (momenta, probabilities)``: momenta drawn among these instead of uniformly.
    ``tail = (fraction, factor)``: that fraction of the muons (drawn) scatter ``factor`` times
    wider than the model says (a heavy tail, as single scatters give; not the model's law)."""
    gen = torch.Generator().manual_seed(seed)
    thick = [t for t, _ in layers]
    assert len(set(thick)) == 1, "equal layers"
    height = sum(thick)
    z_high = Z_LOW + height
    volume = PassiveVolume.uniform("water", (1.0, 1.0, height), (1.0, 1.0, thick[0]), z_low=Z_LOW, dtype=D)
    slope = (torch.rand(n, 2, generator=gen, dtype=D) * 2 - 1) * max_slope
    entry = 0.2 + 0.6 * torch.rand(n, 2, generator=gen, dtype=D)
    p = p_range[0] + (p_range[1] - p_range[0]) * torch.rand(n, generator=gen, dtype=D)
    if p_classes is not None:
        values, probabilities = (torch.tensor(v, dtype=D) for v in p_classes)
        p = values[torch.multinomial(probabilities, n, replacement=True, generator=gen)]
    beta_p = p**2 / torch.sqrt(p**2 + MUON_MASS**2)
    c = (HIGHLAND_E0 / beta_p) ** 2
    stretch = torch.sqrt(1 + (slope**2).sum(-1))  # path length per unit height
    rho = torch.tensor([1 / x0 for _, x0 in layers], dtype=D)
    below = [sum(thick[k + 1 :]) for k in range(len(layers))]
    moments = torch.stack(
        [c[:, None, None] * w_matrix(t * stretch, b * stretch) for t, b in zip(thick, below, strict=True)], 1
    )
    cov = (moments * rho[None, :, None, None]).sum(1)
    chol = torch.linalg.cholesky(cov)
    draws = (chol[:, None] @ torch.randn(n, 2, 2, 1, generator=gen, dtype=D))[..., 0]  # (mu, k, a)
    if tail is not None:
        wide = torch.rand(n, generator=gen, dtype=D) < tail[0]
        draws = torch.where(wide[:, None, None], tail[1] * draws, draws)
    track_cov = torch.zeros(n, 4, 4, dtype=D)
    if track_sigma is not None:
        track_cov = torch.diag(torch.tensor([track_sigma[0] ** 2] * 2 + [track_sigma[1] ** 2] * 2, dtype=D))
        track_cov = track_cov.expand(n, 4, 4)
    incoming, outgoing = scattered_tracks(entry, slope, draws[..., 0], draws[..., 1], z_high, Z_LOW, track_cov)
    if track_sigma is not None:
        noise = torch.randn(2, n, 4, generator=gen, dtype=D) * torch.tensor([track_sigma[0]] * 2 + [track_sigma[1]] * 2)

        def shake(t: Tracks, e: torch.Tensor) -> Tracks:
            return tracks(t.z_ref, t.xy + e[:, :2], t.slope + e[:, 2:], track_cov)

        incoming, outgoing = shake(incoming, noise[0]), shake(outgoing, noise[1])
    scatters = compute_scatters(incoming, outgoing, Z_LOW + height / 2, covariance=False)
    data = ScatterData(incoming, outgoing, scatters, p, torch.ones(n, dtype=D))
    return Toy(data, volume, rho, moments, draws)


# ----------------------------------------------------------------------------- path lengths
def brute_force_lengths(vertices: np.ndarray, volume: PassiveVolume, samples: int = 200_000):
    """Per-voxel length and tail of one polyline by dense sampling (midpoint rule)."""
    origin, size, shape = np.array(volume.origin), np.array(volume.voxel_size), np.array(volume.shape)
    pieces = []
    for a, b in zip(vertices[:-1], vertices[1:], strict=True):
        s = (np.arange(samples) + 0.5) / samples
        pts = a + (b - a) * s[:, None]
        pieces.append((pts, np.full(samples, np.linalg.norm(b - a) / samples)))
    pts = np.concatenate([p for p, _ in pieces])
    ds = np.concatenate([d for _, d in pieces])
    idx = np.floor((pts - origin) / size).astype(int)
    inside = ((idx >= 0) & (idx < shape)).all(-1)
    flat = (idx[:, 0] * shape[1] + idx[:, 1]) * shape[2] + idx[:, 2]
    inside_after = (ds * inside)[::-1].cumsum()[::-1] - ds * inside  # path left inside the grid after each sample
    length, tail = {}, {}
    for v in np.unique(flat[inside]):
        sel = inside & (flat == v)
        length[int(v)] = ds[sel].sum()
        tail[int(v)] = inside_after[np.nonzero(sel)[0][-1]]
    return length, tail


def test_path_lengths_match_dense_sampling_of_random_polylines():
    volume = PassiveVolume.uniform("water", (0.6, 0.45, 0.8), (0.1, 0.15, 0.2), z_low=0.4, dtype=D)
    gen = torch.Generator().manual_seed(5)
    n = 6
    lo = torch.tensor([-0.1, -0.1, 0.3], dtype=D)
    hi = torch.tensor([0.7, 0.55, 1.3], dtype=D)
    vertices = lo + (hi - lo) * torch.rand(n, 3, 3, generator=gen, dtype=D)  # partly outside the grid
    paths = path_lengths(vertices, volume)
    for i in range(n):
        length, tail = brute_force_lengths(vertices[i].numpy(), volume)
        mine = paths.muon == i
        # A polyline may come back into a voxel it left (a separate entry): sum the visits, tail after the last.
        got_length: dict[int, float] = {}
        got_tail: dict[int, float] = {}
        for v, ell, tl in zip(
            paths.voxel[mine].tolist(), paths.length[mine].tolist(), paths.tail[mine].tolist(), strict=True
        ):
            got_length[v] = got_length.get(v, 0.0) + ell
            got_tail[v] = min(got_tail.get(v, math.inf), tl)
        assert {v for v, ell in length.items() if ell > 1e-5} <= set(got_length) <= set(length)
        for v, ell in length.items():
            assert got_length.get(v, 0.0) == pytest.approx(ell, abs=2e-5)
            if ell > 1e-4:
                assert got_tail[v] == pytest.approx(tail[v], abs=2e-5)


def test_path_lengths_of_axis_parallel_and_degenerate_segments():
    volume = PassiveVolume.uniform("water", (0.4, 0.4, 0.4), 0.1, z_low=0.0, dtype=D)
    # Vertical, with a zero-length segment at the start (vertex on the entry point), then along x
    # in the plane z = 0.15 (parallel to the z and y planes).
    vertices = torch.tensor(
        [[[0.05, 0.05, 0.4], [0.05, 0.05, 0.4], [0.05, 0.05, 0.15], [0.35, 0.05, 0.15]]], dtype=D, requires_grad=True
    )
    paths = path_lengths(vertices, volume)
    assert paths.length.sum().item() == pytest.approx(0.25 + 0.3)
    # Layers 3, 2 at x = 0 (10 cm each); in layer 1, 5 cm down and 5 cm along x in voxel x = 0
    # (one entry), then x = 1, 2 (10 cm each) and 5 cm of x = 3.
    assert paths.voxel.tolist() == [3, 2, 1, 17, 33, 49]
    assert paths.length.tolist() == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.1, 0.05])
    assert paths.tail.tolist() == pytest.approx([0.45, 0.35, 0.25, 0.15, 0.05, 0.0])
    (paths.length * paths.tail).sum().backward()
    assert bool(torch.isfinite(vertices.grad).all())
    dense = paths.to_sparse().to_dense()
    assert dense.shape == (1, 64) and dense.sum().item() == pytest.approx(0.55)


def test_poca_path_vertex_is_the_poca_inside_and_clamped_outside():
    volume = PassiveVolume.uniform("water", (1.0, 1.0, 0.5), 0.1, z_low=Z_LOW, dtype=D)
    cov = torch.zeros(2, 4, 4, dtype=D)
    # Muon 0 kinks at (0.5, 0.5, 0.6); muon 1's tracks are parallel (the PoCA is their midpoint at z_mid).
    incoming = tracks(0.9, torch.tensor([[0.4, 0.5], [0.3, 0.3]], dtype=D), torch.tensor([[-1 / 3, 0.0], [0, 0]]), cov)
    outgoing = tracks(Z_LOW, torch.tensor([[0.6, 0.5], [0.32, 0.3]], dtype=D), torch.tensor([[-0.5, 0.0], [0, 0]]), cov)
    sc = compute_scatters(incoming, outgoing, 0.65, covariance=False)
    vertices = muon_path(incoming, outgoing, sc.poca, volume)
    # (to the PoCA's regularisation of nearly parallel tracks, 1e-8 m here)
    torch.testing.assert_close(vertices[0, 1], torch.tensor([0.5, 0.5, 0.6], dtype=D), atol=1e-7, rtol=0)
    torch.testing.assert_close(vertices[1, 1], torch.tensor([0.31, 0.3, 0.65], dtype=D), atol=1e-7, rtol=0)
    straight = muon_path(incoming, outgoing, sc.poca, volume, path="straight")
    assert straight.shape == (2, 2, 3)
    with pytest.raises(ValueError, match="path"):
        muon_path(incoming, outgoing, sc.poca, volume, path="curved")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- transverse frame
def test_transverse_data_are_the_rotation_and_offset_that_made_the_tracks():
    """Tracks turned by a known small rotation and shifted by a known offset (plain geometry):
    the transverse deflection returns them, to second order in the angle."""
    gen = torch.Generator().manual_seed(1)
    n = 50
    slope = (torch.rand(n, 2, generator=gen, dtype=D) * 2 - 1) * 0.8
    angle = torch.randn(n, 2, generator=gen, dtype=D) * 1e-4
    offset = torch.randn(n, 2, generator=gen, dtype=D) * 1e-4
    entry = torch.full((n, 2), 0.5, dtype=D)
    incoming, outgoing = scattered_tracks(entry, slope, angle, offset, 1.0, Z_LOW, torch.zeros(n, 4, 4, dtype=D))
    obs = transverse_scatters(incoming, outgoing, Z_LOW)
    torch.testing.assert_close(obs.deflection[..., 0], angle, rtol=0, atol=1e-7)
    torch.testing.assert_close(obs.deflection[..., 1], offset, rtol=0, atol=1e-7)
    # An angle causes an offset of its own sign downstream: turned by +a at the entry, a muon
    # leaves the exit plane displaced by +a times the path length (to first order).
    travel, u, v = frame(slope)
    out_dir = travel + angle[:, :1] * u + angle[:, 1:] * v
    start = torch.cat([entry, torch.ones(n, 1, dtype=D)], -1)
    exit_ = start + out_dir * ((Z_LOW - 1.0) / out_dir[:, 2:3])
    turned = tracks(Z_LOW, exit_[:, :2], out_dir[:, :2] / out_dir[:, 2:3], torch.zeros(n, 4, 4, dtype=D))
    path = (1.0 - Z_LOW) * torch.sqrt(1 + (slope**2).sum(-1))
    got = transverse_scatters(incoming, turned, Z_LOW).deflection
    torch.testing.assert_close(got[..., 1], angle * path[:, None], rtol=0, atol=1e-7)


def test_measurement_covariance_is_the_jacobian_sandwich_of_the_track_covariances():
    """At zero deflection the frame's own derivative drops out, so the covariance must equal
    J C J^T with J the autograd Jacobian of the deflection in the track parameters."""
    gen = torch.Generator().manual_seed(2)
    n = 4
    slope = (torch.rand(n, 2, generator=gen, dtype=D) * 2 - 1) * 0.5
    xy_in = torch.rand(n, 2, generator=gen, dtype=D)
    xy_out = xy_in + slope * (Z_LOW - 0.95)  # incoming track at z_ref = 0.95, outgoing at Z_LOW
    a = torch.randn(n, 4, 4, generator=gen, dtype=D)
    b = torch.randn(n, 4, 4, generator=gen, dtype=D)
    c_in, c_out = a @ a.transpose(-1, -2) * 1e-6, b @ b.transpose(-1, -2) * 1e-6
    obs = transverse_scatters(tracks(0.95, xy_in, slope, c_in), tracks(Z_LOW, xy_out, slope, c_out), Z_LOW)
    for i in range(n):

        def flat(params_in, params_out, i=i):
            t_in = tracks(0.95, params_in[None, :2], params_in[None, 2:], c_in[i : i + 1])
            t_out = tracks(Z_LOW, params_out[None, :2], params_out[None, 2:], c_out[i : i + 1])
            return transverse_scatters(t_in, t_out, Z_LOW, measurement_error=False).deflection.reshape(4)

        j_in, j_out = torch.autograd.functional.jacobian(
            flat, (torch.cat([xy_in[i], slope[i]]), torch.cat([xy_out[i], slope[i]]))
        )
        expected = j_in @ c_in[i] @ j_in.T + j_out @ c_out[i] @ j_out.T
        torch.testing.assert_close(obs.noise[i], expected, rtol=1e-10, atol=1e-18)


# ----------------------------------------------------------------------------- the EM on exact toys
def closed_form_mle(t: Toy) -> float:
    """One voxel, no measurement error: Sigma_i = rho c_i W_i (x) I_2, so the ML estimate is
    sum_i D_i^T (c_i W_i)^-1 D_i / (4 N) (a chi^2 with 4N degrees of freedom, times rho / 4N)."""
    w = t.moments[:, 0]
    return float(torch.einsum("ika,iab,ikb->", t.draws, torch.linalg.inv(w), t.draws)) / (4 * len(w))


def test_one_voxel_without_measurement_error_one_iteration_is_the_exact_ml_estimate():
    """For one voxel the EM step from any start lands on the closed-form ML estimate; that
    estimate is within 3 sigma of the truth (sigma = rho / sqrt(2N), exact here), and the
    reported Fisher uncertainty is exactly X0 / sqrt(2N); the default (robust) one, from the
    observed spread of the scores, is at least that and within 5 % of it on data from the model."""
    n = 4000
    t = toy(n, [(0.5, 0.3608)], seed=0)
    settings = {"iterations": 1, "path": "straight", "measurement_error": False, "log_term": False}
    r = MaximumLikelihoodEM(**settings, error="conditional").reconstruct(t.data, t.volume)
    expected = closed_form_mle(t)
    assert float(r.inverse_x0) == pytest.approx(expected, rel=1e-3)
    rho = float(t.rho[0])
    assert abs(float(r.inverse_x0) - rho) < 3 * rho / math.sqrt(2 * n)
    assert float(r.uncertainty) == pytest.approx(float(r.x0) / math.sqrt(2 * n), rel=1e-6)
    robust = MaximumLikelihoodEM(**settings).reconstruct(t.data, t.volume)
    assert 1.0 <= float(robust.uncertainty / r.uncertainty) < 1.05
    # A different start gives the same answer after one step.
    other = MaximumLikelihoodEM(
        iterations=1, path="straight", measurement_error=False, log_term=False, initial_x0=0.01
    ).reconstruct(t.data, t.volume)
    assert float(other.inverse_x0) == pytest.approx(float(r.inverse_x0), rel=1e-9)
    # The PoCA path is longer than the straight one by a fraction of the displacement: +0.4 % in rho here.
    poca = MaximumLikelihoodEM(iterations=1, measurement_error=False, log_term=False).reconstruct(t.data, t.volume)
    assert float(poca.inverse_x0) == pytest.approx(expected, rel=1e-2)


def numpy_log_likelihood(rho: float, w: np.ndarray, noise: np.ndarray, data: np.ndarray) -> float:
    """Independent evaluation: Sigma_i = rho (I_2 kron W_i) + E_i, explicit 4 x 4 algebra."""
    sigma = rho * np.einsum("kl,iab->ikalb", np.eye(2), w).reshape(-1, 4, 4) + noise
    sign, logdet = np.linalg.slogdet(sigma)
    assert (sign > 0).all()
    quad = np.einsum("ia,iab,ib->i", data, np.linalg.inv(sigma), data)
    return float(np.sum(-0.5 * logdet - 0.5 * quad - 2 * np.log(2 * np.pi)))


def test_one_voxel_with_measurement_error_converges_to_the_ml_estimate_and_never_decreases():
    """With track errors of 0.2 mm and 1 mrad, the EM needs many steps; it must converge to the
    maximum of the likelihood found by a direct 1D maximisation (scipy), and the log-likelihood
    it reports must rise at every step and equal an independent evaluation."""
    t = toy(3000, [(0.5, 0.3608)], seed=1, track_sigma=(2e-4, 1e-3))
    method = MaximumLikelihoodEM(iterations=60, path="straight", log_term=False, initial_x0=0.05)
    r = method.reconstruct(t.data, t.volume)
    history = r.log_likelihood
    assert bool((history.diff() >= -1e-9 * history.abs()[1:]).all()), history
    assert float(history[-1] - history[0]) > 1000.0  # it did move, from 7 x the true density
    problem = method.problem(t.data, t.volume)
    w = problem.scaled_w.T[:, [0, 1, 1, 2]].reshape(-1, 2, 2).numpy()
    noise, data = problem.noise.numpy(), problem.deflection.reshape(-1, 4).numpy()
    rho_ml = minimize_scalar(
        lambda x: -numpy_log_likelihood(x, w, noise, data),
        bounds=(0.5, 10.0),
        method="bounded",
        options={"xatol": 1e-8},
    ).x
    sigma = float(r.inverse_x0) / math.sqrt(2 * 3000)
    assert abs(float(r.inverse_x0) - rho_ml) < 0.02 * sigma
    assert abs(rho_ml - float(t.rho[0])) < 3.5 * sigma * 1.5  # measurement error widens the error
    assert float(log_likelihood(torch.tensor([2.0], dtype=D), problem)) == pytest.approx(
        numpy_log_likelihood(2.0, w, noise, data), rel=1e-12
    )


@pytest.mark.parametrize("n", [500, 2000])
def test_reported_uncertainty_matches_the_spread_of_repeats(n):
    """One voxel with measurement error: over 16 independent toys the spread of the estimate
    matches the Fisher error the method reports (the spread of 16 is itself uncertain by ~18 %)."""
    method = MaximumLikelihoodEM(iterations=30, path="straight", log_term=False)
    results = [
        method.reconstruct(t.data, t.volume)
        for t in (toy(n, [(0.5, 0.3608)], 100 + s, track_sigma=(2e-4, 1e-3)) for s in range(16))
    ]
    rho = np.array([float(r.inverse_x0) for r in results])
    reported = np.mean([float(r.uncertainty / r.x0) for r in results])
    spread = rho.std(ddof=1) / rho.mean()
    assert 0.6 < spread / reported < 1.5, (spread, reported)
    assert abs(rho.mean() / (1 / 0.3608) - 1) < 3 * spread / 4  # unbiased within the error of the mean


def test_sandwich_error_equals_fisher_on_the_model_and_covers_the_spread_of_a_heavy_tail():
    """One voxel, 24 toys of 800 muons each. Drawn from the model, the sandwich error (``error =
    "sandwich"``: ``J / I^2``) is the Fisher error on average (within 5 %; measured 0.99x), and
    both match the spread of the repeats (1.02, 1.01). With 5 % of the muons scattering 4x wider
    than the model (a heavy tail, as Molière's single scatters give), the Gaussian's Fisher error
    understates the spread of the repeats (measured 0.32 of it), the sandwich error does not (0.90;
    the spread of 24 is itself uncertain by ~15 %)."""

    def run(error, tail):
        method = MaximumLikelihoodEM(iterations=30, path="straight", log_term=False, error=error)
        toys = (toy(800, [(0.5, 0.3608)], 300 + s, track_sigma=(2e-4, 1e-3), tail=tail) for s in range(24))
        results = [method.reconstruct(t.data, t.volume) for t in toys]
        rho = np.array([float(r.inverse_x0) for r in results])
        reported = np.array([float(r.uncertainty / r.x0) for r in results])
        return rho.std(ddof=1) / rho.mean(), reported

    _, fisher = run("conditional", None)
    _, sandwich = run("sandwich", None)
    assert abs(sandwich.mean() / fisher.mean() - 1) < 0.05, (sandwich.mean(), fisher.mean())
    spread, fisher = run("conditional", (0.05, 4.0))
    _, sandwich = run("sandwich", (0.05, 4.0))
    assert fisher.mean() < 0.5 * spread, (fisher.mean(), spread)
    assert 0.75 * spread < sandwich.mean() < 1.3 * spread, (sandwich.mean(), spread)


def test_two_layers_are_separated_using_the_displacement_tails():
    """An iron layer over a water layer (25 cm each): every muon crosses both, so only the
    angle-displacement correlation (the tail T of the top layer) tells them apart. The EM
    recovers both within 3.5 standard errors of the inverse Fisher matrix (computed here with
    numpy from the analytic moments), and reports those errors."""
    t = toy(4000, [(0.25, 0.0176), (0.25, 0.3608)], seed=2, p_range=(3.0, 30.0))
    method = MaximumLikelihoodEM(
        iterations=400, path="straight", measurement_error=False, log_term=False, error="marginal"
    )
    r = method.reconstruct(t.data, t.volume)
    got = r.inverse_x0.reshape(-1).flip(0)  # grid is bottom layer first
    m = t.moments.numpy()  # (mu, layers, 2, 2)
    cov = np.einsum("il,ilab->iab", np.broadcast_to(t.rho.numpy(), m.shape[:2]), m)
    inv = np.linalg.inv(cov)
    fisher = 0.5 * 2 * np.einsum("iab,ikbc,icd,ilda->kl", inv, m, inv, m)  # two transverse directions
    errors = np.sqrt(np.diag(np.linalg.inv(fisher)))
    pulls = (got.numpy() - t.rho.numpy()) / errors
    assert (np.abs(pulls) < 3.5).all(), (got, t.rho, errors)
    # error="marginal" reports these errors, with the other layer unknown (at the estimate rather
    # than the truth), not the smaller ones with the other layer known, 1 / sqrt(I_jj).
    reported = (r.uncertainty / r.x0 * r.inverse_x0).reshape(-1).flip(0).numpy()
    np.testing.assert_allclose(reported, errors, rtol=0.15)
    assert (reported > 1.1 / np.sqrt(np.diag(fisher))).all()  # 15 % larger here
    history = r.log_likelihood
    assert bool((history.diff() >= -1e-9 * history.abs()[1:]).all())


# ----------------------------------------------------------------------------- batches, weights, contract
def concat(datas: list[ScatterData]) -> ScatterData:
    def cat_tracks(ts: list[Tracks]) -> Tracks:
        return Tracks(
            z_ref=ts[0].z_ref,
            xy=torch.cat([t.xy for t in ts]),
            slope=torch.cat([t.slope for t in ts]),
            covariance=torch.cat([t.covariance for t in ts]),
            chi2=torch.cat([t.chi2 for t in ts]),
            ndof=torch.cat([t.ndof for t in ts]),
            weight=torch.cat([t.weight for t in ts]),
        )

    scatters = compute_scatters(
        cat_tracks([d.incoming for d in datas]), cat_tracks([d.outgoing for d in datas]), 0.65, covariance=False
    )
    return ScatterData(
        cat_tracks([d.incoming for d in datas]),
        cat_tracks([d.outgoing for d in datas]),
        scatters,
        torch.cat([d.momentum for d in datas]),
        torch.cat([d.weight for d in datas]),
    )


# ----------------------------------------------------------------------------- unknown momenta
class DiscretePrior:
    """Every muon's momentum is one of ``momenta`` with the given probabilities (a
    :class:`~mutomo.reco.momentum.MomentumPrior`)."""

    def __init__(self, momenta, probabilities):
        self.momenta = torch.tensor(momenta, dtype=D)
        self.log_prior = torch.log(torch.tensor(probabilities, dtype=D))

    def prior(self, incoming, outgoing):
        n = incoming.xy.shape[0]
        return self.log_prior.expand(n, -1), self.momenta.expand(n, -1)


CLASSES = ([1.0, 3.0, 10.0], [0.3, 0.4, 0.3])


def numpy_mixture_log_likelihood(rho, w, noise, data, scale, log_prior) -> float:
    """Independent evaluation of the momentum-marginalised likelihood: per muon i and class k,
    Sigma_ik = rho c_k (I_2 kron W_i) + E_i, then log sum_k pi_k N(D_i; 0, Sigma_ik)."""
    terms = []
    for k in range(scale.shape[1]):
        sigma = rho * scale[:, k, None, None] * np.einsum("kl,iab->ikalb", np.eye(2), w).reshape(-1, 4, 4) + noise
        logdet = np.linalg.slogdet(sigma)[1]
        quad = np.einsum("ia,iab,ib->i", data, np.linalg.inv(sigma), data)
        terms.append(log_prior[:, k] - 0.5 * logdet - 0.5 * quad - 2 * np.log(2 * np.pi))
    return float(np.logaddexp.reduce(np.stack(terms, 1), axis=1).sum())


def test_unknown_momenta_the_mixture_em_finds_the_ml_density_and_never_decreases():
    """One voxel, momenta 1, 3 or 10 GeV/c (30/40/30 %) that the reconstruction does not know:
    the EM over the hidden momentum class must rise at every step to the maximum of the
    marginal likelihood found by a direct 1D maximisation (scipy, independent numpy algebra),
    that maximum must lie within 3.5 of its reported errors of the truth, and the error (Louis'
    observed information) must exceed the one the true momenta would give."""
    n = 3000
    t = toy(n, [(0.5, 0.3608)], seed=21, track_sigma=(2e-4, 1e-3), p_classes=CLASSES)
    blind = ScatterData(**{**t.data.__dict__, "momentum": torch.full((n,), 4.0, dtype=D)})  # not read
    method = MaximumLikelihoodEM(iterations=60, path="straight", log_term=False, momentum_prior=DiscretePrior(*CLASSES))
    r = method.reconstruct(blind, t.volume)
    history = r.log_likelihood
    assert bool((history.diff() >= -1e-9 * history.abs()[1:]).all()), history
    problem = MaximumLikelihoodEM(path="straight").problem(t.data, t.volume)  # one row per muon
    w = (problem.scaled_w / problem.scale.index_select(0, problem.paths.muon)).T[:, [0, 1, 1, 2]].reshape(-1, 2, 2)
    beta_p = torch.tensor(CLASSES[0], dtype=D) ** 2 / torch.sqrt(torch.tensor(CLASSES[0], dtype=D) ** 2 + MUON_MASS**2)
    scale = ((HIGHLAND_E0 / beta_p) ** 2).expand(n, -1).numpy()
    log_prior = np.log(np.array(CLASSES[1]))[None, :].repeat(n, 0)
    args = (w.numpy(), problem.noise.numpy(), problem.deflection.reshape(-1, 4).numpy(), scale, log_prior)
    rho_ml = minimize_scalar(
        lambda x: -numpy_mixture_log_likelihood(x, *args), bounds=(0.5, 10.0), method="bounded", options={"xatol": 1e-8}
    ).x
    sigma = float(r.uncertainty / r.x0) * float(r.inverse_x0)
    assert abs(float(r.inverse_x0) - rho_ml) < 0.02 * sigma
    assert abs(rho_ml - float(t.rho[0])) < 3.5 * sigma
    assert float(history[-1]) == pytest.approx(numpy_mixture_log_likelihood(float(r.inverse_x0), *args), rel=1e-10)
    known = MaximumLikelihoodEM(iterations=60, path="straight", log_term=False).reconstruct(t.data, t.volume)
    assert float(r.uncertainty / r.x0) > 1.2 * float(known.uncertainty / known.x0)


def test_unknown_momenta_pulls_have_unit_width():
    """Over 64 toys of 300 muons with hidden momentum classes, the pulls (estimate - truth) /
    error, with the error from Louis' observed information, have unit width (within 1 +- 0.25:
    the standard deviation of 64 pulls is itself uncertain by ~9 %) and no bias (100 toys each
    at 300 and 1000 muons gave widths 1.01 and 1.03 when this was written)."""
    method = MaximumLikelihoodEM(iterations=60, path="straight", log_term=False, momentum_prior=DiscretePrior(*CLASSES))
    toys = (toy(300, [(0.5, 0.3608)], 1000 + s, track_sigma=(2e-4, 1e-3), p_classes=CLASSES) for s in range(64))
    results = [method.reconstruct(t.data, t.volume) for t in toys]
    rho = np.array([float(r.inverse_x0) for r in results])
    error = np.array([float(r.uncertainty / r.x0 * r.inverse_x0) for r in results])
    pulls = (rho - 1 / 0.3608) / error
    assert 0.75 < pulls.std(ddof=1) < 1.25, pulls.std(ddof=1)
    assert abs(pulls.mean()) < 3 / math.sqrt(64), pulls.mean()


def test_a_prior_certain_of_the_true_momentum_is_the_known_momentum_em():
    """Classes (p, 2 p) with all the prior on p: the same map, error and likelihood as the EM
    given p, on two layers with track errors."""
    t = toy(600, [(0.25, 0.0176), (0.25, 0.3608)], seed=22, track_sigma=(1e-4, 1e-3))

    class Certain:
        def prior(self, incoming, outgoing):
            log_prior = torch.tensor([0.0, -math.inf], dtype=D).expand(len(t.data.momentum), -1)
            return log_prior, torch.stack([t.data.momentum, 2 * t.data.momentum], -1)

    known = MaximumLikelihoodEM(iterations=8).reconstruct(t.data, t.volume)
    mixed = MaximumLikelihoodEM(iterations=8, momentum_prior=Certain()).reconstruct(t.data, t.volume)
    for name in ("x0", "uncertainty", "log_likelihood"):
        torch.testing.assert_close(getattr(mixed, name), getattr(known, name), rtol=1e-10, atol=0)
    assert known.momentum is None  # given momenta: no posterior
    torch.testing.assert_close(mixed.momentum, t.data.momentum, rtol=1e-10, atol=0)


def test_posterior_momentum_is_the_posterior_mean_of_the_highland_scale():
    """One voxel, momenta 1, 3 or 10 GeV/c hidden: each muon's posterior effective momentum is
    the one whose Highland scale c = (E0 / (beta p))^2 is the mean of c over the class posterior
    at the reconstructed density (independent numpy algebra, 1e-8); averaged over the muons that
    posterior mean is the prior mean of c (the tower property, at the ML density: within 3 %),
    and it sorts the muons by their hidden class. A muon of zero weight keeps the data's momentum."""
    n = 3000
    t = toy(n, [(0.5, 0.3608)], seed=23, track_sigma=(2e-4, 1e-3), p_classes=CLASSES)
    weight = torch.ones(n, dtype=D)
    weight[0] = 0.0
    blind = ScatterData(**{**t.data.__dict__, "momentum": torch.full((n,), 4.0, dtype=D), "weight": weight})
    prior = DiscretePrior(*CLASSES)
    method = MaximumLikelihoodEM(iterations=40, path="straight", log_term=False, momentum_prior=prior)
    r = method.reconstruct(blind, t.volume)
    torch.testing.assert_close(method.posterior_momentum(blind, t.volume), r.momentum, rtol=0, atol=0)
    assert float(r.momentum[0]) == 4.0
    problem = MaximumLikelihoodEM(path="straight").problem(t.data, t.volume)  # one row per muon
    w = (problem.scaled_w / problem.scale.index_select(0, problem.paths.muon)).T[:, [0, 1, 1, 2]].reshape(-1, 2, 2)
    momenta = np.array(CLASSES[0])
    scale = (HIGHLAND_E0 * np.sqrt(momenta**2 + MUON_MASS**2) / momenta**2) ** 2  # (E0 / (beta p))^2
    rho = float(r.inverse_x0)
    data = problem.deflection.reshape(-1, 4).numpy()
    log_joint = []
    for k in range(3):
        sigma = rho * scale[k] * np.einsum("kl,iab->ikalb", np.eye(2), w.numpy()).reshape(-1, 4, 4)
        sigma = sigma + problem.noise.numpy()
        quad = np.einsum("ia,iab,ib->i", data, np.linalg.inv(sigma), data)
        log_joint.append(math.log(CLASSES[1][k]) - 0.5 * np.linalg.slogdet(sigma)[1] - 0.5 * quad)
    joint = np.stack(log_joint, 1)
    post = np.exp(joint - joint.max(1, keepdims=True))
    post /= post.sum(1, keepdims=True)
    c_mean = post @ scale
    p = r.momentum.numpy()[1:]
    c_of_p = (HIGHLAND_E0 * np.sqrt(p**2 + MUON_MASS**2) / p**2) ** 2
    np.testing.assert_allclose(c_of_p, c_mean[1:], rtol=1e-8)
    assert c_mean.mean() == pytest.approx(float(np.dot(CLASSES[1], scale)), rel=0.03)
    by_class = [np.median(p[t.data.momentum.numpy()[1:] == v]) for v in CLASSES[0]]
    assert by_class[0] < by_class[1] < by_class[2], by_class


def test_fisher_matrix_is_symmetric_its_diagonal_is_fisher_diagonal_and_matches_numpy():
    """Two layers (iron over water), with track errors: the full Fisher matrix of
    :func:`fisher_matrix` against an independent numpy evaluation of
    ``1/2 sum_i tr(Sigma_i^-1 W'_ij Sigma_i^-1 W'_il)`` with explicit 4 x 4 matrices."""
    t = toy(500, [(0.25, 0.0176), (0.25, 0.3608)], seed=24, track_sigma=(1e-4, 1e-3))
    problem = MaximumLikelihoodEM(path="straight").problem(t.data, t.volume)
    rho = torch.tensor([3.0, 50.0], dtype=D)  # bottom layer first
    info = fisher_matrix(rho, problem)[0].numpy()
    np.testing.assert_allclose(np.diag(info), fisher_diagonal(rho, problem).numpy(), rtol=1e-12)
    w = problem.scaled_w.T[:, [0, 1, 1, 2]].reshape(-1, 2, 2).numpy()
    big = np.einsum("kl,eab->ekalb", np.eye(2), w).reshape(-1, 4, 4)  # I_2 kron W' per entry
    muon, voxel = problem.paths.muon.numpy(), problem.paths.voxel.numpy()
    sigma = problem.noise.numpy().copy()
    np.add.at(sigma, muon, rho.numpy()[voxel][:, None, None] * big)
    inv = np.linalg.inv(sigma)
    expected = np.zeros((2, 2))
    for e in range(len(muon)):
        for f in np.nonzero(muon == muon[e])[0]:
            a = inv[muon[e]]
            expected[voxel[e], voxel[f]] += 0.5 * np.trace(a @ big[e] @ a @ big[f])
    np.testing.assert_allclose(info, expected, rtol=1e-10)
    variance = marginal_variance(rho, problem).numpy()
    np.testing.assert_allclose(variance, np.diag(np.linalg.inv(expected)), rtol=1e-10)


def test_fisher_matrix_with_momentum_classes_is_louis_information_in_numpy():
    """Two layers, each muon's momentum one of three hidden classes: :func:`fisher_matrix` (the
    classes summed per muon before the path entries are read) against Louis' observed
    information with explicit 4 x 4 matrices per (muon, class), ``I_jl = sum_i w_i [sum_k r_ik
    F_ikjl - (sum_k r_ik s_ikj s_ikl - s_ij s_il)]``, ``F_ikjl = 1/2 tr(A W'_j A W'_l)``,
    ``s_ikj = 1/2 (D^T A W'_j A D - tr(A W'_j))``, ``A = Sigma_ik^-1``, ``W'_ikj = c_k W_ij``;
    its diagonal is :func:`fisher_diagonal`'s where Louis' term leaves over 1 % (the floor)."""
    t = toy(400, [(0.25, 0.0176), (0.25, 0.3608)], seed=25, track_sigma=(1e-4, 1e-3), p_classes=CLASSES)
    problem = MaximumLikelihoodEM(path="straight", momentum_prior=DiscretePrior(*CLASSES)).problem(t.data, t.volume)
    assert problem.classes == 3
    rho = torch.tensor([3.0, 50.0], dtype=D)
    info = fisher_matrix(rho, problem)[0].numpy()
    w = problem.scaled_w.T[:, [0, 1, 1, 2]].reshape(-1, 2, 2).numpy()  # W alone: c is per class
    big = np.einsum("kl,eab->ekalb", np.eye(2), w).reshape(-1, 4, 4)
    muon, voxel = problem.paths.muon.numpy(), problem.paths.voxel.numpy()
    n = int(muon.max()) + 1
    momenta = np.array(CLASSES[0])
    scale = (HIGHLAND_E0 * np.sqrt(momenta**2 + MUON_MASS**2) / momenta**2) ** 2
    noise = problem.noise.numpy()[::3]
    data = problem.deflection.reshape(-1, 4).numpy()[::3]
    weight = 3 * problem.weight.numpy()[::3]
    path = np.zeros((n, 2, 4, 4))  # sum over the muon's entries in each voxel of I_2 kron W
    np.add.at(path, (muon, voxel), big)
    expected = np.zeros((2, 2))
    for i in range(n):
        log_joint, f, s = [], [], []
        for k in range(3):
            w_prime = scale[k] * path[i]  # (voxel, 4, 4)
            sigma = noise[i] + np.einsum("j,jab->ab", rho.numpy(), w_prime)
            a = np.linalg.inv(sigma)
            q = a @ data[i]
            log_joint.append(math.log(CLASSES[1][k]) - 0.5 * np.linalg.slogdet(sigma)[1] - 0.5 * data[i] @ q)
            f.append(0.5 * np.einsum("ab,jbc,cd,lda->jl", a, w_prime, a, w_prime))
            s.append(0.5 * (np.einsum("a,jab,b->j", q, w_prime, q) - np.einsum("ab,jba->j", a, w_prime)))
        r = np.exp(np.array(log_joint) - max(log_joint))
        r /= r.sum()
        s_arr = np.array(s)
        mean = r @ s_arr
        spread = np.einsum("k,kj,kl->jl", r, s_arr, s_arr) - np.outer(mean, mean)
        expected += weight[i] * (np.einsum("k,kjl->jl", r, np.array(f)) - spread)
    np.testing.assert_allclose(info, expected, rtol=1e-9)
    np.testing.assert_allclose(np.diag(info), fisher_diagonal(rho, problem).numpy(), rtol=1e-12)


def test_over_relaxed_steps_reach_the_em_fixed_point_sooner_and_never_lower_the_likelihood():
    """Iron over water (25 cm each), every muon crossing both: the plain EM creeps (after 40
    steps the water layer is still several errors from its fixed point, found by 1000 plain
    steps); the over-relaxed steps (the default) get there within a tenth of an error, with a
    likelihood that rose at every step and is at least the plain EM's."""
    t = toy(2000, [(0.25, 0.0176), (0.25, 0.3608)], seed=23, track_sigma=(1e-4, 1e-3))
    fast = MaximumLikelihoodEM(iterations=40, initial_x0=0.3608).reconstruct(t.data, t.volume)
    plain = MaximumLikelihoodEM(iterations=40, initial_x0=0.3608, acceleration=1.0).reconstruct(t.data, t.volume)
    fixed = MaximumLikelihoodEM(iterations=1000, initial_x0=0.3608, acceleration=1.0).reconstruct(t.data, t.volume)
    sigma = (fixed.uncertainty / fixed.x0 * fixed.inverse_x0).reshape(-1)
    fast_off = ((fast.inverse_x0 - fixed.inverse_x0).reshape(-1) / sigma).abs()
    plain_off = ((plain.inverse_x0 - fixed.inverse_x0).reshape(-1) / sigma).abs()
    assert float(fast_off.max()) < 0.1 and float(plain_off.max()) > 1.0, (fast_off, plain_off)
    assert bool((fast.log_likelihood.diff() >= 0).all())
    assert float(fast.log_likelihood[-1]) >= float(plain.log_likelihood[-1])


def test_a_batch_gives_each_entry_its_own_reconstruction():
    a = toy(500, [(0.25, 0.0176), (0.25, 0.3608)], seed=3, track_sigma=(1e-4, 1e-3))
    b = toy(700, [(0.25, 0.3608), (0.25, 0.0176)], seed=4, track_sigma=(1e-4, 1e-3))
    joint = concat([a.data, b.data])
    batch = torch.cat([torch.zeros(500, dtype=torch.long), torch.ones(700, dtype=torch.long)])
    joint = ScatterData(**{**joint.__dict__, "batch": batch, "batch_shape": (2,)})
    volumes = PassiveVolume.stack([a.volume, b.volume])
    method = MaximumLikelihoodEM(iterations=5, min_path=10.0)
    together = method.reconstruct(joint, volumes)
    assert together.x0.shape == (2, 1, 1, 2) and together.log_likelihood.shape == (6, 2)
    for k, t in enumerate((a, b)):
        alone = method.reconstruct(t.data, t.volume)
        torch.testing.assert_close(together.x0[k], alone.x0, rtol=1e-10, atol=0)
        torch.testing.assert_close(together.uncertainty[k], alone.uncertainty, rtol=1e-10, atol=0)
        torch.testing.assert_close(together.log_likelihood[:, k], alone.log_likelihood, rtol=1e-10, atol=0)
    vmap = method(joint, volumes)
    assert vmap.method == "mlem" and vmap.score.shape == (2, 1, 1, 2)


def test_muons_of_zero_weight_change_nothing_and_weights_act_as_likelihood_weights():
    t = toy(800, [(0.5, 0.3608)], seed=5, track_sigma=(1e-4, 1e-3))
    method = MaximumLikelihoodEM(iterations=3)
    base = method.reconstruct(t.data, t.volume)
    junk = toy(300, [(0.5, 0.01)], seed=6)
    zeroed = ScatterData(**{**junk.data.__dict__, "weight": torch.zeros(300, dtype=D)})
    padded = method.reconstruct(concat([t.data, zeroed]), t.volume)
    torch.testing.assert_close(padded.x0, base.x0, rtol=1e-12, atol=0)
    # Weight 2 on every muon = every muon twice.
    doubled = ScatterData(**{**t.data.__dict__, "weight": 2 * t.data.weight})
    twice = method.reconstruct(concat([t.data, t.data]), t.volume)
    torch.testing.assert_close(method.reconstruct(doubled, t.volume).x0, twice.x0, rtol=1e-10, atol=0)
    # No muon at all: every voxel unmeasured, nothing raised.
    none = ScatterData(**{**t.data.__dict__, "weight": torch.zeros(800, dtype=D)})
    empty = method(none, t.volume)
    assert not bool(empty.measured.any()) and float(empty.score.abs().sum()) == 0.0


def test_voxel_map_contract_and_unmeasured_voxels():
    """Score = 1/X0 where measured, 0 elsewhere; voxels outside every muon's path keep their
    initial density and are unmeasured."""
    t = toy(600, [(0.5, 0.3608)], seed=7)
    wide = PassiveVolume.uniform("water", (2.0, 1.0, 0.5), (1.0, 1.0, 0.5), z_low=Z_LOW, dtype=D)  # x in [1, 2]: empty
    method = MaximumLikelihoodEM(iterations=4, initial_x0=0.3608)
    vmap = method(t.data, wide)
    r = method.reconstruct(t.data, wide)
    assert vmap.method == "mlem" and vmap.score.shape == (2, 1, 1)
    assert vmap.measured.tolist() == [[[True]], [[False]]]
    assert float(vmap.score[0]) == pytest.approx(1 / float(vmap.x0[0]))
    assert float(vmap.score[1]) == 0.0 and float(vmap.x0[1]) == 0.0 and float(vmap.uncertainty[1]) == 0.0
    assert float(r.inverse_x0[1]) == pytest.approx(1 / 0.3608)  # untouched
    assert float(vmap.weight[0]) == pytest.approx(600) and float(vmap.weight[1]) == 0.0
    assert float(r.density[0]) == pytest.approx((HIGHLAND_E0 / 3.0) ** 2 * float(r.inverse_x0[0]))


def test_default_start_is_the_ml_fit_of_one_uniform_density():
    """The default start on a grid of 4 voxels equals the reconstruction of the same muons with
    the whole volume as one voxel (W is additive along a path), started from water, by plain EM steps."""
    t = toy(700, [(0.25, 0.0176), (0.25, 0.3608)], seed=12, track_sigma=(1e-4, 1e-3))
    grid = PassiveVolume.uniform("water", (1.0, 1.0, 0.5), (0.5, 1.0, 0.25), z_low=Z_LOW, dtype=D)
    one = PassiveVolume.uniform("water", (1.0, 1.0, 0.5), (1.0, 1.0, 0.5), z_low=Z_LOW, dtype=D)
    method = MaximumLikelihoodEM(uniform_iterations=7)
    start = method.initial(method.problem(t.data, grid))
    plain = MaximumLikelihoodEM(iterations=7, initial_x0=0.3608, log_term=False, acceleration=1.0)
    single = plain.reconstruct(t.data, one)
    assert start.shape == (4,)
    torch.testing.assert_close(start, single.inverse_x0.reshape(1).expand(4), rtol=1e-10, atol=0)
    # Between the two layers' densities (1/X0 = 2.8 and 57 m^-1).
    assert 2.8 < float(start[0]) < 57


def test_em_update_keeps_densities_positive_and_leaves_uncrossed_voxels_alone():
    t = toy(400, [(0.25, 0.0176), (0.25, 0.3608)], seed=8)
    wide = PassiveVolume.uniform("water", (2.0, 1.0, 0.5), (1.0, 1.0, 0.25), z_low=Z_LOW, dtype=D)
    problem = MaximumLikelihoodEM().problem(t.data, wide)
    rho = torch.tensor([1e-3, 1e4, 5.0, 7.0], dtype=D)  # absurd starts
    new = em_update(rho, problem)
    assert bool((new > 0).all())
    assert new[2:].tolist() == [5.0, 7.0]


# ----------------------------------------------------------------------------- refusals, dtype, device
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"iterations": 0}, "iterations"),
        ({"iterations": -3}, "iterations"),
        ({"iterations": 2.5}, "iterations"),
        ({"iterations": True}, "iterations"),
        ({"uniform_iterations": 0}, "uniform_iterations"),
        ({"initial_x0": 0.0}, "initial_x0"),
        ({"initial_x0": -0.3}, "initial_x0"),
        ({"initial_x0": math.nan}, "initial_x0"),
        ({"initial_x0": torch.tensor([0.1, 0.0])}, "initial_x0"),
        ({"path": "curved"}, "path"),
        ({"min_path": -1.0}, "min_path"),
        ({"nominal_momentum": 0.0}, "nominal_momentum"),
        ({"acceleration": 0.5}, "acceleration"),
        ({"acceleration": math.inf}, "acceleration"),
        ({"error": "bootstrap"}, "error"),
    ],
)
def test_bad_settings_are_refused_by_name(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MaximumLikelihoodEM(**kwargs)


def test_initial_map_tensor_is_accepted_and_path_lengths_refuse_bad_shapes():
    t = toy(300, [(0.25, 0.0176), (0.25, 0.3608)], seed=9)
    start = torch.tensor([[[0.3, 0.02]]], dtype=D)
    r = MaximumLikelihoodEM(iterations=1, initial_x0=start).reconstruct(t.data, t.volume)
    assert r.x0.shape == (1, 1, 2)
    with pytest.raises(ValueError, match="vertices"):
        path_lengths(torch.zeros(3, 1, 3, dtype=D), t.volume)


def test_float32_stays_float32_and_gradients_are_finite_next_to_unmeasured_voxels():
    t = toy(500, [(0.5, 0.3608)], seed=10, track_sigma=(1e-4, 1e-3))
    t_in, t_out = (
        Tracks(**{k: (v.float() if isinstance(v, torch.Tensor) else v) for k, v in tr.__dict__.items()})
        for tr in (t.data.incoming, t.data.outgoing)
    )
    slope = t_in.slope.clone().requires_grad_()
    t_in = Tracks(**{**t_in.__dict__, "slope": slope})
    scatters = compute_scatters(t_in, t_out, 0.65, covariance=False)
    d32 = ScatterData(t_in, t_out, scatters, t.data.momentum.float(), t.data.weight.float())
    vol32 = PassiveVolume.uniform("water", (1.0, 1.0, 0.5), (1.0, 1.0, 0.5), z_low=Z_LOW)
    r32 = MaximumLikelihoodEM(iterations=5).reconstruct(d32, vol32)
    r64 = MaximumLikelihoodEM(iterations=5).reconstruct(t.data, t.volume)
    assert r32.x0.dtype == torch.float32 and r32.uncertainty.dtype == torch.float32
    assert float(r32.x0.detach()) == pytest.approx(float(r64.x0), rel=1e-4)
    # A grid with a voxel no muon crosses (x in [1, 2]): unmeasured, and no NaN in the gradient.
    wide = PassiveVolume.uniform("water", (2.0, 1.0, 0.5), (1.0, 1.0, 0.5), z_low=Z_LOW)
    vmap = MaximumLikelihoodEM(iterations=5, min_path=0.0)(d32, wide)
    assert vmap.measured.reshape(-1).tolist() == [True, False]
    (vmap.score.sum() + vmap.uncertainty.sum() + vmap.x0.sum()).backward()
    assert slope.grad is not None and bool(torch.isfinite(slope.grad).all()) and bool(slope.grad.abs().sum() > 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_cuda_and_agrees_with_cpu():
    t = toy(2000, [(0.25, 0.0176), (0.25, 0.3608)], seed=11, track_sigma=(1e-4, 1e-3))

    def to(x):
        if isinstance(x, torch.Tensor):
            return x.cuda()
        if isinstance(x, (Tracks, ScatterData)) or hasattr(x, "__dataclass_fields__"):
            return type(x)(**{k: to(v) for k, v in x.__dict__.items()})
        return x

    vol = PassiveVolume.uniform("water", (1.0, 1.0, 0.5), (1.0, 1.0, 0.25), z_low=Z_LOW, dtype=D, device="cuda")
    gpu = MaximumLikelihoodEM(iterations=10).reconstruct(to(t.data), vol)
    cpu = MaximumLikelihoodEM(iterations=10).reconstruct(t.data, t.volume)
    assert gpu.x0.device.type == "cuda"
    torch.testing.assert_close(gpu.x0.cpu(), cpu.x0, rtol=1e-9, atol=0)
