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

Uncertainty: the sandwich variance of the weighted mean, ``sum W^2 (x - sigma^2)^2 / (sum W)^2``
over the projections used (no Gaussian assumption), propagated through ``dt/dsigma^2 = 1 / g'(t)``.
A test checks it against the spread of repeated reconstructions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from mutomo.reco.maps import ScatterData, VoxelMap
from mutomo.reco.poca import Scatters
from mutomo.reco.track_fit import Tracks
from mutomo.reco.voxelise import VoxelWeights, extended_poca, poca_voxel_weights, scatter_sum
from mutomo.units import HIGHLAND_E0, HIGHLAND_LOG_COEFF, MUON_MASS
from mutomo.volume.grid import PassiveVolume
from mutomo.volume.scattering import highland_inverse

# Central 98 %: |u| < k sigma with k = Phi^-1(0.99).
CORE_K = 2.3263478740408408
# Smallest g(t) used to weight muons (t ~ 1e-3: 0.4 mm of lead, 36 cm of water).
SIGMA2_FLOOR = 1e-3


def _truncation_factor(k: float) -> float:
    phi = math.exp(-0.5 * k * k) / math.sqrt(2 * math.pi)
    inside = math.erf(k / math.sqrt(2))
    return 1 - 2 * k * phi / inside


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
        x0: ``(*batch, nx, ny, nz)`` estimate (m). Voxels informed by less than the inferrer's
            ``min_weight`` of muons hold 0 (no measurement), never NaN or inf.
        uncertainty: ``(*batch, nx, ny, nz)`` one standard deviation (m); 0 where ``x0`` is 0.
        weight: ``(*batch, nx, ny, nz)`` sum of muon weights that informed each voxel.
    """

    x0: Tensor
    uncertainty: Tensor
    weight: Tensor


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
        min_weight: voxels with a smaller total muon weight are reported with ``x0 = 0`` and
            ``uncertainty = 0`` (nothing was measured there).
    """

    def __init__(self, truncation_passes: int = 3, min_weight: float = 1.0) -> None:
        if truncation_passes < 0:
            raise ValueError(f"truncation_passes must be >= 0; got {truncation_passes}")
        self.truncation_passes = truncation_passes
        self.min_weight = min_weight

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
        # Start: the plain weighted second moment (an unbiased estimate of g(t) if Gaussian).
        excess = (u2 - m2).mean(-1)[:, None]  # (mu, 1)
        sigma2 = _ratio(scatter_sum(idx, w_unit * excess, size), sum_unit)
        m_bar = m2.mean(-1)[:, None]  # (mu, 1)
        factor = _truncation_factor(CORE_K)
        # Each projection is N(0, sigma^2 + m): weight a muon by the inverse variance of its
        # estimate, 1 / (sigma^2 + m)^2, keep the central 98 % and correct the truncated moment.
        # The weights stay on the graph, so the gradient is that of the estimate actually computed.
        est = (u2[:, None, :] / factor - m2[:, None, :]) if self.truncation_passes else (u2 - m2)[:, None, :]
        big_w = w[..., None] * torch.ones_like(u2[:, None, :])
        for _ in range(self.truncation_passes):
            s2 = gather(sigma2.clamp(min=SIGMA2_FLOOR), idx)  # (mu, W)
            total_var = s2[..., None] + m2[:, None, :]  # (mu, W, 2)
            keep = (u2[:, None, :] < CORE_K**2 * total_var).to(w.dtype)
            big_w = (w / (s2 + m_bar) ** 2)[..., None] * keep  # (mu, W, 2)
            big_w = _peak_scaled(big_w, idx, size)
            num = scatter_sum(idx, (big_w * est).sum(-1), size)
            den = scatter_sum(idx, big_w.sum(-1), size)
            sigma2 = _ratio(num, den)
        t = highland_inverse(sigma2)
        x0 = mean_path / t
        # Statistical uncertainty of sigma^2: sandwich estimate over the projections used,
        # var = sum W^2 (x - sigma^2)^2 / (sum W)^2, which needs no Gaussian assumption.
        dev2 = (est - gather(sigma2, idx)[..., None]) ** 2
        sum_big = scatter_sum(idx, big_w.sum(-1), size)
        # A voxel whose projections all sit exactly on the estimate (or that no projection informed)
        # has variance 0, where sqrt's derivative is infinite: its zero gradient turned into NaN
        # (0 * inf) through the square root even where the voxel is masked out below. The square
        # root is taken of a safe value, and the uncertainty of such a voxel is 0 with gradient 0.
        var_sum = scatter_sum(idx, (big_w**2 * dev2).sum(-1), size)
        positive = var_sum > 0
        root = torch.where(positive, torch.sqrt(torch.where(positive, var_sum, torch.ones_like(var_sum))), 0.0)
        sigma2_err = _ratio(root, sum_big)
        c = 1 + HIGHLAND_LOG_COEFF * torch.log(t)
        t_err = sigma2_err / (c * (c + 2 * HIGHLAND_LOG_COEFF))
        x0_err = x0 * t_err / t
        measured = sum_w >= self.min_weight
        zero = torch.zeros_like(x0)
        return X0Estimate(
            x0=torch.where(measured, x0, zero).reshape(grid),
            uncertainty=torch.where(measured, x0_err, zero).reshape(grid),
            weight=sum_w.reshape(grid),
        )


class PocaX0:
    """PoCA-based X0 reconstruction as a pluggable voxel method.

    Args:
        extended: spread each muon over the voxels around its PoCA by its Gaussian uncertainty
            (:func:`~mutomo.reco.extended_poca`); ``False``: all of it in its PoCA voxel.
        half_width: extended-PoCA window half-width in voxels.
        inferrer: the per-voxel X0 inference (default :class:`HighlandX0Inferrer`).
    """

    def __init__(self, extended: bool = True, half_width: int = 1, inferrer: X0Inferrer | None = None) -> None:
        self.extended = extended
        self.half_width = half_width
        self.inferrer: X0Inferrer = inferrer if inferrer is not None else HighlandX0Inferrer()
        self.name = "extended_poca_x0" if extended else "poca_x0"

    def __call__(self, data: ScatterData, volume: PassiveVolume) -> VoxelMap:
        """Infer X0 per voxel; the score is 1/X0 (m^-1). Maps are ``(*batch, nx, ny, nz)``."""
        sc = data.scatters
        if self.extended:
            voxels = extended_poca(sc.poca, sc.poca_covariance, data.weight, volume, self.half_width).sparse()
        else:
            voxels = poca_voxel_weights(sc.poca, data.weight, volume)
        voxels = voxels.per_batch(data.batch, data.batch_shape, math.prod(volume.shape))
        estimate = self.inferrer(sc, data.incoming, data.outgoing, data.momentum, voxels, volume)
        measured = estimate.x0 > 0
        score = torch.where(measured, 1 / torch.where(measured, estimate.x0, torch.ones_like(estimate.x0)), 0.0)
        return VoxelMap(
            method=self.name,
            score=score,
            weight=estimate.weight,
            measured=measured,
            x0=estimate.x0,
            uncertainty=estimate.uncertainty,
        )
