"""Sparse path lengths of each muon through the voxels (Siddon's plane crossings), and the path a
muon is taken to follow (entry -> PoCA -> exit, or straight). See :mod:`mutomo.reco.mlem`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from mutomo.errors import MutomoError
from mutomo.reco.track_fit import Tracks
from mutomo.volume.grid import PassiveVolume

# Segments shorter than this along an axis (m) are taken as parallel to that axis's planes.
PARALLEL = 1e-12

PathModel = Literal["poca", "straight"]


@dataclass(frozen=True)
class PathLengths:
    """Sparse muon-by-voxel path lengths: one entry per (muon, voxel) crossed.

    Attributes:
        muon: ``(E,)`` long muon index.
        voxel: ``(E,)`` long flat voxel index, ``(ix * ny + iy) * nz + iz`` (plus
            ``batch * nx * ny * nz`` for batched data, see :meth:`MaximumLikelihoodEM.problem`).
        length: ``(E,)`` path length ``L`` in the voxel (m).
        tail: ``(E,)`` path length ``T`` from leaving the voxel to leaving the volume (m).
        n_muons: number of muons (rows).
        n_voxels: number of voxels (columns).
    """

    muon: Tensor
    voxel: Tensor
    length: Tensor
    tail: Tensor
    n_muons: int
    n_voxels: int

    def weight_matrices(self) -> Tensor:
        """``(3, E)`` the distinct entries ``(W_00, W_01, W_11)`` of each ``W_ij`` (module
        docstring): ``L``, ``L^2 / 2 + L T`` (m^2) and ``L^3 / 3 + L^2 T + L T^2`` (m^3)."""
        L, T = self.length, self.tail
        return torch.stack([L, L * (0.5 * L + T), L * (L * L / 3 + L * T + T * T)])

    def to_sparse(self) -> Tensor:
        """The path lengths as a coalesced sparse COO ``(n_muons, n_voxels)`` matrix (m)."""
        index = torch.stack([self.muon, self.voxel])
        shape = (self.n_muons, self.n_voxels)
        return torch.sparse_coo_tensor(index, self.length, shape, check_invariants=True).coalesce()


def path_lengths(vertices: Tensor, volume: PassiveVolume) -> PathLengths:
    """Path lengths of polylines through the voxels of ``volume`` (Siddon's method, vectorised).

    Each segment ``P_k -> P_k+1`` is cut at every grid plane: the crossing parameters
    ``s = (plane - P_k) / (P_k+1 - P_k)`` of the three axes, clamped to [0, 1] and sorted, bound
    pieces whose voxel is that of their midpoint. Pieces outside the grid are dropped, and
    consecutive pieces of a muon in the same voxel are merged. Cost: a sort of
    ``nx + ny + nz + 5`` numbers per segment; no loop over muons or voxels. Differentiable in the
    vertices (the lengths are continuous in them); segments parallel to a plane or of zero length
    give finite values and gradients.

    Args:
        vertices: ``(mu, P, 3)`` the ``P >= 2`` vertices of each muon's path (m), in order.
        volume: the voxel grid.

    Returns:
        :class:`PathLengths` with entries ordered by muon, then along the path.

    Example:
        >>> import torch
        >>> vol = PassiveVolume.uniform("water", (1.0, 1.0, 0.4), 0.1, dtype=torch.float64)
        >>> path = torch.tensor([[[0.55, 0.55, 0.4], [0.55, 0.55, 0.0]]], dtype=torch.float64)
        >>> p = path_lengths(path, vol)
        >>> p.voxel.tolist()  # voxel (5, 5) of the four layers, from the top
        [223, 222, 221, 220]
        >>> [round(v, 12) for v in p.length.tolist()], [round(v, 12) for v in p.tail.tolist()]
        ([0.1, 0.1, 0.1, 0.1], [0.3, 0.2, 0.1, 0.0])
    """
    if vertices.dim() != 3 or vertices.shape[1] < 2 or vertices.shape[2] != 3:
        raise MutomoError(f"vertices must have shape (mu, P >= 2, 3); got {tuple(vertices.shape)}")
    mu = vertices.shape[0]
    dtype, device = vertices.dtype, vertices.device
    shape = volume.shape
    origin = torch.tensor(volume.origin, dtype=dtype, device=device)
    size = torch.tensor(volume.voxel_size, dtype=dtype, device=device)
    start, delta = vertices[:, :-1], vertices[:, 1:] - vertices[:, :-1]  # (mu, S, 3)
    params = [torch.zeros_like(start[..., :1]), torch.ones_like(start[..., :1])]
    for axis in range(3):
        planes = origin[axis] + torch.arange(shape[axis] + 1, dtype=dtype, device=device) * size[axis]
        d = delta[..., axis : axis + 1]
        moving = d.abs() > PARALLEL
        # NaN-safe division: a segment parallel to the planes never crosses them (s = 0, a piece of length 0).
        s = (planes - start[..., axis : axis + 1]) / torch.where(moving, d, torch.ones_like(d))
        params.append(torch.where(moving, s, torch.zeros_like(s)).clamp(0.0, 1.0))
    s = torch.cat(params, -1).sort(-1).values  # (mu, S, K)
    s0, s1 = s[..., :-1], s[..., 1:]  # (mu, S, K - 1)
    n_pieces = s0.shape[1] * s0.shape[2]
    sq = (delta**2).sum(-1)
    positive = sq > 0
    seg_length = torch.where(positive, torch.sqrt(torch.where(positive, sq, torch.ones_like(sq))), 0.0)
    length = (s1 - s0) * seg_length[..., None]
    with torch.no_grad():
        # The voxel of each piece's midpoint, axis by axis (no (mu, S, K, 3) temporaries).
        mid = 0.5 * (s0 + s1)
        keep = length > 0
        flat = torch.zeros_like(mid, dtype=torch.long)
        for axis in range(3):
            coord = start[..., axis, None] + delta[..., axis, None] * mid
            index = torch.floor((coord - origin[axis]) / size[axis])
            keep &= (index >= 0) & (index < shape[axis])
            flat = flat * shape[axis] + index.clamp(0, shape[axis] - 1).long()
        keep, flat = keep.reshape(mu, n_pieces), flat.reshape(mu, n_pieces)
    length = length.reshape(mu, n_pieces)  # in path order
    travelled = torch.cumsum(length * keep, -1)
    tail = travelled[:, -1:] - travelled  # length still to go after each piece
    muon, piece = keep.nonzero(as_tuple=True)
    voxel = flat[muon, piece]
    piece_length, piece_tail = length[muon, piece], tail[muon, piece]
    # Merge runs of pieces of one muon in one voxel (the two sides of a PoCA inside a voxel).
    with torch.no_grad():
        first = torch.ones_like(muon, dtype=torch.bool)
        first[1:] = (muon[1:] != muon[:-1]) | (voxel[1:] != voxel[:-1])
        last = torch.ones_like(first)
        last[:-1] = first[1:]
        run = torch.cumsum(first.long(), 0) - 1
    n_runs = int(first.sum())
    run_length = torch.zeros(n_runs, dtype=dtype, device=device).index_add(0, run, piece_length)
    return PathLengths(
        muon=muon[last],
        voxel=voxel[last],
        length=run_length,
        tail=piece_tail[last],
        n_muons=mu,
        n_voxels=math.prod(shape),
    )


def muon_path(
    incoming: Tracks, outgoing: Tracks, poca: Tensor, volume: PassiveVolume, path: PathModel = "poca"
) -> Tensor:
    """``(mu, P, 3)`` vertices of each muon's path through the volume (m).

    ``path="straight"``: entry on the top face -> exit on the bottom face (``P = 2``).
    ``path="poca"``: entry -> vertex -> exit (``P = 3``), the vertex at the PoCA's height clamped
    into the volume, midway between the two tracks at that height, inside the footprint. Inside
    the volume that is the PoCA to first order in the deflection; the PoCA of nearly parallel
    tracks can lie metres away, and clamping it coordinate by coordinate would send the path
    on a lateral detour.

    Args:
        incoming, outgoing: the tracks; their points at ``z_high`` and ``z_low`` are the entry and exit.
        poca: ``(mu, 3)`` points of closest approach (m).
        volume: the voxel grid.
        path: ``"poca"`` or ``"straight"``.
    """
    entry, exit_ = incoming.at(volume.z_high), outgoing.at(volume.z_low)
    if path == "straight":
        return torch.stack([entry, exit_], 1)
    if path != "poca":
        raise MutomoError(f"path must be 'poca' or 'straight'; got {path!r}")
    height = poca[:, 2].clamp(volume.z_low, volume.z_high)
    vertex = 0.5 * (incoming.at(height) + outgoing.at(height))
    (x_lo, x_hi), (y_lo, y_hi) = volume.x_range, volume.y_range
    low = torch.tensor([x_lo, y_lo, volume.z_low], dtype=vertex.dtype, device=vertex.device)
    high = torch.tensor([x_hi, y_hi, volume.z_high], dtype=vertex.dtype, device=vertex.device)
    return torch.stack([entry, torch.clamp(vertex, low, high), exit_], 1)
