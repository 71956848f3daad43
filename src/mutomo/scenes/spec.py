"""The validated description of a scene: the ``[scene]`` and ``[[materials]]`` sections.

A scene is a box of voxels (``size``, ``origin`` = lower corner, ``voxel``) filled by a
background and overwritten by objects:

* background, one of

  - ``{material = "concrete"}``: one material;
  - ``{layers = [{material, thickness, target?}, ...], above = "air"}``: horizontal layers from
    the bottom up; anything above the last layer is ``above``; a layer marked ``target = true``
    defines the scene's fill height (the height of its top), the answer of a regression task;
  - ``{clutter = {steel = 0.1, wood = 0.4, air = 0.5}, fill_height = ..., above = "air"}``:
    every voxel drawn independently among the listed materials with the given fractions, up to
    ``fill_height`` (m above the origin; the whole box if absent); above it, ``above``;

* objects (``[[scene.objects]]``): boxes of a material with a ``size`` and a lower corner
  ``low`` (m, relative to ``origin``), each fixed or drawn, present with ``probability``.
  ``role = "target"`` (the default) objects are what a presence task looks for; ``"other"``
  objects (walls, innocent confusers) are scenery. ``when`` places an object always,
  only when a target is present, or only when none is.

A number that may be drawn is written as a number, as ``{min = a, max = b}`` (uniform) or as
``{values = [...]}`` (one of them, equally likely); a vector likewise, with three numbers.
Drawn sizes and positions are snapped to whole voxels (see :mod:`mutomo.scenes.scene`).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mutomo.errors import MutomoError

Vec3 = tuple[float, float, float]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class Strict(BaseModel):
    """A configuration table that refuses unknown keys."""

    model_config = ConfigDict(extra="forbid")


class Uniform(Strict):
    """A number drawn uniformly in ``[min, max]``."""

    min: float = Field(description="lower end")
    max: float = Field(description="upper end (>= min)")

    @model_validator(mode="after")
    def _ordered(self) -> Uniform:
        if self.max < self.min:
            raise MutomoError(f"max ({self.max}) must be >= min ({self.min})")
        return self


class Choice(Strict):
    """One of ``values``, equally likely."""

    values: list[float] = Field(min_length=1, description="the values, drawn with equal probability")


class UniformVec(Strict):
    """A vector drawn uniformly in the box ``[min, max]`` (per axis)."""

    min: Vec3 = Field(description="lower corner (x, y, z)")
    max: Vec3 = Field(description="upper corner (x, y, z), >= min per axis")

    @model_validator(mode="after")
    def _ordered(self) -> UniformVec:
        if any(b < a for a, b in zip(self.min, self.max, strict=True)):
            raise MutomoError(f"max {self.max} must be >= min {self.min} on every axis")
        return self


Scalar = float | Uniform | Choice
Vector = Vec3 | UniformVec


def scalar_bounds(value: Scalar) -> tuple[float, float]:
    """Smallest and largest value a scalar can take."""
    if isinstance(value, Uniform):
        return value.min, value.max
    if isinstance(value, Choice):
        return min(value.values), max(value.values)
    return float(value), float(value)


def vector_bounds(value: Vector) -> tuple[Vec3, Vec3]:
    """Per-axis smallest and largest values a vector can take."""
    if isinstance(value, UniformVec):
        return value.min, value.max
    return tuple(value), tuple(value)  # type: ignore[return-value]


class MaterialSpec(Strict):
    """A user-defined material (``[[materials]]``), built by
    :meth:`mutomo.materials.Material.from_composition`."""

    name: str = Field(min_length=1, description="the name the scene uses for it")
    density: float = Field(gt=0, description="kg/m^3")
    composition: dict[str, Annotated[float, Field(gt=0)]] = Field(
        min_length=1, description="element symbol -> mass fraction (or atom count with by = 'atoms')"
    )
    by: Literal["mass", "atoms"] = Field(
        "mass", description="composition as mass fractions (summing to 1) or atom counts"
    )
    mean_excitation_ev: float | None = Field(None, gt=0, description="I (eV); default Bragg additivity")

    @model_validator(mode="after")
    def _fractions(self) -> MaterialSpec:
        total = sum(self.composition.values())
        if self.by == "mass" and abs(total - 1.0) > 1e-3:
            raise MutomoError(f"composition mass fractions must sum to 1; they sum to {total:.6g}")
        return self


class Layer(Strict):
    material: str = Field(description="material name (built-in or under [[materials]])")
    thickness: Scalar = Field(description="m; snapped to whole voxels")
    target: bool = Field(False, description="this layer's top is the scene's fill height")

    @model_validator(mode="after")
    def _positive(self) -> Layer:
        if scalar_bounds(self.thickness)[0] <= 0:
            raise MutomoError("thickness must be > 0 m")
        return self


class Background(Strict):
    """Exactly one of ``material``, ``layers`` or ``clutter``."""

    material: str | None = Field(None, description="one material filling the box")
    layers: list[Layer] | None = Field(None, min_length=1, description="horizontal layers from the bottom up")
    clutter: dict[str, Annotated[float, Field(ge=0)]] | None = Field(
        None, min_length=1, description="material -> fraction (summing to 1): each voxel drawn independently"
    )
    fill_height: Scalar | None = Field(None, description="clutter only: m above the origin")
    above: str = Field("air", description="material above the layers or the clutter's fill height")

    @model_validator(mode="after")
    def _one_kind(self) -> Background:
        kinds = [k for k in ("material", "layers", "clutter") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise MutomoError(f"give exactly one of material, layers or clutter; got {kinds or 'none'}")
        if self.clutter is not None:
            total = sum(self.clutter.values())
            if abs(total - 1.0) > 1e-6:
                raise MutomoError(f"clutter fractions must sum to 1; they sum to {total:.6g}")
        elif self.fill_height is not None:
            raise MutomoError("fill_height applies to a clutter background only")
        if self.layers is not None and sum(layer.target for layer in self.layers) > 1:
            raise MutomoError("at most one layer may be the target")
        return self

    def material_names(self) -> list[str]:
        if self.material is not None:
            return [self.material]
        names = [layer.material for layer in self.layers] if self.layers is not None else list(self.clutter or {})
        return [*names, self.above]


class ObjectSpec(Strict):
    """A box of one material, fixed or drawn, present with ``probability``."""

    name: str | None = Field(None, description="a label (default: its material)")
    material: str = Field(description="material name (built-in or under [[materials]])")
    size: Vector = Field(description="m (x, y, z); snapped to whole voxels, at least one")
    low: Vector = Field(description="m, lower corner relative to the scene origin; snapped to voxel edges")
    probability: Probability = Field(1.0, description="chance the object is present in a volume")
    role: Literal["target", "other"] = Field(
        "target", description="targets are what presence looks for; other objects are scenery"
    )
    when: Literal["always", "target_present", "target_absent"] = Field(
        "always", description="other objects: always, only with a target, or only without one"
    )
    below_fill: bool = Field(
        False,
        description="the object lies wholly under the drawn fill height (clutter or a target layer): its "
        "height is drawn over the part of its range that fits beneath it, e.g. contraband under the goods",
    )

    @model_validator(mode="after")
    def _positive(self) -> ObjectSpec:
        if min(vector_bounds(self.size)[0]) <= 0:
            raise MutomoError("size must be > 0 m on every axis")
        if self.role == "target" and self.when != "always":
            raise MutomoError("'when' applies to objects of role 'other'")
        return self


class SceneSpec(Strict):
    """A scene: box, voxel size, background and objects (see the module docstring)."""

    size: Vec3 = Field(description="m (x, y, z)")
    origin: Vec3 = Field((0.0, 0.0, 0.0), description="m, lower corner")
    voxel: float | Vec3 = Field(description="voxel edge (m), one number or (x, y, z)")
    background: Background = Field(description="what fills the box: one material, layers or clutter")
    objects: list[ObjectSpec] = Field([], description="boxes of material painted over the background, in order")

    @model_validator(mode="after")
    def _geometry(self) -> SceneSpec:
        voxel = (self.voxel,) * 3 if isinstance(self.voxel, (int, float)) else self.voxel
        for axis, (s, v) in enumerate(zip(self.size, voxel, strict=True)):
            if not (s > 0 and v > 0):
                raise MutomoError(f"size and voxel must be > 0 m; axis {'xyz'[axis]} has {s} and {v}")
            n = round(s / v)
            if n < 1 or abs(n * v - s) > 1e-6 * max(1.0, s):
                raise MutomoError(f"size[{'xyz'[axis]}] = {s} m is not a whole number of {v} m voxels")
        for i, obj in enumerate(self.objects):
            low_min, low_max = vector_bounds(obj.low)
            size_max = vector_bounds(obj.size)[1]
            for axis in range(3):
                if low_min[axis] < -1e-9 or low_max[axis] + size_max[axis] > self.size[axis] + 1e-9:
                    raise MutomoError(
                        f"objects[{i}] ({obj.name or obj.material}) can reach outside the scene on axis "
                        f"{'xyz'[axis]}: low in [{low_min[axis]}, {low_max[axis]}] m plus size up to "
                        f"{size_max[axis]} m must stay within [0, {self.size[axis]}] m"
                    )
        layers = self.background.layers
        if layers is not None:
            top = sum(scalar_bounds(layer.thickness)[1] for layer in layers)
            if top > self.size[2] + 1e-9:
                raise MutomoError(
                    f"background.layers can be up to {top:.6g} m thick, over the scene's {self.size[2]} m"
                )
        if self.background.fill_height is not None:
            lo, hi = scalar_bounds(self.background.fill_height)
            if lo < 0 or hi > self.size[2] + 1e-9:
                raise MutomoError(f"background.fill_height must lie in [0, {self.size[2]}] m; got [{lo}, {hi}]")
        for i, obj in enumerate(self.objects):
            if obj.below_fill:
                self._fits_below_fill(i, obj)
        return self

    def _fits_below_fill(self, i: int, obj: ObjectSpec) -> None:
        """``objects[i].below_fill``: a fill height exists and its lowest value leaves room for the
        object above its lowest position."""
        b = self.background
        if b.clutter is not None and b.fill_height is not None:
            lowest_fill = scalar_bounds(b.fill_height)[0]
        elif b.layers is not None and any(layer.target for layer in b.layers):
            lowest_fill = 0.0
            for layer in b.layers:
                lowest_fill += scalar_bounds(layer.thickness)[0]
                if layer.target:
                    break
        else:
            raise MutomoError(
                f"objects[{i}] ({obj.name or obj.material}).below_fill needs a fill height: a clutter background "
                "with fill_height, or a target layer"
            )
        top = vector_bounds(obj.low)[0][2] + vector_bounds(obj.size)[1][2]
        if top > lowest_fill + 1e-9:
            raise MutomoError(
                f"objects[{i}] ({obj.name or obj.material}).below_fill: the fill can be as low as {lowest_fill:.6g} m, "
                f"under the object's lowest top ({top:.6g} m: low z {vector_bounds(obj.low)[0][2]:.6g} m plus size "
                f"up to {vector_bounds(obj.size)[1][2]:.6g} m)"
            )

    @property
    def voxel_size(self) -> Vec3:
        return (self.voxel,) * 3 if isinstance(self.voxel, (int, float)) else self.voxel

    def material_names(self) -> list[str]:
        """Every material the scene refers to, in order of first use."""
        names = [*self.background.material_names(), *(o.material for o in self.objects)]
        return list(dict.fromkeys(names))

    @property
    def has_optional_target(self) -> bool:
        """Whether some volumes hold a target object and others none (what presence needs)."""
        targets = [o for o in self.objects if o.role == "target"]
        return bool(targets) and all(o.probability < 1 for o in targets) and any(o.probability > 0 for o in targets)

    @property
    def has_fill_height(self) -> bool:
        """Whether the scene defines a fill height (what regression needs)."""
        b = self.background
        return (b.layers is not None and any(layer.target for layer in b.layers)) or b.fill_height is not None
