"""Radiation length per voxel from scattering, by inverting the Highland formula.

For a muon of momentum p crossing a path L of material with radiation length X0, the
projected angle has the Gaussian width (PDG eq. 34.15, Lynch & Dahl 1991)

    theta0 = (13.6 MeV / (beta p)) sqrt(t) (1 + 0.038 ln(t / beta^2)),   t = L / X0.

Normalising each projected deflection by the muon's own momentum, ``u = theta beta p / 13.6 MeV``,
every muon of a voxel samples ``u ~ N(0, g(t) + m)`` with ``g(t) = t (1 + 0.038 ln(t / beta^2))^2``
and ``m`` the measurement variance of the deflection from the two track fits (their slope
covariances, normalised the same way), which is subtracted from each muon's ``u^2``: without it,
the fast muons, whose deflections are mostly detector resolution, drag X0 down.
Per voxel the muons are weighted by their PoCA probability for that voxel, their muon
weight, and the inverse variance of their own estimate, ``1 / (sigma^2 + m)^2`` (a muon
measured with m >> sigma^2, e.g. a 100 GeV muon under a 100 um tracker, carries almost no
information on sigma^2 and would otherwise swamp a voxel with noise). The core width is
estimated as Highland defines it, from the central 98 %: the weighted second moment of the
projections with ``|u| < 2.326 sqrt(sigma^2 + m)``, corrected for the truncation
(``E[u^2 | |u| < k s] = s^2 (1 - 2 k phi(k) / (2 Phi(k) - 1))``), iterated with the weights
from the plain second moment. ``g(t) = sigma^2`` is then solved for t by Newton's method in
ln t (the log term kept), with the gradient attached through the final step (implicit
function theorem), and ``X0 = L / t`` with L the voxel's weighted mean path through the volume.

The path L is each muon's whole path through the passive volume: a muon's deflection is the
sum of its scatters everywhere along it, so on a uniform block every muon sees ``t = L / X0``
exactly, whatever voxel its PoCA falls in. Elsewhere this is the standard PoCA approximation.

Uncertainty. The core-width estimate is an M-estimator: it solves
``sum_i W_i psi_i(sigma^2) = 0`` over the projections i of a voxel, with
``psi_i = (x_i^2 / f - m_i - sigma^2) 1{x_i^2 < k^2 T_i}``, ``T_i = sigma^2 + m_i`` the variance
of projection i, ``f`` the truncation factor above and ``k = 2.326``. Its asymptotic variance
is the sandwich ``var(sigma^2) = sum W_i^2 E[psi_i^2] / (sum W_i E[d psi_i / d sigma^2])^2``
(Huber & Ronchetti, *Robust Statistics*, 2nd ed., Wiley 2009, Sec. 6.2; the derivative
includes the moving truncation edge). For Gaussian projections, with ``y = x^2 / T`` a
chi-square of one degree of freedom, ``P = 2 Phi(k) - 1``, ``mu_4 = E[y^2; y < k^2] =
3 P - 2 k (k^2 + 3) phi(k)`` (moments of the truncated normal, Johnson, Kotz & Balakrishnan,
*Continuous Univariate Distributions* vol. 1, 2nd ed., Wiley 1994, Sec. 10.1):

    E[psi_i^2] = T_i^2 A,                      A = mu_4 / f^2 - P                  (= 1.506),
    E[d psi_i / d sigma^2] = D,                D = -P + k phi(k) (k^2 / f - 1)     (= -0.658),
    var(sigma^2) = (A / D^2) sum W_i^2 T_i^2 / (sum W_i)^2,

with ``W_i`` the muon weights without the truncation mask (the expected fraction kept is in
``P``, ``A`` and ``D``). Without truncation (``truncation_passes=0``) the estimate is the plain
mean and ``A = 2``, ``D = -1`` (the variance of a chi-square of one degree of freedom). For n
muons of equal weight and negligible measurement error this is ``var(ln sigma^2) =
(A / D^2) / (2 n) = 1.74 / n``: the self-consistent truncation costs 42 % of the ``1 / n`` of the
plain second moment of 2n Gaussian projections. The constants come from this calculation, not
from a fit. The expected value (with the estimated ``sigma^2`` plugged into ``T_i``) is used
rather than the empirical ``sum W_i^2 psi_i^2``: with a handful of muons the empirical one is
itself so noisy, and so correlated with the estimate, that the pulls of sparse voxels were
2-3 wide (benchmarks/README.md, "Voxel X0 pulls"). It is propagated through ``dt/dsigma^2 =
1 / g'(t)``: ``sigma(ln X0) = sigma(sigma^2) / (t g'(t))`` (the path's spread is neglected),
and the reported ``uncertainty`` is ``X0 sigma(ln X0)``; the pull of ``ln X0`` is the
well-behaved one for a scale (tests/physics/test_voxel_pulls.py).

Voxels informed by fewer than ``min_muons`` effective muons, ``n_eff = (sum w)^2 / sum w^2``
over the voxel's muon weights (the number of muons for binned PoCA with unit weights), are not
measured: ``x0 = 0``, ``uncertainty = inf``. The default, 5, is where the relative error of X0
is ~60 % (``sqrt(1.74 / 5)``) and the pulls are still within 15 % of unit width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from mutomo.errors import MutomoError
from mutomo.reco.maps import ScatterData, VoxelMap
from mutomo.reco.poca import Scatters
from mutomo.reco.track_fit import Tracks
from mutomo.reco.voxelise import (
    VoxelWeights,
    extended_poca,
    poca_voxel_weights,
    poca_within_height,
    scatter_sum,
    tail_share,
)
from mutomo.units import HIGHLAND_E0, HIGHLAND_LOG_COEFF, MUON_MASS
from mutomo.volume.grid import PassiveVolume
from mutomo.volume.scattering import highland_inverse

# Central 98 %: |u| < k sigma with k = Phi^-1(0.99).
CORE_K = 2.3263478740408408
# Smallest g(t) used to weight muons (t ~ 1e-3: 0.4 mm of lead, 36 cm of water).
SIGMA2_FLOOR = 1e-3


#: Default smallest effective number of muons for a voxel to be measured (module docstring).
DEFAULT_MIN_MUONS = 5.0


def _truncation_factor(k: float) -> float:
    """``f = E[y | y < k^2]`` for ``y = x^2``, x standard normal: ``1 - 2 k phi(k) / P``."""
    phi = math.exp(-0.5 * k * k) / math.sqrt(2 * math.pi)
    inside = math.erf(k / math.sqrt(2))
    return 1 - 2 * k * phi / inside


def truncated_variance_constants(k: float | None) -> tuple[float, float]:
    """``(A, D)`` of the core-width M-estimator (module docstring): ``var(sigma^2) = (A / D^2)
    sum W^2 T^2 / (sum W)^2``. ``k = None``: no truncation, ``(2, -1)``.

    Example:
        >>> a, d = truncated_variance_constants(CORE_K)
        >>> round(a, 3), round(d, 3), round(a / d**2, 3)
        (1.506, -0.658, 3.481)
    """
    if k is None:
        return 2.0, -1.0
    phi = math.exp(-0.5 * k * k) / math.sqrt(2 * math.pi)
    inside = math.erf(k / math.sqrt(2))  # P = 2 Phi(k) - 1
    f = _truncation_factor(k)
    mu4 = 3 * inside - 2 * k * (k * k + 3) * phi  # E[x^4; |x| < k]
    return mu4 / f**2 - inside, -inside + k * phi * (k * k / f - 1)


def _ratio(num: Tensor, den: Tensor) -> Tensor:
    """``num / den`` where ``den > 0``, else 0, with finite gradients. A floor such as
    ``den.clamp(min=1e-30)`` is not enough in float32: the derivative ``num / den^2`` underflows
    to ``0 / 0`` for a voxel no projection informed, and its NaN reached every panel parameter."""
    positive = den > 0
    return torch.where(positive, num / torch.where(positive, den, torch.ones_like(den)), torch.zeros_like(num))


def _peak_scaled(weights: Tensor, index: Tensor, size: int) -> Tensor:
    """``weights (rows, W, ...)`` divided (without gradient) by the largest weight of their voxel
    (``index (rows, W)``), so that every voxel's largest weight is 1.

    Weighted means do not change, but a voxel seen only by muons of tiny weight (an acceptance in
    the tail of a panel edge, or a muon measured with an enormous variance, e.g. by tracks without
    lever arm: ~1e-30) no longer has sums whose squares underflow in float32, which turned the
    derivative num / den^2 of its means into inf and NaN."""
    flat = weights.detach()
    while flat.dim() > index.dim():
        flat = flat.amax(-1)
    peak = torch.zeros(size, dtype=weights.dtype, device=weights.device).scatter_reduce(
        0, index.reshape(-1), flat.reshape(-1), "amax"
    )
    scale = gather(torch.where(peak > 0, peak, torch.ones_like(peak)), index)
    return weights / scale.reshape(*scale.shape, *([1] * (weights.dim() - scale.dim())))


def gather(values: Tensor, index: Tensor) -> Tensor:
    """``values[index]`` for a 1-D ``values`` and an index of any shape, by ``index_select``
    (whose backward is an ``index_add``, much faster on CPU than advanced indexing's)."""
    return values.index_select(0, index.reshape(-1)).reshape(index.shape)


@dataclass(frozen=True)
class X0Estimate:
    """Per-voxel inferred radiation length.

    Attributes:
        x0: ``(*batch, nx, ny, nz)`` estimate (m). Voxels informed by fewer than the inferrer's
            ``min_muons`` effective muons are not measured and hold 0, never NaN or inf.
        uncertainty: ``(*batch, nx, ny, nz)`` one standard deviation (m), ``x0 sigma(ln X0)``;
            inf where not measured.
        weight: ``(*batch, nx, ny, nz)`` sum of muon weights that informed each voxel.
        count: ``(*batch, nx, ny, nz)`` effective number of muons ``(sum w)^2 / sum w^2``.
        measured: ``(*batch, nx, ny, nz)`` bool, ``count >= min_muons``.
    """

    x0: Tensor
    uncertainty: Tensor
    weight: Tensor
    count: Tensor
    measured: Tensor


class X0Inferrer(Protocol):
    """Turns scatters into a per-voxel X0 estimate."""

    def __call__(
        self,
        scatters: Scatters,
        incoming: Tracks,
        outgoing: Tracks,
        momentum: Tensor,
        voxels: VoxelWeights,
        volume: PassiveVolume,
    ) -> X0Estimate: ...


class HighlandX0Inferrer:
    """Highland inversion with a central-98 % core-width estimate (see the module docstring).

    Args:
        truncation_passes: iterations of the truncated-moment estimate (0: plain second moment).
        min_muons: voxels informed by fewer effective muons ``(sum w)^2 / sum w^2`` than this
            (>= 1; default 5) are not measured: ``x0 = 0``, ``uncertainty = inf``, ``measured``
            False. Below ~5 muons the estimate's distribution is too skewed for its error to
            mean much (module docstring).
    """

    def __init__(self, truncation_passes: int = 3, min_muons: float = DEFAULT_MIN_MUONS) -> None:
        if truncation_passes < 0:
            raise MutomoError(f"truncation_passes must be >= 0; got {truncation_passes}")
        if not min_muons >= 1:
            raise MutomoError(
                f"min_muons (the smallest effective number of muons for a measured voxel) must be >= 1; got {min_muons}"
            )
        self.truncation_passes = truncation_passes
        self.min_muons = float(min_muons)

    def __call__(
        self,
        scatters: Scatters,
        incoming: Tracks,
        outgoing: Tracks,
        momentum: Tensor,
        voxels: VoxelWeights,
        volume: PassiveVolume,
    ) -> X0Estimate:
        """Infer X0 per voxel.

        Args:
            scatters: deflections of the muons, ``(mu, ...)``.
            incoming: incoming tracks; their slopes give the path through the volume.
            outgoing: outgoing tracks; with the incoming ones, their slope covariances give the
                measurement variance of each deflection.
            momentum: ``(mu,)`` momenta (GeV/c): the truth, or an estimate.
            voxels: muon-to-voxel weights (:func:`~mutomo.reco.extended_poca` or binned).
            volume: the voxel grid.
        """
        grid = voxels.grid_shape(volume.shape)  # (*batch, nx, ny, nz)
        size = math.prod(grid)
        beta_p = momentum**2 / torch.sqrt(momentum**2 + MUON_MASS**2)
        scale2 = (beta_p / HIGHLAND_E0)[:, None] ** 2
        # d atan(s) / ds = 1 / (1 + s^2) maps slope variances to angle variances.
        meas = sum(t.covariance.diagonal(dim1=-2, dim2=-1)[:, 2:] / (1 + t.slope**2) ** 2 for t in (incoming, outgoing))
        u2 = scatters.theta_xy**2 * scale2  # (mu, 2)
        m2 = meas * scale2  # (mu, 2)
        height = volume.z_high - volume.z_low
        path = height * torch.sqrt(1 + (incoming.slope**2).sum(-1))  # (mu,)
        if voxels.muon is not None:  # sparse rows: one per (muon, voxel) entry
            rows = voxels.muon  # index_select: its backward is an index_add, not an index_put
            u2, m2, path = u2.index_select(0, rows), m2.index_select(0, rows), path.index_select(0, rows)
        w = voxels.weight  # (rows, W)
        idx = voxels.voxel
        sum_w = scatter_sum(idx, w, size)
        # Weighted means over a voxel with its weights scaled to a peak of 1 (see _peak_scaled).
        w_unit = _peak_scaled(w, idx, size)
        sum_unit = scatter_sum(idx, w_unit, size)
        mean_path = _ratio(scatter_sum(idx, w_unit * path[:, None], size), sum_unit)
        # Start: the second moment of the measurement-subtracted projections, each muon weighted
        # by the inverse variance of its own estimate with the voxel's raw second moment
        # (sigma^2 + mean m, never below sigma^2) standing in for sigma^2. The plain mean is
        # unbiased but not robust: one 600 GeV/c muon measured with m ~ 2000 (normalised) and a
        # small deflection gives an excess of ~ -1000 that drove a water voxel's start below
        # zero, the floor, and the truncated iterations to a core of almost nothing (X0 15x
        # too large; benchmarks/README.md, "Voxel X0 pulls").
        excess = (u2 - m2).mean(-1)[:, None]  # (mu, 1)
        m_bar = m2.mean(-1)[:, None]  # (mu, 1)
        raw = _ratio(scatter_sum(idx, w_unit * u2.mean(-1)[:, None], size), sum_unit)
        w_start = _peak_scaled(w / (gather(raw, idx) + m_bar) ** 2, idx, size)
        sigma2 = _ratio(scatter_sum(idx, w_start * excess, size), scatter_sum(idx, w_start, size))
        factor = _truncation_factor(CORE_K)
        # Each projection is N(0, sigma^2 + m): weight a muon by the inverse variance of its
        # estimate, 1 / (sigma^2 + m)^2, keep the central 98 % and correct the truncated moment.
        # The weights stay on the graph, so the gradient is that of the estimate actually computed.
        est = (u2[:, None, :] / factor - m2[:, None, :]) if self.truncation_passes else (u2 - m2)[:, None, :]
        big_w = w[..., None] * torch.ones_like(u2[:, None, :])
        for _ in range(self.truncation_passes):
            s2 = gather(sigma2.clamp(min=SIGMA2_FLOOR), idx)  # (mu, W)
            total_var = s2[..., None] + m2[:, None, :]  # (mu, W, 2)
            keep = u2[:, None, :] < CORE_K**2 * total_var
            # where, not a product with a float mask: the same values and gradient, and autograd
            # keeps a bool mask instead of a float one (memory at 1e5 muons).
            big_w = torch.where(keep, (w / (s2 + m_bar) ** 2)[..., None], 0.0)  # (mu, W, 2)
            big_w = _peak_scaled(big_w, idx, size)
            num = scatter_sum(idx, (big_w * est).sum(-1), size)
            den = scatter_sum(idx, big_w.sum(-1), size)
            sigma2 = _ratio(num, den)
        t = highland_inverse(sigma2)
        x0 = mean_path / t
        # Statistical uncertainty of sigma^2: the M-estimator's expected sandwich (module
        # docstring), var = (A / D^2) sum W^2 T^2 / (sum W)^2 over the voxel's projections, with
        # W the weights without the truncation mask and T = sigma^2 + m each projection's variance.
        a_const, d_const = truncated_variance_constants(CORE_K if self.truncation_passes else None)
        s2 = gather(sigma2.clamp(min=SIGMA2_FLOOR), idx)  # (rows, W)
        total_var = s2[..., None] + m2[:, None, :]  # (rows, W, 2)
        if self.truncation_passes:
            w_all = (w / (s2 + m_bar) ** 2)[..., None].expand_as(total_var)
        else:
            w_all = w[..., None].expand_as(total_var)
        sum_all = scatter_sum(idx, w_all.sum(-1), size)
        sum_sq = scatter_sum(idx, (w_all**2 * total_var**2).sum(-1), size)
        # sqrt's derivative is infinite at 0 (a voxel no projection informed): take it of a safe
        # value, so that the zero gradient of such a voxel does not become NaN (0 * inf).
        positive = sum_sq > 0
        root = torch.where(positive, torch.sqrt(torch.where(positive, sum_sq, torch.ones_like(sum_sq))), 0.0)
        sigma2_err = math.sqrt(a_const / d_const**2) * _ratio(root, sum_all)
        c = 1 + HIGHLAND_LOG_COEFF * torch.log(t)
        t_err = sigma2_err / (c * (c + 2 * HIGHLAND_LOG_COEFF))  # dt = dsigma^2 / g'(t)
        x0_err = x0 * t_err / t  # sigma(ln X0) = sigma(t) / t
        # Effective number of muons, (sum w)^2 / sum w^2 (Kish 1965, Survey Sampling, Sec. 11.7).
        sum_w2 = scatter_sum(idx, w**2, size)
        count = (sum_w**2 / sum_w2.clamp(min=1e-30)).detach()  # a count: it selects, it is not trained
        measured = (count >= self.min_muons) & (sum_w > 0)
        return X0Estimate(
            x0=torch.where(measured, x0, torch.zeros_like(x0)).reshape(grid),
            uncertainty=torch.where(measured, x0_err, torch.full_like(x0_err, math.inf)).reshape(grid),
            weight=sum_w.reshape(grid),
            count=count.reshape(grid),
            measured=measured.reshape(grid),
        )


class PocaX0:
    """PoCA-based X0 reconstruction as a pluggable voxel method.

    Args:
        extended: spread each muon over the voxels around its PoCA by its Gaussian uncertainty
            (:func:`~mutomo.reco.extended_poca`); ``False``: all of it in its PoCA voxel. A PoCA
            above or below the volume is first moved along the tracks to its face
            (:func:`~mutomo.reco.poca_within_height`).
        half_width: extended-PoCA window half-width in voxels.
        inferrer: the per-voxel X0 inference (default :class:`HighlandX0Inferrer`).
        min_muons: smallest effective number of muons of a measured voxel, for the default
            inferrer (``HighlandX0Inferrer(min_muons=...)``; default 5); give it there when
            passing an ``inferrer``.
    """

    def __init__(
        self,
        extended: bool = True,
        half_width: int = 1,
        inferrer: X0Inferrer | None = None,
        min_muons: float | None = None,
    ) -> None:
        if inferrer is not None and min_muons is not None:
            raise MutomoError("give min_muons to the inferrer (HighlandX0Inferrer(min_muons=...)), not to PocaX0 too")
        self.extended = extended
        self.half_width = half_width
        default = HighlandX0Inferrer(min_muons=DEFAULT_MIN_MUONS if min_muons is None else min_muons)
        self.inferrer: X0Inferrer = inferrer if inferrer is not None else default
        self.name = "extended_poca_x0" if extended else "poca_x0"

    def __call__(self, data: ScatterData, volume: PassiveVolume) -> VoxelMap:
        """Infer X0 per voxel; the score is 1/X0 (m^-1). Maps are ``(*batch, nx, ny, nz)``."""
        sc = data.scatters
        poca = poca_within_height(sc.poca, data.incoming, data.outgoing, volume)
        if self.extended:
            window = extended_poca(poca, sc.poca_covariance, data.weight, volume, self.half_width)
            voxels = window.sparse(tail_share(poca.dtype))  # the floor's far tails dropped
        else:
            voxels = poca_voxel_weights(poca, data.weight, volume)
        voxels = voxels.per_batch(data.batch, data.batch_shape, math.prod(volume.shape))
        estimate = self.inferrer(sc, data.incoming, data.outgoing, data.momentum, voxels, volume)
        measured = estimate.measured & (estimate.x0 > 0)
        score = torch.where(measured, 1 / torch.where(measured, estimate.x0, torch.ones_like(estimate.x0)), 0.0)
        return VoxelMap(
            method=self.name,
            score=score,
            weight=estimate.weight,
            measured=measured,
            x0=estimate.x0,
            uncertainty=estimate.uncertainty,
            count=estimate.count,
        )
