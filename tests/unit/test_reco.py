import itertools
import math

import pytest
import torch

from mutomo.detector.panel import Hits
from mutomo.reco import (
    Tracks,
    at_least_two,
    binned_poca,
    box_probability,
    compute_scatters,
    extended_poca,
    fit_tracks,
    poca_within_height,
    voxel_indices,
)
from mutomo.volume import PassiveVolume

D = torch.float64


def line_tracks(point: list[list[float]], slope: list[list[float]], z_ref: float) -> Tracks:
    """Tracks through ``point`` (x, y, z) with ``slope`` (dx/dz, dy/dz), tiny covariance."""
    p = torch.tensor(point, dtype=D)
    s = torch.tensor(slope, dtype=D)
    xy = p[:, :2] + s * (z_ref - p[:, 2:3])
    n = len(p)
    cov = torch.eye(4, dtype=D).expand(n, 4, 4) * 1e-8
    return Tracks(z_ref, xy, s, cov, torch.zeros(n, dtype=D), torch.zeros(n, dtype=D), torch.ones(n, dtype=D))


def test_poca_of_crossing_lines_is_the_crossing_point():
    x = [[0.3, -0.2, 0.8], [1.0, 2.0, 0.55]]
    tin = line_tracks(x, [[0.1, -0.05], [0.0, 0.2]], z_ref=1.0)
    tout = line_tracks(x, [[-0.08, 0.03], [0.15, 0.1]], z_ref=0.4)
    sc = compute_scatters(tin, tout, z_mid=0.7)
    assert torch.allclose(sc.poca, torch.tensor(x, dtype=D), atol=1e-9)
    expected = torch.atan(torch.tensor([[-0.08, 0.03], [0.15, 0.1]], dtype=D)) - torch.atan(
        torch.tensor([[0.1, -0.05], [0.0, 0.2]], dtype=D)
    )
    assert torch.allclose(sc.theta_xy, expected)


def test_poca_of_skew_lines_is_the_midpoint_of_closest_points():
    # Two lines at z = 1 offset by 1 cm in y, with opposite x slopes: closest points at z = 1.
    tin = line_tracks([[0.0, 0.0, 1.0]], [[0.1, 0.0]], z_ref=1.2)
    tout = line_tracks([[0.0, 0.01, 1.0]], [[-0.1, 0.0]], z_ref=0.8)
    sc = compute_scatters(tin, tout, z_mid=1.0)
    assert torch.allclose(sc.poca, torch.tensor([[0.0, 0.005, 1.0]], dtype=D), atol=1e-9)
    assert float(sc.theta) == pytest.approx(2 * math.atan(0.1), rel=1e-9)


def test_parallel_tracks_are_finite_in_values_and_gradients():
    slope = torch.tensor([[0.1, 0.2], [0.0, 0.0]], dtype=D, requires_grad=True)
    xy = torch.tensor([[0.5, 0.5], [0.2, 0.3]], dtype=D, requires_grad=True)
    cov = torch.eye(4, dtype=D).expand(2, 4, 4) * 1e-6
    ones = torch.ones(2, dtype=D)
    tin = Tracks(1.0, xy, slope, cov, ones, ones, ones)
    tout = Tracks(1.0, xy + 0.001, slope, cov, ones, ones, ones)
    sc = compute_scatters(tin, tout, z_mid=0.7)
    assert bool(torch.isfinite(sc.poca).all()) and bool(torch.isfinite(sc.poca_covariance).all())
    assert torch.allclose(sc.poca[:, 2], torch.full((2,), 0.7, dtype=D))
    (sc.poca.sum() + sc.poca_covariance.sum() + sc.theta.sum()).backward()
    assert bool(torch.isfinite(slope.grad).all()) and bool(torch.isfinite(xy.grad).all())


def test_at_least_two_matches_enumeration():
    p = torch.rand(5, 7, dtype=D)
    brute = torch.zeros(7, dtype=D)
    for bits in itertools.product([0, 1], repeat=5):
        if sum(bits) >= 2:
            term = torch.ones(7, dtype=D)
            for b, pi in zip(bits, p, strict=True):
                term = term * (pi if b else 1 - pi)
            brute += term
    assert torch.allclose(at_least_two(p), brute)


def make_hits(true_xy, z, resolution, weight, noise):
    return Hits(
        xy=true_xy + resolution[:, None, None] * noise, z=z, true_xy=true_xy, resolution=resolution, weight=weight
    )


