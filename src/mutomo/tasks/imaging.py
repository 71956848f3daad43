"""Imaging: the X0 map itself.

Per volume, over the voxels the method measured: the mean squared and the mean absolute
error of ln X0 (a factor-of-e error is 1), and the contrast-to-noise ratio of the target
objects, ``(mean score of object voxels - mean score of the others) / std of the others`` on
the method's score (1/X0). The training loss is the batch mean of the squared log error.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from mutomo.reco.maps import ScatterData
from mutomo.reco.methods import X0_METHODS, voxel_method
from mutomo.scenes.scene import VolumeSample
from mutomo.tasks.base import Observations, TaskKind
from mutomo.tasks.metrics import Metric, mean_metric


class Imaging(TaskKind):
    """X0 imaging (see the module docstring)."""

    kind = "imaging"
    observables = ("squared_log_error", "abs_log_error", "cnr")
    inferences = X0_METHODS
    higher_is_better: ClassVar[dict[str, bool]] = {"abs_log_error": False, "cnr": True}

    def __init__(self, inference: str = "extended_poca") -> None:
        super().__init__(inference)
        self.method = voxel_method(inference)

    def output(self, data: ScatterData, sample: VolumeSample) -> Tensor:
        vmap = self.method(data, sample.volume)
        assert vmap.x0 is not None
        measured = vmap.measured
        nan = torch.full((), float("nan"), dtype=vmap.score.dtype, device=vmap.score.device)
        if int(measured.sum()) == 0:
            return torch.stack([nan, nan, nan])
        x0 = torch.where(measured, vmap.x0, torch.ones_like(vmap.x0))
        error = (torch.log(x0) - torch.log(sample.volume.x0))[measured]
        target = sample.target_mask() & measured
        other = ~sample.target_mask() & measured
        if int(target.sum()) and int(other.sum()) > 1:
            s = vmap.score
            cnr = (s[target].mean() - s[other].mean()) / (s[other].std() + 1e-12)
        else:
            cnr = nan
        return torch.stack([(error**2).mean(), error.abs().mean(), cnr.detach()])

    def truth(self, sample: VolumeSample) -> float:
        return float(sample.present)

    def loss(self, outputs: Tensor, truths: Tensor) -> Tensor:
        values = outputs[:, 0]
        finite = torch.isfinite(values)
        return torch.where(finite, values, torch.zeros_like(values)).sum() / finite.sum().clamp(min=1)

    def metrics(self, test: Observations, calibration: Observations | None = None) -> dict[str, Metric]:
        return {"abs_log_error": mean_metric(test.outputs[:, 1]), "cnr": mean_metric(test.outputs[:, 2])}

    def paired(
        self,
        a: Observations,
        b: Observations,
        calibration_a: Observations | None = None,
        calibration_b: Observations | None = None,
    ) -> dict[str, Metric]:
        return {
            "abs_log_error": mean_metric(a.outputs[:, 1] - b.outputs[:, 1]),
            "cnr": mean_metric(a.outputs[:, 2] - b.outputs[:, 2]),
        }
