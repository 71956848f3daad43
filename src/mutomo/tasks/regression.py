"""Regression of a scalar, e.g. how full a furnace is.

The raw statistic (``fill_statistic``: the precision-weighted mean PoCA height,
:func:`mutomo.tasks.statistics.poca_height`) is biased, so the answer is a straight line fitted
on calibration volumes of known truth; the metric is the mean squared error of the calibrated
answers on test volumes. Its standard error adds, to the test volumes' spread, the spread that
the calibration line's own statistical error gives it (closed form, :func:`_calibration_variance`;
correlated between two designs compared paired): with a few dozen calibration volumes that
part is as large as the test volumes' (the ladle furnace, 32 volumes: ~1e-3 m^2 per design).

Training losses (both unchanged by any increasing linear map of the raw statistic, so that
they score the statistic before its calibration):

* ``calibrated_mse`` (default): the batch's own least-squares line from raw statistic to truth,
  and the mean squared residual over the variance of the truths (``1 - R^2``): exactly the
  evaluation's metric, with the calibration fitted in the batch; differentiable in closed form.
* ``spread_over_range``: TomOpt's ladle-furnace loss
  (:class:`SpreadOverRangeLoss`, Strong et al. 2024); every volume is drawn twice.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from mutomo.errors import MutomoError
from mutomo.reco.maps import ScatterData
from mutomo.scenes.scene import VolumeSample
from mutomo.tasks.base import Observations, TaskKind
from mutomo.tasks.metrics import Metric, mean_metric
from mutomo.tasks.statistics import poca_height

REGRESSION_LOSSES = ("calibrated_mse", "spread_over_range")


class SpreadOverRangeLoss:
    """Mean within-target spread over the spread of the per-target means (see module docstring).

    Needs at least two target values, each predicted at least twice.
    """

    def __call__(self, predictions: Tensor, targets: Tensor) -> Tensor:
        values, index = torch.unique(targets, return_inverse=True)
        counts = torch.bincount(index, minlength=values.numel())
        if values.numel() < 2 or bool((counts < 2).any()):
            raise MutomoError(
                "SpreadOverRangeLoss needs >= 2 target values, each predicted >= 2 times; "
                f"got counts {counts.tolist()} for targets {values.tolist()}"
            )
        k = values.numel()
        mean = torch.zeros(k, dtype=predictions.dtype, device=predictions.device).index_add(0, index, predictions)
        mean = mean / counts.to(predictions)
        dev2 = torch.zeros_like(mean).index_add(0, index, (predictions - mean[index]) ** 2)
        spread = torch.sqrt(dev2 / (counts - 1).to(predictions) + 1e-24).mean()
        return spread / torch.sqrt(mean.var() + 1e-24)


def calibrated_mse(raw: Tensor, truth: Tensor) -> Tensor:
    """Mean squared residual of the least-squares line ``truth ~ raw`` over ``var(truth)``.

    Example:
        >>> float(calibrated_mse(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 4.0, 6.0])))
        0.0
    """
    truth = truth.to(raw)
    dx, dy = raw - raw.mean(), truth - truth.mean()
    var_y = (dy**2).mean()
    # (cov^2 / var_x) is the explained variance; a floor keeps 0/0 away when raw is constant.
    explained = (dx * dy).mean() ** 2 / ((dx**2).mean() + 1e-12 * var_y + 1e-30)
    return (var_y - explained) / (var_y + 1e-30)


def _lines(raw: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares lines ``truth ~ raw`` of each row: ``(slope, intercept)``, ``nan`` where
    the row's raw statistic is constant."""
    dx = raw - raw.mean(axis=-1, keepdims=True)
    dy = truth - truth.mean(axis=-1, keepdims=True)
    sxx = (dx**2).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = np.where(sxx > 0, (dx * dy).sum(axis=-1) / sxx, np.nan)
    return slope, truth.mean(axis=-1) - slope * raw.mean(axis=-1)


def _calibrated_errors(test: Observations, calibration: Observations) -> np.ndarray:
    """Per-test-volume squared error (truth units^2) after the calibration line."""
    slope, intercept = _lines(calibration.outputs[:, 0], calibration.truths)
    return (slope * test.outputs[:, 0] + intercept - test.truths) ** 2


