"""Presence statistics: from a volume's voxel map to one number, "how likely is a target here?".

Every statistic reads the same per-volume maps (:class:`PresenceMaps`: each voxel's score, its
own standard deviation and whether it was measured) and, where it needs them, the maps of clean
reference volumes (drawn without the target, seen by the same detector at the same exposure) and
the materials those volumes truly hold. All are differentiable in the maps (the learned one in
its features too), so each can be a training loss.

* ``clean`` (the original): each voxel's z-score against its own mean and standard deviation
  over the clean references, the voxel's own error in quadrature, then a smooth maximum
  (:func:`reference_scores`). Right for a fixed background (the waste
  block's concrete). In clutter every voxel of the references is sometimes dense, so the spreads
  are wide where the references drew a dense voxel and floored where they did not, and a clean
  volume's steel voxel in one of the latter outscores the target.
* ``material``: each voxel's evidence of a material denser than anything the background holds.
  The reference volumes fix, per voxel, the typical level ``m_v`` (the median over references:
  the majority material, whatever the clutter's minority draws) and the noise ``tau_v`` of
  ``ln(s / m_v)`` there (1.4826 x the median absolute deviation over references, moderated toward
  the pooled value: :data:`NOISE_PRIOR_WEIGHT`); the known
  materials of the reference voxels fix, pooled over every voxel, where the densest background
  material sits: ``g = median of s / m_v`` over the reference voxels made of it (the material of
  smallest X0 that fills at least :data:`DENSEST_MIN_FRACTION` of the reference voxels). A voxel
  scores ``u_v = (ln(s_v / m_v) - ln g) / sqrt(tau_v^2 + sigma_v^2)`` with ``sigma_v`` its own
  error of ``ln s`` (X0 methods): standard deviations above the densest known background
  material, then a sharp smooth maximum (:data:`MATERIAL_TEMPERATURE`). Scores that can be zero
  or negative (BCA's ``-median ln m``) use differences instead of logarithms: ``(s_v - m_v - d) / tau_v`` with ``d`` the
  pooled median excess of the densest material. With a uniform background the densest material
  is the background and ``u`` is a robust z-score.
* ``learned``: a per-voxel logistic classifier (:class:`VoxelClassifier`) on the material score
  and its neighbourhood (the voxel's ``u``, the largest and the mean ``u`` of its 6 neighbours,
  its noise ``ln tau_v`` and own error), trained on simulated volumes of the scene with the
  target's voxels as labels and evaluated on other volumes; the volume score is the smooth
  maximum of the voxel logits.
* ``likelihood``: no references. The maps are ML/EM's per-voxel material evidence, the
  log-likelihood ratio (nats) of the target's material against the likeliest innocent one with
  the other voxels at the fit (:mod:`mutomo.reco.mlem.evidence`); the volume score is their
  smooth maximum (:func:`likelihood_scores`), the generalised likelihood ratio over the voxel
  the target may be in.

Sources: median/MAD robust location and scale with the Gaussian-consistent factor 1.4826
(Rousseeuw & Croux, JASA 88 (1993) 1273); the per-voxel log-ratio to a clean reference is how
the muon-transmission and scattering-density images of cargo are compared against known-clean
scans (Schultz et al., IEEE TNS 54 (2007) 1018, "statistical reconstruction ... for cargo").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from mutomo.errors import MutomoError
from mutomo.reco.maps import VoxelMap
from mutomo.tasks.statistics import MAD_TO_SIGMA

#: Registered presence statistics (``task.statistic``).
STATISTICS = ("clean", "material", "learned", "likelihood")
#: The densest background material must fill at least this fraction of the reference voxels to
#: set the level a target has to exceed (fewer voxels give no stable median).
DENSEST_MIN_FRACTION = 0.01
#: Score of a voxel without a measurement (or that no reference measured): far below any
#: evidence, with no gradient, so that a smooth maximum ignores it.
UNMEASURED = -30.0
#: Noise floor as a fraction of the median noise over voxels (as :data:`SIGMA_FLOOR`).
NOISE_FLOOR = 0.25
#: Weight of the pooled (median over voxels) noise in each voxel's moderated noise, as many
#: references' worth as the voxel's own: ``tau_v^2 <- (tau_v^2 + w tau_pooled^2) / (1 + w)``.
#: Chosen on training volumes (keys ``(12345, 5, i)``), AUC of ASR (flux mean) at w = 0, 0.5, 1,
#: 2: waste block 0.787, 0.903, 0.914, 0.898; clutter crate 0.930, 0.931, 0.925, 0.907; ML/EM
#: marginal within 0.003 of each other on both (``benchmarks/presence_clutter.py``). Without it, a
#: voxel whose 24 references happened to agree reads a clean volume's fluctuation as a target.
NOISE_PRIOR_WEIGHT = 1.0
#: Temperature of the material statistic's smooth maximum, in units of the voxel noise. At 1 the
#: hundreds of background voxels (each ~3 noise units below the densest material) outweigh the few
#: that matter and the statistic drifts toward a mean (ASR on the clutter crate: AUC 0.81 against
#: 0.93 for the hard maximum). Chosen on the crate's 240 *training* volumes (keys ``(12345, 5,
#: i)``, never the test volumes): AUC at T = 0.1, 0.2, 0.3, 0.5, 1 was 0.930, 0.930, 0.927, 0.912,
#: 0.811 (ASR) and 0.970, 0.970, 0.968, 0.963, 0.915 (ML/EM marginal); 0.2 keeps the gradient
#: spread over the top few voxels (``benchmarks/presence_clutter.py``).
MATERIAL_TEMPERATURE = 0.2


#: Temperature (nats) of the likelihood statistic's smooth maximum: a tenth of a nat keeps it
#: within ``0.1 ln(n)`` of the hard maximum over the ``n`` voxels near the top (the generalised
#: likelihood ratio's maximum), and its gradient on those few. Set a priori, not fitted.
EVIDENCE_TEMPERATURE = 0.1


def likelihood_scores(maps: PresenceMaps) -> Tensor:
    """``(...,)`` the smooth maximum over the measured voxels of an evidence map (nats; maps
    from :meth:`~mutomo.reco.MaximumLikelihoodEM.evidence_map`), :data:`EVIDENCE_TEMPERATURE`."""
    z = torch.where(maps.measured, maps.score, torch.full_like(maps.score, UNMEASURED))
    return smooth_max(z, EVIDENCE_TEMPERATURE)


#: Floor of a voxel's reference standard deviation, as a fraction of the median over voxels:
#: a voxel that happens to vary little across a few reference volumes must not dominate.
SIGMA_FLOOR = 0.25


def score_sigma(vmap: VoxelMap) -> Tensor:
    """Standard deviation of a map's score, for scores ``1 / X0`` with an X0 uncertainty:
    ``sigma(1 / X0) = sigma(ln X0) / X0 = uncertainty / X0^2``; 0 where unmeasured or where the
    method reports no uncertainty (ASR, BCA)."""
    if vmap.x0 is None or vmap.uncertainty is None:
        return torch.zeros_like(vmap.score)
    safe_x0 = torch.where(vmap.measured, vmap.x0, torch.ones_like(vmap.x0))
    safe_err = torch.where(vmap.measured, vmap.uncertainty, torch.zeros_like(vmap.uncertainty))
    return torch.where(vmap.measured, vmap.score * safe_err / safe_x0, torch.zeros_like(vmap.score))


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


@dataclass(frozen=True)
class PresenceMaps:
    """Flattened voxel maps of a set of volumes.

    Attributes:
        score: ``(..., voxel)`` the method's scores (0 where unmeasured).
        sigma: ``(..., voxel)`` their own standard deviations (0 where the method reports none).
        measured: ``(..., voxel)`` bool.
    """

    score: Tensor
    sigma: Tensor
    measured: Tensor

    @classmethod
    def of(cls, vmap: VoxelMap) -> PresenceMaps:
        """One volume's map, flattened (``sigma``: :func:`score_sigma`)."""
        return cls(vmap.score.reshape(-1), score_sigma(vmap).reshape(-1), vmap.measured.reshape(-1))

    def rows(self, index: Tensor) -> PresenceMaps:
        """The maps of the volumes ``index`` (integer indices or a boolean mask)."""
        return PresenceMaps(self.score[index], self.sigma[index], self.measured[index])


