"""Hodoscopes: detector modules that are already built, of which only the placement moves.

A :class:`HodoscopeModule` is a rigid box (``size``, m) holding panels at fixed heights above its
bottom face, with fixed spans, resolution and efficiency. A :class:`HodoscopeDesign` places K
identical modules: each module's centre (x, y, z; m) is trainable (groups ``xy`` and ``z`` of
:data:`~mutomo.design.base.PARAMETER_GROUPS`), and each may be turned by 90 degrees about z
(a discrete choice, fixed during training). Its panels are a
:class:`~mutomo.detector.PanelGroup` whose offset is the module centre, so they move with it and
the gradient of a module's position is the sum of its panels' (rigidity). A design may also
hold free panels (a :class:`~mutomo.design.panels.DetectorDesign`), trained as usual.

**Constraints, by projection after each step** (:meth:`HodoscopeDesign.project_`; gradients are
never touched, so they stay finite in every configuration):

1. each module's box stays inside the allowed region: centres within ``bounds.x``/``bounds.y``
   shrunk by the box's half size, and the whole box within ``bounds.z_above`` (modules above
   the volume) or ``bounds.z_below`` (modules below);
2. boxes stay disjoint from each other and from the keep-out boxes (the scanned volume by
   default; e.g. the road): an overlapping pair is pushed apart along the axis of least
   penetration, each by half of it, and a module inside a keep-out box is pushed out the
   same way; region clamping and separation alternate until nothing overlaps. A pair is moved
   along the axis of least penetration on which the region leaves room, each module by its
   share of that room. Touching boxes (a shared face) do not overlap. Should the separation
   not converge (a region too small for the modules), the modules still overlapping go back
   to their last valid placement (and any module they would then overlap), so no step ever
   ends with overlapping modules.

A starting placement that breaks a constraint is refused, naming the module and the field.

:func:`tiled_placement` is the human rule for K modules around a scene (the built-in
``lorry_uranium`` benchmark's ``tiled`` design for K = 4, and the human point of a
module-count front, :mod:`mutomo.studies.landscape`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor, nn

from mutomo.design.base import Design as _Design
from mutomo.design.base import DesignBounds, bounds_and_cost_model
from mutomo.design.panels import DetectorDesign
from mutomo.detector import AreaCostModel, Detector, DetectorPanel, PanelGroup
from mutomo.detector.cost import CostModel
from mutomo.errors import MutomoError

Box = tuple[float, float, float, float, float, float]
"""An axis-aligned box ``(x0, x1, y0, y1, z0, z1)`` (m)."""

OVERLAP_TOLERANCE = 1e-6
"""Penetration (m) below which boxes count as touching, not overlapping."""
SEPARATION_ITERATIONS = 100


@dataclass(frozen=True)
class HodoscopeModule:
    """A built module.

    Attributes:
        size: (x, y, z) of its box (m).
        panel_heights: heights (m) of its panels above the box's bottom face, within the box.
        panel_span: (x, y) span of every panel (m); default the box's footprint.
        resolution: position resolution of every panel (m).
        efficiency: hit efficiency of every panel.
        cost: price of one module (in the cost model's currency).
    """

    size: tuple[float, float, float]
    panel_heights: tuple[float, ...]
    panel_span: tuple[float, float] | None = None
    resolution: float = 3e-4
    efficiency: float = 0.95
    cost: float = 0.0

    def __post_init__(self) -> None:
        if len(self.size) != 3 or not all(0 < s < math.inf for s in self.size):
            raise MutomoError(f"HodoscopeModule.size must be 3 finite values > 0 m; got {self.size}")
        if len(self.panel_heights) == 0:
            raise MutomoError("HodoscopeModule.panel_heights: a module needs at least one panel")
        for i, h in enumerate(self.panel_heights):
            if not 0 <= h <= self.size[2]:
                raise MutomoError(
                    f"HodoscopeModule.panel_heights[{i}] = {h} m lies outside the module's box "
                    f"(0 to {self.size[2]} m above its bottom face)"
                )
        sx, sy = self.span
        if not (0 < sx <= self.size[0] + 1e-9 and 0 < sy <= self.size[1] + 1e-9):
            raise MutomoError(
                f"HodoscopeModule.panel_span {self.span} m must be > 0 and fit the box's footprint {self.size[:2]} m"
            )
        if not 0 < self.resolution < math.inf:
            raise MutomoError(f"HodoscopeModule.resolution must be finite and > 0 m; got {self.resolution}")
        if not 0 < self.efficiency <= 1:
            raise MutomoError(f"HodoscopeModule.efficiency must be in (0, 1]; got {self.efficiency}")
        if not 0 <= self.cost < math.inf:
            raise MutomoError(f"HodoscopeModule.cost must be finite and >= 0; got {self.cost}")

    @property
    def span(self) -> tuple[float, float]:
        return self.panel_span if self.panel_span is not None else (self.size[0], self.size[1])

    def half_size(self, rotated: bool) -> tuple[float, float, float]:
        """Half the box's extent on x, y, z (m), x and y swapped when turned by 90 degrees."""
        sx, sy, sz = self.size
        return (sy / 2, sx / 2, sz / 2) if rotated else (sx / 2, sy / 2, sz / 2)

    def group(self, centre: Tensor, rotated: bool) -> PanelGroup:
        """The module's panels, top down, as a group whose offset is ``centre`` (x, y, z; m)."""
        sx, sy = self.span
        span = (sy, sx) if rotated else (sx, sy)
        bottom = -self.size[2] / 2
        panels = [
            DetectorPanel((0.0, 0.0, bottom + h), span, self.resolution, self.efficiency, dtype=centre.dtype)
            for h in sorted(self.panel_heights, reverse=True)
        ]
        return PanelGroup(panels, offset=centre, dtype=centre.dtype)


def module_sides(centres: Sequence[Sequence[float]] | Tensor | np.ndarray, bounds: DesignBounds) -> list[bool]:
    """Whether each module (``(K, 3)`` centres, m) is above the volume: its centre is nearer
    ``bounds.z_above``'s range than ``z_below``'s."""
    gap_mid = 0.5 * (bounds.z_below[1] + bounds.z_above[0])
    return [float(c[2]) > gap_mid for c in centres]


@dataclass
class _Layout:
    """Box geometry of a placement (plain numbers: it is only ever projected, never
    differentiated): half sizes ``(K, 3)``, each module's side, the region and keep-out boxes.
    Centres are ``(K, 3)`` NumPy arrays here."""

    half: np.ndarray
    above: list[bool]
    region: DesignBounds
    keep_out: list[Box] = field(default_factory=list)

    def sides(self, k: int) -> list[tuple[float, float]]:
        """The region module ``k``'s box must stay within, on x, y and z (m)."""
        b = self.region
        return [b.x, b.y, b.z_above if self.above[k] else b.z_below]

    def limits(self, k: int) -> list[tuple[float, float]]:
        """Allowed range of module ``k``'s centre on x, y and z."""
        return [(lo + float(h), hi - float(h)) for (lo, hi), h in zip(self.sides(k), self.half[k], strict=True)]

    def clamp_(self, centres: np.ndarray) -> None:
        for k in range(centres.shape[0]):
            for axis, (lo, hi) in enumerate(self.limits(k)):
                centres[k, axis] = min(max(centres[k, axis], lo), max(lo, hi))

    def _pairs(self, centres: np.ndarray) -> Iterator[tuple[int, int, np.ndarray]]:
        """Overlapping pairs of modules with their ``(3,)`` overlap depths (m)."""
        for i, j in itertools.combinations(range(centres.shape[0]), 2):
            depth = self.half[i] + self.half[j] - np.abs(centres[i] - centres[j])
            if (depth > OVERLAP_TOLERANCE).all():
                yield i, j, depth

    def _intrusions(self, centres: np.ndarray) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
        """Modules inside keep-out boxes: (module, box, overlap depths, box centre)."""
        for b, box in enumerate(self.keep_out):
            lo, hi = np.array(box[0::2]), np.array(box[1::2])
            centre, half = (lo + hi) / 2, (hi - lo) / 2
            for k in range(centres.shape[0]):
                depth = self.half[k] + half - np.abs(centres[k] - centre)
                if (depth > OVERLAP_TOLERANCE).all():
                    yield k, b, depth, centre

    def overlaps(self, centres: np.ndarray) -> list[str]:
        """What overlaps: pairs of modules and modules in keep-out boxes (empty if none)."""
        found = [f"modules {i} and {j} overlap" for i, j, _ in self._pairs(centres)]
        found += [f"module {k} enters keep-out box {b} {self.keep_out[b]}" for k, b, _, _ in self._intrusions(centres)]
        return found

    def _push_apart(self, centres: np.ndarray, i: int, j: int, depth: np.ndarray) -> None:
        """Separate modules ``i`` and ``j`` along the axis of least penetration on which the
        region leaves them room to move, sharing the move in proportion to that room."""
        best: tuple[float, int, float, float, float] | None = None
        for axis in range(3):
            direction = 1.0 if centres[i, axis] >= centres[j, axis] else -1.0
            lo_i, hi_i = self.limits(i)[axis]
            lo_j, hi_j = self.limits(j)[axis]
            room_i = hi_i - centres[i, axis] if direction > 0 else centres[i, axis] - lo_i
            room_j = centres[j, axis] - lo_j if direction > 0 else hi_j - centres[j, axis]
            room_i, room_j = max(room_i, 0.0), max(room_j, 0.0)
            need = depth[axis] + 2 * OVERLAP_TOLERANCE
            feasible = room_i + room_j >= need
            key = (0.0 if feasible else 1.0) * 1e9 + depth[axis]
            if best is None or key < best[0]:
                best = (key, axis, direction, room_i, room_j)
        assert best is not None
        _, axis, direction, room_i, room_j = best
        need = depth[axis] + 2 * OVERLAP_TOLERANCE
        share = 0.5 if room_i + room_j <= 0 else room_i / (room_i + room_j)
        centres[i, axis] += direction * need * share
        centres[j, axis] -= direction * need * (1 - share)

    def revert_overlapping_(self, centres: np.ndarray, valid: np.ndarray) -> None:
        """Send back to ``valid`` (a placement without overlaps) the modules that still overlap,
        and any module they then overlap, until nothing does."""
        while True:
            culprits = {i for i, j, _ in self._pairs(centres) for i in (i, j)}
            culprits |= {k for k, _, _, _ in self._intrusions(centres)}
            culprits = {k for k in culprits if not np.array_equal(centres[k], valid[k])}
            if not culprits:
                return
            for k in culprits:
                centres[k] = valid[k]

    def separate_(self, centres: np.ndarray) -> bool:
        """Push overlapping boxes apart, alternating with region clamping; ``True`` when no
        overlap is left (see the module docstring)."""
        for _ in range(SEPARATION_ITERATIONS):
            self.clamp_(centres)
            moved = False
            for i, j, depth in list(self._pairs(centres)):
                self._push_apart(centres, i, j, depth)
                moved = True
            for k, _, depth, centre in list(self._intrusions(centres)):
                axis = int(np.argmin(depth))
                direction = 1.0 if centres[k, axis] >= centre[axis] else -1.0
                centres[k, axis] += direction * (depth[axis] + OVERLAP_TOLERANCE)
                moved = True
            if not moved:
                break
        self.clamp_(centres)
        return not self.overlaps(centres)


class HodoscopeDesign(_Design):
    """K identical hodoscope modules (and optionally free panels) around a volume.

    Args:
        module: the built module.
        centres: ``(K, 3)`` module centres (m).
        bounds: the allowed region (see the module docstring; only ``x``, ``y``, ``z_above``
            and ``z_below`` apply to modules).
        keep_out: boxes no module may enter (the scanned volume, the road, ...).
        rotated: per module, turned by 90 degrees about z (default none).
        free: free panels trained beside the modules, or ``None``.
        cost_model: prices the free panels; a module costs ``module.cost``.
        trainable: ``"xy"`` and/or ``"z"`` move the modules (and free panels' own groups).
        smoothness: panel-edge width (m) of the detectors built.
    """

    def __init__(
        self,
        module: HodoscopeModule,
        centres: Sequence[Sequence[float]] | Tensor,
        bounds: DesignBounds,
        keep_out: Sequence[Box] = (),
        rotated: Sequence[bool] | None = None,
        free: DetectorDesign | None = None,
        cost_model: CostModel | None = None,
        trainable: Sequence[str] = ("xy", "z"),
        smoothness: float = 0.01,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        c = torch.as_tensor(centres, dtype=dtype)
        if c.dim() != 2 or c.shape[-1] != 3 or c.shape[0] < 1:
            raise MutomoError(f"HodoscopeDesign.centres must be (K, 3) with K >= 1; got shape {tuple(c.shape)}")
        if not bool(torch.isfinite(c).all()):
            raise MutomoError(f"HodoscopeDesign.centres must be finite; got {c.tolist()}")
        n = c.shape[0]
        rot = [bool(r) for r in rotated] if rotated is not None else [False] * n
        if len(rot) != n:
            raise MutomoError(f"HodoscopeDesign.rotated needs one value per module ({n}); got {len(rot)}")
        unknown = set(trainable) - {"xy", "z", *(free.trainable if free is not None else ())}
        if unknown:
            raise MutomoError(f"HodoscopeDesign.trainable: unknown group(s) {sorted(unknown)}; modules move by xy, z")
        self.module = module
        self.rotated = rot
        self.bounds = bounds
        self.keep_out: list[Box] = [cast(Box, tuple(float(v) for v in box)) for box in keep_out]
        self.free = free
        self.budget = None
        self.cost_model: CostModel = cost_model if cost_model is not None else AreaCostModel()
        self.smoothness = smoothness
        self.trainable = tuple(trainable)
        above = self._sides(c)
        half = np.array([module.half_size(r) for r in rot])
        self._layout = _Layout(half, above, bounds, list(self.keep_out))
        self._check_start(c)
        self.module_xy = nn.Parameter(c[:, :2].clone(), requires_grad="xy" in self.trainable)
        self.module_z = nn.Parameter(c[:, 2].clone(), requires_grad="z" in self.trainable)
        self._last_valid: Tensor
        self.register_buffer("_last_valid", c.clone())

    # ---------------------------------------------------------------- geometry

    def _sides(self, c: Tensor) -> list[bool]:
        return module_sides(c, self.bounds)

    def _check_start(self, c: Tensor) -> None:
        layout = self._layout
        if (not any(layout.above) or all(layout.above)) and self.free is None:
            raise MutomoError(
                "HodoscopeDesign: modules are needed above and below the volume (or free panels on the other "
                f"side); module sides: {['above' if a else 'below' for a in layout.above]}"
            )
        for k in range(c.shape[0]):
            side = "above" if layout.above[k] else "below"
            for axis, (lo, hi) in enumerate(layout.limits(k)):
                v = float(c[k, axis])
                if hi < lo - 1e-6:  # the module does not fit the region on this axis wherever it is put
                    width = 2 * float(layout.half[k][axis])
                    region = layout.sides(k)[axis]
                    raise MutomoError(
                        f"module {k} ({side}) is {width:.6g} m along {'xyz'[axis]}, larger than the allowed region's "
                        f"{region[1] - region[0]:.6g} m ([{region[0]:.6g}, {region[1]:.6g}] m)"
                    )
                if not lo - 1e-6 <= v <= hi + 1e-6:
                    raise MutomoError(
                        f"module {k} ({side}): centre {'xyz'[axis]} = {v:.6g} m puts its box outside the allowed "
                        f"region (centre range [{lo:.6g}, {hi:.6g}] m for this module)"
                    )
        problems = layout.overlaps(c.double().numpy())
        if problems:
            raise MutomoError(f"HodoscopeDesign: the starting placement is not allowed: {'; '.join(problems)}")

    @property
    def centres(self) -> Tensor:
        """``(K, 3)`` module centres (m), differentiable."""
        return torch.cat([self.module_xy, self.module_z[:, None]], dim=-1)

    @property
    def n_modules(self) -> int:
        return int(self.module_z.shape[0])

    @property
    def above(self) -> list[bool]:
        """Per module: whether it is above the volume (fixed at construction)."""
        return list(self._layout.above)

    def centre_ranges(self) -> list[list[tuple[float, float]]]:
        """Per module, the allowed range (m) of its centre on x, y and z: the region shrunk by
        the box's half size, z within its own side's range."""
        return [self._layout.limits(k) for k in range(self.n_modules)]

    @torch.no_grad()
    def place_(self, centres: np.ndarray | Tensor) -> bool:
        """Move the modules to ``(K, 3)`` centres (m), clamped into their ranges and separated
        (see the module docstring), and project the free panels. Returns ``False``, leaving the
        design unchanged, when the separation does not converge (a region too small for the
        modules)."""
        placed = np.array(torch.as_tensor(centres).detach().cpu().double().numpy(), dtype=float)
        if placed.shape != (self.n_modules, 3):
            raise MutomoError(f"HodoscopeDesign.place_: centres must be ({self.n_modules}, 3); got {placed.shape}")
        if not self._layout.separate_(placed):
            return False
        self._last_valid.copy_(torch.as_tensor(placed, dtype=self._last_valid.dtype, device=self._last_valid.device))
        self.module_xy.copy_(self._last_valid[:, :2])
        self.module_z.copy_(self._last_valid[:, 2])
        self.project_()
        return True

    def detector(self) -> Detector:
        centres = self.centres
        groups = [self.module.group(centres[k], self.rotated[k]) for k in range(self.n_modules)]
        above: list[DetectorPanel | PanelGroup] = [g for g, a in zip(groups, self._layout.above, strict=True) if a]
        below: list[DetectorPanel | PanelGroup] = [g for g, a in zip(groups, self._layout.above, strict=True) if not a]
        if self.free is not None:
            free = self.free.detector()
            above += list(free.above)  # type: ignore[arg-type]
            below += list(free.below)  # type: ignore[arg-type]
        return Detector(above, below, self.smoothness, self.cost_model)

    def cost(self) -> Tensor:
        modules = torch.tensor(self.n_modules * self.module.cost, dtype=self.module_z.dtype)
        return modules + self.free.cost() if self.free is not None else modules

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        groups: dict[str, list[nn.Parameter]] = {"xy": [self.module_xy], "z": [self.module_z]}
        if self.free is not None:
            for name, params in self.free.parameter_groups().items():
                groups[name] = groups.get(name, []) + params
        for name in ("size", "resolution", "efficiency"):
            groups.setdefault(name, [])
        return groups

    # ------------------------------------------------------------- constraints

    @torch.no_grad()
    def project_(self) -> None:
        """Back into the region and apart (see the module docstring); never leaves an overlap."""
        centres = self.centres.detach().cpu().double().numpy().copy()
        if not self._layout.separate_(centres):
            self._layout.revert_overlapping_(centres, self._last_valid.cpu().double().numpy())
        placed = torch.as_tensor(centres, dtype=self._last_valid.dtype, device=self._last_valid.device)
        self.module_xy.copy_(placed[:, :2])
        self.module_z.copy_(placed[:, 2])
        self._last_valid.copy_(placed)
        if self.free is not None:
            self.free.project_()

    # ------------------------------------------------------------ (de)serialise

    def describe(self) -> dict[str, Any]:
        """Modules and free panels; also every panel flattened (``n_above``, ``xy``, ``z``,
        ``span``, ...) as :class:`DetectorDesign` describes them, for plots and export."""
        with torch.no_grad():
            detector = self.detector()
            above, below = detector.panel_parameters("above"), detector.panel_parameters("below")
            centre = torch.cat([above["centre"], below["centre"]])
            span = torch.cat([above["span"], below["span"]])
            return {
                "kind": "hodoscopes",
                "module": asdict(self.module),
                "centres": self.centres.tolist(),
                "rotated": list(self.rotated),
                "keep_out": [list(b) for b in self.keep_out],
                "free": self.free.describe() if self.free is not None else None,
                "n_above": int(above["centre"].shape[0]),
                "xy": centre[:, :2].tolist(),
                "z": centre[:, 2].tolist(),
                "span": span[:, 0].tolist(),
                "span_xy": span.tolist(),
                "resolution": torch.cat([above["resolution"], below["resolution"]]).tolist(),
                "efficiency": torch.cat([above["efficiency"], below["efficiency"]]).tolist(),
                **self._common_description(),
            }

    @classmethod
    def from_description(cls, d: dict[str, Any], cost_model: CostModel | None = None) -> HodoscopeDesign:
        bounds, cost_model = bounds_and_cost_model(d, cost_model)
        m = d["module"]
        module = HodoscopeModule(
            size=tuple(m["size"]),
            panel_heights=tuple(m["panel_heights"]),
            panel_span=tuple(m["panel_span"]) if m.get("panel_span") is not None else None,
            resolution=m["resolution"],
            efficiency=m["efficiency"],
            cost=m["cost"],
        )
        free = DetectorDesign.from_description(d["free"], cost_model) if d.get("free") else None
        return cls(
            module,
            d["centres"],
            bounds,
            keep_out=[tuple(b) for b in d.get("keep_out", [])],
            rotated=d.get("rotated"),
            free=free,
            cost_model=cost_model,
            trainable=d.get("trainable", ("xy", "z")),
            smoothness=d.get("smoothness", 0.01),
        )


def _spread(n: int, footprint: tuple[float, float], region: tuple[float, float], size: float) -> list[float]:
    """``n`` centres evenly over the scene's ``footprint`` (the middles of ``n`` equal parts);
    where that pitch is narrower than the module (``size``), evenly over the region's allowed
    centre range instead (its ends included), so that a wide module's rows touch instead of
    overlapping when the region has the room."""
    lo, hi = footprint
    if n == 1 or (hi - lo) / n >= size - 1e-9:
        return [lo + (i + 0.5) * (hi - lo) / n for i in range(n)]
    first, last = region[0] + size / 2, region[1] - size / 2
    return [first + i * (last - first) / (n - 1) for i in range(n)]


def tiled_placement(
    region: DesignBounds,
    scene_box: Box,
    module: HodoscopeModule,
    k: int,
    *,
    keep_out: Sequence[Box] = (),
    **design: Any,
) -> HodoscopeDesign:
    """The human tiling of ``k`` (>= 2) modules around a scene: ``ceil(k/2)`` above it, as low
    as the region allows (the box's bottom on ``region.z_above``'s lower end), and ``k // 2``
    below it, as high as allowed; on each side spread evenly over the scene's footprint (its
    ``(x0, x1, y0, y1, z0, z1)`` box, m), up to four along x, then further rows along y (rows or
    columns that the footprint cannot hold without overlap spread over the region instead). A
    last row with fewer modules is spread evenly over the footprint too, so that it stays centred
    (before 2026-12-07 it took the first columns' places, packed at one end).

    ``keep_out`` and ``design`` (e.g. ``trainable``, ``cost_model``, ``free``) go to
    :class:`HodoscopeDesign` (default: nothing trainable). Raises :class:`MutomoError` when the
    tiling does not fit the region or overlaps (modules too large for the scene's footprint).

    Example:
        >>> region = DesignBounds(x=(-1.0, 5.0), y=(-1.0, 3.4), z_above=(3.5, 6.0), z_below=(-2.0, -0.1))
        >>> module = HodoscopeModule(size=(1.0, 1.0, 0.3), panel_heights=(0.0, 0.3))
        >>> design = tiled_placement(region, (0.0, 4.0, 0.0, 2.4, 1.0, 3.4), module, 3)
        >>> [[round(v, 2) for v in c] for c in design.centres.tolist()], design.above
        ([[1.0, 1.2, 3.65], [3.0, 1.2, 3.65], [2.0, 1.2, -0.25]], [True, True, False])
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise MutomoError(f"tiled_placement: the number of modules must be an integer >= 2 (one a side); got {k!r}")
    x0, x1, y0, y1 = scene_box[:4]
    z_above = region.z_above[0] + module.size[2] / 2
    z_below = region.z_below[1] - module.size[2] / 2
    centres: list[list[float]] = []
    for n, z in ((math.ceil(k / 2), z_above), (k // 2, z_below)):
        columns = min(n, 4)
        rows = math.ceil(n / columns)
        ys = _spread(rows, (y0, y1), region.y, module.size[1])
        for row in range(rows):
            in_row = min(columns, n - row * columns)
            centres.extend([x, ys[row], z] for x in _spread(in_row, (x0, x1), region.x, module.size[0]))
    design.setdefault("trainable", ())
    try:
        return HodoscopeDesign(module, centres, region, keep_out=keep_out, **design)
    except MutomoError as exc:
        raise MutomoError(f"the tiled placement of {k} modules does not fit: {exc}") from None
