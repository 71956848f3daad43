"""Assigning points and PoCA distributions to voxels, by index arithmetic: O(muons).

* :func:`voxel_indices`: the voxel ``(ix, iy, iz)`` of each point, floor((p - origin) / size).
* :func:`binned_poca`: each muon's weight added to the voxel of its PoCA.
* :func:`extended_poca`: each muon's PoCA Gaussian (mean, full 3x3 covariance) integrated over
  the voxels of a ``(2k+1)^3`` window around its PoCA voxel. The box probability of a correlated
  Gaussian uses the Mendell-Elston sequential-conditioning approximation (Mendell & Elston,
  Biometrics 30 (1974) 41; Kamakura, Biometrika 76 (1989) 127): integrate x over its interval, replace
  (y, z) by their distribution conditional on the *truncated* x (mean and variance of the
  truncated normal), then y, then z. It is exact without correlations, keeps them otherwise,
  and is smooth in the mean and covariance. The probabilities are divided by the muon's
  probability to lie inside the whole volume box (the scatter did happen inside it), not by
  the window's sum: a PoCA pushed outside by measurement error lands in the boundary voxels
  instead of being dropped (dropping them would keep mostly the large, well-measured
  deflections and bias X0 low), and when the window moves with the PoCA only the little
  probability in its edge voxels changes hands. The window is integrated on its grid
  (:func:`grid_window_probability`): x once over its 2k+1 intervals, y once per x interval, z
  once per (x, y) pair, the same conditioning as box by box at a third of the cost. Linear in
  the number of muons.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from mutomo.errors import MutomoError
from mutomo.reco.track_fit import Tracks
from mutomo.volume.grid import PassiveVolume

SQRT2 = math.sqrt(2.0)
# Window probability below which extended PoCA falls back to the nearest voxel.
FAR_OUTSIDE = 1e-6


def tail_share(dtype: torch.dtype) -> float:
    """Share of a muon's extended-PoCA window below which :meth:`VoxelWeights.sparse` drops an
    entry when asked (:class:`~mutomo.reco.x0.PocaX0` asks): 1e-5 of the dtype's rounding
    (1.2e-12 in float32, 2.2e-21 in float64), so that a dropped entry changes no sum that a
    muon's substantive share enters. In float32 such a cell lies ~7 standard deviations from
    the PoCA on some axis, at the floor of the interval probabilities (:func:`_probability_floor`):
    at 1e5 muons on TomOpt's test geometry they were 2/3 of the entries (20 of 27 per muon
    nonzero, 6.7 above 1e-12), and dropping them left every X0 map bit for bit the same."""
    return 1e-5 * torch.finfo(dtype).eps


def voxel_indices(points: Tensor, volume: PassiveVolume) -> tuple[Tensor, Tensor]:
    """Voxel indices of points.

    Args:
        points: ``(mu, 3)`` positions (m).
        volume: the voxel grid.

    Returns:
        ``(index (mu, 3) long, inside (mu,) bool)``; outside points get clamped indices and
        ``inside = False``.
    """
    origin = torch.tensor(volume.origin, dtype=points.dtype, device=points.device)
    size = torch.tensor(volume.voxel_size, dtype=points.dtype, device=points.device)
    shape = torch.tensor(volume.shape, device=points.device)
    raw = torch.floor((points - origin) / size).long()
    inside = ((raw >= 0) & (raw < shape)).all(-1)
    return torch.minimum(raw.clamp(min=0), shape - 1), inside


def flat_index(index: Tensor, shape: tuple[int, int, int]) -> Tensor:
    """``(..., 3)`` voxel indices -> flat index into a ``(nx, ny, nz)`` array."""
    return (index[..., 0] * shape[1] + index[..., 1]) * shape[2] + index[..., 2]


def scatter_sum(index: Tensor, values: Tensor, size: int) -> Tensor:
    """``(size,)`` sums of ``values`` by flat ``index`` (same shape; differentiable in ``values``)."""
    out = torch.zeros(size, dtype=values.dtype, device=values.device)
    return out.index_add(0, index.reshape(-1), values.reshape(-1))


def binned_poca(points: Tensor, weight: Tensor, volume: PassiveVolume, values: Tensor | None = None) -> Tensor:
    """Sum of ``weight * values`` (or of ``weight``) per voxel of the PoCA points.

    Args:
        points: ``(mu, 3)`` PoCA positions.
        weight: ``(mu,)`` muon weights; points outside the volume count nowhere.
        values: optional ``(mu,)`` per-muon values to sum.

    Returns:
        ``(nx, ny, nz)`` sums (differentiable in ``weight`` and ``values``).
    """
    index, inside = voxel_indices(points, volume)
    source = weight * inside if values is None else weight * inside * values
    return scatter_sum(flat_index(index, volume.shape), source, math.prod(volume.shape)).reshape(volume.shape)


def _normal_cdf(x: Tensor) -> Tensor:
    return 0.5 * (1 + torch.erf(x / SQRT2))


def _normal_pdf(x: Tensor) -> Tensor:
    return torch.exp(-0.5 * x**2) / math.sqrt(2 * math.pi)


def box_probability(mean: Tensor, cov: Tensor, low: Tensor, high: Tensor) -> Tensor:
    """P(low < X < high) for ``X ~ N(mean, cov)`` in 3D, Mendell-Elston approximation.

    Args:
        mean: ``(..., 3)``; cov: ``(..., 3, 3)``; low, high: ``(..., 3)`` box corners; the
            leading axes broadcast against each other.

    Returns:
        ``(...)`` probabilities in [0, 1].
    """
    mu = [mean[..., i] for i in range(3)]
    c = [[cov[..., i, j] for j in range(3)] for i in range(3)]
    prob = torch.ones((), dtype=mean.dtype, device=mean.device)
    for k in range(3):
        sd = torch.sqrt(c[k][k].clamp(min=1e-30))
        edges = torch.stack([(low[..., k] - mu[k]) / sd, (high[..., k] - mu[k]) / sd], -1)
        if k == 2:
            prob = prob * _interval_probabilities(edges)[..., 0]
            break
        p, m, v = (t[..., 0] for t in _truncated_moments(edges))
        prob = prob * p
        for i in range(k + 1, 3):
            gain_i = c[i][k] / sd
            mu[i] = mu[i] + gain_i * m
            for j in range(k + 1, 3):
                c[i][j] = c[i][j] + gain_i * (c[j][k] / sd) * (v - 1)
    return prob


def _probability_floor(dtype: torch.dtype) -> float:
    """Smallest interval probability used: 1e-30, or in float32 ten times the square root of the
    smallest normal number (~1e-18), so that the ``1 / p^2`` of the moments' derivatives stays
    finite (1e-30 squared underflows float32 to 0, and the gradient became NaN)."""
    return max(1e-30, 10 * math.sqrt(torch.finfo(dtype).tiny))


def _interval_probabilities(edges: Tensor) -> Tensor:
    """``(..., n)`` standard-normal probabilities of the intervals between consecutive
    standardised ``edges (..., n + 1)``, floored at :func:`_probability_floor`."""
    cdf = _normal_cdf(edges)
    return (cdf[..., 1:] - cdf[..., :-1]).clamp(min=_probability_floor(edges.dtype))


def _truncated_moments(edges: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Probability, mean and variance of a standard normal truncated to each interval between
    consecutive standardised ``edges (..., n + 1)``; each ``(..., n)``."""
    p, pdf = _interval_probabilities(edges), _normal_pdf(edges)
    alpha, beta, pa, pb = edges[..., :-1], edges[..., 1:], pdf[..., :-1], pdf[..., 1:]
    m = (pa - pb) / p
    v = (1 + (alpha * pa - beta * pb) / p - m**2).clamp(min=0.0)
    return p, m, v


