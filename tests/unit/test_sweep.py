"""``mutomo sweep``: trials on a local two-worker Ray, a killed worker, a failed trial, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mutomo.app.cli import main
from mutomo.config.schema import load_config
from mutomo.sweep.plan import SweepPlan, Trial
from mutomo.sweep.trial import ReplayedObjective, run_trial
from tests.unit.test_landscape import SMALL_LADLE as SMALL

SIZES = {"epochs": 40, "volumes_per_epoch": 4, "muons_per_volume": 50}
SIZE_ARGS = ["--epochs", "40", "--volumes", "4", "--muons", "50"]


def _config(tmp_path: Path, sweep: str) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(SMALL + "[sweep]\n" + sweep)
    return path


def _wait_for(condition, proc: subprocess.Popen, what: str, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the sweep ended before {what}: {proc.stdout.read() if proc.stdout else ''}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _first_pid(trial_dir: Path) -> int:
    return int(json.loads((trial_dir / "attempts.jsonl").read_text().splitlines()[0])["pid"])


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_sweep_on_two_local_workers_resumes_trials_whose_worker_is_killed(tmp_path):
    """A gradient trial and a CMA-ES trial each lose their worker (SIGKILL) mid-trial; Ray reruns
    them, they resume (from the newest checkpoint; by replaying the logged calls) and end where
    uninterrupted trials end; the sweep gathers every trial into landscape.json."""
    config = _config(tmp_path, 'starts = 2\njitter = 0.05\nmethods = ["cma"]\nmethod_seeds = 1\nworkers = 2\n')
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    cmd = [sys.executable, "-m", "mutomo.app.cli", "sweep", str(config), "--output", str(out), *SIZE_ARGS]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    start, cma = out / "trials" / "start_000", out / "trials" / "cma_s0"
    _wait_for(lambda: (start / "checkpoints" / "epoch_00004.pt").exists(), proc, "start_000's 5th epoch")
    os.kill(_first_pid(start), signal.SIGKILL)
    _wait_for(lambda: _lines(cma / "calls.jsonl") >= 8, proc, "cma_s0's 8th call")
    os.kill(_first_pid(cma), signal.SIGKILL)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output

    trials = json.loads((out / "trials.json").read_text())
    assert {n: t["status"] for n, t in trials.items()} == dict.fromkeys(["start_000", "start_001", "cma_s0"], "done")
    assert trials["start_000"]["attempts"] == 2 and trials["cma_s0"]["attempts"] == 2
    resumed = json.loads((start / "attempts.jsonl").read_text().splitlines()[1])["resumed_from"]
    assert resumed is not None and int(resumed[6:11]) >= 4  # epoch_NNNNN.pt: not from scratch
    assert trials["cma_s0"]["replayed"] >= 8 and trials["cma_s0"]["calls"] == SIZES["epochs"]

    # The resumed trials end exactly where uninterrupted ones (run here, without Ray) end.
    run_config = load_config(config)
    plan = SweepPlan.from_config(run_config)
    threads = torch.get_num_threads()
    try:
        for name, trial in (
            ("start_000", Trial("start_000", "start", 0)),
            ("cma_s0", Trial("cma_s0", "method", 0, method="cma")),
        ):
            reference = run_trial(run_config, plan, trial, str(tmp_path / "reference" / name), SIZES, threads=1)
            killed = json.loads((out / "trials" / name / "result.json").read_text())
            for key in ("xy", "z", "span"):
                np.testing.assert_allclose(killed["design"][key], reference["design"][key], rtol=0, atol=1e-9)
    finally:
        torch.set_num_threads(threads)

    landscape = json.loads((out / "landscape.json").read_text())
    assert [s["trial"] for s in landscape["starts"]] == ["start_000", "start_001"]
    assert set(landscape["humans"]) == {"human_resolution", "human_acceptance"}
    assert landscape["methods"]["cma"]["seeds"] == [0] and len(landscape["methods"]["cma"]["minus_gradient"]) == 1
    assert landscape["muons"] == 3 * 40 * 4 * 50
    assert (out / "figures" / "landscape_views.png").stat().st_size > 0
    report = (out / "report.html").read_text()
    assert "Gradient-free methods against the gradient trials" in report and "start_000</td><td>done" in report

    # Running the same command again finishes only what is missing: here nothing.
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "3 of 3 trials were done before; 0 to run" in again.stdout


def test_a_failed_trial_is_reported_and_does_not_take_the_sweep_down(tmp_path):
    import ray

    from mutomo.sweep.engine import run_trials, start_ray

    config = load_config(_config(tmp_path, "starts = 1\n"))
    plan = SweepPlan.from_config(config)
    trials = [Trial("start_000", "start", 0), Trial("bogus_s0", "method", 0, method="bogus")]
    lines: list[str] = []
    assert start_ray(None, 2)
    try:
        results = run_trials(config, plan, trials, tmp_path, {"epochs": 2, "volumes_per_epoch": 4}, lines.append)
    finally:
        ray.shutdown()
    assert results["start_000"]["status"] == "done"
    assert results["bogus_s0"]["status"] == "failed"
    assert "MutomoError: method: unknown 'bogus'" in results["bogus_s0"]["error"]
    assert any("bogus_s0 FAILED" in line for line in lines)


def test_replayed_objective_replays_the_log_and_goes_on_with_the_right_batch(tmp_path):
    made: list[int] = []

    def make(first: int):
        made.append(first)
        count = {"n": first}

        def f(x: np.ndarray) -> float:
            count["n"] += 1
            return float(x.sum() + 100 * (count["n"] - 1))  # the value depends on the call's batch

        return f

    xs = [np.array([float(i), 1.0]) for i in range(5)]
    first = ReplayedObjective(make, tmp_path)
    values = [first(x) for x in xs[:3]]
    with open(tmp_path / "calls.jsonl", "a") as f:
        f.write('{"x": [3.0, 1')  # a line cut short by a kill
    second = ReplayedObjective(make, tmp_path)
    assert [second(x) for x in xs] == [*values, 3 + 1 + 300, 4 + 1 + 400]
    assert second.replayed == 3 and made == [0, 3]
    third = ReplayedObjective(make, tmp_path)  # asks for another vector at call 1: the log ends there
    assert third(xs[0]) == values[0] and third(np.array([9.0, 9.0])) == 18 + 100
    assert made == [0, 3, 1] and _lines(tmp_path / "calls.jsonl") == 2


@pytest.mark.parametrize(
    ("sweep", "field"),
    [
        ('methods = ["simplex"]', "sweep.methods"),
        ("budgets = [-5.0]", "sweep.budgets"),
        ("modules = [2, 4]", "sweep.modules: a module-count front needs a design of hodoscope modules"),
        ("modules = [1]", "sweep.modules"),
        ("tolerance_sigma = 11.0", "sweep.tolerance_sigma"),
        ("tolerance_fraction = 1.5", "sweep.tolerance_fraction"),
        ("tolerance_sigma = 0\ntolerance_fraction = 0", "sweep"),
        ('starts = 2\nmethods = ["cma"]\nmethod_seeds = 3', "sweep"),
        ("workers = 0", "sweep.workers"),
        ("colour = 1", "sweep.colour"),
    ],
)
def test_sweep_refuses_a_bad_configuration_naming_the_field(tmp_path, capsys, sweep, field):
    config = _config(tmp_path, sweep + "\n")
    assert main(["sweep", str(config), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert field in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # refused before any trial started


def test_sweep_refuses_an_unreachable_cluster_before_any_trial(tmp_path, capsys):
    config = _config(tmp_path, "starts = 1\n")
    for address, said in (("127.0.0.1:1", "nothing answers at 127.0.0.1:1"), ("no-port", "is not HOST:PORT")):
        assert main(["sweep", str(config), "--address", address, "--output", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert "--address" in err and said in err
    assert not (tmp_path / "out").exists()


def test_sweep_refuses_a_folder_of_another_sweep(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "sweep.json").write_text(json.dumps({"config": {}, "overrides": {}}))
    assert main(["sweep", str(_config(tmp_path, "starts = 1\n")), "--output", str(out), "--epochs", "1"]) == 2
    assert "holds a sweep of another configuration" in capsys.readouterr().err


def test_sweep_plan_names_every_trial_and_gives_each_its_own_muons():
    config = load_config("ladle_furnace").model_copy(deep=True)
    config.sweep.starts, config.sweep.budgets, config.sweep.front_starts = 3, [3000.0, 9000.0], 2
    config.sweep.methods, config.sweep.method_seeds = ["cma", "tpe"], 2
    plan = SweepPlan.from_config(config)
    names = [t.name for t in plan.trials()]
    assert names == [
        *("start_000", "start_001", "start_002"),
        *("front_b0_s0", "front_b0_s1", "front_b1_s0", "front_b1_s1"),
        *("cma_s0", "cma_s1", "tpe_s0", "tpe_s1"),
    ]
    from mutomo.optimise.loop import TrainingSettings

    base = TrainingSettings(seed=7)
    seeds = {t.name: t.training(base).seed for t in plan.trials()}
    assert len({seeds[n] for n in names if not n.startswith(("cma", "tpe"))}) == 7  # own muons
    assert seeds["cma_s1"] == seeds["tpe_s1"] == seeds["start_001"]  # paired with the gradient trial


def test_a_sweep_offers_every_gradient_free_method():
    from mutomo.config.schema import SWEEP_METHODS
    from mutomo.studies.baselines import METHODS

    assert set(SWEEP_METHODS) == set(METHODS)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--volumes", "5"], "--volumes must be even"),
        (["--volumes", "2"], "--volumes must be >= 4"),
        (["--epochs", "0"], "--epochs must be >= 1"),
        (["--muons", "5"], "--muons must be >= 10"),
        (["--eval-volumes", "2"], "--eval-volumes must be >= 4"),
        (["--workers", "0"], "--workers must be an integer >= 1"),
    ],
)
def test_sweep_refuses_bad_sizes_naming_the_argument(tmp_path, capsys, args, said):
    config = _config(tmp_path, "starts = 1\n")
    assert main(["sweep", str(config), "--output", str(tmp_path / "out"), *args]) == 2
    assert said in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
