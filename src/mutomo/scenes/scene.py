"""A scene turned into volumes: a seeded generator from a volume's key to a :class:`PassiveVolume`.

:meth:`Scene.sample` draws one volume from a key (a tuple of non-negative integers, e.g.
``(seed, stream, index)``): the same key always gives the same volume, whatever was drawn
before, so training, validation and test volumes are reproducible one by one.

Everything lives on the voxel grid, so drawn quantities are snapped to it, and the truth
reported is what the voxels hold:

* a layer of thickness ``t`` covers ``max(1, round(t / dz))`` voxel layers (clipped at the top);
* a clutter fill height ``h`` fills the ``round(h / dz)`` lowest layers;
* an object of size ``s`` covers ``max(1, round(s / d))`` voxels per axis, starting at the voxel
  edge nearest its drawn lower corner (moved inwards if it would stick out);
* an object ``below_fill`` has its drawn height mapped linearly from its range ``[z_min, z_max]``
  onto ``[z_min, min(z_max, fill - size)]``: uniform under the fill, and the same draws as
  without the option (the fill is drawn first).

Objects are painted in the order listed, over the background and over earlier objects.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from mutomo.errors import MutomoError
from mutomo.materials import Material, get_material
from mutomo.muons.generation import GenerationPlane
from mutomo.scenes.spec import (
    Choice,
    ObjectSpec,
    Scalar,
    SceneSpec,
    Uniform,
    UniformVec,
    Vector,
    scalar_bounds,
    vector_bounds,
)
from mutomo.volume.grid import PassiveVolume

Vec3 = tuple[float, float, float]


@dataclass(frozen=True)
class PlacedObject:
    """An object as painted into a volume.

    Attributes:
        name: the object's name (or its material).
        material: material name.
        low, high: absolute corners (m) of the voxels it covers.
        role: ``"target"`` or ``"other"``.
        index_low, index_high: voxel index range ``[low, high)`` per axis.
    """

    name: str
    material: str
    low: Vec3
    high: Vec3
    role: str
    index_low: tuple[int, int, int]
    index_high: tuple[int, int, int]


@dataclass(frozen=True)
class VolumeSample:
    """One drawn volume and its truth.

    Attributes:
        key: the key it was drawn from.
        volume: the passive volume.
        present: whether a target object is in it.
        fill_height: absolute height (m) of the target layer's top or of the clutter fill, if
            the scene defines one.
        objects: the objects painted, in order.
    """

    key: tuple[int, ...]
    volume: PassiveVolume
    present: bool
    fill_height: float | None
    objects: tuple[PlacedObject, ...]

    def target_mask(self) -> Tensor:
        """``(nx, ny, nz)`` bool: voxels of target objects."""
        mask = torch.zeros(self.volume.shape, dtype=torch.bool, device=self.volume.x0.device)
        for obj in self.objects:
            if obj.role == "target":
                (a, b, c), (d, e, f) = obj.index_low, obj.index_high
                mask[a:d, b:e, c:f] = True
        return mask


def _draw_scalar(value: Scalar, rng: np.random.Generator) -> float:
    if isinstance(value, Uniform):
        return float(rng.uniform(value.min, value.max))
    if isinstance(value, Choice):
        return float(value.values[int(rng.integers(len(value.values)))])
    return float(value)


def _draw_vector(value: Vector, rng: np.random.Generator) -> Vec3:
    if isinstance(value, UniformVec):
        v = rng.uniform(value.min, value.max)
        return (float(v[0]), float(v[1]), float(v[2]))
    return (float(value[0]), float(value[1]), float(value[2]))


class Scene:
    """Volumes drawn from a :class:`~mutomo.scenes.spec.SceneSpec`.

    Args:
        spec: the validated scene.
        materials: user-defined materials by name (they take precedence over built-in names).
        dtype, device: of the volumes.

    Raises:
        ValueError: naming the material that is neither user-defined nor built in.

    Example:
        >>> from mutomo.scenes.spec import SceneSpec
        >>> spec = SceneSpec.model_validate({"size": [1, 1, 1], "voxel": 0.1, "background": {"material": "water"},
        ...     "objects": [{"material": "lead", "size": [0.2, 0.2, 0.2], "low": [0.4, 0.4, 0.4], "probability": 0.5}]})
        >>> scene = Scene(spec)
        >>> s = scene.sample((0, 1), present=True)
        >>> s.present, s.volume.shape, int((s.volume.x0 < 0.01).sum())
        (True, (10, 10, 10), 8)
    """

    def __init__(
        self,
        spec: SceneSpec,
        materials: Mapping[str, Material] | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        self.spec = spec
        user = dict(materials or {})
        self.materials: list[Material] = []
        for name in spec.material_names():
            if name in user:
                self.materials.append(user[name])
                continue
            try:
                self.materials.append(get_material(name))
            except KeyError as exc:
                raise MutomoError(
                    f"scene: unknown material {name!r}; define it under [[materials]] or use a built-in one "
                    f"({exc.args[0].split('known materials: ')[-1]})"
                ) from None
        self._names = spec.material_names()
        self.voxel_size = spec.voxel_size
        self.shape: tuple[int, int, int] = tuple(  # type: ignore[assignment]
            round(s / v) for s, v in zip(spec.size, self.voxel_size, strict=True)
        )
        self.origin = spec.origin
        self.dtype, self.device = dtype, device

    # ------------------------------------------------------------------ geometry
    @property
    def z_low(self) -> float:
        return self.origin[2]

    @property
    def z_high(self) -> float:
        return self.origin[2] + self.spec.size[2]

    @property
    def box(self) -> tuple[float, float, float, float, float, float]:
        """``(x0, x1, y0, y1, z0, z1)`` of the scene (m)."""
        (x, y, z), (sx, sy, sz) = self.origin, self.spec.size
        return (x, x + sx, y, y + sy, z, z + sz)

    def generation_plane(self, margin: float | None = None) -> GenerationPlane:
        """The plane just above the scene's top face, over its footprint widened by ``margin``
        (default one voxel). Only muons crossing the top and the bottom faces are reconstructed
        (:func:`mutomo.reco.crosses_volume`), so muons starting elsewhere carry no information."""
        m = max(self.voxel_size[:2]) if margin is None else margin
        x0, x1, y0, y1, _, z1 = self.box
        return GenerationPlane(z=z1 + 1e-3, x_range=(x0 - m, x1 + m), y_range=(y0 - m, y1 + m))

    def material_hypotheses(self) -> tuple[tuple[Material, ...], tuple[Material, ...]]:
        """``(targets, innocents)``: the target objects' materials and every other material the
        scene holds (background, layers, objects of role "other"): the hypotheses a voxel's
        material evidence weighs (:mod:`mutomo.reco.mlem.evidence`), each by its radiation length
        and, with a range cut, its muon range.

        Raises:
            MutomoError: without a target object, or if a target's material is also innocent
                elsewhere in the scene (no scattering measurement can tell them apart).
        """
        spec = self.spec
        target_names = list(dict.fromkeys(o.material for o in spec.objects if o.role == "target"))
        if not target_names:
            raise MutomoError("scene: the material evidence needs a target object (role 'target')")
        innocent_names = [
            *spec.background.material_names(),
            *(o.material for o in spec.objects if o.role != "target"),
        ]
        innocent_names = list(dict.fromkeys(innocent_names))
        both = sorted(set(target_names) & set(innocent_names))
        if both:
            raise MutomoError(
                f"scene: material {both[0]!r} is both a target's and an innocent one's: the material evidence "
                "cannot tell them apart (use another statistic, or a distinct material for the target)"
            )
        return (
            tuple(self.materials[self._material(n)] for n in target_names),
            tuple(self.materials[self._material(n)] for n in innocent_names),
        )

    def nominal_background(self) -> dict[Material, float]:
        """The background's materials with their expected volume fractions (objects left out):
        what an operator assumes the scanned volume holds (e.g. the nominal X0 of
        :class:`mutomo.reco.ExpectedMomentum`). Layers and a clutter's fill height drawn from a
        range count at the middle of it; what lies above them is ``above``.

        Example:
            >>> from mutomo.scenes.spec import SceneSpec
            >>> spec = SceneSpec.model_validate({"size": [1, 1, 1], "voxel": 0.1,
            ...     "background": {"clutter": {"iron": 0.3, "air": 0.7}}})
            >>> {m.name: round(f, 2) for m, f in Scene(spec).nominal_background().items()}
            {'iron': 0.3, 'air': 0.7}
        """
        b = self.spec.background
        height = self.spec.size[2]
        fractions: dict[Material, float] = {}

        def add(name: str, fraction: float) -> None:
            m = self.materials[self._material(name)]
            fractions[m] = fractions.get(m, 0.0) + fraction

        if b.material is not None:
            add(b.material, 1.0)
        elif b.layers is not None:
            filled = 0.0
            for layer in b.layers:
                lo, hi = scalar_bounds(layer.thickness)
                share = min(0.5 * (lo + hi), height - filled)
                if share > 0:
                    add(layer.material, share / height)
                    filled += share
            if filled < height:
                add(b.above, 1 - filled / height)
        else:
            assert b.clutter is not None
            lo, hi = (height, height) if b.fill_height is None else scalar_bounds(b.fill_height)
            fill = min(max(0.5 * (lo + hi), 0.0), height) / height
            total = sum(b.clutter.values())
            for name, f in b.clutter.items():
                add(name, fill * f / total)
            if fill < 1:
                add(b.above, 1 - fill)
        return {m: f for m, f in fractions.items() if f > 0}

    # ------------------------------------------------------------------ drawing
    def _material(self, name: str) -> int:
        return self._names.index(name)

    def _background(self, rng: np.random.Generator) -> tuple[np.ndarray, float | None]:
        b = self.spec.background
        nx, ny, nz = self.shape
        dz = self.voxel_size[2]
        fill: float | None = None
        if b.material is not None:
            return np.full(self.shape, self._material(b.material), dtype=np.int64), fill
        index = np.full(self.shape, self._material(b.above), dtype=np.int64)
        if b.layers is not None:
            iz = 0
            for layer in b.layers:
                n = max(1, round(_draw_scalar(layer.thickness, rng) / dz))
                top = min(iz + n, nz)
                index[:, :, iz:top] = self._material(layer.material)
                iz = top
                if layer.target:
                    fill = self.z_low + iz * dz
        else:
            assert b.clutter is not None
            n_fill = nz if b.fill_height is None else round(_draw_scalar(b.fill_height, rng) / dz)
            names = list(b.clutter)
            p = np.array([b.clutter[k] for k in names], dtype=float)
            codes = np.array([self._material(k) for k in names])
            draws = codes[rng.choice(len(names), size=(nx, ny, nz), p=p / p.sum())]
            index[:, :, :n_fill] = draws[:, :, :n_fill]
            if b.fill_height is not None:
                fill = self.z_low + n_fill * dz
        return index, fill

    def _place(self, obj: ObjectSpec, rng: np.random.Generator, fill: float | None = None) -> PlacedObject:
        size, low = _draw_vector(obj.size, rng), _draw_vector(obj.low, rng)
        if obj.below_fill and fill is not None:  # the drawn height mapped onto the part of its range under the fill
            (_, _, z_min), (_, _, z_max) = vector_bounds(obj.low)
            room = min(z_max, fill - self.z_low - size[2])
            if z_max > z_min:
                low = (low[0], low[1], z_min + (low[2] - z_min) * (max(room, z_min) - z_min) / (z_max - z_min))
        lo_idx, hi_idx = [], []
        for axis in range(3):
            v, n_axis = self.voxel_size[axis], self.shape[axis]
            n = min(max(1, round(size[axis] / v)), n_axis)
            start = min(max(0, round(low[axis] / v)), n_axis - n)
            lo_idx.append(start)
            hi_idx.append(start + n)
        lo_abs = tuple(self.origin[a] + lo_idx[a] * self.voxel_size[a] for a in range(3))
        hi_abs = tuple(self.origin[a] + hi_idx[a] * self.voxel_size[a] for a in range(3))
        return PlacedObject(
            name=obj.name or obj.material,
            material=obj.material,
            low=lo_abs,  # type: ignore[arg-type]
            high=hi_abs,  # type: ignore[arg-type]
            role=obj.role,
            index_low=tuple(lo_idx),  # type: ignore[arg-type]
            index_high=tuple(hi_idx),  # type: ignore[arg-type]
        )

    def _presence(self, rng: np.random.Generator, present: bool | None) -> list[bool]:
        """Which target objects are in the volume; ``present`` forces at least one or none."""
        probabilities = [o.probability for o in self.spec.objects if o.role == "target"]
        if present is False:
            rng.random(len(probabilities))  # same number of draws whatever is forced
            return [False] * len(probabilities)
        if present and not any(p > 0 for p in probabilities):
            raise MutomoError("scene: a target object was asked for, but no target object has probability > 0")
        for _ in range(10_000):
            chosen = [bool(u < p) for u, p in zip(rng.random(len(probabilities)), probabilities, strict=True)]
            if not present or any(chosen):
                return chosen
        # Vanishingly unlikely: every target object has a tiny probability. Take the likeliest.
        best = int(np.argmax(probabilities))
        return [i == best for i in range(len(probabilities))]

    def sample(self, key: Sequence[int], present: bool | None = None) -> VolumeSample:
        """The volume of ``key`` (non-negative integers).

        Args:
            key: identifies the volume; the same key gives the same volume.
            present: ``True`` or ``False`` forces whether a target object is present (a target
                object is then drawn among those of nonzero probability); ``None`` draws it.
        """
        if not key or any(int(k) < 0 for k in key):
            raise MutomoError(f"scene: a volume key is one or more non-negative integers; got {tuple(key)}")
        rng = np.random.default_rng([int(k) for k in key])
        index, fill = self._background(rng)
        chosen = iter(self._presence(rng, present))
        placed: list[PlacedObject] = []
        any_target = False
        decisions: list[bool | None] = []
        for obj in self.spec.objects:
            if obj.role == "target":
                drawn = next(chosen)
                any_target |= drawn
                decisions.append(drawn)
            else:
                decisions.append(None)
        for obj, decision in zip(self.spec.objects, decisions, strict=True):
            if decision is None:  # scenery: its own probability, and its condition on the targets
                u = rng.random()
                allowed = obj.when == "always" or (obj.when == "target_present") == any_target
                keep = bool(u < obj.probability) and allowed
            else:
                keep = decision
            position = self._place(obj, rng, fill)  # drawn whether painted or not: keys stay aligned
            if keep:
                (a, b, c), (d, e, f) = position.index_low, position.index_high
                index[a:d, b:e, c:f] = self._material(obj.material)
                placed.append(position)
        volume = PassiveVolume(
            self.materials,
            torch.from_numpy(index),
            self.voxel_size,
            self.origin,
            device=self.device,
            dtype=self.dtype,
        )
        return VolumeSample(tuple(int(k) for k in key), volume, any_target, fill, tuple(placed))

    def expected_presence(self) -> float:
        """Probability that a drawn volume holds a target object."""
        probabilities = [o.probability for o in self.spec.objects if o.role == "target"]
        return 1.0 - math.prod(1.0 - p for p in probabilities)
