"""Properties of the geometry: acceptance, straight lines, hits, track fits, PoCA.

Cheap enough for hundreds of cases each; the simulation through a volume is in
test_pipeline.py.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mutomo.detector import smooth_acceptance
from mutomo.muons import MuonBatch
from mutomo.reco import at_least_two, compute_scatters, fit_tracks, measure
from mutomo.volume import position_at_z
from mutomo.volume.propagation import MIN_ABS_COSINE
from tests.property.strategies import (
    D,
    assert_finite,
    assert_finite_gradients,
    assert_unit_interval,
    build_detector,
    build_muons,
    build_volume,
    grid_volumes,
    layouts,
    muon_batches,
    noise,
    smoothnesses,
    spans,
    well_posed,
)

coordinates = st.sampled_from([0.0, 1e12, -1e12]) | st.floats(-10.0, 10.0)


@settings(max_examples=500, deadline=None, derandomize=True)
@given(
    offset=st.lists(st.tuples(coordinates, coordinates), min_size=1, max_size=6),
    centre=st.tuples(st.floats(-2.0, 2.0), st.floats(-2.0, 2.0)),
    span=st.tuples(spans, spans),
    smoothness=smoothnesses,
)
def test_acceptance_is_a_mirror_symmetric_weight_with_finite_gradients(offset, centre, span, smoothness):
    """Smooth acceptance lies in [0, 1], takes the same value at mirror points about the panel
    centre (exactly on an edge too), is largest at the centre, and has finite gradients in the
    centre and span."""
    s = torch.tensor([span], dtype=D, requires_grad=True)
    d = torch.tensor(offset, dtype=D)
    edges = 0.5 * torch.tensor(span, dtype=D) * torch.tensor([[1.0, 0.0], [0.0, -1.0], [1.0, 1.0]], dtype=D)
    d = torch.cat([d, edges])
    origin = torch.zeros(1, 2, dtype=D)  # offsets represented exactly: the symmetry is exact
    w0 = smooth_acceptance(d[None], origin, s, smoothness)
    torch.testing.assert_close(w0, smooth_acceptance(-d[None], origin, s, smoothness), rtol=0.0, atol=0.0)
    # Largest at the centre, to float64 rounding: the centre's own value is computed on a tensor
    # of another shape, whose vectorised sigmoid may round the last bit differently.
    centre_value = smooth_acceptance(origin[:, None], origin, s, smoothness)
    assert bool((w0 <= centre_value * (1 + 1e-12)).all())
    c = torch.tensor([centre], dtype=D, requires_grad=True)
    w = smooth_acceptance((c.detach() + d)[None], c, s, smoothness)
    assert_unit_interval("acceptance", w)
    (w.sum() + (w * d.sum(-1)).sum() + w0.sum()).backward()
    assert_finite("d acceptance / d centre", c.grad)
    assert_finite("d acceptance / d span", s.grad)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(data=st.data(), z=st.floats(-3.0, 3.0))
def test_position_at_z_is_on_the_line_and_the_plane(data, z):
    """The crossing point is finite and at height z for every direction; it is on the muon's line
    wherever |cos(zenith)| >= MIN_ABS_COSINE. A muon nearer horizontal (exactly horizontal ones
    included) never reaches z within 1e12 m: it is put far away on the plane, finitely, not on
    its line (position_at_z floors |cos| to keep values and gradients finite)."""
    layout = data.draw(layouts(grid_volumes()))
    muons = build_muons(data.draw(muon_batches(layout)))
    height = torch.tensor(z, dtype=D, requires_grad=True)
    point = position_at_z(muons, height)
    assert_finite("crossing point", point)
    point.sum().backward()
    assert_finite("d crossing / d z", height.grad)
    scale_all = 1.0 + point.detach().abs().amax(-1) + muons.position.abs().amax(-1)
    assert bool(((point.detach()[:, 2] - z).abs() <= 1e-12 * scale_all).all())
    reaches = muons.direction[:, 2].abs() >= MIN_ABS_COSINE
    p, x, d = point.detach()[reaches], muons.position[reaches], muons.direction[reaches]
    scale = 1.0 + p.abs().amax(-1) + x.abs().amax(-1)
    off_line = torch.linalg.cross(p - x, d, dim=-1).norm(dim=-1)
    assert bool((off_line <= 1e-12 * scale).all()), off_line


@settings(max_examples=300, deadline=None, derandomize=True)
@given(data=st.data(), seed=st.integers(0, 2**31 - 1))
def test_hits_are_finite_weights_in_unit_interval_with_finite_gradients(data, seed):
    """Hits of any muon on any panel: finite positions, weights in [0, 1] (0 exactly for a
    muon of weight 0), finite gradients in every panel parameter; also for the cost."""
    layout = data.draw(layouts())
    det = build_detector(layout)
    muons = build_muons(data.draw(muon_batches(layout)))
    loss = det.cost()
    for side in ("above", "below"):
        hits = det.hits(muons, side, noise(det.n_panels(side), len(muons), seed))
        assert_finite(f"{side} hit positions", hits.xy)
        assert_finite(f"{side} true crossings", hits.true_xy)
        assert_unit_interval(f"{side} hit weights", hits.weight)
        assert bool((hits.weight[:, muons.weight == 0] == 0).all())
        loss = loss + (hits.weight * hits.xy.sum(-1)).sum() + hits.weight.sum() + hits.positions.sum()
    assert_finite("cost", det.cost())
    loss.backward()
    assert_finite_gradients(det)


def poisson_binomial_at_least_two(p: torch.Tensor) -> torch.Tensor:
    """Brute force over the 2^n outcomes: ``(n, mu) -> (mu,)``."""
    total = torch.zeros_like(p[0])
    for outcome in itertools.product((0, 1), repeat=p.shape[0]):
        if sum(outcome) >= 2:
            prob = torch.ones_like(p[0])
            for hit, pi in zip(outcome, p, strict=True):
                prob = prob * (pi if hit else 1 - pi)
            total = total + prob
    return total


probabilities = st.sampled_from([0.0, 1.0, 1e-6, 1 - 1e-9]) | st.floats(0.0, 1.0)


@settings(max_examples=600, deadline=None, derandomize=True)
@given(st.integers(1, 6).flatmap(lambda n: st.lists(st.lists(probabilities, min_size=n, max_size=n), min_size=1)))
def test_at_least_two_is_the_poisson_binomial_tail(rows):
    """P(at least two hits) equals the enumeration over all outcomes, lies in [0, 1], and has
    finite gradients even at p = 0 and p = 1."""
    p = torch.tensor(rows, dtype=D).T.contiguous().requires_grad_(True)  # (panel, mu)
    value = at_least_two(p)
    assert_unit_interval("P(at least two)", value)
    torch.testing.assert_close(value, poisson_binomial_at_least_two(p.detach()), rtol=1e-9, atol=1e-12)
    value.sum().backward()
    assert_finite("d P / d p", p.grad)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(data=st.data())
def test_fit_of_noiseless_hits_recovers_the_true_line(data):
    """Noiseless hits lie on the muon's line, so the weighted fit returns that line (whatever
    the weights) wherever its weighted lever arm exceeds MIN_LEVER_ARM; where it does not (all
    the weight on one panel), the floored fit only shrinks the slope towards 0, finitely."""
    layout = data.draw(layouts(grid_volumes(), min_gap=1e-3))
    det = build_detector(layout)
    muons = build_muons(data.draw(muon_batches(layout, horizontal=False)))
    vol = layout.volume
    for side, z_ref in (("above", vol.z_high), ("below", vol.z_low)):
        hits = det.hits(muons, side, torch.zeros(det.n_panels(side), len(muons), 2, dtype=D))
        tracks = fit_tracks(hits, z_ref, muons.weight)
        for name in ("xy", "slope", "covariance", "chi2", "ndof"):
            assert_finite(f"{side} track {name}", getattr(tracks, name))
        assert_unit_interval(f"{side} track weight", tracks.weight)
        # The line the hits lie on: position_at_z floors |cos(zenith)| at MIN_ABS_COSINE.
        cos = muons.direction[:, 2:]
        true_slope = muons.direction[:, :2] / torch.copysign(cos.abs().clamp(min=MIN_ABS_COSINE), cos)
        true_xy = position_at_z(muons, z_ref)[:, :2]
        z = hits.z.detach()
        lever = float(z.max() - z.min())
        hit_scale = hits.xy.detach().abs().amax((0, 2))
        slope = tracks.slope.detach()
        ok = well_posed(hits)
        tol_slope = 1e-9 * (1 + true_slope.abs().amax(-1) + hit_scale / lever)
        tol_xy = tol_slope * (1 + abs(z_ref) + float(z.abs().max())) + 1e-9 * hit_scale
        assert bool(((slope - true_slope).abs().amax(-1) <= tol_slope)[ok].all())
        assert bool(((tracks.xy.detach() - true_xy).abs().amax(-1) <= tol_xy)[ok].all())
        shrunk = (slope.abs() <= true_slope.abs() * (1 + 1e-9) + tol_slope[:, None]).all(-1)
        assert bool(shrunk[~ok].all())
        cov = tracks.covariance.detach()
        torch.testing.assert_close(cov, cov.transpose(-1, -2))
        assert bool((cov.diagonal(dim1=-2, dim2=-1) > 0).all())


def kinked(muons: MuonBatch, kink: torch.Tensor, turn: torch.Tensor) -> tuple[MuonBatch, MuonBatch]:
    """The muons as two lines through ``kink (mu, 3)``: incoming along their direction, outgoing
    with slopes changed by ``turn (mu, 2)`` (horizontal muons, which have no slope, go on
    straight)."""
    incoming = muons.replace(position=kink)
    cos = muons.direction[:, 2:]
    flat = cos == 0
    slope = muons.direction[:, :2] / torch.where(flat, -1.0, cos) + turn
    d_out = torch.cat([-slope, -torch.ones_like(slope[:, :1])], -1)
    d_out = torch.where(flat, muons.direction, d_out / d_out.norm(dim=-1, keepdim=True))
    outgoing = incoming.replace(direction=d_out)
    return incoming, outgoing


@st.composite
def kinks(draw: st.DrawFn, layout, n: int, large: bool) -> tuple[list, list]:
    """``n`` points in the volume and slope changes: at least 0.05 (``large``) or any up to 0.5,
    exactly 0 and tiny ones included."""
    vol = layout.volume
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    low = (vol.x_range[0], vol.y_range[0], vol.z_low)
    high = (vol.x_range[1], vol.y_range[1], vol.z_high)
    points = rng.uniform(low, high, size=(n, 3)).tolist()
    sign = rng.choice([-1.0, 1.0], size=(n, 2))
    if large:
        return points, (sign * rng.uniform(0.05, 0.5, size=(n, 2))).tolist()
    sizes = [draw(st.sampled_from([None, None, 0.0, 1e-12, 1e-6])) for _ in range(n)]
    turns = [[float(rng.uniform(0.0, 0.5)) if a is None else a] * 2 for a in sizes]
    return points, (sign * np.array(turns)).tolist()


@settings(max_examples=250, deadline=None, derandomize=True)
@given(data=st.data(), seed=st.integers(0, 2**31 - 1), covariance=st.booleans(), compact=st.booleans())
def test_measure_of_any_hits_is_finite_with_weights_in_unit_interval(data, seed, covariance, compact):
    """Tracks, deflections, PoCA (with covariance) and selection weights from hits of muons
    turned at a point of the volume by any angle (0 included: parallel tracks), for every
    direction: finite, weights in [0, 1], finite gradients in every panel parameter."""
    layout = data.draw(layouts())
    det, vol = build_detector(layout), build_volume(layout.volume)
    muons = build_muons(data.draw(muon_batches(layout)))
    points, turns = data.draw(kinks(layout, len(muons), large=False))
    incoming, outgoing = kinked(muons, torch.tensor(points, dtype=D), torch.tensor(turns, dtype=D))
    above = det.hits(incoming, "above", noise(det.n_panels("above"), len(muons), seed))
    below = det.hits(outgoing, "below", noise(det.n_panels("below"), len(muons), seed + 1))
    sd = measure(above, below, vol, muons.momentum, muons.weight, covariance=covariance, compact=compact)
    for name in ("xy", "slope", "covariance", "chi2"):
        assert_finite(f"incoming {name}", getattr(sd.incoming, name))
        assert_finite(f"outgoing {name}", getattr(sd.outgoing, name))
    for name in ("theta", "theta_xy", "poca", "poca_covariance"):
        assert_finite(name, getattr(sd.scatters, name))
    assert_finite("normalised deflection", sd.normalised_deflection)
    assert_unit_interval("selection weight", sd.weight)
    assert_unit_interval("incoming track weight", sd.incoming.weight)
    assert_unit_interval("outgoing track weight", sd.outgoing.weight)
    sc = sd.scatters
    loss = (sd.weight * (sc.theta + sc.poca.sum(-1) + sc.poca_covariance.sum((-1, -2)))).sum() + sd.weight.sum()
    loss = loss + (sd.incoming.covariance.sum() + sd.outgoing.covariance.sum() + sd.incoming.chi2.sum())
    loss.backward()
    assert_finite_gradients(det)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(data=st.data())
def test_noiseless_tracks_give_the_true_deflection_and_the_kink_as_poca(data):
    """Two noiseless lines through a point with a clear kink (>= 0.05 in slope): the deflection
    is the angle between the true directions and the PoCA is the kink point (for the fits that
    are well posed, see :func:`well_posed`)."""
    layout = data.draw(layouts(grid_volumes(), min_gap=0.02))
    det, vol = build_detector(layout), build_volume(layout.volume)
    muons = build_muons(data.draw(muon_batches(layout, min_cos=0.1)))
    points, turns = data.draw(kinks(layout, len(muons), large=True))
    incoming, outgoing = kinked(muons, torch.tensor(points, dtype=D), torch.tensor(turns, dtype=D))
    zero = {s: torch.zeros(det.n_panels(s), len(muons), 2, dtype=D) for s in ("above", "below")}
    above, below = det.hits(incoming, "above", zero["above"]), det.hits(outgoing, "below", zero["below"])
    sc = compute_scatters(fit_tracks(above, vol.z_high), fit_tracks(below, vol.z_low), 0.5 * (vol.z_low + vol.z_high))
    ok = well_posed(above) & well_posed(below)
    true_theta = torch.acos((incoming.direction * outgoing.direction).sum(-1).clamp(-1.0, 1.0))
    torch.testing.assert_close(sc.theta.detach()[ok], true_theta[ok], rtol=1e-6, atol=1e-9)
    kink = torch.tensor(points, dtype=D)[ok]
    slope_in = (incoming.direction[:, :2] / incoming.direction[:, 2:])[ok]
    scale = 1.0 + slope_in.abs().amax(-1, keepdim=True)
    error = (sc.poca.detach()[ok] - kink).abs()
    assert bool((error <= 1e-5 * scale).all()), error.max()


def test_kinked_helper_turns_by_the_requested_slopes():
    muons = MuonBatch.create(
        torch.zeros(1, 3, dtype=D), torch.tensor([[0.0, 0.0, -1.0]], dtype=D), torch.ones(1, dtype=D)
    )
    _, out = kinked(muons, torch.zeros(1, 3, dtype=D), torch.tensor([[0.1, -0.2]], dtype=D))
    torch.testing.assert_close(out.direction[:, :2] / out.direction[:, 2:], torch.tensor([[0.1, -0.2]], dtype=D))
    assert math.isclose(float(out.direction.norm()), 1.0)
