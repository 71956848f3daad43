"""The landscape of near-optimal designs, and the front of performance against budget.

:func:`run_landscape` trains K starts as one :class:`~mutomo.design.stacked.StackedDesign`
(one simulation per batch for all K), evaluates every finished design and the human designs on
the same test volumes and muons (:func:`observe_designs`: designs of one layout in one stacked
pass), groups the finished designs into distinct solutions
(:func:`~mutomo.studies.grouping.group_designs`) and keeps every distinct design whose
metric is within the tolerance of the best: its paired difference to the best (same volumes
and muons) is within ``tolerance_sigma`` standard errors of that difference (when that band
is no wider than the best value itself: a comparison too noisy to tell the design from one
twice as bad as the best is not evidence), or within ``tolerance_fraction`` of the best value
(either suffices; ``None`` switches one off). A design whose metric is undefined (e.g. its
physical readout tracks no muon through the volume) is never near-optimal. For each
it records the cost, the cluster's size, and what sets it apart: the aligned panel parameter
(:func:`~mutomo.studies.grouping.aligned_parameters`) differing most from the best design.

:func:`budget_front` trains ``front_starts`` starts at each point of a front and records the
best metric reached at each, with the human designs placed at their own costs. A front is one
of two kinds (:func:`check_front`):

* a **budget front** (``budgets``; free panels under a fixed budget): the starts of each point
  are drawn under that budget, and the configuration's human designs are also scaled to it;
* a **module-count front** (``modules``; hodoscope designs, whose modules are bought as built):
  for each K, ``front_starts`` random starts of a K-module design (the same module in the same
  region, K modules tiled by :func:`~mutomo.design.hodoscopes.tiled_placement` before the
  draw), and the human point of each K is that tiled placement. A point's cost, the front's
  x axis, is the design's: K x the module's price (plus the free panels', if any).

All points and starts are trained in one stacked pass (members keep their own budgets) when
they share a layout, else point by point.

The result is ``landscape.json`` (see :func:`run_landscape`); the figures are drawn by
:mod:`mutomo.plotting.landscape`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mutomo.design.base import Design
from mutomo.design.hodoscopes import Box, HodoscopeDesign, tiled_placement
from mutomo.design.stacked import StackedDesign, copy_design
from mutomo.errors import MutomoError
from mutomo.optimise.evaluate import DesignObservations, EvaluationSettings, observe_design, paired, summarise
from mutomo.optimise.loop import TrainingSettings, optimise
from mutomo.optimise.metric_text import round_to_error
from mutomo.optimise.problem import Problem
from mutomo.studies.grouping import aligned_parameters, group_designs
from mutomo.studies.starts import jittered_starts, random_starts
from mutomo.tasks import Observations


@dataclass(frozen=True)
class LandscapeSettings:
    """How the landscape is drawn (see the module docstring).

    Attributes:
        starts: number of starts K (>= 1).
        seed: seeds the starts.
        jitter: ``None``: starts drawn uniformly within the region; else the standard deviation
            (m) of the starts around the template design (the first start is the template).
        threshold: grouping distance (m): designs of one group differ by at most this on every
            matched panel's (x, y, z, span).
        tolerance_sigma: near-optimal if the paired difference to the best is within this many
            of its standard errors (``None``: not used); in (0, 10].
        tolerance_fraction: near-optimal if within this fraction of the best value (``None``:
            not used); in (0, 1).
        readout: the readout judged (default the headline ``physical``).
        metric: the task metric judged (default the task's first).
        budgets: budgets of the budget front (fixed-budget designs of free panels only);
            empty: no budget front.
        modules: module counts K (integers >= 2) of the module-count front (hodoscope designs
            only); empty: no module-count front. At most one of ``budgets`` and ``modules``.
        front_starts: starts per point (budget or module count) of the front.
    """

    starts: int = 16
    seed: int = 0
    jitter: float | None = None
    threshold: float = 0.05
    tolerance_sigma: float | None = 2.0
    tolerance_fraction: float | None = 0.10
    readout: str = "physical"
    metric: str | None = None
    budgets: tuple[float, ...] = ()
    modules: tuple[int, ...] = ()
    front_starts: int = 4

    @classmethod
    def from_options(cls, options: Any) -> LandscapeSettings:
        """The settings of a command line's arguments or a configuration's ``[sweep]`` table: an
        object with the attributes of this class's fields but ``readout`` and ``metric``, where
        a tolerance of 0 switches it off (TOML has no null)."""
        return cls(
            starts=options.starts,
            seed=options.seed,
            jitter=options.jitter,
            threshold=options.threshold,
            tolerance_sigma=options.tolerance_sigma or None,
            tolerance_fraction=options.tolerance_fraction or None,
            budgets=tuple(options.budgets),
            modules=tuple(options.modules),
            front_starts=options.front_starts,
        )

    def __post_init__(self) -> None:
        for name in ("starts", "front_starts"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise MutomoError(f"{name} must be an integer >= 1; got {v!r}")
        if self.jitter is not None and not self.jitter > 0:
            raise MutomoError(f"jitter must be > 0 m (or None for uniform starts); got {self.jitter}")
        if not (self.threshold > 0 and math.isfinite(self.threshold)):
            raise MutomoError(f"threshold must be a finite distance > 0 m; got {self.threshold}")
        if self.tolerance_sigma is None and self.tolerance_fraction is None:
            raise MutomoError("tolerance_sigma and tolerance_fraction cannot both be None")
        if self.tolerance_sigma is not None and not 0 < self.tolerance_sigma <= 10:
            raise MutomoError(f"tolerance_sigma must be in (0, 10] standard errors; got {self.tolerance_sigma}")
        if self.tolerance_fraction is not None and not 0 < self.tolerance_fraction < 1:
            raise MutomoError(f"tolerance_fraction must be in (0, 1); got {self.tolerance_fraction}")
        bad = [b for b in self.budgets if not (b > 0 and math.isfinite(b))]
        if bad:
            raise MutomoError(f"budgets must be finite and > 0; got {bad}")
        bad_k = [k for k in self.modules if isinstance(k, bool) or not isinstance(k, int) or k < 2]
        if bad_k:
            raise MutomoError(f"modules must be integers >= 2 (a module above and one below); got {bad_k}")
        if self.budgets and self.modules:
            raise MutomoError("budgets and modules: give one front, a budget front or a module-count front, not both")

    @property
    def front_points(self) -> tuple[float, ...] | tuple[int, ...]:
        """The front's points: its budgets or its module counts (empty: no front)."""
        return self.modules or self.budgets


Observer = Callable[[Sequence[Design]], list[DesignObservations]]
"""Observes designs on the test volumes (:func:`observe_designs` or a cache of it)."""


def stackable_groups(designs: Sequence[Design]) -> list[list[int]]:
    """Indices of ``designs`` grouped as :class:`StackedDesign` can hold them: one panel layout
    (numbers of panels above and below) and all with a fixed budget or all without."""
    by_layout: dict[tuple[int, int, bool], list[int]] = {}
    for i, d in enumerate(designs):
        det = d.detector()
        by_layout.setdefault((det.n_panels("above"), det.n_panels("below"), d.budget is None), []).append(i)
    return list(by_layout.values())


def observe_designs(
    designs: Sequence[Design], problem: Problem, settings: EvaluationSettings
) -> list[DesignObservations]:
    """Every design's observations on the test (and calibration) volumes: designs of one panel
    layout are observed in one stacked pass if the task allows (``task.design_batches``), on the
    same volumes and muons (each member's hits kept or lost by its own Bernoulli draws in the
    physical readouts; the smooth readout equals
    :func:`~mutomo.optimise.evaluate.observe_design`'s)."""
    result: list[DesignObservations | None] = [None] * len(designs)
    for indices in stackable_groups(designs):
        if len(indices) == 1 or not problem.task.design_batches:  # one design at a time
            for i in indices:
                result[i] = observe_design(designs[i], problem, settings)
            continue
        stacked = StackedDesign([designs[i] for i in indices])
        obs = observe_design(stacked, problem, settings)
        for k, i in enumerate(indices):
            result[i] = DesignObservations(_member(obs.test, k), _member(obs.calibration, k))
    return [r for r in result if r is not None]


def _member(observations: dict[str, Observations], k: int) -> dict[str, Observations]:
    return {
        name: Observations(o.outputs[:, k], o.truths, {s: v[:, k] for s, v in o.ladder.items()})
        for name, o in observations.items()
    }


def _metric_name(problem: Problem, settings: LandscapeSettings) -> str:
    names = list(problem.task.higher_is_better)
    if settings.metric is None:
        return names[0]
    if settings.metric not in names:
        raise MutomoError(f"metric: unknown {settings.metric!r} for a {problem.task.kind} task; allowed {names}")
    return settings.metric


def _judge(
    problem: Problem, obs: list[DesignObservations], settings: LandscapeSettings
) -> tuple[str, bool, list[list[float | None]]]:
    metric = _metric_name(problem, settings)
    values = []
    for o in obs:
        if settings.readout not in o.test:
            raise MutomoError(f"readout: {settings.readout!r} was not evaluated; evaluated {sorted(o.test)}")
        values.append(summarise(problem, o)[settings.readout][metric].as_list())
    return metric, problem.task.higher_is_better[metric], values


def _worse_by(
    problem: Problem, a: DesignObservations, best: DesignObservations, readout: str, metric: str, higher: bool
) -> tuple[float, float]:
    """How much worse ``a`` is than ``best`` (>= 0 when worse), paired, with its error."""
    m = paired(problem, a, best)[readout][metric]
    return (-m.value if higher else m.value), m.error


def near_optimal(worse: float, error: float, best: float, settings: LandscapeSettings) -> bool:
    """Whether a design ``worse`` than the best (paired difference, error ``error``) is within
    the tolerance (see the module docstring).

    Example:
        >>> s = LandscapeSettings(tolerance_sigma=2.0, tolerance_fraction=0.1)
        >>> near_optimal(0.05, 0.03, 1.0, s), near_optimal(0.3, 0.1, 1.0, s)
        (True, False)
    """
    if not math.isfinite(worse):
        return False
    if worse <= 0:
        return True
    band = None if settings.tolerance_sigma is None or not math.isfinite(error) else settings.tolerance_sigma * error
    # A comparison too noisy to tell the design from one twice as bad as the best is no evidence.
    by_sigma = band is not None and band <= abs(best) and worse <= band
    by_fraction = settings.tolerance_fraction is not None and worse <= settings.tolerance_fraction * abs(best)
    return bool(by_sigma or by_fraction)


def landscape_starts(template: Design, settings: LandscapeSettings) -> list[Design]:
    """The ``settings.starts`` starting designs: drawn uniformly within the region, or around
    the template when ``settings.jitter`` is set (the same for a given seed)."""
    if settings.jitter is None:
        return random_starts(template, settings.starts, settings.seed)
    return jittered_starts(template, settings.starts, settings.seed, settings.jitter)


def check_front(template: Design, settings: LandscapeSettings) -> None:
    """Refuse a front that ``template`` cannot have (see the module docstring), naming the
    setting: ``budgets`` needs free panels under a fixed budget, ``modules`` a hodoscope design
    whose module has a price."""
    if settings.budgets:
        if isinstance(template, HodoscopeDesign):
            raise MutomoError(
                "budgets: a budget front scales panels to each budget, but hodoscope modules are bought as built; "
                "give modules = [K, ...] (a module-count front) instead"
            )
        if template.budget is None:
            raise MutomoError("budgets: a budget front needs a fixed-budget design (design.fixed_budget = true)")
    if settings.modules:
        if not isinstance(template, HodoscopeDesign):
            raise MutomoError(
                "modules: a module-count front needs a design of hodoscope modules (design.start placing modules); "
                "for free panels give budgets = [...] (a budget front)"
            )
        if not template.module.cost > 0:
            raise MutomoError(
                "modules: a module-count front places each K at its cost, K x the module's price: give the module a "
                "price (hodoscope.cost > 0)"
            )


def tiled_like(template: HodoscopeDesign, scene_box: Box, k: int, trainable: tuple[str, ...] = ()) -> HodoscopeDesign:
    """``k`` modules of ``template`` in its region (its keep-out boxes, cost model, smoothness
    and a copy of its free panels, if any), tiled around the scene
    (:func:`~mutomo.design.hodoscopes.tiled_placement`), with ``trainable`` groups."""
    free = None if template.free is None else copy_design(template.free, template.free.budget)
    design = tiled_placement(
        template.bounds,
        scene_box,
        template.module,
        k,
        keep_out=template.keep_out,
        free=free,
        cost_model=template.cost_model,
        trainable=trainable,
        smoothness=template.smoothness,
    )
    return design.to(template.module_z.dtype)


def front_starts(template: Design, settings: LandscapeSettings, scene_box: Box | None = None) -> list[list[Design]]:
    """The front's starting designs: ``settings.front_starts`` uniform starts for each of
    ``settings.budgets`` (each under its own fixed budget), or for each of ``settings.modules``
    (a K-module design tiled around ``scene_box``, the scene's ``(x0, x1, y0, y1, z0, z1)`` (m),
    then drawn; see the module docstring)."""
    if not settings.front_points:
        raise MutomoError("budgets, modules: a front needs at least one budget or module count")
    check_front(template, settings)
    seeds = [settings.seed + 1000 * (i + 1) for i in range(len(settings.front_points))]
    if settings.modules:
        if scene_box is None:
            raise MutomoError("modules: a module-count front needs the scene's box to tile the modules around")
        assert isinstance(template, HodoscopeDesign)
        return [
            random_starts(tiled_like(template, scene_box, k, template.trainable), settings.front_starts, seed)
            for k, seed in zip(settings.modules, seeds, strict=True)
        ]
    return [
        random_starts(template, settings.front_starts, seed, budget=budget)
        for budget, seed in zip(settings.budgets, seeds, strict=True)
    ]


def run_landscape(
    problem: Problem,
    template: Design,
    training: TrainingSettings,
    evaluation: EvaluationSettings,
    settings: LandscapeSettings,
    humans: dict[str, Design] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``settings.starts`` starts in one pass, evaluate, group and judge them.

    Returns the content of ``landscape.json``: ``settings``, ``training`` and ``evaluation``
    (the settings used), ``metric`` (``name``, ``readout``, ``higher_is_better``), ``starts``
    (per start: ``design``, ``metric`` [value, error], ``worse_than_best`` [paired difference,
    error], ``cost``, ``cluster``), ``clusters`` (per distinct design: ``size``, ``members``,
    ``representative`` (its best member), ``metric``, ``worse_than_best``, ``cost``,
    ``near_optimal``, ``sets_apart``), ``near_optimal`` (their number, cost range and the
    parameter of largest spread among them), ``humans`` (each with ``metric``, ``cost`` and
    ``worse_than_best``), ``muons`` (simulated in training, shared by the K starts) and
    ``seconds``.
    """
    starts = landscape_starts(template, settings)
    initial = [d.describe() for d in starts]
    stacked = StackedDesign(starts)
    t0 = time.perf_counter()
    history = optimise(stacked, problem, training, progress=progress)
    train_s = time.perf_counter() - t0
    result = judge_landscape(problem, list(stacked), initial, evaluation, settings, humans)
    result["training"] = {**asdict(training), "final_loss": history.records[-1].loss if history.records else None}
    result["muons"] = training.epochs * training.volumes_per_epoch * training.muons_per_volume
    result["seconds"]["training"] = train_s
    return result


def judge_landscape(
    problem: Problem,
    finished: Sequence[Design],
    initial: Sequence[dict[str, Any]],
    evaluation: EvaluationSettings,
    settings: LandscapeSettings,
    humans: dict[str, Design] | None = None,
    observe: Observer | None = None,
) -> dict[str, Any]:
    """Evaluate ``finished`` designs (trained from the ``initial`` descriptions) and the human
    designs on the same test volumes and muons, group and judge them: the content of
    ``landscape.json`` but for ``training`` and ``muons`` (see :func:`run_landscape`; a sweep
    trains the starts as separate trials, :mod:`mutomo.sweep`). ``observe``: how designs are
    observed (default :func:`observe_designs` with ``evaluation``)."""
    if not finished or len(finished) != len(initial):
        raise MutomoError(f"judge_landscape: {len(finished)} finished designs for {len(initial)} starts")
    humans = humans or {}
    observe = observe or (lambda designs: observe_designs(designs, problem, evaluation))
    t0 = time.perf_counter()
    obs = observe([*finished, *humans.values()])
    eval_s = time.perf_counter() - t0
    metric, higher, values = _judge(problem, obs, settings)
    k = len(finished)
    scores = [(v[0] if v[0] is not None else math.nan) for v in values[:k]]
    signed = [-s if higher else s for s in scores]
    if not any(math.isfinite(v) for v in signed):
        raise MutomoError(
            f"no finished design has a defined {metric} on the {settings.readout} readout of the "
            f"{evaluation.n_volumes} test volumes (too few reconstructed muons): evaluate on more volumes "
            "(evaluation.n_volumes, --eval-volumes) or train longer"
        )
    best = int(np.nanargmin(signed))
    worse = [_worse_by(problem, o, obs[best], settings.readout, metric, higher) for o in obs]
    labels = group_designs(finished, settings.threshold)
    described = [d.describe() for d in finished]
    costs = [float(d["cost"]) for d in described]
    names, params = aligned_parameters(described, described[best])
    entries = [
        {
            "design": described[i],
            "start": initial[i],
            "metric": values[i],
            "worse_than_best": list(worse[i]),
            "cost": costs[i],
            "cluster": int(labels[i]),
        }
        for i in range(k)
    ]
    clusters: list[dict[str, Any]] = []
    for c in range(int(labels.max()) + 1):
        members = [i for i in range(k) if labels[i] == c]
        rep = min(members, key=lambda i: signed[i] if math.isfinite(signed[i]) else math.inf)
        diff = np.abs(params[rep] - params[best])
        j = int(np.argmax(diff))
        clusters.append(
            {
                "id": c,
                "size": len(members),
                "members": members,
                "representative": rep,
                "metric": values[rep],
                "worse_than_best": list(worse[rep]),
                "cost": costs[rep],
                "near_optimal": near_optimal(*worse[rep], scores[best], settings),
                "sets_apart": {
                    "parameter": names[j],
                    "value": float(params[rep, j]),
                    "best": float(params[best, j]),
                    "difference_m": float(diff[j]),
                },
            }
        )
    near = [c for c in clusters if c["near_optimal"]]
    spread = params[[int(c["representative"]) for c in near]]
    j = int(np.argmax(spread.max(0) - spread.min(0)))
    summary = {
        "count": len(near),
        "clusters": [c["id"] for c in near],
        "cost_range": [min(float(c["cost"]) for c in near), max(float(c["cost"]) for c in near)],
        "largest_spread": {"parameter": names[j], "range_m": float(spread[:, j].max() - spread[:, j].min())},
    }
    human_entries = {
        name: {
            "metric": values[k + h],
            "cost": float(d.cost().detach()),
            "worse_than_best": list(worse[k + h]),
            "design": d.describe(),
        }
        for h, (name, d) in enumerate(humans.items())
    }
    return {
        "problem": problem.name,
        "metric": {"name": metric, "readout": settings.readout, "higher_is_better": higher},
        "settings": asdict(settings),
        "evaluation": asdict(evaluation),
        "best": best,
        "starts": entries,
        "clusters": clusters,
        "near_optimal": summary,
        "humans": human_entries,
        "seconds": {"evaluation": eval_s},
    }


def front_envelope(budgets: Sequence[float], values: Sequence[float], higher_is_better: bool = False) -> list[float]:
    """The best value reached at each budget by any design costing no more: monotone in the
    budget by construction (a larger budget can always buy the cheaper design). ``nan`` values
    are skipped.

    Example:
        >>> front_envelope([1, 2, 3], [0.5, 0.7, 0.2])
        [0.5, 0.5, 0.2]
    """
    if len(budgets) != len(values):
        raise MutomoError(f"budgets and values must have one length; got {len(budgets)} and {len(values)}")
    order = np.argsort(np.asarray(budgets, dtype=float), kind="stable")
    out = [math.nan] * len(values)
    best = math.nan
    for i in order:
        v = float(values[i])
        if math.isfinite(v) and (not math.isfinite(best) or (v > best if higher_is_better else v < best)):
            best = v
        out[int(i)] = best
    return out


def budget_front(
    problem: Problem,
    template: Design,
    training: TrainingSettings,
    evaluation: EvaluationSettings,
    settings: LandscapeSettings,
    humans: dict[str, Design] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """The best metric reached at each point of the front, ``settings.budgets`` or
    ``settings.modules`` (``front_starts`` uniform starts per point, trained in one stacked
    pass per panel layout), with the human designs at their own costs and at every point.

    Returns ``{"axis": "budget" or "modules", "budgets": [{"budget" (the point's cost),
    "modules" (module-count fronts), "metric" (the best start's [value, error]), "best_start",
    "starts": [[value, error], ...], "design"}], "envelope" (:func:`front_envelope` of the
    best values), "humans": {NAME: {"cost", "metric", "scaled": [{"budget", "cost", "metric"}]}},
    "muons", "seconds"}``: a human design of the configuration is also placed at every budget,
    its panels scaled to cost exactly that (keeping their relative costs); on a module-count
    front the entry :data:`TILED` holds the tiled placement of every K (``scaled`` only)."""
    blocks = front_starts(template, settings, problem.scene.box)
    stacks = _stacks([d for block in blocks for d in block])
    t0 = time.perf_counter()
    for stack in stacks:
        optimise(stack, problem, training, progress=progress)  # trains the members of ``blocks`` in place
    result = judge_front(problem, blocks, evaluation, settings, humans, template=template)
    result["muons"] = training.epochs * training.volumes_per_epoch * training.muons_per_volume * len(stacks)
    result["seconds"] = time.perf_counter() - t0
    return result


def _stacks(designs: Sequence[Design]) -> list[StackedDesign]:
    """The designs stacked by panel layout (:func:`stackable_groups`)."""
    return [StackedDesign([designs[i] for i in indices]) for indices in stackable_groups(designs)]


TILED = "tiled placement"
"""The human designs of a module-count front: :func:`~mutomo.design.hodoscopes.tiled_placement`."""


def _front_placed(
    problem: Problem, settings: LandscapeSettings, humans: dict[str, Design], template: Design | None
) -> tuple[list[float], list[tuple[str, int, Design]]]:
    """Each point's cost (the front's x axis), and the human designs placed at the points
    (name, point, design): the configuration's designs scaled to every budget, or the tiled
    placement of every module count."""
    if settings.modules:
        if not isinstance(template, HodoscopeDesign):
            raise MutomoError("modules: a module-count front is judged against its hodoscope template; none given")
        tiled = [tiled_like(template, problem.scene.box, k) for k in settings.modules]
        return [float(d.cost().detach()) for d in tiled], [(TILED, i, d) for i, d in enumerate(tiled)]
    scaled = [
        (name, i, problem.design(name, (), b, what="evaluation.compare"))
        for name in humans
        if name in problem.designs
        for i, b in enumerate(settings.budgets)
    ]
    return list(settings.budgets), scaled


def judge_front(
    problem: Problem,
    finished: Sequence[Sequence[Design]],
    evaluation: EvaluationSettings,
    settings: LandscapeSettings,
    humans: dict[str, Design] | None = None,
    observe: Observer | None = None,
    template: Design | None = None,
) -> dict[str, Any]:
    """Evaluate the front's ``finished`` designs (one block per point of
    ``settings.budgets`` or ``settings.modules``; a sweep's block may lack the trials that
    failed, and a point with none has an undefined metric) with the human designs:
    :func:`budget_front`'s result but for ``muons`` and ``seconds``. ``observe`` as for
    :func:`judge_landscape`; ``template``: the hodoscope design of a module-count front."""
    points = settings.front_points
    if len(finished) != len(points):
        raise MutomoError(f"judge_front: {len(finished)} blocks of designs for {len(points)} front points")
    humans = humans or {}
    flat = [d for block in finished for d in block]
    first = np.cumsum([0, *(len(block) for block in finished)])
    costs, placed = _front_placed(problem, settings, humans, template)
    observe = observe or (lambda designs: observe_designs(designs, problem, evaluation))
    obs = observe([*flat, *humans.values(), *(d for _, _, d in placed)])
    metric, higher, values = _judge(problem, obs, settings)

    def at(i: int) -> dict[str, Any]:
        return {"budget": costs[i], **({"modules": settings.modules[i]} if settings.modules else {})}

    entries: list[dict[str, Any]] = []
    for b in range(len(points)):
        block = values[first[b] : first[b + 1]]
        if not block:
            entries.append({**at(b), "metric": [None, None], "best_start": None, "starts": [], "design": None})
            continue
        signed = [((-v[0] if higher else v[0]) if v[0] is not None else math.inf) for v in block]
        i = int(np.argmin(signed))
        entries.append(
            {**at(b), "metric": block[i], "best_start": i, "starts": block, "design": finished[b][i].describe()}
        )
    given = values[len(flat) : len(flat) + len(humans)]
    human_entries: dict[str, Any] = {
        name: {"cost": float(d.cost().detach()), "metric": v, "scaled": []}
        for (name, d), v in zip(humans.items(), given, strict=True)
    }
    for (name, i, d), v in zip(placed, values[len(flat) + len(humans) :], strict=True):
        human_entries.setdefault(name, {"scaled": []})["scaled"].append(
            {**at(i), "cost": float(d.cost().detach()), "metric": v}
        )
    best_values = [p["metric"][0] if p["metric"][0] is not None else math.nan for p in entries]
    return {
        "metric": {"name": metric, "readout": settings.readout, "higher_is_better": higher},
        "axis": "modules" if settings.modules else "budget",
        "budgets": entries,
        "envelope": front_envelope(costs, best_values, higher),
        "humans": human_entries,
    }


def save_landscape(folder: Path, result: dict[str, Any]) -> list[Path]:
    """Write ``folder/landscape.json`` and, to start from or fine-tune, the design files
    ``folder/designs/best.json`` and ``designs/group_NN.json`` of every near-optimal distinct
    design (its best member; read by ``mutomo evaluate`` and by ``design.start``), with the
    problem they were made for when ``result`` holds it (``made_for``, see
    :meth:`mutomo.optimise.Problem.made_for`)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "landscape.json"]
    written[0].write_text(json.dumps(result, indent=1))
    designs = folder / "designs"
    designs.mkdir(exist_ok=True)
    picks = {"best": result["best"]}
    picks |= {f"group_{c['id']:02d}": c["representative"] for c in result["clusters"] if c["near_optimal"]}
    for name, index in picks.items():
        path = designs / f"{name}.json"
        made_for = {"made_for": result["made_for"]} if "made_for" in result else {}
        path.write_text(json.dumps({**result["starts"][index]["design"], **made_for}, indent=1))
        written.append(path)
    return written


def _pm(pair: list[float | None], sign: bool = False) -> str:
    """``value +- error`` of a JSON [value, error] pair (``n/a`` for an undefined value)."""
    v, e = pair
    if v is None:
        return "n/a"
    text = round_to_error(v, e, "+-")
    return f"+{text}" if sign and v >= 0 else text


def landscape_lines(result: dict[str, Any]) -> list[str]:
    """A landscape (``landscape.json``'s content) as lines of text for a terminal."""
    m = result["metric"]
    near = result["near_optimal"]
    lines = [
        f"{len(result['starts'])} starts -> {len(result['clusters'])} distinct designs, {near['count']} near-optimal "
        f"({m['name']}, {m['readout']} readout); their cost {near['cost_range'][0]:.6g}-{near['cost_range'][1]:.6g}; "
        f"largest spread among them: {near['largest_spread']['parameter']} "
        f"({near['largest_spread']['range_m']:.3g} m)"
    ]
    for c in result["clusters"]:
        apart = c["sets_apart"]
        lines.append(
            f"  group {c['id']:2d} x{c['size']:<2d} {m['name']} {_pm(c['metric'])}"
            f"  worse than best {_pm(c['worse_than_best'], True)}"
            f"  cost {c['cost']:.6g}  {'near-optimal' if c['near_optimal'] else ''}"
            f"  differs most in {apart['parameter']} ({apart['value']:.3g} vs {apart['best']:.3g})"
        )
    for name, h in result["humans"].items():
        lines.append(
            f"  {name:18s} {m['name']} {_pm(h['metric'])}  worse than best {_pm(h['worse_than_best'], True)}"
            f"  cost {h['cost']:.6g}"
        )
    for p in result.get("front", {}).get("budgets", []):
        where = f"{p['modules']} modules (cost {p['budget']:.6g})" if "modules" in p else f"budget {p['budget']:.6g}"
        lines.append(f"  {where}: best {m['name']} {_pm(p['metric'])}")
    return lines
