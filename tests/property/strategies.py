"""Hypothesis strategies for mutomo's geometry: volumes, panels, detectors and muons.

Strategies draw plain specifications (frozen dataclasses of floats), so that a failing case
prints as numbers; ``build_*`` turns them into float64 tensors and modules. Every panel value is
an ``nn.Parameter``, so gradients with respect to positions, spans, resolutions and
efficiencies can be checked.

The edge cases the draws lean on (hypothesis also shrinks towards them):

* volumes: one voxel or a few, thin or thick, of random materials per voxel (vacuum-like air up
  to uranium), or built by the scene specification with objects;
* panels: touching the volume's faces (a nanometre away), at the same height as another panel
  (no lever arm), edge to edge with another panel, tiny or huge, efficiency 1 or 1e-6,
  resolution 1 um or 10 cm;
* muons: exactly vertical, tilted in the x-z or y-z plane only, grazing (|cos theta| down to
  1e-15), exactly horizontal, aimed at the volume or far away from every panel, from 10 MeV/c
  (stopped by a few millimetres of metal) to 1 TeV/c, of weight 0, 1 or in between.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from hypothesis import strategies as st
from torch import nn

from mutomo.detector import Detector, DetectorPanel, Hits
from mutomo.muons import GenerationPlane, MuonBatch
from mutomo.reco.track_fit import MIN_LEVER_ARM, WEIGHT_FLOOR
from mutomo.scenes.scene import Scene
from mutomo.scenes.spec import SceneSpec
from mutomo.volume import PassiveVolume

D = torch.float64
MATERIALS = ("air", "water", "wood", "concrete", "aluminium", "iron", "lead", "uranium")

Vec3 = tuple[float, float, float]


# ------------------------------------------------------------------------------------ volumes


@dataclass(frozen=True)
class VolumeSpec:
    """A voxel grid: ``index`` is the material of every voxel, nested ``[ix][iy][iz]``."""

    materials: tuple[str, ...]
    index: tuple[tuple[tuple[int, ...], ...], ...]
    voxel: Vec3
    origin: Vec3

    @property
    def shape(self) -> tuple[int, int, int]:
        return len(self.index), len(self.index[0]), len(self.index[0][0])

    @property
    def z_low(self) -> float:
        return self.origin[2]

    @property
    def z_high(self) -> float:
        return self.origin[2] + self.shape[2] * self.voxel[2]

    @property
    def x_range(self) -> tuple[float, float]:
        return self.origin[0], self.origin[0] + self.shape[0] * self.voxel[0]

    @property
    def y_range(self) -> tuple[float, float]:
        return self.origin[1], self.origin[1] + self.shape[1] * self.voxel[1]

    def with_materials(self, materials: tuple[str, ...]) -> VolumeSpec:
        return VolumeSpec(materials, self.index, self.voxel, self.origin)


voxel_edges = st.sampled_from([0.02, 0.05, 0.1, 0.25]) | st.floats(0.02, 0.3)


@st.composite
def grid_volumes(draw: st.DrawFn, max_cells: int = 4, max_layers: int = 3) -> VolumeSpec:
    """A box of random materials per voxel."""
    nx, ny = draw(st.integers(1, max_cells)), draw(st.integers(1, max_cells))
    nz = draw(st.integers(1, max_layers))
    materials = tuple(draw(st.lists(st.sampled_from(MATERIALS), min_size=1, max_size=3, unique=True)))
    # The material of each voxel from one drawn seed: drawing the voxels one by one costs more
    # than the tests themselves, and shrinking the seed still shrinks towards one material.
    seed = draw(st.integers(0, 2**32 - 1))
    cells = (
        np.random.default_rng(seed).integers(0, len(materials), size=(nx, ny, nz)) if seed else np.zeros((nx, ny, nz))
    )
    index = tuple(tuple(tuple(int(m) for m in row) for row in plane) for plane in cells)
    voxel = (draw(voxel_edges), draw(voxel_edges), draw(voxel_edges))
    origin = (draw(st.floats(-1.0, 1.0)), draw(st.floats(-1.0, 1.0)), draw(st.floats(-0.5, 0.5)))
    return VolumeSpec(materials, index, voxel, origin)


@st.composite
def scene_volumes(draw: st.DrawFn) -> VolumeSpec:
    """A volume drawn through the scene specification: a background and up to two boxes."""
    voxel = draw(st.sampled_from([0.05, 0.1, 0.2]))
    counts = (draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 3)))
    size = tuple(n * voxel for n in counts)
    objects = []
    for _ in range(draw(st.integers(0, 2))):
        low = [draw(st.integers(0, n - 1)) for n in counts]
        extent = [draw(st.integers(1, n - lo)) for n, lo in zip(counts, low, strict=True)]
        objects.append(
            {
                "material": draw(st.sampled_from(MATERIALS)),
                "low": [lo * voxel for lo in low],
                "size": [e * voxel for e in extent],
                "probability": draw(st.sampled_from([0.0, 0.5, 1.0])),
            }
        )
    origin = (draw(st.floats(-1.0, 1.0)), draw(st.floats(-1.0, 1.0)), draw(st.floats(-0.5, 0.5)))
    spec = SceneSpec.model_validate(
        {
            "size": size,
            "origin": origin,
            "voxel": voxel,
            "background": {"material": draw(st.sampled_from(MATERIALS))},
            "objects": objects,
        }
    )
    volume = Scene(spec, dtype=D).sample((draw(st.integers(0, 1000)),)).volume
    index = volume.material_index.tolist()
    return VolumeSpec(
        tuple(m.name for m in volume.materials),
        tuple(tuple(tuple(row) for row in plane) for plane in index),
        volume.voxel_size,
        volume.origin,
    )


volumes = grid_volumes() | scene_volumes()


def build_volume(spec: VolumeSpec) -> PassiveVolume:
    return PassiveVolume(list(spec.materials), torch.tensor(spec.index), spec.voxel, spec.origin, dtype=D)


# ------------------------------------------------------------------------------------- panels


@dataclass(frozen=True)
class PanelSpec:
    centre: Vec3
    span: tuple[float, float]
    resolution: float
    efficiency: float


@dataclass(frozen=True)
class LayoutSpec:
    """A volume with panels above and below it."""

    volume: VolumeSpec
    above: tuple[PanelSpec, ...]
    below: tuple[PanelSpec, ...]
    smoothness: float

    @property
    def z_top(self) -> float:
        return max(p.centre[2] for p in self.above)


spans = st.sampled_from([1e-3, 0.05, 10.0]) | st.floats(0.01, 4.0)
resolutions = st.sampled_from([1e-6, 1e-2, 0.1]) | st.floats(1e-6, 0.05)
efficiencies = st.sampled_from([1.0, 1e-6, 0.5]) | st.floats(1e-6, 1.0)
smoothnesses = st.sampled_from([1e-6, 0.01]) | st.floats(1e-4, 0.2)


@st.composite
def panel_stacks(
    draw: st.DrawFn, volume: VolumeSpec, side: str, n: int, min_gap: float = 0.0, covering: bool = False
) -> tuple[PanelSpec, ...]:
    """``n`` panels on one side of ``volume``; with ``min_gap`` > 0 their heights differ by at
    least that much (a lever arm for the track fit); ``covering`` panels span the volume's
    footprint (edge on edge, or wider), so that most muons through it are tracked."""
    (x_lo, x_hi), (y_lo, y_hi) = volume.x_range, volume.y_range
    face = volume.z_high if side == "above" else volume.z_low
    sign = 1.0 if side == "above" else -1.0
    panels: list[PanelSpec] = []
    for _ in range(n):
        if min_gap > 0:  # each panel at least min_gap further from the face than the previous one
            previous = sign * (panels[-1].centre[2] - face) if panels else 0.0
            distance = previous + (min_gap if panels else 1e-9) + draw(st.floats(0.0, 0.3))
        elif covering:  # close to the volume, so that the muons through it cross the panels
            distance = draw(st.sampled_from([1e-9, 1e-6]) | st.floats(1e-9, 0.3))
        else:
            distance = draw(st.sampled_from([1e-9, 1e-6]) | st.floats(1e-9, 1.5))
            if panels and draw(st.booleans()):  # at the height of the previous panel
                distance = sign * (panels[-1].centre[2] - face)
        z = face + sign * distance
        # Beyond the face by a nanometre, the panel must still be outside the volume.
        if sign * (z - face) <= 0:
            z = math.nextafter(face, sign * math.inf)
        span = (draw(spans), draw(spans))
        kind = "covering" if covering else draw(st.sampled_from(["centred", "corner", "free", "touching"]))
        if kind == "covering":
            margin = draw(st.sampled_from([0.0, 0.1]) | st.floats(0.0, 2.0))
            span = (x_hi - x_lo + margin, y_hi - y_lo + margin)
            xy = (0.5 * (x_lo + x_hi), 0.5 * (y_lo + y_hi))
        elif kind == "centred":
            xy = (0.5 * (x_lo + x_hi), 0.5 * (y_lo + y_hi))
        elif kind == "corner":
            xy = (draw(st.sampled_from([x_lo, x_hi])), draw(st.sampled_from([y_lo, y_hi])))
        elif kind == "touching" and panels:  # edge to edge with the previous panel, in x
            prev = panels[-1]
            xy = (prev.centre[0] + 0.5 * (prev.span[0] + span[0]), prev.centre[1])
        else:
            xy = (draw(st.floats(x_lo - 2.0, x_hi + 2.0)), draw(st.floats(y_lo - 2.0, y_hi + 2.0)))
        if covering:  # a working tracker: fine resolution, useful efficiency
            resolution, efficiency = draw(st.floats(1e-6, 1e-3)), draw(st.sampled_from([1.0]) | st.floats(0.5, 1.0))
        else:
            resolution, efficiency = draw(resolutions), draw(efficiencies)
        panels.append(PanelSpec((xy[0], xy[1], z), span, resolution, efficiency))
    return tuple(panels)


@st.composite
def layouts(
    draw: st.DrawFn,
    volume_strategy: st.SearchStrategy[VolumeSpec] = volumes,
    n_above: int | None = None,
    n_below: int | None = None,
    min_gap: float = 0.0,
) -> LayoutSpec:
    """A volume and its panels: half the time panels that cover it (a detector that tracks most
    muons through it), otherwise anywhere (most muons miss)."""
    volume = draw(volume_strategy)
    covering = draw(st.booleans())
    above = draw(panel_stacks(volume, "above", n_above or draw(st.integers(2, 3)), min_gap, covering))
    below = draw(panel_stacks(volume, "below", n_below or draw(st.integers(2, 3)), min_gap, covering))
    return LayoutSpec(volume, above, below, draw(smoothnesses))


def build_panel(spec: PanelSpec) -> DetectorPanel:
    """A panel whose four values are float64 ``nn.Parameter`` s."""

    def param(values: object) -> nn.Parameter:
        return nn.Parameter(torch.tensor(values, dtype=D))

    return DetectorPanel(
        param(spec.centre), param(spec.span), param([spec.resolution]), param([spec.efficiency]), dtype=D
    )


def build_detector(layout: LayoutSpec) -> Detector:
    return Detector(
        [build_panel(p) for p in layout.above], [build_panel(p) for p in layout.below], smoothness=layout.smoothness
    )


# -------------------------------------------------------------------------------------- muons


@dataclass(frozen=True)
class MuonSpec:
    position: tuple[Vec3, ...]
    direction: tuple[Vec3, ...]
    momentum: tuple[float, ...]
    weight: tuple[float, ...]
    charge: tuple[float, ...]

    def __len__(self) -> int:
        return len(self.momentum)


GRAZING_COSINES = (1e-15, 1e-12, 1e-9, 1e-6, 1e-3, 0.049, 0.05, 0.051)
AXES = (0.0, 0.5 * math.pi, math.pi, 1.5 * math.pi)
# Edge values drawn by hypothesis; None: a value from the case's numpy generator. Drawing every
# value through hypothesis costs more than the properties themselves, so the bulk comes from a
# drawn seed and hypothesis picks (and shrinks towards) the edge cases.
MOMENTA = (None, None, None, 0.01, 0.05, 0.2, 1000.0)
WEIGHTS = (None, 1.0, 1.0, 0.0)


def direction(draw: st.DrawFn, rng: np.random.Generator, horizontal: bool = True, min_cos: float = 0.0) -> Vec3:
    """A direction of flight (not normalised), downwards or, with ``horizontal``, possibly flat;
    ``min_cos`` > 0 keeps it within ``acos(min_cos)`` of the vertical (no grazing ones)."""
    kinds = ["vertical", "x-z", "y-z", "any", "steep", "steep"]
    if min_cos <= 0:
        kinds += ["grazing", "horizontal"] if horizontal else ["grazing"]
    kind = draw(st.sampled_from(kinds))
    if kind == "vertical":
        return (0.0, 0.0, -1.0)
    if kind == "horizontal":
        return draw(st.sampled_from([(1.0, 0.0, 0.0), (0.0, -1.0, 0.0), (0.6, 0.8, 0.0), (-1.0, 0.0, -0.0)]))
    phi = draw(st.sampled_from((None, *AXES)))
    phi = float(rng.uniform(0.0, 2 * math.pi)) if phi is None else phi
    if kind == "grazing":
        cos_t = draw(st.sampled_from((None, *GRAZING_COSINES)))
        cos_t = 10.0 ** float(rng.uniform(-15.0, math.log10(0.06))) if cos_t is None else cos_t
    elif kind == "steep":  # like most cosmic muons: within 25 degrees of the vertical
        cos_t = float(rng.uniform(0.9, 1.0))
    else:
        cos_t = float(rng.uniform(max(min_cos, 0.05), 1.0))
    sin_t = math.sqrt(1.0 - cos_t**2)
    sign = float(rng.choice([-1.0, 1.0]))
    if kind == "x-z":
        return (sign * sin_t, 0.0, -cos_t)
    if kind == "y-z":
        return (0.0, sign * sin_t, -cos_t)
    return (sin_t * math.cos(phi), sin_t * math.sin(phi), -cos_t)


@st.composite
def muon_batches(
    draw: st.DrawFn,
    layout: LayoutSpec,
    min_size: int = 1,
    max_size: int = 8,
    horizontal: bool = True,
    min_cos: float = 0.0,
) -> MuonSpec:
    """Muons starting above the top panel, most aimed at the volume or just beside it, one in
    four anywhere; ``horizontal`` allows exactly flat directions, ``min_cos`` bounds
    the zenith angle (see :func:`direction`)."""
    vol = layout.volume
    (x_lo, x_hi), (y_lo, y_hi) = vol.x_range, vol.y_range
    n = draw(st.integers(min_size, max_size))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    z_start = layout.z_top + draw(st.sampled_from([0.0, 0.3]))
    position, direction_, momentum, weight = [], [], [], []
    for _ in range(n):
        d = direction(draw, rng, horizontal, min_cos)
        where = rng.random()
        if where < 0.6:  # aimed at a point of the volume
            aim = (rng.uniform(x_lo, x_hi), rng.uniform(y_lo, y_hi))
        elif where < 0.75:  # or near it
            aim = (rng.uniform(x_lo - 0.1, x_hi + 0.1), rng.uniform(y_lo - 0.1, y_hi + 0.1))
        else:
            aim = (rng.uniform(-5.0, 5.0), rng.uniform(-5.0, 5.0))
        aim_z = float(rng.uniform(vol.z_low, vol.z_high))
        if d[2] < 0:  # start on the line through the aim, at z_start
            t = (z_start - aim_z) / d[2]
            position.append((float(aim[0] + t * d[0]), float(aim[1] + t * d[1]), z_start))
        else:
            position.append((float(aim[0]), float(aim[1]), aim_z))
        direction_.append(d)
        p, w = draw(st.sampled_from(MOMENTA)), draw(st.sampled_from(WEIGHTS))
        momentum.append(10.0 ** float(rng.uniform(-2.0, 3.0)) if p is None else p)
        weight.append(float(rng.random()) if w is None else w)
    return MuonSpec(
        tuple(position),
        tuple(direction_),
        tuple(momentum),
        tuple(weight),
        tuple(float(c) for c in rng.choice([-1.0, 1.0], size=n)),
    )


def build_muons(spec: MuonSpec) -> MuonBatch:
    return MuonBatch.create(
        torch.tensor(spec.position, dtype=D),
        torch.tensor(spec.direction, dtype=D),
        torch.tensor(spec.momentum, dtype=D),
        charge=torch.tensor(spec.charge, dtype=D),
        weight=torch.tensor(spec.weight, dtype=D),
    )


class BatchSource:
    """A muon source that always gives the same batch (for :func:`mutomo.simulate.simulate`)."""

    def __init__(self, muons: MuonBatch) -> None:
        self.muons = muons
        z = float(muons.position[:, 2].max())
        self.plane = GenerationPlane(z, (-1.0, 1.0), (-1.0, 1.0))

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = D,
        device: torch.device | str | None = None,
    ) -> MuonBatch:
        if n != len(self.muons):
            raise ValueError(f"BatchSource holds {len(self.muons)} muons; asked for {n}")
        return self.muons.to(device=device, dtype=dtype)


# ------------------------------------------------------------------------------------ checks


def assert_finite(name: str, value: torch.Tensor | None) -> None:
    """Every element of ``value`` is finite (``None`` passes)."""
    if value is None:
        return
    bad = ~torch.isfinite(value.detach())
    assert not bool(bad.any()), f"{name}: {int(bad.sum())} non-finite value(s), e.g. {value.detach()[bad][:5].tolist()}"


def assert_unit_interval(name: str, value: torch.Tensor) -> None:
    v = value.detach()
    assert_finite(name, v)
    assert bool(((v >= 0) & (v <= 1)).all()), f"{name} leaves [0, 1]: min {float(v.min())}, max {float(v.max())}"


def assert_finite_gradients(module: nn.Module) -> None:
    """Every parameter of ``module`` that requires a gradient got a finite one."""
    for name, p in module.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"{name}: no gradient"
            assert_finite(f"gradient of {name}", p.grad)


def noise(n_panels: int, n_mu: int, seed: int) -> torch.Tensor:
    return torch.randn(n_panels, n_mu, 2, generator=torch.Generator().manual_seed(seed), dtype=D)


def well_posed(hits: Hits) -> torch.Tensor:
    """``(mu,)`` True where the weighted spread of the panel heights in the fit exceeds
    MIN_LEVER_ARM, the floor under which :func:`fit_tracks` regularises the slope."""
    with torch.no_grad():
        w = (hits.weight + WEIGHT_FLOOR) / hits.resolution[:, None] ** 2  # (panel, mu)
        z = hits.z[:, None]
        z_bar = (w * z).sum(0) / w.sum(0)
        return (w * (z - z_bar) ** 2).sum(0) / w.sum(0) > MIN_LEVER_ARM**2 * (1 + 1e-6)
