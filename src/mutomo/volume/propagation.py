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


def position_at_z(muons: MuonBatch, z: Tensor | float) -> Tensor:
    """Where each muon's straight line crosses height ``z``; pure.

    Args:
        muons: the batch (positions and directions).
        z: a height (m), scalar or broadcastable to ``(..., mu)`` (e.g. ``(panels, 1)``).

    Returns:
        ``(..., mu, 3)`` crossing points (differentiable in ``z``).
    """
    z = torch.as_tensor(z, dtype=muons.dtype, device=muons.device)
    travel = (z - muons.position[..., 2]) / muons.direction[..., 2]
    return muons.position + travel[..., None] * muons.direction


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
    smallest count that keeps steps at most ``step_length``), so the voxel layer is common
    and the material lookup is a gather by ``ix * ny + iy``: O(mu) per step. Path length
    per step is ``dz / |cos(theta)|``. Muons that range out or turn (near-)horizontal get
    weight 0 and are frozen.

    Args:
        muons: batch at (or above) ``z_high``; it is first flown straight to ``z_high``.
        volume: the passive volume.
        step_length: largest vertical step (m).
        generator: random source for the scattering draws.
        scattering, energy_loss: switch the processes (for tests and studies).
        params: scattering-model constants.

    Returns:
        The batch at ``z_low``.
    """
    muons = propagate_straight(muons, volume.z_high)
    n_sub = steps_per_layer(volume.voxel_size[2], step_length)
    dz = volume.voxel_size[2] / n_sub
    position, direction, momentum, weight = (
        muons.position,
        muons.direction,
        muons.momentum,
        muons.weight,
    )
    state = ScatterState.zeros(momentum)
    x0_acc = muons.path_x0
    n = len(muons)
    z = volume.z_high
    for iz in reversed(range(volume.shape[2])):
        props = volume.layer_properties(iz)
        for _ in range(n_sub):
            alive = weight > 0
            cos_down = -direction[:, 2]
            ds = dz / cos_down
            mid_xy = position[:, :2] + (0.5 * dz) * direction[:, :2] / cos_down[:, None]
            cell = volume.flat_voxel_index(mid_xy)
            x0 = props["x0"][cell]
            energy = torch.sqrt(momentum**2 + MUON_MASS**2)
            if energy_loss:
                kinetic_after, stopped = volume.range_tables.step(energy - MUON_MASS, props["material"][cell], ds)
                momentum_after = torch.sqrt((kinetic_after + MUON_MASS) ** 2 - MUON_MASS**2)
            else:
                momentum_after, stopped = momentum, torch.zeros_like(alive)
            p_mid = 0.5 * (momentum + momentum_after)
            new_direction, displacement = direction, torch.zeros_like(position)
            if scattering:
                beta = p_mid / torch.sqrt(p_mid**2 + MUON_MASS**2)
                randoms = draw_scatter_randoms(n, generator, position.dtype, position.device)
                new_direction, displacement, state = scatter_step(
                    direction,
                    p_mid,
                    beta,
                    state,
                    ds,
                    x0,
                    props["tail_x0"][cell],
                    props["screening_p2"][cell],
                    props["nuclear_p"][cell],
                    randoms,
                    params,
                )
            z = z - dz
            moving = alive & ~stopped & (-new_direction[:, 2] > MIN_DOWNWARD_COSINE)
            new_position = position + ds[:, None] * direction + displacement
            new_position = torch.cat([new_position[:, :2], torch.full_like(new_position[:, 2:], z)], dim=1)
            straight = position + ds[:, None] * direction
            straight = torch.cat([straight[:, :2], torch.full_like(straight[:, 2:], z)], dim=1)
            position = torch.where(moving[:, None], new_position, straight)
            direction = torch.where(moving[:, None], new_direction, direction)
            momentum = torch.where(moving, momentum_after, momentum)
            weight = torch.where(moving, weight, torch.zeros_like(weight))
            x0_acc = x0_acc + ds / x0
    return MuonBatch(
        position=position,
        direction=direction,
        momentum=momentum,
        charge=muons.charge,
        weight=weight,
        path_x0=x0_acc,
    )
