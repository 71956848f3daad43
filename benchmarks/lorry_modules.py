"""How many hodoscope modules are worth it? The lorry_uranium benchmark with K = 2..8 modules.

For each K, the modules are tiled by the human rule
(:func:`mutomo.design.hodoscopes.tiled_placement`: ceil(K/2) above the lorry and floor(K/2) in
the pit below, evenly over the cargo's footprint: up to four along its length, then a second row
across its width), and evaluated on the same test volumes and muons (paired) for a scan of
the task's exposure (60 s): AUC, detection efficiency at 1 % false alarm, each with its error,
and the cost (K x the module's price). Physical readout with a trigger of three hits a side.

Run: ``PYTHONPATH=src python benchmarks/lorry_modules.py [--volumes 32] [--references 8]
[--out benchmarks/results/lorry_modules.json]``; results in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from mutomo.config.build import load_benchmark
from mutomo.optimise.evaluate import EvaluationSettings, observe_design, summarise
from mutomo.studies.starts import tiled_for


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=32, help="test volumes (half with uranium)")
    parser.add_argument("--references", type=int, default=8, help="clean reference cargos")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/lorry_modules.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    problem = load_benchmark("lorry_uranium")
    settings = EvaluationSettings(
        n_volumes=args.volumes, calibration_volumes=args.references, min_hits=(3,), exposure_factors=(1.0,)
    )
    rows = []
    print(f"lorry_uranium, {problem.exposure_s:.0f} s scan, {args.volumes} test cargos, {args.references} references")
    print(f"{'K':>2s} {'cost':>8s} {'AUC':>15s} {'efficiency @ 1% FA':>20s} {'seconds':>8s}")
    for k in range(2, 9):
        start = time.perf_counter()
        design = tiled_for(problem, k)
        metrics = summarise(problem, observe_design(design, problem, settings))["physical_min3"]
        auc, eff = metrics["auc"], metrics["efficiency_at_false_alarm"]
        row = {
            "K": k,
            "cost": float(design.cost()),
            "auc": auc.as_list(),
            "efficiency_at_false_alarm": eff.as_list(),
            "seconds": time.perf_counter() - start,
            "centres": design.centres.tolist(),
        }
        rows.append(row)
        print(
            f"{k:2d} {row['cost']:8.0f} {auc.value:7.3f} +- {auc.error:5.3f} {eff.value:9.3f} +- {eff.error:5.3f}"
            f" {row['seconds']:8.0f}",
            flush=True,
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"exposure_s": problem.exposure_s, "rows": rows}, indent=1))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
