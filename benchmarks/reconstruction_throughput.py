"""Throughput and memory of reconstruction, from hits to a per-voxel map.

Set-up: as in simulation_throughput.py (1 m iron cube in 10 cm voxels, 4 + 4 panels, GCCLY15
muons up to 45 deg). The hits are simulated once per row, outside the timing. Chains:

* ``poca+bin``: both track fits, PoCA (no covariance), binned voxel assignment;
* ``poca+x0``: fits, PoCA, binned assignment and the Highland X0 inference per voxel;
* ``extended+x0``: fits, PoCA with its propagated covariance, extended PoCA over 3x3x3 voxels
  and the Highland X0 inference;
* ``asr``: fits, deflections, ASR voxel triggering and per-voxel median;
* ``bca``: fits, PoCA, binned clustering (30 PoCAs per voxel).

forward+backward adds the backward pass of the sum of the map to every panel parameter. Each
row runs in a fresh process, so its peak RSS (which includes simulating its hits) is its own.

Usage: python benchmarks/reconstruction_throughput.py [--muons 10000 100000 1000000] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

from mutomo.reco import (  # noqa: E402
    AngleStatisticsReconstruction,
    BinnedClustering,
    binned_poca,
    measure,
)
from mutomo.reco.maps import VoxelMethod  # noqa: E402
from mutomo.reco.x0 import PocaX0  # noqa: E402
from mutomo.simulate import simulate  # noqa: E402
from mutomo.studies.reference_geometries import throughput_geometry

CHAINS = ("poca+bin", "poca+x0", "extended+x0", "asr", "bca")


def chain(name: str, result, volume) -> torch.Tensor:
    momentum = 0.5 * (result.muons_in.momentum + result.muons_out.momentum)
    data = measure(result.hits_above, result.hits_below, volume, momentum, covariance=name == "extended+x0")
    if name == "poca+bin":
        return binned_poca(data.scatters.poca, data.weight, volume, values=data.scatters.theta).sum()
    methods: dict[str, VoxelMethod] = {
        "poca+x0": PocaX0(extended=False),
        "extended+x0": PocaX0(),
        "asr": AngleStatisticsReconstruction(),
        "bca": BinnedClustering(),
    }
    return methods[name](data, volume).score.sum()


def one(name: str, n: int, repeats: int) -> dict[str, float]:
    detector, volume, source = throughput_geometry()
    result = simulate(detector, volume, source, n, torch.Generator().manual_seed(0))
    chain(name, result, volume).backward(retain_graph=True)  # warm-up: first-touch allocations are not timed
    detector.zero_grad()
    times = {}
    for backward in (False, True):
        best = float("inf")
        for _ in range(repeats):
            detector.zero_grad()
            start = time.perf_counter()
            value = chain(name, result, volume)
            if backward:
                value.backward(retain_graph=True)
            best = min(best, time.perf_counter() - start)
            del value  # free this graph before the next repeat builds its own
        times["backward" if backward else "forward"] = best
    times["rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--muons", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--chains", nargs="+", default=list(CHAINS), choices=CHAINS)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one", nargs=2, metavar=("CHAIN", "MUONS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]), args.repeats)))
        return
    print(f"# {torch.get_num_threads()} threads, torch {torch.__version__}")
    print("| chain | muons | forward (muons/s) | forward+backward (muons/s) | peak RSS (MiB) |")
    print("|---|---:|---:|---:|---:|")
    for name in args.chains:
        for n in args.muons:
            cmd = [sys.executable, __file__, "--one", name, str(n)]
            cmd += ["--threads", str(args.threads), "--repeats", str(args.repeats)]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                lines = out.stderr.strip().splitlines()
                why = lines[-1] if lines else f"exit status {out.returncode} (killed: out of memory?)"
                print(f"| {name} | {n:,} | failed: {why} | | |", flush=True)
                continue
            t = json.loads(out.stdout.strip().splitlines()[-1])
            print(
                f"| {name} | {n:,} | {n / t['forward']:,.0f} | {n / t['backward']:,.0f} | {t['rss_mib']:,.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
