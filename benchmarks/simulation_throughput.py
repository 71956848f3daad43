"""Throughput and peak memory of the simulation core, generation -> hits below.

Set-up (issue "Foundation"): a 1 m cube of 10 cm iron voxels (z from 0.4 to 1.4 m), 1 cm
steps, 4 panels above and 4 below; muons from the GCCLY15 flux through the acceptance plane.
"forward" is generation + propagation + hits; "forward+backward" also back-propagates a scalar
built from all hits to every panel parameter.

Each run is recorded as JSON in benchmarks/results/simulation_throughput/ (machine, CPU model,
date, git commit, command, load average, numbers; :mod:`mutomo.benchrecord`), or where ``--json``
says; ``make bench-check`` compares a fresh run with the newest record.

Usage: python benchmarks/simulation_throughput.py [--muons 10000 100000 1000000] [--threads 2]
    [--compile] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from pathlib import Path

import torch

from mutomo import runtime
from mutomo.benchrecord import load_average, new_record, write_record
from mutomo.simulate import simulate
from mutomo.studies.reference_geometries import throughput_geometry


def run(n: int, backward: bool, repeats: int) -> float:
    detector, volume, source = throughput_geometry()
    times = []
    for r in range(repeats):
        gen = torch.Generator().manual_seed(r)
        start = time.perf_counter()
        result = simulate(detector, volume, source, n, gen, step_length=0.01)
        if backward:
            loss = sum((h.weight * h.xy.sum(-1)).sum() for h in (result.hits_above, result.hits_below))
            loss.backward()  # type: ignore[union-attr]
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--muons", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="compiled propagation kernels (MUTOMO_COMPILE=1)")
    parser.add_argument("--json", type=Path, help="write the record here instead of benchmarks/results/")
    args = parser.parse_args()
    load_at_start = load_average()
    torch.set_num_threads(args.threads)
    runtime.tune_allocator()  # as mutomo's command line does
    if args.compile:
        runtime.set_compiled_kernels(True)
    print(
        f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    print("| muons | forward (muons/s) | forward+backward (muons/s) | peak RSS (MiB) |")
    print("|---:|---:|---:|---:|")
    rows = []
    for n in args.muons:
        fwd = run(n, False, args.repeats)
        bwd = run(n, True, args.repeats)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"| {n:,} | {n / fwd:,.0f} | {n / bwd:,.0f} | {rss:,.0f} |", flush=True)
        rows.append(
            {"muons": n, "forward_muons_per_s": n / fwd, "forward_backward_muons_per_s": n / bwd, "peak_rss_mib": rss}
        )
    compiled = runtime.compiled_kernels_enabled()
    settings = {"threads": torch.get_num_threads(), "repeats": args.repeats, "compiled": compiled}
    record = new_record("simulation_throughput", Path(__file__), {"settings": settings, "rows": rows}, load_at_start)
    if args.json is not None:
        args.json.write_text(json.dumps(record, indent=2) + "\n")
        print(f"# record: {args.json}")
    else:
        print(f"# record: {write_record(record, Path(__file__).resolve().parent / 'results')}")


if __name__ == "__main__":
    main()
