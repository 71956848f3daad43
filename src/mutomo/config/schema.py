"""The run configuration: a TOML or YAML file validated by a pydantic schema.

Every table refuses unknown keys; every number has its allowed range. :func:`load_config`
raises :class:`ConfigError` listing each bad field by its dotted path (``training.epochs``),
what was given and what is allowed, before anything is simulated. See ``configs/`` for examples
and README.md for the reference.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from mutomo.errors import ConfigError, MutomoError
from mutomo.materials import get_material, known_materials
from mutomo.optimise.systematics import ALL, OTHER_FLUX_MODELS, VARIATIONS, variation_names
from mutomo.reco.methods import VOXEL_METHODS
from mutomo.reco.momentum_options import MOMENTUM_OPTIONS
from mutomo.scenes.spec import MaterialSpec, SceneSpec
from mutomo.studies.baselines import METHODS
from mutomo.tasks import TASK_KINDS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

Positive = Annotated[float, Field(gt=0)]
Group = Literal["xy", "z", "size", "resolution", "efficiency"]
Pair = tuple[float, float]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TaskConfig(Strict):
    """What is asked of the volume (README: configuration reference)."""

    kind: str = Field(description=f"the question: one of {list(TASK_KINDS)}")
    inference: str = Field(
        description=f"how it is answered: a voxel method ({', '.join(VOXEL_METHODS)}) or a task's own "
        "statistic (regression: fill_statistic); each kind's allowed ones: `mutomo tasks`"
    )
    loss: Literal["calibrated_mse", "spread_over_range"] | None = Field(None, description="regression loss")
    exposure_s: float | None = Field(None, gt=0, le=1e7, description="exposure per test volume (s)")
    muons_per_volume: int | None = Field(None, ge=10, le=10_000_000, description="or muons per test volume")
    momentum: str = Field(
        "flux_mean",
        description="momentum the reconstruction uses: "
        + "; ".join(f"'{o.name}' {o.summary}" for o in MOMENTUM_OPTIONS.values()),
    )
    false_alarm: float = Field(0.01, gt=0, lt=1, description="presence: false-alarm rate of the metrics")
    goal: float = Field(0.95, gt=0, lt=1, description="presence: detection efficiency whose exposure is reported")
    reference: Literal["clean", "volume", "layer"] = Field(
        "clean",
        description="presence: what each voxel's score is compared with. 'clean' (default): its mean and spread "
        "over clean reference volumes (drawn without the target, seen by the same detector at the same exposure: "
        "an operator scanning known-clean cargo); it fits the background, so a dense background does not read "
        "as a target. In evaluation the references are the calibration volumes (evaluation.calibration_volumes), "
        "in training the batch's own volumes without the target, so training.volumes_per_epoch must be >= 6. "
        "'volume': robust z-scores against the median and spread of the volume's own voxels; 'layer': the same per "
        "horizontal layer (no reference volumes; for a uniform background)",
    )
    statistic: Literal["clean", "material", "learned", "likelihood"] = Field(
        "clean",
        description="presence with clean references: how the voxel maps become one number per volume. 'clean' "
        "(default): each voxel's z-score against its mean and spread over the references, then a smooth maximum; "
        "for a fixed background (the waste block). 'material': each voxel's standard deviations above the densest "
        "material the references' background holds (their median level and robust spread per voxel, the densest "
        "material's level from the references' known materials), then a smooth maximum; for cluttered cargo, "
        "whose references are never alike. 'learned': a per-voxel logistic classifier on each voxel's material score, "
        "its neighbours' and its noise, trained beside the detector during optimisation (co-training) and, for "
        "an evaluation, fitted afresh on each design's calibration volumes, which are then drawn half with the "
        "target (the classifier's training voxels) and half clean (the references); for clutter where the target "
        "spans or shadows several voxels. With 'material' or 'learned', training.volumes_per_epoch must be >= 8. "
        "'likelihood' (inference 'mlem' only, no reference volumes): each voxel's log-likelihood ratio of the "
        "target's material against the likeliest innocent material of the scene (every other material it holds), "
        "the other voxels at the ML/EM fit, then a smooth maximum; for clutter whose voxels' 1/X0 estimates "
        "spread too much to rank",
    )
    outlier_fraction: float = Field(
        0.0,
        ge=0,
        lt=0.5,
        description="inference 'mlem' only: the prior probability that a muon's deflection is not described by the "
        "Gaussian scattering model (a hard single scatter, a badly fitted track); each muon's likelihood gets a broad "
        "component of that weight, which takes such a muon instead of letting it drive the voxels on its path to "
        "absurd densities. 0 (default): none; 1e-3 in configs/border_portal_robust.toml",
    )
    range_cut: bool = Field(
        False,
        description="statistic 'likelihood' with momentum 'marginal' only: under each material a voxel's evidence "
        "tries, redo the momentum prior's range cut for the muons crossing the voxel (a muon that crossed 10 cm of "
        "uranium had more momentum than one that crossed the nominal goods), so a dense material also says that its "
        "muons were hard. false (default): every material keeps the nominal background's cut",
    )
    step_length: float = Field(0.05, gt=0, le=1.0, description="propagation step (m)")

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, v: str) -> str:
        if v not in TASK_KINDS:
            raise MutomoError(f"unknown task kind {v!r}; allowed {list(TASK_KINDS)}")
        return v

    @field_validator("momentum")
    @classmethod
    def _known_momentum(cls, v: str) -> str:
        if v not in MOMENTUM_OPTIONS:
            raise MutomoError(f"unknown momentum option {v!r}; allowed {list(MOMENTUM_OPTIONS)}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> TaskConfig:
        if (self.exposure_s is None) == (self.muons_per_volume is None):
            raise MutomoError("give exactly one of exposure_s and muons_per_volume")
        allowed = list(TASK_KINDS[self.kind].inferences)
        if self.inference not in allowed:
            raise MutomoError(f"inference {self.inference!r} does not fit a {self.kind} task; allowed: {allowed}")
        if self.loss is not None and self.kind != "regression":
            raise MutomoError("loss applies to regression tasks only")
        if self.statistic == "likelihood" and self.inference != "mlem":
            raise MutomoError(
                f"statistic 'likelihood' weighs each voxel's muons under ML/EM's model: it needs inference 'mlem', "
                f"not {self.inference!r}"
            )
        if self.outlier_fraction > 0 and (self.inference != "mlem" or self.kind != "presence"):
            raise MutomoError(
                f"outlier_fraction is a component of ML/EM's likelihood in a presence task: it needs kind 'presence' "
                f"and inference 'mlem', not {self.kind!r} with {self.inference!r}"
            )
        if self.range_cut and (self.statistic != "likelihood" or self.momentum != "marginal"):
            raise MutomoError(
                "range_cut redoes the momentum prior's range cut in each voxel's material evidence: it needs "
                f"statistic 'likelihood' and momentum 'marginal', not {self.statistic!r} with {self.momentum!r}"
            )
        refusal = MOMENTUM_OPTIONS[self.momentum].refusal(self.inference)
        if refusal is not None:
            raise MutomoError(refusal)
        return self


class PlaneConfig(Strict):
    z: float = Field(description="height of the generation plane (m)")
    x: Pair = Field(description="x extent (min, max) of the generation plane (m)")
    y: Pair = Field(description="y extent (min, max) of the generation plane (m)")


class MuonsConfig(Strict):
    theta_max_deg: float = Field(60.0, gt=0, le=85, description="largest zenith angle (deg)")
    momentum_range: Pair = Field((0.1, 1000.0), description="GeV/c")
    plane: Literal["scene"] | PlaneConfig = Field(
        "scene", description="'scene': just above the scene's top face; or an explicit plane"
    )

    @field_validator("momentum_range")
    @classmethod
    def _range(cls, v: Pair) -> Pair:
        if not 0 < v[0] < v[1]:
            raise MutomoError("needs 0 < min < max (GeV/c)")
        return v


class CostConfig(Strict):
    """The cost model: ``per_m2 * area * (reference_resolution / resolution) ** resolution_exponent
    * ln(1 - efficiency) / ln(1 - reference_efficiency) + per_panel`` per panel."""

    per_m2: float = Field(
        1000.0, gt=0, description="price of 1 m^2 of panel at the reference resolution and efficiency (any currency)"
    )
    reference_resolution: float = Field(
        1e-4, gt=0, le=0.1, description="m; a panel this fine costs per_m2 a square metre (finer costs more)"
    )
    reference_efficiency: float = Field(
        0.9, gt=0, lt=1, description="a panel this efficient costs per_m2 a square metre (higher costs more)"
    )
    resolution_exponent: float = Field(
        1.0, ge=0, le=4, description="how fast the price grows with finer resolution (0: resolution is free)"
    )
    per_panel: float = Field(0.0, ge=0, description="fixed cost of every panel (readout, mechanics)")


class RegionConfig(Strict):
    """Where panels may be and what they may be; default from the scene (see README)."""

    x: Pair | None = Field(
        None, description="(min, max) of panel centres in x (m); default the footprint +- half the scene"
    )
    y: Pair | None = Field(
        None, description="(min, max) of panel centres in y (m); default the footprint +- half the scene"
    )
    z_above: Pair | None = Field(
        None, description="(min, max) height of the panels above (m); default 2 cm to 1 m above the scene"
    )
    z_below: Pair | None = Field(
        None, description="(min, max) height of the panels below (m); default 1 m to 2 cm below the scene"
    )
    span: Pair = Field((0.05, 5.0), description="(min, max) panel width (m)")
    resolution: Pair = Field((1e-5, 1e-2), description="(min, max) panel resolution (m)")
    efficiency: Pair = Field((0.5, 0.999), description="(min, max) panel efficiency")
    keep_out: list[tuple[float, float, float, float, float, float]] = Field(
        [], description="boxes [x0, x1, y0, y1, z0, z1] (m) no hodoscope may enter, besides the scene (e.g. the road)"
    )

    @field_validator("keep_out")
    @classmethod
    def _boxes(cls, boxes: list[tuple[float, ...]]) -> list[tuple[float, ...]]:
        for i, b in enumerate(boxes):
            if not all(math.isfinite(v) for v in b) or not (b[1] > b[0] and b[3] > b[2] and b[5] > b[4]):
                raise MutomoError(f"keep_out[{i}] must be finite [x0, x1, y0, y1, z0, z1] with x1 > x0 etc.; got {b}")
        return boxes


class HodoscopeConfig(Strict):
    """The built module every design's ``modules`` places (issue 11): a box holding panels."""

    size: tuple[Positive, Positive, Positive] = Field(description="box (x, y, z), m")
    panel_heights: list[Annotated[float, Field(ge=0)]] = Field(min_length=1, description="m above the box's bottom")
    panel_span: Pair | None = Field(None, description="(x, y) span of the panels, m; default the box's footprint")
    resolution: float = Field(3e-4, gt=0, le=0.01, description="m")
    efficiency: float = Field(0.95, gt=0, le=1, description="every panel's hit efficiency")
    cost: float = Field(0.0, ge=0, description="price of one module")