def smooth_max(z: Tensor, temperature: float = 1.0) -> Tensor:
    """``T log mean exp(z / T)`` over the last axis."""
    n = z.shape[-1]
    return temperature * (torch.logsumexp(z / temperature, -1) - math.log(n))


def _nanmedian(x: Tensor, mask: Tensor, dim: int) -> Tensor:
    return torch.where(mask, x, torch.full_like(x, math.nan)).nanmedian(dim).values


@dataclass(frozen=True)
class MaterialReference:
    """What the clean references fix for the material score (module docstring).

    Attributes:
        level: ``(voxel,)`` typical score ``m_v`` (median over references).
        noise: ``(voxel,)`` spread ``tau_v`` (of ``ln(s / m_v)``, or of ``s - m_v`` if ``log`` is false).
        offset: where the densest background material sits (``ln g`` or ``d``).
        log: whether scores are compared as logarithms.
        known: ``(voxel,)`` bool, voxels that enough references measured.
        densest_inverse_x0: 1/X0 (1/m) of the densest background material (NaN if no voxel was measured).
    """

    level: Tensor
    noise: Tensor
    offset: Tensor
    log: bool
    known: Tensor
    densest_inverse_x0: float

    def excess(self, score: Tensor) -> Tensor:
        """``ln(s / m_v)`` or ``s - m_v`` (where known and measured; 0 elsewhere)."""
        if self.log:
            safe = torch.where(score > 0, score, self.level)
            return torch.log(safe / self.level)
        return score - self.level


