"""A whole run from a validated configuration: build, evaluate, optimise, evaluate, write.

The run directory holds ``config.json`` (the validated configuration), ``checkpoints/last.pt``,
``history.json``, ``design_initial.json``, ``design_final.json``, ``evaluations.json`` (the
initial, final and comparison designs' metrics, each computed once and reused on resume) and,
after :func:`mutomo.plotting.report.write_report`, the figures and ``report.html``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mutomo.benchmarks import TASKS
from mutomo.detector import AreaCostModel
from mutomo.io.config import ConfigError, RunConfig
from mutomo.optimise.design import DetectorDesign
from mutomo.optimise.evaluate import evaluate
from mutomo.optimise.loop import History, TrainingSettings, optimise
from mutomo.optimise.task import Task


def build_task(config: RunConfig) -> Task:
    task: Task = TASKS[config.task.name](theta_max_deg=config.task.theta_max_deg)
    return task


def design_description(name: str, task: Task, field: str) -> dict[str, Any]:
    """The description of a built-in design of ``task`` or of a design JSON file; a
    ``ConfigError`` naming ``field`` if ``name`` is neither."""
    builtin = task.designs()
    if name in builtin:
        return builtin[name].describe()
    if Path(name).exists():
        description: dict[str, Any] = json.loads(Path(name).read_text())
        return description
    raise ConfigError(f"{field}: {name!r} is neither a built-in design {sorted(builtin)} nor an existing file")


def build_design(config: RunConfig, task: Task) -> DetectorDesign:
    """The starting design; refuses (``ConfigError``) one outside the task's allowed region."""
    dc = config.design
    budget_cost = getattr(task, "cost_model", AreaCostModel())
    try:
        if dc.panels is not None:
            panels = sorted(dc.panels, key=lambda p: p.side != "above")
            design = DetectorDesign(
                xy=[[p.x, p.y] for p in panels],
                z=[p.z for p in panels],
                n_above=sum(p.side == "above" for p in panels),
                span=[p.span for p in panels],
                resolution=[p.resolution for p in panels],
                efficiency=[p.efficiency for p in panels],
                bounds=task.bounds,
                cost_model=budget_cost,
                trainable=dc.trainable,
            )
            if dc.fixed_budget:
                design = DetectorDesign.from_description(
                    {**design.describe(), "budget": float(design.cost())}, budget_cost
                )
        else:
            description = design_description(dc.start, task, "design.start")
            description["trainable"] = list(dc.trainable)
            if not dc.fixed_budget:
                description["budget"] = None
            design = DetectorDesign.from_description(description, budget_cost)
        task.bounds.check_volume(task.volume(task.targets[0]))
    except ConfigError:
        raise
    except ValueError as exc:
        field = "design.panels" if dc.panels is not None else "design.start"
        raise ConfigError(f"{field}: {exc}") from None
    return design


def settings_from(config: RunConfig) -> TrainingSettings:
    t = config.training
    return TrainingSettings(
        epochs=t.epochs,
        volumes_per_epoch=t.volumes_per_epoch,
        muons_per_volume=t.muons_per_volume,
        validation_volumes=t.validation_volumes,
        validate_every=t.validate_every,
        seed=t.seed,
        learning_rates={**TrainingSettings().learning_rates, **{str(k): v for k, v in t.learning_rates.items()}},
        optimisers={str(k): str(v) for k, v in t.optimisers.items()},
        warmup_epochs=t.warmup_epochs,
        final_lr_fraction=t.final_lr_fraction,
        smoothness=t.smoothness,
    )


def _evaluate_cached(run_dir: Path, name: str, design: DetectorDesign, task: Task, config: RunConfig) -> dict[str, Any]:
    path = run_dir / "evaluations.json"
    cache = json.loads(path.read_text()) if path.exists() else {}
    if name not in cache:
        ev = config.evaluation
        start = time.perf_counter()
        result = evaluate(design, task, ev.n_volumes, ev.n_muons, ev.calibration_per_target, ev.seed)
        cache[name] = {**asdict(result), "design": design.describe(), "seconds": time.perf_counter() - start}
        path.write_text(json.dumps(cache, indent=1))
    entry: dict[str, Any] = cache[name]
    return entry


def run(config: RunConfig, run_dir: Path | None = None, resume: bool = True, progress: bool = True) -> dict[str, Any]:
    """Run the configured optimisation end to end; returns the evaluations by design name."""
    run_dir = Path(run_dir if run_dir is not None else config.output.directory)
    task = build_task(config)
    design = build_design(config, task)  # refuses a bad design before anything is simulated
    comparisons = {}
    builtin = task.designs()
    for name in config.evaluation.compare:
        if name not in builtin:
            raise ConfigError(f"evaluation.compare: {name!r} is not a built-in design {sorted(builtin)}")
        comparisons[name] = builtin[name]
    run_dir.mkdir(parents=True, exist_ok=True)
    saved = run_dir / "config.json"
    if not resume:
        for stale in ("checkpoints/last.pt", "evaluations.json", "timing.json", "history.json"):
            (run_dir / stale).unlink(missing_ok=True)
    elif saved.exists() and json.loads(saved.read_text()) != json.loads(config.model_dump_json()):
        raise ConfigError(
            f"{run_dir} holds a run with a different configuration; start it afresh (--fresh) or use another --output"
        )
    saved.write_text(config.model_dump_json(indent=2))
    (run_dir / "design_initial.json").write_text(design.to_json())
    start = time.perf_counter()
    evaluations = {"initial": _evaluate_cached(run_dir, "initial", design, task, config)}
    for name, other in comparisons.items():
        evaluations[name] = _evaluate_cached(run_dir, name, other, task, config)
    train_start = time.perf_counter()
    history = optimise(design, task, settings_from(config), run_dir=run_dir, resume=resume, progress=progress)
    train_seconds = time.perf_counter() - train_start
    (run_dir / "history.json").write_text(history.to_json())
    (run_dir / "design_final.json").write_text(design.to_json())
    evaluations["optimised"] = _evaluate_cached(run_dir, "optimised", design, task, config)
    timing_path = run_dir / "timing.json"
    timing = json.loads(timing_path.read_text()) if timing_path.exists() else {}
    timing["training_seconds"] = timing.get("training_seconds", 0.0) + train_seconds
    timing["total_seconds"] = timing.get("total_seconds", 0.0) + time.perf_counter() - start
    timing_path.write_text(json.dumps(timing, indent=1))
    return evaluations


def load_history(run_dir: Path) -> History:
    return History.from_json((run_dir / "history.json").read_text())
