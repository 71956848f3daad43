"""Properties of the whole chain: simulation, reconstruction, every voxel method, task losses.

Each case simulates a handful of muons (grazing, vertical, horizontal, stopped, zero-weight,
missing every panel) through a random volume and detector in float64.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mutomo.design.base import DesignBounds
from mutomo.design.panels import DetectorDesign
from mutomo.detector import Detector, Hits
from mutomo.detector.readout import physical_readout, sampled_readout
from mutomo.optimise.loss import budget_penalty
from mutomo.reco import (
    AngleStatisticsReconstruction,
    BinnedClustering,
    MaximumLikelihoodEM,
    ScatterData,
    fit_tracks,
    measure,
)
from mutomo.reco.x0 import HighlandX0Inferrer, PocaX0
from mutomo.simulate import SimulationResult, simulate
from mutomo.tasks.presence import Presence, score_sigma
from mutomo.tasks.regression import Regression
from mutomo.tasks.statistics import poca_height, presence_score
from mutomo.units import MUON_MASS
from mutomo.volume import PassiveVolume, position_at_z, propagate_straight, propagate_volume
from mutomo.volume.propagation import MIN_DOWNWARD_COSINE
from tests.property.strategies import (
    MATERIALS,
    BatchSource,
    D,
    LayoutSpec,
    PanelSpec,
    assert_finite,
    assert_finite_gradients,
    assert_unit_interval,
    build_detector,
    build_muons,
    build_volume,
    grid_volumes,
    layouts,
    muon_batches,
    panel_stacks,
    well_posed,
)

STEP = 0.05  # propagation step (m): a few steps per voxel layer keep a case to milliseconds


def run(det: Detector, vol: PassiveVolume, muons, seed: int) -> SimulationResult:
    return simulate(det, vol, BatchSource(muons), len(muons), torch.Generator().manual_seed(seed), step_length=STEP)


def check_simulation(r: SimulationResult) -> None:
    """Finite values; weights in [0, 1] that only fall along the way; momenta that only fall."""
    for name in ("muons_in", "muons_out"):
        m = getattr(r, name)
        for field in ("position", "direction", "momentum", "path_x0"):
            assert_finite(f"{name}.{field}", getattr(m, field))
        assert_unit_interval(f"{name}.weight", m.weight)
        assert bool((m.momentum > 0).all())
    assert bool((r.muons_out.weight <= r.muons_in.weight).all())
    # Energy loss never adds energy, up to the rounding of p -> kinetic energy -> p, which loses
    # (m / p)^2 digits to cancellation for a muon far below its mass.
    p_in, eps = r.muons_in.momentum, torch.finfo(r.muons_in.momentum.dtype).eps
    assert bool((r.muons_out.momentum <= p_in * (1 + 16 * eps * (1 + (MUON_MASS / p_in) ** 2))).all())
    for name in ("hits_above", "hits_below"):
        h = getattr(r, name)
        assert_finite(f"{name}.xy", h.xy)
        assert_unit_interval(f"{name}.weight", h.weight)


def check_scatter_data(sd: ScatterData) -> None:
    for side in ("incoming", "outgoing"):
        t = getattr(sd, side)
        for name in ("xy", "slope", "covariance", "chi2", "ndof"):
            assert_finite(f"{side}.{name}", getattr(t, name))
        assert_unit_interval(f"{side}.weight", t.weight)
    for name in ("theta", "theta_xy", "poca", "poca_covariance", "weight"):
        assert_finite(f"scatters.{name}", getattr(sd.scatters, name))
    assert_finite("momentum", sd.momentum)
    assert_finite("normalised deflection", sd.normalised_deflection)
    assert_unit_interval("selection weight", sd.weight)


def reconstruct(r: SimulationResult, vol: PassiveVolume) -> ScatterData:
    """measure() as the optimisation loop calls it: true mean momentum, muons that stopped out."""
    alive = r.muons_in.weight * (r.muons_out.weight > 0)
    momentum = 0.5 * (r.muons_in.momentum + r.muons_out.momentum)
    return measure(r.hits_above, r.hits_below, vol, momentum, alive)


# Thresholds lowered so that the handful of muons of a case measures voxels.
VOXEL_METHODS = (
    PocaX0(extended=False, inferrer=HighlandX0Inferrer(min_muons=1.0)),
    PocaX0(extended=True, inferrer=HighlandX0Inferrer(min_muons=1.0)),
    AngleStatisticsReconstruction(min_weight=1e-3),
    BinnedClustering(n_min=2, min_weight=0.0),
    MaximumLikelihoodEM(iterations=2, uniform_iterations=2, min_path=0.0),
)


def read_out(r: SimulationResult, det: Detector, readout: str, seed: int) -> tuple[Hits, Hits]:
    """The hits as the smooth relaxation, the sampled (Bernoulli, straight-through) or the
    physical readout (hard edges, Bernoulli hits, a trigger) records them."""
    gen = torch.Generator().manual_seed(seed + 1)
    if readout == "sampled":
        return sampled_readout(r.hits_above, det, "above", gen), sampled_readout(r.hits_below, det, "below", gen)
    if readout == "physical":
        return (
            physical_readout(r.hits_above, det, "above", r.muons_in.weight, gen),
            physical_readout(r.hits_below, det, "below", r.muons_out.weight, gen),
        )
    return r.hits_above, r.hits_below


@settings(max_examples=200, deadline=None, derandomize=True)
@given(data=st.data(), seed=st.integers(0, 2**31 - 1), readout=st.sampled_from(["smooth", "sampled", "physical"]))
def test_simulation_reconstruction_and_every_voxel_method_are_finite(data, seed, readout):
    """simulate -> readout -> measure -> PoCA X0 (binned, extended), ASR, BCA, MLEM -> presence
    score and fill statistic: every value finite, every weight in [0, 1] (physical hits 0 or 1),
    finite gradients of all of it (plus the cost) with respect to every panel parameter."""
    layout = data.draw(layouts())
    det, vol = build_detector(layout), build_volume(layout.volume)
    muons = build_muons(data.draw(muon_batches(layout)))
    r = run(det, vol, muons, seed)
    check_simulation(r)
    above, below = read_out(r, det, readout, seed)
    for name, hits in (("above", above), ("below", below)):
        assert_unit_interval(f"{readout} hit weights {name}", hits.weight)
        if readout == "physical":
            assert bool(((hits.weight == 0) | (hits.weight == 1)).all())
    sd = reconstruct(replace(r, hits_above=above, hits_below=below), vol)
    check_scatter_data(sd)
    loss = poca_height(sd, vol) + det.cost() + sd.weight.sum()
    for method in VOXEL_METHODS:
        vmap = method(sd, vol)
        for name in ("score", "weight", "x0"):
            assert_finite(f"{method.name}.{name}", getattr(vmap, name))
        if vmap.uncertainty is not None:  # PoCA X0 reports an infinite error where unmeasured, by design
            assert_finite(f"{method.name}.uncertainty", measured_only(vmap.uncertainty, vmap.measured))
        assert vmap.score.shape == vol.shape
        loss = loss + (vmap.score * vmap.weight).sum() + vmap.score.sum()
        if vmap.x0 is not None:
            assert bool((vmap.x0 >= 0).all())
            loss = loss + vmap.x0.sum() + measured_only(vmap.uncertainty, vmap.measured).sum()
        if int(vmap.measured.sum()) >= 3:
            for per_layer in (False, True):
                score = presence_score(vmap, per_layer=per_layer)
                assert_finite(f"{method.name} presence score", score)
                loss = loss + score
    assert_finite("loss", loss)
    loss.backward()
    assert_finite_gradients(det)


def float32_outside(layout: LayoutSpec) -> LayoutSpec:
    """The layout with each panel moved, if it must, to the nearest float32 height outside the
    volume: a panel a nanometre from a face is on it in float32 (the panels still touch it)."""

    def outside(panel: PanelSpec, face: float, sign: float) -> PanelSpec:
        z = np.float32(panel.centre[2])
        while sign * (float(z) - face) <= 0:
            z = np.nextafter(z, np.float32(sign * np.inf))
        return replace(panel, centre=(panel.centre[0], panel.centre[1], float(z)))

    vol = layout.volume
    return replace(
        layout,
        above=tuple(outside(p, vol.z_high, 1.0) for p in layout.above),
        below=tuple(outside(p, vol.z_low, -1.0) for p in layout.below),
    )


@settings(max_examples=100, deadline=None, derandomize=True)
@given(data=st.data(), seed=st.integers(0, 2**31 - 1))
def test_float32_pipeline_is_finite(data, seed):
    """The same chain in float32, the default dtype: finite values and weights in [0, 1], finite
    gradients in every panel parameter (positions far away, 1 um resolutions and grazing muons
    must not overflow)."""
    layout = float32_outside(data.draw(layouts()))
    det = build_detector(layout).to(torch.float32)
    vol = PassiveVolume(
        list(layout.volume.materials), torch.tensor(layout.volume.index), layout.volume.voxel, layout.volume.origin
    )
    muons = build_muons(data.draw(muon_batches(layout))).to(dtype=torch.float32)
    r = run(det, vol, muons, seed)
    check_simulation(r)
    sd = reconstruct(r, vol)
    check_scatter_data(sd)
    parts = {"fill statistic and cost": poca_height(sd, vol) + det.cost()}
    for method in VOXEL_METHODS:
        vmap = method(sd, vol)
        assert_finite(f"{method.name} score (float32)", vmap.score)
        parts[method.name] = vmap.score.sum()
    for name, part in parts.items():  # one at a time, so that a failure names its source
        det.zero_grad()
        if part.requires_grad:
            part.backward(retain_graph=True)
        for p_name, p in det.named_parameters():
            if p.grad is not None:
                assert_finite(f"{name}: gradient of {p_name}", p.grad)


def other_materials(materials: tuple[str, ...], rng: np.random.Generator) -> tuple[str, ...]:
    return tuple(str(m) for m in rng.choice(MATERIALS, size=len(materials), replace=False))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(data=st.data(), seed=st.integers(0, 2**31 - 1))
def test_task_losses_on_a_batch_of_volumes_have_finite_gradients(data, seed):
    """Four volumes of one geometry and different materials, seen with the same muons: the
    regression losses (calibrated MSE, spread over range) on the fill statistic, the presence
    loss against clean references on the extended-PoCA maps, and the budget penalty are finite,
    with finite gradients in every panel parameter."""
    layout = data.draw(layouts())
    rng = np.random.default_rng(seed)
    specs = [layout.volume] + [
        layout.volume.with_materials(other_materials(layout.volume.materials, rng)) for _ in "abc"
    ]
    vol = PassiveVolume.stack([build_volume(s) for s in specs])
    det = build_detector(layout)
    muons = build_muons(data.draw(muon_batches(layout)))
    r = run(det, vol, muons, seed)
    check_simulation(r)
    sd = reconstruct(r, vol)
    check_scatter_data(sd)
    raw = poca_height(sd, vol)
    assert raw.shape == (4,)
    assert_finite("fill statistic", raw)
    truths = torch.tensor(rng.uniform(0.0, 1.0, size=4), dtype=D)
    pairs = torch.tensor([0.2, 0.2, 0.7, 0.7], dtype=D)
    vmap = PocaX0(extended=True)(sd, vol)
    # The presence output with clean references: each volume's scores, their errors, which voxels
    # were measured, the true 1/X0 and the target voxels (presence_outputs).
    truth = (1.0 / vol.x0).reshape(4, -1).to(D)
    maps = torch.cat(
        [
            vmap.score.reshape(4, -1),
            score_sigma(vmap).reshape(4, -1),
            vmap.measured.reshape(4, -1).to(D),
            truth,
            0 * truth,
        ],
        -1,
    )
    assert_finite("maps", maps)
    parts = {
        "calibrated_mse": Regression().loss(raw[:, None], truths),
        "spread_over_range": Regression(loss="spread_over_range").loss(raw[:, None], pairs),
        "presence": Presence("extended_poca").loss(maps, torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=D)),
        "budget": budget_penalty(det.cost(), budget=float(det.cost().detach()) * 0.5 + 1.0, width=10.0),
    }
    for name, value in parts.items():
        assert_finite(name, value)
    sum(parts.values()).backward()
    assert_finite_gradients(det)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(data=st.data(), seed=st.integers(0, 2**31 - 1), energy_loss=st.booleans())
def test_without_scattering_lines_stay_straight_and_tracks_agree(data, seed, energy_loss):
    """Through a volume with scattering switched off, every muon leaves with its direction
    unchanged, bit for bit; those that fly steeper than the horizon cut end on their straight
    line; noiseless tracks above and below are the same line, so the deflection is 0."""
    layout = data.draw(layouts(grid_volumes(), min_gap=1e-3))
    det, vol = build_detector(layout), build_volume(layout.volume)
    muons = build_muons(data.draw(muon_batches(layout)))
    muons_in = propagate_straight(muons, vol.z_high)
    gen = torch.Generator().manual_seed(seed)
    out = propagate_volume(muons_in, vol, STEP, gen, scattering=False, energy_loss=energy_loss)
    assert torch.equal(out.direction, muons_in.direction)
    assert_unit_interval("weight", out.weight)
    assert bool((out.momentum <= muons_in.momentum * (1 + 1e-12)).all())
    steep = -muons.direction[:, 2] > MIN_DOWNWARD_COSINE
    expected = position_at_z(muons_in, vol.z_low)
    scale = 1.0 + expected.abs().amax(-1)
    assert bool(((out.position - expected).abs().amax(-1) <= 1e-12 * scale * vol.shape[2] / STEP)[steep].all())
    if not energy_loss:
        assert torch.equal(out.weight, muons_in.weight * steep)

    zero = {s: torch.zeros(det.n_panels(s), len(muons), 2, dtype=D) for s in ("above", "below")}
    above, below = det.hits(muons_in, "above", zero["above"]), det.hits(out, "below", zero["below"])
    sd = measure(above, below, vol, muons.momentum, compact=False)
    check_scatter_data(sd)
    ok = steep & well_posed(above) & well_posed(below)
    slope_in, slope_out = sd.incoming.slope.detach(), sd.outgoing.slope.detach()
    tol = 1e-9 * (1.0 + slope_in.abs().amax(-1, keepdim=True))
    assert bool(((slope_in - slope_out).abs() <= tol)[ok].all())
    z_mid = 0.5 * (vol.z_low + vol.z_high)
    at_in, at_out = sd.incoming.at(z_mid).detach(), sd.outgoing.at(z_mid).detach()
    assert bool(((at_in - at_out).abs() <= 1e-9 * (1.0 + at_in.abs()))[ok].all())
    assert bool((sd.scatters.theta.detach()[ok] <= 1e-8).all())
    assert bool((sd.scatters.theta_xy.detach()[ok].abs() <= 1e-8).all())


@st.composite
def design_batches(draw: st.DrawFn) -> tuple[LayoutSpec, list[LayoutSpec]]:
    """2 or 3 layouts around one volume with the same number of panels on each side."""
    layout = draw(layouts())
    others = [
        LayoutSpec(
            layout.volume,
            draw(panel_stacks(layout.volume, "above", len(layout.above))),
            draw(panel_stacks(layout.volume, "below", len(layout.below))),
            layout.smoothness,
        )
        for _ in range(draw(st.integers(1, 2)))
    ]
    return layout, [layout, *others]


def design_outputs(det: Detector, vol: PassiveVolume, muons, seed: int) -> dict[str, torch.Tensor]:
    """What a design's evaluation produces, for the stack-versus-loop comparison."""
    r = run(det, vol, muons, seed)
    sd = reconstruct(r, vol)
    x0 = PocaX0(extended=True)(sd, vol)
    above = fit_tracks(r.hits_above, vol.z_high, r.muons_in.weight)
    return {
        "hits_above": r.hits_above.xy,
        "weight_above": r.hits_above.weight,
        "hits_below": r.hits_below.xy,
        "weight_below": r.hits_below.weight,
        "slope_above": above.slope.reshape(*det.design_shape, -1, 2),
        "track_weight_above": above.weight.reshape(*det.design_shape, -1),
        "x0": x0.x0,
        "uncertainty": measured_only(x0.uncertainty, x0.measured),
        "height": poca_height(sd, vol),
        "cost": det.cost(),
    }