def material_reference(references: PresenceMaps, reference_inverse_x0: Tensor) -> MaterialReference:
    """Fit :class:`MaterialReference` on clean reference maps ``(reference, voxel)`` whose voxels
    truly hold materials of ``reference_inverse_x0`` ``(reference, voxel)`` (1/m)."""
    if references.score.shape[0] < 3:
        raise MutomoError("the material presence statistic needs at least 3 clean reference volumes")
    if reference_inverse_x0.shape != references.score.shape:
        raise MutomoError(
            f"reference materials {tuple(reference_inverse_x0.shape)} do not match the reference maps "
            f"{tuple(references.score.shape)}"
        )
    with torch.no_grad():
        score, measured = references.score.double(), references.measured
        n_measured = measured.sum(0)
        known = n_measured >= 3
        positive = bool((score[measured] > 0).all())
        level = _nanmedian(score, measured, 0)
        level = torch.where(known & (level > 0 if positive else known), level, torch.ones_like(level))
        if positive:
            excess = torch.log(torch.where(measured & (score > 0), score, level.expand_as(score)) / level)
        else:
            excess = score - level
        centre = _nanmedian(excess, measured, 0)
        noise = MAD_TO_SIGMA * _nanmedian((excess - centre).abs(), measured, 0)
        typical = noise[known].median() if bool(known.any()) else torch.tensor(1.0, dtype=score.dtype)
        # Moderated variance: each voxel's spread from a few dozen references is noisy, so it is
        # pulled toward the pooled one (Smyth, Stat. Appl. Genet. Mol. Biol. 3 (2004) art. 3).
        noise = torch.sqrt((noise**2 + NOISE_PRIOR_WEIGHT * typical**2) / (1 + NOISE_PRIOR_WEIGHT))
        floor = torch.clamp(NOISE_FLOOR * typical, min=1e-12)
        noise = torch.where(known, torch.maximum(noise, floor), torch.ones_like(noise))
        # The densest material the references hold in enough voxels. No voxel measured at all (a
        # detector that sees nothing of the volume): nothing is known, every voxel scores UNMEASURED.
        inv = reference_inverse_x0.double()
        values, counts = torch.unique(inv[measured], return_counts=True)
        enough = counts >= max(1, math.ceil(DENSEST_MIN_FRACTION * int(measured.sum())))
        densest = math.nan if values.numel() == 0 else float(values[enough].max() if enough.any() else values.max())
        chosen = measured & known[None, :] & torch.isclose(inv, torch.tensor(densest, dtype=inv.dtype))
        offset = excess[chosen].median() if bool(chosen.any()) else torch.zeros((), dtype=score.dtype)
    return MaterialReference(level.to(references.score), noise.to(references.score), offset, positive, known, densest)


