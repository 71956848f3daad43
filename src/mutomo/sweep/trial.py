"""One trial of a sweep, run where a Ray worker runs it, checkpointed so that a rerun resumes.

A trial's folder ``trials/NAME/`` holds:

* ``attempts.jsonl``: one line per attempt (process id, host, start time, and the checkpoint
  it resumed from);
* a gradient trial's ``checkpoints/`` (:mod:`mutomo.optimise.checkpoint`: one per epoch, the
  newest kept, checksummed): a rerun continues from the newest readable one, to the same
  design as an uninterrupted run;
* a gradient-free trial's ``calls.jsonl``: every objective call's vector and value. The
  methods are deterministic given their seed and the values they are told, so a rerun replays
  the logged calls (checking that it asks for the same vectors) and goes on from the first
  call not logged, with that call's batch;
* ``result.json``, written last and atomically: a trial that has one is done, and a rerun
  returns it without work.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mutomo.config.build import build_design, build_problem, settings_from, with_sizes
from mutomo.config.schema import RunConfig
from mutomo.design.base import Design
from mutomo.design.hodoscopes import HodoscopeDesign
from mutomo.design.panels import DetectorDesign
from mutomo.errors import MutomoError
from mutomo.io.files import write_atomic
from mutomo.optimise.checkpoint import checkpoints
from mutomo.optimise.loop import TrainingSettings, optimise
from mutomo.optimise.problem import Problem
from mutomo.studies.baselines import search
from mutomo.studies.landscape import front_starts, landscape_starts
from mutomo.studies.search import DesignVector, design_objective
from mutomo.sweep.plan import SweepPlan, Trial


@dataclass
class Setting:
    """What every trial of a sweep shares: the problem, the template design (free panels or
    hodoscope modules) and the training settings (before each trial's own seed)."""

    problem: Problem
    template: DetectorDesign | HodoscopeDesign
    training: TrainingSettings


def setting(config: RunConfig, overrides: dict[str, int] | None = None) -> Setting:
    """Build the problem, the template design and the base training settings of ``config``
    (``overrides``: ``epochs``, ``volumes_per_epoch``, ``muons_per_volume``)."""
    problem = build_problem(config)
    template = build_design(config, problem)
    if not isinstance(template, DetectorDesign | HodoscopeDesign):
        raise MutomoError(
            f"design.start must be a design of free panels or of hodoscope modules for a sweep; got "
            f"{type(template).__name__}"
        )
    training = with_sizes(replace(settings_from(config, problem), validation_volumes=0), overrides)
    return Setting(problem, template, training)


def start_design(trial: Trial, plan: SweepPlan, template: Design, problem: Problem) -> Design:
    """The trial's starting design (a ``method`` trial starts where ``start_S`` starts)."""
    if trial.kind == "front":
        assert trial.budget_index is not None
        return front_starts(template, plan.landscape, problem.scene.box)[trial.budget_index][trial.index]
    return landscape_starts(template, plan.landscape)[trial.index]


def _attempt(folder: Path) -> int:
    """Log this attempt; returns its number (1 for the first)."""
    log = folder / "attempts.jsonl"
    previous = log.read_text().splitlines() if log.exists() else []
    found = checkpoints(folder)
    entry = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.time(),
        "resumed_from": found[0].name if found else None,
        "calls_logged": len(_read_calls(folder)),
    }
    with open(log, "a") as f:
        f.write(json.dumps(entry) + "\n")
        f.flush()
        os.fsync(f.fileno())
    return len(previous) + 1


def _read_calls(folder: Path) -> list[dict[str, Any]]:
    """The logged calls of a gradient-free trial; a line cut short by a kill is dropped."""
    path = folder / "calls.jsonl"
    if not path.exists():
        return []
    calls = []
    for line in path.read_text().splitlines():
        try:
            calls.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return calls