def grid_window_probability(mean: Tensor, cov: Tensor, edges: Tensor) -> Tensor:
    """P(X in each box of a grid window) for ``X ~ N(mean, cov)``, Mendell-Elston as in
    :func:`box_probability` (x, then y given the truncated x, then z given both), exploiting
    the grid: x is integrated over its ``n`` intervals once, y over its ``n`` intervals once per
    x interval, z once per (x, y) pair, so a 3x3x3 window costs 4 + 12 + 36 normal CDFs instead of
    27 x 6. Equal to :func:`box_probability` on each box.

    Args:
        mean: ``(mu, 3)``; cov: ``(mu, 3, 3)``.
        edges: ``(mu, 3, n + 1)`` increasing box edges along x, y and z (m).

    Returns:
        ``(mu, n, n, n)`` probabilities, indexed (x, y, z).
    """
    c = [[cov[:, i, j] for j in range(3)] for i in range(3)]
    # x: (mu, n)
    sd0 = torch.sqrt(c[0][0].clamp(min=1e-30))
    p0, m0, v0 = _truncated_moments((edges[:, 0] - mean[:, 0:1]) / sd0[:, None])
    g1, g2 = (c[1][0] / sd0)[:, None], (c[2][0] / sd0)[:, None]
    mu1, mu2 = mean[:, 1:2] + g1 * m0, mean[:, 2:3] + g2 * m0
    c11 = c[1][1][:, None] + g1 * g1 * (v0 - 1)
    c12 = c[1][2][:, None] + g1 * g2 * (v0 - 1)
    c22 = c[2][2][:, None] + g2 * g2 * (v0 - 1)
    # y given each x interval: (mu, n, n)
    sd1 = torch.sqrt(c11.clamp(min=1e-30))
    p1, m1, v1 = _truncated_moments((edges[:, 1, None, :] - mu1[..., None]) / sd1[..., None])
    g = (c12 / sd1)[..., None]
    mu2 = mu2[..., None] + g * m1
    c22 = c22[..., None] + g * g * (v1 - 1)
    # z given each (x, y) pair: (mu, n, n, n)
    sd2 = torch.sqrt(c22.clamp(min=1e-30))
    p2 = _interval_probabilities((edges[:, 2, None, None, :] - mu2[..., None]) / sd2[..., None])
    return p0[:, :, None, None] * p1[..., None] * p2


