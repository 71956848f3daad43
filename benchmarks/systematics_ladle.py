"""Robust against nominal training on the ladle furnace under every systematic variation (issue 30).

Two designs are trained from the same start for the same epochs on the same volumes: one in the
nominal world, one under domain randomisation (``training.systematics``: each epoch in a world
drawn from the nominal one and the variations). Both, and the start, are then evaluated in the
nominal world and under every variation on the same test volumes and muons, and the paired
differences are written with their envelope and verdicts (``mutomo.optimise.verdict``).

    .venv/bin/python benchmarks/systematics_ladle.py --epochs 300 --volumes 192 \
        --out benchmarks/results/systematics_ladle.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from mutomo.config import build_problem, parse_config
from mutomo.config.build import build_design, evaluation_settings, settings_from
from mutomo.optimise.evaluate import (
    metrics_json,
    observe_design,
    observe_variation,
    paired,
    summarise,
    systematics_json,
)
from mutomo.optimise.loop import optimise
from mutomo.optimise.verdict import systematics_envelope, systematics_lines


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", default="human_acceptance", help="the ladle's design both trainings start from")
    parser.add_argument("--epochs", type=int, default=300, help="training epochs of each design")
    parser.add_argument("--volumes", type=int, default=192, help="test volumes (half as many calibration volumes)")
    parser.add_argument("--muons", type=int, default=None, help="muons per volume (default the ladle's 1000)")
    parser.add_argument("--variations", nargs="+", default=["all"], help="the variations (default all)")
    parser.add_argument("--out", type=Path, default=None, help="JSON file to write")
    args = parser.parse_args(argv)
    base: dict[str, Any] = {
        "extends": "ladle_furnace",
        "design": {"start": args.start},
        "training": {"epochs": args.epochs, "volumes_per_epoch": 8, "validation_volumes": 0, "warmup_epochs": 2},
        "evaluation": {
            "n_volumes": args.volumes,
            "calibration_volumes": max(2, args.volumes // 2),
            "bounds": [],
            "min_hits": [2],
            "systematics": {"variations": args.variations},
        },
    }
    if args.muons is not None:
        base["task"] = {"muons_per_volume": args.muons}
        base["training"]["muons_per_volume"] = args.muons
    designs, training = {}, {}
    for name, systematics in (("nominal", []), ("robust", args.variations)):
        config = parse_config({**base, "training": {**base["training"], "systematics": systematics}})
        problem = build_problem(config)
        design = build_design(config, problem)
        start = time.perf_counter()
        history = optimise(design, problem, settings_from(config, problem), progress=False)
        training[name] = {
            "seconds": time.perf_counter() - start,
            "worlds": sorted({r.variation for r in history.records}),
        }
        print(f"trained {name}: {args.epochs} epochs in {training[name]['seconds']:.0f} s", flush=True)
        designs[name] = design
    config = parse_config(base)
    problem = build_problem(config)
    designs[args.start] = problem.design(args.start, (), None)
    settings = evaluation_settings(config, problem)
    start = time.perf_counter()
    nominal = {n: observe_design(d, problem, settings) for n, d in designs.items()}
    under = {
        v.name: {n: observe_variation(d, problem, settings, v) for n, d in designs.items()}
        for v in settings.systematics
    }
    pairs = [("robust", "nominal"), ("robust", args.start), ("nominal", args.start)]
    result: dict[str, Any] = {
        "set_up": {**vars(args), "out": str(args.out), "training": training},
        "readouts": list(nominal["robust"].test),
        "designs": {
            n: {**metrics_json(summarise(problem, o)), "design": designs[n].describe()} for n, o in nominal.items()
        },
        "paired": {f"{a} - {b}": metrics_json(paired(problem, nominal[a], nominal[b])) for a, b in pairs},
    }
    record = systematics_json(problem, settings, under, pairs)
    result["systematics"] = record
    record["envelope"] = systematics_envelope(result)
    result["set_up"]["evaluation_seconds"] = time.perf_counter() - start
    result["verdicts"] = systematics_lines(result)
    print("\n".join(result["verdicts"]))
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
