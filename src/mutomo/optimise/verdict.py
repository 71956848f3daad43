"""Whether a run's question could be answered at all (issue 26): when every design's headline
metric is at chance, the command line and the report say so plainly and what would help. And,
for presence, whether the statistic rather than the detector is the limit (issue 25): when a
design's map puts the target first in most target volumes while its AUC stays well below that
(:func:`statistic_lines`).

At chance means, on the headline physical readout (the first trigger of ``evaluation.min_hits``):

* presence: the AUC within :data:`SIGMAS` errors of 0.5 (a coin toss);
* regression: the MSE within :data:`SIGMAS` errors of the no-information answer (the variance of
  the truth over the test volumes: the MSE of always answering their mean), which
  :func:`no_information` records in ``evaluations.json`` (``task.no_information``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mutomo.optimise.evaluate import REFERENCE_DESIGNS, DesignObservations
from mutomo.optimise.metric_text import metric_label, round_to_error

SIGMAS = 2.0
"""How many errors from the chance value still count as chance."""
HEADLINE = "physical"
"""The name the headline readout has unless the first trigger of ``evaluation.min_hits`` is not
2 hits a side (then ``physical_minK`` or ``physical_all``: the first physical readout)."""


def headline(readouts: list[str]) -> str:
    """The headline readout among ``readouts`` (``evaluations.json``'s order): the first physical one."""
    return next((r for r in readouts if r.startswith("physical")), HEADLINE)


def advice(task: dict[str, Any]) -> str:
    """What would help a task at chance (``task``: the ``task`` record of ``evaluations.json``),
    leaving out what it already does."""
    kind = task.get("kind")
    if kind == "regression":
        return (
            "a longer exposure (task.muons_per_volume or task.exposure_s: the error falls as 1/sqrt(muons)); "
            "designs whose panels cover the scene (mutomo check warns of those that do not); more calibration "
            "volumes (evaluation.calibration_volumes)"
        )
    tips = [
        "a longer exposure (task.exposure_s: four times the exposure halves the scores' noise; the "
        "exposure-to-goal metric says how far the goal is)"
    ]
    if task.get("reference") not in (None, "clean"):
        tips.append(
            'voxel scores against clean reference volumes (task.reference = "clean": a method that fits the background)'
        )
    inference, momentum = task.get("inference"), task.get("momentum")
    if inference not in ("asr", "mlem"):
        tips.append(
            'a method that finds dense objects without true momenta (task.inference = "asr", or "mlem" with '
            'task.momentum = "marginal": AUC 0.97-0.98 where PoCA gives 0.84 on the waste block, the methods table '
            "of the README)"
        )
    elif inference == "mlem" and momentum != "marginal":
        tips.append('task.momentum = "marginal" (ML/EM marginalising each muon\'s unknown momentum)')
    tips.append("larger voxels (scene.voxel: more muons per voxel)")
    return "; ".join(tips)


ADVICE_KINDS = ("presence", "regression")
"""Task kinds with a chance value (imaging has none)."""


def no_information(kind: str, observations: DesignObservations) -> dict[str, list[float]]:
    """The no-information answer's metrics (regression: ``{"mse": [variance of the truth over the
    test volumes, its error]}``; none for other kinds, whose chance value is fixed)."""
    if kind != "regression" or not observations.test:
        return {}
    truths = np.asarray(next(iter(observations.test.values())).truths, dtype=float)  # the same in every readout
    n = len(truths)
    if n < 2:
        return {}
    variance = float(truths.var(ddof=1))
    return {"mse": [variance, variance * math.sqrt(2.0 / (n - 1))]}


def _at_chance(kind: str, metrics: dict[str, Any], chance: dict[str, list[float]]) -> str | None:
    """The metric and its distance from chance if at chance, else ``None``."""
    if kind == "presence" and "auc" in metrics:
        value, error = metrics["auc"]
        if value is not None and error is not None and abs(value - 0.5) <= SIGMAS * error:
            return f"AUC {round_to_error(value, error, '+-')}"
    if kind == "regression" and "mse" in metrics and "mse" in chance:
        value, error = metrics["mse"]
        base, base_error = chance["mse"]
        if value is not None and error is not None and value >= base - SIGMAS * math.hypot(error, base_error):
            return f"MSE {round_to_error(value, error, '+-')} m²"
    return None


def chance_lines(evaluations: dict[str, Any]) -> list[str]:
    """Plain sentences when every design of ``evaluations`` (``evaluations.json``) is at chance on
    the headline readout; ``[]`` when at least one design does better (or the task has no
    chance value: imaging)."""
    task = evaluations.get("task", {})
    kind = task.get("kind")
    chance = task.get("no_information", {})
    designs = evaluations.get("designs", {})
    if kind not in ADVICE_KINDS or not designs:
        return []
    first = headline(list(evaluations.get("readouts", [HEADLINE])))
    found = {
        name: _at_chance(kind, entry.get(first, {}), chance)
        for name, entry in designs.items()
        if name not in REFERENCE_DESIGNS
    }
    if not found or any(v is None for v in found.values()):
        return []
    ideal = designs.get(REFERENCE_DESIGNS[0])
    if ideal is None:
        bound = ""
    elif _at_chance(kind, ideal.get(first, {}), chance) is None:
        bound = " The ideal detector of the region (cost ignored) does better: a better detector would help."
    else:
        bound = " So is the ideal detector of the region (cost ignored): no detector answers it like this."
    if kind == "presence":
        what = f"no better than a coin toss (AUC within {SIGMAS:g} errors of 0.5)"
    else:
        base, base_error = chance["mse"]
        what = (
            f"no better than answering the mean every time (MSE within {SIGMAS:g} errors of the no-information "
            f"{round_to_error(base, base_error, '+-')} m²)"
        )
    exposure = task.get("exposure_s")
    at = f" at {exposure:.3g} s of exposure" if isinstance(exposure, (int, float)) else ""
    listed = "; ".join(f"{name}: {text}" for name, text in found.items())
    return [
        f"The question cannot be answered as posed{at}: every design is {what} ({listed}).{bound}",
        f"What would help: {advice(task)}.",
    ]


#: Localisation (fraction of target volumes whose highest-scoring voxel of the map is the target's) above which a
#: presence map is said to find the target.
LOCALISES = 0.8


def statistic_lines(evaluations: dict[str, Any]) -> list[str]:
    """For presence: a sentence per design (bounds left out) whose map localises the target in at
    least :data:`LOCALISES` of the target volumes while its AUC lies more than :data:`SIGMAS`
    combined errors below that fraction, on the headline readout: the statistic that turns the
    map into one number loses what the map shows. ``[]`` otherwise."""
    task = evaluations.get("task", {})
    if task.get("kind") != "presence":
        return []
    first = headline(list(evaluations.get("readouts", [HEADLINE])))
    limited = []
    for name, entry in evaluations.get("designs", {}).items():
        metrics = entry.get(first, {})
        if name in REFERENCE_DESIGNS or "localisation" not in metrics or "auc" not in metrics:
            continue
        (loc, loc_error), (auc, auc_error) = metrics["localisation"], metrics["auc"]
        if None in (loc, loc_error, auc, auc_error) or loc < LOCALISES:
            continue
        if loc - auc > SIGMAS * math.hypot(loc_error, auc_error):
            limited.append(
                f"{name}: the target ranks first in {round_to_error(100 * loc, 100 * loc_error, '+-')} % of "
                f"the target volumes, AUC {round_to_error(auc, auc_error, '+-')}"
            )
    if not limited:
        return []
    statistic = task.get("statistic") or "clean"
    tip = (
        ' Try task.statistic = "material" (each voxel against the densest material the clean references hold: '
        "made for cluttered backgrounds)."
        if statistic == "clean"
        else ""
    )
    return [
        f"The presence statistic ({statistic!r}), not the detector, is the limit: the maps find the target but "
        f"the per-volume score does not separate it from clean volumes ({'; '.join(limited)}).{tip}"
    ]


WIN_SIGMAS = 3.0
"""A design wins a comparison under a variation when its paired difference on the headline metric
is in its favour by more than this many standard errors (issue 30's criterion)."""


def _in_favour(difference: list[float | None], higher_is_better: bool) -> float | None:
    """The paired difference ``[value, error]`` in standard errors in the first design's favour
    (``None`` if undefined)."""
    value, error = difference
    if value is None or error is None or not error > 0:
        return None
    return (value if higher_is_better else -value) / error


def systematics_envelope(evaluations: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per comparison ``"A - B"`` under the systematic variations of ``evaluations``
    (``evaluations.json``, its ``systematics`` record): the nominal paired difference of the
    headline metric, its lowest and highest value over the nominal and every variation (the
    envelope), and the variations under which A wins by more than :data:`WIN_SIGMAS` standard
    errors and those under which it does not (with their standard errors in A's favour)."""
    record = evaluations.get("systematics")
    if not record or not record.get("variations"):
        return {}
    metric, higher, readout = record["metric"], bool(record["higher_is_better"]), record["readout"]
    variations = record["variations"]
    pairs = dict.fromkeys(p for v in variations.values() for p in v.get("paired", {}))
    out: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        nominal = evaluations.get("paired", {}).get(pair, {}).get(readout, {}).get(metric, [None, None])
        under = {name: v["paired"][pair][metric] for name, v in variations.items() if pair in v.get("paired", {})}
        values = [d[0] for d in (nominal, *under.values()) if d[0] is not None]
        sigmas = {name: _in_favour(d, higher) for name, d in under.items()}
        out[pair] = {
            "nominal": nominal,
            "low": min(values) if values else None,
            "high": max(values) if values else None,
            "sigmas": sigmas,
            "wins": [n for n, s in sigmas.items() if s is not None and s > WIN_SIGMAS],
            "not": [n for n, s in sigmas.items() if s is None or s <= WIN_SIGMAS],
        }
    return out


def systematics_lines(evaluations: dict[str, Any]) -> list[str]:
    """One sentence per comparison under the systematic variations: ``"optimised - human wins under
    all 11 variations (by more than 3 standard errors; ...)"`` or which variations it does not
    win under and by how many standard errors it leads there."""
    envelope = systematics_envelope(evaluations)
    if not envelope:
        return []
    record = evaluations["systematics"]
    metric = record["metric"]
    lines = []
    for pair, e in envelope.items():
        a, _, b = pair.partition(" - ")
        n = len(e["sigmas"])
        low, high = e["low"], e["high"]
        span = (
            f"; the difference in {metric_label(metric)} spans {low:.3g} to {high:.3g} over the nominal and every "
            "variation"
            if low is not None and high is not None
            else ""
        )
        if not e["not"]:
            lines.append(f"{a} wins against {b} under all {n} variations (by > {WIN_SIGMAS:g} standard errors){span}.")
            continue
        where = ", ".join(
            f"{name} (undefined: no error)"
            if e["sigmas"][name] is None
            else f"{name} ({e['sigmas'][name]:.1f} standard errors)"
            for name in e["not"]
        )
        if e["wins"]:
            lines.append(
                f"{a} wins against {b} under {len(e['wins'])} of {n} variations (by > {WIN_SIGMAS:g} standard "
                f"errors); not under {where}{span}."
            )
        else:
            lines.append(
                f"{a} does not win against {b} by > {WIN_SIGMAS:g} standard errors under any of the {n} variations "
                f"(standard errors in its favour: {where}){span}."
            )
    return lines
