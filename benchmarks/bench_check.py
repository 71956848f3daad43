"""Guard against speed slips: run the simulation throughput benchmark and compare it with the
newest record in benchmarks/results/simulation_throughput/ (``make bench-check``).

It runs ``simulation_throughput.py`` (mutomo only, no TomOpt) in a fresh process with the
newest record's settings (muon counts, threads, repeats, compiled kernels or not) and prints,
row by row, the rates and peak memory of both runs and every slip over ``--tolerance`` (10 %
by default): a rate more than 10 % lower, or a peak memory more than 10 % higher. The fresh
run is written to a temporary file, not recorded: the reference stays the newest run someone
recorded on purpose (``python benchmarks/simulation_throughput.py``). Exit status 1 when
something slipped, 0 otherwise (2 when no record exists yet).

This is a benchmark, never a test: the machines are shared, and a loaded machine slips. The
load average at the start and end of both runs is printed beside the numbers; rerun on a quiet
machine before believing a slip, and compare runs of the same CPU model only.

Usage: python benchmarks/bench_check.py [--tolerance 0.10]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from mutomo.benchrecord import latest_record

HERE = Path(__file__).resolve().parent
BENCHMARK = "simulation_throughput"
# Used when no record exists yet.
DEFAULT_ARGS = ["--muons", "10000", "100000", "--threads", "1", "--repeats", "3"]
RATES = ("forward_muons_per_s", "forward_backward_muons_per_s")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tolerance", type=float, default=0.10, help="largest relative slip not reported")
    args = parser.parse_args()
    reference = latest_record(HERE / "results", BENCHMARK)
    argv = list(DEFAULT_ARGS)
    if reference is not None:  # the reference's own settings
        settings = reference["results"]["settings"]
        argv = ["--muons", *(str(r["muons"]) for r in reference["results"]["rows"])]
        argv += ["--threads", str(settings["threads"]), "--repeats", str(settings["repeats"])]
        argv += ["--compile"] if settings.get("compiled") else []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run.json"
        subprocess.run([sys.executable, str(HERE / f"{BENCHMARK}.py"), *argv, "--json", str(out)], check=True)
        fresh = json.loads(out.read_text())
    if reference is None:
        print(f"# no record in {HERE / 'results' / BENCHMARK} yet: run benchmarks/{BENCHMARK}.py to make one")
        return 2
    ref_cpu, cpu = reference["machine"]["cpu_model"], fresh["machine"]["cpu_model"]
    for name, rec in (("reference", reference), ("this run", fresh)):
        loads = f"load {rec['load_average_start']} -> {rec['load_average_end']}"
        print(f"# {name}: {rec['date']}, commit {rec['git_commit']}, {rec['machine']['cpu_model']}, {loads}")
    if ref_cpu != cpu:
        print("# WARNING: different CPU models; the comparison says little")
    slips = []
    by_muons = {r["muons"]: r for r in reference["results"]["rows"]}
    print("| muons | quantity | reference | this run | change |")
    print("|---:|---|---:|---:|---:|")
    for row in fresh["results"]["rows"]:
        old = by_muons.get(row["muons"])
        if old is None:
            continue
        for key in (*RATES, "peak_rss_mib"):
            change = row[key] / old[key] - 1
            print(f"| {row['muons']:,} | {key} | {old[key]:,.0f} | {row[key]:,.0f} | {100 * change:+.1f} % |")
            worse = -change if key in RATES else change
            if worse > args.tolerance:
                slips.append(f"{key} at {row['muons']:,} muons: {100 * change:+.1f} %")
    for slip in slips:
        print(f"SLIP over {100 * args.tolerance:.0f} %: {slip}")
    if not slips:
        print(f"# no slip over {100 * args.tolerance:.0f} %")
    return 1 if slips else 0


if __name__ == "__main__":
    sys.exit(main())