def test_fit_covariance_matches_scatter_of_repeated_fits():
    z = torch.tensor([1.6, 1.45, 1.3], dtype=D)
    res = torch.tensor([1e-3, 2e-3, 1e-3], dtype=D)
    n = 20000
    true_slope = torch.tensor([0.2, -0.1], dtype=D)
    true_xy = torch.tensor([0.4, 0.6], dtype=D) + true_slope * (z[:, None, None] - 1.2)
    true_xy = true_xy.expand(3, n, 2)
    weight = torch.ones(3, n, dtype=D)
    noise = torch.randn(3, n, 2, dtype=D, generator=torch.Generator().manual_seed(4))
    tracks = fit_tracks(make_hits(true_xy, z, res, weight, noise), z_ref=1.2)
    params = torch.cat([tracks.xy, tracks.slope], dim=1)
    empirical = torch.cov(params.T)
    analytic = tracks.covariance[0]
    standard_error = (analytic.diagonal() / n).sqrt()
    assert bool(((params.mean(0) - torch.tensor([0.4, 0.6, 0.2, -0.1], dtype=D)).abs() < 4 * standard_error).all())
    for i in range(4):
        assert float(empirical[i, i]) == pytest.approx(float(analytic[i, i]), rel=0.05)
    assert float(empirical[0, 2]) == pytest.approx(float(analytic[0, 2]), rel=0.08)
    assert tracks.chi2.mean() == pytest.approx(2 * 3 - 4, rel=0.05)  # chi2 with 2 dof


def test_missing_hits_give_zero_weight_and_finite_fit():
    z = torch.tensor([1.6, 1.5, 1.4], dtype=D)
    res = torch.full((3,), 1e-4, dtype=D)
    true_xy = torch.rand(3, 4, 2, dtype=D)
    weight = torch.tensor([[0.0, 0.9, 0.0, 0.9], [0.0, 0.0, 0.0, 0.9], [0.0, 0.0, 0.9, 0.9]], dtype=D)
    tracks = fit_tracks(make_hits(true_xy, z, res, weight, torch.zeros(3, 4, 2, dtype=D)), z_ref=1.3)
    assert bool(torch.isfinite(tracks.xy).all()) and bool(torch.isfinite(tracks.covariance).all())
    assert float(tracks.weight[0]) == 0 and float(tracks.weight[1]) < 1e-12 and float(tracks.weight[3]) > 0.9
    with pytest.raises(ValueError, match="at least 2 panels"):
        fit_tracks(make_hits(true_xy[:1], z[:1], res[:1], weight[:1], torch.zeros(1, 4, 2, dtype=D)), z_ref=1.0)


def test_box_probability_uncorrelated_is_product_and_partition_sums_to_one():
    mean = torch.tensor([0.1, -0.2, 0.05], dtype=D)
    sd = torch.tensor([0.3, 0.5, 0.2], dtype=D)
    low, high = torch.tensor([0.0, -0.5, -0.1], dtype=D), torch.tensor([0.4, 0.0, 0.3], dtype=D)
    p = box_probability(mean, torch.diag(sd**2), low, high)
    cdf = lambda x: 0.5 * (1 + torch.erf(x / math.sqrt(2)))  # noqa: E731
    assert float(p) == pytest.approx(float(torch.prod(cdf((high - mean) / sd) - cdf((low - mean) / sd))), rel=1e-12)
    # Correlated Gaussian over a partition of (effectively) all space: total 1.
    cov = torch.tensor([[0.04, 0.024, 0.01], [0.024, 0.09, -0.02], [0.01, -0.02, 0.05]], dtype=D)
    edges = torch.linspace(-3, 3, 13, dtype=D)
    cells = torch.stack(torch.meshgrid(edges[:-1], edges[:-1], edges[:-1], indexing="ij"), -1).reshape(-1, 3)
    total = box_probability(torch.zeros(len(cells), 3, dtype=D), cov.expand(len(cells), 3, 3), cells, cells + 0.5)
    assert float(total.sum()) == pytest.approx(1.0, abs=0.01)


def test_box_probability_keeps_correlations():
    """Against a Monte Carlo estimate (1e6 draws): the correlated answer, not the product of marginals."""
    cov = torch.tensor([[1.0, 0.7, 0.3], [0.7, 1.0, 0.5], [0.3, 0.5, 1.0]], dtype=D)
    low, high = torch.tensor([0.0, 0.0, -0.5], dtype=D), torch.tensor([1.0, 1.5, 1.0], dtype=D)
    gen = torch.Generator().manual_seed(0)
    draws = torch.randn(1_000_000, 3, generator=gen, dtype=D) @ torch.linalg.cholesky(cov).T
    mc = float(((draws > low) & (draws < high)).all(1).double().mean())
    approx = float(box_probability(torch.zeros(3, dtype=D), cov, low, high))
    cdf = lambda x: 0.5 * (1 + math.erf(x / math.sqrt(2)))  # noqa: E731
    independent = math.prod(cdf(h) - cdf(lo) for lo, h in zip(low.tolist(), high.tolist(), strict=True))
    assert approx == pytest.approx(mc, abs=0.005)
    assert abs(independent - mc) > 0.02


