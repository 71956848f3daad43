"""Task kinds: what question is asked of the volume, how a batch is scored in training, and how
test volumes are summarised into metrics with errors."""

from mutomo.tasks.base import Observations, TaskKind
from mutomo.tasks.imaging import Imaging
from mutomo.tasks.metrics import Metric
from mutomo.tasks.presence import Presence
from mutomo.tasks.regression import Regression

#: Task kinds by the name a configuration uses.
TASK_KINDS: dict[str, type[TaskKind]] = {k.kind: k for k in (Regression, Presence, Imaging)}

__all__ = [
    "TASK_KINDS",
    "Imaging",
    "Metric",
    "Observations",
    "Presence",
    "Regression",
    "TaskKind",
]
