"""Gradients against gradient-free methods at three problem sizes, on the same objective and muons.

The ladle furnace (mutomo.load_benchmark("ladle_furnace")) under its fixed budget
(6000, eight 0.866 m panels' worth), at three sizes by number of free parameters:

* ``8``: 4 + 4 panels, heights only (spans fixed at the human designs' 0.866 m);
* ``32``: 4 + 4 panels, x, y, z and budget share of each;
* ``128``: 16 + 16 panels, x, y, z and budget share of each (the same budget shared by 32).

For every seed, one start is drawn uniformly within the region (mutomo.design.stacked.
random_starts, seeded by the seed) and every method starts there (CMA-ES's mean; random search
and TPE draw from the whole box). The gradient run (mutomo.optimise.optimise: Adam, the
configuration's learning rates, warm-up and cosine decay, Bernoulli-sampled hits) takes
``--epochs`` steps of ``--volumes`` volumes x ``--muons`` muons; every gradient-free method
(mutomo.studies.baselines) gets the same muons: ``--epochs`` calls of the same training loss
without gradients, call n on the gradient run's epoch-n batch (the same volumes and muons),
panel edges at the annealing's final width. Every final design, the start and the human
designs are then judged on the physical readout (hard edges, Bernoulli hits, 2 hits a side)
on the same ``--eval-volumes`` test volumes and muons (designs of one layout in one stacked
pass), the calibration line fitted on ``--calibration-volumes`` calibration volumes (480, as the
shipped ladle evaluation): the mean squared error of the fill height (m^2) with its standard
error, which includes the calibration line's. The table gives, per size and method, the mean over
seeds with the spread (sample standard deviation over seeds), the mean of the per-seed standard
errors, muons simulated (design-muons: a muon through one design counts once) and wall time;
then the paired difference of each method to the gradient run (same volumes and muons), per seed.

Run: ``PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/methods_table.py [--sizes 8 32 128]
[--seeds 0 1 2] [--methods gradient random cma tpe] [--epochs 40] [--volumes 8] [--muons 500]
[--eval-volumes 64] [--calibration-volumes 480] [--out benchmarks/results/methods_table.json]``;
results in benchmarks/README.md. ``--reevaluate FILE...`` judges the designs saved in earlier
result files again (same evaluation options, no training; muons and wall times kept) and writes
them to ``--out``.
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

from mutomo.config.build import load_benchmark, settings_from
from mutomo.config.schema import load_config
from mutomo.design.panels import DetectorDesign
from mutomo.optimise.evaluate import EvaluationSettings
from mutomo.optimise.loop import TrainingSettings, optimise
from mutomo.optimise.problem import Problem
from mutomo.studies.baselines import search
from mutomo.studies.methods import LADLE_BUDGET as BUDGET
from mutomo.studies.methods import copy_panels, even_panels, judge_methods
from mutomo.studies.search import DesignVector, design_objective
from mutomo.studies.starts import random_starts

SIZES = {8: (4, ("z",)), 32: (4, ("xy", "z", "size")), 128: (16, ("xy", "z", "size"))}


def run_size(
    problem: Problem, size: int, seed: int, methods: list[str], training: TrainingSettings
) -> dict[str, dict[str, Any]]:
    per_side, trainable = SIZES[size]
    start = random_starts(even_panels(problem, per_side, trainable), 1, seed=seed)[0]
    settings = replace(training, seed=seed)
    out: dict[str, dict[str, Any]] = {}
    for method in methods:
        design = copy_panels(start)
        t0 = time.perf_counter()
        if method == "gradient":
            optimise(design, problem, settings, progress=False)
            muons = settings.epochs * settings.volumes_per_epoch * settings.muons_per_volume
        else:
            vector = DesignVector(design)
            assert len(vector) == size, (len(vector), size)
            objective, per_call = design_objective(design, problem, settings, vector=vector)
            budget = settings.epochs * per_call
            result = search(
                method, objective, vector.bounds, budget, muons_per_call=per_call, seed=seed, x0=vector.get()
            )
            vector.set_(result.x)
            muons = result.muons
        out[method] = {"design": design, "muons": muons, "seconds": time.perf_counter() - t0}
        print(f"  size {size} seed {seed} {method}: {out[method]['seconds']:.0f} s", file=sys.stderr, flush=True)
    out["start"] = {"design": start, "muons": 0, "seconds": 0.0}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 32, 128], choices=sorted(SIZES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=["gradient", "random", "cma", "tpe"])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--volumes", type=int, default=8)
    parser.add_argument("--muons", type=int, default=500)
    parser.add_argument("--eval-volumes", type=int, default=64)
    parser.add_argument("--calibration-volumes", type=int, default=480)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/methods_table.json"))
    parser.add_argument(
        "--reevaluate", type=Path, nargs="+", default=None, help="judge the designs of these result files again"
    )
    parser.add_argument(
        "--table", type=Path, nargs="+", default=None, help="only print the table of these result files (no runs)"
    )
    args = parser.parse_args()
    if args.table:
        print(table([{"epochs": d["args"]["epochs"], **r} for d in map(load_json, args.table) for r in d["records"]]))
        return
    torch.set_num_threads(1)
    problem = load_benchmark("ladle_furnace")
    base = settings_from(load_config("ladle_furnace"), problem)
    training = replace(
        base, epochs=args.epochs, volumes_per_epoch=args.volumes, muons_per_volume=args.muons, validation_volumes=0
    )
    evaluation = EvaluationSettings(
        n_volumes=args.eval_volumes, calibration_volumes=args.calibration_volumes, min_hits=(2,)
    )
    if args.reevaluate:
        reevaluate(problem, evaluation, args)
        return
    humans = {name: problem.design(name, (), BUDGET) for name in ("human_resolution", "human_acceptance")}
    records: list[dict[str, Any]] = []
    for size in args.sizes:
        for seed in args.seeds:
            runs = run_size(problem, size, seed, args.methods, training)
            runs |= {name: {"design": d, "muons": 0, "seconds": 0.0} for name, d in humans.items()}
            records += judge_methods(problem, evaluation, size, seed, args.epochs, runs)
            save(args, records)
    print(f"# {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, 1 thread")
    print(f"# command: {' '.join(sys.argv)}")
    print(table(records))


def load_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def save(args: argparse.Namespace, records: list[dict[str, Any]]) -> None:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    arguments = {k: [str(p) for p in v] if k == "reevaluate" and v else v for k, v in vars(args).items()}
    args.out.write_text(json.dumps({"args": arguments | {"out": str(args.out)}, "records": records}, indent=1))


def reevaluate(problem: Problem, evaluation: EvaluationSettings, args: argparse.Namespace) -> None:
    """Judge the designs saved in ``args.reevaluate`` again with ``evaluation`` (no training)."""
    records: list[dict[str, Any]] = []
    for path in args.reevaluate:
        data = json.loads(path.read_text())
        epochs = data["args"]["epochs"]
        groups: dict[tuple[int, int], dict[str, dict[str, Any]]] = {}
        for r in data["records"]:
            design = DetectorDesign.from_description(r["design"], problem.cost_model)
            run = {"design": design, "muons": r["muons"], "seconds": r["seconds"]}
            # surrogate_vs_gradient.py's records (no size) are the 8-parameter ladle of this table
            groups.setdefault((r.get("size", 8), r["seed"]), {})[r["method"]] = run
        for (size, seed), runs in groups.items():
            t0 = time.perf_counter()
            records += judge_methods(problem, evaluation, size, seed, epochs, runs)
            save(args, records)
            seconds = time.perf_counter() - t0
            print(f"  {path.name} size {size} seed {seed}: {seconds:.0f} s", file=sys.stderr, flush=True)
    print(f"# command: {' '.join(sys.argv)}")
    print(table(records))


def table(records: list[dict[str, Any]]) -> str:
    """The markdown table: per size, epochs (budget) and method, the mean (spread) over the seeds
    whose design has a metric, how many have one, the mean standard error, muons and seconds;
    then the paired differences to the gradient run, per seed."""
    lines = [
        "| free parameters | method | muons simulated (budget) | physical MSE (m^2): mean over seeds | spread (s.d.) "
        "| mean s.e. | seeds with a metric | wall time (s) | minus gradient, per seed (paired, +- s.e.) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    keys = sorted({(r["size"], r.get("epochs", 0)) for r in records})
    for size, epochs in keys:
        group = [r for r in records if r["size"] == size and r.get("epochs", 0) == epochs]
        for method in dict.fromkeys(r["method"] for r in group):
            rs = [r for r in group if r["method"] == method]
            values = np.array([np.nan if r["mse"][0] is None else r["mse"][0] for r in rs], dtype=float)
            errors = np.array([np.nan if r["mse"][1] is None else r["mse"][1] for r in rs], dtype=float)
            ok = np.isfinite(values)
            spread = values[ok].std(ddof=1) if ok.sum() > 1 else float("nan")
            diffs = " ; ".join(
                "n/a"
                if r["minus_gradient"] is None
                or r["minus_gradient"][0] is None
                or not np.isfinite(r["minus_gradient"][0])
                else f"{r['minus_gradient'][0]:+.4f} +- {r['minus_gradient'][1]:.4f}"
                for r in rs
            )
            used = int(np.mean([r["muons"] for r in rs]))
            lines.append(
                f"| {size} | {method} | {f'{used:,}' if used else '0'} "
                f"| {np.nanmean(values) if ok.any() else float('nan'):.4f} | {spread:.4f} "
                f"| {np.nanmean(errors) if ok.any() else float('nan'):.4f} | {int(ok.sum())}/{len(rs)} "
                f"| {np.mean([r['seconds'] for r in rs]):.0f} | {diffs if method != 'gradient' else ''} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
