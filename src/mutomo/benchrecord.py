"""Benchmark records: what a benchmark run measured, where, and on which code, as JSON.

The throughput benchmarks (``benchmarks/simulation_throughput.py``,
``benchmarks/tomopt_side_by_side.py``) write one record per run to
``benchmarks/results/<benchmark>/<UTC time>.json``, and ``make bench-check``
(``benchmarks/bench_check.py``) compares a fresh run with the newest record. A record holds the
machine (architecture, CPU model, cores, memory), the software (Python, torch), the git commit
(and whether the tree had uncommitted changes), the date, the command line, the machine's load
average when the run started and ended, and the numbers. Nothing here is imported by the
physics code.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from mutomo.errors import MutomoError


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gib() -> float | None:
    """Total memory (GiB), on Linux; ``None`` elsewhere."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (``uptime``), where the system reports them."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def git_commit(directory: Path) -> tuple[str | None, bool | None]:
    """``(commit, dirty)`` of the git work tree holding ``directory``, or ``(None, None)`` outside
    one. The environment variable ``MUTOMO_COMMIT``, when set, names the commit instead (dirty
    unknown): a copy of the tree on another machine, e.g. a GPU machine, may carry an older
    ``.git`` beside newer files."""
    explicit = os.environ.get("MUTOMO_COMMIT")
    if explicit:
        return explicit, None
    try:
        commit = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(directory), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None, None
    return commit, bool(status.strip())


def machine() -> dict[str, Any]:
    """The machine and software a run measured."""
    import torch

    gpus = (
        [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    )
    return {
        "platform": platform.platform(),
        "gpus": gpus,
        "architecture": platform.machine(),
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": memory_gib(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def new_record(benchmark: str, script: Path, results: Any, load_at_start: list[float] | None) -> dict[str, Any]:
    """A record of one run of ``benchmark`` (``script`` is the benchmark's file, for the commit)."""
    commit, dirty = git_commit(script.resolve().parent)
    return {
        "benchmark": benchmark,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": commit,
        "git_dirty": dirty,
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),  # quoted: it can be pasted back
        "machine": machine(),
        "load_average_start": load_at_start,
        "load_average_end": load_average(),
        "results": results,
    }


def write_record(record: dict[str, Any], directory: Path) -> Path:
    """Write ``record`` as ``directory/<benchmark>/<UTC time>.json``; returns the path."""
    folder = directory / str(record["benchmark"])
    folder.mkdir(parents=True, exist_ok=True)
    stamp = str(record["date"]).replace(":", "-").replace("+00-00", "Z")
    path = folder / f"{stamp}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def latest_record(directory: Path, benchmark: str) -> dict[str, Any] | None:
    """The newest record of ``benchmark`` under ``directory`` (by its date), or ``None``."""
    records = []
    for path in sorted((directory / benchmark).glob("*.json")):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    return max(records, key=lambda r: str(r.get("date", ""))) if records else None


def record_cell(path: Path, label: str = "") -> tuple[str, dict[str, Any], dict[str, Any]]:
    """``(label, results, cell)``: the cell ``label`` of a record whose results hold ``cells``
    (``benchmarks/border_portal.py``'s operating points), the only one when ``label`` is empty.
    Raises :class:`~mutomo.errors.MutomoError` naming the file and the cells it holds when the
    label is missing or ambiguous."""
    results = json.loads(Path(path).read_text())["results"]
    cells = results["cells"]
    if not label:
        if len(cells) != 1:
            raise MutomoError(f"{path} holds cells {', '.join(cells)}: name one as {path}#CELL")
        label = next(iter(cells))
    if label not in cells:
        raise MutomoError(f"{path} has no cell {label!r}; it holds {', '.join(cells)}")
    return label, results, cells[label]
