"""A design problem assembled from a configuration, and the one path from a detector and a volume
to the task's outputs.

A :class:`Problem` holds the scene (volumes from keys), the task kind, the muon source (the
same for every design, so that designs are compared on the same muons), where panels may go,
what they cost, and the named designs of the configuration. :meth:`Problem.observe` simulates
one volume once and reads it out in one or several ways (the smooth relaxation used in
training, and physical readouts with hard edges, Bernoulli hits and a trigger), then
reconstructs with the configured momentum and returns the task's outputs for each.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mutomo.detector import AreaCostModel, Detector, Hits
from mutomo.detector.readout import physical_readout, sampled_readout
from mutomo.errors import DesignFileError, MutomoError
from mutomo.io.config import ConfigError, DesignSpec, RunConfig
from mutomo.io.paths import PathLike, as_path
from mutomo.materials import Material
from mutomo.muons import FluxSource, GenerationPlane, TabulatedFlux
from mutomo.muons.generation import exposure_time, muon_count
from mutomo.optimise.design import Design, DesignBounds, DetectorDesign
from mutomo.optimise.hodoscopes import Box, HodoscopeDesign, HodoscopeModule
from mutomo.reco import (
    ConstantMomentum,
    ExpectedMomentum,
    FluxMeanMomentum,
    MaximumLikelihoodEM,
    MomentumEstimator,
    MomentumPrior,
    ScatterData,
    measure,
)
from mutomo.reco.momentum import MARGINAL_BINS
from mutomo.scenes import Scene, VolumeSample
from mutomo.simulate import SimulationResult, simulate
from mutomo.tasks import TASK_KINDS, TaskKind


@dataclass(frozen=True)
class Readout:
    """How hits are read out: the smooth relaxation (``sampled``: with Bernoulli-drawn hits, see
    :func:`~mutomo.detector.readout.sampled_readout`), or physically with a trigger of
    ``min_hits`` per side (``None``: every panel of the side)."""

    physical: bool = False
    min_hits: int | None = 2
    sampled: bool = False

    @property
    def name(self) -> str:
        if not self.physical:
            return "smooth_sampled" if self.sampled else "smooth"
        if self.min_hits == 2:
            return "physical"
        return "physical_all" if self.min_hits is None else f"physical_min{self.min_hits}"


SMOOTH = Readout()
SAMPLED = Readout(sampled=True)


def key_generator(key: Sequence[int]) -> torch.Generator:
    """A generator seeded by a key of integers, independent of anything drawn before."""
    return torch.Generator().manual_seed(hash(tuple(int(k) for k in key)) % (2**63))


@dataclass
class Problem:
    """Everything a design is optimised and evaluated against (see the module docstring).

    Attributes:
        name: a label.
        scene: volumes from keys.
        task: the task kind with its inference.
        source: the muon source (fixed for every design).
        bounds: where panels may go and what they may be.
        cost_model: prices panels.
        designs: the configuration's named designs.
        momentum: ``"true"`` (an oracle), ``"constant"``, ``"flux_mean"``, ``"expected"``
            (:class:`~mutomo.reco.ExpectedMomentum` in the scene's nominal background),
            ``"range_mean"`` (the same without the deflection: the flux mean above the range cut),
            ``"marginal"`` (ML/EM marginalises over each muon's momentum with that estimator's
            prior on ``MARGINAL_BINS`` classes; the data's ``momentum`` is the flux mean) or
            ``"posterior"`` (each muon's posterior effective momentum after such an ML/EM
            reconstruction of the volume: :meth:`~mutomo.reco.MaximumLikelihoodEM.posterior_momentum`,
            for the methods that need one momentum per muon).
        n_muons: muons per test volume; ``exposure_s`` is the exposure they represent.
        step_length: propagation step (m).
        hodoscope: the built module that designs with ``modules`` place, if any.
        keep_out: boxes no module may enter: the scene's box and the region's ``keep_out``.
    """

    name: str
    scene: Scene
    task: TaskKind
    source: FluxSource
    bounds: DesignBounds
    cost_model: AreaCostModel
    designs: dict[str, DesignSpec]
    momentum: str
    n_muons: int
    step_length: float = 0.05
    hodoscope: HodoscopeModule | None = None
    keep_out: tuple[Box, ...] = ()

    @property
    def exposure_s(self) -> float:
        return exposure_time(self.n_muons, self.source)

    def muons_for(self, seconds: float) -> int:
        """Muons through the source's plane in ``seconds`` of exposure."""
        return muon_count(seconds, self.source)

    def sample(self, key: Sequence[int], index: int | None = None, clean: bool = False) -> VolumeSample:
        """The volume of ``key``; for a presence task, volume ``index`` of a set holds the object
        when ``index`` is even, so that sets are balanced; ``clean`` volumes never hold it."""
        present = None if index is None or self.task.kind != "presence" else index % 2 == 0
        return self.scene.sample(key, present=False if clean else present)

    def momentum_loss(self, result: SimulationResult) -> Tensor | None:
        """``(mu,)`` momentum each muon lost in the volume (GeV/c) with the true momenta (an
        oracle, which ML/EM spreads along the path), else ``None``: unknown to a detector."""
        return result.muons_in.momentum - result.muons_out.momentum if self.momentum == "true" else None

    def _momentum(self, result: SimulationResult, sample: VolumeSample) -> Tensor | MomentumEstimator:
        if self.momentum == "true":
            return 0.5 * (result.muons_in.momentum + result.muons_out.momentum)
        if self.momentum == "constant":
            return ConstantMomentum()
        if self.momentum in ("expected", "range_mean"):
            # The scene's nominal background (what the operator assumes), never the drawn volume.
            return ExpectedMomentum(
                sample.volume,
                self.scene.nominal_background(),
                self.source.flux,
                deflection=self.momentum == "expected",
            )
        return FluxMeanMomentum(self.source.flux)

    def momentum_prior(self, sample: VolumeSample) -> MomentumPrior | None:
        """The prior ML/EM marginalises over with ``momentum = "marginal"`` (and ``"posterior"``),
        else ``None``."""
        if self.momentum not in ("marginal", "posterior"):
            return None
        # The scene's nominal background (what the operator assumes), never the drawn volume.
        return ExpectedMomentum(sample.volume, self.scene.nominal_background(), self.source.flux, n_bins=MARGINAL_BINS)

    def measure(self, above: Hits, below: Hits, result: SimulationResult, sample: VolumeSample) -> ScatterData:
        """Fit the tracks of hits read out from ``result`` and give the muons this problem's
        momenta (``momentum``): what a reconstruction of ``sample``'s volume receives."""
        volume = sample.volume
        alive = result.muons_in.weight * (result.muons_out.weight > 0)
        loss = self.momentum_loss(result)
        data = measure(above, below, volume, self._momentum(result, sample), alive, momentum_loss=loss)
        prior = self.momentum_prior(sample)
        if prior is None:
            return data
        data = replace(data, momentum_prior=prior)
        if self.momentum == "posterior":
            # Detached, like every momentum estimate: a fixed per-muon number to the gradient.
            p = MaximumLikelihoodEM().posterior_momentum(data, volume)
            data = replace(data, momentum=p.to(data.momentum.dtype), momentum_prior=None)
        return data

    def observe(
        self,
        detector: Detector,
        sample: VolumeSample,
        n_muons: int,
        generator: torch.Generator,
        readouts: Sequence[Readout] = (SMOOTH,),
        readout_generator: torch.Generator | None = None,
    ) -> list[Tensor]:
        """Simulate ``n_muons`` through ``detector`` and the volume once, read the hits out in each
        of ``readouts`` and return the task's ``(observable,)`` outputs for each (the smooth ones
        differentiable in the detector's parameters)."""
        result = simulate(detector, sample.volume, self.source, n_muons, generator, step_length=self.step_length)
        outputs = []
        for readout in readouts:
            above, below = result.hits_above, result.hits_below
            gen = readout_generator if readout_generator is not None else generator
            if readout.physical:
                above = physical_readout(above, detector, "above", result.muons_in.weight, gen, readout.min_hits)
                below = physical_readout(below, detector, "below", result.muons_out.weight, gen, readout.min_hits)
            elif readout.sampled:
                above = sampled_readout(above, detector, "above", gen)
                below = sampled_readout(below, detector, "below", gen)
            outputs.append(self.task.output(self.measure(above, below, result, sample), sample))
        return outputs

    def design(
        self,
        name: str,
        trainable: Sequence[str] = ("xy", "z", "size"),
        budget: float | None = None,
        field: str = "designs",
    ) -> Design:
        """A named design of the configuration, or a design JSON file, in this problem's region
        and cost model; with ``budget`` its panels are scaled (keeping their relative costs) so
        that it costs exactly that. Raises :class:`ConfigError` naming ``field``."""
        if name in self.designs:
            spec, where = self.designs[name], f"{field} {name!r} (designs.{name})"
        elif Path(name).exists():
            spec, where = DesignSpec(file=name), f"{field} {name!r}"
        else:
            raise ConfigError(
                f"{field}: {name!r} is neither a design under [designs] {sorted(self.designs)} nor a file"
            )
        try:
            if spec.modules is not None or (spec.file is not None and _is_hodoscope_file(spec.file)):
                return self._hodoscopes(spec, trainable)
            return design_from_spec(spec, self.bounds, self.cost_model, trainable, budget)
        except DesignFileError:
            raise
        except (ValueError, TypeError, RuntimeError) as exc:  # torch's own for ragged or non-numeric lists
            raise ConfigError(f"{where}: {exc}") from None

    def _hodoscopes(self, spec: DesignSpec, trainable: Sequence[str]) -> HodoscopeDesign:
        """Modules (of a spec or a hodoscope design file) in this problem's region; free panels
        beside them have no budget (modules are bought as built)."""
        if spec.file is not None:
            d = read_design_file(spec.file)
            module = HodoscopeDesign.from_description(d).module
            centres, rotated = d["centres"], d.get("rotated")
            free = None
            if d.get("free"):
                f = d["free"]
                free = DetectorDesign(
                    f["xy"],
                    f["z"],
                    f["n_above"],
                    f["span"],
                    f["resolution"],
                    f["efficiency"],
                    self.bounds,
                    cost_model=self.cost_model,
                    trainable=[g for g in trainable if g not in ("xy", "z")] or (),
                )
        else:
            if self.hodoscope is None:
                raise MutomoError("modules need a [hodoscope] table describing the module")
            module, centres, rotated = self.hodoscope, spec.modules, spec.rotated
            free_spec = spec.model_copy(update={"modules": None, "rotated": None})
            has_free = spec.panels is not None or spec.z_above is not None
            free = design_from_spec(free_spec, self.bounds, self.cost_model, trainable, None) if has_free else None
        allowed = {"xy", "z", *(free.trainable if free is not None else ())}
        return HodoscopeDesign(
            module,
            centres,
            self.bounds,
            keep_out=self.keep_out,
            rotated=rotated,
            free=free,
            cost_model=self.cost_model,
            trainable=[g for g in trainable if g in allowed],
        )


def _is_hodoscope_file(path: str) -> bool:
    return read_design_file(path).get("kind") == "hodoscopes"


DESIGN_FILE_KEYS = ("n_above", "xy", "z", "span", "resolution", "efficiency")
"""The keys a design file must have (as written by :meth:`DetectorDesign.describe`)."""
DESIGN_FILE_OPTIONAL = ("budget", "cost", "bounds", "cost_model", "trainable", "smoothness")
HODOSCOPE_FILE_KEYS = ("kind", "module", "centres", "rotated", "keep_out", "free", "span_xy")
"""Further keys of a hodoscope design file (``"kind": "hodoscopes"``; see
:meth:`mutomo.optimise.hodoscopes.HodoscopeDesign.describe`)."""
"""Keys a design file may have besides: written by mutomo, not read back (the problem's region,
cost model and budget apply)."""


def _refuse_constant(name: str) -> float:
    raise DesignFileError(f"{name} is not a number a design may hold")


def read_design_file(path: PathLike) -> dict[str, Any]:
    """The design JSON file ``path`` as a dictionary, checked: valid JSON (no NaN or Infinity),
    an object with every key of :data:`DESIGN_FILE_KEYS`, no key outside those and
    :data:`DESIGN_FILE_OPTIONAL`, ``n_above`` an integer and the others lists of numbers.
    Raises :class:`DesignFileError` naming the file and the key."""
    path = as_path(path, "design file")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise DesignFileError(f"design file {path}: cannot be read ({exc})") from None
    try:
        d = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise DesignFileError(f"design file {path}: not valid JSON ({exc})") from None
    except DesignFileError as exc:
        raise DesignFileError(f"design file {path}: {exc}") from None
    if not isinstance(d, dict):
        raise DesignFileError(f"design file {path}: must hold a JSON object with keys {list(DESIGN_FILE_KEYS)}")
    missing = [k for k in DESIGN_FILE_KEYS if k not in d]
    if missing:
        raise DesignFileError(f"design file {path}: lacks {missing}")
    allowed = set(DESIGN_FILE_KEYS) | set(DESIGN_FILE_OPTIONAL)
    if d.get("kind") == "hodoscopes":
        allowed |= set(HODOSCOPE_FILE_KEYS)
        for key in ("module", "centres"):
            if key not in d:
                raise DesignFileError(f"design file {path}: a hodoscope design lacks {key!r}")
    extra = sorted(set(d) - allowed)
    if extra:
        raise DesignFileError(f"design file {path}: unknown key(s) {extra}; allowed {sorted(allowed)}")
    if not isinstance(d["n_above"], int) or isinstance(d["n_above"], bool):
        raise DesignFileError(f"design file {path}: n_above must be an integer; got {d['n_above']!r}")
    for key in DESIGN_FILE_KEYS[1:]:
        if not _numbers(d[key]):
            raise DesignFileError(f"design file {path}: {key} must be a number or a list of numbers; got {d[key]!r}")
    return d


def _numbers(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    return isinstance(value, list) and len(value) > 0 and all(_numbers(v) for v in value)


def design_from_spec(
    spec: DesignSpec,
    bounds: DesignBounds,
    cost_model: AreaCostModel,
    trainable: Sequence[str],
    budget: float | None,
) -> DetectorDesign:
    """Build a :class:`DetectorDesign` from a design specification (file, panels or compact).
    A design file written under a fixed budget (its ``budget``) keeps it when ``budget`` is
    ``None``: its spans were shares of that budget, which span bounds do not limit."""
    if spec.file is not None:
        d = read_design_file(spec.file)
        if budget is None and isinstance(d.get("budget"), (int, float)) and not isinstance(d["budget"], bool):
            budget = float(d["budget"])
        xy, z, n_above = d["xy"], d["z"], d["n_above"]
        span, resolution, efficiency = d["span"], d["resolution"], d["efficiency"]
    elif spec.panels is not None:
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
        options.update(false_alarm=t.false_alarm, goal=t.goal, reference=t.reference)
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
    return Problem(
        name=config.name,
        scene=scene,
        task=task,
        source=source,
        bounds=bounds,
        cost_model=cost_model,
        designs=dict(config.designs),
        momentum=t.momentum,
        n_muons=t.muons_per_volume if t.muons_per_volume is not None else muon_count(t.exposure_s or 0.0, source),
        step_length=t.step_length,
        hodoscope=hodoscope_module(config),
        keep_out=(scene.box, *config.region.keep_out),
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
