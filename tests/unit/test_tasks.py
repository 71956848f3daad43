"""Task inference: fill height statistic, linear calibration, presence score."""

import numpy as np
import pytest
import torch

from mutomo.reco import ScatterData, Tracks, VoxelMap
from mutomo.reco.poca import Scatters
from mutomo.tasks.statistics import fit_linear_calibration, poca_height, presence_score, ranking_score, robust_zscore
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


def x0_map(y: np.ndarray, sigma: np.ndarray, measured: np.ndarray) -> VoxelMap:
    """An X0 map with ``ln(1/X0) = y`` and ``sigma(ln X0) = sigma``, shaped like ``y``."""
    x0 = torch.from_numpy(np.exp(-y))
    m = torch.from_numpy(measured)
    return VoxelMap(
        "poca",
        torch.where(m, 1 / x0, 0.0),
        torch.ones_like(x0),
        m,
        torch.where(m, x0, 0.0),
        torch.where(m, torch.from_numpy(sigma) * x0, torch.inf),
    )


def test_ranking_score_is_the_empirical_bayes_posterior_mean_order_in_numpy():
    """Against an independent numpy evaluation: m the median of the measured ln(1/X0), tau^2 =
    (1.4826 MAD)^2 - median sigma^2, score (y - m) / (tau^2 + sigma^2); unmeasured -inf; with
    equal errors the order is the raw score's. An odd count of measured voxels: torch's median is
    the lower middle value, numpy's the mean of the two."""
    rng = np.random.default_rng(3)
    y = rng.normal(np.log(10.0), 0.4, (5, 5, 5))
    sigma = rng.uniform(0.1, 0.6, (5, 5, 5))
    measured = np.ones((5, 5, 5), dtype=bool)
    measured[0, 0, :2] = False  # 123 measured
    got = ranking_score(x0_map(y, sigma, measured)).numpy()
    m = np.median(y[measured])
    tau2 = (1.482602218505602 * np.median(np.abs(y[measured] - m))) ** 2 - np.median(sigma[measured] ** 2)
    assert tau2 > 0
    np.testing.assert_allclose(got[measured], (y[measured] - m) / (tau2 + sigma[measured] ** 2), rtol=1e-10)
    assert np.all(got[~measured] == -np.inf)
    equal = ranking_score(x0_map(y, np.full_like(y, 0.3), measured)).numpy()
    assert np.array_equal(np.argsort(equal[measured]), np.argsort(y[measured]))
    # A batch of two maps: each ranked against its own voxels.
    both = x0_map(np.stack([y, y + 1.0]), np.stack([sigma, sigma]), np.stack([measured, measured]))
    torch.testing.assert_close(ranking_score(both)[1].numpy()[measured], got[measured], rtol=1e-12, atol=0)


def test_ranking_score_keeps_a_sparse_voxels_noise_below_a_well_measured_dense_voxel():
    """1000-voxel maps of a uniform background, 20 % of the voxels seen by 6 muons
    (sigma(ln X0) = sqrt(1.74 / 6) = 0.54, x0.py) and the rest by 60 (0.17), with one voxel of
    60 muons 2.5x denser: over 200 maps the raw 1/X0 ranks the dense voxel first in under a
    tenth (the largest of ~200 sparse fluctuations is ~2.7 sigma = 1.5 > ln 2.5), the ranking
    score in over 95 %. A map without X0 errors (ASR, BCA) keeps its raw order."""
    rng = np.random.default_rng(4)
    raw_hits = ranked_hits = 0
    for _ in range(200):
        sigma = np.where(rng.random(1000) < 0.2, np.sqrt(1.74 / 6), np.sqrt(1.74 / 60))
        sigma[0] = np.sqrt(1.74 / 60)
        y = np.log(10.0) + sigma * rng.standard_normal(1000)
        y[0] += np.log(2.5)
        vmap = x0_map(y.reshape(10, 10, 10), sigma.reshape(10, 10, 10), np.ones((10, 10, 10), dtype=bool))
        raw_hits += int(vmap.score.reshape(-1).argmax()) == 0
        ranked_hits += int(ranking_score(vmap).reshape(-1).argmax()) == 0
    assert raw_hits < 20 and ranked_hits > 190, (raw_hits, ranked_hits)
    plain = VoxelMap("asr", vmap.score, vmap.weight, vmap.measured & (vmap.score < 12))
    expected = torch.where(plain.measured, plain.score, -torch.inf)
    torch.testing.assert_close(ranking_score(plain), expected, rtol=0, atol=0)