def measured_only(values: torch.Tensor, measured: torch.Tensor) -> torch.Tensor:
    """``values`` where the voxel is measured, else 0 (unmeasured voxels' errors are infinite)."""
    return torch.where(measured, values, torch.zeros_like(values))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(batch=design_batches(), data=st.data(), seed=st.integers(0, 2**31 - 1))
def test_stacked_designs_give_the_loop_values_and_gradients(batch, data, seed):
    """Detector.stack of K designs, simulated and reconstructed in one pass, gives each design's
    hits, tracks, extended-PoCA X0 map, fill statistic and cost, and the same gradients, as
    running the designs one by one with the same muons and random draws."""
    layout, layouts_k = batch
    vol = build_volume(layout.volume)
    muons = build_muons(data.draw(muon_batches(layout)))
    dets = [build_detector(spec) for spec in layouts_k]
    loop = [design_outputs(d, vol, muons, seed) for d in dets]
    for out in loop:
        (out["x0"].sum() + out["uncertainty"].sum() + out["height"] + out["cost"]).backward()
    loop_grads = [[p.grad.clone() for p in d.parameters()] for d in dets]
    for d in dets:
        d.zero_grad()

    stacked = design_outputs(Detector.stack(dets), vol, muons, seed)
    for name, value in stacked.items():
        for k, out in enumerate(loop):
            torch.testing.assert_close(value[k], out[name], rtol=1e-9, atol=1e-12, msg=f"{name} of design {k}")
    (stacked["x0"].sum() + stacked["uncertainty"].sum() + stacked["height"].sum() + stacked["cost"].sum()).backward()
    for k, d in enumerate(dets):
        for (name, p), g_loop in zip(d.named_parameters(), loop_grads[k], strict=True):
            torch.testing.assert_close(p.grad, g_loop, rtol=1e-7, atol=1e-9, msg=f"gradient of {name}, design {k}")