class PanelConfig(Strict):
    side: Literal["above", "below"] = Field(description="whether the panel is above or below the scene")
    x: float = Field(description="panel centre x (m)")
    y: float = Field(description="panel centre y (m)")
    z: float = Field(description="panel height (m)")
    span: Positive = Field(description="square panel width (m)")
    resolution: float = Field(1e-4, gt=0, le=0.01, description="hit resolution (m)")
    efficiency: float = Field(0.9, gt=0, lt=1, description="probability that a crossing muon leaves a hit")


class DesignSpec(Strict):
    """A design: a JSON file, explicit panels, the compact form (shared or per-panel values), or
    hodoscope modules (``modules``: their centres; optionally with free panels in one of the
    other forms, but not a file)."""

    modules: list[tuple[float, float, float]] | None = Field(
        None, min_length=1, max_length=64, description="centres (m) of the [hodoscope] modules"
    )
    rotated: list[bool] | None = Field(None, description="per module: turned by 90 degrees about z")
    file: str | None = Field(None, description="a design JSON file (as written to a run directory)")
    panels: list[PanelConfig] | None = Field(None, description="explicit panels, at least 2 above and 2 below")
    xy: Pair | list[Pair] | None = Field(None, description="centre(s) (m): one for all panels or one per panel")
    z_above: list[float] | None = Field(None, description="compact form: heights (m) of the panels above, at least 2")
    z_below: list[float] | None = Field(None, description="compact form: heights (m) of the panels below, at least 2")
    span: Positive | list[Positive] = Field(1.0, description="compact form: panel width (m), one or one per panel")
    resolution: Annotated[float, Field(gt=0, le=0.01)] | list[Annotated[float, Field(gt=0, le=0.01)]] = Field(
        1e-4, description="compact form: hit resolution (m), one or one per panel (above first)"
    )
    efficiency: Annotated[float, Field(gt=0, lt=1)] | list[Annotated[float, Field(gt=0, lt=1)]] = Field(
        0.9, description="compact form: panel efficiency, one or one per panel (above first)"
    )

    @model_validator(mode="after")
    def _one_form(self) -> DesignSpec:
        compact = self.z_above is not None or self.z_below is not None
        forms = [name for name, used in (("file", self.file), ("panels", self.panels), ("compact", compact)) if used]
        if self.modules is not None:
            if self.file is not None or len(forms) > 1:
                raise MutomoError(f"modules go with at most one of panels or the compact form; got {forms}")
            if self.rotated is not None and len(self.rotated) != len(self.modules):
                raise MutomoError(f"rotated needs one value per module ({len(self.modules)}); got {len(self.rotated)}")
        elif self.rotated is not None:
            raise MutomoError("rotated applies to modules only")
        elif len(forms) != 1:
            raise MutomoError(f"give one of file, panels, xy + z_above + z_below, or modules; got {forms or 'none'}")
        if self.panels is not None:
            n_above = sum(p.side == "above" for p in self.panels)
            if n_above < 2 or len(self.panels) - n_above < 2:
                raise MutomoError("panels needs at least 2 panels above and 2 below")
        if compact:
            if self.xy is None or self.z_above is None or self.z_below is None:
                raise MutomoError("the compact form needs xy, z_above and z_below")
            if len(self.z_above) < 2 or len(self.z_below) < 2:
                raise MutomoError("z_above and z_below need at least 2 panels each")
            n = len(self.z_above) + len(self.z_below)
            for name in ("span", "resolution", "efficiency"):
                value = getattr(self, name)
                if isinstance(value, list) and len(value) != n:
                    raise MutomoError(f"{name} needs one value or {n} (one per panel, above first); got {len(value)}")
            if isinstance(self.xy, list) and len(self.xy) != n:
                raise MutomoError(f"xy needs one [x, y] or {n}; got {len(self.xy)}")
        return self


