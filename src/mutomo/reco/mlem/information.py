"""Statistical errors of an ML/EM map: the Fisher information (Louis' observed information with
momentum classes), conditional per voxel or as the full matrix per batch entry, the marginal
variances, and the sandwich variances that do not rely on the model's Gaussian core. See
:mod:`mutomo.reco.mlem`, "Uncertainty"."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mutomo.reco.mlem.model import EMProblem, _mixture, _Moments, _moments, _weighted_score


def _row_information(m: _Moments) -> Tensor:
    """``(rows, 3, 3)`` ``F`` with ``tr(A W A W') = w^T F w'`` for symmetric ``W = sum_m w_m E_m``
    in the basis of their distinct entries ``(W_00, W_01, W_11)``, ``A = Sigma^-1`` of each row:
    ``F[i, m, n] = sum_{k, l} tr(A_kl E_m A_lk E_n)``."""
    blocks = m.blocks()
    dtype, device = blocks.dtype, blocks.device
    basis = torch.tensor([[[1, 0], [0, 0]], [[0, 1], [1, 0]], [[0, 0], [0, 1]]], dtype=dtype, device=device)
    return torch.einsum("ikalb,mbc,ilckd,nda->imn", blocks, basis, blocks, basis)


def _muon_information(problem: EMProblem, m: _Moments) -> tuple[Tensor, Tensor | None]:
    """``(information, spread)``, each ``(n, 3, 3)`` per muon, so that an entry pair's
    contribution to the Fisher matrix is ``1/2 W_ij^T information_i W_il - W_ij^T spread_i W_il``
    (``W`` as the 3-vectors of :attr:`EMProblem.scaled_w`).

    One class: ``information = w_i F_i`` (:func:`_row_information`) and no spread. Classes
    (``W'_ikj = c_ik W_ij``): ``information = sum_k w_ik c_ik^2 F_ik`` and ``spread`` the
    weighted covariance over the classes of ``g_ik = c_ik R_ik / 2``, whose product with
    ``W_ij`` is the class's score ``s_ikj``: ``sum_k w_ik (g_ik - g_i)(g_ik - g_i)^T`` with
    ``g_i`` their ``w``-weighted mean, ``w_ik`` the EM weights (:func:`_mixture`)."""
    f = _row_information(m)
    w = _mixture(problem, m)[0]
    if problem.classes == 1:
        return w[:, None, None] * f, None
    k, c = problem.classes, problem.scale
    information = ((w * c**2)[:, None, None] * f).reshape(-1, k, 3, 3).sum(1)
    g = (0.5 * c * m.r).T.reshape(-1, k, 3)
    w_k = w.reshape(-1, k)
    mean = (w_k[..., None] * g).sum(1) / w_k.sum(-1).clamp(min=1e-300)[:, None]
    dev = g - mean[:, None, :]
    return information, torch.einsum("ik,ika,ikb->iab", w_k, dev, dev)


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
    return _fisher_diagonal(problem, _moments(inverse_x0, problem))


def _fisher_diagonal(problem: EMProblem, m: _Moments) -> Tensor:
    """:func:`fisher_diagonal` from the moments ``m`` at the density, for callers that need
    them too."""
    information, spread = _muon_information(problem, m)
    paths = problem.paths
    w3 = problem.scaled_w.T
    zeros = torch.zeros_like(problem.count)

    def per_voxel(matrix: Tensor) -> Tensor:  # sum over entries of W_ij^T matrix_i W_ij
        per_entry = torch.einsum("em,emn,en->e", w3, matrix.index_select(0, paths.muon), w3)
        return zeros.index_add(0, paths.voxel, per_entry)

    total = 0.5 * per_voxel(information)
    if spread is None:
        return total
    return torch.maximum(total - per_voxel(spread), 0.01 * total)


#: Muons per chunk of :func:`fisher_matrix` (each holds ``L^2`` pairs).
_FISHER_CHUNK = 16384


def fisher_matrix(inverse_x0: Tensor, problem: EMProblem) -> Tensor:
    """``(n_batch, G, G)`` Fisher information of each batch entry's densities (m^2; ``G`` voxels
    a grid): ``I_jl = 1/2 sum_i w_i tr(Sigma_i^-1 W'_ij Sigma_i^-1 W'_il)`` over the muons that
    cross both voxels, and with momentum classes Louis' observed information as in
    :func:`fisher_diagonal` (whose values are its diagonal). Voxels share muons, so the error of
    one density with the others unknown, ``sqrt((I^-1)_jj)``, exceeds ``1 / sqrt(I_jj)``, the
    error with the others known (benchmarks/README.md, "Voxel X0 pulls": 1 m of water in 10 cm
    columns, pulls up to 1.8 with the latter). Built from every pair of entries of each muon's
    path (muons in chunks); dense per batch entry."""
    m = _moments(inverse_x0, problem)
    dtype, device = inverse_x0.dtype, inverse_x0.device
    information, spread = _muon_information(problem, m)
    pair_matrix = 0.5 * information if spread is None else 0.5 * information - spread
    paths = problem.paths
    grid = math.prod(problem.grid_shape[-3:])
    n_batch = math.prod(problem.batch_shape)
    muons = pair_matrix.shape[0]
    # Each muon's entries, padded to the longest path: (muons, L).
    order = torch.argsort(paths.muon, stable=True)
    row = paths.muon[order]
    counts = torch.bincount(row, minlength=muons)
    width = int(counts.max()) if counts.numel() else 0
    out = torch.zeros(n_batch * grid * grid, dtype=dtype, device=device)
    if width == 0:
        return out.reshape(n_batch, grid, grid)
    start = torch.cumsum(counts, 0) - counts
    ends = torch.cumsum(counts, 0)
    for lo in range(0, muons, _FISHER_CHUNK):
        hi = min(muons, lo + _FISHER_CHUNK)
        first, last = int(start[lo]), int(ends[hi - 1])
        sel = order[first:last]
        r = row[first:last] - lo
        position = torch.arange(first, last, device=device) - start[row[first:last]]
        n = hi - lo
        # This chunk's muons, their entries padded to the longest path: (n, L).
        vox = torch.full((n, width), -1, dtype=torch.long, device=device)
        vox[r, position] = paths.voxel[sel]
        g = torch.zeros(n, width, 3, dtype=dtype, device=device)
        g[r, position] = problem.scaled_w.T[sel]
        pairs = torch.einsum("ram,rmn,rbn->rab", g, pair_matrix[lo:hi], g)
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
    per_entry = 0.5 * _weighted_score(problem, m)
    j = torch.zeros_like(inverse_x0).index_add(0, problem.paths.voxel, per_entry**2)
    info = _fisher_diagonal(problem, m)
    crossed = (problem.count > 0) & (info > 0)
    safe = torch.where(crossed, info, torch.ones_like(info))
    variance = j / safe**2
    if at_least_fisher:
        variance = torch.maximum(variance, 1 / safe)
    return torch.where(crossed, variance, torch.full_like(info, math.inf))
