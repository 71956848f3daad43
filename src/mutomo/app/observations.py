"""Evaluations kept on disk, so that nothing already computed is lost: a folder is claimed by one
configuration (``config.json``), and each design's observations are written once
(``observations/NAME.npz`` with ``NAME.json``: the design and the seconds it took) and read back
by a resumed run (:mod:`mutomo.app.run`) or a repeated bound (:mod:`mutomo.app.bound`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from mutomo.config.schema import ConfigError, RunConfig
from mutomo.design.base import Design
from mutomo.errors import MutomoError
from mutomo.optimise.evaluate import DesignObservations, EvaluationSettings, observe_design, observe_variation
from mutomo.optimise.problem import Problem
from mutomo.optimise.systematics import Variation


def claim_folder(folder: Path, config: RunConfig, remedy: str) -> None:
    """Write ``config`` as ``folder/config.json``, refusing (with ``remedy``) a folder that holds
    the work of a different configuration."""
    saved = folder / "config.json"
    if saved.exists() and _as_now(saved) != json.loads(config.model_dump_json()):
        raise ConfigError(f"{folder} holds the work of a different configuration; {remedy}")
    saved.write_text(config.model_dump_json(indent=2))


def _as_now(saved: Path) -> dict[str, Any] | None:
    """The configuration saved in ``saved`` as this version's schema reads it (a field added since,
    at its default, is the same configuration), or ``None`` if it no longer reads."""
    try:
        return cast(dict[str, Any], json.loads(RunConfig.model_validate_json(saved.read_text()).model_dump_json()))
    except (ValueError, MutomoError):
        return None


def observations_cached(
    run_dir: Path,
    name: str,
    design: Design,
    problem: Problem,
    settings: EvaluationSettings,
    say: Callable[[str], None] | None = None,
    variation: Variation | None = None,
) -> DesignObservations:
    """``design``'s observations, read from ``observations/NAME.npz`` if computed before for the
    same design (``NAME.json`` holds the design and the seconds it took; a different design under
    the same name is observed afresh); ``say`` reports the evaluation's start and end (a minute or
    more of work on a large evaluation). With ``variation``, its observations under that
    systematic variation (``observations/systematics/VARIATION/NAME.npz``)."""
    folder = run_dir / "observations"
    if variation is not None:
        folder = folder / "systematics" / variation.name
    path = folder / f"{name}.npz"
    described = json.loads(json.dumps(design.describe()))
    record_path = path.with_suffix(".json")
    if path.exists() and record_path.exists() and json.loads(record_path.read_text()).get("design") == described:
        return DesignObservations.load(path)
    start = time.perf_counter()
    if say is not None:
        calibration = settings.calibration_volumes if problem.task.needs_calibration else 0
        plus = f" + {calibration} calibration" if calibration else ""
        under = "" if variation is None else f" under {variation.name} ({variation.summary})"
        say(f"evaluating {name}{under} on {settings.n_volumes} test{plus} volumes x {problem.n_muons:,} muons ...")
    obs = (
        observe_design(design, problem, settings)
        if variation is None
        else observe_variation(design, problem, settings, variation)
    )
    if say is not None:
        say(f"evaluated {name} in {time.perf_counter() - start:.0f} s")
    path.parent.mkdir(parents=True, exist_ok=True)
    obs.save(path)
    record_path.write_text(json.dumps({"design": described, "seconds": time.perf_counter() - start}, indent=1))
    return obs
