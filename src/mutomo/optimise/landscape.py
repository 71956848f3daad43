"""The landscape of near-optimal designs, and the front of performance against budget.

:func:`run_landscape` trains K starts as one :class:`~mutomo.optimise.multistart.StackedDesign`
(one simulation per batch for all K), evaluates every finished design and the human designs on
the same test volumes and muons (:func:`observe_designs`: designs of one layout in one stacked
pass), groups the finished designs into distinct solutions
(:func:`~mutomo.optimise.multistart.group_designs`) and keeps every distinct design whose
metric is within the tolerance of the best: its paired difference to the best (same volumes
and muons) is within ``tolerance_sigma`` standard errors of that difference (when that band
is no wider than the best value itself: a comparison too noisy to tell the design from one
twice as bad as the best is not evidence), or within ``tolerance_fraction`` of the best value
(either suffices; ``None`` switches one off). A design whose metric is undefined (e.g. its
physical readout tracks no muon through the volume) is never near-optimal. For each
it records the cost, the cluster's size, and what sets it apart: the aligned panel parameter
(:func:`~mutomo.optimise.multistart.aligned_parameters`) differing most from the best design.

:func:`budget_front` trains ``front_starts`` starts at each of several fixed budgets (all
budgets and starts in one stacked pass: members keep their own budgets) and records the best
metric reached at each, with the human designs placed at their own costs.

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

from mutomo.errors import MutomoError
from mutomo.optimise.design import Design, DetectorDesign
from mutomo.optimise.evaluate import DesignObservations, EvaluationSettings, observe_design, paired, summarise
from mutomo.optimise.loop import TrainingSettings, optimise
from mutomo.optimise.multistart import StackedDesign, aligned_parameters, group_designs, jittered_starts, random_starts
from mutomo.optimise.problem import Problem
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
        budgets: budgets of the budget front (fixed-budget designs only); empty: no front.
        front_starts: starts per budget of the front.
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


Observer = Callable[[Sequence[Design]], list[DesignObservations]]
"""Observes designs on the test volumes (:func:`observe_designs` or a cache of it)."""


def observe_designs(
    designs: Sequence[Design], problem: Problem, settings: EvaluationSettings
) -> list[DesignObservations]:
    """Every design's observations on the test (and calibration) volumes: designs of one panel
    layout are observed in one stacked pass if the task allows (``task.design_batches``), on the
    same volumes and muons (each member's hits kept or lost by its own Bernoulli draws in the
    physical readouts; the smooth readout equals
    :func:`~mutomo.optimise.evaluate.observe_design`'s)."""
    by_layout: dict[tuple[int, int, bool], list[int]] = {}
    for i, d in enumerate(designs):
        det = d.detector()
        by_layout.setdefault((det.n_panels("above"), det.n_panels("below"), d.budget is None), []).append(i)
    result: list[DesignObservations | None] = [None] * len(designs)
    for indices in by_layout.values():
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


def landscape_starts(template: DetectorDesign, settings: LandscapeSettings) -> list[DetectorDesign]:
    """The ``settings.starts`` starting designs: drawn uniformly within the region, or around
    the template when ``settings.jitter`` is set (the same for a given seed)."""
    if settings.jitter is None:
        return random_starts(template, settings.starts, settings.seed)
    return jittered_starts(template, settings.starts, settings.seed, settings.jitter)


def front_starts(template: DetectorDesign, settings: LandscapeSettings) -> list[list[DetectorDesign]]:
    """The budget front's starting designs: ``settings.front_starts`` uniform starts for each
    of ``settings.budgets`` (each under its own fixed budget)."""
    if not settings.budgets:
        raise MutomoError("budgets: the budget front needs at least one budget")
    if template.budget is None:
        raise MutomoError("the budget front needs a fixed-budget design (design.fixed_budget = true)")
    return [
        random_starts(template, settings.front_starts, settings.seed + 1000 * (i + 1), budget=budget)
        for i, budget in enumerate(settings.budgets)
    ]


def run_landscape(
    problem: Problem,
    template: DetectorDesign,
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
    template: DetectorDesign,
    training: TrainingSettings,
    evaluation: EvaluationSettings,
    settings: LandscapeSettings,
    humans: dict[str, Design] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """The best metric reached at each of ``settings.budgets`` (``front_starts`` uniform starts
    per budget, all trained in one stacked pass), with the human designs at their own costs.

    Returns ``{"budgets": [{"budget", "metric" (the best start's [value, error]), "best_start",
    "starts": [[value, error], ...], "design"}], "envelope" (:func:`front_envelope` of the
    best values), "humans": {NAME: {"cost", "metric", "scaled": [{"budget", "cost", "metric"}]}},
    "muons", "seconds"}``: a human design of the configuration is also placed at every budget,
    its panels scaled to cost exactly that (keeping their relative costs)."""
    blocks = front_starts(template, settings)
    stacked = StackedDesign([d for block in blocks for d in block])
    t0 = time.perf_counter()
    optimise(stacked, problem, training, progress=progress)  # trains the members of ``blocks`` in place
    result = judge_front(problem, blocks, evaluation, settings, humans)
    result["muons"] = training.epochs * training.volumes_per_epoch * training.muons_per_volume
    result["seconds"] = time.perf_counter() - t0
    return result


def judge_front(
    problem: Problem,
    finished: Sequence[Sequence[Design]],
    evaluation: EvaluationSettings,
    settings: LandscapeSettings,
    humans: dict[str, Design] | None = None,
    observe: Observer | None = None,
) -> dict[str, Any]:
    """Evaluate the budget front's ``finished`` designs (one block per budget of
    ``settings.budgets``; a sweep's block may lack the trials that failed, and a budget with
    none has an undefined metric) with the human designs: :func:`budget_front`'s result but for
    ``muons`` and ``seconds``. ``observe`` as for :func:`judge_landscape`."""
    if len(finished) != len(settings.budgets):
        raise MutomoError(f"judge_front: {len(finished)} blocks of designs for {len(settings.budgets)} budgets")
    humans = humans or {}
    flat = [d for block in finished for d in block]
    first = np.cumsum([0, *(len(block) for block in finished)])
    # The human designs as given, and those of the configuration scaled to every budget.
    placed: list[tuple[str, float | None, Design]] = [(name, None, d) for name, d in humans.items()]
    for name in humans:
        if name in problem.designs:
            placed += [(name, b, problem.design(name, (), b, field="evaluation.compare")) for b in settings.budgets]
    observe = observe or (lambda designs: observe_designs(designs, problem, evaluation))
    obs = observe([*flat, *(d for _, _, d in placed)])
    metric, higher, values = _judge(problem, obs, settings)
    points: list[dict[str, Any]] = []
    for b, budget in enumerate(settings.budgets):
        block = values[first[b] : first[b + 1]]
        if not block:
            points.append({"budget": budget, "metric": [None, None], "best_start": None, "starts": [], "design": None})
            continue
        signed = [((-v[0] if higher else v[0]) if v[0] is not None else math.inf) for v in block]
        i = int(np.argmin(signed))
        points.append(
            {
                "budget": budget,
                "metric": block[i],
                "best_start": i,
                "starts": block,
                "design": finished[b][i].describe(),
            }
        )
    human_entries: dict[str, Any] = {}
    for h, (name, scaled_to, d) in enumerate(placed):
        entry = {"cost": float(d.cost().detach()), "metric": values[len(flat) + h]}
        if scaled_to is None:
            human_entries[name] = {**entry, "scaled": []}
        else:
            human_entries[name]["scaled"].append({"budget": scaled_to, **entry})
    best_values = [p["metric"][0] if p["metric"][0] is not None else math.nan for p in points]
    return {
        "metric": {"name": metric, "readout": settings.readout, "higher_is_better": higher},
        "budgets": points,
        "envelope": front_envelope(list(settings.budgets), best_values, higher),
        "humans": human_entries,
    }


def save_landscape(folder: Path, result: dict[str, Any]) -> list[Path]:
    """Write ``folder/landscape.json`` and, to start from or fine-tune, the design files
    ``folder/designs/best.json`` and ``designs/group_NN.json`` of every near-optimal distinct
    design (its best member; read by ``mutomo evaluate`` and by ``design.start``)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "landscape.json"]
    written[0].write_text(json.dumps(result, indent=1))
    designs = folder / "designs"
    designs.mkdir(exist_ok=True)
    picks = {"best": result["best"]}
    picks |= {f"group_{c['id']:02d}": c["representative"] for c in result["clusters"] if c["near_optimal"]}
    for name, index in picks.items():
        path = designs / f"{name}.json"
        path.write_text(json.dumps(result["starts"][index]["design"], indent=1))
        written.append(path)
    return written


def _pm(pair: list[float | None], sign: bool = False) -> str:
    """``value +- error`` of a JSON [value, error] pair (``n/a`` for an undefined value)."""
    v, e = pair
    if v is None:
        return "n/a"
    return f"{v:{'+' if sign else ''}.4g} +- {e:.2g}" if e is not None else f"{v:.4g}"


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
        lines.append(f"  budget {p['budget']:.6g}: best {m['name']} {_pm(p['metric'])}")
    return lines
