"""The side-by-side benchmark script imports, its TomOpt worker is valid Python, and its mutomo half runs."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "tomopt_side_by_side.py"


def load():
    spec = importlib.util.spec_from_file_location("tomopt_side_by_side", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_side_by_side_script_mutomo_half_runs_on_a_tiny_input():
    module = load()
    compile(module.TOMOPT_STEP, "tomopt_step", "exec")  # the TomOpt worker parses (it is not run here)
    assert "(1.0, 0.95, 0.9, 0.85)" in module.TOMOPT_STEP and "(0.2, 0.15, 0.1, 0.05)" in module.TOMOPT_STEP
    result = module.mutomo_step(300, 1)
    assert result["seconds"] > 0 and result["rss_mib"] > 0
