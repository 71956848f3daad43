"""Which presence inference sees uranium in the lorry? Tiled K = 8 modules, 24 test cargos and 8
clean references at the task's 60 s, on a selection seed (777) that is not the evaluation's
(12345). Run: ``PYTHONPATH=src python benchmarks/lorry_inference_choice.py poca:clean poca:volume
extended_poca:clean asr:volume`` (INFERENCE:REFERENCE pairs). Results in benchmarks/README.md."""

import sys
import time

import torch

from mutomo.config.build import build_problem
from mutomo.config.schema import parse_config
from mutomo.optimise.evaluate import EvaluationSettings, observe_design, summarise
from mutomo.studies.starts import tiled_for

torch.set_num_threads(1)
for inference, reference in [(a, b) for a, b in (x.split(":") for x in sys.argv[1:])]:
    t = time.perf_counter()
    config = parse_config(
        {
            "extends": "lorry_uranium",
            "task": {"kind": "presence", "inference": inference, "exposure_s": 60, "reference": reference},
        }
    )
    problem = build_problem(config)
    design = tiled_for(problem, 8)
    s = EvaluationSettings(n_volumes=24, calibration_volumes=8, seed=777, min_hits=(3,), exposure_factors=(1.0,))
    m = summarise(problem, observe_design(design, problem, s))["physical_min3"]
    print(inference, reference, {k: v.as_list() for k, v in m.items()}, f"{time.perf_counter() - t:.0f} s", flush=True)
