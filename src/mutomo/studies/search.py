"""What every gradient-free search shares: the objective and its box, the result, the call
counting, and a design's trainable parameters as a vector.

A method (:mod:`mutomo.studies.baselines`) is ``method(objective, bounds, budget, *,
muons_per_call=1, seed=0) -> SearchResult``. :class:`DesignVector` turns a design's trainable
parameters (of free panels, or the centres of hodoscope modules) into such a vector with its
box, and :func:`design_objective` makes the objective of a design: the training loss of
:func:`~mutomo.optimise.loop.batch_loss` without gradients, call ``n`` on the volumes and muons
of the gradient run's epoch ``n`` (keys ``(seed, 0, n mod epochs)``), so that a method given the
gradient run's muons sees exactly the batches the gradient run saw.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from mutomo.design.base import Design
from mutomo.design.hodoscopes import HodoscopeDesign
from mutomo.design.panels import DetectorDesign
from mutomo.errors import MutomoError
from mutomo.optimise.loop import training_batch_loss

Objective = Callable[[np.ndarray], float]
Bounds = tuple[np.ndarray, np.ndarray]


@dataclass
class SearchResult:
    """What a method found.

    Attributes:
        method: its name.
        x: the recommended parameter vector.
        value: the objective's value at ``x`` when it was evaluated (for ``cma`` and
            ``surrogate``, the best value seen: the point they recommend is not evaluated).
        calls: objective calls made.
        muons: muons simulated (``calls * muons_per_call``).
        seconds: wall time.
        trace: ``(calls, best value so far)`` after every call.
    """

    method: str
    x: np.ndarray
    value: float
    calls: int
    muons: int
    seconds: float
    trace: list[tuple[int, float]] = field(default_factory=list)


class Method(Protocol):
    def __call__(
        self, objective: Objective, bounds: Bounds, budget: int, *, muons_per_call: int = 1, seed: int = 0
    ) -> SearchResult: ...


def check_search(bounds: Bounds, budget: int, muons_per_call: int) -> tuple[np.ndarray, np.ndarray, int]:
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget <= 0:
        raise MutomoError(f"budget must be a positive number of muons; got {budget!r}")
    if isinstance(muons_per_call, bool) or not isinstance(muons_per_call, (int, np.integer)) or muons_per_call <= 0:
        raise MutomoError(f"muons_per_call must be a positive integer; got {muons_per_call!r}")
    calls = int(budget) // int(muons_per_call)
    if calls < 1:
        raise MutomoError(f"budget ({budget} muons) is less than one call ({muons_per_call} muons)")
    lo, hi = (np.asarray(b, dtype=float).reshape(-1) for b in bounds)
    if lo.shape != hi.shape or lo.size == 0:
        raise MutomoError(f"bounds must be two arrays of one length >= 1; got shapes {lo.shape} and {hi.shape}")
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(hi > lo)):
        raise MutomoError("bounds: every upper bound must be finite and above its lower bound")
    return lo, hi, calls


class Tracker:
    """Counts calls and keeps the best value seen."""

    def __init__(self, objective: Objective, muons_per_call: int) -> None:
        self.objective, self.muons_per_call = objective, muons_per_call
        self.calls, self.best, self.best_x = 0, math.inf, np.empty(0)
        self.trace: list[tuple[int, float]] = []
        self.start = time.perf_counter()

    def __call__(self, x: np.ndarray) -> float:
        value = float(self.objective(np.asarray(x, dtype=float)))
        self.calls += 1
        if not math.isfinite(value):
            value = math.inf
        if value < self.best or self.best_x.size == 0:
            self.best, self.best_x = value, np.array(x, dtype=float)
        self.trace.append((self.calls, self.best))
        return value

    def result(self, method: str, x: np.ndarray | None = None) -> SearchResult:
        return SearchResult(
            method,
            self.best_x if x is None else np.asarray(x, dtype=float),
            self.best,
            self.calls,
            self.calls * self.muons_per_call,
            time.perf_counter() - self.start,
            self.trace,
        )


@dataclass
class _Entries:
    """Parameters of a design laid out as vector entries: each parameter flattened in order,
    with the box of every entry and its name."""

    params: list[torch.nn.Parameter] = field(default_factory=list)
    lower: list[np.ndarray] = field(default_factory=list)
    upper: list[np.ndarray] = field(default_factory=list)
    names: list[str] = field(default_factory=list)

    def add(self, param: torch.nn.Parameter, lower: np.ndarray, upper: np.ndarray, names: list[str]) -> None:
        self.params.append(param)
        self.lower.append(np.asarray(lower, dtype=float).reshape(-1))
        self.upper.append(np.asarray(upper, dtype=float).reshape(-1))
        self.names += names


def _panel_entries(design: DetectorDesign, share_range: float, out: _Entries, prefix: str = "") -> None:
    b, n, na = design.bounds, design.z.shape[0], design.n_above
    groups = design.parameter_groups()
    for group in ("xy", "z", "size", "resolution", "efficiency"):
        if group not in design.trainable:
            continue
        (param,) = groups[group]
        if group == "xy":
            lo, hi = np.tile([b.x[0], b.y[0]], n), np.tile([b.x[1], b.y[1]], n)
            names = [f"panel{i}.{c}" for i in range(n) for c in "xy"]
        elif group == "z":
            lo = np.array([b.z_above[0]] * na + [b.z_below[0]] * (n - na))
            hi = np.array([b.z_above[1]] * na + [b.z_below[1]] * (n - na))
            names = [f"panel{i}.z" for i in range(n)]
        elif group == "size" and design.budget is not None:
            lo, hi = np.full(n, -share_range), np.full(n, share_range)
            names = [f"panel{i}.share_logit" for i in range(n)]
        else:
            rng = {"size": b.span, "resolution": b.resolution}.get(group)
            if rng is not None:
                lo, hi = np.full(n, math.log(rng[0])), np.full(n, math.log(rng[1]))
            else:
                lo, hi = (np.full(n, math.log(e) - math.log1p(-e)) for e in b.efficiency)
            names = [f"panel{i}.{group}" for i in range(n)]
        out.add(param, lo, hi, [prefix + name for name in names])


def _module_entries(design: HodoscopeDesign, share_range: float, out: _Entries) -> None:
    ranges = np.array(design.centre_ranges())  # (module, axis, [lo, hi])
    k = design.n_modules
    if "xy" in design.trainable:
        out.add(
            design.module_xy,
            ranges[:, :2, 0],
            ranges[:, :2, 1],
            [f"module{i}.{c}" for i in range(k) for c in "xy"],
        )
    if "z" in design.trainable:
        out.add(design.module_z, ranges[:, 2, 0], ranges[:, 2, 1], [f"module{i}.z" for i in range(k)])
    if design.free is not None:
        _panel_entries(design.free, share_range, out, prefix="free.")


class DesignVector:
    """A design's trainable parameters as one vector in a box.

    Free panels (:class:`DetectorDesign`), group by group in
    :data:`~mutomo.design.base.PARAMETER_GROUPS` order: ``xy`` (m, within the region's x
    and y), ``z`` (m, within each side's range), ``size`` (log-spans within the span bounds;
    under a fixed budget the budget-share logits within ``[-share_range, share_range]``: area
    ratios up to ``exp(2 share_range)``), ``resolution`` (log m) and ``efficiency`` (logit),
    within their bounds; named ``panel{i}.x``, ``panel{i}.z``, ``panel{i}.size``, ...

    Hodoscope modules (:class:`~mutomo.design.hodoscopes.HodoscopeDesign`): the trainable
    module centres, ``module{i}.x``, ``module{i}.y`` (group ``xy``) then ``module{i}.z``
    (``z``), each within its module's own allowed centre range (the region shrunk by its box,
    on its side); then the free panels beside them, if any, as above with names prefixed
    ``free.``. :meth:`set_` projects the design, so modules placed overlapping are separated
    (or sent back to their last valid placement): every placement evaluated is allowed.
    """

    def __init__(self, design: Design, share_range: float = 3.0) -> None:
        if not isinstance(design, DetectorDesign | HodoscopeDesign):
            raise MutomoError(f"DesignVector needs a DetectorDesign or a HodoscopeDesign; got {type(design).__name__}")
        if not design.trainable:
            raise MutomoError("DesignVector: the design has no trainable group")
        self.design = design
        entries = _Entries()
        if isinstance(design, HodoscopeDesign):
            _module_entries(design, share_range, entries)
        else:
            _panel_entries(design, share_range, entries)
        if not entries.params:
            raise MutomoError("DesignVector: the design has no trainable parameter")
        self._params, self.names = entries.params, entries.names
        self.lower, self.upper = np.concatenate(entries.lower), np.concatenate(entries.upper)

    @property
    def bounds(self) -> Bounds:
        return self.lower, self.upper

    def __len__(self) -> int:
        return self.lower.size

    def get(self) -> np.ndarray:
        """The design's current vector (clipped into the box)."""
        x = np.concatenate([p.detach().double().numpy().reshape(-1) for p in self._params])
        return np.clip(x, self.lower, self.upper)

    @torch.no_grad()
    def set_(self, x: np.ndarray) -> None:
        """Write ``x`` into the design's parameters, then project it into its bounds."""
        x = np.asarray(x, dtype=float).reshape(-1)
        if x.size != len(self):
            raise MutomoError(f"DesignVector.set_: expected {len(self)} values; got {x.size}")
        i = 0
        for p in self._params:
            p.copy_(torch.as_tensor(x[i : i + p.numel()], dtype=p.dtype).reshape(p.shape))
            i += p.numel()
        self.design.project_()