@dataclass(frozen=True)
class VoxelWeights:
    """Sparse muon-to-voxel weights from :func:`extended_poca`.

    Attributes:
        voxel: ``(mu, W)`` flat voxel indices of each muon's window (clamped inside the grid).
        weight: ``(mu, W)`` muon weight times the probability of each voxel (a row sums to at
            most the muon's weight).
        batch_shape: batch axes (designs, volumes) when the indices address one grid per
            batch entry, one after the other (:meth:`per_batch`); ``()`` for one grid.
        muon: ``(rows,)`` the muon of each row after :meth:`sparse` (then ``voxel`` and
            ``weight`` are ``(rows, 1)``); ``None`` when row ``i`` is muon ``i``.
    """

    voxel: Tensor
    weight: Tensor
    batch_shape: tuple[int, ...] = ()
    muon: Tensor | None = None

    def sparse(self, min_share: float = 0.0) -> VoxelWeights:
        """Only the entries of nonzero weight, one row each (exact for every weighted sum), and
        of those only the ones that carry more than ``min_share`` of their muon's window weight.

        An extended-PoCA window holds 27 voxels, but a PoCA uncertainty of millimetres to a few
        centimetres leaves many of them at exactly zero weight, and most of the rest at the
        floor of the interval probabilities (:func:`_probability_floor`, ~1e-18 in float32):
        a cell beyond ~7 standard deviations on some axis. ``min_share = tail_share(dtype)``
        drops those (:class:`~mutomo.reco.x0.PocaX0` does), which leaves every sum unchanged at
        float rounding wherever a muon's substantive share reaches the voxel.
        """
        if min_share > 0:
            weight = self.weight.detach()
            keep = torch.nonzero(weight > min_share * weight.sum(-1, keepdim=True))
        else:
            keep = torch.nonzero(self.weight != 0)
        rows, slots = keep[:, 0], keep[:, 1]
        flat = rows * self.weight.shape[1] + slots
        voxel = self.voxel.reshape(-1).index_select(0, flat)[:, None]
        weight = self.weight.reshape(-1).index_select(0, flat)[:, None]
        muon = rows if self.muon is None else self.muon[rows]
        return VoxelWeights(voxel, weight, self.batch_shape, muon)

    def grid_shape(self, shape: tuple[int, int, int]) -> tuple[int, ...]:
        """``(*batch, nx, ny, nz)``: the shape of the grids the indices address."""
        return (*self.batch_shape, *shape)

    def per_batch(self, batch: Tensor | None, batch_shape: tuple[int, ...], n_voxels: int) -> VoxelWeights:
        """Each muon's indices moved into the grid of its batch entry (``batch (mu,)`` flat
        index, e.g. :attr:`ScatterData.batch`; ``None``: one grid, returned as it is)."""
        if batch is None:
            return self
        rows = batch if self.muon is None else batch[self.muon]
        return VoxelWeights(self.voxel + rows[:, None] * n_voxels, self.weight, batch_shape, self.muon)

    def to_grid(self, shape: tuple[int, int, int], values: Tensor | None = None) -> Tensor:
        """Sum ``weight`` (times per-muon ``values``) into ``(*batch, nx, ny, nz)`` grids."""
        if values is not None and self.muon is not None:
            values = values.index_select(0, self.muon)
        w = self.weight if values is None else self.weight * values[:, None]
        full = self.grid_shape(shape)
        return scatter_sum(self.voxel, w, math.prod(full)).reshape(full)


