"""How a full mutomo step grows with muons, voxels, panels and designs.

The step is the side-by-side one (benchmarks/tomopt_geometry.py: generate, propagate, hits,
fits, PoCA with covariance, extended PoCA, Highland X0, loss, backward), varied one axis at a
time around 1e4 muons, 10 cm voxels, 4 panels a side and one design:

* muons: 1e3 to 1e6;
* voxel size: 5, 10, 12.5 and 25 cm over the same 1 x 1 x 0.5 m block (4000 to 32 voxels);
* panels: 2, 4, 8 and 16 a side;
* designs: 1, 4, 16 and 64 (``Detector.stack``), on the same muons.

Every point runs in a fresh process (its own peak RSS): one untimed warm-up step of the same
size, then the timed one, as in an optimisation loop (the first step of a process also pays for
first-touching its memory, ~10-30 % more at 1e6 muons). The medians of ``--repeats`` are kept.
Memory is the rise of the peak RSS over the process's peak after imports and set-up. Each
process keeps freed memory for reuse (mutomo.runtime.tune_allocator), as ``mutomo optimise`` does. The
exponent of each axis is the least-squares slope of log(time) and log(memory) against
log(size), and also the slope between the two largest sizes (fixed per-step costs flatten the
small ones). Writes scaling.json, a markdown table and
a log-log plot; ``--render`` redoes the last two from the json.

Usage: python benchmarks/scaling.py [--repeats 3] [--threads 2] [--out benchmarks/results]
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
from pathlib import Path

HERE = Path(__file__).resolve().parent
BASE = {"n": 10_000, "voxel": 0.1, "panels_per_side": 4, "designs": 1, "height": 0.6}
AXES: dict[str, tuple[str, list[dict[str, float]], str]] = {
    "muons": ("n", [{"n": n} for n in (1_000, 3_000, 10_000, 30_000, 100_000, 300_000, 1_000_000)], "muons"),
    "voxels": (
        "voxel",
        [{"voxel": v, "height": 0.5} for v in (0.05, 0.1, 0.125, 0.25)],
        "voxels (1 x 1 x 0.5 m block)",
    ),
    "panels": ("panels_per_side", [{"panels_per_side": p} for p in (2, 4, 8, 16)], "panels (both sides)"),
    "designs": ("designs", [{"designs": d} for d in (1, 4, 16, 64)], "designs in one pass"),
}


def size_of(axis: str, point: dict[str, float]) -> float:
    """The quantity the exponent refers to: muons, voxels, panels (total) or designs."""
    if axis == "voxels":
        return round(1.0 / point["voxel"]) ** 2 * round(point["height"] / point["voxel"])
    if axis == "panels":
        return 2 * point["panels_per_side"]
    return point["n"] if axis == "muons" else point["designs"]


def worker(args: list[str]) -> None:
    import torch

    from mutomo.runtime import tune_allocator
    from mutomo.studies.reference_geometries import timed_step

    point, threads = json.loads(args[0]), int(args[1])

    tune_allocator()
    torch.set_num_threads(threads)
    kwargs = {**point, "n": int(point["n"]), "panels_per_side": int(point["panels_per_side"])}
    print(json.dumps(timed_step(**{**kwargs, "designs": int(point["designs"])}, warmup_muons=kwargs["n"])))


def slope(x: list[float], y: list[float]) -> float:
    lx, ly = [math.log(v) for v in x], [math.log(v) for v in y]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True)) / sum((a - mx) ** 2 for a in lx)


def top(x: list[float], y: list[float]) -> float:
    """Exponent between the two largest sizes, where fixed costs matter least."""
    (x1, y1), (x2, y2) = sorted(zip(x, y, strict=True))[-2:]
    return math.log(y2 / y1) / math.log(x2 / x1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--render", action="store_true", help="only redo the table and plot from scaling.json")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    if args.render:
        render(json.loads((args.out / "scaling.json").read_text()), args)
        return
    rows: dict[str, list[dict[str, float]]] = {}
    for axis, (_, points, _) in AXES.items():
        rows[axis] = []
        for change in points:
            point = {**BASE, **change}
            cmd = [sys.executable, __file__, "--worker", json.dumps(point), str(args.threads)]
            runs = []
            for _ in range(args.repeats):
                out = subprocess.run(cmd, capture_output=True, text=True, check=True)
                runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            seconds = statistics.median(r["seconds"] for r in runs)
            memory = statistics.median(r["rss_mib"] - r["setup_mib"] for r in runs)
            rows[axis].append({"size": size_of(axis, point), "seconds": seconds, "memory_mib": memory, **point})
            print(f"{axis}: {size_of(axis, point):g} -> {seconds:.3f} s, +{memory:.0f} MiB", file=sys.stderr)
    (args.out / "scaling.json").write_text(json.dumps(rows, indent=1))
    render(rows, args)


def table(rows: dict[str, list[dict[str, float]]]) -> list[str]:
    """The markdown table's lines: per axis its sizes, seconds, memory rise and the log-log exponents
    over the whole range and over the two largest sizes (also the docs' scaling table)."""
    lines = [
        "| axis | sizes | seconds | memory rise (MiB) | time exponent (all / top) | memory exponent (all / top) |",
        "|---|---|---|---|---:|---:|",
    ]
    for axis, data in rows.items():
        sizes = [r["size"] for r in data]
        secs = [r["seconds"] for r in data]
        mems = [r["memory_mib"] for r in data]
        lines.append(
            f"| {AXES[axis][2]} | {' / '.join(f'{s:g}' for s in sizes)} | {' / '.join(f'{t:.3g}' for t in secs)} | "
            f"{' / '.join(f'{m:.0f}' for m in mems)} | {slope(sizes, secs):.2f} / {top(sizes, secs):.2f} | "
            f"{slope(sizes, mems):.2f} / {top(sizes, mems):.2f} |"
        )
    return lines


def render(rows: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> None:
    """The markdown table (see :func:`table`) under the machine and command, and the plot."""
    lines = [
        f"# {platform.machine()}, {os.cpu_count()} cores, {args.threads} threads, medians of {args.repeats}",
        f"# command: python benchmarks/{Path(__file__).name} --repeats {args.repeats} --threads {args.threads}",
        *table(rows),
    ]
    table_text = "\n".join(lines)
    (args.out / "scaling.md").write_text(table_text + "\n")
    print(table_text)
    plot(rows, args.out / "scaling.png")


def plot(rows: dict[str, list[dict[str, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 4, figsize=(16, 7), sharey="row")
    for col, (axis, data) in enumerate(rows.items()):
        sizes = [r["size"] for r in data]
        for row, (key, label) in enumerate((("seconds", "time per step (s)"), ("memory_mib", "memory rise (MiB)"))):
            values = [r[key] for r in data]
            ax = axes[row, col]
            ax.loglog(sizes, values, "o-", label=f"exponent {slope(sizes, values):.2f}")
            ax.set_xlabel(AXES[axis][2])
            if col == 0:
                ax.set_ylabel(label)
            ax.legend()
            ax.grid(True, which="both", alpha=0.3)
    fig.suptitle("mutomo full step (TomOpt test geometry): scaling, one axis at a time")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
