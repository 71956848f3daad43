"""The lorry at a 10-minute scan: tiled K = 8 and K = 4, ASR with clean references, 24 cargos and 8
references (selection seed 777). Run: ``PYTHONPATH=src python benchmarks/lorry_long_scan.py``
(~8 and ~5 minutes on one core). Results in benchmarks/README.md."""

import time

import torch

from mutomo.config.build import build_problem
from mutomo.config.schema import parse_config
from mutomo.optimise.evaluate import EvaluationSettings, observe_design, summarise
from mutomo.studies.starts import tiled_for

torch.set_num_threads(1)
config = parse_config(
    {
        "extends": "lorry_uranium",
        "task": {"kind": "presence", "inference": "asr", "exposure_s": 600, "reference": "clean"},
    }
)
problem = build_problem(config)
for k in (8, 4):
    t = time.perf_counter()
    s = EvaluationSettings(n_volumes=24, calibration_volumes=8, seed=777, min_hits=(3,), exposure_factors=(1.0,))
    m = summarise(problem, observe_design(tiled_for(problem, k), problem, s))["physical_min3"]
    print(k, {n: v.as_list() for n, v in m.items()}, f"{time.perf_counter() - t:.0f} s", flush=True)
