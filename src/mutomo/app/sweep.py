"""``mutomo sweep CONFIG``: check everything, run the trials on Ray, gather, write.

The sweep's folder (``--output``, default ``output.directory + '_sweep'``) holds
``sweep.json`` (the configuration and overrides it was started with, but for
``[evaluation]`` and ``[output]``: a rerun with the same ones resumes, or only judges again
when every trial is done; another is refused), ``trials/NAME/`` (:mod:`mutomo.sweep.trial`),
``trials.json`` (every trial's status, error, attempts and seconds: written even when the
judgement fails), ``landscape.json`` (:mod:`mutomo.sweep.gather`) and ``figures/``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from mutomo.config.build import comparison_designs, evaluation_settings
from mutomo.config.sanity import before_run
from mutomo.config.schema import load_config
from mutomo.errors import ConfigError, MutomoError, RunDirectoryError, naming_the_source
from mutomo.io.files import writable_dir
from mutomo.plotting.landscape import write_landscape_figures
from mutomo.studies.landscape import check_front, landscape_lines, save_landscape
from mutomo.sweep.engine import check_address, run_trials, start_ray
from mutomo.sweep.gather import gather, methods_lines
from mutomo.sweep.plan import SweepPlan
from mutomo.sweep.trial import setting


def _stamp(folder: Path, stamp: dict[str, Any]) -> None:
    """Write ``sweep.json``, or refuse a folder that holds a sweep of other settings."""
    path = folder / "sweep.json"
    if path.exists():
        try:
            previous = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            previous = None
        if previous != stamp:
            raise RunDirectoryError(
                f"{folder}: holds a sweep of another configuration or other overrides ({path.name} differs); "
                "give another --output, or remove the folder to start again"
            )
        return
    path.write_text(json.dumps(stamp, indent=1))


def run_sweep(
    config_path: str,
    *,
    address: str | None = None,
    workers: int | None = None,
    output: Path | None = None,
    overrides: dict[str, int] | None = None,
    eval_volumes: int | None = None,
    report: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the sweep of the configuration ``config_path`` (see the module docstring); returns
    the content of ``landscape.json``. Everything the trials need is built and checked here
    first, so that bad input is refused before any trial starts."""
    if workers is not None and (isinstance(workers, bool) or workers < 1):
        raise MutomoError(f"--workers must be an integer >= 1; got {workers!r}")
    if address is not None:
        check_address(address)
    config = load_config(config_path)
    with naming_the_source(config_path):
        try:
            plan = SweepPlan.from_config(config)
        except MutomoError as exc:
            raise ConfigError(f"sweep: {exc}") from None
        s = setting(config, overrides)
        humans = comparison_designs(config, s.problem, s.template.budget)
        evaluation_settings(config).check_triggers({config.design.start: s.template, **humans})
        for line in before_run(config, s.problem):
            report(f"warning: {line}")
        try:
            check_front(s.template, plan.landscape)
        except MutomoError as exc:
            raise ConfigError(f"sweep.{exc}") from None
        if s.training.volumes_per_epoch < s.problem.task.min_batch:
            raise ConfigError(
                f"training.volumes_per_epoch must be >= {s.problem.task.min_batch} for this {s.problem.task.kind} "
                f"task; got {s.training.volumes_per_epoch}"
            )
    evaluation = evaluation_settings(config)
    if eval_volumes is not None:
        evaluation = replace(evaluation, n_volumes=eval_volumes)
    folder = writable_dir(
        output if output is not None else Path(f"{config.output.directory}_sweep"), "--output"
    ).resolve()
    # What the trials depend on (not the evaluation: a rerun may judge them on more test volumes).
    stamp = {"config": config.model_dump(mode="json", exclude={"evaluation", "output"}), "overrides": overrides or {}}
    _stamp(folder, stamp)
    trials = plan.trials()
    started = start_ray(address, workers if workers is not None else plan.workers)
    t0 = time.perf_counter()
    try:
        report(f"{len(trials)} trials on Ray ({'local' if address is None else address}); folder {folder}")
        results = run_trials(config, plan, trials, folder, overrides, report)
    finally:
        if started:
            import ray

            ray.shutdown()
    (folder / "trials.json").write_text(json.dumps(results, indent=1))
    report("evaluating the finished designs on the test volumes ...")
    result = gather(s.problem, plan, results, evaluation, humans, s.template)
    result["seconds"]["sweep"] = time.perf_counter() - t0
    result["made_for"] = s.problem.made_for

    figures = save_landscape(folder, result)[1:] + write_landscape_figures(folder, result, s.problem.scene.box)
    for line in landscape_lines(result) + methods_lines(result["methods"], result["metric"]["name"]):
        report(line)
    failed = [n for n, r in results.items() if r["status"] != "done"]
    if failed:
        report(f"{len(failed)} trial(s) failed, left out (errors in trials.json): {', '.join(failed)}")
    report(f"landscape written to {folder / 'landscape.json'}; also {', '.join(str(f) for f in figures)}")
    return result
