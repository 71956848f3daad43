"""Losses: task error plus cost, as named parts.

Task losses (all take ``(predictions (n,), targets (n,))`` and return a scalar):

* :class:`MSELoss`: mean squared error of a regressed quantity.
* :class:`BCELoss`: binary cross-entropy of presence logits against 0/1 targets.
* :class:`SpreadOverRangeLoss` (TomOpt's ladle-furnace loss, Strong et al. 2024): the mean,
  over target values, of the standard deviation of the predictions made for that value,
  divided by the standard deviation of their means. It is invariant under any increasing
  linear map of the predictions, so it scores a raw statistic before its bias correction: a
  detector is good when the statistic separates targets well relative to its own noise.

Cost terms: in soft-budget mode :func:`budget_penalty` adds
``weight * softplus((cost - budget) / width)``, ~0 under budget and rising linearly past it;
in fixed-budget mode the cost is constant and contributes nothing. :class:`LossBreakdown`
keeps the parts by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch.nn.functional as F
from torch import Tensor

from mutomo.errors import MutomoError
from mutomo.tasks.regression import SpreadOverRangeLoss

__all__ = ["BCELoss", "LossBreakdown", "MSELoss", "SpreadOverRangeLoss", "TaskLoss", "budget_penalty"]


@dataclass(frozen=True)
class LossBreakdown:
    """The named parts of a loss (scalar tensors); ``total`` is their sum."""

    task: Tensor
    budget: Tensor
    cost: Tensor

    @property
    def total(self) -> Tensor:
        return self.task + self.budget

    def as_floats(self) -> dict[str, float]:
        return {
            "total": float(self.total.detach()),
            "task": float(self.task.detach()),
            "budget": float(self.budget.detach()),
            "cost": float(self.cost.detach()),
        }


class TaskLoss(Protocol):
    """Scalar loss of task predictions against their true values."""

    def __call__(self, predictions: Tensor, targets: Tensor) -> Tensor: ...


class MSELoss:
    """Mean squared error."""

    def __call__(self, predictions: Tensor, targets: Tensor) -> Tensor:
        return F.mse_loss(predictions, targets.to(predictions))


class BCELoss:
    """Binary cross-entropy; predictions are logits, targets 0 or 1."""

    def __call__(self, predictions: Tensor, targets: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(predictions, targets.to(predictions))


def budget_penalty(cost: Tensor, budget: float, width: float, weight: float = 1.0) -> Tensor:
    """``weight * softplus((cost - budget) / width)`` (dimensionless): ~0 well below the budget,
    then rising by ``weight`` for every ``width`` of overspend."""
    if not budget > 0 or not width > 0:
        raise MutomoError(f"budget and width must be > 0; got budget={budget}, width={width}")
    return weight * F.softplus((cost - budget) / width)
