"""Moving muons: straight flight between planes, and stepping through a passive volume."""

from __future__ import annotations

import torch
from torch import Tensor

from mutomo.muons.batch import MuonBatch
from mutomo.units import MUON_MASS
from mutomo.volume.grid import PassiveVolume, steps_per_layer
from mutomo.volume.scattering import (
    DEFAULT_SCATTER,
    ScatterParameters,
    ScatterState,
    draw_scatter_randoms,
    scatter_step,
)

# Muons whose direction comes within this cosine of horizontal (or turns upwards) are lost.
MIN_DOWNWARD_COSINE = 0.05
# Largest vertical step in radiation lengths. The tail/core split of the scattering model is
# step-independent to ~1 % for steps below a few X0; a single step of 18 X0 (10 cm of lead)
# comes out ~4 % wider, so layers are subdivided as Geant4's step limiters would.
MAX_STEP_X0 = 5.0
# Smallest |cos(zenith)| position_at_z divides by. An exactly horizontal muon never reaches another
# height: dividing by its cos = 0 gave inf/NaN crossing points (NaN hits, NaN gradients, and a NaN
# voxel index that crashed propagate_volume). Flooring |cos| sends it 1e12 times the height
# difference away instead, far outside every panel (hit weight 0), with finite values and
# gradients; a muon within 1e-12 of horizontal would cross that far away anyway.
MIN_ABS_COSINE = 1e-12


def position_at_z(muons: MuonBatch, z: Tensor | float) -> Tensor:
    """Where each muon's straight line crosses height ``z``; pure.

    Args:
        muons: the batch (positions and directions).
        z: a height (m), scalar or broadcastable to ``(..., mu)`` (e.g. ``(panels, 1)``).

    Returns:
        ``(..., mu, 3)`` crossing points (differentiable in ``z``), all at height ``z``; a muon
        within ``MIN_ABS_COSINE`` of horizontal, which never crosses (or only ~1e12 m away), gets
        a finite point very far away on that plane, not on its line.
    """
    z = torch.as_tensor(z, dtype=muons.dtype, device=muons.device)
    cos = muons.direction[..., 2]
    floored = cos.abs() < MIN_ABS_COSINE
    cos = torch.copysign(cos.abs().clamp(min=MIN_ABS_COSINE), cos)  # finite for horizontal muons
    travel = (z - muons.position[..., 2]) / cos
    point = muons.position + travel[..., None] * muons.direction
    # A floored muon travels less than its line needs to reach z, so its own height would be
    # wrong (a muon at cos 7e-14 ended at z = 0.09 instead of 1): put it on the plane, where
    # every caller looks for it. Muons that are not floored keep their values bit for bit.
    height = torch.where(floored, z.expand_as(travel), point[..., 2])
    return torch.cat([point[..., :2], height[..., None]], dim=-1)


def propagate_straight(muons: MuonBatch, z: float) -> MuonBatch:
    """Fly muons in a straight line (air, no scattering) to the plane at height ``z``."""
    return muons.replace(position=position_at_z(muons, z))


