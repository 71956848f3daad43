"""A local surrogate where there is no gradient: fitted to evaluations around the design, it
supplies the gradient step.

For an objective that autograd cannot differentiate (hard panel edges and Bernoulli hits, the
physical readout; a discrete choice), :func:`surrogate_search` follows the scheme of local
generative surrogate optimisation (L-GSO: Shirobokov et al., "Black-box optimization with local
generative surrogates", NeurIPS 2020, arXiv:2002.04632, Algorithm 1). In the box scaled to the
unit cube, each iteration

1. draws ``n`` points in the trust region around the current point ``x`` (a box of half-width
   ``radius``): ``n / 2 >= dim`` antithetic pairs ``x +- delta``, the ``delta`` along the rows
   of random orthogonal matrices (orthogonal sampling, as in structured evolution strategies,
   Choromanski et al. 2018, arXiv:1804.02395: the fit stays well conditioned with as few as
   ``dim`` pairs, where uniform draws are often nearly singular), each stretched to the trust
   region's face, each point clipped into the bounds;
2. evaluates the objective at them (``n`` calls);
3. fits the local surrogate to every evaluation inside the current trust region: the fresh
   ones and those of earlier iterations (reused, as L-GSO does, to save calls);
4. takes the surrogate's gradient at ``x`` and makes one Adam step (Kingma & Ba 2015, arXiv:
   1412.6980, beta = (0.9, 0.999)) with a learning rate decayed by a cosine from ``lr`` to
   ``lr / 10`` over the iterations (as :func:`~mutomo.optimise.loop.optimise` does); each
   coordinate of the step is clipped to ``radius`` (the new point stays in the trust region)
   and the point is projected into the bounds.

The answer is the final point (like CMA-ES's mean: it averages over a noisy objective's noise,
and is not itself evaluated); ``SearchResult.value`` is the best value seen.

What differs from L-GSO: L-GSO learns a *generative* model (a GAN or FFJORD) of the
simulator's output ``y ~ p(y | z, psi)`` and differentiates the objective ``R(y)`` through it.
Here the surrogate is a least-squares regression of the scalar objective on the displacement
``d = x' - x`` (unit-cube coordinates)::

    f(x') ~ a_k + g . d + 1/2 sum_i h_i d_i^2

with one intercept ``a_k`` per iteration ``k`` that evaluated the point (the caller may evaluate
an iteration's points on common random numbers, e.g. one training batch: the batch's offset
then drops out of ``g``), the gradient ``g`` and, when there are at least twice as many points
as coefficients, the diagonal curvature ``h``; ``g`` is the step's gradient. For fresh
antithetic pairs ``sum d = 0`` and ``sum d_j d_i^2 = 0``, so ``g`` is the exact gradient of
any quadratic and of the box-smoothed objective to second order (the linear-regression
gradient estimator of derivative-free optimisation, e.g. Berahas et al. 2022, Found. Comput.
Math. 22, 507, arXiv:1905.01332); the curvature terms correct the points reused from off-centre
regions. Where the objective is piecewise constant (zero gradient almost everywhere), ``g`` is
the gradient of its average over the trust region, which is what the step needs. Non-finite
values are left out of the fit; an iteration with too few finite values makes no step.
"""

from __future__ import annotations

import math

import numpy as np

from mutomo.errors import MutomoError
from mutomo.studies.search import Bounds, Objective, SearchResult, Tracker, check_search

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


