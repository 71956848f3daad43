"""Per-voxel evidence for a material: how much better the muons crossing a voxel are explained
if it holds the target's material than if it holds the likeliest innocent one.

After the EM (:class:`~mutomo.reco.mlem.MaximumLikelihoodEM`), every voxel ``j`` is tried at
each hypothesis ``h`` (a radiation length's inverse ``1 / X0_h``, m^-1) with every other voxel
held at its fitted value ``rho``:

    l_j(h) = sum_{i crosses j} w_i ln p(D_i | rho_j = f_j / X0_h, rho_-j),

the same likelihood of each muon's deflection and displacement the EM maximises (Gaussian, with
its momentum marginalised over the classes where it has them and the outlier component where the
problem has one: :mod:`mutomo.reco.mlem`), ``f_j``
the voxel's Highland log-term factor (``rho`` is the effective density; ``1 / X0 = rho / f``).
Changing one voxel adds ``(h - rho_j) c_i (I_2 (x) W_ij)`` to a muon's covariance, so each path
entry is one 4 x 4 covariance, inverted by the 2 x 2 blocks the EM uses.

The evidence is ``E_j = max_t l_j(t) - max_b l_j(b)`` over the target materials ``t`` and the
innocent ones ``b``: the generalised likelihood ratio of two sets of simple hypotheses
(Neyman & Pearson, Phil. Trans. R. Soc. A 231 (1933) 289; S. M. Kay, Fundamentals of
Statistical Signal Processing II (1998), ch. 6), with the other voxels at their fit instead of
refitted under each hypothesis. Unlike a voxel's 1/X0 estimate, whose spread grows as its muons
are few, fast or shared with dense neighbours, the ratio weighs each muon by what it can say: a
fast muon, whose small deflection fits any material at some momentum of the prior, adds little
either way. In a cluttered cargo the innocent set includes the clutter's densest goods (steel)
and any confuser (lead), so a steel voxel that reconstructs dense scores below zero unless its
muons scatter like uranium.

Each hypothesis costs one pass over the path entries, so :func:`voxel_evidence` weighs every
voxel against the innocents nearest the target's level first (an upper bound of ``E_j``) and the
others only where that bound is above :data:`EVIDENCE_FLOOR`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.utils.checkpoint
from torch import Tensor

from mutomo.errors import MutomoError
from mutomo.materials import Material
from mutomo.reco.mlem.model import LOG_2PI, EMProblem, _gaussian, _highland_scale

Hypothesis = float | Material
"""A material hypothesis: a material, or only its inverse radiation length ``1 / X0`` (m^-1).
A material also says how much range a muon needs to cross it, which the evidence uses where
the problem carries its muons' class ranges (:attr:`~mutomo.reco.mlem.EMProblem.ranges`)."""


def hypothesis_level(hypothesis: Hypothesis) -> float:
    """The inverse radiation length (m^-1) of a hypothesis."""
    return 1.0 / hypothesis.x0 if isinstance(hypothesis, Material) else float(hypothesis)


#: Path entries evaluated together (each with its momentum classes): bounds the intermediate
#: memory to ~60 arrays of ``CHUNK_ENTRIES x classes`` values.
CHUNK_ENTRIES = 100_000