def material_voxel_scores(maps: PresenceMaps, reference: MaterialReference) -> Tensor:
    """``(..., voxel)`` standard deviations above the densest background material (module docstring)."""
    level = reference.level
    score = maps.score
    if reference.log:
        safe = torch.where(maps.measured & (score > 0), score, level.expand_as(score))
        excess = torch.log(safe / level)
        own = torch.where(maps.measured & (score > 0), maps.sigma / safe, torch.zeros_like(score))
    else:
        excess = score - level
        own = maps.sigma
    u = (excess - reference.offset.to(score)) / torch.sqrt(reference.noise**2 + own**2)
    usable = maps.measured & reference.known
    return torch.where(usable, u, torch.full_like(u, UNMEASURED))


def material_scores(maps: PresenceMaps, references: PresenceMaps, reference_inverse_x0: Tensor) -> Tensor:
    """Presence scores ``(volume,)``: smooth maximum of :func:`material_voxel_scores`."""
    u = material_voxel_scores(maps, material_reference(references, reference_inverse_x0))
    return smooth_max(u, MATERIAL_TEMPERATURE)


def _batch_reference(maps: PresenceMaps, inverse_x0: Tensor, labels: Tensor) -> tuple[Tensor, MaterialReference]:
    """A training batch's volumes without the target (their indices) and the material reference
    they fix together; needs at least 4 of them (each is later left out of its own)."""
    index = (labels <= 0.5).nonzero().squeeze(-1)
    if index.numel() < 4:
        raise MutomoError(
            "a presence batch with the material or learned statistic needs at least 4 volumes without the target"
        )
    return index, material_reference(maps.rows(index), inverse_x0[index])


def _leave_one_out(
    maps: PresenceMaps,
    inverse_x0: Tensor,
    index: Tensor,
    scores: Tensor,
    volume_scores: Callable[[PresenceMaps, MaterialReference], Tensor],
) -> Tensor:
    """``scores (volume,)`` of a batch against its shared reference, with each clean volume
    (``index``) scored instead by ``volume_scores`` against the reference of the other clean
    volumes. The references' levels and noise carry no gradient: the gradient flows through each
    volume's own map."""
    out = list(scores.unbind(0))
    for i in index.tolist():
        others = index[index != i]
        own = material_reference(maps.rows(others), inverse_x0[others])
        out[i] = volume_scores(maps.rows(torch.tensor([i])), own)[0]
    return torch.stack(out)


def _material_volume_scores(maps: PresenceMaps, reference: MaterialReference) -> Tensor:
    return smooth_max(material_voxel_scores(maps, reference), MATERIAL_TEMPERATURE)


def batch_material_scores(maps: PresenceMaps, inverse_x0: Tensor, labels: Tensor) -> Tensor:
    """Material scores ``(volume,)`` of a training batch, its volumes without the target as the
    references, each of those left out of its own (:func:`_leave_one_out`)."""
    index, shared = _batch_reference(maps, inverse_x0, labels)
    return _leave_one_out(maps, inverse_x0, index, _material_volume_scores(maps, shared), _material_volume_scores)


# ---------------------------------------------------------------------------------- learned
def _neighbours(u: Tensor, shape: tuple[int, int, int]) -> tuple[Tensor, Tensor]:
    """Largest and mean ``u`` of each voxel's 6 face neighbours inside the grid, ``(..., voxel)``."""
    grid = u.reshape(*u.shape[:-1], *shape)
    padded = torch.nn.functional.pad(grid, (1, 1, 1, 1, 1, 1), value=math.nan)
    nx, ny, nz = shape
    shifts = [
        padded[..., 2:, 1:-1, 1:-1],
        padded[..., :-2, 1:-1, 1:-1],
        padded[..., 1:-1, 2:, 1:-1],
        padded[..., 1:-1, :-2, 1:-1],
        padded[..., 1:-1, 1:-1, 2:],
        padded[..., 1:-1, 1:-1, :-2],
    ]
    stack = torch.stack(shifts, -1)  # (..., nx, ny, nz, 6)
    inside = ~torch.isnan(stack)
    low = torch.full_like(stack, UNMEASURED)
    largest = torch.where(inside, stack, low).amax(-1)
    mean = torch.where(inside, stack, torch.zeros_like(stack)).sum(-1) / inside.sum(-1).clamp(min=1)
    flat = (*u.shape[:-1], nx * ny * nz)
    return largest.reshape(flat), mean.reshape(flat)