def propagate_volume(
    muons: MuonBatch,
    volume: PassiveVolume,
    step_length: float = 0.01,
    generator: torch.Generator | None = None,
    scattering: bool = True,
    energy_loss: bool = True,
    params: ScatterParameters = DEFAULT_SCATTER,
) -> MuonBatch:
    """Step muons from ``volume.z_high`` down to ``volume.z_low``.

    Every muon advances by the same height per step (``voxel height / n`` with ``n`` the
    smallest count that keeps steps at most ``step_length`` and, when scattering, at most
    ``MAX_STEP_X0`` radiation lengths of the layer's densest voxel), so the voxel layer is common
    and the material lookup is a gather by ``ix * ny + iy``: O(mu) per step. Path length
    per step is ``dz / |cos(theta)|``. Muons that range out or turn (near-)horizontal get
    weight 0 (their later values stay finite but carry no meaning).

    Args:
        muons: batch at (or above) ``z_high``; it is first flown straight to ``z_high``.
        volume: the passive volume.
        step_length: largest vertical step (m).
        generator: random source for the scattering draws.
        scattering, energy_loss: switch the processes (for tests and studies).
        params: scattering-model constants.

    Returns:
        The batch at ``z_low``; for a batch of volumes (:meth:`PassiveVolume.stack`), the input
        muons through every volume, volume after volume (``batch * mu`` muons).
    """
    muons = propagate_straight(muons, volume.z_high)
    # A batch of volumes: the same muons through each, held volume after volume.
    n_draw = len(muons)  # random draws per step: shared by every volume of a batch
    offsets = volume.batch_offsets(n_draw, muons.device)
    if offsets is not None:
        muons = muons.repeat(volume.batch_size)
    height = volume.voxel_size[2]
    # Components as separate contiguous (mu,) tensors: every operation of a step runs on
    # contiguous memory (column views of (mu, 3) tensors are strided and much slower).
    x, y = muons.position[:, 0].contiguous(), muons.position[:, 1].contiguous()
    direction = (
        muons.direction[:, 0].contiguous(),
        muons.direction[:, 1].contiguous(),
        muons.direction[:, 2].contiguous(),
    )
    momentum, weight = muons.momentum, muons.weight
    kinetic = muons.kinetic_energy  # carried along with the momentum
    state = ScatterState.zeros(momentum)
    x0_acc = muons.path_x0
    for iz in reversed(range(volume.shape[2])):
        table, materials = volume.layer_properties(iz)
        columns = table.T.contiguous()  # (4, cells): one gather per step fetches all four
        x0_min = float(table[:, 0].detach().min())
        n_sub = steps_per_layer(height, min(step_length, MAX_STEP_X0 * x0_min) if scattering else step_length)
        dz = height / n_sub
        for _ in range(n_sub):
            inv_cos = (-1.0 / direction[2]).clamp(1.0, 1.0 / MIN_DOWNWARD_COSINE)
            ds = dz * inv_cos
            slope_x, slope_y = direction[0] * inv_cos, direction[1] * inv_cos
            cell = volume.flat_voxel_index(x + (0.5 * dz) * slope_x, y + (0.5 * dz) * slope_y)
            if offsets is not None:
                cell = cell.add_(offsets)
            x0, tail_x0, screening_p2, nuclear_p = columns[:, cell].unbind(0)
            if energy_loss:
                kinetic_after, stopped = volume.range_tables.step(kinetic, materials[cell], ds)
                momentum_after = torch.sqrt(kinetic_after * (kinetic_after + 2 * MUON_MASS))
            else:
                kinetic_after, momentum_after, stopped = kinetic, momentum, torch.zeros_like(weight, dtype=torch.bool)
            new_x, new_y = x + dz * slope_x, y + dz * slope_y
            new_direction = direction
            if scattering:
                p_mid = 0.5 * (momentum + momentum_after)
                beta = p_mid * torch.rsqrt(p_mid**2 + MUON_MASS**2)
                randoms = draw_scatter_randoms(n_draw, generator, x.dtype, x.device)
                if offsets is not None:  # the same draws in every volume: a loop over them, in one pass
                    randoms = randoms.repeat(1, volume.batch_size)
                new_direction, (disp_x, disp_y), state = scatter_step(
                    direction, p_mid, beta, state, ds, x0, tail_x0, screening_p2, nuclear_p, randoms, params
                )
                new_x, new_y = new_x + disp_x, new_y + disp_y
            # Stopped or (near-)horizontal muons get weight 0; they keep moving with finite values.
            alive = (new_direction[2] < -MIN_DOWNWARD_COSINE) & ~stopped
            weight = weight * alive
            x, y, direction, momentum, kinetic = new_x, new_y, new_direction, momentum_after, kinetic_after
            x0_acc = x0_acc + ds / x0
    position = torch.stack([x, y, torch.full_like(x, volume.z_low)], dim=1)
    return MuonBatch(
        position=position,
        direction=torch.stack(direction, dim=1),
        momentum=momentum,
        charge=muons.charge,
        weight=weight,
        path_x0=x0_acc,
    )
