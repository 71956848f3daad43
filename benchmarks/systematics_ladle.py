"""Designs under every systematic variation on the ladle furnace (issue 30).

Designs given as files (``--design LABEL=FILE``, e.g. the like-for-like design of ``make demo``)
and designs trained here (``--train nominal robust``: from the same start, for the same epochs, on
the same volumes, the nominal one in the nominal world, the robust one under domain randomisation,
``training.systematics``: each epoch in a world drawn from the nominal one and the variations)
are evaluated with both human designs in the nominal world and under every variation on the same
test volumes and muons. Every design is paired against the better human design (the one with the
lower nominal MSE) and the robust design against the nominal one; the paired differences are
written with their envelope and verdicts (``mutomo.optimise.verdict``).

    .venv/bin/python benchmarks/systematics_ladle.py --config configs/ladle_full_freedom.toml \
        --train nominal robust --save runs/systematics --volumes 960 \
        --design like_for_like=runs/ladle_furnace/design_final.json \
        --out benchmarks/results/systematics_ladle.json

``--train`` with ``--no-evaluation`` only trains and saves (so two trainings can run side by side
and one evaluation reads both with ``--design``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from mutomo.benchrecord import load_average, new_record
from mutomo.config import build_problem, load_config, parse_config
from mutomo.config.build import build_design, evaluation_settings, settings_from
from mutomo.design.base import Design
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

HUMANS = ("human_resolution", "human_acceptance")


def _base(args: argparse.Namespace) -> dict[str, Any]:
    """The configuration as a dictionary, with the evaluation of this study (no bounds, >= 2 hits)."""
    base: dict[str, Any] = load_config(args.config).model_dump(mode="json", exclude_unset=True)
    base.pop("name", None)
    base["training"] = {
        **base.get("training", {}),
        "epochs": args.epochs,
        "validation_volumes": 0,
        "systematics_weighting": args.weighting,
    }
    base["evaluation"] = {
        **base.get("evaluation", {}),
        "n_volumes": args.volumes,
        "calibration_volumes": max(2, args.volumes // 2),
        "bounds": [],
        "min_hits": [2],
        "systematics": {"variations": args.variations},
    }
    if args.muons is not None:
        base["task"] = {**base.get("task", {}), "muons_per_volume": args.muons}
        base["training"]["muons_per_volume"] = args.muons
    return base


def _train(base: dict[str, Any], name: str, variations: list[str], save: Path | None) -> tuple[Design, dict]:
    systematics = [] if name == "nominal" else variations
    config = parse_config({**base, "training": {**base["training"], "systematics": systematics}})
    problem = build_problem(config)
    design = build_design(config, problem)
    start = time.perf_counter()
    history = optimise(design, problem, settings_from(config, problem), progress=False)
    info = {"seconds": time.perf_counter() - start, "worlds": sorted({r.variation for r in history.records})}
    print(f"trained {name}: {config.training.epochs} epochs in {info['seconds']:.0f} s", flush=True)
    if save is not None:
        save.mkdir(parents=True, exist_ok=True)
        (save / f"design_{name}.json").write_text(problem.design_json(design))
        info["file"] = str(save / f"design_{name}.json")
    return design, info


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="ladle_furnace", help="configuration the designs are trained with")
    parser.add_argument("--train", nargs="*", default=[], choices=["nominal", "robust"], help="designs to train")
    parser.add_argument("--design", action="append", default=[], help="LABEL=FILE: a design file (repeatable)")
    parser.add_argument("--save", type=Path, default=None, help="folder for the trained designs' files")
    parser.add_argument("--no-evaluation", action="store_true", help="train (and save) only")
    parser.add_argument("--epochs", type=int, default=300, help="training epochs of each trained design")
    parser.add_argument("--volumes", type=int, default=960, help="test volumes (half as many calibration volumes)")
    parser.add_argument("--muons", type=int, default=None, help="muons per volume (default the configuration's)")
    parser.add_argument("--variations", nargs="+", default=["all"], help="the variations (default all)")
    parser.add_argument(
        "--weighting", default="uniform", choices=["uniform", "normalised"], help="robust training's world weighting"
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON record to write")
    args = parser.parse_args(argv)
    load_at_start = load_average()
    base = _base(args)
    config = parse_config(base)
    problem = build_problem(config)
    designs: dict[str, Design] = {}
    training: dict[str, Any] = {}
    for name in args.train:
        designs[name], training[name] = _train(base, name, args.variations, args.save)
    if args.no_evaluation:
        return {"training": training}
    for entry in args.design:
        label, _, source = entry.rpartition("=")
        designs[label or Path(source).stem] = problem.design(source, (), None, what="--design")
    for human in HUMANS:
        designs[human] = problem.design(human, (), None)
    settings = evaluation_settings(config, problem)
    start = time.perf_counter()
    nominal = {}
    for n, d in designs.items():
        nominal[n] = observe_design(d, problem, settings)
        print(f"observed {n} (nominal world) after {time.perf_counter() - start:.0f} s", flush=True)
    under = {}
    for v in settings.systematics:
        under[v.name] = {n: observe_variation(d, problem, settings, v) for n, d in designs.items()}
        print(f"observed every design under {v.name} after {time.perf_counter() - start:.0f} s", flush=True)
    physical = {n: summarise(problem, o)["physical"]["mse"].value for n, o in nominal.items()}
    human = min(HUMANS, key=lambda h: physical[h])
    pairs = [(n, human) for n in designs if n not in HUMANS]
    if "robust" in designs and "nominal" in designs:
        pairs.append(("robust", "nominal"))
    result: dict[str, Any] = {
        "set_up": {**vars(args), "config": str(args.config), "out": str(args.out), "save": str(args.save)},
        "training": training,
        "better_human": human,
        "readouts": list(nominal[human].test),
        "designs": {
            n: {**metrics_json(summarise(problem, o)), "design": designs[n].describe()} for n, o in nominal.items()
        },
        "paired": {f"{a} - {b}": metrics_json(paired(problem, nominal[a], nominal[b])) for a, b in pairs},
    }
    record = systematics_json(problem, settings, under, pairs)
    result["systematics"] = record
    record["envelope"] = systematics_envelope(result)
    result["evaluation_seconds"] = time.perf_counter() - start
    result["verdicts"] = systematics_lines(result)
    print("\n".join(result["verdicts"]))
    if args.out is not None:
        out = new_record("systematics_ladle", Path(__file__), result, load_at_start)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
