"""Many designs in one pass: Detector.stack gives the numbers and gradients of a loop."""

import math

import pytest
import torch
from torch import nn

from mutomo.detector import Detector, DetectorPanel
from mutomo.muons import FluxSource, GenerationPlane, TabulatedFlux
from mutomo.reco import AngleStatisticsReconstruction, measure
from mutomo.reco.x0 import PocaX0
from mutomo.simulate import simulate
from mutomo.tasks.statistics import poca_height
from mutomo.volume import PassiveVolume

D = torch.float64
ABOVE, BELOW = (1.0, 0.95, 0.9, 0.85), (0.19, 0.15, 0.1, 0.05)


def volume() -> PassiveVolume:
    block = PassiveVolume.uniform("beryllium", (1.0, 1.0, 0.6), 0.1, z_low=0.2, dtype=D)
    return block.with_box("lead", (0.0, 0.0, 0.2), (0.5, 0.5, 0.4))


def design(k: int) -> Detector:
    """Design k: panels shifted, widened, and with a resolution that grows with k."""

    def panel(z: float, i: int) -> DetectorPanel:
        return DetectorPanel(
            nn.Parameter(torch.tensor([0.5 + 0.01 * k, 0.5, z + 0.01 * k * (i % 2)], dtype=D)),
            nn.Parameter(torch.tensor([1.5 + 0.05 * k, 1.6], dtype=D)),
            nn.Parameter(torch.tensor([1e-3 * (1 + k)], dtype=D)),
            0.9,
            dtype=D,
        )

    return Detector([panel(z, i) for i, z in enumerate(ABOVE)], [panel(z, i) for i, z in enumerate(BELOW)])


SOURCE = FluxSource(
    GenerationPlane(z=1.1, x_range=(-0.3, 1.3), y_range=(-0.3, 1.3)), TabulatedFlux(theta_max=math.radians(70))
)


def score(detector: Detector, vol: PassiveVolume) -> tuple[torch.Tensor, torch.Tensor]:
    """X0 maps and fill statistic of one detector (or a stack), the same muons every call."""
    r = simulate(detector, vol, SOURCE, 4000, torch.Generator().manual_seed(3))
    data = measure(r.hits_above, r.hits_below, vol, r.muons_in.momentum, r.muons_in.weight)
    return PocaX0()(data, vol).x0, poca_height(data, vol)


def test_stack_gives_the_loop_values_and_gradients():
    vol = volume()
    designs = [design(k) for k in range(3)]
    loop = [score(d, vol) for d in designs]
    for x0, height in loop:
        (x0.sum() + height).backward()
    loop_grads = [[p.grad.clone() for p in d.parameters()] for d in designs]
    for d in designs:
        d.zero_grad()

    stacked = Detector.stack(designs)
    assert stacked.design_shape == (3,)
    x0, height = score(stacked, vol)
    assert x0.shape == (3, *vol.shape) and height.shape == (3,)
    (x0.sum() + height.sum()).backward()
    for k, (x0_k, height_k) in enumerate(loop):
        torch.testing.assert_close(x0[k], x0_k, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(height[k], height_k, rtol=1e-12, atol=1e-12)
        for g_batch, g_loop in zip((p.grad for p in designs[k].parameters()), loop_grads[k], strict=True):
            torch.testing.assert_close(g_batch, g_loop, rtol=1e-8, atol=1e-12)
    # The designs differ, so the check above compares different numbers per design.
    assert not torch.allclose(height[0], height[2])


def test_stack_cost_and_shapes():
    designs = [design(k) for k in range(2)]
    stacked = Detector.stack(designs)
    assert stacked.panel_parameters("above")["centre"].shape == (2, 4, 3)
    assert stacked.panel_parameters("below")["resolution"].shape == (2, 4)
    torch.testing.assert_close(stacked.cost(), torch.stack([d.cost() for d in designs]))


def test_stack_refuses_different_layouts_and_asr_refuses_batches():
    small = Detector(list(design(0).above)[:2], list(design(0).below))
    with pytest.raises(ValueError, match="same number of panels"):
        Detector.stack([design(0), small])
    vol = volume()
    r = simulate(Detector.stack([design(0), design(1)]), vol, SOURCE, 500, torch.Generator().manual_seed(0))
    data = measure(r.hits_above, r.hits_below, vol, r.muons_in.momentum)
    with pytest.raises(ValueError, match="one design and one volume at a time"):
        AngleStatisticsReconstruction()(data, vol)


def volume_with_block(z_top: float) -> PassiveVolume:
    """Beryllium with a lead block whose top is at ``z_top`` (m): one volume of a batch."""
    block = PassiveVolume.uniform("beryllium", (1.0, 1.0, 0.6), 0.1, z_low=0.2, dtype=D)
    return block.with_box("lead", (0.0, 0.0, 0.2), (0.5, 0.5, z_top))


def test_volume_stack_and_design_stack_give_the_loop_values():
    """(2 designs) x (3 volumes) in one pass: X0 maps and fill statistics of 6 separate runs."""
    volumes = [volume_with_block(z) for z in (0.3, 0.5, 0.7)]
    designs = [design(k) for k in range(2)]
    x0, height = score(Detector.stack(designs), PassiveVolume.stack(volumes))
    assert x0.shape == (2, 3, *volumes[0].shape) and height.shape == (2, 3)
    for k, d in enumerate(designs):
        for v, vol in enumerate(volumes):
            x0_kv, height_kv = score(d, vol)
            torch.testing.assert_close(x0[k, v], x0_kv, rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(height[k, v], height_kv, rtol=1e-12, atol=1e-12)
    assert bool((height[:, 2] > height[:, 0]).all())  # a taller block pulls the scatters up


def test_volume_stack_merges_materials_and_refuses_other_geometries():
    water = PassiveVolume.uniform("water", (1.0, 1.0, 0.6), 0.1, z_low=0.2, dtype=D)
    stacked = PassiveVolume.stack([volume(), water])
    assert stacked.batch_shape == (2,) and stacked.shape == (10, 10, 6)
    torch.testing.assert_close(stacked.x0[1], water.x0)
    torch.testing.assert_close(stacked.x0[0], volume().x0)
    other = PassiveVolume.uniform("water", (1.0, 1.0, 0.6), 0.2, z_low=0.2, dtype=D)
    with pytest.raises(ValueError, match="one geometry"):
        PassiveVolume.stack([water, other])


def test_fit_tracks_takes_one_muon_weight_for_every_design():
    """Regression (property tests, issue 14): fit_tracks of hits with design axes failed to
    multiply its (D * mu,) track weights by a (mu,) muon weight; it now serves every design, as in
    measure()."""
    from mutomo.reco import fit_tracks

    vol = volume()
    designs = [design(k) for k in range(3)]
    r = simulate(Detector.stack(designs), vol, SOURCE, 50, torch.Generator().manual_seed(1))
    tracks = fit_tracks(r.hits_above, vol.z_high, r.muons_in.weight)
    assert tracks.weight.shape == (150,)
    for k, d in enumerate(designs):
        single = simulate(d, vol, SOURCE, 50, torch.Generator().manual_seed(1))
        one = fit_tracks(single.hits_above, vol.z_high, single.muons_in.weight)
        torch.testing.assert_close(tracks.weight[50 * k : 50 * (k + 1)], one.weight)
