"""The hooks of the systematic variations (issue 30), each on a closed-form case: the scattering
core's width and tail, a fixed momentum, a tilted or another spectrum, a detector built worse or
misaligned than designed (:mod:`mutomo.detector.as_built`)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from mutomo.detector import Detector, DetectorPanel
from mutomo.detector.as_built import AsBuilt
from mutomo.errors import MutomoError
from mutomo.muons import (
    FixedMomentumSource,
    FixedSource,
    FluxSource,
    GCCLY15Flux,
    GenerationPlane,
    MuonBatch,
    Reyna06Flux,
    TabulatedFlux,
    TiltedFlux,
)
from mutomo.simulate import simulate
from mutomo.volume import PassiveVolume
from mutomo.volume.propagation import propagate_volume
from mutomo.volume.scattering import DEFAULT_SCATTER, ScatterParameters

PLANE = GenerationPlane(z=2.0, x_range=(0.2, 0.8), y_range=(0.2, 0.8))


def _panel(z: float, efficiency: float = 0.9) -> DetectorPanel:
    return DetectorPanel(centre=(0.5, 0.5, z), span=(1.0, 1.0), resolution=1e-4, efficiency=efficiency)


def _detector(efficiency: float = 0.9) -> Detector:
    above = [_panel(z, efficiency) for z in (1.9, 1.7, 1.5)]
    return Detector(above, [_panel(z, efficiency) for z in (0.3, 0.1, -0.1)])


def _angles(params: ScatterParameters, thickness: float = 0.1, n: int = 20_000) -> np.ndarray:
    """Projected angles (rad) of vertical 10 GeV/c muons after ``thickness`` (m) of iron."""
    volume = PassiveVolume.uniform("iron", (1.0, 1.0, thickness), thickness, z_low=1.0)
    muons = FixedSource(PLANE, 10.0).sample(n, torch.Generator().manual_seed(1), dtype=torch.float64)
    out = propagate_volume(muons, volume, 0.01, torch.Generator().manual_seed(2), params=params)
    d = out.direction
    return (d[:, 0] / -d[:, 2]).numpy()


def test_scaling_the_core_width_scales_the_angles_spread():
    """Without the tail the angles are the core alone: the same draws, a core 4 % wider, angles
    4 % wider (to the non-linearity of composing small rotations)."""
    gaussian = replace(DEFAULT_SCATTER, single_scatter=False)
    nominal = _angles(gaussian)
    for scale in (0.96, 1.04):
        scaled = _angles(replace(gaussian, core_scale=scale))
        assert scaled.std() / nominal.std() == pytest.approx(scale, rel=1e-3)
        assert np.allclose(scaled, scale * nominal, rtol=1e-3, atol=1e-7)  # muon by muon


def test_the_tail_off_leaves_a_gaussian():
    """After 1 cm of iron (as the Geant4 slabs), the angles beyond 4 core widths are far more than
    a Gaussian's 6e-5 with the single-scattering tail (0.4 %); without it, no more than a
    Gaussian's, and the core is the same to a few per cent."""
    with_tail = _angles(DEFAULT_SCATTER, thickness=0.01)
    without = _angles(replace(DEFAULT_SCATTER, single_scatter=False), thickness=0.01)
    core = np.median(np.abs(without)) / 0.6745  # the Gaussian's sigma from its median absolute value
    beyond = lambda a: float(np.mean(np.abs(a) > 4 * core))  # noqa: E731
    assert beyond(without) < 5e-4
    assert beyond(with_tail) > 10 * max(beyond(without), 1e-4)
    assert np.median(np.abs(with_tail)) / 0.6745 == pytest.approx(core, rel=0.03)