def design_objective(
    design: Design,
    problem: Any,
    settings: Any,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    vector: DesignVector | None = None,
    first_call: int = 0,
    *,
    readout: Any = None,
    calls_per_batch: int = 1,
) -> tuple[Callable[[np.ndarray], float], int]:
    """The training objective of ``design`` as a function of its :class:`DesignVector`, and the
    muons one call simulates (``volumes_per_epoch * muons_per_volume``; see the module
    docstring). ``settings`` is the gradient run's
    :class:`~mutomo.optimise.loop.TrainingSettings`; the panel edges have the final
    smoothness of its annealing. ``first_call``: the index of the first call (a search resumed
    after ``first_call`` calls sees the batches it would have seen). ``readout`` (a
    :class:`~mutomo.optimise.problem.Readout`) replaces the training readout (e.g. the physical
    one: hard edges, Bernoulli hits); ``calls_per_batch`` consecutive calls share one batch (call
    ``n`` on epoch ``n // calls_per_batch``: common random numbers for a method that compares the
    points of one iteration, such as the surrogate)."""

    if isinstance(calls_per_batch, bool) or not isinstance(calls_per_batch, (int, np.integer)) or calls_per_batch < 1:
        raise MutomoError(f"calls_per_batch must be a positive integer; got {calls_per_batch!r}")
    vec = vector if vector is not None else DesignVector(design)
    loss_fn = loss if loss is not None else problem.task.loss
    design.smoothness = settings.smoothness[1]
    count = {"n": int(first_call)}

    def objective(x: np.ndarray) -> float:
        vec.set_(x)
        epoch = (count["n"] // calls_per_batch) % settings.epochs
        count["n"] += 1
        with torch.no_grad():
            parts = training_batch_loss(design, problem, settings, epoch, loss_fn, readout)
        return float(parts.total)

    return objective, settings.volumes_per_epoch * settings.muons_per_volume
