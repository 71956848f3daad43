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

With clean references, ``statistic`` chooses how the voxel maps become one number per volume
(:mod:`mutomo.tasks.presence_statistics`): ``"clean"`` (the z-score above), ``"material"``
(standard deviations above the densest material the references' background holds, robust to
clutter) or ``"learned"`` (a per-voxel classifier fitted on simulated volumes, evaluation only).
``"likelihood"`` needs no references: with ML/EM, each voxel's map is its evidence for the
target's material, the log-likelihood ratio of the target's material against the likeliest
innocent material of the scene (:mod:`mutomo.reco.mlem.evidence`), and the volume's score its
smooth maximum (:func:`~mutomo.tasks.presence_statistics.likelihood_scores`).

Metrics: ROC AUC; detection efficiency at a false-alarm rate (1 % by default) at the task's
exposure; and the exposure needed to reach a detection efficiency (95 % by default) at that
false-alarm rate, from the exposure ladder of the evaluation (see :mod:`mutomo.tasks.metrics`).
Beside them, localisation: the fraction of target volumes whose highest-scoring measured voxel
of the map is the target's. When localisation is high and
the AUC low, the map finds the target and the statistic loses it.

Training loss, threshold-free: one minus a smooth AUC over every (with, without) pair of the
batch, ``mean sigmoid((s_without - s_with) / (T sigma_w))`` with ``sigma_w`` the pooled
within-class standard deviation of the scores (so the loss does not change when every score is
scaled) and ``T = 1``. A perfectly separated batch still has a loss that falls as the classes
move apart relative to their spread.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from mutomo.errors import MutomoError
from mutomo.reco.maps import ScatterData, VoxelMap
from mutomo.reco.methods import VOXEL_METHODS, voxel_method
from mutomo.reco.mlem import Hypothesis, MaximumLikelihoodEM
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
from mutomo.tasks.presence_statistics import (
    PresenceMaps,
    VoxelClassifier,
    batch_learned_loss,
    batch_material_scores,
    batch_reference_scores,
    fitted_classifier,
    learned_scores,
    likelihood_scores,
    localisation,
    material_reference,
    material_scores,
    reference_scores,
    score_sigma,
)
from mutomo.tasks.statistics import presence_score
from mutomo.volume.grid import PassiveVolume

#: The statistics a presence task can be configured with (``task.statistic``;
#: :mod:`mutomo.tasks.presence_statistics`).
TASK_STATISTICS = ("clean", "material", "learned", "likelihood")

REFERENCES = ("clean", "volume", "layer")


def soft_auc_loss(scores: Tensor, labels: Tensor, temperature: float = 1.0) -> Tensor:
    """``mean over (with, without) pairs of sigmoid((s_without - s_with) / (T sigma_w))``.

    Returns 0.5 (no information) with zero gradient if the batch lacks a class.
    """
    pos, neg = scores[labels > 0.5], scores[labels <= 0.5]
    if pos.numel() == 0 or neg.numel() == 0:
        return 0.5 + 0.0 * scores.sum()
    spread = torch.sqrt(0.5 * (pos.var(unbiased=False) + neg.var(unbiased=False)) + 1e-12)
    return torch.sigmoid((neg[None, :] - pos[:, None]) / (temperature * spread)).mean()


#: Blocks of a presence task's per-volume output with clean references, each ``(voxel,)``.
BLOCKS = ("score", "sigma", "measured", "inverse_x0", "target")


@dataclass(frozen=True)
class PresenceBlocks:
    """A presence output split into its :data:`BLOCKS`, each ``(..., voxel)``.

    Attributes:
        maps: the map's scores, their errors and which voxels were measured.
        inverse_x0: the volume's true 1/X0 (1/m) per voxel: read only from clean reference
            volumes (the materials an operator knows its reference cargo holds), never from the
            volume being scored.
        target: 1 where a target object is (truth, for localisation after scoring).
    """

    maps: PresenceMaps
    inverse_x0: Tensor
    target: Tensor


def presence_outputs(vmap: VoxelMap, sample: VolumeSample) -> Tensor:
    """``(5 voxel,)``: the map's scores (0 where unmeasured), their standard deviations
    (:func:`score_sigma`), 1 where measured, then the volume's true 1/X0 and 1 on its target
    voxels (:data:`BLOCKS`)."""
    score = vmap.score.reshape(-1)
    truth = [(1.0 / sample.volume.x0).reshape(-1), sample.target_mask().reshape(-1)]
    parts = [score, score_sigma(vmap).reshape(-1), vmap.measured.reshape(-1), *truth]
    return torch.cat([p.to(score) for p in parts])


def split_presence(outputs: Tensor) -> PresenceBlocks:
    """:class:`PresenceBlocks` of outputs ``(..., 5 voxel)`` from :func:`presence_outputs`."""
    if outputs.shape[-1] % len(BLOCKS):
        raise MutomoError(
            f"presence outputs of {outputs.shape[-1]} values are not {len(BLOCKS)} voxel maps: observations "
            "written by an older mutomo (before issue 25); rerun the evaluation with --fresh"
        )
    score, sigma, measured, inverse_x0, target = outputs.chunk(len(BLOCKS), -1)
    return PresenceBlocks(PresenceMaps(score, sigma, measured > 0.5), inverse_x0, target > 0.5)


