"""Optimisation of a design against a problem: the problem (scene, task, muon source, readouts),
the loss, the training loop with its checkpoints and progress, and the physical evaluation.

It takes built objects (a :class:`Problem`, a :class:`~mutomo.design.base.Design`, settings);
:mod:`mutomo.config` builds them from a configuration file.
"""

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
from mutomo.optimise.problem import SAMPLED, SMOOTH, Problem, Readout

__all__ = [
    "OPTIMISERS",
    "SAMPLED",
    "SMOOTH",
    "BCELoss",
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
    "evaluate",
    "observe_design",
    "optimise",
    "paired",
    "summarise",
]