def test_voxel_assignment_and_binning():
    vol = PassiveVolume.uniform("water", (1.0, 0.5, 0.3), 0.1, z_low=0.2, dtype=D)
    pts = torch.rand(3000, 3, dtype=D) * torch.tensor([1.2, 0.7, 0.5], dtype=D) + torch.tensor(
        [-0.1, -0.1, 0.1], dtype=D
    )
    idx, inside = voxel_indices(pts, vol)
    centres = vol.voxel_centres().reshape(-1, 3)
    nearest = (pts[:, None] - centres[None]).abs().max(-1).values.argmin(1)
    flat = (idx[:, 0] * 5 + idx[:, 1]) * 3 + idx[:, 2]
    assert torch.equal(flat[inside], nearest[inside])
    grid = binned_poca(pts, torch.ones(3000, dtype=D), vol)
    assert float(grid.sum()) == pytest.approx(float(inside.sum()))


def test_extended_poca_rows_hold_the_in_volume_probability():
    vol = PassiveVolume.uniform("water", (1.0, 1.0, 1.0), 0.1, dtype=D)
    pts = torch.tensor([[0.55, 0.55, 0.55], [0.05, 0.05, 0.05], [2.0, 2.0, 2.0]], dtype=D)
    cov = torch.tensor([[4e-4, 1e-4, 0.0], [1e-4, 4e-4, 2e-4], [0.0, 2e-4, 9e-4]], dtype=D).expand(3, 3, 3)
    w = extended_poca(pts, cov, torch.tensor([0.5, 1.0, 1.0], dtype=D), vol)
    # Narrow Gaussian well inside: all of its weight. In a corner voxel: the part outside the grid is
    # given back (the scatter happened inside), so again all of it. Far outside: finite, no weight.
    rows = w.weight.sum(1)
    assert float(rows[0]) == pytest.approx(0.5, rel=1e-3) and float(rows[1]) == pytest.approx(1.0, rel=1e-3)
    assert bool(torch.isfinite(w.weight).all()) and float(rows[2]) <= 1.0
    grid = w.to_grid(vol.shape)
    assert float(grid[5, 5, 5]) == pytest.approx(
        0.5 * float(box_probability(pts[0], cov[0], torch.full((3,), 0.5, dtype=D), torch.full((3,), 0.6, dtype=D))),
        rel=0.02,
    )
    with pytest.raises(ValueError, match="half_width"):
        extended_poca(pts, cov, torch.ones(3, dtype=D), vol, half_width=-1)


def test_fit_is_finite_when_panels_share_one_height():
    """Panels pushed onto one height (e.g. a bound) leave no lever arm: finite values, huge slope variance."""
    z = torch.tensor([1.42, 1.42, 1.42], dtype=D)
    true_xy = torch.rand(3, 5, 2, dtype=D)
    tracks = fit_tracks(
        make_hits(
            true_xy, z, torch.full((3,), 1e-4, dtype=D), torch.ones(3, 5, dtype=D), torch.zeros(3, 5, 2, dtype=D)
        ),
        z_ref=1.4,
    )
    for value in (tracks.xy, tracks.slope, tracks.covariance):
        assert bool(torch.isfinite(value).all())
    assert float(tracks.covariance[0, 2, 2]) > 1.0


def test_grid_window_equals_box_by_box_with_correlations():
    """The grid integration of a window gives box_probability's value for every box, in float64."""
    from mutomo.reco.voxelise import grid_window_probability

    gen = torch.Generator().manual_seed(0)
    n = 300
    mean = torch.rand(n, 3, dtype=torch.float64, generator=gen) * 0.3
    a = torch.randn(n, 3, 3, dtype=torch.float64, generator=gen) * 0.05
    cov = a @ a.transpose(-1, -2) + 1e-4 * torch.eye(3, dtype=torch.float64)
    corner = torch.rand(n, 3, dtype=torch.float64, generator=gen) * 0.1 - 0.05
    edges = corner[:, :, None] + torch.arange(4, dtype=torch.float64) * 0.1  # (n, 3, 4)
    grid = grid_window_probability(mean, cov, edges)
    cells = list(itertools.product(range(3), repeat=3))
    for ix, iy, iz in cells:
        low = torch.stack([edges[:, 0, ix], edges[:, 1, iy], edges[:, 2, iz]], -1)
        high = torch.stack([edges[:, 0, ix + 1], edges[:, 1, iy + 1], edges[:, 2, iz + 1]], -1)
        torch.testing.assert_close(grid[:, ix, iy, iz], box_probability(mean, cov, low, high), rtol=1e-12, atol=0)
    assert float(grid.sum((1, 2, 3)).max()) <= 1 + 1e-9


