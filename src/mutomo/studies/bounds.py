"""How good can it get? The ideal-detector bounds and a design's share of the possible gain.

Two reference detectors are evaluated beside every design, on the same test volumes and muons,
through the same physical readout and the same inference (:mod:`mutomo.optimise.evaluate`):

* ``ideal``: free panels as large as the region allows, covering it, at the best resolution and
  efficiency the region allows, cost ignored (:func:`ideal_design`). No detector the region
  allows sees more muons or measures them better, so with an inference that only gains from
  more and better-measured muons no design does better (up to the statistical error). Not every
  inference is one: the ladle furnace's fill statistic does better with the optimised design's
  placement than with the ideal's (docs: results, ladle furnace), and a share above 100 % says so.
* ``ideal_momentum``: the same detector with each muon's momentum measured to a relative
  resolution (:func:`~mutomo.reco.momentum_options.measured_momentum`; 10 % by default, a
  time-of-flight or spectrometer measurement): what measuring the momentum would add.

A design's **share of the possible gain** over a start (the start design, or the poor one) is

    share = gain(design) / gain(ideal),   gain(d) = +-(metric(d) - metric(start))

oriented so that a gain is positive when the design is better (``TaskKind.higher_is_better``):
0 for a design no better than the start, 1 for one as good as the ideal detector. Its error
comes from the paired differences (the same volumes and muons) by the delta method,

    var(share) = (var(D_d) - 2 share cov(D_d, D_i) + share^2 var(D_i)) / D_i^2,

with ``D_d``, ``D_i`` the design's and the ideal's paired differences to the start and
``cov(D_d, D_i) = (var(D_d) + var(D_i) - var(D_d - D_i)) / 2``, where ``var(D_d - D_i)`` is the
paired variance of the design against the ideal: every term is a paired error the task already
computes (DeLong's for AUC, the bootstrap's for efficiencies, the calibration-aware one for the
regression MSE).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from mutomo.design.base import Design
from mutomo.design.panels import DetectorDesign
from mutomo.errors import ConfigError
from mutomo.optimise.evaluate import REFERENCE_DESIGNS, DesignObservations, metrics_json, paired
from mutomo.optimise.problem import Problem
from mutomo.reco.momentum_options import measured_momentum
from mutomo.tasks import Metric

IDEAL, IDEAL_MOMENTUM = REFERENCE_DESIGNS
DEFAULT_MOMENTUM_RESOLUTION = 0.1


def _panels_per_side(like: Design | None, problem: Problem) -> tuple[int, int]:
    """Panels above and below: those of ``like`` (a panel design), of the problem's module (a
    hodoscope problem), else four a side."""
    if isinstance(like, DetectorDesign):
        return like.n_above, int(like.xy.shape[0]) - like.n_above
    if problem.hodoscope is not None:
        n = len(problem.hodoscope.panel_heights)
        return n, n
    return 4, 4


def ideal_design(problem: Problem, like: Design | None = None) -> DetectorDesign:
    """The ideal detector of ``problem``'s region: as many panels a side as ``like`` (see
    :func:`_panels_per_side`), spread evenly over the region's heights on each side (the longest
    lever arms), square, centred on the region and as wide as the region allows (its largest
    span, ``region.span``'s maximum: 5 m by default, so every panel covers the region's footprint
    and, as far as it can, every muon a closer panel would catch), at the region's best resolution
    and efficiency. Its cost is ignored: it has no budget, and the evaluation says so.

    For a hodoscope problem it is free panels, not modules: finer and wider than a tiling of
    modules everywhere (whose resolution is the modules' own).

    Raises :class:`~mutomo.errors.ConfigError` naming the region's field when the region is not
    finite (a bound needs a region to cover).
    """
    b = problem.bounds
    for name in ("x", "y", "z_above", "z_below"):
        if not all(math.isfinite(v) for v in getattr(b, name)):
            raise ConfigError(f"region.{name} must be finite for an ideal-detector bound; got {getattr(b, name)}")
    n_above, n_below = _panels_per_side(like, problem)

    def spread(lo: float, hi: float, n: int, from_high: bool) -> list[float]:
        if n == 1:
            return [hi if from_high else lo]
        steps = [lo + (hi - lo) * i / (n - 1) for i in range(n)]
        return steps if not from_high else steps[::-1]

    z = spread(*b.z_above, n_above, from_high=False) + spread(*b.z_below, n_below, from_high=True)
    centre = [(b.x[0] + b.x[1]) / 2, (b.y[0] + b.y[1]) / 2]
    span = b.span[1]
    return DetectorDesign(
        [centre] * len(z),
        z,
        n_above,
        span,
        b.resolution[0],
        b.efficiency[1],
        b,
        budget=None,
        cost_model=problem.cost_model,
        trainable=(),
    )


def momentum_problem(problem: Problem, resolution: float = DEFAULT_MOMENTUM_RESOLUTION) -> Problem:
    """``problem`` with each muon's momentum measured to ``resolution`` (sigma_p / p): the
    problem the ``ideal_momentum`` bound is evaluated in (same volumes, muons and inference)."""
    if not 0 < resolution <= 1:
        raise ConfigError(f"evaluation.bound_momentum_resolution must be in (0, 1]; got {resolution}")
    option = measured_momentum(resolution)
    refusal = option.refusal(problem.task.inference)
    if refusal is not None:
        raise ConfigError(f"the ideal_momentum bound: {refusal}")
    return replace(problem, momentum=option)


def share_of_gain(to_start: Metric, ideal_to_start: Metric, to_ideal: Metric, higher_is_better: bool) -> Metric:
    """A design's share of the possible gain (module docstring) from three paired differences:
    design - start, ideal - start and design - ideal, each a value with its error.

    Example:
        >>> share_of_gain(Metric(-2.0, 0.1), Metric(-4.0, 0.1), Metric(2.0, 0.1), higher_is_better=False).value
        0.5
    """
    sign = 1.0 if higher_is_better else -1.0
    gain, best = sign * to_start.value, sign * ideal_to_start.value
    if not (math.isfinite(gain) and math.isfinite(best)) or best == 0:
        return Metric(math.nan, math.nan)
    share = gain / best
    var_d, var_i, var_di = to_start.error**2, ideal_to_start.error**2, to_ideal.error**2
    cov = 0.5 * (var_d + var_i - var_di)
    var = (var_d - 2 * share * cov + share**2 * var_i) / best**2
    return Metric(share, math.sqrt(max(var, 0.0)))


def gain_shares(
    problem: Problem, observations: dict[str, DesignObservations], start: str, ideal: str = IDEAL
) -> dict[str, dict[str, dict[str, Metric]]]:
    """Each design's share of the possible gain over ``start`` by readout and metric
    (``{design: {readout: {metric: Metric}}}``): the metrics both the task's paired
    differences and ``higher_is_better`` know (the exposure ratio, a ratio, is left out)."""
    ideal_to_start = paired(problem, observations[ideal], observations[start])
    shares: dict[str, dict[str, dict[str, Metric]]] = {}
    for name, obs in observations.items():
        to_start, to_ideal = paired(problem, obs, observations[start]), paired(problem, obs, observations[ideal])
        shares[name] = {
            readout: {
                metric: share_of_gain(d, ideal_to_start[readout][metric], to_ideal[readout][metric], better)
                for metric, d in values.items()
                if (better := problem.task.higher_is_better.get(metric)) is not None and metric != "exposure_ratio"
            }
            for readout, values in to_start.items()
        }
    return shares


def bound_entries(
    problem: Problem, observations: dict[str, DesignObservations], start: str, momentum_resolution: float | None
) -> dict[str, Any]:
    """What the bounds add to an evaluation, JSON-ready: ``paired`` (each bound minus every
    design, and ``ideal_momentum - ideal``), ``shares`` (each design's share of the possible gain
    over ``start``, :func:`gain_shares`) and ``bounds`` (what they were); empty without ``ideal``."""
    out: dict[str, Any] = {"paired": {}}
    for bound in (b for b in REFERENCE_DESIGNS if b in observations):
        for name, obs in observations.items():
            if name not in REFERENCE_DESIGNS or (bound == IDEAL_MOMENTUM and name == IDEAL):
                out["paired"][f"{bound} - {name}"] = metrics_json(paired(problem, observations[bound], obs))
    info: dict[str, Any] = {"start": start}
    if IDEAL in observations and start in observations:
        shares = gain_shares(problem, observations, start=start)
        out["shares"] = {name: metrics_json(v) for name, v in shares.items() if name not in (start, IDEAL)}
        info["ideal"] = "panels covering the whole region at its best resolution and efficiency; cost ignored"
    if IDEAL_MOMENTUM in observations:
        info["momentum_resolution"] = momentum_resolution
    out["bounds"] = info
    return out
