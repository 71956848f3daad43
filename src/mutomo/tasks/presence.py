"""Presence: is a target object in the volume?

The per-volume score is a smooth maximum over voxels of a z-score of the voxel map:

* ``reference = "clean"`` (default): each voxel against its own mean and standard deviation over
  *clean reference volumes* (drawn without any target object and seen by the same detector with
  the same exposure): what an operator does by scanning known-clean cargo. It removes the
  voxel-to-voxel structure every method has (edges, depth, acceptance), which otherwise looks
  like evidence. In evaluation the reference volumes are the calibration volumes; in training,
  the batch's own volumes without the object (leave-one-out for those). A voxel's own
  statistical error adds to the reference spread in the denominator,
  ``z = (s - mean) / sqrt(var_ref + sigma_s^2)``, for methods that report one (PoCA X0, ML/EM:
  ``sigma_s = s sigma(ln X0)`` for ``s = 1 / X0``): a voxel that the references measured well
  but this volume saw with a handful of muons cannot reach more than ``~ 1 / sigma(ln X0)``
  (~1.7 at 5 muons), however far its estimate fell. Voxels under the method's minimum count
  are unmeasured (score 0, no error) and so never count as evidence.
* ``"volume"``: robust z-scores against the median and MAD of the volume's own measured voxels
  (:func:`mutomo.tasks.statistics.presence_score`); ``"layer"``: the same per horizontal layer.
  No reference volumes needed.

Metrics: ROC AUC; detection efficiency at a false-alarm rate (1 % by default) at the task's
exposure; and the exposure needed to reach a detection efficiency (95 % by default) at that
false-alarm rate, from the exposure ladder of the evaluation (see :mod:`mutomo.tasks.metrics`).

Training loss, threshold-free: one minus a smooth AUC over every (with, without) pair of the
batch, ``mean sigmoid((s_without - s_with) / (T sigma_w))`` with ``sigma_w`` the pooled
within-class standard deviation of the scores (so the loss does not change when every score is
scaled) and ``T = 1``. A perfectly separated batch still has a loss that falls as the classes
move apart relative to their spread.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from mutomo.errors import MutomoError
from mutomo.reco.maps import ScatterData, VoxelMap
from mutomo.reco.methods import VOXEL_METHODS, voxel_method
from mutomo.scenes.scene import VolumeSample
from mutomo.tasks.base import Observations, TaskKind
from mutomo.tasks.metrics import (
    Metric,
    bootstrap_metric,
    efficiency_at_false_alarm,
    exposure_to_reach,
    paired_auc_difference,
    roc_auc,
)
from mutomo.tasks.statistics import presence_score

REFERENCES = ("clean", "volume", "layer")
#: Floor of a voxel's reference standard deviation, as a fraction of the median over voxels:
#: a voxel that happens to vary little across a few reference volumes must not dominate.
SIGMA_FLOOR = 0.25


def soft_auc_loss(scores: Tensor, labels: Tensor, temperature: float = 1.0) -> Tensor:
    """``mean over (with, without) pairs of sigmoid((s_without - s_with) / (T sigma_w))``.

    Returns 0.5 (no information) with zero gradient if the batch lacks a class.
    """
    pos, neg = scores[labels > 0.5], scores[labels <= 0.5]
    if pos.numel() == 0 or neg.numel() == 0:
        return 0.5 + 0.0 * scores.sum()
    spread = torch.sqrt(0.5 * (pos.var(unbiased=False) + neg.var(unbiased=False)) + 1e-12)
    return torch.sigmoid((neg[None, :] - pos[:, None]) / (temperature * spread)).mean()


def smooth_max(z: Tensor, temperature: float = 1.0) -> Tensor:
    """``T log mean exp(z / T)`` over the last axis."""
    n = z.shape[-1]
    return temperature * (torch.logsumexp(z / temperature, -1) - math.log(n))


def score_sigma(vmap: VoxelMap) -> Tensor:
    """Standard deviation of a map's score, for scores ``1 / X0`` with an X0 uncertainty:
    ``sigma(1 / X0) = sigma(ln X0) / X0 = uncertainty / X0^2``; 0 where unmeasured or where the
    method reports no uncertainty (ASR, BCA)."""
    if vmap.x0 is None or vmap.uncertainty is None:
        return torch.zeros_like(vmap.score)
    safe_x0 = torch.where(vmap.measured, vmap.x0, torch.ones_like(vmap.x0))
    safe_err = torch.where(vmap.measured, vmap.uncertainty, torch.zeros_like(vmap.uncertainty))
    return torch.where(vmap.measured, vmap.score * safe_err / safe_x0, torch.zeros_like(vmap.score))


def voxel_outputs(vmap: VoxelMap) -> Tensor:
    """``(2 voxel,)``: the map's scores (0 where unmeasured), then their standard deviations
    (:func:`score_sigma`), flattened: the per-volume output of presence with clean references."""
    return torch.cat([vmap.score.reshape(-1), score_sigma(vmap).reshape(-1)])


def split_outputs(outputs: Tensor) -> tuple[Tensor, Tensor]:
    """``(maps, sigma)``, each ``(..., voxel)``, of outputs ``(..., 2 voxel)`` from :func:`voxel_outputs`."""
    half = outputs.shape[-1] // 2
    return outputs[..., :half], outputs[..., half:]


def _z_against(maps: Tensor, mean: Tensor, var: Tensor, sigma: Tensor | None = None) -> Tensor:
    """Per-voxel z-scores of ``maps (..., voxel)`` against a reference mean and variance, with
    the maps' own standard deviations ``sigma`` (same shape, optional) added in quadrature."""
    # The floor is set without gradient and the variance clamped to it before the square root:
    # a voxel no reference measured (variance 0) then has a finite z and a zero gradient, instead
    # of sqrt's infinite slope at 0.
    with torch.no_grad():
        typical = var.clamp(min=0.0).sqrt().median(-1, keepdim=True).values
        # References that measured nothing (all zero) leave only this: a scale from every map, so
        # that z stays finite (a map's size over a millionth of the largest score).
        scale = torch.maximum(mean.abs().amax(), maps.abs().amax())
        tiny = 1e-6 * scale + 1e-12
        floor = torch.maximum(SIGMA_FLOOR * typical, tiny)
    total = torch.maximum(var, floor**2)
    if sigma is not None:
        total = total + sigma**2
    return (maps - mean) / torch.sqrt(total)