def test_a_fixed_momentum_reproduces_a_constant_momentum_simulation():
    """Muons of another source given 5 GeV/c are, draw for draw, the muons of a 5 GeV/c source:
    the whole simulation is the same to the bit."""
    detector = _detector()
    volume = PassiveVolume.uniform("iron", (1.0, 1.0, 0.2), 0.1, z_low=0.8)
    fixed = FixedMomentumSource(FixedSource(PLANE, 40.0, theta=0.2), 5.0)
    a = simulate(detector, volume, fixed, 2000, torch.Generator().manual_seed(4))
    b = simulate(detector, volume, FixedSource(PLANE, 5.0, theta=0.2), 2000, torch.Generator().manual_seed(4))
    assert torch.equal(a.hits_below.xy, b.hits_below.xy) and torch.equal(a.muons_out.momentum, b.muons_out.momentum)
    # From the flux: the sky's directions and positions, every momentum 5 GeV/c.
    sky = FluxSource(PLANE, TabulatedFlux(momentum_range=(0.5, 500.0)))
    drawn, fixed_sky = sky.sample(500, torch.Generator().manual_seed(5)), FixedMomentumSource(sky, 5.0)
    same = fixed_sky.sample(500, torch.Generator().manual_seed(5))
    assert torch.equal(drawn.direction, same.direction) and torch.equal(drawn.position, same.position)
    assert bool((same.momentum == 5.0).all()) and float(drawn.momentum.std()) > 1.0


