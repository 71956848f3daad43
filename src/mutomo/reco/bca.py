"""Binned clustering (BCA; Thomay et al., JINST 8 (2013) P10013).

High-Z material shows up as *clusters* of strongly deflected PoCA points. Within each voxel,
every pair of PoCA points ``i, j`` gets the metric

    m_ij = |V_i - V_j| / ((theta_i p_i) (theta_j p_j)),

small when the two points are close and both deflections large, and the voxel's score is the
median of ``ln m_ij`` over its pairs: low for dense high-Z clusters. Following the paper, only
the ``n_max`` most strongly deflected PoCAs of a voxel enter (which also bounds the pairs per
voxel), and a voxel needs at least ``n_min`` of them.

Here the score is reported as ``-median(ln m)`` so that, like every mutomo map, higher means
more scattering. The grouping is one sort (O(n log n)) and the pairs form a
``(voxels, n_max, n_max)`` block, so the cost is linear in the number of voxels and
near-linear in muons; no per-voxel Python loop. Pairs are weighted by the product of the two
muon weights; the median is differentiable in the PoCA positions and deflections.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mutomo.errors import MutomoError
from mutomo.reco.maps import ScatterData, VoxelMap
from mutomo.reco.segments import segment_quantile, segment_starts, sort_by_segment
from mutomo.reco.voxelise import flat_index, voxel_indices
from mutomo.volume.grid import PassiveVolume


class BinnedClustering:
    """BCA scores per voxel (see the module docstring).

    Args:
        n_max: most strongly deflected PoCAs kept per voxel (Thomay et al.: a few tens).
        n_min: voxels with fewer PoCAs are unmeasured.
        min_weight: muons with a smaller weight (e.g. fewer than two hits a side) are not used.
    """

    name = "bca"

    def __init__(self, n_max: int = 30, n_min: int = 3, min_weight: float = 0.5) -> None:
        if n_min < 2 or n_max < n_min:
            raise MutomoError(f"BCA needs 2 <= n_min <= n_max; got n_min={n_min}, n_max={n_max}")
        self.n_max, self.n_min, self.min_weight = n_max, n_min, min_weight

    def __call__(self, data: ScatterData, volume: PassiveVolume) -> VoxelMap:
        """Score the voxels from reconstructed muons (PoCA points, normalised 3D deflections)."""
        if data.batch_shape:
            raise MutomoError(
                f"{type(self).__name__} scores one design and one volume at a time; got data with batch axes "
                f"{data.batch_shape} (use PocaX0 or poca_height for batches, or measure each separately)"
            )
        score, weight, measured = self.scores(data.scatters.poca, data.normalised_deflection, data.weight, volume)
        return VoxelMap(method=self.name, score=score, weight=weight, measured=measured)

    def scores(
        self, poca: Tensor, deflection: Tensor, weight: Tensor, volume: PassiveVolume
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(score, weight, measured)`` grids ``(nx, ny, nz)``.

        Args:
            poca: ``(mu, 3)`` PoCA points; those outside the volume are not used.
            deflection: ``(mu,)`` deflection times momentum (any positive scale, e.g. ``theta beta p``).
            weight: ``(mu,)`` muon weights.
            volume: the voxel grid.
        """
        size = math.prod(volume.shape)
        if poca.shape[0] == 0:
            # No muon at all (e.g. measure() selected none): nothing is measured. Without this the
            # gather below indexed an empty tensor with the empty slots' placeholder index 0.
            zeros = poca.new_zeros(volume.shape)
            return zeros, zeros, torch.zeros(volume.shape, dtype=torch.bool, device=poca.device)
        index, inside = voxel_indices(poca.detach(), volume)
        use = (inside & (weight.detach() > self.min_weight)).nonzero(as_tuple=True)[0]
        voxel = flat_index(index[use], volume.shape)
        order = sort_by_segment(deflection[use], voxel, descending=True)
        sorted_voxel = voxel[order]
        start, count = segment_starts(sorted_voxel, size)
        rank = torch.arange(order.numel(), device=poca.device) - start[sorted_voxel]
        keep = rank < self.n_max
        table = torch.full((size, self.n_max), -1, dtype=torch.long, device=poca.device)
        table[sorted_voxel[keep], rank[keep]] = use[order[keep]]
        valid = table >= 0
        slot = table.clamp(min=0)
        points, scale, w = poca[slot], deflection[slot].clamp(min=1e-12), weight[slot] * valid
        dist2 = (points[:, :, None, :] - points[:, None, :, :]).pow(2).sum(-1)
        log_metric = 0.5 * torch.log(dist2 + 1e-24) - torch.log(scale)[:, :, None] - torch.log(scale)[:, None, :]
        upper = torch.ones(self.n_max, self.n_max, dtype=torch.bool, device=poca.device).triu(1)
        pair = valid[:, :, None] & valid[:, None, :] & upper
        vox, i, j = pair.nonzero(as_tuple=True)
        median = segment_quantile(log_metric[vox, i, j], w[vox, i] * w[vox, j], vox, size, 0.5)
        n_points = valid.sum(-1)
        measured = n_points >= self.n_min
        score = torch.where(measured, -median, torch.zeros_like(median))
        return score.reshape(volume.shape), w.sum(-1).reshape(volume.shape), measured.reshape(volume.shape)