class DesignConfig(Strict):
    """What is trained: the starting design, which of its parameter groups move, and the budget."""

    start: str = Field(description="a design named under [designs], or a design JSON file")
    trainable: list[Group] = Field(
        ["xy", "z", "size"],
        description="parameter groups that training moves: xy (panel centres), z (heights), size (spans), "
        "resolution, efficiency; the others keep the start's values",
    )
    fixed_budget: bool = Field(
        True,
        description="true: every design costs exactly the budget (training trades area, resolution and efficiency "
        "within it, and the evaluation.compare designs are scaled to it: a like-for-like comparison); false: "
        "the cost is free, with a soft penalty above design.budget if one is given",
    )
    budget: float | None = Field(
        None,
        gt=0,
        description="total cost: with fixed_budget the design costs exactly this (default: the starting "
        "design's cost); without, the soft budget whose penalty training adds (default: no penalty)",
    )


class TrainingConfig(Strict):
    """How the design is trained: batches of drawn volumes, one gradient step an epoch."""

    epochs: int = Field(200, ge=1, le=100_000, description="gradient steps (one batch of volumes each)")
    volumes_per_epoch: int = Field(
        8,
        ge=4,
        le=1024,
        description="volumes of each epoch's batch: even (a task whose loss needs pairs sees each volume twice) and "
        ">= 4; a presence task with task.reference = 'clean' (the default) needs >= 6, for its clean references "
        "come from the batch's volumes without the target (refused before anything is simulated otherwise)",
    )
    muons_per_volume: int | None = Field(None, ge=10, le=10_000_000, description="default: the task's")
    exposure_s: float | None = Field(None, gt=0, le=1e7, description="or exposure per training volume (s)")
    validation_volumes: int = Field(
        16, ge=0, le=10_000, description="fixed volumes the design is validated on (0: none, and no best_validated)"
    )
    validate_every: int = Field(20, ge=1, description="epochs between validations")
    seed: int = Field(0, ge=0, description="seeds the training volumes and muons")
    warmup_epochs: int = Field(5, ge=0, description="epochs of linear learning-rate warm-up")
    final_lr_fraction: float = Field(
        0.1, gt=0, le=1, description="learning rates decay (cosine) to this fraction of their value"
    )
    smoothness: tuple[Positive, Positive] = Field(
        (0.05, 0.005),
        description="panel-edge width (m), annealed from the first to the second; the second is also the "
        "smooth evaluation's",
    )
    hits: Literal["sampled", "expected"] = Field(
        "sampled", description="train on Bernoulli-drawn hits (sampled) or on hit probabilities (expected)"
    )
    # Groups not listed keep TrainingSettings' defaults (0.02 m for xy and z, 0.05 for the others).
    learning_rates: dict[Group, Annotated[float, Field(ge=0, le=10)]] = Field(
        {},
        description="step per epoch of a parameter group, in its units (m for xy and z; e-folds for the "
        "others); default 0.02 for xy and z, 0.05 for the others",
    )
    optimisers: dict[Group, Literal["adam", "sgd", "rmsprop"]] = Field(
        {}, description="optimiser of a parameter group (default adam)"
    )
    systematics: list[str] = Field(
        [],
        description="robust training: each epoch draws one of the nominal world and these variations (names as in "
        "evaluation.systematics.variations, whose sizes they take; 'all': every one), so that the design cannot "
        "exploit one model (none by default)",
    )
    systematics_weighting: Literal["uniform", "normalised"] = Field(
        "uniform",
        description="robust training: how each world's loss enters the step. 'uniform' (default): as it is, so a "
        "world whose loss is ten times the others' (e.g. a large misalignment) steers the design; 'normalised': "
        "divided by a running mean of that world's own loss, so every world counts by its relative improvement",
    )

    @field_validator("systematics")
    @classmethod
    def _known_variations(cls, v: list[str]) -> list[str]:
        return _variations(v)

    @field_validator("volumes_per_epoch")
    @classmethod
    def _even(cls, v: int) -> int:
        if v % 2:
            raise MutomoError("must be even (volumes are drawn in pairs)")
        return v

    @model_validator(mode="after")
    def _one_count(self) -> TrainingConfig:
        if self.muons_per_volume is not None and self.exposure_s is not None:
            raise MutomoError("give at most one of muons_per_volume and exposure_s")
        return self


