"""Throughput of reconstruction: track fits + PoCA + voxel assignment (+ X0 inference).

Set-up: as in simulation_throughput.py (1 m iron cube in 10 cm voxels, 4 + 4 panels, GCCLY15
muons up to 45 deg). The hits are simulated once per size, outside the timing. Two chains:

* "poca+bin": both track fits, PoCA (no covariance), binned voxel assignment;
* "full": fits, PoCA with its propagated covariance, extended PoCA over 3x3x3 voxels, and the
  Highland X0 inference per voxel.

forward+backward adds the backward pass of the sum of the inferred X0 (or of the binned
weights) to every panel parameter.

Usage: python benchmarks/reconstruction_throughput.py [--muons 10000 100000 1000000] [--threads 2]
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
from simulation_throughput import build

from mutomo.inference import HighlandX0Inferrer
from mutomo.reco import binned_poca, compute_scatters, crosses_volume, extended_poca, fit_tracks
from mutomo.simulate import simulate


def chain(result, volume, full: bool) -> torch.Tensor:
    tin = fit_tracks(result.hits_above, volume.z_high, result.muons_in.weight)
    tout = fit_tracks(result.hits_below, volume.z_low)
    z_mid = 0.5 * (volume.z_low + volume.z_high)
    sc = compute_scatters(tin, tout, z_mid, covariance=full)
    weight = sc.weight * crosses_volume(tin, tout, volume)
    if not full:
        return binned_poca(sc.poca, weight, volume, values=sc.theta).sum()
    voxels = extended_poca(sc.poca, sc.poca_covariance, weight, volume)
    momentum = 0.5 * (result.muons_in.momentum + result.muons_out.momentum)
    return HighlandX0Inferrer()(sc, tin, tout, momentum, voxels, volume).x0.sum()


def timed(n: int, full: bool, backward: bool, repeats: int) -> float:
    detector, volume, source = build()
    result = simulate(detector, volume, source, n, torch.Generator().manual_seed(0))
    best = float("inf")
    for _ in range(repeats):
        detector.zero_grad()
        start = time.perf_counter()
        value = chain(result, volume, full)
        if backward:
            value.backward(retain_graph=True)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--muons", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--full-max", type=int, default=100_000, help="largest size for the full chain (memory)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# {torch.get_num_threads()} threads, torch {torch.__version__}")
    print("| chain | muons | forward (muons/s) | forward+backward (muons/s) | peak RSS (MiB) |")
    print("|---|---:|---:|---:|---:|")
    for full in (False, True):
        for n in args.muons:
            if full and n > args.full_max:
                continue
            fwd = timed(n, full, False, args.repeats)
            bwd = timed(n, full, True, args.repeats)
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            name = "full" if full else "poca+bin"
            print(f"| {name} | {n:,} | {n / fwd:,.0f} | {n / bwd:,.0f} | {rss:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