def extended_poca(
    points: Tensor, covariance: Tensor, weight: Tensor, volume: PassiveVolume, half_width: int = 1
) -> VoxelWeights:
    """Spread each muon's PoCA over the voxels around it by its (correlated) Gaussian uncertainty.

    Args:
        points: ``(mu, 3)`` PoCA positions (m).
        covariance: ``(mu, 3, 3)`` PoCA covariances (m^2).
        weight: ``(mu,)`` muon weights.
        volume: the voxel grid.
        half_width: window half-width ``k`` in voxels; ``(2k+1)^3`` voxels per muon.

    Returns:
        :class:`VoxelWeights`. Window voxels outside the grid get zero weight. Select the muons
        that crossed the volume through ``weight`` (e.g. :func:`crosses_volume`), not through
        their PoCA.
    """
    if half_width < 0:
        raise MutomoError(f"half_width must be >= 0 voxels; got {half_width}")
    centre, _ = voxel_indices(points, volume)
    n = 2 * half_width + 1
    r = torch.arange(-half_width, half_width + 1, device=points.device)
    # The window's cells axis by axis, (mu, n) each, combined by broadcasting into (mu, W = n^3)
    # flat indices and validity, ordered (x, y, z) as grid_window_probability's boxes: the same
    # numbers as offsetting (mu, W, 3) index triples, without materialising them (three int64
    # (mu, W, 3) tensors were a fifth of the reconstruction's peak memory at 1e5 muons).
    _, ny, nz = volume.shape
    axis = [centre[:, a, None] + r for a in range(3)]
    inside = [(cells >= 0) & (cells < size) for cells, size in zip(axis, volume.shape, strict=True)]
    cx, cy, cz = (cells.clamp(0, size - 1) for cells, size in zip(axis, volume.shape, strict=True))
    flat = ((cx[:, :, None, None] * ny + cy[:, None, :, None]) * nz + cz[:, None, None, :]).reshape(-1, n**3)
    valid = (inside[0][:, :, None, None] & inside[1][:, None, :, None] & inside[2][:, None, None, :]).reshape(-1, n**3)
    origin = torch.tensor(volume.origin, dtype=points.dtype, device=points.device)
    size = torch.tensor(volume.voxel_size, dtype=points.dtype, device=points.device)
    # Window edges along each axis, (mu, 3, 2k + 2); boxes outside the grid get valid = 0.
    steps = torch.arange(-half_width, half_width + 2, device=points.device, dtype=points.dtype)
    edges = origin[None, :, None] + (centre.to(points.dtype)[:, :, None] + steps) * size[None, :, None]
    # The window size is spelled out: reshape(mu, -1) failed when no muon was left (mu = 0, e.g.
    # when measure() selected none), where the answer is simply empty.
    prob = grid_window_probability(points, covariance, edges).reshape(points.shape[0], n**3)
    prob = prob * valid
    box_low = origin.expand_as(points)
    box_high = box_low + size * torch.tensor(volume.shape, dtype=points.dtype, device=points.device)
    in_volume = box_probability(points, covariance, box_low, box_high)
    window = prob.sum(-1)
    # A row never sums to more than 1 (the two Mendell-Elston approximations can disagree by a
    # little); a PoCA so far outside that its window holds < 1e-6 of its probability goes,
    # whole, to its nearest voxel (binned PoCA), instead of being divided by ~0.
    far = window < FAR_OUTSIDE
    norm = torch.maximum(in_volume, window).clamp(min=FAR_OUTSIDE)
    centre_slot = torch.zeros(n**3, dtype=points.dtype, device=points.device)
    centre_slot[(n**3 - 1) // 2] = 1.0  # the window's middle cell: offset (0, 0, 0)
    share = torch.where(far[:, None], centre_slot.expand_as(prob), prob / norm[:, None])
    return VoxelWeights(voxel=flat, weight=share * weight[:, None])


def poca_within_height(poca: Tensor, incoming: Tracks, outgoing: Tracks, volume: PassiveVolume) -> Tensor:
    """``(mu, 3)`` PoCA points, those above or below the volume moved along the tracks to its
    nearest face: at that face's height, the mean of the incoming and outgoing tracks' positions.

    A PoCA outside the volume's height range is that of a nearly undeflected muon (its two
    lines are nearly parallel, so their closest approach is ill-defined); its horizontal
    position there is the tracks' position far from where the muon crossed the volume, by up
    to ``slope x distance``. Clamped to the nearest voxel as it stands, it put such muons,
    whose deflections are the smallest, in the voxels on the block's side faces: on 30 cm of
    iron in 10 cm columns their ln X0 rose by +0.1 (+0.3 in the corners) and the interior's
    fell, pull widths 1.2-1.3 at high counts (benchmarks/README.md, "Voxel X0 pulls"). The
    muon crossed the volume where its tracks are, so that is where it is counted.
    """
    z = poca[:, 2].clamp(volume.z_low, volume.z_high)
    outside = (poca[:, 2] < volume.z_low) | (poca[:, 2] > volume.z_high)
    on_tracks = 0.5 * (incoming.at(z) + outgoing.at(z))
    return torch.where(outside[:, None], on_tracks, poca)


def poca_voxel_weights(points: Tensor, weight: Tensor, volume: PassiveVolume) -> VoxelWeights:
    """Binned PoCA as :class:`VoxelWeights`: each muon's whole weight in its PoCA voxel, PoCAs
    outside the volume moved to the nearest voxel (select muons with :func:`crosses_volume`)."""
    index, _ = voxel_indices(points, volume)
    return VoxelWeights(voxel=flat_index(index, volume.shape)[:, None], weight=weight[:, None])


def crosses_volume(incoming: Tracks, outgoing: Tracks, volume: PassiveVolume) -> Tensor:
    """``(mu,)`` 1 where the incoming track enters the top face and the outgoing one leaves the
    bottom face of the volume, else 0: a selection that does not look at the deflection."""
    (x_lo, x_hi), (y_lo, y_hi) = volume.x_range, volume.y_range

    def within(xy: Tensor) -> Tensor:
        return (xy[:, 0] >= x_lo) & (xy[:, 0] <= x_hi) & (xy[:, 1] >= y_lo) & (xy[:, 1] <= y_hi)

    top, bottom = incoming.at(volume.z_high)[:, :2], outgoing.at(volume.z_low)[:, :2]
    return (within(top) & within(bottom)).to(top.dtype)
