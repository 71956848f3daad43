"""mutomo and TomOpt side by side: the same task, the same machine, one invocation.

The task is TomOpt's own test geometry: a 1 m x 1 m footprint of 10 cm voxels, six passive layers
from z = 0.2 to 0.8 m of beryllium with a lead block in one corner (x, y < 0.5 m, z < 0.4 m),
four panels above at z = 1.00, 0.95, 0.90, 0.85 m and four below at 0.20, 0.15, 0.10, 0.05 m,
2 m x 2 m span, 100 um resolution, 0.9 efficiency, every panel's position and span trainable.
One "step" is: muons from each tool's own cosmic generator, hits, track fits, PoCA with
uncertainties, per-voxel X0 inference, the loss (MSE of the voxel X0s), and backward to the panel
parameters. TomOpt is fed muons in batches of ``--tomopt-batch`` (250 by default), as its own
fitting loop does with ``mu_bs``: called on all muons at once its uncertainty Jacobians grow
quadratically (1,000 muons: 9.9 s, 1.6 GiB; 3,000: 120 s, 8.3 GiB; 10,000: out of memory).

What the script does:

1. Once, it creates ``benchmarks/.tomopt-venv`` (ignored by git) with ``python -m venv``, then
   ``pip install torch==2.13.0`` (the CPU build), ``tomopt==0.1.0`` from PyPI and
   ``mypy_extensions`` (TomOpt imports it without declaring it). No pin of TomOpt's needs relaxing.
2. For each muon count and thread count, it runs ``--repeats`` steps of each tool, alternating
   mutomo and TomOpt, each in a fresh process (so each peak RSS is its own), and prints the
   medians, the ratios and the machine as a markdown table. Beside the wall-time speed ratio it
   gives the ratio of the two processes' CPU times (the same on a quiet machine with one thread;
   on a shared machine the CPU time does not count the time other processes took). Each
   process first runs one untimed warm-up step (first-call allocations and lazy initialisation), then the timed one.
   mutomo's warm-up step has as many muons as the timed one (``--warmup full``; records before
   2026-12-07 warmed up on 1,000 muons, ``--warmup small``), so that its timed step is a training
   loop's steady state and not the heap's growth to a new size (:func:`mutomo_step`).
   mutomo's processes run with the allocator setting its command line uses (glibc
   ``MALLOC_MMAP_MAX_=0``, ``MALLOC_TRIM_THRESHOLD_=2147483647``: freed memory is reused, see
   mutomo.runtime); TomOpt's run with the default allocator, which suits it better (with the
   setting, TomOpt at 1e5 muons ran at 401 instead of 480 muons/s and peaked at 14.9 instead of
   11.9 GiB).

3. It records the run as JSON in ``benchmarks/results/tomopt_side_by_side/`` (machine, CPU model,
   date, git commit, command, the machine's load average before and after each pair of runs,
   every run's seconds and peak RSS, the medians and ratios; :mod:`mutomo.benchrecord`).

``--kernels plain compiled`` runs mutomo with its plain and with its compiled propagation kernels
(``MUTOMO_COMPILE=1``) against the same TomOpt runs; the default is the plain kernels only. On the
CPU the compiled kernels are packages compiled ahead of time (:mod:`mutomo.volume.aot`): the script
builds them first if they are not cached (recorded as ``compiled_kernel_packages``), and each
worker's untimed warm-up step loads them. On a GPU, ``torch.compile`` compiles them in the warm-up.

It downloads TomOpt, so it never runs in ``make test``; the test suite imports it and runs its
mutomo half on a tiny input.

Usage: python benchmarks/tomopt_side_by_side.py [--muons 10000 100000] [--threads 1 2] [--repeats 3]
    [--kernels plain compiled] [--warmup full|small] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from mutomo.benchrecord import load_average, new_record, write_record
from mutomo.runtime import ALLOCATOR_ENV
from mutomo.studies.reference_geometries import PANELS_ABOVE, PANELS_BELOW, timed_step
from mutomo.volume import aot

HERE = Path(__file__).resolve().parent
VENV = HERE / ".tomopt-venv"

TOMOPT_STEP = r"""
import json, resource, sys, time
import torch
from torch import nn
from tomopt.core import X0
from tomopt.inference import PanelX0Inferrer, ScatterBatch
from tomopt.muon import MuonBatch, MuonGenerator2016
from tomopt.optimisation import VoxelX0Loss
from tomopt.volume import DetectorPanel, PanelDetectorLayer, PassiveLayer, Volume

