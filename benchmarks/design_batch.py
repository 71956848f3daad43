"""K designs in one pass against a Python loop over the K, on the same muons.

Each of K detectors is TomOpt's test geometry with its panel centres jittered by 5 cm (a
different design each). The loop runs the full step (benchmarks/tomopt_geometry.py) once per
design, each time with the same muons; the batch runs it once on ``Detector.stack`` of the K.
It reports the medians of ``--repeats`` timings, the speed-up, and the largest relative
difference between the K losses of the two ways (they must agree to float rounding).

Usage: python benchmarks/design_batch.py [--designs 16] [--muons 10000] [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tomopt_geometry import detector, full_step, source, volume  # noqa: E402

from mutomo.detector import Detector  # noqa: E402


def compare(designs: int, muons: int, seed: int = 0) -> tuple[float, float, float]:
    """Seconds for the loop, seconds for the batch, largest relative loss difference."""
    vol, src = volume(), source()
    dets = [detector(jitter=0.05, seed=k) for k in range(designs)]
    start = time.perf_counter()
    loop = torch.stack([full_step(d, vol, src, muons, seed) for d in dets])
    loop_s = time.perf_counter() - start
    start = time.perf_counter()
    batch = full_step(Detector.stack(dets), vol, src, muons, seed)
    batch_s = time.perf_counter() - start
    return loop_s, batch_s, float(((batch - loop).abs() / loop.abs()).max())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--designs", type=int, default=16)
    parser.add_argument("--muons", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    compare(2, 1000)  # warm-up, not timed
    runs = [compare(args.designs, args.muons) for _ in range(args.repeats)]
    loop_s = statistics.median(r[0] for r in runs)
    batch_s = statistics.median(r[1] for r in runs)
    print(f"# {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {args.threads} threads")
    print(f"# command: {' '.join(sys.argv)}")
    print("| designs | muons | loop (s) | one pass (s) | speed-up | largest relative loss difference |")
    print("|---:|---:|---:|---:|---:|---:|")
    diff = max(r[2] for r in runs)
    print(f"| {args.designs} | {args.muons:,} | {loop_s:.2f} | {batch_s:.2f} | {loop_s / batch_s:.1f}x | {diff:.1e} |")


if __name__ == "__main__":
    main()