def reference_scores(maps: Tensor, reference: Tensor, sigma: Tensor | None = None) -> Tensor:
    """Presence scores ``(volume,)`` of voxel maps ``(volume, voxel)`` against the per-voxel mean
    and standard deviation of clean reference maps ``(reference, voxel)``; ``sigma`` ``(volume,
    voxel)``: the maps' own standard deviations, added to the reference's in quadrature."""
    if reference.shape[0] < 2:
        raise MutomoError("presence with clean references needs at least 2 reference volumes")
    mean = reference.mean(0)
    var = reference.var(0, unbiased=True)
    return smooth_max(_z_against(maps, mean, var, sigma))


def batch_reference_scores(maps: Tensor, labels: Tensor, sigma: Tensor | None = None) -> Tensor:
    """Scores of a training batch, its volumes without the object as the reference; each of
    those is left out of its own reference. Needs at least 3 volumes without the object.
    ``sigma``: as in :func:`reference_scores`."""
    clean = labels <= 0.5
    n = int(clean.sum())
    if n < 3:
        raise MutomoError("a presence batch with clean references needs at least 3 volumes without the object")
    ref = maps[clean]
    s1, s2 = ref.sum(0), (ref**2).sum(0)
    mean_all = s1 / n
    var_all = (s2 - n * mean_all**2) / (n - 1)
    # Leave-one-out moments for a clean volume: remove its own map from the sums.
    mean_loo = (s1 - maps) / (n - 1)
    var_loo = (s2 - maps**2 - (n - 1) * mean_loo**2) / (n - 2)
    mean = torch.where(clean[:, None], mean_loo, mean_all)
    var = torch.where(clean[:, None], var_loo, var_all)
    return smooth_max(_z_against(maps, mean, var, sigma))