n, threads, bs = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
torch.manual_seed(0)
LW, SZ = torch.tensor([1.0, 1.0]), 0.1

def rad_length(*, z, lw, size):
    x0 = torch.ones(list((lw / size).long())) * X0["beryllium"]
    if z < 0.5:
        x0[:5, :5] = X0["lead"]
    return x0

def panels(zs):
    return [DetectorPanel(res=1e4, eff=0.9, init_xyz=(0.5, 0.5, z), init_xy_span=(2.0, 2.0)) for z in zs]

layers = [PanelDetectorLayer(pos="above", lw=LW, z=1.0, size=2 * SZ, panels=panels(ABOVE))]
layers += [PassiveLayer(rad_length_func=rad_length, lw=LW, z=z, size=SZ) for z in (0.8, 0.7, 0.6, 0.5, 0.4, 0.3)]
layers.append(PanelDetectorLayer(pos="below", lw=LW, z=0.2, size=2 * SZ, panels=panels(BELOW)))
volume = Volume(nn.ModuleList(layers))
generator = MuonGenerator2016.from_volume(volume)

def step(n_batches):
    inferrer = PanelX0Inferrer(volume=volume)
    for _ in range(n_batches):
        mu = MuonBatch(generator(bs), init_z=volume.h)
        volume(mu)
        inferrer.add_scatters(ScatterBatch(mu=mu, volume=volume))
    VoxelX0Loss(target_budget=None, cost_coef=0.0)(inferrer.get_prediction(), volume).backward()

