"""A whole run from a validated configuration: build, evaluate, optimise, evaluate, write.

The run directory holds ``config.json`` (the validated configuration), ``checkpoints/`` (the
last few epochs, checksummed; see :mod:`mutomo.optimise.checkpoint`), ``history.json``,
``design_initial.json``, ``design_final.json`` (the design after the last epoch, evaluated as
``optimised``), ``design_best.json`` (the design of the best validation loss, evaluated as
``best_validated``), ``observations/NAME.npz`` (every design's per-volume outputs, each computed
once and reused on resume), ``evaluations.json`` and ``timing.json`` (seconds of the whole run,
summed over every resume); after :func:`mutomo.plotting.report.write_report`, the figures
(``figures/NAME.png`` and ``NAME.svg``) and ``report.html``.

A run killed at any point resumes where it stopped when started again with the same
configuration: finished evaluations are read back, training continues from the newest readable
checkpoint (a damaged one is named and set aside), and the result is the same as that of an
uninterrupted run.

``evaluations.json``::

    {"task": {...}, "readouts": ["smooth", "physical", ...],
     "designs": {NAME: {"smooth": {METRIC: [value, error]}, "physical": {...}, ..., "design": {...}}},
     "paired": {"optimised - NAME": {"smooth": {METRIC: [difference, error]}, "physical": {...}},
                "ideal - NAME": {...}, "ideal_momentum - ideal": {...}},
     "shares": {NAME: {"physical": {METRIC: [share, error]}, ...}},
     "bounds": {"start": "initial", "ideal": "...", "momentum_resolution": 0.1},
     "systematics": {"readout": "physical", "metric": "mse", "higher_is_better": false,
                     "variations": {VARIATION: {"summary": "...", "designs": {NAME: {METRIC: [value, error]}},
                                                "paired": {"optimised - NAME": {METRIC: [difference, error]}}}},
                     "envelope": {"optimised - NAME": {"nominal": [difference, error], "low": ..., "high": ...,
                                                        "sigmas": {VARIATION: ...}, "wins": [...], "not": [...]}}}}

``systematics`` is there when ``evaluation.systematics.variations`` names any: every design but the
reference detectors observed again under each variation (``observations/systematics/VARIATION/``),
on the same volumes and muons, in the headline readout; the envelope and the verdict are
:func:`mutomo.optimise.verdict.systematics_envelope`'s.

``ideal`` and ``ideal_momentum`` (``evaluation.bounds``) are the reference detectors of
:mod:`mutomo.studies.bounds`; a share is a design's share of the possible gain over the start.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from mutomo.app.observations import claim_folder, observations_cached
from mutomo.config.build import (
    bound_designs,
    build_design,
    build_problem,
    comparison_designs,
    evaluation_settings,
    settings_from,
)
from mutomo.config.schema import ConfigError, RunConfig
from mutomo.design.base import Design
from mutomo.design.describe import design_from_description
from mutomo.io.files import PathLike, writable_dir
from mutomo.optimise.evaluate import (
    REFERENCE_DESIGNS,
    DesignObservations,
    EvaluationSettings,
    metrics_json,
    paired,
    summarise,
    systematics_json,
)
from mutomo.optimise.loop import History, optimise
from mutomo.optimise.problem import Problem
from mutomo.optimise.verdict import no_information, systematics_envelope
from mutomo.studies.bounds import bound_entries


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


TRAINED = ("optimised", "best_validated")
"""The designs a run trains (the others are evaluated as they are)."""


def write_evaluations(
    run_dir: Path,
    problem: Problem,
    designs: dict[str, Design],
    observations: dict[str, DesignObservations],
    bound_momentum_resolution: float | None = None,
    settings: EvaluationSettings | None = None,
    systematics: dict[str, dict[str, DesignObservations]] | None = None,
) -> dict[str, Any]:
    """Metrics of every design, the optimised design's and the bounds' paired differences and
    each design's share of the possible gain, as ``evaluations.json`` (see the module docstring);
    with ``systematics`` (by variation of ``settings.systematics``, each design's observations),
    the metrics and paired differences under each variation and their envelope."""
    result: dict[str, Any] = {
        "task": {
            "kind": problem.task.kind,
            "inference": problem.task.inference,
            "momentum": problem.momentum.name,
            "muons_per_volume": problem.n_muons,
            "exposure_s": problem.exposure_s,
            "reference": getattr(problem.task, "reference", None),
            "statistic": getattr(problem.task, "statistic", None),
        },
        "designs": {},
        "paired": {},
    }
    result["task"]["no_information"] = no_information(problem.task.kind, next(iter(observations.values())))
    for name, obs in observations.items():
        result["designs"][name] = {**metrics_json(summarise(problem, obs)), "design": designs[name].describe()}
    for trained in TRAINED:
        if trained not in observations:
            continue
        for name, obs in observations.items():
            if name not in TRAINED:
                result["paired"][f"{trained} - {name}"] = metrics_json(paired(problem, observations[trained], obs))
    extra = bound_entries(problem, observations, "initial", bound_momentum_resolution)
    # "optimised - ideal" is already there: no "ideal - optimised" beside it
    result["paired"].update({k: v for k, v in extra.pop("paired").items() if k.split(" - ")[1] not in TRAINED})
    if "shares" in extra:
        result.update(extra)
    result["readouts"] = list(next(iter(observations.values())).test)
    if settings is not None and systematics:
        pairs = [
            (trained, name)
            for trained in TRAINED
            if trained in observations
            for name in observations
            if name not in TRAINED and name not in REFERENCE_DESIGNS
        ]
        result["systematics"] = systematics_json(problem, settings, systematics, pairs)
        result["systematics"]["envelope"] = systematics_envelope(result)
    (run_dir / "evaluations.json").write_text(json.dumps(result, indent=1))
    return result


def run(
    config: RunConfig, run_dir: PathLike | None = None, resume: bool = True, progress: bool = True
) -> dict[str, Any]:
    """Run the configured optimisation end to end; returns the evaluations (``evaluations.json``)."""
    problem = build_problem(config)
    design = build_design(config, problem)  # refuses a bad design before anything is simulated
    comparisons = comparison_designs(config, problem, design.budget)
    training = settings_from(config, problem)
    if training.volumes_per_epoch < problem.task.min_batch:  # refused before anything is computed
        raise ConfigError(
            f"training.volumes_per_epoch must be >= {problem.task.min_batch} for this {problem.task.kind} task; "
            f"got {training.volumes_per_epoch}"
        )
    settings = evaluation_settings(config, problem)
    settings.check_triggers({config.design.start: design, **comparisons})  # before the run folder is written
    run_dir = writable_dir(run_dir if run_dir is not None else config.output.directory, "run directory")
    if not resume:
        for stale in ("evaluations.json", "timing.json", "history.json", "design_best.json", "design_final.json"):
            (run_dir / stale).unlink(missing_ok=True)
        for folder in ("observations", "checkpoints"):
            shutil.rmtree(run_dir / folder, ignore_errors=True)
    claim_folder(run_dir, config, "start it afresh (--fresh) or use another --output")
    (run_dir / "design_initial.json").write_text(problem.design_json(design))
    start = time.perf_counter()
    designs = {"initial": design_from_description(design.describe(), problem.cost_model), **comparisons}
    say = _say if progress else None
    observations = {name: observations_cached(run_dir, name, d, problem, settings, say) for name, d in designs.items()}
    for name, (bound, bound_problem) in bound_designs(config, problem, design).items():
        designs[name] = bound
        observations[name] = observations_cached(run_dir, name, bound, bound_problem, settings, say)
    seconds = [_recorded_seconds(run_dir, name) for name in designs]
    after = sum(seconds) / max(len(seconds), 1) * (2 if training.validation_volumes else 1)
    history = optimise(
        design, problem, training, run_dir=run_dir, resume=resume, progress=progress, evaluation_after_s=after
    )
    (run_dir / "history.json").write_text(history.to_json())
    (run_dir / "design_final.json").write_text(problem.design_json(design))
    designs["optimised"] = design
    observations["optimised"] = observations_cached(run_dir, "optimised", design, problem, settings, say)
    best = best_validated(history, problem)
    if best is not None:
        (run_dir / "design_best.json").write_text(problem.design_json(best))
        designs["best_validated"] = best
        observations["best_validated"] = observations_cached(run_dir, "best_validated", best, problem, settings, say)
    systematics = {
        v.name: {
            name: observations_cached(run_dir, name, d, problem, settings, say, v)
            for name, d in designs.items()
            if name not in REFERENCE_DESIGNS
        }
        for v in settings.systematics
    }
    evaluations = write_evaluations(
        run_dir, problem, designs, observations, config.evaluation.bound_momentum_resolution, settings, systematics
    )
    write_timing(run_dir, history, list(designs), time.perf_counter() - start)
    return evaluations


def _recorded_seconds(run_dir: Path, name: str) -> float:
    """Seconds the evaluation of design ``name`` took (``observations/NAME.json``), 0 if unknown."""
    record = run_dir / "observations" / f"{name}.json"
    try:
        return float(json.loads(record.read_text()).get("seconds", 0.0))
    except (OSError, ValueError, AttributeError):
        return 0.0


def best_validated(history: History, problem: Problem) -> Design | None:
    """The design of the epoch with the lowest validation loss (``None`` without validations)."""
    validated = [r for r in history.records if r.validation is not None]
    if not validated:
        return None
    record = min(validated, key=lambda r: r.validation if r.validation is not None else math.inf)
    return design_from_description(record.design, problem.cost_model)


def write_timing(run_dir: Path, history: History, designs: list[str], seconds: float) -> dict[str, Any]:
    """``timing.json``: seconds of the whole run, whatever the number of resumes: training (the
    sum of every epoch's time, kept in the history across resumes), evaluation (each design's,
    recorded when it was observed), the evaluations under systematic variations, and this
    invocation's wall time."""
    evaluation = {}
    for name in designs:
        record = run_dir / "observations" / f"{name}.json"
        evaluation[name] = json.loads(record.read_text()).get("seconds", 0.0) if record.exists() else 0.0
    training = sum(r.seconds for r in history.records)
    # Every design's evaluation under each systematic variation (observations/systematics/VARIATION/NAME.json).
    systematics = sum(
        float(json.loads(record.read_text()).get("seconds", 0.0))
        for record in sorted((run_dir / "observations" / "systematics").glob("*/*.json"))
    )
    timing = {
        "training_seconds": training,
        "evaluation_seconds": evaluation,
        "systematics_seconds": systematics,
        "total_seconds": training + sum(evaluation.values()) + systematics,
        "epochs": len(history.records),
        "last_invocation_seconds": seconds,
    }
    (run_dir / "timing.json").write_text(json.dumps(timing, indent=1))
    return timing


def load_history(run_dir: Path) -> History:
    return History.from_json((run_dir / "history.json").read_text())
