"""The ML/EM model: each muon's transverse data, the problem the iterations need, the moments of
its Gaussian (or mixture over momentum classes) likelihood, the EM step and the likelihood.
See :mod:`mutomo.reco.mlem` for the formulas."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, is_dataclass, replace
from typing import Any

import torch
from torch import Tensor

from mutomo.errors import MutomoError
from mutomo.reco.mlem.paths import PathLengths
from mutomo.reco.momentum import ClassRanges
from mutomo.reco.track_fit import Tracks
from mutomo.units import HIGHLAND_E0, MUON_MASS

# A density never falls below this fraction of its previous value in one step (S_ij >= 0 makes
# the update non-negative exactly; the floor only guards rounding).
POSITIVITY_FLOOR = 1e-6
LOG_2PI = math.log(2 * math.pi)
MAX_MEASUREMENT_VARIANCE = 1.0
"""Largest measurement variance (rad^2 for angles, m^2 for displacements) of a muon ML/EM uses;
also the variance of the outlier component (:func:`with_outliers`), a muon that carries no
scattering information."""


@dataclass(frozen=True)
class TransverseScatters:
    """Each muon's deflection and displacement in the frame of its incoming direction.

    Attributes:
        deflection: ``(mu, 2, 2)``: ``[k, 0]`` the deflection angle (rad) and ``[k, 1]`` the
            displacement at the exit plane (m) along the transverse directions ``k = u, v``
            (module docstring).
        noise: ``(mu, 4, 4)`` their measurement covariance, in the order
            ``(u angle, u displacement, v angle, v displacement)`` (rad^2, rad m, m^2).
    """

    deflection: Tensor
    noise: Tensor


def transverse_scatters(
    incoming: Tracks, outgoing: Tracks, z_exit: float, measurement_error: bool = True
) -> TransverseScatters:
    """Deflection angles and displacements in the incoming track's transverse frame.

    Args:
        incoming, outgoing: tracks of the same muons above and below the volume.
        z_exit: height of the exit plane (m), the volume's bottom face.
        measurement_error: propagate the tracks' covariances into ``noise`` (else zeros).

    Returns:
        :class:`TransverseScatters`.
    """
    t_in, t_out = incoming.slope, outgoing.slope
    tx, ty = t_in.unbind(-1)
    norm = torch.sqrt(1 + tx**2 + ty**2)
    gx = torch.sqrt(1 + tx**2)
    # G^-1 for G = [[gx, 0], [tx ty / gx, n / gx]] (module docstring).
    zero = torch.zeros_like(tx)
    g_inv = torch.stack([1 / gx, zero, -tx * ty / (gx * norm), gx / norm], -1).reshape(-1, 2, 2)
    h_in, h_out = z_exit - incoming.z_ref, z_exit - outgoing.z_ref
    delta = (outgoing.xy + t_out * h_out) - (incoming.xy + t_in * h_in)
    angle = (g_inv @ (t_in - t_out)[..., None])[..., 0] / norm[:, None]  # towards -z: see the module docstring
    displacement = (g_inv @ delta[..., None])[..., 0]
    deflection = torch.stack([angle, displacement], -1)  # (mu, k, a)
    if not measurement_error:
        return TransverseScatters(deflection, torch.zeros(*tx.shape, 4, 4, dtype=tx.dtype, device=tx.device))
    # Jacobian of (k, a) with respect to (c, m) = (position x/y, slope x/y) of each track:
    # J[k, a, c, m] = B[a, c] G^-1[k, m], with B_out = [[0, -1/n], [1, h_out]] and B_in = -[[0, -1/n], [1, h_in]].
    one = torch.ones_like(tx)

    def jacobian(sign: float, h: float) -> Tensor:
        b = sign * torch.stack([zero, -1 / norm, one, h * one], -1).reshape(-1, 2, 2)
        return torch.einsum("iac,ikm->ikacm", b, g_inv).reshape(-1, 4, 4)

    j_in, j_out = jacobian(-1.0, h_in), jacobian(1.0, h_out)
    noise = j_in @ incoming.covariance @ j_in.transpose(-1, -2) + j_out @ outgoing.covariance @ j_out.transpose(-1, -2)
    return TransverseScatters(deflection, noise)


@dataclass(frozen=True)
class EMProblem:
    """Everything the EM iterations need, precomputed once.

    Attributes:
        paths: the sparse path lengths (voxel indices offset by batch entry), one row per muon.
        scaled_w: ``(3, E)`` ``c_i (W_00, W_01, W_11)`` of each entry (rad^2 m^-1 units: times
            ``rho`` in m^-1 they are covariances); where the momentum lost is known, ``c`` of
            the momentum at the entry's depth (:func:`momentum_along_path`). With ``classes >
            1``, ``(W_00, W_01, W_11)`` alone: each class's ``c`` is in ``scale``.
        deflection: ``(mu, 2, 2)`` data ``D_i`` (see :class:`TransverseScatters`).
        noise: ``(mu, 4, 4)`` measurement covariance ``E_i``.
        scale: ``(mu,)`` ``c_i = (E0 / (beta_i p_i))^2`` (dimensionless).
        weight: ``(mu,)`` muon likelihood weights.
        count: ``(V,)`` weighted number of muons crossing each voxel, ``M_j``.
        batch: ``(mu,)`` flat batch index of each muon, or ``None``.
        grid_shape: ``(*batch_shape, nx, ny, nz)``; ``V`` is its product.
        classes: momentum classes per muon (1: the momenta are given). With ``K > 1`` each
            "muon" row of ``deflection``, ``noise``, ``scale``, ``weight``, ``batch`` and
            ``log_prior`` is a (muon, momentum class) pair, the ``K`` rows of a muon
            consecutive, each carrying ``1 / K`` of the muon's weight and ``c`` of its class's
            momentum (:class:`MaximumLikelihoodEM`, ``momentum_prior``); the path entries stay
            one set per muon (``paths.muon`` counts muons): a class only rescales the muon's
            covariance, so every sum over a path is done once per muon (:func:`_moments`,
            :func:`_weighted_score`).
        log_prior: ``(mu,)`` log prior probability of each row's class (``-inf``: excluded by
            the range cut), with ``classes > 1``; else ``None``.
        muons: ``(n,)`` the index in the data (:class:`ScatterData`'s flat muon axis) of each
            muon, before the expansion into classes (muons of zero weight and those whose path
            misses the grid are not in the problem); ``None`` if not built from data.
        outlier_fraction: ``epsilon``, the prior probability that a muon is an outlier, whose
            data the Gaussian model does not describe (:func:`with_outliers`); 0: none.
        log_outlier: ``(n,)`` with ``outlier_fraction > 0``, each muon's log-density under the
            outlier component, without the ``2 ln 2 pi`` (:func:`with_outliers`); else ``None``
            (so ``log_outlier is not None`` says whether the problem has the component).
        ranges: with momentum classes, each muon's classes before the range cut and what the cut
            needs (:class:`~mutomo.reco.momentum.ClassRanges`), for a material's evidence that
            redoes the cut under the material it tries (:func:`~mutomo.reco.mlem.voxel_log_likelihoods`);
            ``None``: the evidence keeps ``log_prior``'s cut. The EM does not read it.
    """

    paths: PathLengths
    scaled_w: Tensor
    deflection: Tensor
    noise: Tensor
    scale: Tensor
    weight: Tensor
    count: Tensor
    batch: Tensor | None
    grid_shape: tuple[int, ...]
    classes: int = 1
    log_prior: Tensor | None = None
    muons: Tensor | None = None
    outlier_fraction: float = 0.0
    log_outlier: Tensor | None = None
    ranges: ClassRanges | None = None

    def __post_init__(self) -> None:
        if (self.log_outlier is None) != (self.outlier_fraction == 0):
            raise MutomoError(
                f"an outlier fraction ({self.outlier_fraction}) needs the outliers' log-densities and zero needs none: "
                "build them with with_outliers"
            )

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return self.grid_shape[:-3]

    def per_muon(self, rows: Tensor) -> Tensor:
        """``(..., n)`` the sum over each muon's ``K`` class rows of ``rows`` ``(..., n K)``."""
        if self.classes == 1:
            return rows
        return rows.reshape(*rows.shape[:-1], -1, self.classes).sum(-1)

    def per_row(self, muons: Tensor) -> Tensor:
        """``(..., n K)`` a per-muon ``(..., n)`` quantity repeated on each of its class rows."""
        return muons if self.classes == 1 else muons.repeat_interleave(self.classes, -1)


# 2 x 2 matrices as their four entries (m00, m01, m10, m11), each ``(mu,)``: the per-muon
# algebra below is elementwise, several times faster than batched (mu, 2, 2) matmuls on a CPU.
M2 = tuple[Tensor, Tensor, Tensor, Tensor]


def _mul(a: M2, b: M2) -> M2:
    return (
        a[0] * b[0] + a[1] * b[2],
        a[0] * b[1] + a[1] * b[3],
        a[2] * b[0] + a[3] * b[2],
        a[2] * b[1] + a[3] * b[3],
    )


def _sub(a: M2, b: M2) -> M2:
    return a[0] - b[0], a[1] - b[1], a[2] - b[2], a[3] - b[3]


def _transpose(a: M2) -> M2:
    return a[0], a[2], a[1], a[3]


def _inverse(a: M2) -> tuple[M2, Tensor]:
    det = a[0] * a[3] - a[1] * a[2]
    inv = 1 / det
    return (a[3] * inv, -a[1] * inv, -a[2] * inv, a[0] * inv), det


def _apply(a: M2, x: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    return a[0] * x[0] + a[1] * x[1], a[2] * x[0] + a[3] * x[1]


@dataclass(frozen=True)
class _Moments:
    """Per-muon quantities at the current density, each ``(mu, ...)``.

    Attributes:
        r: ``(3, mu)`` the entries ``(R_00, 2 R_01, R_11)`` of ``R = sum_k (q_k q_k^T - A_kk)``
            (``A = Sigma^-1``, ``q = A D``, ``k`` over the transverse directions), so that
            ``tr(R W) = r . (W_00, W_01, W_11)`` for a symmetric ``W``.
        quadratic: ``(mu,)`` ``D^T Sigma^-1 D``.
        log_det: ``(mu,)`` ``ln det Sigma``.
        inverse: the blocks ``(A_uu, A_uv, A_vv)`` of ``Sigma^-1``.
    """

    r: Tensor
    quadratic: Tensor
    log_det: Tensor
    inverse: tuple[M2, M2, M2]

    def blocks(self) -> Tensor:
        """``(mu, 2, 2, 2, 2)`` ``Sigma^-1`` indexed ``[k, a, l, b]``."""
        a_uu, a_uv, a_vv = self.inverse

        def mat(m: M2) -> Tensor:
            return torch.stack(m, -1).reshape(-1, 2, 2)

        # Stacking (mu, a, b) blocks along dim 2 gives (mu, a, l, b), then along dim 1 the k.
        rows = [[mat(a_uu), mat(a_uv)], [mat(_transpose(a_uv)), mat(a_vv)]]
        return torch.stack([torch.stack(row, 2) for row in rows], 1)


def _moments(inverse_x0: Tensor, problem: EMProblem) -> _Moments:
    """``Sigma_i = c_i sum_j rho_j (I_2 (x) W_ij) + E_i`` inverted by 2 x 2 blocks (Schur
    complement), with ``q_i = Sigma_i^-1 D_i``, the quadratic form and ``ln det Sigma_i``.
    With momentum classes the sum over the path is the muon's, times each class row's ``c``."""
    paths = problem.paths
    mu = problem.deflection.shape[0]
    # Everything per muon is a contiguous (mu,) row: gathers and scatters of strided or 2-D
    # tensors are several times slower on a CPU, in the forward and in the backward pass.
    rho = inverse_x0.index_select(0, paths.voxel)
    zero = torch.zeros(mu // problem.classes, dtype=rho.dtype, device=rho.device)
    s0, s1, s2 = (zero.index_add(0, paths.muon, w * rho) for w in problem.scaled_w)
    if problem.classes > 1:
        s0, s1, s2 = (problem.per_row(s) * problem.scale for s in (s0, s1, s2))
    n = problem.noise.reshape(mu, 16).T.contiguous()  # n[4 r + c]: row r = 2 k + a, column c = 2 l + b
    d = problem.deflection.reshape(mu, 4).T.contiguous()
    g = _gaussian(s0, s1, s2, n, d)
    qu, qv, (a_uu, _, a_vv) = g.qu, g.qv, g.inverse
    r = torch.stack(
        [
            qu[0] * qu[0] + qv[0] * qv[0] - a_uu[0] - a_vv[0],
            2 * (qu[0] * qu[1] + qv[0] * qv[1] - a_uu[1] - a_vv[1]),
            qu[1] * qu[1] + qv[1] * qv[1] - a_uu[3] - a_vv[3],
        ]
    )
    return _Moments(r=r, quadratic=g.quadratic, log_det=g.log_det, inverse=g.inverse)


@dataclass(frozen=True)
class _Gaussian:
    """A muon row's covariance inverted: ``q = Sigma^-1 D`` as its ``u`` and ``v`` pairs, the
    blocks ``(A_uu, A_uv, A_vv)`` of ``Sigma^-1``, ``D^T Sigma^-1 D`` and ``ln det Sigma``."""

    qu: tuple[Tensor, Tensor]
    qv: tuple[Tensor, Tensor]
    inverse: tuple[M2, M2, M2]
    quadratic: Tensor
    log_det: Tensor


def _gaussian(s0: Tensor, s1: Tensor, s2: Tensor, n: Tensor, d: Tensor) -> _Gaussian:
    """``Sigma = I_2 (x) S + E`` with ``S = [[s0, s1], [s1, s2]]`` (each ``(rows,)``, the
    scattering part) and ``E`` the measurement noise ``n`` (``(16, rows)``, ``n[4 r + c]``),
    inverted by 2 x 2 blocks (Schur complement), against the data ``d`` (``(4, rows)``)."""
    p_blk: M2 = (s0 + n[0], s1 + n[1], s1 + n[4], s2 + n[5])
    q_blk: M2 = (n[2], n[3], n[6], n[7])
    r_blk: M2 = (s0 + n[10], s1 + n[11], s1 + n[14], s2 + n[15])
    p_inv, p_det = _inverse(p_blk)
    x = _mul(p_inv, q_blk)
    cross = _mul(_transpose(q_blk), x)
    a_vv, schur_det = _inverse(_sub(r_blk, cross))
    x_s = _mul(x, a_vv)
    a_uv: M2 = (-x_s[0], -x_s[1], -x_s[2], -x_s[3])  # -P^-1 Q S^-1
    a_uu = _sub(p_inv, _mul(a_uv, _transpose(x)))
    d_u, d_v = (d[0], d[1]), (d[2], d[3])
    au_du, auv_dv = _apply(a_uu, d_u), _apply(a_uv, d_v)
    avu_du, av_dv = _apply(_transpose(a_uv), d_u), _apply(a_vv, d_v)
    qu = (au_du[0] + auv_dv[0], au_du[1] + auv_dv[1])
    qv = (avu_du[0] + av_dv[0], avu_du[1] + av_dv[1])
    quadratic = qu[0] * d_u[0] + qu[1] * d_u[1] + qv[0] * d_v[0] + qv[1] * d_v[1]
    return _Gaussian(qu, qv, (a_uu, a_uv, a_vv), quadratic, torch.log(p_det) + torch.log(schur_det))


def _cast(value: Any, dtype: torch.dtype) -> Any:
    """A dataclass of tensors (nested) with its floating-point tensors cast to ``dtype``."""
    if isinstance(value, Tensor):
        return value.to(dtype) if value.is_floating_point() else value
    if is_dataclass(value) and not isinstance(value, type):
        return replace(value, **{f.name: _cast(getattr(value, f.name), dtype) for f in fields(value) if f.init})
    return value


def em_update(inverse_x0: Tensor, problem: EMProblem) -> Tensor:
    """One EM step on ``rho = 1 / X0`` (m^-1), ``(V,)`` flat over the batch and the grid
    (module docstring: ``rho_j <- rho_j + rho_j^2 sum_i w_i tr((Q_i - P_i) W'_ij) / (4 M_j)``).
    Voxels no muon crosses keep their value."""
    return _em_step(inverse_x0, problem, _moments(inverse_x0, problem))


def _mixture(problem: EMProblem, m: _Moments) -> tuple[Tensor, Tensor]:
    """``(weight, log_marginal)``, each ``(mu,)`` over the rows: the rows' EM weights and each
    row's muon's log-likelihood without the ``2 ln 2 pi`` (the same on the K rows of a muon).

    One class: the muon weights and the Gaussian log-likelihood. ``K`` classes: the posterior
    ``r_ik = pi_ik N(D_i; 0, Sigma_ik) / sum_k pi_ik N(D_i; 0, Sigma_ik)`` of each class at the
    current density (the E-step over the hidden momentum), times the muon's weight ``K w_i / K``,
    and ``ln sum_k pi_ik N(D_i; 0, Sigma_ik)``. With outliers (:func:`with_outliers`) the
    mixture has one more component, ``epsilon q_i`` against ``(1 - epsilon)`` on the classes:
    the rows' weights are their posterior times the muon's weight (their sum over the rows
    ``w_i (1 - r_i,out)``, the outlier's share carrying no density), and the log-likelihood
    ``ln((1 - epsilon) sum_k pi_ik N_ik + epsilon q_i)``."""
    log_like = -0.5 * m.log_det - 0.5 * m.quadratic
    if (problem.classes == 1 or problem.log_prior is None) and problem.log_outlier is None:
        return problem.weight, log_like
    k = problem.classes
    joint = log_like if problem.log_prior is None else problem.log_prior + log_like
    joint = joint.reshape(-1, k)
    if problem.log_outlier is not None:
        core = joint + math.log1p(-problem.outlier_fraction)
        outlier = problem.log_outlier[:, None] + math.log(problem.outlier_fraction)
        log_marginal = torch.logsumexp(torch.cat([core, outlier], -1), -1, keepdim=True)
        posterior = torch.exp(core - log_marginal)  # sums to 1 - r_i,out over the classes
    else:
        log_marginal = torch.logsumexp(joint, -1, keepdim=True)
        posterior = torch.softmax(joint, -1)  # exactly 0 for the classes the range cut excludes
    return problem.weight * k * posterior.reshape(-1), log_marginal.expand(-1, k).reshape(-1)


def outlier_posterior(inverse_x0: Tensor, problem: EMProblem) -> Tensor:
    """``(n,)`` each muon's posterior probability ``r_i,out`` of the outlier component
    (:func:`with_outliers`) at the density ``inverse_x0`` (flat ``(V,)``, m^-1), one per muon of
    the problem (:attr:`EMProblem.muons` says which of the data's); 0 without the component or
    for a muon of zero weight."""
    if problem.log_outlier is None:
        return torch.zeros(problem.weight.shape[0] // problem.classes, dtype=problem.weight.dtype)
    weight = problem.per_muon(problem.weight)
    core = problem.per_muon(_mixture(problem, _moments(inverse_x0, problem))[0])
    return torch.where(weight > 0, 1 - core / torch.where(weight > 0, weight, torch.ones_like(weight)), 0.0)


def posterior_momentum(inverse_x0: Tensor, problem: EMProblem) -> Tensor:
    """``(n,)`` each muon's posterior effective momentum (GeV/c) at the density ``inverse_x0``
    (flat ``(V,)``, m^-1) of a problem with momentum classes, one per muon of the problem
    (:attr:`EMProblem.muons` says which of the data's).

    The posterior ``r_ik`` of the classes given the muon's deflection and displacement at that
    map (the E-step's, :func:`_mixture`) averages the Highland scale ``c_ik = (E0 / (beta_k
    p_k))^2``, the factor by which a momentum enters every scattering variance; the momentum
    returned is the one with that scale, ``beta p = E0 / sqrt(sum_k r_ik c_ik)``. With it, a
    method that needs one momentum per muon (PoCA X0, ASR, BCA) sees on average the variance
    the mixture model predicts for each muon."""
    if problem.log_prior is None:
        raise MutomoError("posterior_momentum needs a problem with momentum classes (a momentum prior)")
    m = _moments(inverse_x0, problem)
    k = problem.classes
    joint = (problem.log_prior + (-0.5 * m.log_det - 0.5 * m.quadratic)).reshape(-1, k)
    scale = (torch.softmax(joint, -1) * problem.scale.reshape(-1, k)).sum(-1)
    beta_p2 = HIGHLAND_E0**2 / scale  # (beta p)^2 = p^4 / (p^2 + m^2): solve for p^2
    p2 = 0.5 * (beta_p2 + torch.sqrt(beta_p2**2 + 4 * beta_p2 * MUON_MASS**2))
    return torch.sqrt(p2)


def _weighted_score(problem: EMProblem, m: _Moments, weight: Tensor | None = None) -> Tensor:
    """``(E,)`` per path entry ``sum_k w_ik tr((Q_ik - P_ik) W'_ikj)``: twice the weighted
    score of ``rho_j`` in the muon's log-likelihood (one class: ``w_i tr((Q_i - P_i) W'_ij)``;
    classes: the EM weights ``w_ik`` of :func:`_mixture`, whose sum over ``k`` is Louis' score of
    the mixture). ``W'_ikj = c_ik W_ij``: the classes are summed per muon, ``sum_k w_ik c_ik
    R_ik``, before the path entries are read. ``weight``: the rows' EM weights if already
    computed (:func:`_mixture`)."""
    r = m.r * (_mixture(problem, m)[0] if weight is None else weight)
    if problem.classes > 1:
        r = problem.per_muon(r * problem.scale)
    r0, r1, r2 = (x.index_select(0, problem.paths.muon) for x in r)
    return r0 * problem.scaled_w[0] + r1 * problem.scaled_w[1] + r2 * problem.scaled_w[2]


def _em_step(inverse_x0: Tensor, problem: EMProblem, m: _Moments) -> Tensor:
    paths = problem.paths
    weight = _mixture(problem, m)[0]
    total = torch.zeros_like(inverse_x0).index_add(0, paths.voxel, _weighted_score(problem, m, weight))
    count = problem.count
    if problem.log_outlier is not None:
        # The M-step's count is the muons' weight in the Gaussian components, w_i (1 - r_i,out).
        core = problem.per_muon(weight).index_select(0, paths.muon)
        count = torch.zeros_like(count).index_add(0, paths.voxel, core)
    crossed = count > 0
    step = total / torch.where(crossed, 4 * count, torch.ones_like(count))
    updated = inverse_x0 + inverse_x0**2 * step
    return torch.maximum(updated, POSITIVITY_FLOOR * inverse_x0)


def log_likelihood(inverse_x0: Tensor, problem: EMProblem) -> Tensor:
    """Weighted log-likelihood of the data at ``rho = 1 / X0`` (flat ``(V,)``, m^-1):
    ``sum_i w_i [-1/2 ln det Sigma_i - 1/2 D_i^T Sigma_i^-1 D_i - 2 ln 2 pi]``, one value per
    batch entry, ``(*batch_shape,)`` (a scalar without batch axes)."""
    return _log_likelihood(problem, _moments(inverse_x0, problem))


def _log_likelihood(problem: EMProblem, m: _Moments) -> Tensor:
    # Each row carries its share of the muon's weight: the K rows of a muon sum to its term.
    per_muon = problem.weight * (_mixture(problem, m)[1] - 2 * LOG_2PI)
    if problem.batch is None:
        return per_muon.sum()
    n_batch = math.prod(problem.batch_shape)
    out = torch.zeros(n_batch, dtype=per_muon.dtype, device=per_muon.device).index_add(0, problem.batch, per_muon)
    return out.reshape(problem.batch_shape)


def with_outliers(problem: EMProblem, fraction: float) -> EMProblem:
    """The problem with an outlier component in each muon's likelihood:

        p(D_i) = (1 - epsilon) sum_k pi_ik N(D_i; 0, Sigma_ik) + epsilon N(D_i; 0, V I_4 + E_i),

    ``epsilon = fraction`` and ``V`` = :data:`MAX_MEASUREMENT_VARIANCE`. The Gaussian model describes
    multiple scattering (Highland's width, PDG Review eq. 34.15: the central 98 %); it has no
    tail for a hard single scatter (Rutherford's ``P(> theta) = (theta_c / theta)^2``, which the
    simulation draws: :mod:`mutomo.volume.scattering`) or a track the fits got wrong. One such
    muon, whose deflection no momentum class explains, can only be explained by raising the
    density of the voxels on its path: a voxel crossed by 14 muons, one of them deflected by
    3.7 rad, was fitted at 1/X0 = 20,641 m^-1 against a true 2.7 (benchmarks/README.md, "A
    tail in the likelihood"). The broad component, independent of the density, takes such a
    muon instead: its posterior ``r_i,out`` removes its weight from the EM step and caps what it
    says about any voxel at ``ln epsilon q_i`` (the mixture of a model with a uniform-like
    outlier density: D. W. Hogg, J. Bovy & D. Lang, "Data analysis recipes: fitting a model to
    data", arXiv:1008.4686, sec. 3). ``V`` is the variance beyond which the method already
    drops a muon's measurement as carrying no scattering information; ``epsilon`` is a prior
    fraction, not fitted: on that portal scan, 32, 46 and 76 of 90,866 muons had an outlier
    posterior above 1/2 at ``epsilon`` = 1e-4, 1e-3 and 1e-2, and the map's largest 1/X0 was
    160, 158 and 164 m^-1 (20,641 without the component)."""
    if not 0 <= fraction < 0.5:
        raise MutomoError(f"the outlier fraction must be in [0, 0.5); got {fraction!r}")
    if fraction == 0:
        return replace(problem, outlier_fraction=0.0, log_outlier=None)
    k = problem.classes
    rows = problem.deflection[::k].reshape(-1, 4).T.contiguous()
    noise = problem.noise[::k].reshape(-1, 16).T.contiguous()
    variance = torch.full_like(rows[0], MAX_MEASUREMENT_VARIANCE)
    g = _gaussian(variance, torch.zeros_like(variance), variance, noise, rows)
    return replace(problem, outlier_fraction=float(fraction), log_outlier=-0.5 * g.log_det - 0.5 * g.quadratic)


def _highland_scale(p: Tensor) -> Tensor:
    """``(E0 / (beta p))^2`` (dimensionless) of momenta ``p`` (GeV/c)."""
    beta_p = p**2 / torch.sqrt(p**2 + MUON_MASS**2)
    return (HIGHLAND_E0 / beta_p) ** 2


def momentum_along_path(paths: PathLengths, momentum: Tensor, loss: Tensor) -> Tensor:
    """``(E,)`` each entry's momentum (GeV/c): the muon's ``momentum`` (the mean of entering and
    leaving) corrected linearly along its path through the volume, from ``momentum + loss / 2``
    where it enters to ``momentum - loss / 2`` where it leaves, at the middle of the entry's
    voxel. Linear in path is exact for a constant stopping power (one material, a relativistic
    muon); elsewhere it spreads the loss by path rather than by density. Floored at 10 MeV/c.

    Why: a muon slows as it crosses, so it scatters more in the voxels it crosses last. With one
    momentum for the whole path, ML/EM put that excess in the bottom layers: on 30 cm of iron in
    three 10 cm layers, ln X0 came out -0.12 (bottom), +0.05, +0.20 (top) against +0.05 in
    every layer with the energy loss switched off (benchmarks/README.md, "Voxel X0 pulls")."""
    total = torch.zeros_like(momentum).index_add(0, paths.muon, paths.length).index_select(0, paths.muon)
    depth = (total - paths.tail - 0.5 * paths.length) / total.clamp(min=1e-9)  # 0 on entering, 1 leaving
    p = momentum.index_select(0, paths.muon) + loss.index_select(0, paths.muon) * (0.5 - depth)
    return p.clamp(min=0.01)


def with_momentum_classes(
    problem: EMProblem, log_prior: Tensor, momentum: Tensor, ranges: ClassRanges | None = None
) -> EMProblem:
    """The problem with each muon's momentum a hidden class: every muon becomes ``K`` rows
    (class-minor), row ``(i, k)`` with ``c`` of ``momentum[i, k]`` (GeV/c), prior
    ``log_prior[i, k]`` and ``1 / K`` of the muon's weight; the path entries stay the muon's,
    their ``W`` without ``c`` (see :class:`EMProblem`). Classes excluded (``-inf``) for every
    muon are dropped first. ``log_prior`` and ``momentum`` are ``(mu, K)``, the muons of
    ``problem`` (one class each); ``ranges``, the same classes before the range cut
    (:attr:`EMProblem.ranges`), loses the same classes."""
    if problem.classes != 1:
        raise MutomoError("with_momentum_classes needs a problem with one momentum class per muon")
    mu, k = log_prior.shape
    if mu != problem.weight.shape[0] or tuple(momentum.shape) != (mu, k):
        raise MutomoError(
            f"log_prior and momentum must both have shape ({problem.weight.shape[0]}, K); "
            f"got {tuple(log_prior.shape)} and {tuple(momentum.shape)}"
        )
    # Classes no muon may be in (e.g. below every muon's range cut) carry nothing: drop them
    # (12 classes over 0.1-1000 GeV/c lose 2 to the range cut of 1 m of concrete, 3 to 1 m of iron).
    possible = torch.isfinite(log_prior).any(0)
    if bool(possible.any()) and not bool(possible.all()):
        log_prior, momentum = log_prior[:, possible], momentum[:, possible]
        ranges = None if ranges is None else ranges.select_classes(possible)
        k = log_prior.shape[1]
    dtype, device = problem.weight.dtype, problem.weight.device
    scale = _highland_scale(momentum.to(device=device, dtype=dtype)).reshape(-1)
    w = problem.paths.weight_matrices()
    return replace(
        problem,
        scaled_w=w if k > 1 else w * scale.index_select(0, problem.paths.muon),  # one class: c on the entries
        deflection=problem.deflection.repeat_interleave(k, 0),
        noise=problem.noise.repeat_interleave(k, 0),
        scale=scale,
        weight=(problem.weight / k).repeat_interleave(k),
        batch=None if problem.batch is None else problem.batch.repeat_interleave(k),
        classes=k,
        log_prior=log_prior.to(device=device, dtype=dtype).reshape(-1),
        ranges=ranges,
    )
