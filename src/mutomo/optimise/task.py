"""What an optimisation task provides, and the one function that turns a design into a prediction."""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from mutomo.detector import Detector
from mutomo.muons.generation import MuonSource
from mutomo.optimise.design import DesignBounds, DetectorDesign
from mutomo.optimise.loss import TaskLoss
from mutomo.reco.maps import ScatterData, measure
from mutomo.simulate import simulate
from mutomo.volume.grid import PassiveVolume


class Task(Protocol):
    """An optimisation task: volumes with a known answer, the muons, and how to infer the answer.

    Attributes:
        name: short identifier.
        targets: the possible true answers (e.g. fill heights), for sampling volumes.
        bounds: where the panels may go.
        source: the muon source, the same for every design so that designs see the same muons.
        loss: the default task loss.
        step_length: propagation step (m) through the volume.
    """

    name: str
    targets: tuple[float, ...]
    bounds: DesignBounds
    step_length: float

    @property
    def source(self) -> MuonSource: ...

    @property
    def loss(self) -> TaskLoss: ...

    def volume(self, target: float) -> PassiveVolume: ...

    def predict(self, data: ScatterData, volume: PassiveVolume) -> Tensor: ...

    def designs(self) -> dict[str, DetectorDesign]: ...


def predict_volume(detector: Detector, task: Task, target: float, n_muons: int, generator: torch.Generator) -> Tensor:
    """Simulate ``n_muons`` from the task's source through ``detector`` and the task's volume for
    ``target``, reconstruct with the true momenta (mean of entry and exit), and return the task's
    prediction (a scalar tensor, differentiable in the detector's parameters)."""
    volume = task.volume(target)
    result = simulate(detector, volume, task.source, n_muons, generator, step_length=task.step_length)
    momentum = 0.5 * (result.muons_in.momentum + result.muons_out.momentum)
    alive = result.muons_in.weight * (result.muons_out.weight > 0)
    data = measure(result.hits_above, result.hits_below, volume, momentum, alive)
    return task.predict(data, volume)
