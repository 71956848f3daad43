"""ML/EM time per iteration and memory, next to PoCA, extended PoCA, ASR and BCA on the same data.

Set-up: as in simulation_throughput.py (1 m iron cube in 10 cm voxels, 4 + 4 panels of 100 um,
GCCLY15 muons up to 45 deg). For each muon count the hits are simulated once, in this process,
and written to a temporary file; each method then runs in a fresh process that reads them, so
that its peak memory is its own and not the simulation's. In that process the hits' positions
are a leaf tensor that requires a gradient, and each repeat times

* ``measure``: track fits, PoCA with its covariance, selection (the same for every method);
* ``forward``: the method on the measured data (``method(data, volume)``);
* ``backward``: the backward pass of the map's score sum, through the method and ``measure``
  to the hits.

For ML/EM the same is done with 1 and with ``--iterations`` EM iterations; the difference over
``iterations - 1`` is the time per iteration, the rest the set-up (path lengths, transverse data,
the uniform start, the X0 conversion). Peak RSS is the process's high-water mark; "rise" is its
increase over the mark reached after reading the hits and one ``measure``.

Usage: python benchmarks/mlem_throughput.py [--muons 100000 1000000] [--threads 1] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from mutomo.reco import (  # noqa: E402
    AngleStatisticsReconstruction,
    BinnedClustering,
    ExpectedMomentum,
    MaximumLikelihoodEM,
    measure,
)
from mutomo.reco.momentum import MARGINAL_BINS  # noqa: E402
from mutomo.reco.x0 import PocaX0  # noqa: E402
from mutomo.simulate import simulate  # noqa: E402
from mutomo.studies.reference_geometries import throughput_geometry

METHODS = ("poca", "extended_poca", "asr", "bca", "mlem", "mlem_marginal")


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def simulate_hits(n: int, path: Path) -> None:
    detector, volume, source = throughput_geometry()
    with torch.no_grad():
        r = simulate(detector, volume, source, n, torch.Generator().manual_seed(0))
    momentum = 0.5 * (r.muons_in.momentum + r.muons_out.momentum)
    torch.save({"above": r.hits_above, "below": r.hits_below, "momentum": momentum}, path)


def time_method(method, hits: dict, volume, repeats: int) -> dict[str, float]:
    """Best-of-``repeats`` times (s) of measure, forward and backward; ``kept`` muons."""
    best = {"measure": float("inf"), "forward": float("inf"), "backward": float("inf")}
    kept = 0
    for _ in range(repeats):
        above = replace(hits["above"], xy=hits["above"].xy.detach().requires_grad_())
        below = replace(hits["below"], xy=hits["below"].xy.detach().requires_grad_())
        t0 = time.perf_counter()
        data = measure(above, below, volume, hits["momentum"])
        t1 = time.perf_counter()
        score = method(data, volume).score
        t2 = time.perf_counter()
        score.sum().backward()
        t3 = time.perf_counter()
        kept = int(data.weight.shape[0])
        for key, value in (("measure", t1 - t0), ("forward", t2 - t1), ("backward", t3 - t2)):
            best[key] = min(best[key], value)
        del data, score
    return {**best, "kept": kept}


def one(name: str, hits_file: str, repeats: int, iterations: int) -> dict[str, float]:
    _, volume, _ = throughput_geometry()
    hits = torch.load(hits_file, weights_only=False)
    with torch.no_grad():
        measure(hits["above"], hits["below"], volume, hits["momentum"])
    baseline = peak_mib()
    if name in ("mlem", "mlem_marginal"):
        # mlem_marginal: no momenta; each muon's momentum one of MARGINAL_BINS classes with the
        # flux prior above the range cut of the iron cube (momentum = "marginal").
        prior = ExpectedMomentum(volume, "iron", n_bins=MARGINAL_BINS) if name == "mlem_marginal" else None
        single = time_method(MaximumLikelihoodEM(iterations=1, momentum_prior=prior), hits, volume, repeats)
        full = time_method(MaximumLikelihoodEM(iterations=iterations, momentum_prior=prior), hits, volume, repeats)
        out = {f"{k}": v for k, v in full.items()}
        for key in ("forward", "backward"):
            out[f"{key}_per_iteration"] = (full[key] - single[key]) / (iterations - 1)
            out[f"{key}_setup"] = single[key] - out[f"{key}_per_iteration"]
    else:
        method = {
            "poca": PocaX0(extended=False),
            "extended_poca": PocaX0(),
            "asr": AngleStatisticsReconstruction(),
            "bca": BinnedClustering(),
        }[name]
        out = time_method(method, hits, volume, repeats)
    out["rss_mib"] = peak_mib()
    out["rise_mib"] = out["rss_mib"] - baseline
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--muons", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--one", nargs=2, metavar=("METHOD", "HITS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(one(args.one[0], args.one[1], args.repeats, args.iterations)))
        return
    print(f"# {torch.get_num_threads()} threads, torch {torch.__version__}, ML/EM with {args.iterations} iterations")
    print(
        "| method | muons simulated | kept | measure (s) | forward (s) | backward (s) | "
        "ML/EM per iteration fwd / bwd (s) | ML/EM set-up fwd / bwd (s) | peak RSS (MiB) | rise (MiB) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.muons:
            hits_file = Path(tmp) / f"hits_{n}.pt"
            simulate_hits(n, hits_file)
            for name in args.methods:
                cmd = [sys.executable, __file__, "--one", name, str(hits_file)]
                cmd += ["--threads", str(args.threads), "--repeats", str(args.repeats)]
                cmd += ["--iterations", str(args.iterations)]
                out = subprocess.run(cmd, capture_output=True, text=True)
                if out.returncode != 0:
                    lines = out.stderr.strip().splitlines()
                    why = lines[-1] if lines else f"exit status {out.returncode} (killed: out of memory?)"
                    print(f"| {name} | {n:,} | failed: {why} | | | | | | | |", flush=True)
                    continue
                t = json.loads(out.stdout.strip().splitlines()[-1])
                per_it = setup = ""
                if name.startswith("mlem"):
                    per_it = f"{t['forward_per_iteration']:.3f} / {t['backward_per_iteration']:.3f}"
                    setup = f"{t['forward_setup']:.3f} / {t['backward_setup']:.3f}"
                print(
                    f"| {name} | {n:,} | {t['kept']:,} | {t['measure']:.3f} | {t['forward']:.3f} | "
                    f"{t['backward']:.3f} | {per_it} | {setup} | {t['rss_mib']:,.0f} | {t['rise_mib']:,.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