def voxel_log_likelihoods(
    inverse_x0: Tensor,
    problem: EMProblem,
    factor: Tensor,
    hypotheses: Sequence[Hypothesis],
    voxels: Tensor | None = None,
) -> Tensor:
    """``(H, V)``: for each hypothesis ``h`` (a material or its ``1 / X0_h``, m^-1) and voxel
    ``j``, the weighted log-likelihood of the muons crossing ``j`` with ``rho_j = factor_j /
    X0_h`` and every other voxel at ``inverse_x0`` (the effective ``rho``, flat ``(V,)``); 0
    where no muon crosses.

    ``factor``: ``(V,)`` each voxel's Highland log-term factor (``rho / (1 / X0)``; 1 without
    the log term). Where the problem carries its classes' ranges (:attr:`EMProblem.ranges`), a
    material hypothesis renormalises each muon's momentum prior over the classes that can cross
    the volume with ``j`` holding that material, and scatters each class in ``j`` at the
    momentum it has left there (:meth:`~mutomo.reco.momentum.ClassRanges.under`; a hypothesis
    given as a number keeps the nominal cut and momenta): a dense material says that the muons
    which crossed it were hard on entering, and slowed in it. Differentiable in ``inverse_x0``,
    ``factor`` and the problem's data (the cut and the classes' momenta are fixed numbers to the
    gradient, as the prior's are); with gradients enabled each chunk of path
    entries is recomputed in the backward pass instead of kept (:data:`CHUNK_ENTRIES`), one
    hypothesis at a time; without, each chunk's gathers are shared by the hypotheses.
    ``voxels``: ``(V,)`` bool, the voxels to evaluate (0 elsewhere); all by default."""
    if len(hypotheses) == 0:
        raise MutomoError("voxel_log_likelihoods needs at least one hypothesis (an inverse radiation length)")
    paths = problem.paths
    k = problem.classes
    n_muons = problem.deflection.shape[0] // k
    # Each muon's scattering sum over its path, without the class scale (one class: with it).
    rho = inverse_x0.index_select(0, paths.voxel)
    zero = torch.zeros(n_muons, dtype=inverse_x0.dtype, device=inverse_x0.device)
    sums = torch.stack([zero.index_add(0, paths.muon, w * rho) for w in problem.scaled_w])
    noise = problem.noise.reshape(-1, 16).T.contiguous()
    data = problem.deflection.reshape(-1, 4).T.contiguous()
    log_prior = problem.log_prior if problem.log_prior is not None else torch.zeros_like(problem.weight)
    ranges = problem.ranges
    if ranges is not None:
        # The prior of a muon that was seen: each hypothesis renormalises its own cut, so the
        # nominal one is renormalised too.
        log_prior = (log_prior.reshape(-1, k) - torch.logsumexp(log_prior.reshape(-1, k), -1, keepdim=True)).reshape(-1)
    # With outliers (mutomo.reco.mlem.model.with_outliers), each muon's likelihood is the mixture
    # of the classes, weighted 1 - epsilon, and the broad component, weighted epsilon.
    log_outlier = None
    core_weight = 0.0
    if problem.log_outlier is not None:
        core_weight = math.log1p(-problem.outlier_fraction)
        log_outlier = problem.log_outlier + math.log(problem.outlier_fraction)
    log_prior = log_prior + core_weight
    muon_weight = problem.per_muon(problem.weight)
    levels = torch.as_tensor(
        [hypothesis_level(h) for h in hypotheses], dtype=inverse_x0.dtype, device=inverse_x0.device
    )
    materials = [h if isinstance(h, Material) and ranges is not None else None for h in hypotheses]
    entries = torch.arange(paths.voxel.shape[0], device=paths.voxel.device)
    if voxels is not None:
        entries = entries[voxels.index_select(0, paths.voxel)]

    def gather(index: Tensor, inverse_x0: Tensor, factor: Tensor, sums: Tensor, scaled_w: Tensor) -> tuple[Tensor, ...]:
        """The chunk's path entries' per-row inputs, shared by every hypothesis."""
        muon, voxel = paths.muon.index_select(0, index), paths.voxel.index_select(0, index)
        rows = (muon[:, None] * k + torch.arange(k, device=muon.device)).reshape(-1)
        base = sums.index_select(1, muon).repeat_interleave(k, 1)
        w = scaled_w.index_select(1, index).repeat_interleave(k, 1)
        scale = problem.scale.index_select(0, rows) if k > 1 else torch.ones_like(base[0])
        at_fit = inverse_x0.index_select(0, voxel).repeat_interleave(k)
        return (
            index, muon, base, w, scale, factor.index_select(0, voxel).repeat_interleave(k), at_fit,
            noise.index_select(1, rows), data.index_select(1, rows), log_prior.index_select(0, rows).reshape(-1, k),
        )  # fmt: skip

    def evaluate(h: int, gathered: tuple[Tensor, ...]) -> Tensor:
        """``(entries,)`` each entry's muon's weighted log-likelihood with its voxel at hypothesis ``h``."""
        index, muon, base, w, scale, factor_rows, at_fit, noise_rows, data_rows, prior_rows = gathered
        material = materials[h]
        level = levels[h] * factor_rows
        if material is None:
            s0, s1, s2 = (scale * (b + (level - at_fit) * wk) for b, wk in zip(base, w, strict=True))
        else:
            # The material's cut and each class's momentum in the voxel (ClassRanges.under): the
            # voxel's term scatters at that momentum, the rest of the path at the class's own.
            assert ranges is not None
            length, tail = paths.length.index_select(0, index), paths.tail.index_select(0, index)
            log_prior_h, momentum = ranges.under(material, muon, length, tail)
            prior_rows = log_prior_h.to(prior_rows.dtype) + core_weight
            scale_h = _highland_scale(momentum.to(scale.dtype)).reshape(-1)
            s0, s1, s2 = (scale * (b - at_fit * wk) + scale_h * level * wk for b, wk in zip(base, w, strict=True))
        g = _gaussian(s0, s1, s2, noise_rows, data_rows)
        joint = prior_rows + (-0.5 * g.log_det - 0.5 * g.quadratic).reshape(-1, k)
        if log_outlier is not None:
            joint = torch.cat([joint, log_outlier.index_select(0, muon)[:, None]], -1)
        per_muon = torch.logsumexp(joint, -1) - 2 * LOG_2PI
        return muon_weight.index_select(0, muon) * per_muon

    def chunk(index: Tensor, h: int, *inputs: Tensor) -> Tensor:
        return evaluate(h, gather(index, *inputs))

    rows_out = [torch.zeros_like(inverse_x0) for _ in levels]
    inputs = (inverse_x0, factor, sums, problem.scaled_w)
    for start in range(0, entries.shape[0], CHUNK_ENTRIES):
        index = entries[start : start + CHUNK_ENTRIES]
        voxel = paths.voxel.index_select(0, index)
        # With gradients, one chunk and hypothesis's ~60 intermediates at a time in the backward
        # pass, the gathers redone in it; without, the gathers once for every hypothesis.
        gathered = None if torch.is_grad_enabled() else gather(index, *inputs)
        for h in range(len(levels)):
            if gathered is None:
                terms = torch.utils.checkpoint.checkpoint(chunk, index, h, *inputs, use_reentrant=False)
            else:
                terms = evaluate(h, gathered)
            rows_out[h] = rows_out[h].index_add(0, voxel, terms)
    return torch.stack(rows_out)


