"""Issue 32: values are checked where they enter (constructors, generation planes); mutomo's own
internal calls skip the checks and give the same objects."""

import math

import pytest
import torch

from mutomo.detector import Detector, DetectorPanel
from mutomo.errors import MutomoError
from mutomo.muons import GenerationPlane, MuonBatch


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"z": math.nan, "x_range": (0.0, 1.0), "y_range": (0.0, 1.0)}, r"GenerationPlane\.z"),
        ({"z": math.inf, "x_range": (0.0, 1.0), "y_range": (0.0, 1.0)}, r"GenerationPlane\.z"),
        ({"z": 1.0, "x_range": (0.0, math.inf), "y_range": (0.0, 1.0)}, r"GenerationPlane\.x_range"),
        ({"z": 1.0, "x_range": (0.0, 1.0), "y_range": (-math.inf, 1.0)}, r"GenerationPlane\.y_range"),
    ],
)
def test_generation_plane_refuses_non_finite_values_where_they_enter(kwargs, field):
    """The sources build muons from the plane without re-checking each muon, so the plane checks
    its own numbers once."""
    with pytest.raises(MutomoError, match=field):
        GenerationPlane(**kwargs)


def test_unchecked_muon_batch_equals_the_checked_one():
    """``validate=False`` skips only the checks: the batch (normalised directions included) is the
    same, bit for bit."""
    gen = torch.Generator().manual_seed(0)
    position, direction = torch.rand(100, 3, generator=gen), torch.randn(100, 3, generator=gen)
    momentum = torch.rand(100, generator=gen) + 0.5
    checked = MuonBatch.create(position, direction, momentum)
    unchecked = MuonBatch.create(position, direction, momentum, validate=False)
    for name in ("position", "direction", "momentum", "charge", "weight", "path_x0"):
        assert torch.equal(getattr(checked, name), getattr(unchecked, name))


def test_unchecked_panel_skips_the_checks_and_stack_rebuilds_without_them():
    """A panel built with ``validate=False`` is not checked (the internal path); the default still
    refuses, and ``Detector.stack`` gives the same values as the panels it stacks."""
    DetectorPanel((math.nan, 0.5, 1.0), (1.0, 1.0), validate=False)
    with pytest.raises(MutomoError, match=r"DetectorPanel\.centre"):
        DetectorPanel((math.nan, 0.5, 1.0), (1.0, 1.0))

    def panels(zs):
        return [DetectorPanel((0.5, 0.5, z), (1.0, 1.0)) for z in zs]

    dets = [Detector(panels([1.0 + k, 0.9 + k]), panels([-1.0, -1.1])) for k in (0.0, 0.1)]
    stacked = Detector.stack(dets).panel_parameters("above")["centre"]
    assert torch.equal(stacked, torch.stack([d.panel_parameters("above")["centre"] for d in dets]))
