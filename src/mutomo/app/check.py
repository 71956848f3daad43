"""``mutomo check CONFIG``: what a run would do, before it does it (issue 26).

Validates the configuration and builds everything a run builds (refusing what a run would
refuse, with the same messages), then prints: the merged configuration (after ``extends``), the
budget and each named design's cost, the muons per volume and per epoch, the test and
calibration volumes and roughly what error they give on the headline metric, the warnings of
:mod:`mutomo.config.sanity`, and a run time estimated from a short timing on this machine; and
draws a scene preview (drawn volumes with the designs around them).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import yaml

from mutomo.config.build import build_design, build_problem, comparison_designs, evaluation_settings, settings_from
from mutomo.config.sanity import before_run, muons_per_voxel
from mutomo.config.schema import RunConfig
from mutomo.design.base import Design
from mutomo.errors import MutomoError, naming_the_source
from mutomo.io.files import writable_file
from mutomo.optimise.evaluate import EvaluationSettings
from mutomo.optimise.loop import TrainingSettings, training_batch_loss
from mutomo.optimise.problem import Problem, key_generator
from mutomo.plotting.preview import scene_preview


@dataclass(frozen=True)
class RunEstimate:
    """Seconds a run would take on this machine, from one timed training batch and one timed
    test volume (rough: the first calls carry some start-up cost, and other load changes it)."""

    training_s: float
    evaluation_s: float
    per_training_volume_s: float
    per_test_volume_s: float
    evaluated_designs: int

    @property
    def total_s(self) -> float:
        return self.training_s + self.evaluation_s


def estimate_run(
    problem: Problem, design: Design, training: TrainingSettings, evaluation: EvaluationSettings, n_compare: int
) -> RunEstimate:
    """Time one training batch of the task's smallest size (forward and backward) and the
    observation of one test volume in every readout, and scale them to the run: every epoch's
    volumes, the validations (forward only, counted as half a training volume), and each
    evaluated design's test and calibration volumes (the initial and optimised designs, the
    ``evaluation.compare`` designs and, with validations, the best validated one), once nominally
    and once under each systematic variation (simulation dominates either way)."""
    n = max(problem.task.min_batch + problem.task.min_batch % 2, 4)  # the training batch: even, >= 4
    start = time.perf_counter()
    parts = training_batch_loss(design, problem, replace(training, volumes_per_epoch=n), 0, problem.task.loss)
    parts.total.backward()
    design.zero_grad(set_to_none=True)
    per_train = (time.perf_counter() - start) / n
    sample = problem.sample((evaluation.seed, 2, 0), index=0)
    start = time.perf_counter()
    with torch.no_grad():
        problem.observe(
            design.detector(),
            sample,
            problem.n_muons,
            key_generator((0, 0)),
            evaluation.readouts,
            readout_generator=key_generator((0, 1)),
        )
    per_test = time.perf_counter() - start
    if problem.task.kind == "presence":  # the exposure ladder of the headline readout
        per_test *= 1 + sum(f for f in set(evaluation.exposure_factors) if f != 1.0) / len(evaluation.readouts)
    validations = training.epochs // training.validate_every if training.validation_volumes else 0
    train_s = per_train * (
        training.epochs * training.volumes_per_epoch + 0.5 * validations * training.validation_volumes
    )
    designs = 2 + n_compare + (1 if training.validation_volumes else 0)
    volumes = evaluation.n_volumes + (evaluation.calibration_volumes if problem.task.needs_calibration else 0)
    worlds = 1 + len(evaluation.systematics)
    return RunEstimate(train_s, per_test * volumes * designs * worlds, per_train, per_test, designs)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def headline_error(config: RunConfig, problem: Problem, evaluation: EvaluationSettings) -> str:
    """Roughly the statistical error of the headline metric from the number of test volumes:
    presence, the AUC's (Hanley and McNeil 1982, at AUC 0.5 and 0.9); regression, the MSE's
    relative error sqrt(2 / n) (a chi-squared of n volumes) and the calibration line's share."""
    n = evaluation.n_volumes
    if problem.task.kind == "presence":
        p = next((o.probability for o in config.scene.objects if o.role == "target"), 0.5)
        n1, n0 = max(round(n * p), 1), max(n - round(n * p), 1)

        def hanley(a: float) -> float:
            q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
            return math.sqrt((a * (1 - a) + (n1 - 1) * (q1 - a * a) + (n0 - 1) * (q2 - a * a)) / (n1 * n0))

        return (
            f"AUC error about +-{hanley(0.5):.2g} at AUC 0.5 and +-{hanley(0.9):.2g} at 0.9 "
            f"({n1} test volumes with the target, {n0} without); at-chance means AUC within 2 errors of 0.5"
        )
    if problem.task.kind == "regression":
        m = evaluation.calibration_volumes
        return (
            f"MSE relative error about {100 * math.sqrt(2 / n):.0f} % from the {n} test volumes, plus the calibration "
            f"line's, fitted on {m} volumes (about {100 * 2 / m:.1f} % of the MSE, shared by every volume)"
        )
    return f"{n} test volumes (imaging metrics: errors from their spread over the volumes)"


def preview_volumes(problem: Problem) -> dict[str, torch.Tensor]:
    """Two drawn volumes to show: with and without the target (presence), or the lowest and
    highest fill among a few draws (regression), or two draws."""
    if problem.task.kind == "presence":
        return {
            "with the target (test volume 0, forced)": problem.scene.sample((0, 2, 0), present=True).volume.x0,
            "without the target": problem.scene.sample((0, 2, 0), present=False).volume.x0,
        }
    samples = [problem.scene.sample((0, 2, i)) for i in range(8)]
    if problem.task.kind == "regression":
        samples.sort(key=lambda s: s.fill_height if s.fill_height is not None else 0.0)
        low, high = samples[0], samples[-1]
        return {
            f"lowest fill drawn ({low.fill_height:.2f} m)": low.volume.x0,
            f"highest fill drawn ({high.fill_height:.2f} m)": high.volume.x0,
        }
    return {"test volume 0": samples[0].volume.x0, "test volume 1": samples[1].volume.x0}


