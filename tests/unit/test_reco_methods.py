"""Segment quantiles, ASR, binned clustering, momentum estimates and the pluggable voxel maps."""

import math

import numpy as np
import pytest
import torch

from mutomo.muons import TabulatedFlux
from mutomo.reco import (
    AngleStatisticsReconstruction,
    BinnedClustering,
    ConstantMomentum,
    FluxMeanMomentum,
    Tracks,
    triggered_voxels,
)
from mutomo.reco.segments import segment_quantile
from mutomo.reco.x0 import PocaX0
from mutomo.volume import PassiveVolume

D = torch.float64


def tracks(xy, slope, z_ref):
    xy = torch.as_tensor(xy, dtype=D).reshape(-1, 2)
    n = xy.shape[0]
    return Tracks(
        z_ref=z_ref,
        xy=xy,
        slope=torch.as_tensor(slope, dtype=D).reshape(-1, 2).expand(n, 2),
        covariance=torch.eye(4, dtype=D).expand(n, 4, 4) * 1e-8,
        chi2=torch.zeros(n, dtype=D),
        ndof=torch.ones(n, dtype=D),
        weight=torch.ones(n, dtype=D),
    )


@pytest.mark.parametrize("q", [0.1, 0.5, 0.83])
def test_segment_quantile_matches_numpy_hazen(q):
    gen = torch.Generator().manual_seed(3)
    values = torch.randn(5001, generator=gen, dtype=D)
    segment = torch.randint(0, 7, (5001,), generator=gen)
    got = segment_quantile(values, torch.ones_like(values), segment, 8, q)
    for k in range(7):
        expected = np.quantile(values[segment == k].numpy(), q, method="hazen")
        assert float(got[k]) == pytest.approx(expected, abs=1e-12)
    assert float(got[7]) == 0.0  # empty segment


def test_segment_quantile_weights_and_gradients():
    values = torch.tensor([1.0, 2.0, 3.0, 10.0], dtype=D, requires_grad=True)
    weights = torch.tensor([1.0, 1.0, 1.0, 100.0], dtype=D, requires_grad=True)
    med = segment_quantile(values, weights, torch.zeros(4, dtype=torch.long), 1, 0.5)
    # Midpoint rule: 3 sits at P = 2.5/103 and 10 at P = 53/103; the median interpolates between them.
    expected = 3.0 + 7.0 * (0.5 - 2.5 / 103) / ((53 - 2.5) / 103)
    assert float(med.detach()) == pytest.approx(expected)
    med.sum().backward()
    assert torch.isfinite(values.grad).all() and torch.isfinite(weights.grad).all()
    zero = segment_quantile(values, torch.zeros(4, dtype=D), torch.zeros(4, dtype=torch.long), 1, 0.5)
    assert float(zero.detach()) == 0.0
    with pytest.raises(ValueError, match="quantile"):
        segment_quantile(values, weights, torch.zeros(4, dtype=torch.long), 1, 1.5)


VOLUME = PassiveVolume.uniform("water", (1.0, 1.0, 0.6), 0.1, z_low=0.4, dtype=D)


def test_triggered_voxels_of_a_vertical_muon_is_its_column():
    t = tracks([0.55, 0.25], [0.0, 0.0], 1.0)
    muon, voxel = triggered_voxels(t, t, VOLUME)
    nx, ny, nz = VOLUME.shape
    assert sorted(voxel.tolist()) == [(5 * ny + 2) * nz + iz for iz in range(nz)]
    assert muon.tolist() == [0] * nz


def test_triggered_voxels_need_both_tracks():
    # The incoming and outgoing tracks are vertical but 40 cm apart: no voxel is crossed by both.
    muon, _ = triggered_voxels(tracks([0.15, 0.5], [0, 0], 1.0), tracks([0.55, 0.5], [0, 0], 0.4), VOLUME)
    assert muon.numel() == 0
    # An inclined straight muon crosses x-columns as it descends; one voxel per layer at most here.
    t = tracks([0.05, 0.5], [-0.5, 0.0], 1.0)  # x = 0.05 - 0.5 (z - 1.0): from 0.05 at the top to 0.35 at the bottom
    _, voxel = triggered_voxels(t, t, VOLUME)
    ix = voxel // (VOLUME.shape[1] * VOLUME.shape[2])
    assert set(ix.tolist()) == {0, 1, 2, 3} and voxel.numel() >= VOLUME.shape[2]
    with pytest.raises(ValueError, match="samples_per_layer"):
        triggered_voxels(t, t, VOLUME, samples_per_layer=0)


def test_asr_scores_the_column_of_strongly_deflected_muons():
    gen = torch.Generator().manual_seed(1)
    n = 4000
    xy = torch.rand(n, 2, generator=gen, dtype=D)
    t = tracks(xy, [0.0, 0.0], 1.0)
    deflection = torch.rand(n, generator=gen, dtype=D)
    hot = (xy[:, 0] > 0.6) & (xy[:, 0] < 0.7) & (xy[:, 1] > 0.3) & (xy[:, 1] < 0.4)
    deflection = torch.where(hot, deflection + 5.0, deflection)
    asr = AngleStatisticsReconstruction(min_weight=3.0)
    score, weight, measured = asr.scores(t, t, deflection, torch.ones(n, dtype=D), VOLUME)
    assert measured.sum() > 0.9 * measured.numel()
    assert float(score[6, 3].min()) > 5.0 and float(score[~hot.new_zeros(VOLUME.shape).bool()].max()) >= 5.0
    cold = torch.ones(VOLUME.shape, dtype=torch.bool)
    cold[6, 3] = False
    assert float(score[cold & measured].max()) < 1.0
    assert float(weight.sum()) == pytest.approx(n * VOLUME.shape[2])  # every vertical muon crosses every layer
    with pytest.raises(ValueError, match="quantile"):
        AngleStatisticsReconstruction(quantile=1.0)


