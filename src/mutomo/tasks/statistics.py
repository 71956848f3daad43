"""Task answers from reconstructions, each with a differentiable path back to the detector.

* Fill height (a ladle furnace: liquid steel under slag under air). Muons scatter most in the
  dense melt, so the PoCA heights of the muons crossing the furnace move up as it fills. The
  raw answer is the mean PoCA height weighted by each muon's weight (efficiency times
  acceptance) and by its PoCA precision ``1 / var(z_PoCA)`` (Strong et al., TomOpt, Mach.
  Learn.: Sci. Technol. 5 (2024) 035002, ladle-furnace benchmark). It is biased (the PoCA
  height is not the fill height), so a straight line fitted on calibration volumes of known
  fill maps it to a height: :func:`fit_linear_calibration`, :class:`LinearCalibration`.
* Presence of a high-Z object in a low-Z background: a soft maximum over voxels of a robust
  z-score of any :class:`~mutomo.reco.VoxelMap` (distance from the median over the measured
  voxels in units of 1.4826 x their median absolute deviation, the Gaussian-consistent MAD).
  A block of lead or uranium stands out by tens of units; a uniform volume stays at a few.
* Where is the densest voxel? :func:`ranking_score` orders the voxels of an X0 map by their
  empirical-Bayes shrunk density, so that a voxel seen by a handful of muons does not outrank
  a well-measured dense one on its noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from mutomo.errors import MutomoError
from mutomo.reco.maps import ScatterData, VoxelMap
from mutomo.volume.grid import PassiveVolume

# Gaussian-consistent scale of the median absolute deviation: 1 / Phi^-1(3/4).
MAD_TO_SIGMA = 1.482602218505602


def poca_height(data: ScatterData, volume: PassiveVolume, min_sigma: float = 0.03) -> Tensor:
    """Raw fill-height statistic: weighted mean PoCA height (m) of the muons crossing the volume.

    Each muon is weighted by ``data.weight`` (tracks measured, crossing the volume) over its PoCA
    height variance, floored at ``min_sigma`` (m): a PoCA more precise than the few centimetres
    over which a muon's scatters spread in the melt tells no more about the fill, and without
    the floor a handful of muons dominate (on a 1 m ladle with 20k muons, a 1 mm floor gives
    1.5-7 cm resolution on the fill, 3 cm gives 0.6-1.6 cm). PoCA heights
    are clamped into ``[z_low, z_high]`` (a PoCA outside says only that the scatter was near a
    face). Returns a scalar tensor (``(*batch,)`` for batches of designs or volumes), differentiable in the
    hits through the PoCA and the weights; the middle of the volume if no muon crossed it.
    """
    sc = data.scatters
    var_z = sc.poca_covariance[:, 2, 2].clamp(min=min_sigma**2)
    w = data.weight / var_z
    z = sc.poca[:, 2].clamp(volume.z_low, volume.z_high)
    total = data.batch_sum(w)
    # No muon crossed: no information, so the answer is the middle of the volume (a prior),
    # with zero gradient, rather than 0/0.
    middle = 0.5 * (volume.z_low + volume.z_high)
    empty = total <= 0
    return torch.where(
        empty, middle + 0 * total, data.batch_sum(w * z) / torch.where(empty, torch.ones_like(total), total)
    )


@dataclass(frozen=True)
class LinearCalibration:
    """``answer = slope * raw + intercept``, fitted on calibration volumes of known answer.

    Attributes:
        slope, intercept: scalar tensors (they carry gradients if the fit did).
        residual_rms: root-mean-square residual of the calibration fit (same unit as the answer).
    """

    slope: Tensor
    intercept: Tensor
    residual_rms: Tensor

    def __call__(self, raw: Tensor) -> Tensor:
        return self.slope * raw + self.intercept


def fit_linear_calibration(raw: Tensor, truth: Tensor) -> LinearCalibration:
    """Least-squares straight line from raw statistics ``(n,)`` to true answers ``(n,)``, n >= 2.

    Closed form (``slope = cov(raw, truth) / var(raw)``), differentiable in ``raw``.

    Example:
        >>> cal = fit_linear_calibration(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([3.0, 5.0, 7.0]))
        >>> float(cal.slope), float(cal.intercept), float(cal(torch.tensor(4.0)))
        (2.0, 1.0, 9.0)
    """
    if raw.ndim != 1 or raw.shape != truth.shape or raw.numel() < 2:
        raise MutomoError(
            "calibration needs raw and truth of the same shape (n,), n >= 2; "
            f"got {tuple(raw.shape)} and {tuple(truth.shape)}"
        )
    truth = truth.to(raw)
    dx, dy = raw - raw.mean(), truth - truth.mean()
    var = (dx**2).sum()
    if float(var.detach()) <= 0:
        raise MutomoError("calibration needs at least two different raw values")
    slope = (dx * dy).sum() / var
    intercept = truth.mean() - slope * raw.mean()
    residual = truth - (slope * raw + intercept)
    return LinearCalibration(slope=slope, intercept=intercept, residual_rms=residual.pow(2).mean().sqrt())


def robust_zscore(vmap: VoxelMap, per_layer: bool = False) -> Tensor:
    """``(nx, ny, nz)`` distance of each measured voxel's score from the median of the measured
    voxels, in units of 1.4826 x their median absolute deviation; 0 where unmeasured.

    With ``per_layer`` each horizontal layer (fixed z index) is its own reference: a method whose
    scores drift with depth (e.g. ASR, where the voxels near the top and bottom faces are crossed
    by fewer pairs of tracks) then does not turn that drift into evidence. Layers with fewer than
    3 measured voxels get z = 0."""
    values = vmap.score[vmap.measured]
    if values.numel() < 3:
        raise MutomoError(f"robust_zscore needs at least 3 measured voxels; the {vmap.method} map has {values.numel()}")
    if not per_layer:
        centre = values.median()
        scale = MAD_TO_SIGMA * (values - centre).abs().median()
        scale = scale.clamp(min=1e-12 * centre.abs().clamp(min=1.0))
        z = (vmap.score - centre) / scale
        return torch.where(vmap.measured, z, torch.zeros_like(z))
    masked = torch.where(vmap.measured, vmap.score, torch.full_like(vmap.score, float("nan")))
    flat = masked.flatten(-3, -2)  # (nx * ny, nz)
    centre = flat.nanmedian(dim=0).values  # (nz,)
    scale = MAD_TO_SIGMA * (flat - centre).abs().nanmedian(dim=0).values
    enough = vmap.measured.flatten(-3, -2).sum(0) >= 3
    ok = enough & (scale > 0)
    safe_centre = torch.where(ok, centre, torch.zeros_like(centre))
    safe_scale = torch.where(ok, scale, torch.ones_like(scale))
    z = (vmap.score - safe_centre) / safe_scale
    return torch.where(vmap.measured & ok, z, torch.zeros_like(z))


def ranking_score(vmap: VoxelMap) -> Tensor:
    """``(..., nx, ny, nz)`` a score whose order over each map's measured voxels is that of
    their empirical-Bayes posterior mean density; ``-inf`` where unmeasured (never ranked).

    For an X0 map with errors (PoCA X0, extended PoCA, ML/EM), each measured voxel's ``y_j =
    ln(1/X0_j)`` is taken as its true value plus Gaussian noise of its own ``sigma_j =
    sigma(ln X0)_j``, and the true values of the map's voxels as drawn from a normal prior whose
    centre ``m`` and variance ``tau^2`` are fitted to the map itself, robustly: ``m`` the median
    of the ``y_j``, ``tau^2 = max(0, (1.4826 MAD)^2 - median sigma_j^2)`` (their spread less
    the typical noise; normal-normal empirical Bayes, Efron & Morris, JASA 68 (1973) 117). The
    posterior mean is ``m + (y_j - m) tau^2 / (tau^2 + sigma_j^2)``; its excess over ``m``
    divided by ``tau^2``, ``(y_j - m) / (tau^2 + sigma_j^2)``, is returned: the same order, and
    still an order when ``tau = 0`` (a uniform map). A voxel of 6 muons (``sigma ~ 0.54``)
    must then lie up to ``(0.54 / 0.17)^2 ~ 10`` times further above the background than one
    of 60 (``sigma ~ 0.17``) to rank above it (at ``tau = 0``; less as ``tau`` grows), where
    the raw score ranks whichever fluctuated highest.

    Maps without an X0 error (ASR, BCA) keep their raw score: they report nothing to shrink by.
    Not differentiable in a useful sense (a ranking); used to judge localisation."""
    shape = vmap.score.shape
    if vmap.x0 is None or vmap.uncertainty is None:
        return torch.where(vmap.measured, vmap.score, torch.full_like(vmap.score, -math.inf))
    measured = vmap.measured
    safe_x0 = torch.where(measured, vmap.x0, torch.ones_like(vmap.x0))
    relative = torch.where(measured, vmap.uncertainty / safe_x0, torch.zeros_like(safe_x0))
    flat = (*shape[:-3], -1)
    score = _shrunk_order(
        torch.where(measured, -torch.log(safe_x0), torch.zeros_like(safe_x0)).reshape(flat),
        (relative**2).reshape(flat),
        measured.reshape(flat),
    )
    return score.reshape(shape)


def _shrunk_order(y: Tensor, sigma2: Tensor, measured: Tensor) -> Tensor:
    """``(y - m) / (tau^2 + sigma^2)`` over the last axis (see :func:`ranking_score`); ``-inf``
    where unmeasured."""
    nan = torch.full_like(y, math.nan)
    centre = torch.where(measured, y, nan).nanmedian(-1, keepdim=True).values
    mad = torch.where(measured, (y - centre).abs(), nan).nanmedian(-1, keepdim=True).values
    noise = torch.where(measured, sigma2, nan).nanmedian(-1, keepdim=True).values
    tau2 = ((MAD_TO_SIGMA * mad) ** 2 - noise).clamp(min=0.0)
    denominator = (tau2 + sigma2).clamp(min=1e-300)
    return torch.where(measured, (y - centre) / denominator, torch.full_like(y, -math.inf))


def presence_score(vmap: VoxelMap, temperature: float = 1.0, per_layer: bool = False) -> Tensor:
    """Scalar evidence for a compact high-scattering object: ``T log mean exp(z / T)`` over the
    measured voxels' robust z-scores (:func:`robust_zscore`, per layer if asked), a smooth
    maximum (T -> 0 gives the maximum z, large T the mean). Threshold it, or feed
    ``sigmoid(a * score + b)`` to a classification loss."""
    if not temperature > 0:
        raise MutomoError(f"presence_score temperature must be > 0; got {temperature}")
    z = robust_zscore(vmap, per_layer)[vmap.measured]
    n = torch.tensor(float(z.numel()), dtype=z.dtype, device=z.device)
    return temperature * (torch.logsumexp(z / temperature, 0) - torch.log(n))