def test_truncated_moments_have_finite_gradients_far_in_the_tail_in_float32():
    """Regression (property tests, issue 14): an interval 20 standard deviations out has a
    probability below 1e-30; its floor squared underflowed float32 and the moments' gradient
    (1 / p^2) was NaN."""
    from mutomo.reco.voxelise import _truncated_moments

    edges = torch.tensor([[20.0, 21.0, 22.0]], requires_grad=True)
    p, m, v = _truncated_moments(edges)
    (p.sum() + m.sum() + v.sum()).backward()
    assert edges.grad is not None and bool(torch.isfinite(edges.grad).all())
    assert bool(torch.isfinite(m).all()) and bool((p > 0).all())


def test_poca_in_float32_agrees_with_float64_for_small_deflections():
    """The PoCA of nearly parallel tracks in float32: D = a c - b^2 of the textbook formula
    cancels (a, c ~ 1, D ~ deflection^2), which put PoCA heights of 1-10 mrad scatters off by
    centimetres to decimetres and made the ladle's float32 training loss jump by ~1e-4 below a
    millimetre. From the slope differences (n = v1 x v2) nothing cancels."""
    g = torch.Generator().manual_seed(3)
    n = 4000
    vertex = torch.rand(n, 3, generator=g, dtype=D) * torch.tensor([1.0, 1.0, 1.0], dtype=D) + torch.tensor(
        [0.0, 0.0, 0.4], dtype=D
    )
    slope_in = (torch.rand(n, 2, generator=g, dtype=D) - 0.5) * 1.6
    theta = torch.logspace(-3.0, -1.0, n, dtype=D)
    phi = 2 * math.pi * torch.rand(n, generator=g, dtype=D)
    slope_out = slope_in + theta[:, None] * torch.stack([torch.cos(phi), torch.sin(phi)], -1)
    cov = torch.eye(4, dtype=D).expand(n, 4, 4) * 1e-8
    ones = torch.ones(n, dtype=D)

    def scatters(dtype: torch.dtype):
        def tracks(slope: torch.Tensor, z_ref: float) -> Tracks:
            xy = vertex[:, :2] + slope * (z_ref - vertex[:, 2:3])
            return Tracks(
                z_ref, xy.to(dtype), slope.to(dtype), cov.to(dtype), ones.to(dtype), ones.to(dtype), ones.to(dtype)
            )

        return compute_scatters(tracks(slope_in, 1.4), tracks(slope_out, 0.4), z_mid=0.9)

    exact, single = scatters(D), scatters(torch.float32)
    assert float((single.poca.double() - exact.poca).abs().max()) < 1e-3
    sigma_exact = exact.poca_covariance[:, 2, 2].sqrt()
    sigma_single = single.poca_covariance[:, 2, 2].double().sqrt()
    assert float(((sigma_single - sigma_exact) / sigma_exact).abs().max()) < 1e-3


def test_pocas_above_or_below_the_volume_move_along_the_tracks_to_its_face():
    """A nearly undeflected muon's PoCA far above the block goes to the mean of its two tracks at
    the top face (not to the voxel nearest the far point, 0.5 m sideways); PoCAs inside stay."""
    volume = PassiveVolume.uniform("iron", (1.0, 1.0, 0.3), (0.1, 0.1, 0.1), z_low=0.4, dtype=torch.float64)
    d = torch.float64
    slope = torch.tensor([[0.5, 0.0], [0.2, 0.1]], dtype=d)
    xy_in = torch.tensor([[0.5, 0.5], [0.3, 0.6]], dtype=d).requires_grad_()
    cov = torch.zeros(2, 4, 4, dtype=d)
    ones = torch.ones(2, dtype=d)
    incoming = Tracks(0.7, xy_in, slope, cov, ones, ones, ones)
    outgoing = Tracks(0.4, xy_in + slope * -0.3 + 1e-3, slope + 1e-4, cov, ones, ones, ones)
    poca = torch.tensor([[1.5, 0.5, 1.7], [0.28, 0.58, 0.55]], dtype=d)
    moved = poca_within_height(poca, incoming, outgoing, volume)
    expected = 0.5 * (incoming.at(0.7)[0] + outgoing.at(0.7)[0])
    assert torch.allclose(moved[0], expected) and float(moved[0, 2].detach()) == pytest.approx(0.7)
    assert abs(float(moved[0, 0].detach()) - 0.5) < 0.01  # where the muon entered, not 1.5 m
    assert torch.equal(moved[1], poca[1])
    moved.sum().backward()
    assert xy_in.grad is not None and bool(torch.isfinite(xy_in.grad).all())
