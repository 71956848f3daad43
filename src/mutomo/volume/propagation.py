"""Moving muons: straight flight between planes, and stepping through a passive volume."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from mutomo import runtime
from mutomo.muons.batch import MuonBatch
from mutomo.volume import aot
from mutomo.volume.grid import PassiveVolume, steps_per_layer
from mutomo.volume.scattering import DEFAULT_SCATTER, ScatterParameters, ScatterState, draw_scatter_blocks
from mutomo.volume.step import MIN_DOWNWARD_COSINE, state_tuple, step_enter, step_scatter

__all__ = ["MIN_DOWNWARD_COSINE", "position_at_z", "propagate_straight", "propagate_volume"]

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

    A step is two pure functions (:func:`~mutomo.volume.step.step_enter`: voxel lookup and the
    energy loss; :func:`~mutomo.volume.step.step_scatter`: scattering and the move) around the
    rare range-out branch. With compiled kernels switched on
    (:func:`mutomo.runtime.set_compiled_kernels`, or ``MUTOMO_COMPILE=1``) and no gradient to
    record, each is one fused kernel (compiled ahead of time on the CPU, :mod:`mutomo.volume.aot`;
    by ``torch.compile`` on a GPU); the results then differ from the plain path at float rounding
    (see benchmarks/README.md).

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
    tables = volume.range_tables
    transform = volume.cell_transform()
    constants = dataclasses.astuple(params)
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in (volume.x0, muons.position, muons.direction))
    enter, scatter = _kernels(scattering and energy_loss and not grad, x.device)
    compiled = enter is not step_enter  # the plain kernels evaluate the rare hard scatters on their own
    for iz in reversed(range(volume.shape[2])):
        table, materials = volume.layer_properties(iz)
        columns = table.T.contiguous()  # (4, cells): one gather per step fetches all four
        x0_min = float(table[:, 0].detach().min())
        n_sub = steps_per_layer(height, min(step_length, MAX_STEP_X0 * x0_min) if scattering else step_length)
        dz = height / n_sub
        for _ in range(n_sub):
            randoms = draw_scatter_blocks(n_draw, generator, x.dtype, x.device) if scattering else None
            if randoms is not None and offsets is not None:  # the same draws in every volume, in one pass
                randoms = (randoms[0].repeat(volume.batch_size, 1), randoms[1].repeat(volume.batch_size, 1))
            ds, slope_x, slope_y, props, material, first, rk2 = enter(
                x, y, direction[2], direction[0], direction[1], kinetic, columns, materials, offsets,
                tables.log_stopping_power, dz, transform, tables.log_t0, tables.dlog_t, energy_loss,
            )  # fmt: skip
            if energy_loss:
                kinetic_after, stopped = tables.finish_step(kinetic, material, ds, first, rk2)
            else:
                kinetic_after, stopped = kinetic, torch.zeros_like(weight, dtype=torch.bool)
            x, y, direction, momentum, weight, x0_acc, carried = scatter(
                x, y, direction, momentum, kinetic_after, weight, x0_acc, state_tuple(state), ds, slope_x, slope_y,
                props, randoms, stopped, dz, constants, energy_loss, not compiled,
            )  # fmt: skip
            state = ScatterState(*carried)
            kinetic = kinetic_after
    position = torch.stack([x, y, torch.full_like(x, volume.z_low)], dim=1)
    return MuonBatch(
        position=position,
        direction=torch.stack(direction, dim=1),
        momentum=momentum,
        charge=muons.charge,
        weight=weight,
        path_x0=x0_acc,
    )


# The compiled kernels, by device type: ahead of time on the CPU, in process elsewhere.
_compiled: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {}


def _kernels(fused: bool, device: torch.device) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """The step's two halves: compiled when ``fused`` and compiled kernels are switched on (on
    the CPU the packages of :mod:`mutomo.volume.aot`, compiled ahead of time in another process;
    on a GPU ``torch.compile``, one fused kernel each), else the plain functions."""
    if not (fused and runtime.compiled_kernels_enabled()):
        return step_enter, step_scatter
    if device.type not in _compiled:
        if device.type == "cpu":
            kernels = aot.KERNELS
        else:
            kernels = (torch.compile(step_enter, dynamic=True), torch.compile(step_scatter, dynamic=True))
        _compiled[device.type] = (_fallback(kernels[0], step_enter), _fallback(kernels[1], step_scatter))
    return _compiled[device.type]


def _fallback(compiled: Callable[..., Any], plain: Callable[..., Any]) -> Callable[..., Any]:
    """``compiled``, falling back to ``plain`` for the rest of the process (with one warning) if
    compiling fails, e.g. on a machine without a C++ compiler. Both are pure, so a step that
    failed half-way is simply run again."""

    def run(*args: Any) -> Any:
        if not runtime.compiled_kernels_enabled():
            return plain(*args)
        try:
            return compiled(*args)
        except Exception as err:  # noqa: BLE001 - any failure of the compiler stack
            runtime.set_compiled_kernels(False)
            warnings.warn(
                f"mutomo: compiled propagation kernels are unavailable ({type(err).__name__}: {err}); "
                "using the plain kernels for the rest of this process",
                RuntimeWarning,
                stacklevel=2,
            )
            return plain(*args)

    return run