def voxel_features(maps: PresenceMaps, reference: MaterialReference, shape: tuple[int, int, int]) -> Tensor:
    """``(..., voxel, 5)`` features of :class:`VoxelClassifier`: ``u``, the largest and the mean
    neighbour ``u``, ``ln tau_v`` and the voxel's own relative error."""
    u = material_voxel_scores(maps, reference)
    clipped = u.clamp(min=-10.0)  # unmeasured voxels carry no gradient and no extreme feature
    largest, mean = _neighbours(clipped, shape)
    own = torch.where(
        maps.measured & (maps.score > 0), maps.sigma / maps.score.abs().clamp(min=1e-30), torch.zeros_like(u)
    )
    noise = torch.log(reference.noise).expand_as(u)
    return torch.stack([clipped, largest, mean, noise, own], -1)


class VoxelClassifier(torch.nn.Module):
    """Logistic regression of "this voxel is the target's" on :func:`voxel_features` (5
    weights and a bias, features standardised on the first data it sees): small enough that a
    few dozen simulated volumes fit it without overfitting, and its weights can be read. It is
    fitted once (:meth:`fit`, L-BFGS) for an evaluation, or trained step by step beside the
    detector (:meth:`voxel_loss`, co-training)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(5, 1, dtype=torch.float64)
        self.mean: Tensor
        self.scale: Tensor
        self.ready: Tensor
        self.register_buffer("mean", torch.zeros(5, dtype=torch.float64))
        self.register_buffer("scale", torch.ones(5, dtype=torch.float64))
        self.register_buffer("ready", torch.tensor(False))

    def forward(self, features: Tensor) -> Tensor:
        """Voxel logits ``(..., voxel)``."""
        x = (features.double() - self.mean) / self.scale
        return self.linear(x).squeeze(-1)

    def standardise_(self, features: Tensor, measured: Tensor) -> None:
        """Fix the features' standardisation from ``features (volume, voxel, 5)`` over the
        ``measured`` voxels (without gradient)."""
        with torch.no_grad():
            x = features.detach().double()[measured]
            self.mean.copy_(x.mean(0))
            self.scale.copy_(x.std(0).clamp(min=1e-6) if x.shape[0] > 1 else torch.ones_like(self.scale))
            self.ready.fill_(True)

    def voxel_loss(self, features: Tensor, target: Tensor, measured: Tensor) -> Tensor:
        """Class-balanced logistic loss of the voxel labels ``target (volume, voxel)`` over the
        ``measured`` voxels, with a small L2 penalty on the weights."""
        x = features.double()[measured]
        y = target[measured].double()
        if int(y.sum()) == 0:
            raise MutomoError("the learned presence statistic needs training volumes with a measured target voxel")
        pos_weight = (y.numel() - y.sum()) / y.sum()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(self.forward(x), y, pos_weight=pos_weight)
        return loss + 1e-3 * (self.linear.weight**2).sum()

    def fit(self, features: Tensor, target: Tensor, measured: Tensor, steps: int = 200) -> dict[str, float]:
        """Fit on ``features (volume, voxel, 5)`` with labels ``target (volume, voxel)`` over the
        ``measured`` voxels (:meth:`voxel_loss`, L-BFGS); returns the final loss."""
        features = features.detach()
        self.standardise_(features, measured)
        optimiser = torch.optim.LBFGS(self.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

        def closure() -> Tensor:
            optimiser.zero_grad()
            loss = self.voxel_loss(features, target, measured)
            loss.backward()
            return loss

        final = optimiser.step(closure)
        return {"loss": float(final.detach())}


def learned_scores(
    maps: PresenceMaps, reference: MaterialReference, model: VoxelClassifier, shape: tuple[int, int, int]
) -> Tensor:
    """Presence scores ``(volume,)``: smooth maximum of the classifier's voxel logits."""
    return _logit_scores(model, voxel_features(maps, reference, shape), maps.measured & reference.known)


def _logit_scores(model: VoxelClassifier, features: Tensor, usable: Tensor) -> Tensor:
    """Smooth maximum of the classifier's logits over the ``usable`` voxels, in the features' dtype."""
    logits = model(features)
    logits = torch.where(usable, logits, torch.full_like(logits, UNMEASURED))
    return smooth_max(logits).to(features.dtype)