def _line_covariances(raws: list[np.ndarray], truth: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Each design's matrix ``[raw, 1]`` and the heteroscedasticity-robust (HC1 sandwich)
    covariances ``(design, design, 2, 2)`` of their least-squares lines ``truth ~ raw`` fitted
    on the same volumes (White, Econometrica 48 (1980) 817; MacKinnon & White, J. Econometrics
    29 (1985) 305 for the small-sample factor)."""
    designs = [np.stack([r, np.ones_like(r)], axis=1) for r in raws]
    maps, residuals = [], []
    for x in designs:
        pinv = np.linalg.pinv(x)  # (2, n): the line is pinv @ truth
        maps.append(pinv)
        residuals.append(truth - x @ (pinv @ truth))
    pairs = list(zip(maps, residuals, strict=True))
    n = len(truth)
    # HC1: n / (n - 2) undoes the residuals' shrinkage by the two fitted parameters
    cov = np.array([[(pj * (ej * ek)) @ pk.T for pk, ek in pairs] for pj, ej in pairs]) * (n / max(n - 2, 1))
    return designs, cov


def _calibration_variance(pairs: list[tuple[Observations, Observations, float]]) -> float:
    """Variance of ``sum(sign * mean squared test error)`` over the pairs ``(test, calibration,
    sign)`` that comes from the calibration lines' statistical errors.

    A design's test MSE is quadratic in its line: ``MSE(l) = MSE(l_T) + (l - l_T)' H (l - l_T)``
    with ``l_T`` the least-squares line of the test volumes themselves and ``H`` the test
    volumes' mean of ``[raw, 1][raw, 1]'``. The calibration line is ``l* + d_C`` and
    ``l_T = l* + d_T``, with ``d_C`` and ``d_T`` independent, near-Gaussian, of (sandwich)
    covariances ``S`` and ``T``; over calibration draws, averaged over test draws, Gaussian
    moments give ``sum_jk s_j s_k [2 tr(H_j S_jk H_k S_kj) + 4 tr(H_j S_jk H_k T_kj)]``. Designs
    compared paired share their calibration volumes and muons, so their lines' errors are
    correlated (``S_jk``) and partly cancel. A plain bootstrap of the calibration volumes
    overstates this ~1.7-fold: its resampled lines scatter around the fitted line, not the true
    one. Checked by repeated draws in ``tests/unit/test_task_metrics.py``.
    """
    n = len(pairs[0][1].truths)
    if any(len(c.truths) != n or not np.array_equal(c.truths, pairs[0][1].truths) for _, c, _ in pairs):
        raise MutomoError("paired regression designs need the same calibration volumes")
    keep = np.all([np.isfinite(t.outputs[:, 0]) for t, _, _ in pairs], axis=0)
    keep_cal = np.all([np.isfinite(c.outputs[:, 0]) for _, c, _ in pairs], axis=0)
    _, cal = _line_covariances([c.outputs[keep_cal, 0] for _, c, _ in pairs], pairs[0][1].truths[keep_cal])
    test_x, test = _line_covariances([t.outputs[keep, 0] for t, _, _ in pairs], pairs[0][0].truths[keep])
    h = [x.T @ x / max(len(x), 1) for x in test_x]
    signs = [sign for _, _, sign in pairs]
    total = 0.0
    for j, sj in enumerate(signs):
        for k, sk in enumerate(signs):
            total += (
                sj
                * sk
                * (
                    2 * np.trace(h[j] @ cal[j, k] @ h[k] @ cal[k, j])
                    + 4 * np.trace(h[j] @ cal[j, k] @ h[k] @ test[k, j])
                )
            )
    return float(total)


def _with_calibration_error(metric: Metric, pairs: list[tuple[Observations, Observations, float]]) -> Metric:
    """``metric`` (a mean over test volumes) with the calibration lines' variance added (the
    test and calibration volumes are independent draws, so the variances add)."""
    if not np.isfinite(metric.value):
        return metric
    # max(): identical designs cancel to round-off, which may fall just below zero
    return Metric(metric.value, float(np.sqrt(max(metric.error**2 + _calibration_variance(pairs), 0.0))))


class Regression(TaskKind):
    """Regression of the scene's fill height (see the module docstring)."""

    kind = "regression"
    observables = ("raw",)
    inferences = ("fill_statistic",)
    needs_calibration = True
    design_batches = True
    higher_is_better: ClassVar[dict[str, bool]] = {"mse": False}

    def __init__(self, inference: str = "fill_statistic", loss: str = "calibrated_mse") -> None:
        super().__init__(inference)
        if loss not in REGRESSION_LOSSES:
            raise MutomoError(f"regression loss must be one of {list(REGRESSION_LOSSES)}; got {loss!r}")
        self.loss_name = loss

    @property
    def needs_pairs(self) -> bool:
        return self.loss_name == "spread_over_range"

    def output(self, data: ScatterData, sample: VolumeSample) -> Tensor:
        """``(*design, 1)``: the raw statistic (design axes lead for a stacked detector)."""
        return poca_height(data, sample.volume)[..., None]

    def truth(self, sample: VolumeSample) -> float:
        if sample.fill_height is None:
            raise MutomoError("regression needs a scene with a fill height (a target layer or a clutter fill_height)")
        return sample.fill_height

    def loss(self, outputs: Tensor, truths: Tensor) -> Tensor:
        raw = outputs[:, 0]
        if self.loss_name == "spread_over_range":
            return SpreadOverRangeLoss()(raw, truths)
        return calibrated_mse(raw, truths)

    def metrics(self, test: Observations, calibration: Observations | None = None) -> dict[str, Metric]:
        if calibration is None:
            raise MutomoError("regression metrics need calibration volumes")
        mse = mean_metric(_calibrated_errors(test, calibration))
        return {"mse": _with_calibration_error(mse, [(test, calibration, 1.0)])}

    def paired(
        self,
        a: Observations,
        b: Observations,
        calibration_a: Observations | None = None,
        calibration_b: Observations | None = None,
    ) -> dict[str, Metric]:
        if calibration_a is None or calibration_b is None:
            raise MutomoError("regression metrics need calibration volumes")
        diff = mean_metric(_calibrated_errors(a, calibration_a) - _calibrated_errors(b, calibration_b))
        return {"mse": _with_calibration_error(diff, [(a, calibration_a, 1.0), (b, calibration_b, -1.0)])}
