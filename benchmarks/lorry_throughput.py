"""Throughput and peak memory of the lorry_uranium scene with 8 hodoscopes, forward and backward.

One cargo of the built-in ``lorry_uranium`` benchmark (4 x 2.4 x 2.4 m, 10 cm voxels) seen by
8 modules of 3 panels (4 above, 4 below, tiled); the full chain a training step runs: muons
generated over the scene, propagated through the cargo, hits read out (smooth), tracks fitted,
ASR map, presence output; then the backward pass to the module positions. Each size runs in a
fresh process so that its peak resident memory (``ru_maxrss``) is its own.

Run: ``PYTHONPATH=src python benchmarks/lorry_throughput.py [--muons 100000 1000000] [--config border_portal
--modules 6]``; results in benchmarks/README.md (any hodoscope benchmark or configuration file with
``--config``: its task's inference and statistic are the forward pass's).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one(n_muons: int, config: str = "lorry_uranium", modules: int = 8) -> dict[str, float]:
    import torch

    from mutomo.config import load_config
    from mutomo.config.build import build_problem
    from mutomo.optimise.problem import SMOOTH, key_generator
    from mutomo.studies.starts import tiled_for

    problem = build_problem(load_config(config))
    design = tiled_for(problem, modules)
    design.module_xy.requires_grad_(True)
    design.module_z.requires_grad_(True)
    sample = problem.sample((0, 9, 0), index=0)
    base = peak_mib()
    start = time.perf_counter()
    (out,) = problem.observe(design.detector(), sample, n_muons, key_generator((1, 2)), (SMOOTH,))
    loss = out.float().square().sum()
    forward = time.perf_counter() - start
    start = time.perf_counter()
    loss.backward()
    backward = time.perf_counter() - start
    assert design.module_xy.grad is not None and bool(torch.isfinite(design.module_xy.grad).all())
    return {
        "muons": n_muons,
        "forward_s": forward,
        "backward_s": backward,
        "muons_per_s_forward": n_muons / forward,
        "muons_per_s_forward_backward": n_muons / (forward + backward),
        "peak_rss_mib": peak_mib(),
        "rise_mib": peak_mib() - base,
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--muons", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument(
        "--config", default="lorry_uranium", help="built-in benchmark (border_portal) or configuration file"
    )
    parser.add_argument("--modules", type=int, default=8, help="modules in all, tiled (half above, half below)")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.config, args.modules)))
        return
    print(f"{args.config}, {args.modules} modules tiled")
    print("| muons | forward (s) | backward (s) | muons/s fwd | muons/s fwd+bwd | peak RSS (MiB) | threads |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n in args.muons:
        command = [sys.executable, __file__, "--one", str(n), "--config", args.config, "--modules", str(args.modules)]
        run = subprocess.run(command, capture_output=True, text=True)
        if run.returncode != 0:
            print(f"| {n:,} | failed: {run.stderr.strip().splitlines()[-1:]} |")
            continue
        r = json.loads(run.stdout.strip().splitlines()[-1])
        print(
            f"| {n:,} | {r['forward_s']:.1f} | {r['backward_s']:.1f} | {r['muons_per_s_forward']:,.0f} | "
            f"{r['muons_per_s_forward_backward']:,.0f} | {r['peak_rss_mib']:,.0f} | {r['threads']} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
