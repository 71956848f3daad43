"""Optimisation of detector designs: the design, losses, the loop and evaluation."""

from mutomo.optimise.design import PARAMETER_GROUPS, DesignBounds, DetectorDesign
from mutomo.optimise.evaluate import Evaluation, evaluate
from mutomo.optimise.loop import (
    OPTIMISERS,
    EpochRecord,
    History,
    NoImprovement,
    StoppingRule,
    TrainingSettings,
    optimise,
)
from mutomo.optimise.loss import BCELoss, LossBreakdown, MSELoss, SpreadOverRangeLoss, TaskLoss, budget_penalty

__all__ = [
    "OPTIMISERS",
    "PARAMETER_GROUPS",
    "BCELoss",
    "DesignBounds",
    "DetectorDesign",
    "EpochRecord",
    "Evaluation",
    "History",
    "LossBreakdown",
    "MSELoss",
    "NoImprovement",
    "SpreadOverRangeLoss",
    "StoppingRule",
    "TaskLoss",
    "TrainingSettings",
    "budget_penalty",
    "evaluate",
    "optimise",
]