MinHits = Annotated[int, Field(ge=2, le=64)] | Literal["all"]  # a straight-line fit needs two hits a side


VARIATION_NAMES = (ALL, *VARIATIONS)
"""What ``evaluation.systematics.variations`` and ``training.systematics`` may name."""


def _variations(v: list[str]) -> list[str]:
    variation_names(v, "systematic variations")  # refuses an unknown or repeated name
    return v


class SystematicsConfig(Strict):
    """Systematic variations every design is also evaluated under (mutomo.optimise.systematics;
    docs: systematics), and how large each is."""

    variations: list[str] = Field(
        [],
        description="variations every design is evaluated under, on the same volumes and muons (none by default; "
        f"'all': every one): {'; '.join(f'{k.name}: {k.summary}' for k in VARIATIONS.values())}",
    )
    core_width: float = Field(0.04, gt=0, lt=1, description="relative change of the scattering core's width")
    index_shift: float = Field(0.1, gt=0, le=2, description="change of the momentum spectrum's spectral index")
    fixed_momentum: float = Field(5.0, gt=0, le=1000, description="momentum of every muon in fixed_momentum (GeV/c)")
    flux_model: str = Field(
        "Reyna06",
        description=f"the other flux model of flux_model: one of {list(OTHER_FLUX_MODELS)} (Reyna 2006, "
        "arXiv:hep-ph/0604145)",
    )
    resolution_factor: float = Field(
        1.2, gt=0, le=100, description="detector_worse: built resolution / the design's (1.2: 20 % worse)"
    )
    efficiency_factor: float = Field(
        0.8,
        gt=0,
        le=2,
        description="detector_worse: built efficiency / the design's (0.8: 20 % worse); a built efficiency "
        "above 1 (this x region.efficiency's maximum) is refused",
    )
    misalignment: float = Field(
        0.003, ge=0, le=0.1, description="misalignment: standard deviation of each panel's shift in x, y and z (m)"
    )
    misalignment_seed: int = Field(0, ge=0, description="misalignment: seeds the panels' shifts")
    exposure: float = Field(0.1, gt=0, lt=1, description="exposure_up/down: relative change of the muon rate")

    @field_validator("variations")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        return _variations(v)

    @field_validator("flux_model")
    @classmethod
    def _known_model(cls, v: str) -> str:
        if v not in OTHER_FLUX_MODELS:
            raise MutomoError(f"unknown flux model {v!r}; allowed {list(OTHER_FLUX_MODELS)}")
        return v