class ReplayedObjective:
    """A gradient-free trial's objective, checkpointed call by call (see the module docstring).

    Args:
        make: ``first_call -> objective`` whose call ``n`` uses the batch of call
            ``first_call + n`` (:func:`~mutomo.studies.baselines.design_objective`).
        folder: the trial's folder (``calls.jsonl``).
    """

    def __init__(self, make: Callable[[int], Callable[[np.ndarray], float]], folder: Path) -> None:
        self.make, self.path = make, folder / "calls.jsonl"
        self.logged = _read_calls(folder)
        self.calls, self.replayed = 0, 0
        self.live: Callable[[np.ndarray], float] | None = None
        if self.logged:  # rewrite without a line cut short by a kill
            write_atomic(self.path, "".join(json.dumps(c) + "\n" for c in self.logged))

    def __call__(self, x: np.ndarray) -> float:
        n = self.calls
        self.calls += 1
        if self.live is None and n < len(self.logged) and np.allclose(self.logged[n]["x"], x, rtol=0, atol=1e-12):
            self.replayed += 1
            value = self.logged[n]["value"]
            return math.inf if value is None else float(value)
        if self.live is None:
            if n < len(self.logged):  # the method asks for another vector: the log ends here
                print(f"warning: {self.path}: call {n} differs from the log; re-evaluating from there", file=sys.stderr)
                write_atomic(self.path, "".join(json.dumps(c) + "\n" for c in self.logged[:n]))
            self.live = self.make(n)
        value = float(self.live(x))
        with open(self.path, "a") as f:
            f.write(json.dumps({"x": [float(v) for v in x], "value": value if math.isfinite(value) else None}) + "\n")
        return value


def run_trial(
    config: RunConfig,
    plan: SweepPlan,
    trial: Trial,
    trial_dir: str,
    overrides: dict[str, int] | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Run (or resume, or read back) one trial; returns its ``result.json`` content:
    ``trial``, ``status`` ("done"), ``design`` and ``start`` (descriptions), ``muons``
    simulated, ``seconds`` of the last attempt, ``attempts`` and, for a gradient-free trial,
    ``value`` (best objective seen), ``calls`` and ``replayed``.

    ``threads``: torch's intra-op threads (a Ray worker is given one CPU: 1)."""
    folder = Path(trial_dir)
    folder.mkdir(parents=True, exist_ok=True)
    done = folder / "result.json"
    if done.exists():
        return dict(json.loads(done.read_text()))
    if threads is not None:
        torch.set_num_threads(threads)
    attempt = _attempt(folder)
    t0 = time.perf_counter()
    s = setting(config, overrides)
    design = start_design(trial, plan, s.template, s.problem)
    start = design.describe()
    training = trial.training(s.training)
    per_call = training.volumes_per_epoch * training.muons_per_volume
    result: dict[str, Any] = {"trial": trial.as_json(), "status": "done", "start": start, "attempts": attempt}
    if trial.kind == "method":
        assert trial.method is not None
        assert isinstance(design, DetectorDesign | HodoscopeDesign)
        vector = DesignVector(design)
        x0 = vector.get()

        def make(first: int) -> Callable[[np.ndarray], float]:
            return design_objective(design, s.problem, training, vector=vector, first_call=first)[0]

        objective = ReplayedObjective(make, folder)
        found = search(
            trial.method,
            objective,
            vector.bounds,
            training.epochs * per_call,
            muons_per_call=per_call,
            seed=trial.index,
            x0=x0,
        )
        vector.set_(found.x)
        value = found.value if math.isfinite(found.value) else None
        result |= {"value": value, "calls": found.calls, "replayed": objective.replayed, "muons": found.muons}
    else:
        optimise(design, s.problem, training, run_dir=folder, resume=True, progress=False)
        result["muons"] = training.epochs * per_call
    result |= {"design": design.describe(), "seconds": time.perf_counter() - t0}
    write_atomic(done, json.dumps(result, indent=1))
    return result
