"""Evaluation metrics with their statistical errors, alone and paired between two designs.

* Means of per-volume values: the standard error of the mean; a paired difference is the mean
  of the per-volume differences and its standard error (the same volumes and muons).
* ROC AUC: the Mann-Whitney statistic (ties count one half) with DeLong's variance, and for
  two score sets on the same volumes the paired difference with DeLong's covariance
  (E. R. DeLong, D. M. DeLong, D. L. Clarke-Pearson, Biometrics 44 (1988) 837, eqs. 2-5).
* Detection efficiency at a false-alarm rate ``alpha``: the threshold lets at most
  ``floor(alpha * n_negative)`` negative volumes score above it; the efficiency is the fraction
  of positives above it. Its error comes from a stratified bootstrap over volumes (positives
  and negatives resampled separately, so the class counts stay fixed), paired by using the same
  resamples for both designs.
* Exposure needed to reach a detection efficiency at a false-alarm rate: the efficiency is
  measured at a ladder of exposures and interpolated linearly in log(exposure) at the first
  crossing; censored (``inf``) when never reached, the smallest exposure when already reached
  there. Error by the same bootstrap.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from mutomo.errors import MutomoError

BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 20261129


@dataclass(frozen=True)
class Metric:
    """A value with its one-standard-deviation statistical error (``nan`` when undefined)."""

    value: float
    error: float

    def as_list(self) -> list[float | None]:
        """``[value, error]`` for JSON (``None`` for non-finite numbers, e.g. a censored exposure)."""
        return [v if math.isfinite(v) else None for v in (self.value, self.error)]

    def __str__(self) -> str:
        return f"{self.value:.4g} +- {self.error:.2g}"


def mean_metric(values: np.ndarray) -> Metric:
    """Mean of per-volume values with its standard error (finite values only)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return Metric(float("nan"), float("nan"))
    error = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else float("nan")
    return Metric(float(v.mean()), error)


def _split(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels).astype(bool)
    if labels.all() or not labels.any():
        raise MutomoError("a presence metric needs volumes with and without the object")
    scores = np.asarray(scores, dtype=float)
    return scores[labels], scores[~labels]


def _placements(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's structural components: ``V10_i`` = share of negatives below positive ``i``,
    ``V01_j`` = share of positives above negative ``j`` (ties count one half)."""
    ns, ps = np.sort(neg), np.sort(pos)
    below = np.searchsorted(ns, pos, "left")
    v10 = (below + 0.5 * (np.searchsorted(ns, pos, "right") - below)) / neg.size
    above = pos.size - np.searchsorted(ps, neg, "right")
    v01 = (above + 0.5 * (np.searchsorted(ps, neg, "right") - np.searchsorted(ps, neg, "left"))) / pos.size
    return v10, v01


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> Metric:
    """Area under the ROC curve of ``scores`` (higher = object present) with DeLong's error.

    Example:
        >>> roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])).value
        0.75
    """
    pos, neg = _split(scores, labels)
    v10, v01 = _placements(pos, neg)
    var = (v10.var(ddof=1) / pos.size if pos.size > 1 else 0.0) + (v01.var(ddof=1) / neg.size if neg.size > 1 else 0.0)
    return Metric(float(v10.mean()), math.sqrt(var))


def paired_auc_difference(scores_a: np.ndarray, scores_b: np.ndarray, labels: np.ndarray) -> Metric:
    """AUC(a) - AUC(b) on the same volumes, with DeLong's paired error."""
    pa, na = _split(scores_a, labels)
    pb, nb = _split(scores_b, labels)
    a10, a01 = _placements(pa, na)
    b10, b01 = _placements(pb, nb)
    d10, d01 = a10 - b10, a01 - b01
    var = (d10.var(ddof=1) / d10.size if d10.size > 1 else 0.0) + (d01.var(ddof=1) / d01.size if d01.size > 1 else 0.0)
    return Metric(float(a10.mean() - b10.mean()), math.sqrt(var))


def efficiency_at_false_alarm(scores: np.ndarray, labels: np.ndarray, false_alarm: float = 0.01) -> float:
    """Fraction of positives above the threshold that at most ``floor(false_alarm * n_neg)``
    negatives exceed.

    Example:
        >>> efficiency_at_false_alarm(np.array([1.0, 2.0, 3.0, 2.5, 0.5]), np.array([0, 0, 0, 1, 1]), 0.0)
        0.0
    """
    if not 0 <= false_alarm < 1:
        raise MutomoError(f"false_alarm must be in [0, 1); got {false_alarm}")
    pos, neg = _split(scores, labels)
    return float((pos > false_alarm_threshold(neg, false_alarm)).mean())