def test_a_misalignment_shifts_the_hits_by_the_shift():
    """Vertical muons cross a panel at the same x, y whatever its height: the built detector's hits,
    read in each panel's own frame, are the design's minus the panel's shift; the reconstruction
    gets the design's heights and resolutions."""
    detector = _detector()
    built_as = AsBuilt(misalignment=0.003, seed=7)
    built = built_as.build(detector)
    n = 1000
    position = torch.rand(n, 3, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.1
    position[:, 2] = 2.0
    muons = MuonBatch.create(position, torch.tensor([[0.0, 0.0, -1.0]]).expand(n, 3), torch.full((n,), 5.0))
    noise = torch.randn(3, n, 2, generator=torch.Generator().manual_seed(1))
    for side in ("above", "below"):
        shift = built_as.shifts(side, 3, torch.float32, None)
        assert bool((shift.abs() <= 3 * 0.003 + 1e-9).all()) and float(shift.abs().min()) > 0
        recorded = built_as.recorded(built.hits(muons, side, noise), detector, built, side)
        nominal = detector.hits(muons, side, noise)
        assert torch.allclose(recorded.xy, nominal.xy - shift[:, None, :2], atol=1e-6)
        assert torch.equal(recorded.z, nominal.z) and torch.equal(recorded.resolution, nominal.resolution)
        assert torch.allclose(built.panel_parameters(side)["centre"], detector.panel_parameters(side)["centre"] + shift)
    # Panel i gets the same shift in every design, whatever its number of panels.
    assert torch.equal(
        built_as.shifts("above", 2, torch.float64, None), built_as.shifts("above", 5, torch.float64, None)[:2]
    )


def test_a_worse_detector_spreads_the_hits_and_loses_them_unknown_to_the_reconstruction():
    detector = _detector(efficiency=0.9)
    built_as = AsBuilt(resolution_factor=1.2, efficiency_factor=0.8)
    built = built_as.build(detector)
    p, q = detector.panel_parameters("below"), built.panel_parameters("below")
    assert torch.allclose(q["resolution"], 1.2 * p["resolution"]) and torch.allclose(
        q["efficiency"], 0.8 * p["efficiency"]
    )
    muons = FixedSource(PLANE, 5.0).sample(500, torch.Generator().manual_seed(0))
    noise = torch.randn(3, 500, 2, generator=torch.Generator().manual_seed(1))
    hits = built_as.recorded(built.hits(muons, "below", noise), detector, built, "below")
    nominal = detector.hits(muons, "below", noise)
    assert torch.allclose(hits.xy - hits.true_xy, 1.2 * (nominal.xy - nominal.true_xy), atol=1e-7)
    assert torch.equal(hits.resolution, nominal.resolution)  # the fit still believes the design
    with pytest.raises(MutomoError, match="efficiency_factor"):
        AsBuilt(efficiency_factor=1.2).build(detector)  # 0.9 x 1.2 > 1


def test_a_tilted_spectrum_is_the_flux_times_a_power_of_the_momentum():
    model = GCCLY15Flux()
    p, c = np.array([0.5, 2.0, 20.0, 200.0]), np.full(4, 0.8)
    for shift in (0.1, -0.1):
        ratio = TiltedFlux(model, shift, pivot=2.0).flux(p, c) / model.flux(p, c)
        assert ratio == pytest.approx((p / 2.0) ** -shift, rel=1e-12)
    cos = torch.tensor([0.9], dtype=torch.float64)
    mean = {s: float(TabulatedFlux(TiltedFlux(model, s)).mean_momentum(cos)) for s in (-0.1, 0.1)}
    assert mean[0.1] < float(TabulatedFlux(model).mean_momentum(cos)) < mean[-0.1]  # softer, harder


def test_reyna_s_spectrum_is_an_independent_neighbour_of_gccly15():
    """Reyna 2006 against GCCLY15 where both are fitted to data (1-100 GeV/c): within 45 %
    at every zenith, not equal; the charges split 1.27 : 1 (PDG); vertical 1 GeV/c is
    c1 = 0.00253 cm^-2 s^-1 sr^-1 (GeV/c)^-1 exactly (log10 of 1 is 0)."""
    reyna, gccly = Reyna06Flux(), GCCLY15Flux()
    p = np.geomspace(1.0, 100.0, 9)
    for cos in (1.0, 0.7, 0.5):
        ratio = reyna.flux(p, np.full_like(p, cos)) / gccly.flux(p, np.full_like(p, cos))
        assert bool(np.all((ratio > 0.8) & (ratio < 1.5))), (cos, ratio)
        assert float(np.abs(ratio - 1).max()) > 0.05
    assert float(reyna.flux(np.array(1.0), np.array(1.0))) == pytest.approx(25.3)  # m^-2 s^-1 sr^-1 (GeV/c)^-1
    plus, minus = (reyna.flux(p, np.ones_like(p), charge=q) for q in (+1, -1))
    assert plus / minus == pytest.approx(np.full_like(p, 1.27)) and plus + minus == pytest.approx(reyna.flux(p, 1.0))


def test_bad_hook_values_are_refused_naming_the_field():
    with pytest.raises(MutomoError, match="core_scale"):
        ScatterParameters(core_scale=0.0)
    for field in ("resolution_factor", "efficiency_factor"):
        with pytest.raises(MutomoError, match=field):
            AsBuilt(**{field: -1.0})
    with pytest.raises(MutomoError, match="misalignment"):
        AsBuilt(misalignment=-0.001)
    with pytest.raises(MutomoError, match="FixedMomentumSource.momentum"):
        FixedMomentumSource(FixedSource(PLANE, 5.0), 0.0)
    with pytest.raises(MutomoError, match="index_shift"):
        TiltedFlux(GCCLY15Flux(), float("nan"))


def test_the_built_detector_keeps_the_gradients_of_the_design():
    """float64 gradcheck: the hits the reconstruction reads from a misaligned, worse detector are
    differentiable in the design's panel positions, resolution and efficiency (factors and shifts
    are constants)."""
    built_as = AsBuilt(resolution_factor=1.2, efficiency_factor=0.8, misalignment=0.003, seed=1)
    muons = FixedSource(PLANE, 5.0, theta=0.3, phi=0.4).sample(
        20, torch.Generator().manual_seed(0), dtype=torch.float64
    )
    noise = torch.randn(2, 20, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def recorded(centre: torch.Tensor, resolution: torch.Tensor, efficiency: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # Plain tensors (not nn.Parameter, which would cut them from the graph) register as buffers that carry it.
        panels = [
            DetectorPanel(centre[i], (1.0, 1.0), resolution[i : i + 1], efficiency[i : i + 1], dtype=torch.float64)
            for i in range(2)
        ]
        design = Detector(panels, [DetectorPanel((0.5, 0.5, 0.1), (1.0, 1.0), dtype=torch.float64)] * 2)
        built = built_as.build(design)
        hits = built_as.recorded(built.hits(muons, "above", noise), design, built, "above")
        return hits.xy, hits.weight, hits.z

    centre = torch.tensor([[0.5, 0.5, 1.9], [0.45, 0.55, 1.6]], dtype=torch.float64, requires_grad=True)
    resolution = torch.tensor([1e-3, 2e-3], dtype=torch.float64, requires_grad=True)
    efficiency = torch.tensor([0.9, 0.8], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(recorded, (centre, resolution, efficiency))
