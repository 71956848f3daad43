"""Task inference: fill height statistic, linear calibration, presence score."""

import numpy as np
import pytest
import torch

from mutomo.inference.tasks import fit_linear_calibration, poca_height, presence_score, robust_zscore
from mutomo.reco import ScatterData, Tracks, VoxelMap
from mutomo.reco.poca import Scatters
from mutomo.volume import PassiveVolume

D = torch.float64


def test_linear_calibration_recovers_a_line_and_refuses_bad_input():
    raw = torch.tensor([0.5, 0.6, 0.7, 0.8], dtype=D, requires_grad=True)
    cal = fit_linear_calibration(raw, 2.0 * raw.detach() - 0.3)
    assert float(cal.slope.detach()) == pytest.approx(2.0) and float(cal.intercept.detach()) == pytest.approx(-0.3)
    assert float(cal.residual_rms.detach()) == pytest.approx(0.0, abs=1e-12)
    cal(torch.tensor(0.9, dtype=D)).backward()
    assert raw.grad is not None and torch.isfinite(raw.grad).all()
    with pytest.raises(ValueError, match="n >= 2"):
        fit_linear_calibration(torch.tensor([1.0]), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="two different"):
        fit_linear_calibration(torch.tensor([1.0, 1.0]), torch.tensor([1.0, 2.0]))


def scatter_data(poca, var_z, weight):
    n = poca.shape[0]
    cov = torch.zeros(n, 3, 3, dtype=D)
    cov[:, 2, 2] = var_z
    t = Tracks(
        0.0,
        torch.zeros(n, 2, dtype=D),
        torch.zeros(n, 2, dtype=D),
        torch.zeros(n, 4, 4, dtype=D),
        torch.zeros(n, dtype=D),
        torch.zeros(n, dtype=D),
        torch.ones(n, dtype=D),
    )
    sc = Scatters(torch.ones(n, dtype=D), torch.ones(n, 2, dtype=D), poca, cov, torch.ones(n, dtype=D))
    return ScatterData(t, t, sc, torch.ones(n, dtype=D), weight)


def test_poca_height_is_the_precision_weighted_mean():
    volume = PassiveVolume.uniform("iron", (1.0, 1.0, 1.0), 0.1, z_low=0.4, dtype=D)
    poca = torch.tensor([[0.5, 0.5, 0.6], [0.5, 0.5, 1.0], [0.5, 0.5, 3.0]], dtype=D)
    var_z = torch.tensor([0.01**2, 0.02**2, 0.01**2], dtype=D)
    weight = torch.tensor([1.0, 1.0, 0.5], dtype=D)
    # The third PoCA lies above the volume: clamped to z_high = 1.4.
    w = weight / var_z
    expected = (w * torch.tensor([0.6, 1.0, 1.4], dtype=D)).sum() / w.sum()
    assert float(poca_height(scatter_data(poca, var_z, weight), volume, min_sigma=1e-3)) == pytest.approx(
        float(expected)
    )
    # The floor: with min_sigma = 3 cm all three count equally (times their muon weight).
    floored = (weight * torch.tensor([0.6, 1.0, 1.4], dtype=D)).sum() / weight.sum()
    assert float(poca_height(scatter_data(poca, var_z, weight), volume)) == pytest.approx(float(floored))
    # No muon: the middle of the volume, not NaN.
    assert float(poca_height(scatter_data(poca, var_z, torch.zeros(3, dtype=D)), volume)) == pytest.approx(0.9)


def voxel_map(score):
    return VoxelMap("test", score, torch.ones_like(score), torch.ones_like(score, dtype=torch.bool))


def test_presence_score_picks_out_a_hot_voxel():
    gen = torch.Generator().manual_seed(0)
    background = 1.0 + 0.05 * torch.randn(10, 10, 6, generator=gen, dtype=D)
    hot = background.clone()
    hot[4, 5, 2] = 3.0
    z = robust_zscore(voxel_map(hot))
    assert float(z[4, 5, 2]) > 20 and float(z.abs().median()) < 1.0
    quiet, loud = presence_score(voxel_map(background), 0.5), presence_score(voxel_map(hot), 0.5)
    assert float(quiet) < 3.0 < 10.0 < float(loud)
    unmeasured = VoxelMap("test", hot, hot, torch.zeros_like(hot, dtype=torch.bool))
    with pytest.raises(ValueError, match="at least 3 measured"):
        robust_zscore(unmeasured)
    with pytest.raises(ValueError, match="temperature"):
        presence_score(voxel_map(hot), 0.0)


def test_per_layer_zscores_ignore_a_drift_with_depth():
    """Scores that rise with depth (as ASR's do near the faces) plus one mildly hot voxel: the
    whole-volume z-score is led by the top layer, the per-layer one by the hot voxel."""
    gen = torch.Generator().manual_seed(1)
    drift = torch.linspace(1.0, 2.0, 6, dtype=D)
    score = drift + 0.02 * torch.randn(10, 10, 6, generator=gen, dtype=D)
    score[3, 3, 1] += 0.3
    whole, layer = robust_zscore(voxel_map(score)), robust_zscore(voxel_map(score), per_layer=True)
    assert int(whole.argmax()) // 6 != 3 * 10 + 3
    assert np.unravel_index(int(layer.argmax()), (10, 10, 6)) == (3, 3, 1)
    assert float(layer[3, 3, 1]) > 10 and float(layer.abs().median()) < 1.0
