"""Task metrics against closed forms, task losses, and exposure <-> muon count."""

import math

import numpy as np
import pytest
import torch

from mutomo.muons import FluxSource, GenerationPlane, TabulatedFlux
from mutomo.muons.generation import exposure_time, muon_count
from mutomo.tasks.metrics import (
    bootstrap_metric,
    efficiency_at_false_alarm,
    exposure_to_reach,
    mean_metric,
    paired_auc_difference,
    roc_auc,
    threshold_false_alarm,
)
from mutomo.tasks.presence import soft_auc_loss
from mutomo.tasks.regression import calibrated_mse


def test_auc_of_two_identical_distributions_is_one_half_within_its_error():
    rng = np.random.default_rng(1)
    pulls = []
    for _ in range(40):
        scores = rng.normal(size=400)
        labels = np.arange(400) % 2
        m = roc_auc(scores, labels)
        pulls.append((m.value - 0.5) / m.error)
        # Hanley & McNeil (1982) at AUC = 1/2: var = (n_pos + n_neg + 1) / (12 n_pos n_neg).
        assert m.error == pytest.approx(math.sqrt(401 / (12 * 200 * 200)), rel=0.15)
    assert abs(np.mean(pulls)) < 3 / math.sqrt(40) and 0.7 < np.std(pulls) < 1.3


def test_auc_of_separated_and_of_binormal_scores():
    labels = np.array([0] * 50 + [1] * 50)
    assert roc_auc(np.arange(100.0), labels).value == 1.0
    assert roc_auc(-np.arange(100.0), labels).value == 0.0
    rng = np.random.default_rng(2)
    scores = np.concatenate([rng.normal(0, 1, 4000), rng.normal(1, 1, 4000)])
    m = roc_auc(scores, np.repeat([0, 1], 4000))
    # Binormal with unit variances and separation d: AUC = Phi(d / sqrt(2)).
    assert m.value == pytest.approx(0.5 * (1 + math.erf(0.5)), abs=3 * m.error)


def test_paired_auc_difference_is_zero_for_the_same_scores_and_tighter_than_unpaired():
    rng = np.random.default_rng(3)
    labels = np.arange(300) % 2
    base = rng.normal(size=300) + labels
    same = paired_auc_difference(base, base, labels)
    assert same.value == 0.0 and same.error == 0.0
    other = base + 0.3 * rng.normal(size=300)
    d = paired_auc_difference(other, base, labels)
    unpaired = math.hypot(roc_auc(other, labels).error, roc_auc(base, labels).error)
    assert d.error < unpaired
    assert d.value == pytest.approx(roc_auc(other, labels).value - roc_auc(base, labels).value)


def test_efficiency_at_false_alarm_and_exposure_interpolation():
    labels = np.array([0] * 100 + [1] * 10)
    negatives = np.arange(100.0)  # 0 ... 99
    positives = np.array([98.5, 99.5, 100, 50, 50, 50, 50, 50, 50, 50])
    scores = np.concatenate([negatives, positives])
    # 1 % of 100 negatives: one may score above the threshold, which is then 98.
    assert efficiency_at_false_alarm(scores, labels, 0.01) == pytest.approx(0.3)
    assert efficiency_at_false_alarm(scores, labels, 0.0) == pytest.approx(0.2)
    assert exposure_to_reach({10.0: 0.5, 40.0: 1.0}, 0.75) == pytest.approx(20.0)  # midway in log
    assert exposure_to_reach({10.0: 0.96, 40.0: 1.0}) == 10.0
    assert exposure_to_reach({10.0: 0.1, 40.0: 0.5}) == math.inf
    with pytest.raises(ValueError, match="with and without"):
        efficiency_at_false_alarm(scores, np.ones_like(scores))


def test_mean_and_bootstrap_errors_match_the_standard_error():
    rng = np.random.default_rng(4)
    x = rng.normal(3.0, 2.0, 400)
    m = mean_metric(x)
    assert m.value == pytest.approx(x.mean()) and m.error == pytest.approx(2.0 / 20, rel=0.1)
    labels = np.arange(400) % 2
    b = bootstrap_metric(lambda idx: float(x[idx].mean()), labels)
    assert b.error == pytest.approx(m.error, rel=0.15)


def test_exposure_and_muon_count_convert_both_ways():
    source = FluxSource(GenerationPlane(2.0, (0.0, 1.5), (0.0, 1.0)), TabulatedFlux(theta_max=math.radians(60)))
    assert muon_count(exposure_time(123_456, source), source) == 123_456
    assert exposure_time(muon_count(600.0, source), source) == pytest.approx(600.0, rel=1e-5)
    # ~0.8 muons per cm^2 per minute through a horizontal plane (PDG), within the flux model's 20 %.
    assert muon_count(60.0, source) / (1.5e4) == pytest.approx(0.8, rel=0.2)


def test_calibrated_mse_is_one_minus_r_squared_and_ignores_linear_maps():
    truth = torch.tensor([0.6, 0.7, 0.8, 0.9, 1.0, 1.1], dtype=torch.float64)
    raw = truth + torch.tensor([0.02, -0.01, 0.03, -0.02, 0.0, 0.01], dtype=torch.float64)
    loss = calibrated_mse(raw, truth)
    r = np.corrcoef(raw.numpy(), truth.numpy())[0, 1]
    assert float(loss) == pytest.approx(1 - r**2, rel=1e-9)
    assert float(calibrated_mse(3.0 * raw - 7.0, truth)) == pytest.approx(float(loss), rel=1e-9)
    assert float(calibrated_mse(2 * truth + 1, truth)) == pytest.approx(0.0, abs=1e-12)
    raw = raw.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda r: calibrated_mse(r, truth), (raw,))


