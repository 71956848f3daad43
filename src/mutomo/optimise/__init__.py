"""Optimisation of detector designs: the problem, the design, losses, the loop and evaluation."""

from mutomo.optimise.design import PARAMETER_GROUPS, Design, DesignBounds, DetectorDesign, design_from_description
from mutomo.optimise.evaluate import EvaluationSettings, evaluate, observe_design, paired, summarise
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
from mutomo.optimise.problem import Problem, Readout, build_problem

__all__ = [
    "OPTIMISERS",
    "PARAMETER_GROUPS",
    "BCELoss",
    "DesignBounds",
    "Design",
    "DetectorDesign",
    "design_from_description",
    "EpochRecord",
    "EvaluationSettings",
    "History",
    "LossBreakdown",
    "MSELoss",
    "NoImprovement",
    "Problem",
    "Readout",
    "SpreadOverRangeLoss",
    "StoppingRule",
    "TaskLoss",
    "TrainingSettings",
    "budget_penalty",
    "build_problem",
    "evaluate",
    "observe_design",
    "optimise",
    "paired",
    "summarise",
]