class Presence(TaskKind):
    """Presence of a target object (see the module docstring).

    Args:
        inference: a voxel method name (``VOXEL_METHODS``).
        false_alarm: false-alarm rate of the detection-efficiency metrics.
        goal: detection efficiency whose exposure is reported.
        reference: ``"clean"``, ``"volume"`` or ``"layer"`` (module docstring).
        statistic: with clean references, ``"clean"``, ``"material"`` or ``"learned"``
            (:data:`TASK_STATISTICS`). ``"learned"``: a :class:`VoxelClassifier` trained beside
            the detector during optimisation (co-training, :attr:`module`), and for an
            evaluation fitted afresh on the design's own calibration volumes (drawn balanced: the
            clean ones are the references, the target ones the training voxels), never on the
            test volumes. ``"likelihood"``: each voxel's material evidence (ML/EM only), no
            references.
        grid: the voxel grid's shape ``(nx, ny, nz)`` (the learned statistic's neighbourhoods).
        hypotheses: ``(targets, innocents)``, the target's and the innocent materials
            (:meth:`mutomo.scenes.Scene.material_hypotheses`), or their inverse radiation lengths
            (m^-1), for the likelihood statistic.
        outlier_fraction: with inference ``"mlem"``, the weight of the outlier component of each
            muon's likelihood (:func:`mutomo.reco.mlem.with_outliers`); 0: none.
        range_cut: with the likelihood statistic, redo the momentum prior's range cut under each
            material a voxel's evidence tries (ML/EM's ``range_cut``); needs materials as
            hypotheses to change anything.
    """

    kind = "presence"
    observables = ("score",)
    inferences = tuple(VOXEL_METHODS)
    higher_is_better: ClassVar[dict[str, bool]] = {
        "auc": True,
        "efficiency_at_false_alarm": True,
        "exposure_to_goal_s": False,
        "exposure_ratio": False,
        "localisation": True,
    }

    def __init__(
        self,
        inference: str = "asr",
        false_alarm: float = 0.01,
        goal: float = 0.95,
        reference: str = "clean",
        statistic: str = "clean",
        grid: tuple[int, int, int] | None = None,
        hypotheses: tuple[Sequence[Hypothesis], Sequence[Hypothesis]] | None = None,
        outlier_fraction: float = 0.0,
        range_cut: bool = False,
    ) -> None:
        super().__init__(inference)
        if not 0 < false_alarm < 1 or not 0 < goal < 1:
            raise MutomoError(f"false_alarm and goal must be in (0, 1); got {false_alarm}, {goal}")
        if reference not in REFERENCES:
            raise MutomoError(f"presence reference must be one of {list(REFERENCES)}; got {reference!r}")
        if statistic not in TASK_STATISTICS:
            raise MutomoError(f"presence statistic must be one of {list(TASK_STATISTICS)}; got {statistic!r}")
        if statistic != "clean" and reference != "clean":
            raise MutomoError(
                f"presence statistic {statistic!r} compares each voxel with clean reference volumes: "
                f"it needs reference = 'clean', not {reference!r}"
            )
        if statistic == "learned" and grid is None:
            raise MutomoError("the learned presence statistic needs the voxel grid's shape (grid)")
        if statistic == "likelihood":
            if inference != "mlem":
                raise MutomoError(
                    f"the likelihood presence statistic weighs each voxel's muons under ML/EM's model: it needs "
                    f"inference 'mlem', not {inference!r}"
                )
            if hypotheses is None or not hypotheses[0] or not hypotheses[1]:
                raise MutomoError("the likelihood presence statistic needs target and innocent materials (hypotheses)")
        self.hypotheses = hypotheses
        self.statistic = statistic
        self.grid = grid
        self.classifier = VoxelClassifier() if statistic == "learned" else None
        self.module = self.classifier
        if outlier_fraction and inference != "mlem":
            raise MutomoError(
                f"outlier_fraction is a component of ML/EM's likelihood: it needs inference 'mlem', not {inference!r}"
            )
        if range_cut and statistic != "likelihood":
            raise MutomoError(
                "range_cut changes the likelihood statistic's evidence: it needs statistic 'likelihood', "
                f"not {statistic!r}"
            )
        # ML/EM with an outlier component or the range cut (its registry entry is ML/EM with the defaults).
        self.method = (
            MaximumLikelihoodEM(outlier_fraction=outlier_fraction, range_cut=range_cut)
            if outlier_fraction or range_cut
            else voxel_method(inference)
        )
        self.false_alarm, self.goal, self.reference = false_alarm, goal, reference
        # Clean references in a balanced batch: at least 3 volumes without the object (4 for the
        # material statistic, each left out of its own references).
        self.min_batch = (6 if statistic == "clean" else 8) if self.needs_calibration else 2

    @property
    def needs_calibration(self) -> bool:  # type: ignore[override]
        """Clean reference volumes are the calibration volumes (none for the likelihood statistic)."""
        return self.reference == "clean" and self.statistic != "likelihood"

    @property
    def clean_calibration(self) -> bool:
        """The calibration volumes are the clean references, except for the learned statistic,
        whose calibration is drawn balanced (its target volumes train the classifier)."""
        return self.reference == "clean" and self.statistic != "learned"

    def voxel_map(self, data: ScatterData, volume: PassiveVolume) -> VoxelMap:
        """The map the statistic reads: the voxel method's, or with the likelihood statistic each
        voxel's material evidence (ML/EM's :meth:`~mutomo.reco.MaximumLikelihoodEM.evidence_map`)."""
        if self.statistic == "likelihood":
            assert isinstance(self.method, MaximumLikelihoodEM) and self.hypotheses is not None
            return self.method.evidence_map(data, volume, *self.hypotheses)
        return self.method(data, volume)

    def output(self, data: ScatterData, sample: VolumeSample) -> Tensor:
        """With clean references, the voxel maps of :func:`presence_outputs` (``(5 voxel,)``);
        otherwise the presence score, then those maps (``(1 + 5 voxel,)``)."""
        vmap = self.voxel_map(data, sample.volume)
        blocks = presence_outputs(vmap, sample)
        if self.reference == "clean":
            return blocks
        if int(vmap.measured.sum()) < 3:  # too few measured voxels: no evidence either way
            return torch.cat([vmap.score.sum()[None] * 0.0, blocks])
        return torch.cat([presence_score(vmap, per_layer=self.reference == "layer")[None], blocks])

    def _blocks(self, outputs: Tensor) -> PresenceBlocks:
        return split_presence(outputs if self.reference == "clean" else outputs[..., 1:])

    def truth(self, sample: VolumeSample) -> float:
        return float(sample.present)

    def loss(self, outputs: Tensor, truths: Tensor) -> Tensor:
        labels = truths.to(outputs)
        if self.reference == "clean":
            blocks = self._blocks(outputs)
            if self.statistic == "learned":
                assert self.classifier is not None and self.grid is not None
                scores, voxel = batch_learned_loss(
                    blocks.maps, blocks.inverse_x0, labels, blocks.target, self.classifier, self.grid
                )
                return soft_auc_loss(scores, labels) + voxel.to(scores)
            if self.statistic == "material":
                scores = batch_material_scores(blocks.maps, blocks.inverse_x0, labels)
            elif self.statistic == "likelihood":
                scores = likelihood_scores(blocks.maps)
            else:
                scores = batch_reference_scores(blocks.maps.score, labels, blocks.maps.sigma)
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
        if self.statistic == "likelihood":

            def evidence(outputs: np.ndarray) -> np.ndarray:
                return likelihood_scores(split_presence(torch.from_numpy(outputs)).maps).numpy()

            return evidence(test.outputs), {t: evidence(v) for t, v in test.ladder.items()}
        if calibration is None:
            raise MutomoError("presence with clean references needs the calibration (reference) volumes")

        present = calibration.truths > 0.5

        def score(outputs: np.ndarray, reference: np.ndarray) -> np.ndarray:
            test, refs = split_presence(torch.from_numpy(outputs)), split_presence(torch.from_numpy(reference))
            if self.statistic == "learned":
                return self._learned(test, refs, present).numpy()
            if self.statistic == "material":
                return material_scores(test.maps, refs.maps, refs.inverse_x0).numpy()
            return reference_scores(test.maps.score, refs.maps.score, test.maps.sigma).numpy()

        base = score(test.outputs, calibration.outputs)
        return base, {t: score(v, calibration.ladder[t]) for t, v in test.ladder.items()}

    def _learned(self, test: PresenceBlocks, calibration: PresenceBlocks, present: np.ndarray) -> Tensor:
        """Learned scores of ``test``: the classifier fitted on the calibration volumes holding
        the target (their voxel labels), its features against the clean ones."""
        assert self.grid is not None
        clean, held = torch.from_numpy(~present), torch.from_numpy(present)
        if int(clean.sum()) < 3 or int(held.sum()) < 1:
            raise MutomoError(
                "the learned presence statistic needs calibration volumes with and without the target: at least 3 "
                f"clean and 1 with it; got {int(clean.sum())} and {int(held.sum())} "
                "(raise evaluation.calibration_volumes)"
            )
        maps = calibration.maps
        reference = material_reference(maps.rows(clean), calibration.inverse_x0[clean])
        model = fitted_classifier(maps.rows(held), calibration.target[held], reference, self.grid)
        with torch.no_grad():
            return learned_scores(test.maps, reference, model, self.grid)

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
        out["localisation"] = self.localisation(test)
        return out

    def localisation(self, test: Observations) -> Metric:
        """Fraction of the target volumes whose highest-scoring measured voxel of the map is a
        target voxel (the map's own order, before any statistic), binomial error."""
        blocks = self._blocks(torch.from_numpy(test.outputs))
        maps = blocks.maps
        rank = torch.where(maps.measured, maps.score, torch.full_like(maps.score, -math.inf))
        value, error = localisation(rank, blocks.target, torch.from_numpy(test.truths > 0.5))
        return Metric(value, error)

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