def fitted_classifier(
    train: PresenceMaps, train_target: Tensor, reference: MaterialReference, shape: tuple[int, int, int]
) -> VoxelClassifier:
    """A :class:`VoxelClassifier` fitted on the training maps ``(volume, voxel)`` with their
    target voxels ``train_target`` as labels, features against ``reference``."""
    model = VoxelClassifier()
    model.fit(voxel_features(train, reference, shape), train_target.bool(), train.measured & reference.known)
    return model


def batch_learned_loss(
    maps: PresenceMaps,
    inverse_x0: Tensor,
    labels: Tensor,
    target: Tensor,
    model: VoxelClassifier,
    shape: tuple[int, int, int],
) -> tuple[Tensor, Tensor]:
    """Co-training on one batch: ``(scores, voxel_loss)``. ``scores (volume,)`` are the learned
    statistic's volume scores (the batch's clean volumes as references, :func:`_leave_one_out`),
    differentiable in the maps and in the classifier; ``voxel_loss`` is the classifier's loss on
    the target volumes' voxel labels, on detached features (it teaches the classifier, not the
    detector). The classifier's standardisation is fixed on the first batch it sees."""
    index, shared = _batch_reference(maps, inverse_x0, labels)
    features = voxel_features(maps, shared, shape)
    usable = maps.measured & shared.known
    if not bool(model.ready):
        model.standardise_(features, usable)
    scores = _leave_one_out(
        maps, inverse_x0, index, _logit_scores(model, features, usable), lambda m, r: learned_scores(m, r, model, shape)
    )
    with_target = labels > 0.5
    voxel = (
        model.voxel_loss(features.detach()[with_target], target[with_target], usable[with_target])
        if bool((target[with_target] & usable[with_target]).any())
        else torch.zeros((), dtype=torch.float64)
    )
    return scores, voxel


# ---------------------------------------------------------------------------------- dispatch
def statistic_scores(
    name: str,
    test: PresenceMaps,
    references: PresenceMaps,
    *,
    reference_inverse_x0: Tensor | None = None,
    shape: tuple[int, int, int] | None = None,
    train: PresenceMaps | None = None,
    train_target: Tensor | None = None,
    train_present: Tensor | None = None,
) -> Tensor:
    """Presence scores ``(volume,)`` of ``test`` by the statistic ``name`` (:data:`STATISTICS`).

    Raises:
        ValueError: if the statistic needs an input that was not given (reference materials for
            ``material``; training maps, targets and the grid shape for ``learned``).
    """
    if name == "clean":
        return reference_scores(test.score, references.score, test.sigma)
    if name == "likelihood":
        return likelihood_scores(test)
    if reference_inverse_x0 is None:
        raise ValueError(f"the {name!r} statistic needs the reference volumes' materials")
    reference = material_reference(references, reference_inverse_x0)
    if name == "material":
        return smooth_max(material_voxel_scores(test, reference), MATERIAL_TEMPERATURE)
    if name == "learned":
        if train is None or train_target is None or shape is None:
            raise ValueError("the 'learned' statistic needs training maps, their target voxels and the grid shape")
        model = fitted_classifier(train, train_target, reference, shape)
        with torch.no_grad():
            return learned_scores(test, reference, model, shape)
    raise MutomoError(f"unknown presence statistic {name!r}; allowed {list(STATISTICS)}")


def localisation(rank: Tensor, target: Tensor, present: Tensor) -> tuple[float, float]:
    """Fraction of target volumes whose highest-ranking voxel (``rank (volume, voxel)``, ``-inf``
    where unmeasured) is one of its target voxels (``target (volume, voxel)`` bool), with its
    binomial standard error (at 0 or 1, that of half a count from the edge); ``(nan, nan)``
    without target volumes."""
    chosen = present.bool()
    n = int(chosen.sum())
    if n == 0:
        return (math.nan, math.nan)
    top = rank[chosen].argmax(-1)
    hit = target[chosen].bool().gather(-1, top[:, None]).squeeze(-1).double()
    p = float(hit.mean())
    # Binomial error; at 0 or 1 that of half a count from the edge (not a zero error).
    q = min(max(p, 0.5 / n), 1 - 0.5 / n)
    return (p, math.sqrt(q * (1 - q) / n))
