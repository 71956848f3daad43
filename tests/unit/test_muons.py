import math

import pytest
import torch

from mutomo.muons import FixedSource, FluxSource, GenerationPlane, MuonBatch, TabulatedFlux, exposure_time, muon_count


@pytest.fixture(scope="module")
def table():
    return TabulatedFlux(momentum_range=(0.5, 500.0), theta_max=math.radians(70))


def test_batch_shapes_and_defaults():
    b = MuonBatch.create(torch.zeros(5, 3), torch.tensor([[0.0, 0.0, -2.0]]).expand(5, 3), torch.full((5,), 3.0))
    assert len(b) == 5 and b.charge.shape == (5,) and torch.allclose(b.direction.norm(dim=1), torch.ones(5))
    assert torch.all(b.weight == 1) and torch.allclose(b.theta, torch.zeros(5))
    assert b.to(dtype=torch.float64).dtype == torch.float64


def test_batch_rejects_bad_input():
    with pytest.raises(ValueError, match="at least one muon"):
        MuonBatch.create(torch.zeros(0, 3), torch.zeros(0, 3), torch.zeros(0))
    with pytest.raises(ValueError, match="momentum"):
        MuonBatch.create(torch.zeros(2, 3), torch.ones(2, 3), torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="shape"):
        MuonBatch(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3), torch.zeros(2), torch.zeros(2), torch.zeros(2))


def test_flux_source_samples_in_range(table):
    plane = GenerationPlane(2.0, (0.0, 2.0), (-1.0, 1.0))
    b = FluxSource(plane, table).sample(20000, torch.Generator().manual_seed(1), dtype=torch.float64)
    assert b.dtype == torch.float64 and len(b) == 20000
    assert float(b.momentum.min()) >= 0.5 and float(b.momentum.max()) <= 500.0
    assert float(b.theta.max()) <= math.radians(70) + 1e-9 and bool((b.direction[:, 2] < 0).all())
    assert float(b.position[:, 0].min()) >= 0 and float(b.position[:, 0].max()) <= 2
    assert torch.all(b.position[:, 2] == 2.0) and set(b.charge.unique().tolist()) == {-1.0, 1.0}


def test_same_seed_same_muons(table):
    plane = GenerationPlane(2.0, (0.0, 1.0), (0.0, 1.0))
    a = FluxSource(plane, table).sample(100, torch.Generator().manual_seed(3))
    b = FluxSource(plane, table).sample(100, torch.Generator().manual_seed(3))
    assert torch.equal(a.momentum, b.momentum) and torch.equal(a.position, b.position)


def test_exposure_round_trip(table):
    source = FluxSource(GenerationPlane(2.0, (0.0, 3.0), (0.0, 1.0)), table)
    seconds = exposure_time(123456, source)
    assert seconds == pytest.approx(123456 / (3.0 * table.rate_per_area))
    assert muon_count(seconds, source) == 123456


def test_bad_generation_inputs(table):
    with pytest.raises(ValueError, match="x_range"):
        GenerationPlane(1.0, (1.0, 0.0), (0.0, 1.0))
    source = FluxSource(GenerationPlane(2.0, (0.0, 1.0), (0.0, 1.0)), table)
    with pytest.raises(ValueError, match=">= 1"):
        source.sample(0)
    with pytest.raises(ValueError, match="exposure time"):
        muon_count(-1.0, source)
    with pytest.raises(ValueError, match="momentum_range"):
        TabulatedFlux(momentum_range=(10.0, 1.0))
    with pytest.raises(ValueError, match="theta"):
        FixedSource(source.plane, 1.0, theta=2.0)


def test_fixed_source():
    b = FixedSource(GenerationPlane(1.0, (0.0, 1.0), (0.0, 1.0)), 5.0, theta=0.3, point=(0.5, 0.5)).sample(4)
    assert torch.allclose(b.theta, torch.full((4,), 0.3), atol=1e-6) and torch.all(b.momentum == 5.0)
    assert torch.allclose(b.position[:, :2], torch.full((4, 2), 0.5))
