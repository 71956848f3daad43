"""Gradient-free baselines through maintained libraries, on the training objective.

Every method is one function with one signature::

    method(objective, bounds, budget, *, muons_per_call=1, seed=0) -> SearchResult

* ``objective``: ``(parameter,)`` numpy vector -> float, to be minimised;
* ``bounds``: ``(lower, upper)`` arrays of the vector's box;
* ``budget``: muons the method may simulate in all; a call of the objective simulates
  ``muons_per_call`` of them, so the method makes ``budget // muons_per_call`` calls.

Methods (:data:`METHODS`): ``random`` (uniform draws in the box; the best value seen),
``cma`` (CMA-ES, the ``cma`` package, Hansen; in the box scaled to the unit cube, started at
``x0`` or the box centre with step 0.25, answering the distribution's mean, which averages over
a noisy objective's noise), ``tpe`` and ``gp`` (Bayesian optimisation with ``optuna``'s
multivariate tree-structured Parzen estimator or its Gaussian-process sampler; the best trial),
``surrogate`` (gradient steps on a local surrogate fitted to evaluations around the current
point, :mod:`mutomo.studies.surrogate`; started at ``x0`` or the box centre, answering the
final point).

The objective of a design, its box and what the methods share are in
:mod:`mutomo.studies.search` (:class:`~mutomo.studies.search.DesignVector`,
:func:`~mutomo.studies.search.design_objective`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mutomo.errors import MutomoError
from mutomo.studies.search import Bounds, Method, Objective, SearchResult, Tracker, check_search
from mutomo.studies.surrogate import surrogate_search


def random_search(
    objective: Objective, bounds: Bounds, budget: int, *, muons_per_call: int = 1, seed: int = 0
) -> SearchResult:
    """Uniform draws in the box (``numpy`` generator seeded by ``seed``); the best value seen."""
    lo, hi, calls = check_search(bounds, budget, muons_per_call)
    rng = np.random.default_rng(seed)
    track = Tracker(objective, muons_per_call)
    for _ in range(calls):
        track(lo + (hi - lo) * rng.random(lo.size))
    return track.result("random")


def cma_es(
    objective: Objective,
    bounds: Bounds,
    budget: int,
    *,
    muons_per_call: int = 1,
    seed: int = 0,
    x0: np.ndarray | None = None,
    sigma0: float = 0.25,
    popsize: int | None = None,
) -> SearchResult:
    """CMA-ES (``cma``) in the box scaled to [0, 1]^n, from ``x0`` (default the centre) with step
    ``sigma0`` (fraction of the box); a generation that the budget cannot complete is evaluated
    but not told. Answers the final distribution mean."""
    import cma

    lo, hi, calls = check_search(bounds, budget, muons_per_call)
    scale = hi - lo
    start = np.full(lo.size, 0.5) if x0 is None else np.clip((np.asarray(x0, float) - lo) / scale, 0.0, 1.0)
    options: dict[str, Any] = {"bounds": [0.0, 1.0], "seed": int(seed) + 1, "verbose": -9, "maxfevals": calls}
    if popsize is not None:
        options["popsize"] = popsize
    es = cma.CMAEvolutionStrategy(start, sigma0, options)
    track = Tracker(lambda u: objective(lo + scale * u), muons_per_call)
    while track.calls < calls:
        population = es.ask()
        values = []
        for u in population[: calls - track.calls]:
            values.append(track(np.asarray(u)))
        if len(values) == len(population):
            es.tell(population, values)
    track.best_x = lo + scale * track.best_x if track.best_x.size else track.best_x
    return track.result("cma", lo + scale * np.clip(np.asarray(es.mean), 0.0, 1.0))


def _optuna(
    sampler_name: str,
    objective: Objective,
    bounds: Bounds,
    budget: int,
    muons_per_call: int,
    seed: int,
) -> SearchResult:
    import optuna

    lo, hi, calls = check_search(bounds, budget, muons_per_call)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler: optuna.samplers.BaseSampler
    if sampler_name == "tpe":
        sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=max(2, min(10, calls // 4)))
    else:
        sampler = optuna.samplers.GPSampler(seed=seed, n_startup_trials=max(2, min(10, calls // 4)))
    study = optuna.create_study(direction="minimize", sampler=sampler)
    track = Tracker(objective, muons_per_call)
    width = len(str(lo.size))

    def trial_value(trial: optuna.Trial) -> float:
        x = np.array([trial.suggest_float(f"x{i:0{width}d}", lo[i], hi[i]) for i in range(lo.size)])
        value = track(x)
        return value if math.isfinite(value) else 1e300

    study.optimize(trial_value, n_trials=calls)
    return track.result(sampler_name)


def bayesian_tpe(
    objective: Objective, bounds: Bounds, budget: int, *, muons_per_call: int = 1, seed: int = 0
) -> SearchResult:
    """Bayesian optimisation, ``optuna``'s multivariate TPE sampler; the best trial."""
    return _optuna("tpe", objective, bounds, budget, muons_per_call, seed)


def bayesian_gp(
    objective: Objective, bounds: Bounds, budget: int, *, muons_per_call: int = 1, seed: int = 0
) -> SearchResult:
    """Bayesian optimisation, ``optuna``'s Gaussian-process sampler; the best trial."""
    return _optuna("gp", objective, bounds, budget, muons_per_call, seed)


def surrogate(
    objective: Objective,
    bounds: Bounds,
    budget: int,
    *,
    muons_per_call: int = 1,
    seed: int = 0,
    x0: np.ndarray | None = None,
) -> SearchResult:
    """Local-surrogate gradient descent (:func:`mutomo.studies.surrogate.surrogate_search`, its
    defaults), from ``x0`` (default the box centre); answers the final point."""
    return surrogate_search(objective, bounds, budget, muons_per_call=muons_per_call, seed=seed, x0=x0)


METHODS: dict[str, Method] = {
    "random": random_search,
    "cma": cma_es,
    "tpe": bayesian_tpe,
    "gp": bayesian_gp,
    "surrogate": surrogate,
}


def search(
    method: str,
    objective: Objective,
    bounds: Bounds,
    budget: int,
    *,
    muons_per_call: int = 1,
    seed: int = 0,
    x0: np.ndarray | None = None,
) -> SearchResult:
    """Run the method named ``method`` (a key of :data:`METHODS`); ``x0`` starts CMA-ES and the
    surrogate."""
    if method not in METHODS:
        raise MutomoError(f"method: unknown {method!r}; allowed {sorted(METHODS)}")
    if method == "cma":
        return cma_es(objective, bounds, budget, muons_per_call=muons_per_call, seed=seed, x0=x0)
    if method == "surrogate":
        return surrogate(objective, bounds, budget, muons_per_call=muons_per_call, seed=seed, x0=x0)
    return METHODS[method](objective, bounds, budget, muons_per_call=muons_per_call, seed=seed)


# ----------------------------------------------------------------------------- designs as vectors
