import pytest
import torch
from torch import nn

from mutomo.detector import AreaCostModel, Detector, DetectorPanel, PanelGroup
from mutomo.muons import FixedSource, GenerationPlane
from mutomo.volume import PassiveVolume


def make_detector(**panel):
    above = [DetectorPanel((0.5, 0.5, z), (1.0, 1.0), **panel) for z in (1.3, 1.2)]
    below = [DetectorPanel((0.5, 0.5, z), (1.0, 1.0), **panel) for z in (0.1, 0.0)]
    return Detector(above, below)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(span=(-1.0, 1.0)), "span"),
        (dict(resolution=0.0), "resolution"),
        (dict(efficiency=0.0), "efficiency"),
        (dict(efficiency=1.5), "efficiency"),
    ],
)
def test_panel_validation_names_the_field(kwargs, field):
    args = dict(centre=(0.0, 0.0, 1.0), span=(1.0, 1.0), resolution=1e-4, efficiency=0.9) | kwargs
    with pytest.raises(ValueError, match=f"DetectorPanel.{field}"):
        DetectorPanel(**args)


def test_parameters_only_when_passed_as_parameters():
    panel = DetectorPanel(nn.Parameter(torch.tensor([0.0, 0.0, 1.0])), (1.0, 1.0))
    assert [n for n, _ in panel.named_parameters()] == ["centre"]
    assert {n for n, _ in panel.named_buffers()} == {"span", "resolution", "efficiency"}


def test_panel_inside_volume_is_refused():
    volume = PassiveVolume.uniform("iron", (1.0, 1.0, 1.0), 0.1, z_low=0.2)
    det = Detector([DetectorPanel((0.5, 0.5, 1.0), (1.0, 1.0))], [DetectorPanel((0.5, 0.5, 0.0), (1.0, 1.0))])
    with pytest.raises(ValueError, match="z_high"):
        det.check_outside(volume)


def test_hits_shapes_and_weights():
    det = make_detector(resolution=1e-3, efficiency=0.8)
    muons = FixedSource(GenerationPlane(1.5, (0.0, 1.0), (0.0, 1.0)), 5.0, theta=0.2, point=(0.5, 0.5)).sample(7)
    hits = det.hits(muons, "above", torch.zeros(2, 7, 2))
    assert hits.xy.shape == (2, 7, 2) and hits.weight.shape == (2, 7) and hits.positions.shape == (2, 7, 3)
    assert torch.allclose(hits.weight, torch.full((2, 7), 0.8), atol=1e-3)  # well inside the panels
    # Straight line: x = 0.5 + (1.5 - z) tan(0.2).
    expected = 0.5 + (1.5 - torch.tensor([1.3, 1.2])) * torch.tan(torch.tensor(0.2))
    assert hits.true_xy is not None
    assert torch.allclose(hits.true_xy[:, 0, 0], expected, atol=1e-5)


def test_group_offset_moves_members():
    group = PanelGroup(
        [DetectorPanel((0.0, 0.0, 0.0), (1.0, 1.0)), DetectorPanel((0.0, 0.0, -0.1), (1.0, 1.0))],
        offset=(0.5, 0.5, 1.3),
    )
    det = Detector([group], [DetectorPanel((0.5, 0.5, 0.0), (1.0, 1.0))])
    z = det.panel_parameters("above")["centre"][:, 2]
    assert torch.allclose(z, torch.tensor([1.3, 1.2]))


def test_cost_model_formula():
    model = AreaCostModel(cost_per_m2=100.0, reference_resolution=1e-4, reference_efficiency=0.9)
    span = torch.tensor([[2.0, 1.0], [1.0, 1.0], [1.0, 1.0]])
    cost = model(span, torch.tensor([1e-4, 5e-5, 1e-4]), torch.tensor([0.9, 0.9, 0.99]))
    assert torch.allclose(cost, torch.tensor([200.0, 200.0, 200.0]), rtol=1e-5)  # ln(0.01)/ln(0.1) = 2
    assert make_detector().cost().item() == pytest.approx(4000.0, rel=1e-5)
    with pytest.raises(ValueError, match="reference_efficiency"):
        AreaCostModel(reference_efficiency=1.0)
