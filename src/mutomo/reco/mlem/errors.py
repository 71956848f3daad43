"""Statistical errors of an ML/EM map: the Fisher information (Louis' observed information with
momentum classes), conditional per voxel or as the full matrix per batch entry, the marginal
variances, and the sandwich variances that do not rely on the model's Gaussian core. See
:mod:`mutomo.reco.mlem`, "Uncertainty"."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mutomo.reco.mlem.model import EMProblem, _entry_terms, _Moments, _moments


def _row_information(m: _Moments) -> Tensor:
    """``(rows, 3, 3)`` ``F`` with ``tr(A W A W') = w^T F w'`` for symmetric ``W = sum_m w_m E_m``
    in the basis of their distinct entries ``(W_00, W_01, W_11)``, ``A = Sigma^-1`` of each row:
    ``F[i, m, n] = sum_{k, l} tr(A_kl E_m A_lk E_n)``."""
    blocks = m.blocks()
    dtype, device = blocks.dtype, blocks.device
    basis = torch.tensor([[[1, 0], [0, 0]], [[0, 1], [1, 0]], [[0, 0], [0, 1]]], dtype=dtype, device=device)
    return torch.einsum("ikalb,mbc,ilckd,nda->imn", blocks, basis, blocks, basis)


def fisher_diagonal(inverse_x0: Tensor, problem: EMProblem) -> Tensor:
    """``(V,)`` diagonal of the Fisher information of ``rho`` (m^2):
    ``I_jj = 1/2 sum_i w_i tr(Sigma_i^-1 W'_ij Sigma_i^-1 W'_ij)``.

    With momentum classes, the observed information of the mixture by Louis' identity (Louis,
    J. R. Stat. Soc. B 44 (1982) 226): the posterior mean of each class's information minus the
    posterior variance of its score ``s_ikj = 1/2 tr((Q_ik - P_ik) W'_ikj)``,
    ``I_jj = sum_i w_i [sum_k r_ik F_ikj - (sum_k r_ik s_ikj^2 - (sum_k r_ik s_ikj)^2)]``
    (the Gaussian expected information ``F`` standing for each class's observed one); the
    unknown momentum makes a voxel's density less certain than any known momentum would. It is
    floored at 1 % of the first term."""
    m = _moments(inverse_x0, problem)
    return _fisher_diagonal(problem, m, *_entry_terms(problem, m))


def _fisher_diagonal(problem: EMProblem, m: _Moments, score: Tensor, w: Tensor) -> Tensor:
    """:func:`fisher_diagonal` from the moments ``m`` at the density and their
    :func:`_entry_terms` ``(score, w)``, for callers that need them too."""
    f = _row_information(m)
    paths = problem.paths
    w3 = problem.scaled_w.T
    per_entry = 0.5 * torch.einsum("em,emn,en->e", w3, f.index_select(0, paths.muon), w3)
    zeros = torch.zeros_like(problem.count)
    information = zeros.index_add(0, paths.voxel, w * per_entry)
    if problem.classes == 1:
        return information
    # Entries are class-minor (the K copies of an entry consecutive): the posterior moments of
    # the score over a muon's classes, per entry of its path.
    k = problem.classes
    s_k = (0.5 * score).reshape(-1, k)
    w_k = w.reshape(-1, k)
    total = w_k.sum(-1, keepdim=True)
    mean = (w_k * s_k).sum(-1, keepdim=True) / total.clamp(min=1e-300)
    spread = (w_k * (s_k - mean) ** 2).sum(-1)
    voxel = paths.voxel.reshape(-1, k)[:, 0]
    louis = information - zeros.index_add(0, voxel, spread)
    return torch.maximum(louis, 0.01 * information)


#: Rows (muons, or muon-class pairs) per chunk of :func:`fisher_matrix` (each holds ``L^2`` pairs).
_FISHER_CHUNK = 16384


def fisher_matrix(inverse_x0: Tensor, problem: EMProblem) -> Tensor:
    """``(n_batch, G, G)`` Fisher information of each batch entry's densities (m^2; ``G`` voxels
    a grid): ``I_jl = 1/2 sum_i w_i tr(Sigma_i^-1 W'_ij Sigma_i^-1 W'_il)`` over the muons that
    cross both voxels, and with momentum classes Louis' observed information as in
    :func:`fisher_diagonal` (whose values are its diagonal). Voxels share muons, so the error of
    one density with the others unknown, ``sqrt((I^-1)_jj)``, exceeds ``1 / sqrt(I_jj)``, the
    error with the others known (benchmarks/README.md, "Voxel X0 pulls": 1 m of water in 10 cm
    columns, pulls up to 1.8 with the latter). Built from every pair of entries of each row's
    path (rows in chunks); dense per batch entry."""
    m = _moments(inverse_x0, problem)
    dtype, device = inverse_x0.dtype, inverse_x0.device
    f = _row_information(m)
    paths = problem.paths
    score, w = _entry_terms(problem, m)
    grid = math.prod(problem.grid_shape[-3:])
    n_batch = math.prod(problem.batch_shape)
    rows = problem.weight.shape[0]
    k = problem.classes
    # Each row's entries, padded to the longest path: (rows, L).
    order = torch.argsort(paths.muon, stable=True)
    row = paths.muon[order]
    counts = torch.bincount(row, minlength=rows)
    width = int(counts.max()) if counts.numel() else 0
    out = torch.zeros(n_batch * grid * grid, dtype=dtype, device=device)
    if width == 0:
        return out.reshape(n_batch, grid, grid)
    start = torch.cumsum(counts, 0) - counts
    ends = torch.cumsum(counts, 0)
    chunk = max(k, _FISHER_CHUNK // k * k)  # whole muons: their K class rows together
    for lo in range(0, rows, chunk):
        hi = min(rows, lo + chunk)
        first, last = int(start[lo]), int(ends[hi - 1])
        sel = order[first:last]
        r = row[first:last] - lo
        position = torch.arange(first, last, device=device) - start[row[first:last]]
        n = hi - lo
        # This chunk's rows, their entries padded to the longest path: (n, L).
        vox = torch.full((n, width), -1, dtype=torch.long, device=device)
        vox[r, position] = paths.voxel[sel]
        g = torch.zeros(n, width, 3, dtype=dtype, device=device)
        g[r, position] = problem.scaled_w.T[sel]
        row_weight = torch.zeros(n, dtype=dtype, device=device)
        row_weight[r] = w[sel]
        pairs = 0.5 * row_weight[:, None, None] * torch.einsum("ram,rmn,rbn->rab", g, f[lo:hi], g)
        if k > 1:
            # Louis: minus the posterior covariance of the scores over each muon's classes.
            half_score = torch.zeros(n, width, dtype=dtype, device=device)
            half_score[r, position] = 0.5 * score[sel]
            sc = half_score.reshape(-1, k, width)
            wk = row_weight.reshape(-1, k)
            total = wk.sum(-1).clamp(min=1e-300)
            mean = (wk[..., None] * sc).sum(1) / total[:, None]
            dev = sc - mean[:, None, :]
            cov = torch.einsum("ik,ika,ikb->iab", wk, dev, dev)
            pairs = pairs.reshape(-1, k, width, width).sum(1) - cov
            vox = vox.reshape(-1, k, width)[:, 0]
        valid = (vox[:, :, None] >= 0) & (vox[:, None, :] >= 0)
        entry = vox.clamp(min=0)
        batch = entry // grid
        flat = (batch[:, :, None] * grid + entry[:, :, None] % grid) * grid + entry[:, None, :] % grid
        out = out.index_add(0, flat[valid], pairs[valid])
    return out.reshape(n_batch, grid, grid)


def marginal_variance(inverse_x0: Tensor, problem: EMProblem) -> Tensor:
    """``(V,)`` variance of each density with every other density unknown, ``(I^-1)_jj`` of each
    batch entry's :func:`fisher_matrix` over the voxels muons crossed (m^-2; ``inf`` where no
    muon crossed). Where the matrix is not positive definite on those voxels (Louis' correction
    can make it so away from the maximum, or for a voxel seen by a handful of muons),
    ``1 / I_jj`` from :func:`fisher_diagonal` (floored) for that batch entry instead."""
    info = fisher_matrix(inverse_x0, problem)
    crossed = (problem.count > 0).reshape(info.shape[:-1])
    # Uncrossed voxels decouple (their rows are zero): a unit diagonal keeps the matrix invertible.
    eye = torch.diag_embed((~crossed).to(info.dtype))
    factor, status = torch.linalg.cholesky_ex(info + eye)
    ok = status == 0
    safe = torch.where(ok[:, None, None], factor, torch.eye(info.shape[-1], dtype=info.dtype, device=info.device))
    variance = torch.cholesky_inverse(safe).diagonal(dim1=-2, dim2=-1)
    if not bool(ok.all()):  # only then is the conditional error needed
        diagonal = fisher_diagonal(inverse_x0, problem).reshape(crossed.shape)
        conditional = 1 / torch.where(crossed & (diagonal > 0), diagonal, torch.ones_like(diagonal))
        variance = torch.where(ok[:, None], variance, conditional)
    return torch.where(crossed, variance, torch.full_like(variance, math.inf)).reshape(-1)


def sandwich_variance(inverse_x0: Tensor, problem: EMProblem, at_least_fisher: bool = False) -> Tensor:
    """``(V,)`` the robust (sandwich) variance of each density, conditional on the others,
    ``J_jj / I_jj^2`` (m^-2; ``inf`` where no muon crossed): ``I`` the Fisher information
    (:func:`fisher_diagonal`), ``J_jj = sum_i (w_i s_ij)^2`` the observed variance of the
    per-muon scores ``s_ij = 1/2 tr((Q_i - P_i) W'_ij)`` (with momentum classes their posterior
    mean over the classes, Louis' score of the mixture).

    Huber (Proc. 5th Berkeley Symp. 1 (1967) 221) and White (Econometrica 50 (1982) 1): when the
    model's distribution is not the data's, the maximum-likelihood estimate is still consistent
    for the best-fitting density but its variance is ``I^-1 J I^-1``, not ``I^-1``; the two agree
    when the model is right. ML/EM's Gaussian core is not the Molière distribution: its single
    and plural scatters put more variance in the scores than the Gaussian's information says,
    most in light materials (benchmarks/README.md, "Voxel X0 pulls": in 1 m of water the Fisher
    pulls are 1.4-2.0 above 20 muons, the sandwich's 1.15-1.4).

    ``at_least_fisher``: ``max(J_jj / I_jj^2, 1 / I_jj)``. From a handful of heavy-tailed
    scores ``J`` is noisy and most often too small (its mean is carried by rare large scores;
    the sandwich's small-sample bias, Kauermann & Carroll, JASA 96 (2001) 1387): alone it gave
    pulls of 1.7-2.1 under 20 muons in water and 1.3-2.9 in iron, where the Fisher error is
    right. The larger of the two keeps the model's error where the scores show no excess."""
    m = _moments(inverse_x0, problem)  # once, for both J and I
    score, w = _entry_terms(problem, m)
    per_entry = 0.5 * w * score
    voxel = problem.paths.voxel
    if problem.classes > 1:  # entries are class-minor: the muon's score is the sum over its classes
        per_entry = per_entry.reshape(-1, problem.classes).sum(-1)
        voxel = voxel.reshape(-1, problem.classes)[:, 0]
    j = torch.zeros_like(inverse_x0).index_add(0, voxel, per_entry**2)
    info = _fisher_diagonal(problem, m, score, w)
    crossed = (problem.count > 0) & (info > 0)
    safe = torch.where(crossed, info, torch.ones_like(info))
    variance = j / safe**2
    if at_least_fisher:
        variance = torch.maximum(variance, 1 / safe)
    return torch.where(crossed, variance, torch.full_like(info, math.inf))