class EvaluationConfig(Strict):
    n_volumes: int = Field(96, ge=4, le=100_000, description="test volumes")
    calibration_volumes: int = Field(32, ge=2, le=100_000, description="calibration volumes (regression)")
    seed: int = Field(12345, ge=0, description="seeds the test volumes and muons (the same for every design)")
    compare: list[str] = Field([], description="designs named under [designs], or design JSON files")
    min_hits: list[MinHits] = Field([2], min_length=1, description="hits a side needs; the first is the headline")
    exposure_factors: list[Positive] = Field(
        [0.25, 0.5, 1.0, 2.0], description="presence: exposures (x the task's) for the exposure-to-goal metric"
    )
    bounds: list[Literal["ideal", "ideal_momentum"]] = Field(
        ["ideal", "ideal_momentum"],
        description="reference detectors evaluated beside the designs (mutomo.studies.bounds): 'ideal' covers "
        "the whole region at its best resolution and efficiency, cost ignored; 'ideal_momentum' is the same "
        "with each muon's momentum measured; each design's share of the possible gain is reported against "
        "'ideal' ([] : none)",
    )
    bound_momentum_resolution: float = Field(
        0.1,
        gt=0,
        le=1,
        description="relative momentum resolution (sigma_p / p) of the 'ideal_momentum' bound, e.g. 0.1 for a "
        "time-of-flight measurement to 10 %",
    )
    systematics: SystematicsConfig = Field(
        SystematicsConfig(),
        description="systematic variations every design is also evaluated under, and their sizes",
    )


