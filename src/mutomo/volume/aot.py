"""The propagation step's two kernels compiled ahead of time, for the CPU (AOTInductor).

The compiled kernels of :mod:`mutomo.volume.step` (``MUTOMO_COMPILE=1``) were compiled by
``torch.compile`` in the running process until 2026-12-07. That fuses each half of a step into one
loop, but the compiler (dynamo and inductor, their imports and caches) then lives in the process:
~180 MiB of resident memory before the first muon, more than the whole 1e5-muon training step
needs beside it (benchmarks/README.md, "Issue 32"). Here each kernel is instead exported
(:func:`torch.export.export`, the muon count and the table sizes dynamic) and compiled by
AOTInductor into a shared library packaged as a ``.pt2`` file, in a *separate process*
(:mod:`mutomo.volume.aot_build`), once per machine, torch version, kernel source and model
constants. The training process only loads the package with torch's C++ loader: ~1 MiB, and a
call is one native function with no Python guards (at 1e4 muons the scattering half takes ~0.25
ms against ~0.75 ms compiled in process and ~1.2 ms plain, 2026-12-07, benchmarks/README.md).

Packages are cached in ``$MUTOMO_KERNEL_CACHE`` (default ``~/.cache/mutomo/kernels``, or
``$XDG_CACHE_HOME/mutomo/kernels``), named by a digest of everything that enters them: the
source of :mod:`mutomo.volume` and :mod:`mutomo.units`, the torch version, the machine, the
dtype, whether volumes are batched, and the scattering model's constants. A first use builds them
(about a minute for the two, on two cores; it needs a C++ compiler); a build that fails raises,
and the propagation then falls back to the plain kernels with a warning.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import platform
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mutomo.errors import MutomoError
from mutomo.volume.scattering import ScatterParameters
from mutomo.volume.step import step_enter, step_scatter

KINDS = ("enter", "scatter")
# Batches shorter than this take the plain kernels: export treats sizes 0 and 1 as special.
MIN_MUONS = 2


@dataclasses.dataclass(frozen=True)
class KernelSpec:
    """What one package is compiled for; everything else is an input of the kernel.

    Attributes:
        kind: ``"enter"`` (:func:`~mutomo.volume.step.step_enter`) or ``"scatter"``
            (:func:`~mutomo.volume.step.step_scatter`).
        dtype: ``"float32"`` or ``"float64"``.
        batched: a batch of volumes (the enter kernel adds each muon's volume offset).
        constants: the scattering model's constants (:class:`ScatterParameters`, as a tuple).
    """

    kind: str
    dtype: str
    batched: bool
    constants: tuple[Any, ...]

    def digest(self) -> str:
        """Hex digest of the spec, the kernel source, the torch version and the machine."""
        h = hashlib.sha256()
        h.update(repr((self, torch.__version__, platform.machine(), sys.version_info[:2])).encode())
        for path in _sources():
            h.update(path.read_bytes())
        return h.hexdigest()[:20]


def _sources() -> list[Path]:
    here = Path(__file__).resolve().parent
    return [*sorted(here.glob("*.py")), here.parent / "units.py"]


def cache_dir() -> Path:
    """Where packages are kept: ``$MUTOMO_KERNEL_CACHE``, else the user's cache directory."""
    if os.environ.get("MUTOMO_KERNEL_CACHE"):
        return Path(os.environ["MUTOMO_KERNEL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mutomo" / "kernels"


def package_path(spec: KernelSpec) -> Path:
    return cache_dir() / f"{spec.kind}-{spec.dtype}-{spec.digest()}.pt2"


class EnterKernel(torch.nn.Module):
    """:func:`~mutomo.volume.step.step_enter` with every number a tensor input (the
    step height, the cell transform and the tables' grid), so that one package serves every
    volume and layer."""

    def forward(
        self,
        x: Tensor,
        y: Tensor,
        dir_z: Tensor,
        dir_x: Tensor,
        dir_y: Tensor,
        kinetic: Tensor,
        columns: Tensor,
        materials: Tensor,
        log_stopping_power: Tensor,
        dz: Tensor,
        cell: Tensor,
        grid: Tensor,
        offsets: Tensor | None,
    ) -> tuple[Tensor, ...]:
        transform = (cell[0], cell[1], cell[2], cell[3], cell[4].long(), cell[5].long())
        return step_enter(
            x, y, dir_z, dir_x, dir_y, kinetic, columns, materials, offsets, log_stopping_power, dz, transform,
            grid[0], grid[1], True,
        )  # fmt: skip


class ScatterKernel(torch.nn.Module):
    """:func:`~mutomo.volume.step.step_scatter` with the step height a tensor input and
    the model's constants fixed at export; returns its outputs flattened."""

    def __init__(self, constants: tuple[Any, ...]) -> None:
        super().__init__()
        self.constants = constants

    def forward(
        self,
        x: Tensor,
        y: Tensor,
        direction: tuple[Tensor, Tensor, Tensor],
        momentum: Tensor,
        kinetic_after: Tensor,
        weight: Tensor,
        x0_acc: Tensor,
        state: tuple[Tensor, Tensor, Tensor, Tensor, Tensor],
        ds: Tensor,
        slope_x: Tensor,
        slope_y: Tensor,
        props: Tensor,
        randoms: tuple[Tensor, Tensor],
        stopped: Tensor,
        dz: Tensor,
    ) -> tuple[Tensor, ...]:
        new_x, new_y, new_direction, momentum_after, new_weight, new_x0, new_state = step_scatter(
            x, y, direction, momentum, kinetic_after, weight, x0_acc, state, ds, slope_x, slope_y, props, randoms,
            stopped, dz, self.constants, True, False,
        )  # fmt: skip
        return (new_x, new_y, *new_direction, momentum_after, new_weight, new_x0, *new_state)


def example_inputs(spec: KernelSpec, muons: int = 997, cells: int = 37, materials: int = 3, grid: int = 61) -> tuple:
    """Inputs of the right dtypes and layouts for exporting ``spec`` (sizes chosen apart so that
    no two dynamic sizes are equal), laid out as :func:`enter` and :func:`scatter` pass them."""
    dtype = getattr(torch, spec.dtype)
    gen = torch.Generator().manual_seed(0)

    def vec(lo: float, hi: float) -> Tensor:
        return lo + (hi - lo) * torch.rand(muons, generator=gen, dtype=dtype)

    if spec.kind == "enter":
        offsets = torch.zeros(muons, dtype=torch.long) if spec.batched else None
        cell = torch.tensor([10.0, 1.0, 10.0, 1.0, 5.0, 5.0], dtype=dtype)
        return (
            vec(0, 0.5), vec(0, 0.5), -vec(0.5, 1), vec(-0.3, 0.3), vec(-0.3, 0.3), vec(1, 10),
            torch.rand(4, cells, generator=gen, dtype=dtype) + 0.1,
            torch.randint(0, materials, (cells,), generator=gen),
            torch.rand(materials, grid, generator=gen, dtype=dtype), torch.tensor(0.01, dtype=dtype), cell,
            torch.tensor([-7.0, 0.2], dtype=dtype), offsets,
        )  # fmt: skip
    state = tuple(vec(0, 1e-6) for _ in range(5))
    return (
        vec(0, 0.5), vec(0, 0.5), (vec(-0.3, 0.3), vec(-0.3, 0.3), -vec(0.5, 1)), vec(1, 10), vec(1, 10),
        torch.ones(muons, dtype=dtype), vec(0, 1), state, vec(0.01, 0.02), vec(-0.3, 0.3), vec(-0.3, 0.3),
        torch.rand(4, muons, generator=gen, dtype=dtype) + 0.1,
        (torch.randn(muons, 4, generator=gen, dtype=dtype), torch.rand(muons, 3, generator=gen, dtype=dtype)),
        torch.zeros(muons, dtype=torch.bool), torch.tensor(0.01, dtype=dtype),
    )  # fmt: skip


def module_of(spec: KernelSpec) -> torch.nn.Module:
    return EnterKernel() if spec.kind == "enter" else ScatterKernel(spec.constants)


def build(spec: KernelSpec, path: Path) -> None:
    """Build ``spec``'s package at ``path`` in a separate Python process
    (:mod:`mutomo.volume.aot_build`), so that the compiler never loads into this one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-m", "mutomo.volume.aot_build", spec.kind, spec.dtype, str(int(spec.batched))]
    args += [repr(c) for c in spec.constants] + ["--out", str(path)]
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not path.exists():
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise MutomoError(f"building the {spec.kind} kernel failed ({' / '.join(tail)})")


def specs(dtype: torch.dtype, batched: bool, constants: tuple[Any, ...]) -> list[KernelSpec]:
    """The two packages a propagation in ``dtype`` uses (``constants``: the scattering model's,
    :class:`ScatterParameters` as a tuple, as the propagation passes them)."""
    name = str(dtype).removeprefix("torch.")
    return [KernelSpec("enter", name, batched, ()), KernelSpec("scatter", name, False, constants)]


def _cached(spec: KernelSpec) -> Path:
    """``spec``'s package path, built first if it is not in the cache."""
    path = package_path(spec)
    if not path.exists():
        build(spec, path)
    return path


def ensure_built(dtype: torch.dtype, batched: bool = False, params: ScatterParameters | None = None) -> list[Path]:
    """Build the packages of :func:`specs` that are not cached yet (without loading them), e.g.
    before timing a run (``params``: the default model if ``None``); returns their paths."""
    constants = dataclasses.astuple(params if params is not None else ScatterParameters())
    return [_cached(spec) for spec in specs(dtype, batched, constants)]


_loaded: dict[KernelSpec, Any] = {}
_lock = threading.Lock()


def loader(spec: KernelSpec) -> Any:
    """The loaded package of ``spec``, built first if it is not in the cache."""
    with _lock:
        if spec not in _loaded:
            _loaded[spec] = torch._C._aoti.AOTIModelPackageLoader(str(_cached(spec)), "model", False, 1, -1)
        return _loaded[spec]


def _flat(inputs: Sequence[Any]) -> list[Tensor]:
    """The kernel's inputs in its order, each contiguous as at export (a no-op for the
    propagation's own tensors, which are): the package reads memory by the exported strides."""
    out: list[Tensor] = []
    for item in inputs:
        if isinstance(item, tuple):
            out.extend(t.contiguous() for t in item)
        elif item is not None:
            out.append(item.contiguous())
    return out


def _scalar(value: float | Tensor, like: Tensor) -> Tensor:
    return torch.as_tensor(value, dtype=like.dtype, device=like.device)


def enter(
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
    dz: float,
    transform: tuple[float, float, float, float, int, int],
    log_t0: float,
    dlog_t: float,
    energy_loss: bool,
) -> tuple[Tensor, ...]:
    """:func:`~mutomo.volume.step.step_enter`, run by its package (same arguments)."""
    if not energy_loss or x.numel() < MIN_MUONS:
        return step_enter(
            x, y, dir_z, dir_x, dir_y, kinetic, columns, materials, offsets, log_stopping_power, dz, transform,
            log_t0, dlog_t, energy_loss,
        )  # fmt: skip
    spec = specs(x.dtype, offsets is not None, ())[0]
    inputs = (
        x, y, dir_z, dir_x, dir_y, kinetic, columns, materials, log_stopping_power, _scalar(dz, x),
        torch.tensor([float(v) for v in transform], dtype=x.dtype), torch.tensor([log_t0, dlog_t], dtype=x.dtype),
        offsets,
    )  # fmt: skip
    return tuple(loader(spec).run(_flat(inputs)))


def scatter(
    x: Tensor,
    y: Tensor,
    direction: tuple[Tensor, Tensor, Tensor],
    momentum: Tensor,
    kinetic_after: Tensor,
    weight: Tensor,
    x0_acc: Tensor,
    state: tuple[Tensor, Tensor, Tensor, Tensor, Tensor],
    ds: Tensor,
    slope_x: Tensor,
    slope_y: Tensor,
    props: Tensor,
    randoms: tuple[Tensor, Tensor] | None,
    stopped: Tensor,
    dz: float,
    constants: tuple[Any, ...],
    energy_loss: bool,
    hard_subset: bool = False,
) -> tuple[Any, ...]:
    """:func:`~mutomo.volume.step.step_scatter`, run by its package (same arguments)."""
    if randoms is None or not energy_loss or x.numel() < MIN_MUONS:
        return step_scatter(
            x, y, direction, momentum, kinetic_after, weight, x0_acc, state, ds, slope_x, slope_y, props, randoms,
            stopped, dz, constants, energy_loss, hard_subset,
        )  # fmt: skip
    spec = specs(x.dtype, False, tuple(constants))[1]
    inputs = (
        x, y, direction, momentum, kinetic_after, weight, x0_acc, state, ds, slope_x, slope_y, props, randoms,
        stopped, _scalar(dz, x),
    )  # fmt: skip
    out = loader(spec).run(_flat(inputs))
    return out[0], out[1], (out[2], out[3], out[4]), out[5], out[6], out[7], (out[8], out[9], out[10], out[11], out[12])


KERNELS: tuple[Callable[..., Any], Callable[..., Any]] = (enter, scatter)
