"""Regression of a scalar, e.g. how full a furnace is.

The raw statistic (``fill_statistic``: the precision-weighted mean PoCA height,
:func:`mutomo.inference.tasks.poca_height`) is biased, so the answer is a straight line fitted
on calibration volumes of known truth; the metric is the mean squared error of the calibrated
answers on test volumes.

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
from mutomo.inference.tasks import poca_height
from mutomo.reco.maps import ScatterData
from mutomo.scenes.scene import VolumeSample
from mutomo.tasks.base import Observations, TaskKind
from mutomo.tasks.metrics import Metric, mean_metric

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


def _calibrated_errors(test: Observations, calibration: Observations) -> np.ndarray:
    """Per-test-volume squared error (truth units^2) after the calibration line."""
    raw, truth = calibration.outputs[:, 0], calibration.truths
    if raw.std() <= 0:
        return np.full(test.truths.shape, np.nan)
    slope, intercept = np.polyfit(raw, truth, 1)
    return (slope * test.outputs[:, 0] + intercept - test.truths) ** 2


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
        return {"mse": mean_metric(_calibrated_errors(test, calibration))}

    def paired(
        self,
        a: Observations,
        b: Observations,
        calibration_a: Observations | None = None,
        calibration_b: Observations | None = None,
    ) -> dict[str, Metric]:
        if calibration_a is None or calibration_b is None:
            raise MutomoError("regression metrics need calibration volumes")
        diff = _calibrated_errors(a, calibration_a) - _calibrated_errors(b, calibration_b)
        return {"mse": mean_metric(diff)}