def _check_region(radius: float, n: int, dim: int) -> None:
    if not (isinstance(radius, (int, float)) and math.isfinite(radius) and 0 < radius <= 0.5):
        raise MutomoError(f"radius must be in (0, 0.5] (a fraction of the box); got {radius!r}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2 * dim or n % 2:
        raise MutomoError(
            f"n (points per iteration) must be an even number >= 2 x dimension = {2 * dim} "
            f"(antithetic pairs, whose n / 2 directions must span the dimensions); got {n!r}"
        )


def _draw(rng: np.random.Generator, centre: np.ndarray, radius: float, n: int) -> np.ndarray:
    """``n`` points (``n / 2`` antithetic pairs) in the box of half-width ``radius`` around
    ``centre``, clipped into the unit cube: ``(n, dim)``. The displacements run along the rows of
    random orthogonal matrices (as many as ``n / 2`` needs), each stretched to the box's face."""
    dim = centre.size
    blocks = [np.linalg.qr(rng.standard_normal((dim, dim)))[0] for _ in range(-(-n // (2 * dim)))]
    q = np.concatenate(blocks)[: n // 2]
    delta = radius * q / np.abs(q).max(axis=1, keepdims=True)
    return np.clip(centre + np.concatenate([delta, -delta]), 0.0, 1.0)


def fit_gradient(points: np.ndarray, values: np.ndarray, groups: np.ndarray, centre: np.ndarray) -> np.ndarray | None:
    """The surrogate's gradient at ``centre`` (see the module docstring).

    Args:
        points: ``(point, dim)`` evaluated points (unit-cube coordinates).
        values: ``(point,)`` objective values (non-finite ones are left out).
        groups: ``(point,)`` iteration of each point (one intercept per iteration).
        centre: ``(dim,)`` where the gradient is wanted.

    Returns:
        ``(dim,)`` gradient per unit of the coordinates, or ``None`` if the finite points do not
        determine it.
    """
    ok = np.isfinite(values)
    d = points[ok] - centre
    y = values[ok]
    labels, group = np.unique(groups[ok], return_inverse=True)
    columns = [np.eye(labels.size)[group], d]
    if y.size >= 2 * (labels.size + 2 * d.shape[1]):
        columns.append(0.5 * d**2)
    design = np.concatenate(columns, axis=1)
    if y.size < design.shape[1] or np.linalg.matrix_rank(design) < design.shape[1]:
        return None
    # centre and scale the values: the fit's conditioning does not depend on the objective's units
    scale = float(np.std(y)) or 1.0
    coef, *_ = np.linalg.lstsq(design, (y - y.mean()) / scale, rcond=None)
    return coef[labels.size : labels.size + d.shape[1]] * scale


def surrogate_gradient(
    objective: Objective,
    x: np.ndarray,
    radius: float,
    n: int,
    *,
    bounds: Bounds | None = None,
    seed: int = 0,
) -> np.ndarray:
    """The local surrogate's gradient of ``objective`` at ``x`` from ``n`` fresh evaluations
    (one iteration of :func:`surrogate_search`, without reuse).

    Args:
        objective: ``(dim,)`` vector -> float.
        x: ``(dim,)`` where the gradient is wanted.
        radius: half-width of the trust region as a fraction of the box (``bounds``; without
            bounds, of a unit box around ``x``: in ``x``'s own units).
        n: points (even, >= 2 dim).
        bounds: ``(lower, upper)``; points are clipped into it.
        seed: seeds the points.

    Returns:
        ``(dim,)`` estimate of ``d objective / d x`` in ``x``'s units.
    """
    x = np.asarray(x, dtype=float).reshape(-1)
    if bounds is None:
        lo, scale = x - 0.5, np.ones_like(x)
    else:
        lo, hi, _ = check_search(bounds, 1, 1)
        if lo.shape != x.shape:
            raise MutomoError(f"x has {x.size} entries but bounds {lo.size}")
        scale = hi - lo
    _check_region(radius, n, x.size)
    centre = np.clip((x - lo) / scale, 0.0, 1.0)
    points = _draw(np.random.default_rng(seed), centre, radius, n)
    values = np.array([float(objective(lo + scale * p)) for p in points])
    g = fit_gradient(points, values, np.zeros(n, dtype=int), centre)
    if g is None:
        raise MutomoError(f"surrogate_gradient: too few finite objective values ({np.isfinite(values).sum()} of {n})")
    return g / scale


def surrogate_search(
    objective: Objective,
    bounds: Bounds,
    budget: int,
    *,
    muons_per_call: int = 1,
    seed: int = 0,
    x0: np.ndarray | None = None,
    radius: float = 0.05,
    n: int | None = None,
    lr: float = 0.05,
) -> SearchResult:
    """Local-surrogate gradient descent (see the module docstring) in the box scaled to [0, 1]^dim,
    from ``x0`` (default the centre): trust-region half-width ``radius`` and Adam learning rate
    ``lr`` (fractions of the box), ``n`` points per iteration (default ``2 * dim``); the budget
    pays for ``calls // n`` iterations (at least one). Answers the final point."""
    lo, hi, calls = check_search(bounds, budget, muons_per_call)
    dim = lo.size
    n = 2 * dim if n is None else n
    _check_region(radius, n, dim)
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise MutomoError(f"lr must be a positive fraction of the box; got {lr!r}")
    iterations = calls // n
    if iterations < 1:
        raise MutomoError(f"budget: {calls} calls are fewer than one iteration's n = {n} points")
    scale = hi - lo
    start = np.full(dim, 0.5) if x0 is None else np.asarray(x0, float).reshape(-1)
    if start.shape != (dim,):
        raise MutomoError(f"x0 has {start.size} entries; the bounds have {dim}")
    x = start if x0 is None else np.clip((start - lo) / scale, 0.0, 1.0)
    rng = np.random.default_rng(seed)
    track = Tracker(lambda u: objective(lo + scale * u), muons_per_call)
    points, values, groups = np.empty((0, dim)), np.empty(0), np.empty(0, dtype=int)
    m, v = np.zeros(dim), np.zeros(dim)
    steps = 0
    for k in range(iterations):
        fresh = _draw(rng, x, radius, n)
        points = np.concatenate([points, fresh])
        values = np.concatenate([values, [track(p) for p in fresh]])
        groups = np.concatenate([groups, np.full(n, k)])
        inside = np.all(np.abs(points - x) <= radius + 1e-12, axis=1)  # the history in the region
        g = fit_gradient(points[inside], values[inside], groups[inside], x)
        if g is None:
            continue
        steps += 1
        m = ADAM_BETAS[0] * m + (1 - ADAM_BETAS[0]) * g
        v = ADAM_BETAS[1] * v + (1 - ADAM_BETAS[1]) * g**2
        m_hat, v_hat = m / (1 - ADAM_BETAS[0] ** steps), v / (1 - ADAM_BETAS[1] ** steps)
        rate = lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * k / max(iterations - 1, 1))))
        step = np.clip(rate * m_hat / (np.sqrt(v_hat) + ADAM_EPS), -radius, radius)
        x = np.clip(x - step, 0.0, 1.0)
    track.best_x = lo + scale * track.best_x if track.best_x.size else track.best_x
    return track.result("surrogate", lo + scale * x)