#: Evidence (nats) at or below which a voxel keeps the first pass's upper bound instead of its exact
#: value (:func:`voxel_evidence`): -3 nats weigh e^-30 against a voxel at 0 in the likelihood
#: statistic's smooth maximum (temperature 0.1 nats), and every volume has measured voxels near 0
#: (those a few muons cross, whose likelihood barely depends on the material).
EVIDENCE_FLOOR = -3.0


def voxel_evidence(
    inverse_x0: Tensor,
    problem: EMProblem,
    factor: Tensor,
    targets: Sequence[Hypothesis],
    innocents: Sequence[Hypothesis],
) -> Tensor:
    """``(V,)`` each voxel's evidence ``E_j = max_t l_j(t) - max_b l_j(b)`` (module docstring),
    in two passes. The first weighs the targets against the innocents nearest each target's level
    (the densest below it, the lightest above it): a maximum over fewer innocents, so an upper
    bound ``u_j >= E_j``. The second weighs the other innocents only where ``u_j`` is above
    :data:`EVIDENCE_FLOOR`, there ``E_j = min(u_j, max_t l_j(t) - max_rest l_j(b))``; elsewhere
    ``u_j`` is kept, an upper bound below the floor. Exact wherever ``E_j`` is above the floor,
    at a few hypotheses' cost instead of one per material of the scene. Hypotheses are materials
    or their inverse radiation lengths (m^-1; :func:`voxel_log_likelihoods`)."""
    if not targets or not innocents:
        raise MutomoError("voxel evidence needs at least one target and one innocent level (1/X0 in m^-1)")
    level = [hypothesis_level(b) for b in innocents]
    near: list[int] = []
    for t in map(hypothesis_level, targets):
        below = [i for i, b in enumerate(level) if b <= t]
        above = [i for i, b in enumerate(level) if b > t]
        near += [max(below, key=level.__getitem__)] if below else []
        near += [min(above, key=level.__getitem__)] if above else []
    near = list(dict.fromkeys(near))
    rest = [innocents[i] for i in range(len(innocents)) if i not in near]
    first = voxel_log_likelihoods(inverse_x0, problem, factor, [*targets, *(innocents[i] for i in near)])
    bound = material_evidence(first, len(targets))
    if not rest:
        return bound
    candidates = (bound > EVIDENCE_FLOOR).detach()
    second = voxel_log_likelihoods(inverse_x0, problem, factor, rest, candidates)
    exact = torch.minimum(bound, first[: len(targets)].amax(0) - second.amax(0))
    return torch.where(candidates, exact, bound)


def material_evidence(log_likelihoods: Tensor, targets: int) -> Tensor:
    """``(V,)`` ``max_t l(t) - max_b l(b)`` of :func:`voxel_log_likelihoods`' rows, the first
    ``targets`` rows the target materials, the rest the innocent ones (module docstring)."""
    if not 0 < targets < log_likelihoods.shape[0]:
        raise MutomoError(
            f"material evidence needs at least one target and one innocent hypothesis; got {targets} targets "
            f"among {log_likelihoods.shape[0]} hypotheses"
        )
    return log_likelihoods[:targets].amax(0) - log_likelihoods[targets:].amax(0)