step(1)  # warm-up, not timed
start, cpu_start = time.perf_counter(), time.process_time()
step(max(n // bs, 1))
seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds, "rss_mib": rss}))
""".replace("ABOVE", repr(PANELS_ABOVE)).replace("BELOW", repr(PANELS_BELOW))


def mutomo_step(n: int, threads: int, device: str = "cpu", repeats: int = 1, warmup: str = "full") -> dict[str, float]:
    """Full mutomo steps on the TomOpt test geometry (mutomo.studies.reference_geometries) on
    ``device``, after an untimed warm-up step; returns the median seconds and this process's peak
    RSS (and, on a GPU, its peak GPU memory).

    ``warmup = "full"``: the warm-up step has the timed steps' ``n`` muons, so the timed step is
    the steady state of a training loop (the heap, or the GPU's caching allocator, already holds a
    step's memory; with compiled kernels the compiled shapes are those of the timed steps). On the
    CPU a first step at a new size pays the growth of the heap to it, page by page: at 1e5 muons
    the first step after a 1,000-muon warm-up was the slowest of its process in 10 processes of 10
    (1.33-2.23 s against 1.19-1.82 s for the next two, 2026-12-06/07); at 1e4 no difference shows
    under the machine's own spread. TomOpt needs no such warm-up: it steps in batches of
    ``--tomopt-batch`` muons, and its one warm-up batch is already its steady state. ``"small"``:
    1,000 muons, as every CPU record before 2026-12-07."""
    import torch

    torch.set_num_threads(threads)
    if device == "cpu" and warmup == "small":
        return timed_step(n, seed=0, repeats=repeats)
    return timed_step(n, seed=0, device=device, repeats=repeats, warmup_muons=n)


def tomopt_python(given: str | None = None) -> Path:
    """The TomOpt venv's interpreter, creating the venv on first use (see the module docstring);
    ``given``: an interpreter that already imports TomOpt (a machine without a package index)."""
    if given is not None:
        return Path(given)
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    check = subprocess.run([str(python), "-c", "import tomopt, mypy_extensions"], capture_output=True)
    if check.returncode != 0:
        pip = [str(python), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "torch==2.13.0"], check=True)
        subprocess.run([*pip, "tomopt==0.1.0", "mypy_extensions"], check=True)
    return python


def torch_and_device(device: str) -> str:
    """torch's version and, on a GPU, the GPU's name (the table's machine line)."""
    import torch

    if device == "cpu":
        return f"torch {torch.__version__}, mutomo on the CPU"
    return f"torch {torch.__version__}, mutomo on {torch.cuda.get_device_name(device)} (TomOpt on the CPU)"


def _run(cmd: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if out.returncode != 0:
        tail = out.stderr.strip().splitlines()[-1:] or [f"exit status {out.returncode} (out of memory?)"]
        return {"error": tail[0]}  # type: ignore[dict-item]
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--muons", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tomopt-batch", type=int, default=250, help="TomOpt's mu_bs")
    parser.add_argument(
        "--kernels",
        nargs="+",
        choices=["plain", "compiled"],
        default=["plain"],
        help="mutomo's propagation kernels ('compiled': MUTOMO_COMPILE=1); each runs against the same TomOpt runs",
    )
    parser.add_argument(
        "--device",
        default="cpu",
        help="where mutomo runs ('cuda': a GPU, its repeats in one process after a warm-up on as many "
        "muons; TomOpt always runs on the CPU, where its own code pins it: tomopt.core.DEVICE)",
    )
    parser.add_argument("--tomopt-python", help="an interpreter that imports TomOpt (no venv is made)")
    parser.add_argument("--tomopt-repeats", type=int, help="TomOpt's runs per point (default: --repeats)")
    parser.add_argument("--tomopt-max-muons", type=int, help="run TomOpt only up to this many muons")
    parser.add_argument("--json", type=Path, help="write the record here instead of benchmarks/results/")
    parser.add_argument(
        "--warmup",
        choices=["full", "small"],
        default="full",
        help="mutomo's untimed warm-up step: on as many muons as the timed one (the steady state of a "
        "training loop; default) or on 1,000 (every CPU record before 2026-12-07)",
    )
    parser.add_argument("--mutomo-worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mutomo_worker:
        n, threads, repeats = (int(v) for v in args.mutomo_worker)
        print(json.dumps(mutomo_step(n, threads, args.device, repeats, args.warmup)))
        return
    if args.tomopt_repeats is None:
        args.tomopt_repeats = args.repeats
    load_at_start = load_average()
    python = tomopt_python(args.tomopt_python)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"# {machine}, {torch_and_device(args.device)}")
    print(f"# command: {' '.join(sys.argv)}")
    packages = None
    if "compiled" in args.kernels and args.device == "cpu":
        # Built before any timed process (once per machine, torch version and kernel source), so that
        # no worker's warm-up step pays the build: they only load the packages.
        start = time.perf_counter()
        paths = aot.ensure_built(torch.float32)
        packages = {"paths": [str(p) for p in paths], "ready_s": round(time.perf_counter() - start, 1)}
        print(f"# compiled kernels ready in {packages['ready_s']} s (0 when cached): {[p.name for p in paths]}")
    rows = []
    header = ["muons", "threads", "kernels", "mutomo muons/s", "TomOpt muons/s", "speed ratio", "mutomo MiB"]
    header += ["TomOpt MiB", "memory ratio", "speed ratio (CPU time)", "mutomo GPU MiB"]
    print("| " + " | ".join(header) + " |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    # On the CPU each repeat is a fresh process (its own peak RSS), alternating the tools; on a GPU
    # mutomo's repeats share one process (CUDA start-up and compilation are paid once).
    in_process = 1 if args.device == "cpu" else args.repeats
    for n in args.muons:
        with_tomopt = args.tomopt_max_muons is None or n <= args.tomopt_max_muons
        for threads in args.threads:
            runs: dict[str, list[dict[str, float]]] = {k: [] for k in [*args.kernels, "tomopt"]}
            loads = []
            for r in range(args.repeats):
                loads.append(load_average())
                for kernels in args.kernels if args.device == "cpu" or r == 0 else []:
                    env = {**ALLOCATOR_ENV, "MUTOMO_COMPILE": "1" if kernels == "compiled" else "0"}
                    worker = ["--mutomo-worker", str(n), str(threads), str(in_process), "--device", args.device]
                    worker += ["--warmup", args.warmup]
                    runs[kernels].append(_run([sys.executable, __file__, *worker], env))  # its CLI's allocator
                if with_tomopt and r < args.tomopt_repeats:
                    step = [str(python), "-c", TOMOPT_STEP, str(n), str(threads), str(args.tomopt_batch)]
                    runs["tomopt"].append(_run(step))
            loads.append(load_average())
            med, cpu, gpu = {}, {}, {}
            for tool, results in runs.items():
                ok = [r for r in results if "error" not in r]
                if not ok:
                    med[tool], cpu[tool], gpu[tool] = (math.nan, math.nan), math.nan, math.nan
                    if results:
                        print(f"# {tool} failed at {n} muons, {threads} threads: {results[0].get('error')}")
                    continue
                seconds = statistics.median(r["seconds"] for r in ok)
                med[tool] = (n / seconds, statistics.median(r["rss_mib"] for r in ok))
                cpu[tool] = statistics.median(r["cpu_seconds"] for r in ok)
                gpu[tool] = statistics.median(r.get("gpu_peak_mib", math.nan) for r in ok)
            ts, tm = med["tomopt"]
            for kernels in args.kernels:
                ms, mm = med[kernels]
                cpu_ratio = cpu["tomopt"] / cpu[kernels]
                cells = [f"{n:,}", str(threads), kernels, f"{ms:,.0f}", f"{ts:,.0f}", f"{ms / ts:,.0f}x", f"{mm:,.0f}"]
                cells += [f"{tm:,.0f}", f"{tm / mm:,.1f}x", f"{cpu_ratio:,.0f}x", f"{gpu[kernels]:,.0f}"]
                print("| " + " | ".join("—" if "nan" in c else c for c in cells) + " |", flush=True)
                rows.append(
                    {
                        "muons": n,
                        "threads": threads,
                        "kernels": kernels,
                        "device": args.device,
                        "mutomo_muons_per_s": ms,
                        "tomopt_muons_per_s": ts,
                        "speed_ratio": ms / ts,
                        "mutomo_peak_rss_mib": mm,
                        "mutomo_gpu_peak_mib": gpu[kernels],
                        "tomopt_peak_rss_mib": tm,
                        "memory_ratio": tm / mm,
                        "speed_ratio_cpu_time": cpu_ratio,
                        "load_averages": loads,
                        "mutomo_runs": runs[kernels],
                        "tomopt_runs": runs["tomopt"],
                    }
                )
            print(f"# load average (1, 5, 15 min) before each round of runs and after: {loads}", flush=True)
    settings = {
        "repeats": args.repeats,
        "tomopt_repeats": args.tomopt_repeats,
        "tomopt_batch": args.tomopt_batch,
        "kernels": args.kernels,
        "device": args.device,
        "mutomo_warmup": args.warmup,
        "compiled_kernel_packages": packages,
    }
    record = new_record("tomopt_side_by_side", Path(__file__), {"settings": settings, "rows": rows}, load_at_start)
    if args.json is not None:
        args.json.write_text(json.dumps(record, indent=2) + "\n")
        print(f"# record: {args.json}")
    else:
        print(f"# record: {write_record(record, HERE / 'results')}")


if __name__ == "__main__":
    main()
