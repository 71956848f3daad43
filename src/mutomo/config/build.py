"""From a configuration to built objects: the one place the file format meets the core.

:func:`build_problem` turns a validated :class:`~mutomo.config.schema.RunConfig` into a
:class:`~mutomo.optimise.Problem` (scene, task, muon source, region, cost model, named designs,
momentum option); :func:`build_design`, :func:`comparison_designs`, :func:`settings_from` and
:func:`evaluation_settings` give what a run trains and evaluates. Everything below this module
takes built objects, never a configuration.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from mutomo.config.schema import ConfigError, DesignSpec, RunConfig, load_config
from mutomo.design.base import Design, DesignBounds
from mutomo.design.files import design_from_file, placed_modules
from mutomo.design.hodoscopes import Box, HodoscopeModule
from mutomo.design.panels import DetectorDesign
from mutomo.detector import AreaCostModel
from mutomo.errors import MutomoError
from mutomo.materials import Material
from mutomo.muons import FluxSource, GenerationPlane, TabulatedFlux
from mutomo.muons.generation import muon_count
from mutomo.optimise.evaluate import EvaluationSettings
from mutomo.optimise.loop import TrainingSettings
from mutomo.optimise.problem import Problem
from mutomo.optimise.systematics import SystematicSizes, Variation, build_variations
from mutomo.reco.momentum_options import MOMENTUM_OPTIONS
from mutomo.scenes import Scene
from mutomo.studies.bounds import IDEAL, IDEAL_MOMENTUM, ideal_design, momentum_problem
from mutomo.tasks import TASK_KINDS


def design_from_spec(
    spec: DesignSpec,
    bounds: DesignBounds,
    cost_model: AreaCostModel,
    trainable: Sequence[str],
    budget: float | None,
) -> DetectorDesign:
    """Build a :class:`DetectorDesign` from a design specification's panels (a list of panels, or
    the compact form: heights above and below, one or several centres)."""
    span: float | list[float]
    resolution: float | list[float]
    efficiency: float | list[float]
    if spec.panels is not None:
        panels = sorted(spec.panels, key=lambda p: p.side != "above")
        xy, z = [[p.x, p.y] for p in panels], [p.z for p in panels]
        n_above = sum(p.side == "above" for p in panels)
        span = [p.span for p in panels]
        resolution, efficiency = [p.resolution for p in panels], [p.efficiency for p in panels]
    else:
        assert spec.z_above is not None and spec.z_below is not None and spec.xy is not None
        z = [*spec.z_above, *spec.z_below]
        n_above = len(spec.z_above)
        xy = [list(spec.xy)] * len(z) if isinstance(spec.xy, tuple) else [list(p) for p in spec.xy]
        span, resolution, efficiency = spec.span, spec.resolution, spec.efficiency
    return DetectorDesign(
        xy=xy,
        z=z,
        n_above=n_above,
        span=span,
        resolution=resolution,
        efficiency=efficiency,
        bounds=bounds,
        budget=budget,
        cost_model=cost_model,
        trainable=trainable,
    )


@dataclass(frozen=True)
class SpecDesign:
    """A named design of the configuration (``[designs.NAME]``) as the problem's builder
    (:class:`~mutomo.design.files.NamedDesign`): a design file, hodoscope modules (with free
    panels beside them, which have no budget: modules are bought as built), or free panels."""

    spec: DesignSpec
    bounds: DesignBounds
    cost_model: AreaCostModel
    hodoscope: HodoscopeModule | None = None
    keep_out: tuple[Box, ...] = ()

    def __call__(self, trainable: Sequence[str], budget: float | None) -> Design:
        spec = self.spec
        if spec.file is not None:
            return design_from_file(spec.file, self.bounds, self.cost_model, trainable, budget, self.keep_out)
        if spec.modules is not None:
            if self.hodoscope is None:
                raise MutomoError("modules need a [hodoscope] table describing the module")
            free_spec = spec.model_copy(update={"modules": None, "rotated": None})
            has_free = spec.panels is not None or spec.z_above is not None
            free = design_from_spec(free_spec, self.bounds, self.cost_model, trainable, None) if has_free else None
            return placed_modules(
                self.hodoscope, spec.modules, spec.rotated, free, self.bounds, self.cost_model, trainable, self.keep_out
            )
        return design_from_spec(spec, self.bounds, self.cost_model, trainable, budget)


def _region(config: RunConfig, scene: Scene) -> DesignBounds:
    """The configured region, with defaults from the scene: centres within half the scene's
    size around its footprint, panels up to 1 m above and below it, 2 cm from its faces."""
    r = config.region
    x0, x1, y0, y1, z0, z1 = scene.box
    hx, hy = 0.5 * (x1 - x0), 0.5 * (y1 - y0)
    return DesignBounds(
        x=r.x or (x0 - hx, x1 + hx),
        y=r.y or (y0 - hy, y1 + hy),
        z_above=r.z_above or (z1 + 0.02, z1 + 1.0),
        z_below=r.z_below or (z0 - 1.0, z0 - 0.02),
        span=r.span,
        resolution=r.resolution,
        efficiency=r.efficiency,
    )


def build_problem(config: RunConfig) -> Problem:
    """The :class:`Problem` of a validated configuration; raises :class:`ConfigError` naming the
    field for what only shows once things are built (a material's composition, the region)."""
    materials: dict[str, Material] = {}
    for i, m in enumerate(config.materials):
        try:
            materials[m.name] = Material.from_composition(
                m.name,
                m.density,
                m.composition,
                by=m.by,
                mean_excitation=None if m.mean_excitation_ev is None else m.mean_excitation_ev * 1e-9,
            )
        except (ValueError, KeyError) as exc:
            raise ConfigError(f"materials[{i}] ({m.name}): {exc}") from None
    try:
        scene = Scene(config.scene, materials)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    t = config.task
    options: dict[str, Any] = {"inference": t.inference}
    if t.kind == "regression" and t.loss is not None:
        options["loss"] = t.loss
    if t.kind == "presence":
        grid = scene.sample((0,)).volume.shape
        options.update(false_alarm=t.false_alarm, goal=t.goal, reference=t.reference, statistic=t.statistic, grid=grid)
        if t.outlier_fraction > 0:
            options["outlier_fraction"] = t.outlier_fraction
        if t.range_cut:
            options["range_cut"] = True
        if t.statistic == "likelihood":
            try:
                options["hypotheses"] = scene.material_hypotheses()
            except MutomoError as exc:
                raise ConfigError(f"task.statistic = 'likelihood': {exc}") from None
    task = TASK_KINDS[t.kind](**options)
    mu = config.muons
    plane = (
        scene.generation_plane()
        if mu.plane == "scene"
        else GenerationPlane(z=mu.plane.z, x_range=mu.plane.x, y_range=mu.plane.y)
    )
    if plane.z <= scene.z_high:
        raise ConfigError(f"muons.plane: z = {plane.z} m must be above the scene's top ({scene.z_high} m)")
    source = FluxSource(
        plane, TabulatedFlux(momentum_range=mu.momentum_range, theta_max=math.radians(mu.theta_max_deg))
    )
    try:
        bounds = _region(config, scene)
        bounds.check_volume(scene.sample((0,)).volume)
    except ValueError as exc:
        raise ConfigError(f"region: {exc}") from None
    c = config.cost
    cost_model = AreaCostModel(
        cost_per_m2=c.per_m2,
        reference_resolution=c.reference_resolution,
        reference_efficiency=c.reference_efficiency,
        resolution_exponent=c.resolution_exponent,
        per_panel=c.per_panel,
    )
    module = hodoscope_module(config)
    keep_out: tuple[Box, ...] = (scene.box, *config.region.keep_out)
    return Problem(
        name=config.name,
        scene=scene,
        task=task,
        source=source,
        bounds=bounds,
        cost_model=cost_model,
        designs={name: SpecDesign(spec, bounds, cost_model, module, keep_out) for name, spec in config.designs.items()},
        momentum=MOMENTUM_OPTIONS[t.momentum],
        n_muons=t.muons_per_volume if t.muons_per_volume is not None else muon_count(t.exposure_s or 0.0, source),
        step_length=t.step_length,
        hodoscope=module,
        keep_out=keep_out,
    )


def hodoscope_module(config: RunConfig) -> HodoscopeModule | None:
    """The configured ``[hodoscope]`` module, or ``None``."""
    h = config.hodoscope
    if h is None:
        return None
    try:
        return HodoscopeModule(
            size=h.size,
            panel_heights=tuple(h.panel_heights),
            panel_span=h.panel_span,
            resolution=h.resolution,
            efficiency=h.efficiency,
            cost=h.cost,
        )
    except MutomoError as exc:
        raise ConfigError(f"hodoscope: {exc}") from None


def build_design(config: RunConfig, problem: Problem) -> Design:
    """The starting design, under the configured budget (default: its own cost)."""
    dc = config.design
    if not dc.fixed_budget:  # a soft budget (design.budget) is a penalty of the training: settings_from
        return problem.design(dc.start, dc.trainable, None, what="design.start")
    budget = (
        dc.budget if dc.budget is not None else float(problem.design(dc.start, what="design.start").cost().detach())
    )
    return problem.design(dc.start, dc.trainable, budget, what="design.start")


def comparison_designs(config: RunConfig, problem: Problem, budget: float | None) -> dict[str, Design]:
    """The designs of ``evaluation.compare``; under a fixed budget they are scaled to it."""
    return {name: problem.design(name, (), budget, what="evaluation.compare") for name in config.evaluation.compare}


def bound_designs(config: RunConfig, problem: Problem, like: Design | None) -> dict[str, tuple[Design, Problem]]:
    """The reference detectors of ``evaluation.bounds`` (:mod:`mutomo.studies.bounds`), each with
    the problem it is evaluated in (``ideal_momentum``: momenta measured to
    ``evaluation.bound_momentum_resolution``); ``like`` gives the number of panels a side."""
    names = config.evaluation.bounds
    if not names:
        return {}
    ideal = ideal_design(problem, like)
    variants = {IDEAL: problem, IDEAL_MOMENTUM: momentum_problem(problem, config.evaluation.bound_momentum_resolution)}
    return {name: (ideal, variants[name]) for name in names}


def systematic_sizes(config: RunConfig) -> SystematicSizes:
    """The sizes of the systematic variations (``[evaluation.systematics]``)."""
    s = config.evaluation.systematics
    return SystematicSizes(
        core_width=s.core_width,
        index_shift=s.index_shift,
        fixed_momentum=s.fixed_momentum,
        flux_model=s.flux_model,
        resolution_factor=s.resolution_factor,
        efficiency_factor=s.efficiency_factor,
        misalignment=s.misalignment,
        misalignment_seed=s.misalignment_seed,
        exposure=s.exposure,
    )


def variations(config: RunConfig, names: Sequence[str], problem: Problem | None, where: str) -> tuple[Variation, ...]:
    """The systematic variations ``names`` of ``config`` around ``problem``'s muon source (built
    from ``config`` when ``None``); ``where`` names the field in errors."""
    if not names:
        return ()
    problem = problem if problem is not None else build_problem(config)
    try:
        return build_variations(names, systematic_sizes(config), problem.source, where)
    except MutomoError as exc:
        raise ConfigError(str(exc)) from None


def evaluation_settings(config: RunConfig, problem: Problem | None = None) -> EvaluationSettings:
    """The physical evaluation's settings of ``config`` (``[evaluation]``), with the systematic
    variations of ``evaluation.systematics`` around ``problem``'s source (built from ``config``
    when ``None`` and variations are named)."""
    e = config.evaluation
    return EvaluationSettings(
        n_volumes=e.n_volumes,
        calibration_volumes=e.calibration_volumes,
        seed=e.seed,
        min_hits=tuple(None if k == "all" else k for k in e.min_hits),
        exposure_factors=tuple(e.exposure_factors),
        smoothness=config.training.smoothness[1],
        systematics=variations(config, e.systematics.variations, problem, "evaluation.systematics.variations"),
    )


def settings_from(config: RunConfig, problem: Problem) -> TrainingSettings:
    """The training settings of ``config``; with ``design.fixed_budget = false``, ``design.budget``
    is the soft budget whose penalty the loss adds (none without one)."""
    t = config.training
    if t.muons_per_volume is not None:
        n_muons = t.muons_per_volume
    elif t.exposure_s is not None:
        n_muons = problem.muons_for(t.exposure_s)
    else:
        n_muons = problem.n_muons
    return TrainingSettings(
        epochs=t.epochs,
        volumes_per_epoch=t.volumes_per_epoch,
        muons_per_volume=max(10, n_muons),
        validation_volumes=t.validation_volumes,
        validate_every=t.validate_every,
        seed=t.seed,
        learning_rates={**TrainingSettings().learning_rates, **{str(k): v for k, v in t.learning_rates.items()}},
        optimisers={str(k): str(v) for k, v in t.optimisers.items()},
        warmup_epochs=t.warmup_epochs,
        final_lr_fraction=t.final_lr_fraction,
        smoothness=t.smoothness,
        sampled_hits=t.hits == "sampled",
        budget=None if config.design.fixed_budget else config.design.budget,
        systematics=variations(config, t.systematics, problem, "training.systematics"),
        systematics_weighting=t.systematics_weighting,
    )


SIZES = ("epochs", "volumes_per_epoch", "muons_per_volume")
"""Training sizes a command line may override (``mutomo landscape``, ``mutomo sweep``)."""


def with_sizes(settings: TrainingSettings, sizes: dict[str, int] | None) -> TrainingSettings:
    """``settings`` with the training sizes of ``sizes`` (keys of :data:`SIZES`) replaced."""
    s = sizes or {}
    unknown = [k for k in s if k not in SIZES]
    if unknown:
        raise MutomoError(f"training sizes: unknown {unknown}; allowed {list(SIZES)}")
    return replace(
        settings,
        epochs=int(s.get("epochs", settings.epochs)),
        volumes_per_epoch=int(s.get("volumes_per_epoch", settings.volumes_per_epoch)),
        muons_per_volume=int(s.get("muons_per_volume", settings.muons_per_volume)),
    )


def load_benchmark(name: str) -> Problem:
    """The :class:`~mutomo.optimise.Problem` of the built-in benchmark ``name`` (a configuration
    the package ships, :func:`~mutomo.config.schema.builtin_configs`).

    Example:
        >>> problem = load_benchmark("ladle_furnace")
        >>> problem.task.kind, sorted(problem.designs)
        ('regression', ['human_acceptance', 'human_resolution', 'poor'])
    """
    return build_problem(load_config(name))
