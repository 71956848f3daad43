"""K designs in one pass against a Python loop over the K, on the same muons.

Two chains, each a full step from generation to the backward pass:

* ``x0``: TomOpt's test geometry (benchmarks/tomopt_geometry.py) with every panel centre of
  design k jittered by 5 cm; extended PoCA and Highland X0 per voxel, MSE of the X0 map.
* ``fill``: the ladle furnace (mutomo.load_benchmark("ladle_furnace"), fill 1.0 m, 5 cm steps), design k
  being the evenly spaced human design with its panel centres jittered by 5 cm; the fill
  statistic (precision-weighted mean PoCA height), squared error to the true fill.

The loop runs the step once per design, each time with the same muons; the batch runs it once
on ``Detector.stack`` of the K. After one untimed round of both at full size (steady state, as
in a loop of optimisation steps), it reports the medians of ``--repeats`` timings, the speed-up,
and the largest relative difference between the K losses of the two ways (they must agree to
float rounding). The process keeps freed memory for reuse (mutomo.runtime.tune_allocator), as
``mutomo optimise`` does.

Usage: python benchmarks/design_batch.py [--chains x0 fill] [--designs 16] [--muons 10000]
       [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import torch

from mutomo.config.build import load_benchmark  # noqa: E402
from mutomo.design.panels import DetectorDesign  # noqa: E402
from mutomo.detector import Detector  # noqa: E402
from mutomo.reco import measure  # noqa: E402
from mutomo.runtime import tune_allocator  # noqa: E402
from mutomo.simulate import simulate  # noqa: E402
from mutomo.studies.reference_geometries import detector, full_step, source, volume
from mutomo.tasks.statistics import poca_height  # noqa: E402

LADLE = load_benchmark("ladle_furnace")
FILL = 1.0
SAMPLES = (LADLE.scene.sample((i,)) for i in range(200))
VOLUME = next(s.volume for s in SAMPLES if s.fill_height is not None and abs(s.fill_height - FILL) < 1e-6)


def fill_step(det: Detector, muons: int, seed: int) -> torch.Tensor:
    """The ``fill`` chain (module docstring); returns the loss, ``(*design,)``, after backward."""
    vol = VOLUME
    r = simulate(det, vol, LADLE.source, muons, torch.Generator().manual_seed(seed), step_length=LADLE.step_length)
    momentum = 0.5 * (r.muons_in.momentum + r.muons_out.momentum)
    data = measure(r.hits_above, r.hits_below, vol, momentum, r.muons_in.weight * (r.muons_out.weight > 0))
    loss = (poca_height(data, vol) - FILL) ** 2
    loss.sum().backward()
    return loss.detach()


def ladle_design(k: int) -> DetectorDesign:
    """The evenly spaced human design with its panel centres jittered by 5 cm (seed k)."""
    design = LADLE.design("human_acceptance", ("xy", "z", "size"), 6000.0)
    assert isinstance(design, DetectorDesign)
    with torch.no_grad():
        design.xy.add_(0.05 * torch.randn(design.xy.shape, generator=torch.Generator().manual_seed(k)))
    return design


def compare(chain: str, designs: int, muons: int, seed: int = 0) -> tuple[float, float, float]:
    """Seconds for the loop, seconds for the batch, largest relative loss difference. The designs
    are built before the clock starts; stacking them is part of the batch's time."""
    if chain == "x0":
        vol, src = volume(), source()
        dets = [detector(jitter=0.05, seed=k) for k in range(designs)]

        def make(k: int) -> Detector:
            return dets[k]

        def step(det: Detector) -> torch.Tensor:
            return full_step(det, vol, src, muons, seed)

    else:
        ladle = [ladle_design(k) for k in range(designs)]

        def make(k: int) -> Detector:  # a design's panels are derived from its parameters, per use
            return ladle[k].detector()

        def step(det: Detector) -> torch.Tensor:
            return fill_step(det, muons, seed)

    start = time.perf_counter()
    loop = torch.stack([step(make(k)) for k in range(designs)])
    loop_s = time.perf_counter() - start
    start = time.perf_counter()
    batch = step(Detector.stack([make(k) for k in range(designs)]))
    batch_s = time.perf_counter() - start
    return loop_s, batch_s, float(((batch - loop).abs() / loop.abs().clamp(min=1e-30)).max())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chains", nargs="+", choices=("x0", "fill"), default=["x0", "fill"])
    parser.add_argument("--designs", type=int, default=16)
    parser.add_argument("--muons", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tune_allocator()
    print(f"# {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {args.threads} threads")
    print(f"# command: {' '.join(sys.argv)}")
    print("| chain | designs | muons | loop (s) | one pass (s) | speed-up | largest relative loss difference |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for chain in args.chains:
        compare(chain, args.designs, args.muons)  # warm-up at full size, not timed
        runs = [compare(chain, args.designs, args.muons) for _ in range(args.repeats)]
        loop_s = statistics.median(r[0] for r in runs)
        batch_s = statistics.median(r[1] for r in runs)
        diff = max(r[2] for r in runs)
        cells = f"{loop_s:.2f} | {batch_s:.2f} | {loop_s / batch_s:.1f}x | {diff:.1e}"
        print(f"| {chain} | {args.designs} | {args.muons:,} | {cells} |")


if __name__ == "__main__":
    main()
