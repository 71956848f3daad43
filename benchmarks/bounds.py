"""How far designs are from the best possible (issue 28): ``mutomo bound`` on a configuration,
recorded with its machine, date, commit and command.

Runs :func:`mutomo.app.bound.bound` (the start, the ``evaluation.compare`` designs, any
``--design``, and the ideal detectors ``ideal`` and ``ideal_momentum``, all on the same test
volumes and muons) and writes the result as a record in
``benchmarks/results/bounds/<configuration name>.json`` (:mod:`mutomo.benchrecord`), from which
the documentation's results pages build their tables; prints the shares of the possible gain.

Usage: python benchmarks/bounds.py CONFIG [--design LABEL=FILE ...] [--json PATH] [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from mutomo.app.bound import bound, share_lines
from mutomo.benchrecord import load_average, new_record
from mutomo.config import load_config

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config", help="configuration file or built-in benchmark")
    parser.add_argument("--design", action="append", default=[], help="NAME, FILE or LABEL=FILE (repeatable)")
    parser.add_argument("--json", type=Path, help="write the record here instead of benchmarks/results/bounds/")
    parser.add_argument("--cache", type=Path, help="keep every design's observations here (a rerun reuses them)")
    args = parser.parse_args()
    load_at_start = load_average()
    config = load_config(args.config)
    with tempfile.TemporaryDirectory() as tmp:
        result = bound(config, args.design, Path(tmp) / "bound.json", cache=args.cache)
    print("\n".join(share_lines(result)))
    record = new_record("bounds", Path(__file__), {"configuration": config.name, **result}, load_at_start)
    path = args.json or HERE / "results" / "bounds" / f"{config.name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"# record: {path}")


if __name__ == "__main__":
    main()