class OutputConfig(Strict):
    directory: str = Field("runs/run", description="run directory (`mutomo optimise --output` overrides it)")
    x0_muons: int = Field(50_000, ge=0, le=10_000_000, description="muons for the X0 slice figure (0: none)")


SWEEP_METHODS = tuple(METHODS)
"""Gradient-free methods a sweep may run (:data:`mutomo.studies.baselines.METHODS`)."""


class SweepConfig(Strict):
    """``mutomo sweep``: independent trials on Ray (see :mod:`mutomo.sweep`)."""

    starts: int = Field(16, ge=1, le=10_000, description="gradient trials, one per start")
    seed: int = Field(0, ge=0, description="seeds the starts")
    jitter: float | None = Field(None, gt=0, le=100, description="m; starts around design.start (default uniform)")
    threshold: float = Field(0.05, gt=0, le=100, description="grouping distance (m)")
    tolerance_sigma: float = Field(2.0, ge=0, le=10, description="near-optimal within this many errors (0: off)")
    tolerance_fraction: float = Field(0.10, ge=0, lt=1, description="or within this fraction of the best (0: off)")
    budgets: list[Annotated[float, Field(gt=0, allow_inf_nan=False)]] = Field(
        [], description="budget front (free panels under a fixed budget)"
    )
    modules: list[Annotated[int, Field(ge=2, le=64, strict=True)]] = Field(
        [], description="module-count front: numbers of hodoscope modules (integers >= 2)"
    )
    front_starts: int = Field(4, ge=1, le=1000, description="trials per point (budget or module count) of the front")
    methods: list[str] = Field([], description=f"gradient-free trials: any of {list(SWEEP_METHODS)}")
    method_seeds: int = Field(3, ge=1, le=1000, description="trials per method, from starts 0, 1, ...")
    workers: int | None = Field(None, ge=1, le=4096, description="local Ray CPUs (default: all)")
    retries: int = Field(3, ge=0, le=100, description="reruns of a trial whose worker died")

    @field_validator("methods")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        unknown = [m for m in v if m not in SWEEP_METHODS]
        if unknown:
            raise MutomoError(
                f"unknown method(s) {unknown}; allowed {list(SWEEP_METHODS)} (the gradient trials are the starts)"
            )
        if len(set(v)) != len(v):
            raise MutomoError(f"a method is listed twice: {v}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> SweepConfig:
        if not self.tolerance_sigma and not self.tolerance_fraction:
            raise MutomoError("tolerance_sigma and tolerance_fraction cannot both be 0 (off)")
        if self.budgets and self.modules:
            raise MutomoError("give budgets (a budget front) or modules (a module-count front), not both")
        if self.methods and self.method_seeds > self.starts:
            raise MutomoError(
                f"method_seeds ({self.method_seeds}) must be <= starts ({self.starts}): method trial s starts where "
                "gradient trial s starts"
            )
        return self


class RunConfig(Strict):
    name: str = Field("run", description="a label for reports")
    description: str = Field("", description="a sentence for `mutomo tasks` and reports")
    task: TaskConfig = Field(description="the question asked of each volume and how it is answered")
    scene: SceneSpec = Field(description="the scanned volume: a box of voxels, its background and objects")
    materials: list[MaterialSpec] = Field([], description="user-defined materials, usable by name in the scene")
    muons: MuonsConfig = Field(MuonsConfig(), description="the cosmic muons generated")
    cost: CostConfig = Field(CostConfig(), description="the cost model of the panels")
    region: RegionConfig = Field(RegionConfig(), description="where panels may be and the bounds of their values")
    hodoscope: HodoscopeConfig | None = Field(None, description="the built module that `modules` designs place")
    designs: dict[str, DesignSpec] = Field({}, description="named designs: starts and comparisons")
    design: DesignConfig = Field(description="what is trained: the start, its free parameters, the budget")
    training: TrainingConfig = Field(TrainingConfig(), description="the optimisation loop")
    evaluation: EvaluationConfig = Field(EvaluationConfig(), description="the test volumes every design is judged on")
    output: OutputConfig = Field(OutputConfig(), description="where a run is written")
    sweep: SweepConfig = Field(SweepConfig(), description="`mutomo sweep`: trials on Ray")
    _inherited: dict[str, str] = PrivateAttr(default_factory=dict)
    """Designs inherited through ``extends`` (name -> the built-in or file they come from)."""

    @property
    def inherited_designs(self) -> dict[str, str]:
        """The named designs this configuration inherited through ``extends`` and did not
        redefine, with the built-in benchmark or file each comes from."""
        return dict(self._inherited)

    @model_validator(mode="after")
    def _cross_checks(self) -> RunConfig:
        if self.task.kind == "presence" and not self.scene.has_optional_target:
            raise MutomoError(
                "task: a presence task needs [[scene.objects]] of role 'target' present with probability "
                "strictly between 0 and 1 (volumes with and without the object)"
            )
        if self.task.kind == "regression" and not self.scene.has_fill_height:
            raise MutomoError(
                "task: a regression task needs a scene with a fill height (a layer with target = true, or a "
                "clutter background with fill_height)"
            )
        self._check_systematics()
        uses_modules = [name for name, d in self.designs.items() if d.modules is not None]
        if uses_modules and self.hodoscope is None:
            raise MutomoError(f"designs {uses_modules} place modules: describe the module in a [hodoscope] table")
        user = {m.name for m in self.materials}
        missing = [n for n in self.scene.material_names() if n not in user and not _builtin(n)]
        if missing:
            raise MutomoError(
                f"scene: unknown material(s) {missing}; define them under [[materials]] or use built-in ones "
                f"({', '.join(known_materials())})"
            )
        return self

    def _check_systematics(self) -> None:
        """A mis-specified efficiency above 1 is refused, naming the field."""
        s = self.evaluation.systematics
        named = [*variation_names(s.variations, "variations"), *variation_names(self.training.systematics, "")]
        uses = "detector_worse" in named
        efficiencies = [self.region.efficiency[1]]
        if self.hodoscope is not None:
            efficiencies.append(self.hodoscope.efficiency)
        worst = max(efficiencies)
        if uses and s.efficiency_factor * worst > 1:
            raise MutomoError(
                f"evaluation.systematics.efficiency_factor = {s.efficiency_factor} makes a panel of efficiency "
                f"{worst} (region.efficiency's maximum or the hodoscope's) {s.efficiency_factor * worst:.4g} > 1; "
                f"give at most {1 / worst:.4g}"
            )


def _builtin(name: str) -> bool:
    try:
        get_material(name)
    except KeyError:
        return False
    return True


def _format(error: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid configuration"]
    for e in error.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        given = e.get("input")
        given_text = "" if isinstance(given, dict) else f" (got {given!r})"
        lines.append(f"  {where}: {e['msg']}{given_text}")
    return "\n".join(lines)


BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"


def builtin_configs() -> dict[str, Path]:
    """The benchmark configurations the package ships, by name."""
    return {p.stem: p for p in sorted(BUILTIN_DIR.glob("*.toml"))}


REPLACED_WHOLE = ("background",)
"""Tables an extending configuration replaces instead of merging: a background is one material,
layers or clutter, so a new one must not inherit the old one's keys."""


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` on top of ``base``, table by table (arrays, values and the tables of
    :data:`REPLACED_WHOLE` are replaced)."""
    out = dict(base)
    for key, value in override.items():
        merge = isinstance(value, dict) and isinstance(out.get(key), dict) and key not in REPLACED_WHOLE
        out[key] = _merge(out[key], value) if merge else value
    return out


EXTENDS_DEPTH = 8
"""Longest chain of ``extends`` (a file extending a file extending ...) before it is refused."""


def _extended(
    data: dict[str, Any], source: str, base_dir: Path | None, seen: tuple[str, ...] = ()
) -> tuple[dict[str, Any], dict[str, str]]:
    """``data`` merged on top of what its ``extends`` names (recursively): a built-in benchmark
    (:func:`builtin_configs`) or a configuration file, relative to ``base_dir`` (the extending
    file's folder; the working directory for a configuration given as dictionaries); and the
    designs inherited (name -> where from)."""
    if "extends" not in data:
        return data, {}
    name = data["extends"]
    builtins = builtin_configs()
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{source}: extends must be a built-in benchmark {sorted(builtins)} or a configuration file")
    candidate = Path(name) if base_dir is None or Path(name).is_absolute() else base_dir / name
    if candidate.is_file():
        path = candidate.resolve()
    elif name in builtins:
        path = builtins[name]
    else:
        raise ConfigError(
            f"{source}: extends: {name!r} is neither a built-in benchmark {sorted(builtins)} nor a configuration "
            f"file ({candidate} does not exist)"
        )
    if str(path) in seen:
        raise ConfigError(f"{source}: extends: {path} extends itself (through {' -> '.join(seen)})")
    if len(seen) >= EXTENDS_DEPTH:
        raise ConfigError(f"{source}: extends: more than {EXTENDS_DEPTH} files deep ({' -> '.join(seen)})")
    base, inherited = _extended(_read(path), str(path), path.parent, (*seen, str(path)))
    own = data["designs"] if isinstance(data.get("designs"), dict) else {}
    base_designs = base["designs"] if isinstance(base.get("designs"), dict) else {}
    inherited = {n: inherited.get(n, name) for n in base_designs if n not in own}
    return _merge(base, {k: v for k, v in data.items() if k != "extends"}), inherited


def parse_config(data: dict[str, Any], source: str = "configuration", base_dir: Path | None = None) -> RunConfig:
    """Validate a configuration given as nested dictionaries.

    ``extends = "NAME"`` at the top level starts from the built-in benchmark NAME (see
    :func:`builtin_configs`) or from the configuration file NAME (a path, relative to
    ``base_dir``: the folder of the file being read), and overrides it table by table: tables
    merge key by key, values and arrays are replaced, and ``[designs]`` gains the new designs
    beside the inherited ones. A file may itself extend another."""
    if not data:
        raise ConfigError(
            f"{source}: the configuration is empty; it needs at least [task], [scene] and [design] "
            f"(or extends = one of {sorted(builtin_configs())} or a configuration file)"
        )
    data, inherited = _extended(data, source, base_dir)
    try:
        config = RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format(exc, source)) from None
    config._inherited = inherited
    return config


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not a text file (byte {exc.start} is not UTF-8); a configuration is a TOML or YAML text file"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        else:
            raise ConfigError(f"{path}: unknown configuration format {path.suffix!r}; use .toml, .yaml or .yml")
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not valid {path.suffix[1:].upper()}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a table of sections")
    return data


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a ``.toml``, ``.yaml`` or ``.yml`` file, or a built-in benchmark by name."""
    builtins = builtin_configs()
    if str(path) in builtins and not Path(path).exists():
        path = builtins[str(path)]
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such configuration file (built-in benchmarks: {', '.join(builtins)})")
    data = _read(path)
    config = parse_config(data, str(path), path.resolve().parent)
    return config
