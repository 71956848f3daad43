"""Warnings before a run: a configuration that validates but poses a question that cannot be
answered as written (issue 26). Each warning is one line naming the field or design and what
would fix it; nothing here refuses anything (``mutomo check`` and ``mutomo optimise`` print them).

* a user material whose density is implausible for its composition (``7.85`` for iron: grams
  per cm^3 where kg/m^3 is meant);
* a named design that does not fit the scene (its panels outside the region, or none of them
  over the scene's footprint), naming the designs inherited through ``extends``;
* an exposure that gives a voxel method fewer than :data:`MIN_MUONS_PER_VOXEL` muons per voxel.
"""

from __future__ import annotations

from mutomo.config.schema import RunConfig
from mutomo.errors import MutomoError
from mutomo.optimise.problem import Problem
from mutomo.reco.methods import VOXEL_METHODS

GAS_ELEMENTS = frozenset({"H", "He", "N", "O", "F", "Ne", "Cl", "Ar", "Kr", "Xe", "Rn"})
"""Elements that are gases at room temperature: a material made of these alone may be a gas."""
LEAST_CONDENSED_DENSITY = 30.0
"""kg/m^3: below this, a material holding a non-gas element is implausible (the lightest foams
are ~30 kg/m^3; silica aerogels go lower, but not in a scanned volume)."""
DENSEST = 22_590.0
"""kg/m^3: osmium, the densest element; nothing is denser."""
MIN_MUONS_PER_VOXEL = 5.0
"""Fewer muons crossing each voxel than this leaves a voxel method's map noise."""


def material_warnings(config: RunConfig) -> list[str]:
    """A warning for each ``[[materials]]`` entry whose density is implausible for its
    composition: below :data:`LEAST_CONDENSED_DENSITY` while holding a non-gas element (a density
    given in g/cm^3), or above :data:`DENSEST`. A mistake in a gas-only composition (water given
    as 1.0) cannot be told from a gas and is not warned."""
    out = []
    for i, m in enumerate(config.materials):
        where = f"materials[{i}] ({m.name})"
        solid = sorted(set(m.composition) - GAS_ELEMENTS)
        if solid and m.density < LEAST_CONDENSED_DENSITY:
            out.append(
                f"{where}: density {m.density:g} kg/m^3 is implausible for a material holding {', '.join(solid)}: did "
                f"you give g/cm^3? densities are in kg/m^3 ({m.density:g} g/cm^3 = {m.density * 1000:g} kg/m^3)"
            )
        elif m.density > DENSEST:
            out.append(
                f"{where}: density {m.density:g} kg/m^3 is above that of osmium ({DENSEST:g} kg/m^3), the densest "
                "element; densities are in kg/m^3"
            )
    return out


def _overlaps(lo: float, hi: float, centre: float, span: float) -> bool:
    return centre + 0.5 * span > lo and centre - 0.5 * span < hi


def design_warnings(config: RunConfig, problem: Problem) -> list[str]:
    """A warning for each named design (``[designs]``) that does not fit the scene: one that
    cannot be built in the region (a panel outside it), or one with no panel over the scene's
    footprint on a side. Designs inherited through ``extends`` are named as such. (A design the
    run uses, ``design.start`` or ``evaluation.compare``, that cannot be built is refused by the
    run itself, not warned of.)"""
    x0, x1, y0, y1, _, _ = problem.scene.box
    inherited = config.inherited_designs
    used = {config.design.start, *config.evaluation.compare}
    out = []
    for name in config.designs:
        label = f"design {name!r}" + (f" (inherited from {inherited[name]})" if name in inherited else "")
        try:
            design = problem.design(name, (), None, what=f"designs.{name}")
            detector = design.detector()
        except MutomoError as exc:
            if name in used:  # the run refuses it, naming the field: no warning besides
                continue
            reason = str(exc).removeprefix(f"designs.{name} {name!r} (designs.{name}): ")
            out.append(f"{label} does not fit this scene: {reason}")
            continue
        for side in ("above", "below"):
            p = detector.panel_parameters(side)
            centres = p["centre"].detach().reshape(-1, 3).tolist()
            spans = p["span"].detach().reshape(-1, 2).tolist()
            covering = [
                _overlaps(x0, x1, c[0], s[0]) and _overlaps(y0, y1, c[1], s[1])
                for c, s in zip(centres, spans, strict=True)
            ]
            if not any(covering):
                where = ", ".join(f"({c[0]:.3g}, {c[1]:.3g})" for c in centres)
                out.append(
                    f"{label} covers none of the scene: none of its panels {side} the volume reaches over "
                    f"x {x0:g}..{x1:g}, y {y0:g}..{y1:g} m (panel centres at {where} m)"
                )
                break
    return out


def muons_per_voxel(problem: Problem) -> float:
    """About how many muons cross each voxel of a test volume: the muons generated over the
    scene's footprint (the task's count times the footprint's share of the generation plane),
    shared among the voxel columns (each muon crosses about one voxel per layer)."""
    x0, x1, y0, y1, _, _ = problem.scene.box
    plane = problem.source.plane
    (px0, px1), (py0, py1) = plane.x_range, plane.y_range
    overlap = max(0.0, min(x1, px1) - max(x0, px0)) * max(0.0, min(y1, py1) - max(y0, py0))
    share = overlap / ((px1 - px0) * (py1 - py0))
    nx, ny, _ = problem.scene.shape
    return problem.n_muons * share / (nx * ny)


def exposure_warnings(config: RunConfig, problem: Problem) -> list[str]:
    """A warning when a voxel method (``task.inference``) sees fewer than
    :data:`MIN_MUONS_PER_VOXEL` muons per voxel at the task's exposure. (The regression's fill
    statistic pools every muon and is not warned.)"""
    if config.task.inference not in VOXEL_METHODS:
        return []
    per_voxel = muons_per_voxel(problem)
    if per_voxel >= MIN_MUONS_PER_VOXEL:
        return []
    given = (
        f"task.exposure_s = {config.task.exposure_s:g} s"
        if config.task.exposure_s is not None
        else f"task.muons_per_volume = {config.task.muons_per_volume}"
    )
    factor = MIN_MUONS_PER_VOXEL / max(per_voxel, 1e-9)
    nx, ny, nz = problem.scene.shape
    return [
        f"{given} gives about {per_voxel:.2g} muons per voxel ({problem.n_muons} muons over {nx} x {ny} x {nz} "
        f"voxels): fewer than {MIN_MUONS_PER_VOXEL:g}, so the {config.task.inference} map is mostly noise; expose "
        f"about {factor:.2g}x longer, or use larger voxels (scene.voxel)"
    ]


def before_run(config: RunConfig, problem: Problem) -> list[str]:
    """Every warning of this module, materials first."""
    return material_warnings(config) + design_warnings(config, problem) + exposure_warnings(config, problem)
