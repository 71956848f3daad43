"""Voxelised passive volumes: a box of voxels, each made of one material."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from mutomo.errors import MutomoError
from mutomo.materials import Material, get_material
from mutomo.volume.energy_loss import RangeTables

Vec3 = tuple[float, float, float]


def _as_vec3(value: float | Sequence[float], name: str) -> Vec3:
    v = (float(value),) * 3 if isinstance(value, (int, float)) else tuple(float(x) for x in value)
    if len(v) != 3 or not all(math.isfinite(x) for x in v):
        raise MutomoError(f"{name} must be a finite number or three finite numbers (x, y, z); got {value!r}")
    return (v[0], v[1], v[2])


class PassiveVolume(nn.Module):
    """A box of ``nx x ny x nz`` voxels between ``z_low`` and ``z_high``.

    Outside the box's footprint (but between ``z_low`` and ``z_high``) muons fly through the
    ``background`` material (air by default).

    Args:
        materials: The distinct materials; ``material_index`` points into this list.
        material_index: ``Long[Tensor, "nx ny nz"]``; z index 0 is the bottom layer.
        voxel_size: Edge length(s) (m), one number or (x, y, z).
        origin: (x, y, z) of the low corner (m); ``origin[2]`` is ``z_low``.
        background: Material outside the footprint.
        x0: Optional per-voxel radiation lengths (m), ``(nx, ny, nz)``; pass an
            ``nn.Parameter`` to differentiate with respect to them. By default each voxel takes
            its material's X0 (a buffer).
        device, dtype: Where tensors live.

    Example:
        >>> vol = PassiveVolume.uniform("iron", size=(1.0, 1.0, 0.5), voxel_size=0.1, z_low=0.2)
        >>> vol.shape, round(vol.z_high, 3)
        ((10, 10, 5), 0.7)
    """

    material_index: Tensor
    x0: Tensor
    _mat_x0: Tensor
    _mat_tail_x0: Tensor
    _mat_screening_p2: Tensor
    _mat_nuclear_p: Tensor

    def __init__(
        self,
        materials: Sequence[str | Material],
        material_index: Tensor,
        voxel_size: float | Sequence[float],
        origin: Sequence[float] = (0.0, 0.0, 0.0),
        background: str | Material = "air",
        x0: Tensor | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.materials = [get_material(m) for m in materials]
        self.background = get_material(background)
        if material_index.dim() < 3 or material_index.numel() == 0:
            raise MutomoError(
                "material_index must be a non-empty (nx, ny, nz) tensor (or (*batch, nx, ny, nz)); got shape "
                f"{tuple(material_index.shape)}"
            )
        if int(material_index.min()) < 0 or int(material_index.max()) >= len(self.materials):
            raise MutomoError(f"material_index values must be in [0, {len(self.materials) - 1}]")
        self.voxel_size = _as_vec3(voxel_size, "voxel_size")
        if min(self.voxel_size) <= 0:
            raise MutomoError(f"voxel_size must be > 0 m; got {self.voxel_size}")
        self.origin = _as_vec3(origin, "origin")
        self.shape: tuple[int, int, int] = tuple(material_index.shape[-3:])  # type: ignore[assignment]
        self.batch_shape: tuple[int, ...] = tuple(material_index.shape[:-3])
        self.register_buffer("material_index", material_index.to(device=device, dtype=torch.long))
        # Per-material constants; the background is appended as the last entry.
        all_mats = [*self.materials, self.background]
        for name in ("tail_x0", "screening_p2", "nuclear_p"):
            self.register_buffer(
                f"_mat_{name}",
                torch.tensor([getattr(m, name) for m in all_mats], dtype=dtype, device=device),
            )
        self.register_buffer("_mat_x0", torch.tensor([m.x0 for m in all_mats], dtype=dtype, device=device))
        if x0 is None:
            self.register_buffer("x0", self._mat_x0[self.material_index].clone())
        else:
            if tuple(x0.shape) != tuple(material_index.shape):
                raise MutomoError(
                    f"x0 must have the shape of material_index {tuple(material_index.shape)}; got {tuple(x0.shape)}"
                )
            if isinstance(x0, nn.Parameter):
                self.x0 = x0
            else:
                self.register_buffer("x0", x0.to(device=device, dtype=dtype))
        self.range_tables = RangeTables(all_mats, device=device, dtype=dtype)

    # ----------------------------------------------------------------------------- geometry
    @property
    def z_low(self) -> float:
        return self.origin[2]

    @property
    def z_high(self) -> float:
        return self.origin[2] + self.shape[2] * self.voxel_size[2]

    @property
    def x_range(self) -> tuple[float, float]:
        return self.origin[0], self.origin[0] + self.shape[0] * self.voxel_size[0]

    @property
    def y_range(self) -> tuple[float, float]:
        return self.origin[1], self.origin[1] + self.shape[1] * self.voxel_size[1]

    @property
    def background_index(self) -> int:
        return len(self.materials)

    @property
    def batch_size(self) -> int:
        """Number of volumes in a batch (1 for one volume)."""
        return math.prod(self.batch_shape)

    @classmethod
    def stack(cls, volumes: Sequence[PassiveVolume]) -> PassiveVolume:
        """Volumes of one geometry (voxel grid, origin, background) as one volume with a leading
        batch axis: simulating it runs the same muons through every volume in one pass, and the
        reconstructions carry the axis (after any design axes). Materials are merged; each
        volume keeps its own X0 per voxel."""
        if not volumes:
            raise MutomoError("PassiveVolume.stack needs at least one volume")
        first = volumes[0]
        for i, v in enumerate(volumes):
            if v.batch_shape:
                raise MutomoError(
                    f"PassiveVolume.stack takes volumes without a batch axis; volume {i} has {v.batch_shape}"
                )
            same = (v.shape, v.voxel_size, v.origin, v.background) == (
                first.shape,
                first.voxel_size,
                first.origin,
                first.background,
            )
            if not same:
                raise MutomoError(
                    f"PassiveVolume.stack needs one geometry: volume {i} has shape {v.shape}, voxel size "
                    f"{v.voxel_size}, origin {v.origin}, background {v.background.name}; volume 0 has {first.shape}, "
                    f"{first.voxel_size}, {first.origin}, {first.background.name}"
                )
        materials: list[Material] = []
        for v in volumes:
            materials += [m for m in v.materials if m not in materials]
        indices = []
        for v in volumes:
            remap = torch.tensor([materials.index(m) for m in v.materials], device=v.material_index.device)
            indices.append(remap[v.material_index])
        ref = first._mat_x0
        x0 = torch.stack([v.x0 for v in volumes])
        return cls(
            materials, torch.stack(indices), first.voxel_size, first.origin, first.background, x0, ref.device, ref.dtype
        )

    def voxel_centres(self) -> Tensor:
        """``(nx, ny, nz, 3)`` voxel centres (m)."""
        axes = [
            self.origin[i]
            + (torch.arange(self.shape[i], dtype=self._mat_x0.dtype, device=self._mat_x0.device) + 0.5)
            * self.voxel_size[i]
            for i in range(3)
        ]
        return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)

    def layer_properties(self, iz: int) -> tuple[Tensor, Tensor]:
        """Properties of z layer ``iz`` per cell of the footprint padded by one background cell on
        every side, flattened as ``(ix + 1) * (ny + 2) + (iy + 1)`` (see :meth:`flat_voxel_index`).

        Returns:
            ``(scatter, material)``: ``scatter`` is ``((nx+2)*(ny+2), 4)`` with columns X0 (m),
            ``tail_x0`` (GeV^2), ``screening_p2`` (GeV^2) and ``nuclear_p`` (GeV), so one gather
            per step fetches them all; ``material`` is ``((nx+2)*(ny+2),)`` material indices. A
            batch of volumes stacks its tables, volume after volume.
        """
        pad = (1, 1, 1, 1)  # one background cell around the footprint
        idx = torch.nn.functional.pad(self.material_index[..., iz], pad, value=self.background_index)
        material = idx.reshape(-1)
        x0_layer = torch.nn.functional.pad(self.x0[..., iz], pad, value=float(self.background.x0)).reshape(-1)
        scatter = torch.stack(
            [x0_layer, self._mat_tail_x0[material], self._mat_screening_p2[material], self._mat_nuclear_p[material]],
            dim=1,
        )
        return scatter, material

    def flat_voxel_index(self, x: Tensor, y: Tensor) -> Tensor:
        """Row of :meth:`layer_properties` for points with coordinates ``x``, ``y`` (each
        ``(mu,)``): ``(ix + 1) * (ny + 2) + (iy + 1)`` with ``ix`` clamped to ``[-1, nx]`` (and
        ``iy`` likewise), so every point outside the footprint lands on a background cell.
        O(mu) index arithmetic, a dozen element-wise operations."""
        return padded_cell(x, y, *self.cell_transform())

    def cell_transform(self) -> tuple[float, float, float, float, int, int]:
        """``(scale_x, shift_x, scale_y, shift_y, nx, ny)`` for :func:`padded_cell`: a point's
        padded column is ``floor(x scale_x + shift_x)`` (and likewise in y)."""
        nx, ny, _ = self.shape
        return (
            1.0 / self.voxel_size[0],
            1.0 - self.origin[0] / self.voxel_size[0],
            1.0 / self.voxel_size[1],
            1.0 - self.origin[1] / self.voxel_size[1],
            nx,
            ny,
        )

    def batch_offsets(self, n_muons: int, device: torch.device | str | None = None) -> Tensor | None:
        """Row offset into a batch's :meth:`layer_properties` for each of ``batch * n_muons`` muons
        held volume after volume; ``None`` for one volume."""
        if not self.batch_shape:
            return None
        nx, ny, _ = self.shape
        return torch.arange(self.batch_size, device=device).repeat_interleave(n_muons) * ((nx + 2) * (ny + 2))

    # ----------------------------------------------------------------------------- builders
    @classmethod
    def uniform(
        cls,
        material: str | Material,
        size: Sequence[float],
        voxel_size: float | Sequence[float],
        z_low: float = 0.0,
        xy_origin: tuple[float, float] = (0.0, 0.0),
        **kwargs: object,
    ) -> PassiveVolume:
        """A block of one material of ``size`` (x, y, z) metres."""
        shape = _shape_from_size(size, voxel_size)
        index = torch.zeros(shape, dtype=torch.long)
        return cls([material], index, voxel_size, (*xy_origin, z_low), **kwargs)  # type: ignore[arg-type]

    @classmethod
    def layers(
        cls,
        layers: Sequence[tuple[str | Material, float]],
        footprint: tuple[float, float],
        voxel_size: float | Sequence[float],
        z_low: float = 0.0,
        xy_origin: tuple[float, float] = (0.0, 0.0),
        **kwargs: object,
    ) -> PassiveVolume:
        """Horizontal layers, listed from the bottom up as (material, thickness in m)."""
        if not layers:
            raise MutomoError("layers must list at least one (material, thickness)")
        vs = _as_vec3(voxel_size, "voxel_size")
        total = sum(t for _, t in layers)
        shape = _shape_from_size((*footprint, total), vs)
        names: list[Material] = []
        index = torch.zeros(shape, dtype=torch.long)
        iz = 0
        for material, thickness in layers:
            n = _count(thickness, vs[2], "layer thickness")
            m = get_material(material)
            if m not in names:
                names.append(m)
            index[:, :, iz : iz + n] = names.index(m)
            iz += n
        return cls(names, index, vs, (*xy_origin, z_low), **kwargs)  # type: ignore[arg-type]

    def with_box(self, material: str | Material, low: Sequence[float], high: Sequence[float]) -> PassiveVolume:
        """A copy in which voxels whose centres lie inside the box [low, high] are ``material``."""
        lo, hi = _as_vec3(low, "low"), _as_vec3(high, "high")
        if any(b <= a for a, b in zip(lo, hi, strict=True)):
            raise MutomoError(f"box needs high > low in x, y and z; got low={lo}, high={hi}")
        m = get_material(material)
        materials = list(self.materials)
        if m not in materials:
            materials.append(m)
        centres = self.voxel_centres()
        inside = torch.ones(self.shape, dtype=torch.bool, device=centres.device)
        for i in range(3):
            inside &= (centres[..., i] > lo[i]) & (centres[..., i] < hi[i])
        if not bool(inside.any()):
            raise MutomoError(f"box low={lo}, high={hi} contains no voxel centre of the volume")
        index = torch.where(inside, materials.index(m), self.material_index)
        return PassiveVolume(
            materials,
            index,
            self.voxel_size,
            self.origin,
            self.background,
            device=self.material_index.device,
            dtype=self._mat_x0.dtype,
        )


def padded_cell(
    x: Tensor,
    y: Tensor,
    scale_x: float | Tensor,
    shift_x: float | Tensor,
    scale_y: float | Tensor,
    shift_y: float | Tensor,
    nx: int | Tensor,
    ny: int | Tensor,
) -> Tensor:
    """:meth:`PassiveVolume.flat_voxel_index` as a pure function of :meth:`PassiveVolume.cell_transform`'s
    numbers (so that the stepping loop can fuse or compile it; 0-dim tensors in place of the
    numbers for a kernel compiled ahead of time, :mod:`mutomo.volume.aot`)."""
    # torch's stubs type clamp_'s bounds as both numbers or both tensors; a number and a 0-dim
    # tensor (a compiled kernel's nx, ny) work as well.
    ix = x.mul(scale_x).add_(shift_x).floor_().clamp_(0, nx + 1).long()  # type: ignore[arg-type]
    iy = y.mul(scale_y).add_(shift_y).floor_().clamp_(0, ny + 1).long()  # type: ignore[arg-type]
    return ix.mul_(ny + 2).add_(iy)


def _count(length: float, step: float, name: str) -> int:
    if not length > 0:
        raise MutomoError(f"{name} must be > 0 m; got {length}")
    n = round(length / step)
    if n < 1 or abs(n * step - length) > 1e-6 * max(1.0, length):
        raise MutomoError(f"{name} {length} m is not a whole number of voxels of {step} m")
    return n


def _shape_from_size(size: Sequence[float], voxel_size: float | Sequence[float]) -> tuple[int, int, int]:
    s = _as_vec3(size, "size")
    v = _as_vec3(voxel_size, "voxel_size")
    if min(v) <= 0:
        raise MutomoError(f"voxel_size must be > 0 m; got {v}")
    return tuple(_count(s[i], v[i], f"size[{'xyz'[i]}]") for i in range(3))  # type: ignore[return-value]


def steps_per_layer(voxel_height: float, step_length: float) -> int:
    """Number of equal z steps that cover one voxel layer with steps of at most ``step_length``."""
    if not step_length > 0:
        raise MutomoError(f"step_length must be > 0 m; got {step_length}")
    return max(1, math.ceil(voxel_height / step_length - 1e-9))
