"""``mutomo bound CONFIG``: how far designs are from the best any detector could do, without
training (:mod:`mutomo.studies.bounds`).

The configuration's start design, its ``evaluation.compare`` designs, any ``--design`` (a named
design or a design JSON file, e.g. a run's ``design_final.json``) and the reference detectors
``ideal`` and ``ideal_momentum`` are observed on the same test volumes and muons with the
configuration's physical evaluation; the JSON written holds every design's metrics, the bounds'
paired differences and each design's share of the possible gain over the start.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mutomo.app.observations import claim_folder, observations_cached
from mutomo.config.build import bound_designs, build_design, build_problem, comparison_designs, evaluation_settings
from mutomo.config.schema import RunConfig
from mutomo.design.base import Design
from mutomo.io.files import writable_dir, writable_file
from mutomo.optimise.evaluate import DesignObservations, metrics_json, observe_design, summarise
from mutomo.optimise.metric_text import metric_label, value_text
from mutomo.optimise.problem import Problem
from mutomo.optimise.verdict import headline as headline_readout
from mutomo.studies.bounds import IDEAL, IDEAL_MOMENTUM, bound_entries

START = "start"


def bound(
    config: RunConfig, designs: list[str], json_path: Path, progress: bool = True, cache: Path | None = None
) -> dict[str, Any]:
    """Evaluate the start, the compared designs, ``designs`` (names, files, or ``LABEL=FILE``) and
    the bounds of ``config`` (both bounds when ``evaluation.bounds`` is empty); write and return the
    result (module docstring). With ``cache``, every design's observations are kept in that folder
    (:mod:`mutomo.app.observations`) and a repeated bound of the same configuration observes only
    the designs it has not seen, e.g. a design trained since, on the same volumes and muons."""
    writable_file(json_path, "--json")
    if cache is not None:
        cache = writable_dir(cache, "--cache")
        claim_folder(cache, config, "give another --cache")
    if not config.evaluation.bounds:
        config = config.model_copy(
            update={"evaluation": config.evaluation.model_copy(update={"bounds": [IDEAL, IDEAL_MOMENTUM]})}
        )
    problem = build_problem(config)
    start = build_design(config, problem)
    named: dict[str, tuple[Design, Problem]] = {START: (start, problem)}
    for name, d in comparison_designs(config, problem, start.budget).items():
        named[name] = (d, problem)
    for entry in designs:
        label, _, source = entry.rpartition("=")  # LABEL=FILE names a design file
        named[label or source] = (problem.design(source, (), None, what="--design"), problem)
    named.update(bound_designs(config, problem, start))
    settings = evaluation_settings(config)
    observations: dict[str, DesignObservations] = {}
    for i, (name, (design, where)) in enumerate(named.items()):
        if progress:
            print(f"observing {name} ({i + 1} of {len(named)}) on {settings.n_volumes} test volumes", flush=True)
        observations[name] = (
            observe_design(design, where, settings)
            if cache is None
            else observations_cached(cache, name, design, where, settings)
        )
    result: dict[str, Any] = {
        "readouts": list(observations[START].test),
        "designs": {
            name: {**metrics_json(summarise(problem, observations[name])), "design": d.describe()}
            for name, (d, _) in named.items()
        },
    }
    result.update(bound_entries(problem, observations, START, config.evaluation.bound_momentum_resolution))
    json_path.write_text(json.dumps(result, indent=1))
    return result


def share_lines(result: dict[str, Any]) -> list[str]:
    """The shares of the possible gain on the headline readout, one line per design."""
    headline = headline_readout(result["readouts"])
    lines = [f"share of the possible gain over the start ({headline}; 0 = the start, 1 = the ideal detector)"]
    for name, values in result.get("shares", {}).items():
        text = "  ".join(f"{metric_label(m)} {value_text(m, ve, '+-')}" for m, ve in values.get(headline, {}).items())
        lines.append(f"  {name:28s} {text}")
    momentum = result.get("paired", {}).get(f"{IDEAL_MOMENTUM} - {IDEAL}", {}).get(headline)
    if momentum:
        resolution = result["bounds"].get("momentum_resolution")
        text = "  ".join(f"{metric_label(m)} {value_text(m, ve, '+-')}" for m, ve in momentum.items())
        lines.append(f"measuring the momentum to {100 * resolution:.3g} % (ideal_momentum - ideal): {text}")
    return lines