def test_bca_scores_the_cluster_highest():
    gen = torch.Generator().manual_seed(2)
    n = 3000
    poca = torch.rand(n, 3, generator=gen, dtype=D) * torch.tensor([1.0, 1.0, 0.6], dtype=D) + torch.tensor(
        [0.0, 0.0, 0.4], dtype=D
    )
    deflection = torch.rand(n, generator=gen, dtype=D) + 0.1
    # 40 strongly deflected scatters clustered within 1 cm in voxel (2, 7, 3).
    centre = torch.tensor([0.25, 0.75, 0.75], dtype=D)
    poca[:40] = centre + 0.01 * (torch.rand(40, 3, generator=gen, dtype=D) - 0.5)
    deflection[:40] = 5.0
    score, weight, measured = BinnedClustering(n_max=30, n_min=3).scores(
        poca, deflection, torch.ones(n, dtype=D), VOLUME
    )
    flat = torch.where(measured, score, torch.tensor(-1e9, dtype=D)).reshape(-1)
    assert int(flat.argmax()) == (2 * VOLUME.shape[1] + 7) * VOLUME.shape[2] + 3
    # A voxel with fewer than n_min points is unmeasured.
    few = BinnedClustering(n_min=3).scores(poca[:2], deflection[:2], torch.ones(2, dtype=D), VOLUME)[2]
    assert not bool(few.any())
    with pytest.raises(ValueError, match="n_min"):
        BinnedClustering(n_max=2, n_min=3)


def test_momentum_estimates():
    t = tracks(torch.zeros(3, 2), torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]]), 1.0)
    assert ConstantMomentum()(t, t).tolist() == [4.0, 4.0, 4.0]
    with pytest.raises(ValueError, match="momentum"):
        ConstantMomentum(-1.0)
    p = FluxMeanMomentum(TabulatedFlux(theta_max=math.radians(80)))(t, t)
    # Inclined muons are harder (GCCLY15): mean p rises with zenith angle.
    assert 3.0 < float(p[0]) < 6.0 and float(p[0]) < float(p[1]) < float(p[2])


def test_poca_x0_map_scores_inverse_x0():
    from mutomo.reco import ScatterData
    from mutomo.reco.poca import Scatters

    gen = torch.Generator().manual_seed(4)
    n = 20_000
    volume = PassiveVolume.uniform("iron", (1.0, 1.0, 0.2), (1.0, 1.0, 0.2), z_low=0.4, dtype=D)
    t = tracks(torch.full((n, 2), 0.5, dtype=D), [0.0, 0.0], 0.6)
    g = 0.2 / 0.01757 * (1 + 0.038 * math.log(0.2 / 0.01757)) ** 2
    theta_xy = torch.randn(n, 2, generator=gen, dtype=D) * math.sqrt(g) * 0.0136 / 10.0
    poca = torch.tensor([0.5, 0.5, 0.5], dtype=D).expand(n, 3)
    sc = Scatters(
        theta_xy.norm(dim=-1), theta_xy, poca, torch.eye(3, dtype=D).expand(n, 3, 3) * 1e-4, torch.ones(n, dtype=D)
    )
    data = ScatterData(t, t, sc, torch.full((n,), 10.0, dtype=D), torch.ones(n, dtype=D))
    vmap = PocaX0(extended=False)(data, volume)
    assert vmap.method == "poca_x0" and vmap.x0 is not None and bool(vmap.measured.all())
    assert float(vmap.x0) == pytest.approx(0.01757, rel=0.05)
    assert float(vmap.score) == pytest.approx(1 / float(vmap.x0))


def test_voxel_methods_of_no_muon_measure_nothing():
    """Regression (property tests, issue 14): when measure() keeps no muon (none crossed the
    volume on both sides), extended PoCA failed to reshape its empty window and binned clustering
    indexed an empty tensor; every method now returns an unmeasured map."""
    from mutomo.detector import Detector, DetectorPanel
    from mutomo.muons import MuonBatch
    from mutomo.reco import MaximumLikelihoodEM, measure

    volume = PassiveVolume.uniform("iron", (0.4, 0.4, 0.2), 0.1, z_low=0.0, dtype=D)
    above = [DetectorPanel((0.2, 0.2, z), (1.0, 1.0), 1e-3, 0.9, dtype=D) for z in (0.4, 0.3)]
    below = [DetectorPanel((0.2, 0.2, z), (1.0, 1.0), 1e-3, 0.9, dtype=D) for z in (-0.1, -0.2)]
    det = Detector(above, below)
    # Two muons far beside the volume: hits, but no track through it.
    muons = MuonBatch.create(
        torch.tensor([[3.0, 3.0, 0.5], [-3.0, 0.2, 0.5]], dtype=D),
        torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, -1.0]], dtype=D),
        torch.full((2,), 5.0, dtype=D),
    )
    zero = torch.zeros(2, 2, 2, dtype=D)
    data = measure(det.hits(muons, "above", zero), det.hits(muons, "below", zero), volume, muons.momentum)
    assert data.weight.numel() == 0
    methods = [PocaX0(extended=True), PocaX0(extended=False), BinnedClustering(), AngleStatisticsReconstruction()]
    for method in [*methods, MaximumLikelihoodEM(iterations=2)]:
        vmap = method(data, volume)
        assert vmap.score.shape == volume.shape and not bool(vmap.measured.any()), method.name
        assert float(vmap.score.abs().sum()) == 0.0 and bool(torch.isfinite(vmap.weight).all())