def check(
    config: RunConfig, source: str, figure: Path | None, timing: bool = True, say: Callable[[str], None] = print
) -> list[str]:
    """Print what a run of ``config`` would do (see the module docstring); returns the warnings."""
    with naming_the_source(source):
        problem = build_problem(config)
        design = build_design(config, problem)
        comparisons = comparison_designs(config, problem, design.budget)
        training = settings_from(config, problem)
        if training.volumes_per_epoch < problem.task.min_batch:
            raise MutomoError(
                f"training.volumes_per_epoch must be >= {problem.task.min_batch} for this {problem.task.kind} task; "
                f"got {training.volumes_per_epoch}"
            )
        evaluation = evaluation_settings(config, problem)
        evaluation.check_triggers({config.design.start: design, **comparisons})
        warnings = before_run(config, problem)
        if figure is not None:
            writable_file(figure, "--figure")
    say("merged configuration (after extends; valid as a configuration file of its own):")
    say(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, width=110).rstrip())
    say("")
    t = config.task
    nx, ny, nz = problem.scene.shape
    say(f"{source}: valid. What `mutomo optimise` would do:")
    say(f"  task: {t.kind} by {t.inference} (momentum: {t.momentum})")
    x0, x1, y0, y1, z0, z1 = problem.scene.box
    say(
        f"  scene: x {x0:g}..{x1:g}, y {y0:g}..{y1:g}, z {z0:g}..{z1:g} m in {nx} x {ny} x {nz} voxels of "
        f"{' x '.join(f'{v:g}' for v in problem.scene.voxel_size)} m"
    )
    say(
        f"  test volumes: {problem.n_muons:,} muons each ({problem.exposure_s:.3g} s of exposure; about "
        f"{muons_per_voxel(problem):.3g} muons per voxel)"
    )
    per_epoch = training.muons_per_volume * training.volumes_per_epoch
    say(
        f"  training: {training.epochs} epochs x {training.volumes_per_epoch} volumes x {training.muons_per_volume:,} "
        f"muons = {per_epoch:,} muons per epoch ({per_epoch * training.epochs:,} in all); "
        f"{training.validation_volumes} validation volumes every {training.validate_every} epochs"
    )
    if config.design.fixed_budget:
        budget = f"fixed at {design.budget:.6g}" + (" (the start's cost)" if config.design.budget is None else "")
    elif config.design.budget is not None:
        budget = f"soft: {config.design.budget:.6g} (training adds a penalty above it)"
    else:
        budget = "none (free cost, no penalty)"
    if config.hodoscope is not None:
        budget += f"; hodoscope modules are bought as built, {config.hodoscope.cost:g} each"
    say(f"  budget: {budget}")
    say("  designs (cost as written; under a fixed budget the compared ones are scaled to it):")
    for name in config.designs:
        role = (["start"] if name == config.design.start else []) + (
            ["compared"] if name in config.evaluation.compare else []
        )
        try:
            named = problem.design(name, (), None, what=f"designs.{name}")
        except MutomoError:
            say(f"    {name}: does not fit this scene (see the warnings)")
            continue
        with torch.no_grad():
            detector = named.detector()
        modules = config.designs[name].modules
        held = f" ({len(modules)} hodoscope modules)" if modules else ""
        say(
            f"    {name}: {detector.n_panels('above')} panels above, {detector.n_panels('below')} below{held}; cost "
            f"{float(named.cost().detach()):.6g}" + (f" [{', '.join(role)}]" if role else "")
        )
    calibration = evaluation.calibration_volumes if problem.task.needs_calibration else 0
    triggers = ", ".join("all" if k is None else str(k) for k in evaluation.min_hits)
    say(
        f"  evaluation: {evaluation.n_volumes} test volumes"
        + (f", {calibration} calibration" if calibration else "")
        + f" volumes; triggers (hits a side): {triggers}, the first the headline"
    )
    say(f"  headline error: {headline_error(config, problem, evaluation)}")
    if evaluation.systematics:
        say(
            f"  systematic variations ({len(evaluation.systematics)}): every design evaluated again under each, on "
            f"the same volumes and muons: {'; '.join(f'{v.name}: {v.summary}' for v in evaluation.systematics)}"
        )
    if training.systematics:
        say(
            f"  robust training: each epoch in a world drawn from nominal, "
            f"{', '.join(v.name for v in training.systematics)}"
        )
    if timing:
        est = estimate_run(problem, design, training, evaluation, len(comparisons))
        say(
            f"  estimated run time on this machine: {_duration(est.total_s)} (training {_duration(est.training_s)}: "
            f"{est.per_training_volume_s:.2g} s a training volume; evaluation {_duration(est.evaluation_s)}: "
            f"{est.per_test_volume_s:.2g} s a test volume x {est.evaluated_designs} designs); from one timed batch, "
            f"with torch on {torch.get_num_threads()} thread(s)"
        )
    if figure is not None:
        descriptions = {}
        for name in config.designs:
            try:
                descriptions[name] = problem.design(name, (), None, what=name).describe()
            except MutomoError:
                continue
        volumes = {k: v.detach().cpu().numpy() for k, v in preview_volumes(problem).items()}
        say(f"  scene preview: {scene_preview(figure, volumes, problem.scene.box, descriptions)}")
    for line in warnings:
        say(f"warning: {line}")
    if not warnings:
        say("no warnings")
    return warnings