@st.composite
def designs(draw: st.DrawFn, layout: LayoutSpec) -> DetectorDesign:
    """A trainable design in bounds around the layout's volume, values on the bounds included,
    in soft- or fixed-budget mode."""
    vol = layout.volume
    (x_lo, x_hi), (y_lo, y_hi) = vol.x_range, vol.y_range
    bounds = DesignBounds(
        x=(x_lo - 1.0, x_hi + 1.0),
        y=(y_lo - 1.0, y_hi + 1.0),
        z_above=(vol.z_high + 1e-6, vol.z_high + 1.0),
        z_below=(vol.z_low - 1.0, vol.z_low - 1e-6),
    )
    n_above, n_below = len(layout.above), len(layout.below)
    n = n_above + n_below

    def values(bound: tuple[float, float], size: int, log: bool = False) -> list[float]:
        lo, hi = bound
        return [
            draw(
                st.sampled_from([lo, hi])
                | (st.floats(np.log(lo), np.log(hi)).map(np.exp) if log else st.floats(lo, hi))
            )
            for _ in range(size)
        ]

    z = values(bounds.z_above, n_above) + values(bounds.z_below, n_below)
    xy = list(zip(values(bounds.x, n), values(bounds.y, n), strict=True))
    budget = draw(st.sampled_from([None, 50.0, 5e4]))
    return DetectorDesign(
        xy=xy,
        z=z,
        n_above=n_above,
        span=values(bounds.span, n, log=True),
        resolution=values(bounds.resolution, n, log=True),
        efficiency=values(bounds.efficiency, n),
        bounds=bounds,
        budget=budget,
        trainable=("xy", "z", "size", "resolution", "efficiency"),
        smoothness=layout.smoothness,
        dtype=D,
    )


@settings(max_examples=60, deadline=None, derandomize=True)
@given(data=st.data(), seed=st.integers(0, 2**31 - 1))
def test_trainable_design_has_finite_gradients_and_keeps_its_budget(data, seed):
    """A DetectorDesign anywhere in its bounds (on them included): its detector's loss has
    finite gradients in every trainable parameter (positions, spans or budget shares,
    resolutions, efficiencies), and a fixed budget is spent exactly."""
    layout = data.draw(layouts())
    design = data.draw(designs(layout))
    vol = build_volume(layout.volume)
    muons = build_muons(data.draw(muon_batches(layout)))
    det = design.detector()
    r = run(det, vol, muons, seed)
    check_simulation(r)
    sd = reconstruct(r, vol)
    check_scatter_data(sd)
    cost = design.cost()
    assert_finite("cost", cost)
    if design.budget is not None:
        assert abs(float(cost.detach()) - design.budget) <= 1e-9 * design.budget
    vmap = PocaX0(extended=True)(sd, vol)
    loss = poca_height(sd, vol) + vmap.score.sum() + budget_penalty(cost, 100.0, 10.0)
    loss.backward()
    assert_finite_gradients(design)
