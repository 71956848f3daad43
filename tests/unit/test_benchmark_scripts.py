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


def test_surrogate_vs_gradient_script_runs_on_a_tiny_input(tmp_path):
    """The surrogate-against-gradient benchmark end to end at a toy size (one iteration of the
    surrogate, four test volumes): every run is judged, paired with the gradient run, and the
    gradient cosines are finite numbers in [-1, 1]."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "surrogate_vs_gradient.py"
    spec = importlib.util.spec_from_file_location("surrogate_vs_gradient", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.main(
        ["--seeds", "0", "--epochs", "4", "--volumes", "4", "--muons", "50", "--surrogate-muons", "10", "--n", "16"]
        + [
            "--cosine-radii",
            "0.01",
            "--eval-volumes",
            "4",
            "--eval-muons",
            "200",
            "--out",
            str(tmp_path / "result.json"),
        ]
    )
    methods = [r["method"] for r in out["records"]]
    assert methods[:4] == ["start", "gradient", "surrogate_smooth", "surrogate_physical"]
    by_method = {r["method"]: r for r in out["records"]}
    assert by_method["gradient"]["minus_gradient"][0] == 0.0
    assert by_method["surrogate_smooth"]["muons"] == 16 * 4 * 10  # one iteration of 16 calls of 40 muons fits
    assert (tmp_path / "result.json").exists()
    for by_design in out["cosines"]["0"].values():
        keys = ("surrogate_r0.05_n16", "surrogate_r0.01_n16", "surrogate_r0.05_n32", "autograd_batch0_vs_batch1")
        assert all(-1.0 <= by_design[k] <= 1.0 for k in keys)


def test_loss_smoothness_script_scans_a_tiny_batch():
    """benchmarks/loss_smoothness.py: its legacy PoCA equals the current one in float64 (the fix
    changed round-off only), and a 3-point float64 scan gives finite slopes near autograd's."""
    import torch

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "loss_smoothness.py"
    spec = importlib.util.spec_from_file_location("loss_smoothness", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    params = torch.randn(200, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.3
    assert torch.allclose(module.legacy_formula(params, 0.9), module.poca_module._poca(params, 0.9), atol=1e-8)
    problem = module.make_problem(torch.float64)
    design = module.make_design(problem, "random1000", torch.float64)
    settings = module.TrainingSettings(volumes_per_epoch=4, muons_per_volume=100, sampled_hits=True)
    record = module.scan(problem, design, settings, "z", 1e-5, 3, legacy=False)
    assert record["flips"] == 0
    assert abs(record["end_to_end_slope"] - record["autograd"]) <= 1e-3 * max(1.0, abs(record["autograd"]))
