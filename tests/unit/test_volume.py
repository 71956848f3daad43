import pytest
import torch

from mutomo.materials import get_material
from mutomo.volume import PassiveVolume


def test_uniform_and_layers_shapes():
    v = PassiveVolume.uniform("iron", (1.0, 0.8, 0.5), 0.1, z_low=0.2)
    assert v.shape == (10, 8, 5) and v.z_high == pytest.approx(0.7)
    assert torch.allclose(v.x0, torch.full((10, 8, 5), v.materials[0].x0))
    layered = PassiveVolume.layers([("lead", 0.2), ("water", 0.3)], footprint=(1.0, 1.0), voxel_size=0.1)
    assert layered.x0[0, 0, 0] == pytest.approx(0.005612, rel=1e-3)
    assert layered.x0[0, 0, 4] == pytest.approx(0.3608, rel=1e-3)


def test_with_box_sets_only_inner_voxels():
    v = PassiveVolume.uniform("water", (1.0, 1.0, 1.0), 0.1).with_box("lead", (0.2, 0.2, 0.2), (0.5, 0.5, 0.5))
    lead = v.x0 < 0.01
    assert int(lead.sum()) == 27 and bool(lead[2:5, 2:5, 2:5].all())


def test_flat_voxel_index_matches_brute_force():
    """The layer-table row of a point holds its voxel's X0 inside the footprint, air outside."""
    v = PassiveVolume.uniform("iron", (1.0, 0.6, 0.2), 0.1, xy_origin=(-0.3, 0.1)).with_box(
        "lead", (-0.3, 0.1, 0.0), (0.2, 0.4, 0.1)
    )
    xy = torch.rand(5000, 2) * torch.tensor([1.6, 1.2]) + torch.tensor([-0.6, -0.2])
    idx = v.flat_voxel_index(xy[:, 0], xy[:, 1])
    table, material = v.layer_properties(0)
    centres = v.voxel_centres()[:, :, 0, :2].reshape(-1, 2)
    inside = (xy[:, 0] >= -0.3) & (xy[:, 0] < 0.7) & (xy[:, 1] >= 0.1) & (xy[:, 1] < 0.7)
    nearest = (xy[:, None, :] - centres[None]).abs().max(-1).values.argmin(1)
    assert torch.equal(table[idx[inside], 0], v.x0[:, :, 0].reshape(-1)[nearest[inside]])
    assert bool((material[idx[~inside]] == v.background_index).all())
    assert bool((table[idx[~inside], 0] == get_material("air").x0).all())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(size=(1.0, 1.0, 0.0), voxel_size=0.1), "size"),
        (dict(size=(1.0, 1.0, 1.0), voxel_size=-0.1), "voxel_size"),
        (dict(size=(1.0, 1.0, 0.55), voxel_size=0.1), "whole number"),
    ],
)
def test_bad_volume_inputs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PassiveVolume.uniform("iron", **kwargs)


def test_empty_volume_and_empty_box_are_refused():
    with pytest.raises(ValueError, match="non-empty"):
        PassiveVolume(["iron"], torch.zeros(0, 3, 3, dtype=torch.long), 0.1)
    with pytest.raises(ValueError, match="no voxel"):
        PassiveVolume.uniform("water", (1.0, 1.0, 1.0), 0.1).with_box("lead", (2.0, 2.0, 2.0), (3.0, 3.0, 3.0))


