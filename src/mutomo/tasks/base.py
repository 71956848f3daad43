"""What every task kind provides (the voxel methods a task can use by name are
:data:`mutomo.reco.methods.VOXEL_METHODS`).

A task kind turns the reconstruction of one volume into a few numbers (its *observables*,
the first of which the training loss uses), scores a batch of them against the truth with a
differentiable loss, and summarises test volumes into metrics with errors, alone and paired
between two designs seen on the same volumes and muons.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from mutomo.errors import MutomoError
from mutomo.reco.maps import ScatterData
from mutomo.scenes.scene import VolumeSample
from mutomo.tasks.metrics import Metric


@dataclass
class Observations:
    """Per-volume observables of one design on a set of volumes.

    Attributes:
        outputs: ``(volume, observable)`` values.
        truths: ``(volume,)`` true answers (fill height in m, presence 0/1, ...).
        ladder: for presence, outputs at other exposures, by exposure (s).
    """

    outputs: np.ndarray
    truths: np.ndarray
    ladder: dict[float, np.ndarray] = field(default_factory=dict)


class TaskKind(ABC):
    """A kind of question about the volume (see the module docstring).

    Class attributes:
        kind: its name in a configuration.
        observables: names of the per-volume outputs; the loss uses the first.
        inferences: inference names it accepts.
        needs_calibration: whether metrics need calibration volumes.
        higher_is_better: per metric, whether a larger value is better.
    """

    kind: ClassVar[str]
    observables: ClassVar[tuple[str, ...]]
    inferences: ClassVar[tuple[str, ...]]
    needs_calibration: ClassVar[bool] = False
    higher_is_better: ClassVar[dict[str, bool]]
    #: Fewest volumes a training batch may have for the loss to be defined.
    min_batch: int = 2
    #: Whether :meth:`output` takes a detector with design axes (several designs in one pass)
    #: and returns ``(*design, observable)``; otherwise designs are observed one at a time.
    design_batches: ClassVar[bool] = False
    #: Trainable parts of the inference (a learned statistic), trained beside the detector by
    #: :func:`mutomo.optimise.loop.optimise` (co-training); ``None`` for most tasks.
    module: torch.nn.Module | None = None

    def __init__(self, inference: str) -> None:
        if inference not in self.inferences:
            raise MutomoError(
                f"task {self.kind!r}: inference must be one of {list(self.inferences)}; got {inference!r}"
            )
        self.inference = inference

    @property
    def clean_calibration(self) -> bool:
        """Whether the calibration volumes are drawn without the target (clean references);
        otherwise they are drawn balanced, like the test volumes."""
        return False

    @property
    def needs_pairs(self) -> bool:
        """Whether the training loss needs every volume drawn twice (with different muons)."""
        return False

    @abstractmethod
    def output(self, data: ScatterData, sample: VolumeSample) -> Tensor:
        """``(observable,)`` outputs for one volume, differentiable in the detector."""

    @abstractmethod
    def truth(self, sample: VolumeSample) -> float:
        """The true answer for a volume."""

    @abstractmethod
    def loss(self, outputs: Tensor, truths: Tensor) -> Tensor:
        """Scalar training loss of a batch: ``outputs (volume, observable)``, ``truths (volume,)``."""

    @abstractmethod
    def metrics(self, test: Observations, calibration: Observations | None = None) -> dict[str, Metric]:
        """Metrics of one design on the test volumes, with errors."""

    @abstractmethod
    def paired(
        self,
        a: Observations,
        b: Observations,
        calibration_a: Observations | None = None,
        calibration_b: Observations | None = None,
    ) -> dict[str, Metric]:
        """Differences ``a - b`` of the metrics, on the same test volumes, with paired errors."""
