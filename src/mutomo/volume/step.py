"""One step of the propagation through a voxel layer, as two pure kernels.

:func:`step_enter` (the voxel lookup and the energy loss) and :func:`step_scatter` (scattering
and the move) are the two halves of a step of :func:`mutomo.volume.propagation.propagate_volume`,
around the rare range-out branch (:meth:`mutomo.volume.energy_loss.RangeTables.finish_step`).
They are pure functions of tensors and numbers, so that they run as they are (the plain kernels),
compiled in the process (``torch.compile``, on a GPU) or compiled ahead of time
(:mod:`mutomo.volume.aot`, on the CPU).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mutomo.units import MUON_MASS
from mutomo.volume.energy_loss import rk2_step
from mutomo.volume.grid import padded_cell
from mutomo.volume.scattering import ScatterParameters, ScatterState, rows_of, scatter_step

# Muons whose direction comes within this cosine of horizontal (or turns upwards) are lost.
MIN_DOWNWARD_COSINE = 0.05

Components = tuple[Tensor, Tensor, Tensor]
StateTuple = tuple[Tensor, Tensor, Tensor, Tensor, Tensor]


def state_tuple(state: ScatterState) -> StateTuple:
    return (state.chi_c2, state.omega, state.cut_var, state.nuclear_loss, state.core_var)


def step_enter(
    x: Tensor,
    y: Tensor,
    dir_z: Tensor,
    dir_x: Tensor,
    dir_y: Tensor,
    kinetic: Tensor,
    columns: Tensor,
    materials: Tensor,
    offsets: Tensor | None,
    log_stopping_power: Tensor,
    dz: float | Tensor,
    transform: tuple[float | Tensor, float | Tensor, float | Tensor, float | Tensor, int | Tensor, int | Tensor],
    log_t0: float | Tensor,
    dlog_t: float | Tensor,
    energy_loss: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """First half of a step, pure: path length ``ds``, slopes, the ``(4, mu)`` properties of each
    muon's voxel (gathered at mid-step), its material, and the RK2 energy loss ``(first, rk2)``
    (:func:`mutomo.volume.energy_loss.rk2_step`; ``kinetic`` twice without energy loss)."""
    inv_cos = (-1.0 / dir_z).clamp(1.0, 1.0 / MIN_DOWNWARD_COSINE)
    ds = dz * inv_cos
    slope_x, slope_y = dir_x * inv_cos, dir_y * inv_cos
    cell = padded_cell(x + (0.5 * dz) * slope_x, y + (0.5 * dz) * slope_y, *transform)
    if offsets is not None:
        cell = cell.add_(offsets)
    # index_select: the same values as columns[:, cell], ~5x faster on CPU.
    props = columns.index_select(1, cell)
    if not energy_loss:
        return ds, slope_x, slope_y, props, cell, kinetic, kinetic
    material = materials.index_select(0, cell)
    first, rk2 = rk2_step(log_stopping_power, kinetic, material, ds, log_t0, dlog_t)
    return ds, slope_x, slope_y, props, material, first, rk2


def step_scatter(
    x: Tensor,
    y: Tensor,
    direction: Components,
    momentum: Tensor,
    kinetic_after: Tensor,
    weight: Tensor,
    x0_acc: Tensor,
    state: StateTuple,
    ds: Tensor,
    slope_x: Tensor,
    slope_y: Tensor,
    props: Tensor,
    randoms: tuple[Tensor, Tensor] | None,
    stopped: Tensor,
    dz: float | Tensor,
    constants: tuple[Any, ...],
    energy_loss: bool,
    hard_subset: bool = False,
) -> tuple[Tensor, Tensor, Components, Tensor, Tensor, Tensor, StateTuple]:
    """Second half of a step, pure: scatter (when ``randoms``, :func:`draw_scatter_blocks`' normals
    and uniforms, are given), move, and weight out the muons that stopped or turned
    (near-)horizontal; returns ``x, y, direction, momentum, weight, path_x0, state``.
    ``hard_subset``: :func:`~mutomo.volume.scattering.scatter_step`'s, for the plain kernels."""
    x0, tail_x0, screening_p2, nuclear_p = props.unbind(0)
    momentum_after = torch.sqrt(kinetic_after * (kinetic_after + 2 * MUON_MASS)) if energy_loss else momentum
    new_x, new_y = x + dz * slope_x, y + dz * slope_y
    new_direction = direction
    new_state = state
    if randoms is not None:
        p_mid = 0.5 * (momentum + momentum_after)
        beta = p_mid * torch.rsqrt(p_mid**2 + MUON_MASS**2)
        params = ScatterParameters(*constants)
        before = ScatterState(*state)
        new_direction, (disp_x, disp_y), scattered = scatter_step(
            direction, p_mid, beta, before, ds, x0, tail_x0, screening_p2, nuclear_p, rows_of(*randoms), params,
            hard_subset,
        )  # fmt: skip
        new_state = state_tuple(scattered)
        new_x, new_y = new_x + disp_x, new_y + disp_y
    # Stopped or (near-)horizontal muons get weight 0; they keep moving with finite values.
    alive = (new_direction[2] < -MIN_DOWNWARD_COSINE) & ~stopped
    return new_x, new_y, new_direction, momentum_after, weight * alive, x0_acc + ds / x0, new_state