def test_horizontal_muons_get_finite_far_crossings_and_weight_zero():
    """Regression (property tests, issue 14): an exactly horizontal muon made position_at_z divide
    by cos = 0, giving NaN hits and gradients and a NaN voxel index that crashed propagate_volume."""
    from mutomo.detector import Detector, DetectorPanel
    from mutomo.muons import MuonBatch
    from mutomo.volume import position_at_z, propagate_volume

    d = torch.float64
    direction = torch.tensor([[1.0, 0.0, 0.0], [-0.6, 0.8, -0.0], [0.0, 0.0, -1.0]], dtype=d)
    position = torch.tensor([[0.5, 0.5, 0.3]] * 2 + [[0.5, 0.5, 2.0]], dtype=d)
    muons = MuonBatch.create(position, direction, torch.full((3,), 5.0, dtype=d))
    z = torch.tensor(1.0, dtype=d, requires_grad=True)
    point = position_at_z(muons, z)
    assert bool(torch.isfinite(point).all())
    point.sum().backward()
    assert bool(torch.isfinite(z.grad))
    torch.testing.assert_close(point[2].detach(), torch.tensor([0.5, 0.5, 1.0], dtype=d))
    assert bool((point[:2, :2].detach().abs().max(-1).values > 1e9).all())  # far outside every panel

    volume = PassiveVolume.uniform("iron", (1.0, 1.0, 0.4), 0.1, z_low=0.1, dtype=d)
    out = propagate_volume(muons, volume, generator=torch.Generator().manual_seed(0))
    assert bool(torch.isfinite(out.position).all()) and bool(torch.isfinite(out.direction).all())
    assert out.weight.tolist() == [0.0, 0.0, 1.0]

    above = [DetectorPanel((0.5, 0.5, zz), (1.0, 1.0), 1e-3, 0.9, dtype=d) for zz in (0.7, 0.8)]
    below = [DetectorPanel((0.5, 0.5, zz), (1.0, 1.0), 1e-3, 0.9, dtype=d) for zz in (0.0, -0.1)]
    hits = Detector(above, below).hits(muons, "above", torch.zeros(2, 3, 2, dtype=d))
    assert bool(torch.isfinite(hits.xy).all())
    assert hits.weight[:, :2].abs().max() < 1e-300 and bool((hits.weight[:, 2] > 0.8).all())


def test_scattering_basis_of_a_muon_flying_along_y_is_finite():
    """Regression (property tests, issue 14): the basis perpendicular to a muon flying exactly
    along y divided by sqrt(dx^2 + dz^2) = 0; the NaN direction then crashed the voxel lookup."""
    from mutomo.muons import MuonBatch
    from mutomo.volume import propagate_volume
    from mutomo.volume.scattering import perpendicular_basis

    d = torch.float64
    direction = torch.tensor([[0.0, -1.0, 0.0], [0.0, 1.0, -0.0], [0.3, -0.2, -0.9]], dtype=d)
    direction = direction / direction.norm(dim=-1, keepdim=True)
    e1, e2 = (torch.stack(e, -1) for e in perpendicular_basis(*direction.unbind(-1)))
    assert bool(torch.isfinite(e1).all()) and bool(torch.isfinite(e2).all())
    # Still an orthonormal basis for a muon that is not exactly horizontal along y.
    for a, b, dot in ((e1, e1, 1.0), (e2, e2, 1.0), (e1, e2, 0.0), (e1, direction, 0.0), (e2, direction, 0.0)):
        assert abs(float((a[2] * b[2]).sum()) - dot) < 1e-12

    muons = MuonBatch.create(torch.tensor([[0.5, 0.5, 0.3]] * 3, dtype=d), direction, torch.full((3,), 5.0, dtype=d))
    volume = PassiveVolume.uniform("lead", (1.0, 1.0, 0.4), 0.1, z_low=0.1, dtype=d)
    out = propagate_volume(muons, volume, generator=torch.Generator().manual_seed(0))
    assert bool(torch.isfinite(out.position).all()) and bool(torch.isfinite(out.direction).all())
    assert out.weight[:2].tolist() == [0.0, 0.0]


def test_energy_loss_step_never_adds_energy_below_the_tables():
    """Regression (property tests, issue 14): a muon below the range tables' lowest kinetic
    energy (1 MeV) was stopped *and* raised to 1 MeV, gaining energy in the step."""
    from mutomo.volume import RangeTables
    from mutomo.volume.energy_loss import T_MIN

    tables = RangeTables(["iron", "air"], dtype=torch.float64)
    kinetic = torch.tensor([1e-5, 5e-4, 0.999e-3, 2e-3, 10.0], dtype=torch.float64)
    material = torch.tensor([0, 1, 0, 0, 0])
    after, stopped = tables.step(kinetic, material, torch.full((5,), 0.01, dtype=torch.float64))
    assert bool((after <= kinetic).all()) and bool((after > 0).all())
    assert stopped[:4].tolist() == [True, True, True, True] and not bool(stopped[4])
    assert float(after[3]) == T_MIN  # a muon that stops from above the tables ends on their floor
