"""A sweep's finished trials gathered into one ``landscape.json``.

Every finished design is judged on the physical evaluation (the configuration's
``[evaluation]``: the same test volumes and muons for every design, as
:func:`~mutomo.studies.landscape.judge_landscape` does): the ``start`` trials make the
landscape (grouped, near-optimal designs, the human designs beside them), the ``front``
trials the budget front or the module-count front, and each gradient-free trial is compared paired with the gradient
trial from the same start on the same muons (``methods``). Failed trials are listed with
their errors under ``trials`` and left out of the judgement.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from mutomo.design.base import Design
from mutomo.design.describe import design_from_description
from mutomo.errors import MutomoError
from mutomo.optimise.evaluate import DesignObservations, EvaluationSettings, paired, summarise
from mutomo.optimise.problem import Problem
from mutomo.studies.landscape import judge_front, judge_landscape, observe_designs
from mutomo.sweep.plan import SweepPlan


class ObservedOnce:
    """Observes each design once (:func:`~mutomo.studies.landscape.observe_designs`, the designs
    not seen before in one pass) and answers again from memory, so that a design judged in the
    landscape and in the methods table has one set of numbers."""

    def __init__(self, problem: Problem, evaluation: EvaluationSettings) -> None:
        self.problem, self.evaluation = problem, evaluation
        self.seen: dict[int, tuple[Design, DesignObservations]] = {}

    def __call__(self, designs: Sequence[Design]) -> list[DesignObservations]:
        new = list({id(d): d for d in designs if id(d) not in self.seen}.values())
        if new:
            for d, o in zip(new, observe_designs(new, self.problem, self.evaluation), strict=True):
                self.seen[id(d)] = (d, o)  # the design is kept with its observations: its id stays its own
        return [self.seen[id(d)][1] for d in designs]


def _done(results: dict[str, dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for r in results.values() if r["status"] == "done" and r["trial"]["kind"] == kind]


def trials_summary(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per trial: ``status``, and ``error`` or ``seconds``, ``attempts`` and ``muons``."""
    keys = ("status", "error", "seconds", "attempts", "muons", "calls", "replayed")
    return {name: {k: r[k] for k in keys if k in r} for name, r in results.items()}


def methods_table(
    problem: Problem,
    results: dict[str, dict[str, Any]],
    observe: ObservedOnce,
    designs: dict[str, Design],
    readout: str,
    metric: str,
) -> dict[str, Any]:
    """Each gradient-free method's designs against the gradient trials from the same starts:
    ``{METHOD: {"seeds", "metric" [[value, error], ...], "minus_gradient" [[difference, error],
    ...] (paired on the same volumes and muons), "muons", "seconds"}, "gradient": {...}}``;
    ``designs``: every finished trial's design by trial name."""
    methods = _done(results, "method")
    starts = {r["trial"]["index"]: r for r in _done(results, "start")}
    methods = [r for r in methods if r["trial"]["index"] in starts]
    if not methods:
        return {}
    seeds = sorted({r["trial"]["index"] for r in methods})
    gradient = [starts[s] for s in seeds]
    obs = observe([designs[r["trial"]["name"]] for r in [*gradient, *methods]])
    by_seed = dict(zip(seeds, obs[: len(seeds)], strict=True))

    def entry(rs: list[dict[str, Any]], os_: list[Any], minus: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "seeds": [r["trial"]["index"] for r in rs],
            "metric": [summarise(problem, o)[readout][metric].as_list() for o in os_],
            "muons": [r["muons"] for r in rs],
            "seconds": [r["seconds"] for r in rs],
        }
        if minus:
            out["minus_gradient"] = [
                paired(problem, o, by_seed[r["trial"]["index"]])[readout][metric].as_list()
                for r, o in zip(rs, os_, strict=True)
            ]
        return out

    table = {"gradient": entry(gradient, obs[: len(seeds)], False)}
    rest = obs[len(seeds) :]
    for name in dict.fromkeys(r["trial"]["method"] for r in methods):
        picked = [(r, o) for r, o in zip(methods, rest, strict=True) if r["trial"]["method"] == name]
        table[name] = entry([r for r, _ in picked], [o for _, o in picked], True)
    return table


def gather(
    problem: Problem,
    plan: SweepPlan,
    results: dict[str, dict[str, Any]],
    evaluation: EvaluationSettings,
    humans: dict[str, Design],
    template: Design | None = None,
) -> dict[str, Any]:
    """``landscape.json`` of a sweep (see the module docstring): ``landscape``'s keys (with each
    start's ``trial``), ``front`` (with budgets or module counts; ``template``: the sweep's
    template design, which a module-count front's human points are tiled from), ``methods``
    (with methods), ``trials`` and ``muons`` (every trial's, summed)."""
    starts = sorted(_done(results, "start"), key=lambda r: r["trial"]["index"])
    if not starts:
        failed = {n: r.get("error") for n, r in results.items() if r["status"] != "done"}
        raise MutomoError(f"every start trial failed, nothing to judge: {failed}")
    designs = {
        name: design_from_description(r["design"], problem.cost_model)
        for name, r in results.items()
        if r["status"] == "done"
    }
    observe = ObservedOnce(problem, evaluation)
    out = judge_landscape(
        problem,
        [designs[r["trial"]["name"]] for r in starts],
        [r["start"] for r in starts],
        evaluation,
        plan.landscape,
        humans,
        observe,
    )
    for entry, r in zip(out["starts"], starts, strict=True):
        entry["trial"] = r["trial"]["name"]
    if plan.landscape.front_points:
        front = sorted(_done(results, "front"), key=lambda r: r["trial"]["index"])
        blocks = [
            [designs[r["trial"]["name"]] for r in front if r["trial"]["budget_index"] == b]
            for b in range(len(plan.landscape.front_points))
        ]
        out["front"] = judge_front(problem, blocks, evaluation, plan.landscape, humans, observe, template)
    metric = out["metric"]
    out["methods"] = methods_table(problem, results, observe, designs, metric["readout"], metric["name"])
    out["trials"] = trials_summary(results)
    out["muons"] = int(sum(r.get("muons", 0) for r in results.values()))
    return out


def methods_lines(table: dict[str, Any], metric: str) -> list[str]:
    """The methods table as text lines: mean over seeds, spread, and the mean paired difference
    to the gradient trials."""
    lines = []
    for name, e in table.items():
        values = np.array([v if v is not None else math.nan for v, _ in e["metric"]], dtype=float)
        defined = values[np.isfinite(values)]
        if defined.size == 0:
            lines.append(f"  {name:9s} {metric} undefined for all {values.size} seeds")
            continue
        spread = f"{defined.std(ddof=1):.2g}" if defined.size > 1 else "n/a"
        line = f"  {name:9s} {metric} {defined.mean():.4g} (spread {spread}; {defined.size}/{values.size} seeds)"
        if "minus_gradient" in e:
            d = [
                f"{v:+.3g} +- {er:.2g}" if v is not None and er is not None else "n/a" for v, er in e["minus_gradient"]
            ]
            line += f"; minus gradient per seed: {', '.join(d)}"
        lines.append(line)
    return lines
