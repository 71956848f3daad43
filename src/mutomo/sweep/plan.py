"""What a sweep runs: its settings (the ``[sweep]`` table) and its independent trials.

A trial is one design trained on its own, from its own start, on its own muons:

* ``start_NNN``: the gradient run from start ``NNN`` of the landscape
  (:func:`~mutomo.studies.landscape.landscape_starts`), training seed ``seed + NNN``;
* ``front_bB_sJ``: the gradient run from start ``J`` of budget ``B`` (its index in
  ``budgets``) of the budget front (:func:`~mutomo.studies.landscape.front_starts`), training
  seed ``seed + 1000 (B + 1) + J``;
* ``front_kK_sJ``: the same for ``K`` modules (the value, not its index) of a module-count
  front (``modules``; hodoscope designs), training seed ``seed + 1000 (P + 1) + J`` where ``P``
  is the index of ``K`` in ``modules``;
* ``METHOD_sS``: a gradient-free search (:mod:`mutomo.studies.baselines`) from where
  ``start_S`` starts, on ``start_S``'s muons and as many of them (its calls see the gradient
  run's batches, epoch by epoch), so that the two are compared paired.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from mutomo.config.schema import RunConfig
from mutomo.optimise.loop import TrainingSettings
from mutomo.studies.landscape import LandscapeSettings

Kind = Literal["start", "front", "method"]


@dataclass(frozen=True)
class Trial:
    """One independent trial of a sweep (see the module docstring).

    Attributes:
        name: its name, also its folder under ``trials/``.
        kind: ``start``, ``front`` or ``method``.
        index: the start (``start``, ``method``: the start it shares) or the start within its
            front point (``front``).
        budget_index: the front point's index in ``budgets`` or ``modules`` (``front`` only).
        method: the gradient-free method (``method`` only).
    """

    name: str
    kind: Kind
    index: int
    budget_index: int | None = None
    method: str | None = None

    def training(self, base: TrainingSettings) -> TrainingSettings:
        """The trial's training settings: ``base`` with its own muons (seed) and no validation."""
        if self.kind == "front":
            assert self.budget_index is not None
            seed = base.seed + 1000 * (self.budget_index + 1) + self.index
        else:
            seed = base.seed + self.index
        return replace(base, seed=seed, validation_volumes=0)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "index": self.index,
            "budget_index": self.budget_index,
            "method": self.method,
        }


@dataclass(frozen=True)
class SweepPlan:
    """The trials of a sweep and how their results are judged.

    Attributes:
        landscape: starts, grouping, tolerance and the front's budgets or module counts (as
            for ``mutomo landscape``).
        methods: gradient-free methods, each run from starts ``0 .. method_seeds - 1``.
        method_seeds: trials per method.
        retries: reruns of a trial whose worker died (Ray's ``max_retries``).
        workers: local Ray CPUs (``None``: all of the machine's).
    """

    landscape: LandscapeSettings
    methods: tuple[str, ...] = ()
    method_seeds: int = 3
    retries: int = 3
    workers: int | None = None

    @classmethod
    def from_config(cls, config: RunConfig) -> SweepPlan:
        s = config.sweep
        return cls(LandscapeSettings.from_options(s), tuple(s.methods), s.method_seeds, s.retries, s.workers)

    def trials(self) -> list[Trial]:
        """Every trial, the landscape's starts first."""
        out = [Trial(f"start_{i:03d}", "start", i) for i in range(self.landscape.starts)]
        for b, k in enumerate(self.landscape.front_points):
            point = f"k{k}" if self.landscape.modules else f"b{b}"
            out += [
                Trial(f"front_{point}_s{j}", "front", j, budget_index=b) for j in range(self.landscape.front_starts)
            ]
        for m in self.methods:
            out += [Trial(f"{m}_s{s}", "method", s, method=m) for s in range(self.method_seeds)]
        return out
