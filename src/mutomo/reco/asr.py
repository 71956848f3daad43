"""Angle statistics reconstruction (ASR; Stapleton et al., JINST 9 (2014) P11019).

ASR does not locate a scatter at a point. Each muon's deflection is given to every voxel that
*both* its incoming and its outgoing track (each extended straight through the whole volume)
pass through, and a voxel's score is a quantile (by default the median) of the deflections it
collected. Voxels next to a strong scatterer see the low-Z muons around them as well as the
strongly deflected ones, so a quantile is much more robust than a mean.

Which voxels a track passes through is found by sampling each track at ``samples_per_layer``
heights inside every z layer of voxels (index arithmetic, no muon x voxel comparison); a voxel
is triggered in a layer when one of the incoming track's samples and one of the outgoing
track's samples fall in it. Cost: ``mu x nz x samples^2`` comparisons, linear in the number of
muons, plus one sort of the ``(muon, voxel)`` pairs for the quantiles. With 10 cm voxels and
track slopes below ~1, four samples per layer miss only corner clips of a few mm.

Each muon contributes its normalised deflection ``u = theta beta p / 13.6 MeV`` (3D angle;
dimensionless, ~ sqrt(L / X0)) when its momentum is known or estimated, weighted by its muon
weight, so the score is differentiable in the deflections and the weights.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mutomo.errors import MutomoError
from mutomo.reco.maps import ScatterData, VoxelMap
from mutomo.reco.segments import segment_quantile
from mutomo.reco.track_fit import Tracks
from mutomo.volume.grid import PassiveVolume


def _layer_cells(tracks: Tracks, z: Tensor, volume: PassiveVolume) -> tuple[Tensor, Tensor]:
    """Flat (ix, iy) cell and inside flag of each track at heights ``z``; ``(mu, nz, S)`` each."""
    (x_lo, _), (y_lo, _) = volume.x_range, volume.y_range
    nx, ny, _ = volume.shape
    dx, dy, _ = volume.voxel_size
    xy = tracks.xy[:, None, None, :] + tracks.slope[:, None, None, :] * (z - tracks.z_ref)[None, ..., None]
    ix = torch.floor((xy[..., 0] - x_lo) / dx).long()
    iy = torch.floor((xy[..., 1] - y_lo) / dy).long()
    inside = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
    return ix * ny + iy, inside


def triggered_voxels(
    incoming: Tracks, outgoing: Tracks, volume: PassiveVolume, samples_per_layer: int = 4
) -> tuple[Tensor, Tensor]:
    """The ``(muon, voxel)`` pairs of ASR: voxels crossed by both tracks of a muon.

    Args:
        incoming, outgoing: tracks of the same muons.
        volume: the voxel grid.
        samples_per_layer: heights per z layer at which the tracks are sampled (>= 1).

    Returns:
        ``(muon_index (E,), flat_voxel (E,))``, each voxel at most once per muon.
    """
    if samples_per_layer < 1:
        raise MutomoError(f"samples_per_layer must be >= 1; got {samples_per_layer}")
    nx, ny, nz = volume.shape
    dz = volume.voxel_size[2]
    dtype, device = incoming.xy.dtype, incoming.xy.device
    frac = (torch.arange(samples_per_layer, dtype=dtype, device=device) + 0.5) / samples_per_layer
    layers = torch.arange(nz, dtype=dtype, device=device)
    z = volume.z_low + (layers[:, None] + frac[None, :]) * dz  # (nz, S)
    with torch.no_grad():
        cell_in, inside_in = _layer_cells(incoming, z, volume)
        cell_out, inside_out = _layer_cells(outgoing, z, volume)
        cell_out = torch.where(inside_out, cell_out, -1)
        shared = (cell_in[..., :, None] == cell_out[..., None, :]).any(-1) & inside_in  # (mu, nz, S)
        # Keep the first sample of each distinct cell in a layer.
        earlier = torch.ones(samples_per_layer, samples_per_layer, dtype=torch.bool, device=z.device).tril(-1)
        repeat = ((cell_in[..., :, None] == cell_in[..., None, :]) & earlier).any(-1)
        keep = shared & ~repeat
        muon, layer, sample = keep.nonzero(as_tuple=True)
        voxel = cell_in[muon, layer, sample] * nz + layer
    return muon, voxel


class AngleStatisticsReconstruction:
    """ASR scores: per voxel, a weighted quantile of the deflections of the muons crossing it.

    Args:
        quantile: which quantile of each voxel's deflections is its score (Stapleton et al.
            use the median and discuss higher ones), in (0, 1).
        samples_per_layer: see :func:`triggered_voxels`.
        min_weight: voxels crossed by less muon weight than this are unmeasured (score 0).
    """

    name = "asr"

    def __init__(self, quantile: float = 0.5, samples_per_layer: int = 4, min_weight: float = 5.0) -> None:
        if not 0.0 < quantile < 1.0:
            raise MutomoError(f"ASR quantile must be in (0, 1); got {quantile}")
        self.quantile = quantile
        self.samples_per_layer = samples_per_layer
        self.min_weight = min_weight

    def __call__(self, data: ScatterData, volume: PassiveVolume) -> VoxelMap:
        """Score the voxels from reconstructed muons (normalised 3D deflections)."""
        if data.batch_shape:
            raise MutomoError(
                f"{type(self).__name__} scores one design and one volume at a time; got data with batch axes "
                f"{data.batch_shape} (use PocaX0 or poca_height for batches, or measure each separately)"
            )
        score, weight, measured = self.scores(
            data.incoming, data.outgoing, data.normalised_deflection, data.weight, volume
        )
        return VoxelMap(method=self.name, score=score, weight=weight, measured=measured)

    def scores(
        self, incoming: Tracks, outgoing: Tracks, deflection: Tensor, weight: Tensor, volume: PassiveVolume
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(score, weight, measured)`` grids ``(nx, ny, nz)``: the quantile of ``deflection``
        ``(mu,)`` (0 where unmeasured), the muon weight that crossed each voxel, and whether that
        reached ``min_weight``."""
        muon, voxel = triggered_voxels(incoming, outgoing, volume, self.samples_per_layer)
        size = math.prod(volume.shape)
        w = weight[muon]
        score = segment_quantile(deflection[muon], w, voxel, size, self.quantile)
        total = torch.zeros(size, dtype=w.dtype, device=w.device).index_add(0, voxel, w)
        measured = total >= self.min_weight
        score = torch.where(measured, score, torch.zeros_like(score))
        return score.reshape(volume.shape), total.reshape(volume.shape), measured.reshape(volume.shape)
