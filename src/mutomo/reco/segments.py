"""Weighted quantiles of many small groups at once ("segments"), by one sort: O(n log n).

ASR and binned clustering both score a voxel by a quantile of a distribution collected in it
(angles of the muons that crossed it, pair metrics of its PoCA points). Looping over voxels is
what makes reference implementations slow; here every group is handled by one stable sort on
(value, then segment), cumulative weights, and an interpolation, all vectorised.

The weighted quantile uses the midpoint rule: the ``k``-th sorted value of a segment sits at
cumulative probability ``P_k = (C_k - w_k / 2) / W`` (``C_k`` the running weight sum, ``W``
the segment's total), and the ``q``-quantile interpolates linearly between the two values
whose ``P`` bracket ``q`` (clamped to the extremes). With equal weights and odd counts the
median is the middle value. The result is differentiable in the values (and, through the
interpolation, in the weights).
"""

from __future__ import annotations

import torch
from torch import Tensor

from mutomo.errors import MutomoError


def sort_by_segment(values: Tensor, segment: Tensor, descending: bool = False) -> Tensor:
    """Permutation that groups entries by ``segment`` (ascending) and sorts each group by value."""
    by_value = torch.argsort(values.detach(), descending=descending, stable=True)
    by_segment = torch.argsort(segment[by_value], stable=True)
    return by_value[by_segment]


def segment_starts(sorted_segment: Tensor, n_segments: int) -> tuple[Tensor, Tensor]:
    """``(start, count)`` of each segment in an array sorted by segment, each ``(n_segments,)``."""
    count = torch.bincount(sorted_segment, minlength=n_segments)
    return torch.cumsum(count, 0) - count, count


def segment_quantile(values: Tensor, weights: Tensor, segment: Tensor, n_segments: int, q: float) -> Tensor:
    """Weighted ``q``-quantile of ``values`` within each segment.

    Args:
        values: ``(n,)`` entries.
        weights: ``(n,)`` non-negative weights.
        segment: ``(n,)`` long segment index in ``[0, n_segments)``.
        n_segments: number of segments.
        q: quantile in [0, 1].

    Returns:
        ``(n_segments,)`` quantiles; 0 for segments with no entries or no weight.

    Example:
        >>> v = torch.tensor([3.0, 1.0, 2.0, 10.0, 20.0])
        >>> segment_quantile(v, torch.ones(5), torch.tensor([0, 0, 0, 2, 2]), 3, 0.5)
        tensor([ 2.,  0., 15.])
    """
    if not 0.0 <= q <= 1.0:
        raise MutomoError(f"quantile q must be in [0, 1]; got {q}")
    if values.numel() == 0:
        return values.new_zeros(n_segments)
    order = sort_by_segment(values, segment)
    v, w, s = values[order], weights[order], segment[order]
    start, count = segment_starts(s, n_segments)
    # Cumulative weights within each segment, accumulated in float64 (1e7 entries lose precision in float32).
    running = torch.cumsum(w.double(), 0)
    total = torch.zeros(n_segments, dtype=torch.float64, device=v.device).index_add(0, s, w.double())
    before = torch.cumsum(total, 0) - total
    safe_total = total.clamp(min=1e-300)
    position = ((running - before[s] - 0.5 * w.double()) / safe_total[s]).to(v.dtype)
    below = torch.zeros(n_segments, dtype=torch.long, device=v.device).index_add(0, s, (position <= q).long())
    last = (count - 1).clamp(min=0)
    lo = start + torch.minimum((below - 1).clamp(min=0), last)
    hi = start + torch.minimum(below, last)
    lo, hi = lo.clamp(max=v.numel() - 1), hi.clamp(max=v.numel() - 1)
    gap = position[hi] - position[lo]
    frac = torch.where(gap > 0, (q - position[lo]) / torch.where(gap > 0, gap, torch.ones_like(gap)), 0.0)
    frac = frac.clamp(0.0, 1.0)
    result = v[lo] + frac * (v[hi] - v[lo])
    return torch.where((count > 0) & (total > 0), result, torch.zeros_like(result))