def test_soft_auc_loss_is_one_half_for_no_separation_and_scale_free():
    labels = torch.tensor([1.0, 1.0, 0.0, 0.0])
    same = torch.tensor([1.0, 2.0, 1.0, 2.0])
    assert float(soft_auc_loss(same, labels)) == pytest.approx(0.5)
    apart = torch.tensor([5.0, 6.0, 1.0, 2.0])
    assert float(soft_auc_loss(apart, labels)) < 0.1
    assert float(soft_auc_loss(10 * apart + 3, labels)) == pytest.approx(float(soft_auc_loss(apart, labels)), rel=1e-5)
    assert float(soft_auc_loss(apart, torch.ones(4))) == 0.5
    x = apart.double().requires_grad_()
    assert torch.autograd.gradcheck(lambda s: soft_auc_loss(s, labels.double()), (x,))


def test_reference_scores_stay_finite_when_the_references_measured_nothing():
    """Clean references whose maps are all zero (a method that measured no voxel) and volumes
    with a hot voxel: finite scores and gradients, the hot volumes on top."""
    from mutomo.tasks.presence import batch_reference_scores, reference_scores

    maps = torch.zeros(8, 50, dtype=torch.float64)
    maps[0, 3], maps[2, 7] = 100.0, 30.0
    maps.requires_grad_()
    labels = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    scores = batch_reference_scores(maps, labels)
    loss = soft_auc_loss(scores, labels)
    loss.backward()
    assert torch.isfinite(scores).all() and torch.isfinite(maps.grad).all()
    assert scores[0] > scores[1] and scores[2] > scores[3]
    fixed = reference_scores(maps.detach()[[0, 2]], torch.zeros(4, 50, dtype=torch.float64))
    assert torch.isfinite(fixed).all()


def _regression_draw(rng, n, sigmas, shared=0.0):
    """``n`` volumes of fill ``t`` seen by designs whose raw statistic is ``0.5 t + noise``; a
    fraction ``shared`` of each design's noise variance is common to the designs (the same
    muons seen by similar detectors)."""
    from mutomo.tasks.base import Observations

    truth = rng.uniform(0.0, 1.0, n)
    common = rng.normal(0, 1, n)
    return [
        Observations(
            outputs=(0.5 * truth + s * (np.sqrt(shared) * common + np.sqrt(1 - shared) * rng.normal(0, 1, n)))[:, None],
            truths=truth,
        )
        for s in sigmas
    ]


def test_regression_errors_include_the_calibration_lines_error():
    """Over repeated test and calibration draws, the pulls of one design's MSE and of a paired
    difference have unit width; the test volumes' standard error alone is too small with 12
    calibration volumes, and a plain bootstrap of the calibration volumes would be too large."""
    from mutomo.tasks.regression import Regression

    task, rng = Regression(), np.random.default_rng(7)
    values, errors, diffs, diff_errors, test_only = [], [], [], [], []
    for i in range(400):
        shared = 0.0 if i % 2 else 0.8  # paired designs with independent and with correlated noise
        test_a, test_b = _regression_draw(rng, 96, (0.05, 0.06), shared)
        cal_a, cal_b = _regression_draw(rng, 12, (0.05, 0.06), shared)
        m = task.metrics(test_a, cal_a)["mse"]
        d = task.paired(test_a, test_b, cal_a, cal_b)["mse"]
        values.append(m.value)
        errors.append(m.error)
        diffs.append(d.value)
        diff_errors.append(d.error)
        slope, intercept = np.polyfit(cal_a.outputs[:, 0], cal_a.truths, 1)
        test_only.append(mean_metric((slope * test_a.outputs[:, 0] + intercept - test_a.truths) ** 2).error)
    values, errors, diffs, diff_errors = map(np.asarray, (values, errors, diffs, diff_errors))
    assert np.std((values - values.mean()) / errors) == pytest.approx(1.0, abs=0.15)
    for kind in (0, 1):  # correlated, independent
        d, e = diffs[kind::2], diff_errors[kind::2]
        assert np.std((d - d.mean()) / e) == pytest.approx(1.0, abs=0.15)
    assert np.std(values) / np.mean(test_only) > 1.3


@pytest.mark.parametrize("n_negative", [20, 50, 100, 199])
def test_threshold_false_alarm_is_the_rate_the_threshold_lets_through_on_new_negatives(n_negative):
    """Monte Carlo against the order-statistics formula: set the 1 % threshold on ``n`` negative
    scores drawn from a standard normal as efficiency_at_false_alarm does (one positive far above
    every negative, so the efficiency is 1), and the mean over many draws of the normal tail above
    that threshold (its false-alarm rate on new negatives) is ``(k + 1) / (n + 1)``."""
    rng = np.random.default_rng(7)
    rates = []
    for _ in range(4000):
        negatives = rng.standard_normal(n_negative)
        scores, labels = np.append(negatives, 100.0), np.append(np.zeros(n_negative), 1)
        assert efficiency_at_false_alarm(scores, labels, 0.01) == 1.0
        k = math.floor(0.01 * n_negative + 1e-9)
        threshold = np.sort(negatives)[::-1][k]
        rates.append(0.5 * math.erfc(threshold / math.sqrt(2)))
    rates = np.array(rates)
    expected = threshold_false_alarm(n_negative, 0.01)
    assert rates.mean() == pytest.approx(expected, abs=4 * rates.std() / math.sqrt(rates.size))
    if n_negative < 100:
        assert expected > 0.01  # the highest negative: above the nominal rate
