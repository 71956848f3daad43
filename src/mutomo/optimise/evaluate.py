"""Evaluating a design on a task's test volumes, with the bias correction fitted for that design.

The task's raw statistic is calibrated by a straight line fitted on calibration volumes
(``calibration_per_target`` of every target value), then the mean squared error is measured on
``n_volumes`` test volumes spread evenly over the targets. Every design evaluated with the same
``seed`` sees the same muons (the task's source is fixed), so designs are compared like for like.
The MSE's uncertainty is the standard error of the mean of the squared errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from mutomo.inference.tasks import fit_linear_calibration
from mutomo.optimise.design import DetectorDesign
from mutomo.optimise.loop import epoch_generator
from mutomo.optimise.task import Task, predict_volume


@dataclass(frozen=True)
class Evaluation:
    """Test metrics of one design.

    Attributes:
        mse, mse_error: mean squared error of the calibrated predictions (target units^2) and its
            standard error.
        slope, intercept: the calibration line.
        targets, predictions: test volumes' true and calibrated values.
        n_muons: muons per volume.
    """

    mse: float
    mse_error: float
    slope: float
    intercept: float
    targets: list[float]
    predictions: list[float]
    n_muons: int


def raw_predictions(design: DetectorDesign, task: Task, targets: list[float], n_muons: int, seed: int, stream: int):
    detector = design.detector()
    with torch.no_grad():
        return [
            float(predict_volume(detector, task, t, n_muons, epoch_generator(seed, -2, stream * 100_000 + i)))
            for i, t in enumerate(targets)
        ]


def evaluate(
    design: DetectorDesign,
    task: Task,
    n_volumes: int = 96,
    n_muons: int = 1000,
    calibration_per_target: int = 4,
    seed: int = 12345,
) -> Evaluation:
    """Calibrate on calibration volumes, then measure the MSE on test volumes (see module docstring)."""
    if n_volumes < 2 or calibration_per_target < 1:
        raise ValueError("evaluate needs n_volumes >= 2 and calibration_per_target >= 1")
    cal_targets = [t for t in task.targets for _ in range(calibration_per_target)]
    test_targets = [task.targets[i % len(task.targets)] for i in range(n_volumes)]
    cal_raw = raw_predictions(design, task, cal_targets, n_muons, seed, stream=1)
    test_raw = raw_predictions(design, task, test_targets, n_muons, seed, stream=2)
    cal = fit_linear_calibration(
        torch.tensor(cal_raw, dtype=torch.float64), torch.tensor(cal_targets, dtype=torch.float64)
    )
    pred = np.array([float(cal(torch.tensor(r, dtype=torch.float64))) for r in test_raw])
    sq = (pred - np.array(test_targets)) ** 2
    return Evaluation(
        mse=float(sq.mean()),
        mse_error=float(sq.std(ddof=1) / math.sqrt(sq.size)),
        slope=float(cal.slope),
        intercept=float(cal.intercept),
        targets=test_targets,
        predictions=pred.tolist(),
        n_muons=n_muons,
    )