class Presence(TaskKind):
    """Presence of a target object (see the module docstring).

    Args:
        inference: a voxel method name (``VOXEL_METHODS``).
        false_alarm: false-alarm rate of the detection-efficiency metrics.
        goal: detection efficiency whose exposure is reported.
        reference: ``"clean"``, ``"volume"`` or ``"layer"`` (module docstring).
    """

    kind = "presence"
    observables = ("score",)
    inferences = tuple(VOXEL_METHODS)
    higher_is_better: ClassVar[dict[str, bool]] = {
        "auc": True,
        "efficiency_at_false_alarm": True,
        "exposure_to_goal_s": False,
        "exposure_ratio": False,
    }

    def __init__(
        self, inference: str = "asr", false_alarm: float = 0.01, goal: float = 0.95, reference: str = "clean"
    ) -> None:
        super().__init__(inference)
        if not 0 < false_alarm < 1 or not 0 < goal < 1:
            raise MutomoError(f"false_alarm and goal must be in (0, 1); got {false_alarm}, {goal}")
        if reference not in REFERENCES:
            raise MutomoError(f"presence reference must be one of {list(REFERENCES)}; got {reference!r}")
        self.method = voxel_method(inference)
        self.false_alarm, self.goal, self.reference = false_alarm, goal, reference
        # Clean references in a balanced batch: at least 3 volumes without the object.
        self.min_batch = 6 if reference == "clean" else 2

    @property
    def needs_calibration(self) -> bool:  # type: ignore[override]
        """Clean reference volumes are the calibration volumes."""
        return self.reference == "clean"

    def output(self, data: ScatterData, sample: VolumeSample) -> Tensor:
        """With clean references, the voxel map's scores (0 where unmeasured) then their
        standard deviations (``(2 voxel,)``, :func:`voxel_outputs`); otherwise the ``(1,)``
        presence score."""
        vmap = self.method(data, sample.volume)
        if self.reference == "clean":
            return voxel_outputs(vmap)
        if int(vmap.measured.sum()) < 3:  # too few measured voxels: no evidence either way
            return vmap.score.sum()[None] * 0.0
        return presence_score(vmap, per_layer=self.reference == "layer")[None]

    def truth(self, sample: VolumeSample) -> float:
        return float(sample.present)

    def loss(self, outputs: Tensor, truths: Tensor) -> Tensor:
        labels = truths.to(outputs)
        if self.reference == "clean":
            maps, sigma = split_outputs(outputs)
            scores = batch_reference_scores(maps, labels, sigma)
        else:
            scores = outputs[:, 0]
        return soft_auc_loss(scores, labels)

    # ------------------------------------------------------------------ evaluation
    def scores(
        self, test: Observations, calibration: Observations | None
    ) -> tuple[np.ndarray, dict[float, np.ndarray]]:
        """Per-volume presence scores at the task's exposure and along the exposure ladder."""
        if self.reference != "clean":
            return test.outputs[:, 0], {t: v[:, 0] for t, v in test.ladder.items()}
        if calibration is None:
            raise MutomoError("presence with clean references needs the calibration (reference) volumes")

        def score(outputs: np.ndarray, reference: np.ndarray) -> np.ndarray:
            maps, sigma = split_outputs(torch.from_numpy(outputs))
            return reference_scores(maps, split_outputs(torch.from_numpy(reference))[0], sigma).numpy()

        base = score(test.outputs, calibration.outputs)
        return base, {t: score(v, calibration.ladder[t]) for t, v in test.ladder.items()}

    def _efficiency(self, scores: np.ndarray, labels: np.ndarray) -> Callable[[np.ndarray], float]:
        return lambda idx: efficiency_at_false_alarm(scores[idx], labels[idx], self.false_alarm)

    def _exposure(self, ladder: dict[float, np.ndarray], labels: np.ndarray) -> Callable[[np.ndarray], float]:
        def statistic(idx: np.ndarray) -> float:
            effs = {t: efficiency_at_false_alarm(s[idx], labels[idx], self.false_alarm) for t, s in ladder.items()}
            return exposure_to_reach(effs, self.goal)

        return statistic

    def metrics(self, test: Observations, calibration: Observations | None = None) -> dict[str, Metric]:
        scores, ladder = self.scores(test, calibration)
        labels = test.truths.astype(bool)
        out = {
            "auc": roc_auc(scores, labels),
            "efficiency_at_false_alarm": bootstrap_metric(self._efficiency(scores, labels), labels),
        }
        if ladder:
            out["exposure_to_goal_s"] = bootstrap_metric(self._exposure(ladder, labels), labels)
        return out

    def paired(
        self,
        a: Observations,
        b: Observations,
        calibration_a: Observations | None = None,
        calibration_b: Observations | None = None,
    ) -> dict[str, Metric]:
        labels = a.truths.astype(bool)
        (sa, la), (sb, lb) = self.scores(a, calibration_a), self.scores(b, calibration_b)
        ea, eb = self._efficiency(sa, labels), self._efficiency(sb, labels)
        out = {
            "auc": paired_auc_difference(sa, sb, labels),
            "efficiency_at_false_alarm": bootstrap_metric(lambda idx: ea(idx) - eb(idx), labels),
        }
        if la and lb:
            ta, tb = self._exposure(la, labels), self._exposure(lb, labels)
            out["exposure_ratio"] = bootstrap_metric(lambda idx: ta(idx) / tb(idx), labels)
        return out
