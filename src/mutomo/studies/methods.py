"""Gradients against gradient-free methods, on the same objective and muons: the designs such a
comparison starts from and how its finished designs are judged (``benchmarks/methods_table.py``,
``benchmarks/surrogate_vs_gradient.py`` and ``benchmarks/loss_smoothness.py`` are scripts over
this module)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from mutomo.design.base import Design
from mutomo.design.panels import DetectorDesign
from mutomo.design.stacked import copy_design
from mutomo.errors import MutomoError
from mutomo.optimise.evaluate import EvaluationSettings, paired, summarise
from mutomo.optimise.problem import Problem
from mutomo.studies.landscape import observe_designs

LADLE_BUDGET = 6000.0
"""The ladle furnace's fixed budget (``configs`` ``ladle_furnace``: eight 0.866 m panels' worth)."""


def even_panels(
    problem: Problem, per_side: int, trainable: Sequence[str], budget: float = LADLE_BUDGET
) -> DetectorDesign:
    """``per_side`` panels a side at the scene's centre line (x = y = 0.5 m, the ladle's),
    evenly over each side's allowed heights, equal shares of ``budget`` (the span of eight
    0.866 m panels' worth scaled to ``2 per_side`` panels)."""
    b = problem.bounds
    z_above = np.linspace(b.z_above[1], b.z_above[0], per_side)
    z_below = np.linspace(b.z_below[1], b.z_below[0], per_side)
    n = 2 * per_side
    return DetectorDesign(
        xy=[[0.5, 0.5]] * n,
        z=[*z_above, *z_below],
        n_above=per_side,
        span=0.866 * math.sqrt(8 / n),
        resolution=1e-4,
        efficiency=0.9,
        bounds=b,
        budget=budget,
        cost_model=problem.cost_model,
        trainable=trainable,
    )


def judge_methods(
    problem: Problem, evaluation: EvaluationSettings, size: int, seed: int, epochs: int, runs: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """The records of one size and seed: every design (``runs[name]["design"]``, with its
    ``muons`` and ``seconds``) judged on the same volumes and muons (the physical readout's fill
    MSE, m^2), and paired against the ``"gradient"`` run when there is one."""
    obs = dict(zip(runs, observe_designs([r["design"] for r in runs.values()], problem, evaluation), strict=True))
    records = []
    for name, run in runs.items():
        metric = summarise(problem, obs[name])["physical"]["mse"]
        diff = paired(problem, obs[name], obs["gradient"])["physical"]["mse"] if "gradient" in obs else None
        records.append(
            {
                "size": size,
                "seed": seed,
                "method": name,
                "mse": metric.as_list(),
                "minus_gradient": None if diff is None else diff.as_list(),
                "epochs": epochs,
                "muons": run["muons"],
                "seconds": run["seconds"],
                "design": run["design"].describe(),
            }
        )
    return records


def copy_panels(design: Design) -> DetectorDesign:
    """A fresh copy of a design of free panels, its fixed budget kept (every method of a
    comparison starts from its own copy of the same start)."""
    out = copy_design(design, design.budget)
    if not isinstance(out, DetectorDesign):
        raise MutomoError(f"copy_panels needs a DetectorDesign; got {type(design).__name__}")
    return out