def false_alarm_threshold(negatives: np.ndarray, false_alarm: float = 0.01) -> float:
    """The score that at most ``floor(false_alarm * n)`` of the ``n`` ``negatives`` exceed: their
    ``(k + 1)``-th highest, the threshold of :func:`efficiency_at_false_alarm` (its expected
    false-alarm rate on new negatives: :func:`threshold_false_alarm`).

    Example:
        >>> false_alarm_threshold(np.array([0.5, 3.0, 1.0]), 0.01)
        3.0
    """
    negatives = np.asarray(negatives, dtype=float)
    if negatives.size < 1:
        raise MutomoError("false_alarm_threshold needs at least one negative score")
    return float(np.sort(negatives)[::-1][_threshold_rank(negatives.size, false_alarm)])


def _threshold_rank(n_negative: int, false_alarm: float) -> int:
    """``k``: the threshold at ``false_alarm`` is the ``(k + 1)``-th highest of ``n_negative``
    negative scores, ``k = floor(false_alarm * n)`` (at most ``n - 1``)."""
    return min(math.floor(false_alarm * n_negative + 1e-9), n_negative - 1)


def threshold_false_alarm(n_negative: int, false_alarm: float = 0.01) -> float:
    """The expected false-alarm rate, on new negatives, of the threshold that
    :func:`efficiency_at_false_alarm` sets on ``n_negative`` negatives: ``(k + 1) / (n + 1)`` with
    ``k = floor(false_alarm * n)``. The threshold is the ``(k + 1)``-th highest of ``n`` negative
    scores; for continuous scores the probability that a new negative exceeds it is
    Beta(k + 1, n - k) distributed, whatever the scores' distribution (H. A. David and
    H. N. Nagaraja, Order Statistics, 3rd ed., Wiley 2003, section 2.2). So with fewer than
    ``1 / false_alarm`` negatives the threshold is the highest negative score and its rate is
    ``1 / (n + 1)``, above the nominal one: 20 clean volumes make "1 %" about 4.8 %.

    Example:
        >>> round(threshold_false_alarm(20), 4), round(threshold_false_alarm(199), 4)
        (0.0476, 0.01)
    """
    if n_negative < 1:
        raise MutomoError(f"threshold_false_alarm needs at least one negative; got {n_negative}")
    return (_threshold_rank(n_negative, false_alarm) + 1) / (n_negative + 1)


def exposure_to_reach(efficiencies: Mapping[float, float], goal: float = 0.95) -> float:
    """Exposure at which the efficiency first reaches ``goal``, interpolated in log(exposure)
    between the ladder's points; ``inf`` if never, the smallest exposure if already there."""
    points = sorted(efficiencies.items())
    if points[0][1] >= goal:
        return points[0][0]
    for (t0, e0), (t1, e1) in zip(points, points[1:], strict=False):
        if e1 >= goal:
            frac = (goal - e0) / (e1 - e0)
            return float(math.exp(math.log(t0) + frac * (math.log(t1) - math.log(t0))))
    return float("inf")


def _resamples(labels: np.ndarray, n: int = BOOTSTRAP_RESAMPLES) -> list[np.ndarray]:
    """Stratified bootstrap resamples (index arrays) of the volumes, fixed seed."""
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    labels = np.asarray(labels).astype(bool)
    pos, neg = np.flatnonzero(labels), np.flatnonzero(~labels)
    return [np.concatenate([rng.choice(pos, pos.size), rng.choice(neg, neg.size)]) for _ in range(n)]


def bootstrap_metric(statistic: Callable[[np.ndarray], float], labels: np.ndarray) -> Metric:
    """``statistic(all volumes)`` with the standard deviation of ``statistic(resample)`` over
    stratified bootstrap resamples (non-finite resample values, e.g. censored exposures, are
    left out of the spread; ``nan`` if fewer than two remain)."""
    value = statistic(np.arange(len(labels)))
    draws = np.array([statistic(idx) for idx in _resamples(labels)])
    finite = draws[np.isfinite(draws)]
    error = float(finite.std(ddof=1)) if finite.size > 1 else float("nan")
    return Metric(float(value), error)
