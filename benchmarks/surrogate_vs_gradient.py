"""The local surrogate against the exact gradient, where both exist, and where only one does.

The ladle furnace (mutomo.load_benchmark("ladle_furnace")) at methods_table.py's
8-parameter size (4 + 4 panels, heights only, 0.866 m spans, its fixed budget of 6000). For
every seed, one start is drawn uniformly within the region (mutomo.design.stacked.
random_starts, seeded by the seed) and every run starts there, with the same muons:

* ``gradient``: mutomo.optimise.optimise (Adam, the configuration's learning rates, warm-up,
  cosine decay, annealed edges, Bernoulli-sampled hits), ``--epochs`` steps of ``--volumes``
  volumes x ``--muons`` muons;
* ``surrogate_smooth``: mutomo.studies.surrogate.surrogate_search on the same smooth training
  loss (edges at the annealing's final width, sampled hits) without gradients: calls of
  ``--volumes`` volumes x ``--surrogate-muons`` muons, the ``--n`` calls of one iteration on
  one batch (common random numbers), as many calls as the gradient run's muons pay for;
* ``surrogate_physical``: the same on the loss of the *physical* readout (hard edges, Bernoulli
  hits, 2 hits a side), which autograd cannot differentiate in the panel heights (the
  acceptance jumps where a muon's crossing leaves a panel; only the hit positions move
  smoothly).

Where both exist, the surrogate's gradient is also compared with autograd's on the *same* batch
(``--volumes`` x ``--muons``; smooth loss): the cosine at the start, at the gradient run's final
design and at a further random design, for ``--n`` points in the search's trust region and in
the smaller ones of ``--cosine-radii`` (autograd's is the derivative at the point, with panel
edges 5 mm wide; the surrogate's that of the loss averaged over its trust region, which
approaches it as the region shrinks), and ``2 --n`` points in the search's; for scale, the
cosine between autograd's gradients on two different batches (the stochastic-gradient noise the
gradient run lives with).

Every final design, the start and the human designs are judged as in methods_table.py: on the
physical readout of ``--eval-volumes`` test volumes of 1000 muons (calibration line on
``--calibration-volumes``, 480), the mean squared error of the fill height (m^2) with its
standard error (the calibration line's included),
and the paired difference of each design to the gradient run's (same volumes and muons).

Run: ``PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/surrogate_vs_gradient.py [--seeds 0 1]
[--epochs 150] [--volumes 8] [--muons 500] [--surrogate-muons 125] [--n 16] [--eval-volumes 96]
[--calibration-volumes 480] [--out benchmarks/results/surrogate_vs_gradient.json]``; results in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mutomo.config.build import load_benchmark
from mutomo.config.schema import load_config
from mutomo.design.panels import DetectorDesign
from mutomo.optimise.evaluate import EvaluationSettings
from mutomo.optimise.loop import (
    TrainingSettings,
    optimise,
    training_batch_loss,
)
from mutomo.optimise.problem import (
    Problem,
    Readout,
)
from mutomo.studies.methods import LADLE_BUDGET as BUDGET
from mutomo.studies.methods import copy_panels, even_panels, judge_methods
from mutomo.studies.search import DesignVector, design_objective
from mutomo.studies.starts import random_starts
from mutomo.studies.surrogate import surrogate_gradient, surrogate_search

PHYSICAL = Readout(physical=True, min_hits=2)
TRAINABLE = ("z",)


def autograd_gradient(design: DetectorDesign, problem: Problem, settings: TrainingSettings, epoch: int) -> np.ndarray:
    """d(training loss of batch ``epoch``)/d(panel heights), by autograd (edges at the final width)."""
    d = copy_panels(design)
    d.smoothness = settings.smoothness[1]
    d.z.grad = None
    training_batch_loss(d, problem, settings, epoch, problem.task.loss).total.backward()
    assert d.z.grad is not None
    return d.z.grad.detach().double().numpy().copy()


def gradient_cosines(
    design: DetectorDesign,
    problem: Problem,
    settings: TrainingSettings,
    n: int,
    radii: list[float],
    seed: int,
) -> dict[str, float]:
    """Cosines of the surrogate's gradient with autograd's on batch 0: ``n`` points at each trust
    region half-width of ``radii`` (fractions of the box; the first is the search's), ``2 n`` at
    the first; and of autograd's gradients on batches 0 and 1 with each other."""
    exact = autograd_gradient(design, problem, settings, 0)
    other = autograd_gradient(design, problem, settings, 1)
    d = copy_panels(design)
    d.smoothness = settings.smoothness[1]
    vector = DesignVector(d)

    def on_batch_0(x: np.ndarray) -> float:
        vector.set_(x)
        with torch.no_grad():
            return float(training_batch_loss(d, problem, settings, 0, problem.task.loss).total)

    out = {"autograd_batch0_vs_batch1": cosine(exact, other), "autograd_norm": float(np.linalg.norm(exact))}
    for radius, points in [(r, n) for r in radii] + [(radii[0], 2 * n)]:
        estimate = surrogate_gradient(on_batch_0, vector.get(), radius, points, bounds=vector.bounds, seed=seed)
        out[f"surrogate_r{radius:g}_n{points}"] = cosine(estimate, exact)
        out[f"surrogate_r{radius:g}_n{points}_norm_ratio"] = float(np.linalg.norm(estimate) / np.linalg.norm(exact))
    return out


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def run_seed(problem: Problem, seed: int, training: TrainingSettings, args: argparse.Namespace) -> dict[str, Any]:
    """The three runs from one start; the gradient cosines at three designs."""
    start = random_starts(even_panels(problem, 4, TRAINABLE), 1, seed=seed)[0]
    settings = replace(training, seed=seed)
    muons = settings.epochs * settings.volumes_per_epoch * settings.muons_per_volume
    runs: dict[str, dict[str, Any]] = {"start": {"design": start, "muons": 0, "seconds": 0.0}}
    t0 = time.perf_counter()
    design = copy_panels(start)
    optimise(design, problem, settings, progress=False)
    runs["gradient"] = {"design": design, "muons": muons, "seconds": time.perf_counter() - t0}
    per_call = settings.volumes_per_epoch * args.surrogate_muons
    iterations = muons // per_call // args.n
    surrogate_settings = replace(settings, epochs=iterations, muons_per_volume=args.surrogate_muons)
    for name, readout in (("surrogate_smooth", None), ("surrogate_physical", PHYSICAL)):
        t0 = time.perf_counter()
        design = copy_panels(start)
        vector = DesignVector(design)
        objective, per_call = design_objective(
            design, problem, surrogate_settings, vector=vector, readout=readout, calls_per_batch=args.n
        )
        result = surrogate_search(
            objective,
            vector.bounds,
            muons,
            muons_per_call=per_call,
            seed=seed,
            x0=vector.get(),
            radius=args.radius,
            n=args.n,
            lr=args.lr,
        )
        vector.set_(result.x)
        runs[name] = {"design": design, "muons": result.muons, "seconds": time.perf_counter() - t0}
        print(f"  seed {seed} {name}: {runs[name]['seconds']:.0f} s", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    elsewhere = random_starts(even_panels(problem, 4, TRAINABLE), 1, seed=1000 + seed)[0]
    assert isinstance(elsewhere, DetectorDesign)
    cosines = {}
    for where, d in (("start", start), ("gradient_final", runs["gradient"]["design"]), ("random", elsewhere)):
        assert isinstance(d, DetectorDesign)
        cosines[where] = gradient_cosines(d, problem, settings, args.n, [args.radius, *args.cosine_radii], seed)
    print(f"  seed {seed} cosines: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return {"runs": runs, "cosines": cosines}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--volumes", type=int, default=8)
    parser.add_argument("--muons", type=int, default=500)
    parser.add_argument("--surrogate-muons", type=int, default=125, help="muons per volume in a surrogate call")
    parser.add_argument("--n", type=int, default=16, help="surrogate points per iteration")
    parser.add_argument("--radius", type=float, default=0.05, help="trust-region half-width (fraction of the box)")
    parser.add_argument(
        "--cosine-radii", type=float, nargs="*", default=[0.01, 0.002], help="smaller trust regions for the cosines"
    )
    parser.add_argument("--lr", type=float, default=0.05, help="surrogate Adam learning rate (fraction of the box)")
    parser.add_argument("--eval-volumes", type=int, default=96)
    parser.add_argument("--calibration-volumes", type=int, default=480)
    parser.add_argument("--eval-muons", type=int, default=None, help="test muons per volume (default the task's)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/surrogate_vs_gradient.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    problem = load_benchmark("ladle_furnace")
    if args.eval_muons is not None:
        problem = replace(problem, n_muons=args.eval_muons)
    base = settings_from_config(problem)
    training = replace(
        base, epochs=args.epochs, volumes_per_epoch=args.volumes, muons_per_volume=args.muons, validation_volumes=0
    )
    evaluation = EvaluationSettings(
        n_volumes=args.eval_volumes, calibration_volumes=args.calibration_volumes, min_hits=(2,)
    )
    humans = {name: problem.design(name, (), BUDGET) for name in ("human_resolution", "human_acceptance")}
    records: list[dict[str, Any]] = []
    cosines: dict[str, Any] = {}
    for seed in args.seeds:
        result = run_seed(problem, seed, training, args)
        runs = result["runs"] | {name: {"design": d, "muons": 0, "seconds": 0.0} for name, d in humans.items()}
        records += judge_methods(problem, evaluation, 8, seed, args.epochs, runs)
        cosines[str(seed)] = result["cosines"]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        out = {"args": vars(args) | {"out": str(args.out)}, "records": records, "cosines": cosines}
        args.out.write_text(json.dumps(out, indent=1))
    print(f"# {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, 1 thread")
    print(f"# command: {' '.join(sys.argv)}")
    print(table(records, cosines))
    return out


def settings_from_config(problem: Problem) -> TrainingSettings:
    from mutomo.config.build import settings_from

    return settings_from(load_config("ladle_furnace"), problem)


def table(records: list[dict[str, Any]], cosines: dict[str, Any]) -> str:
    """Markdown: per method, each seed's physical MSE and paired difference to the gradient run;
    then the gradient cosines per seed and design."""
    lines = [
        "| method | muons | wall (s) | physical MSE (m^2), per seed (+- s.e.) | minus gradient, per seed (paired) |",
        "|---|---:|---:|---|---|",
    ]
    for method in dict.fromkeys(r["method"] for r in records):
        rs = [r for r in records if r["method"] == method]
        mse = " ; ".join(f"{r['mse'][0]:.4f} +- {r['mse'][1]:.4f}" for r in rs)
        diff = " ; ".join(f"{r['minus_gradient'][0]:+.4f} +- {r['minus_gradient'][1]:.4f}" for r in rs)
        used = int(np.mean([r["muons"] for r in rs]))
        wall = np.mean([r["seconds"] for r in rs])
        lines.append(f"| {method} | {used:,} | {wall:.0f} | {mse} | {diff if method != 'gradient' else ''} |")
    lines += [
        "",
        "| seed | design | half-width (box) | points | cos(surrogate, autograd) | norm ratio | cos(autograd b0, b1) |",
    ]
    lines.append("|---:|---|---:|---:|---:|---:|---:|")
    for seed, by_design in cosines.items():
        for where, c in by_design.items():
            for key in (k for k in c if k.startswith("surrogate_") and not k.endswith("ratio")):
                radius, points = key.split("_")[1][1:], key.split("_")[2][1:]
                lines.append(
                    f"| {seed} | {where} | {radius} | {points} | {c[key]:.3f} | {c[key + '_norm_ratio']:.2f} "
                    f"| {c['autograd_batch0_vs_batch1']:.3f} |"
                )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
