"""The report of a finished run directory: the task's figure and the X0 slices, then
:func:`mutomo.plotting.report.write_report` (what ``mutomo report`` and ``mutomo optimise`` call).

Reads only the run directory's files (see :mod:`mutomo.app.run`); a missing or damaged one
is refused with :class:`~mutomo.errors.RunDirectoryError` naming it.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mutomo.config.build import build_problem
from mutomo.config.schema import parse_config
from mutomo.design.describe import design_from_description
from mutomo.errors import RunDirectoryError
from mutomo.io.files import RERUN, read_json, writable_dir
from mutomo.optimise.evaluate import DesignObservations
from mutomo.optimise.problem import Problem
from mutomo.optimise.verdict import headline as headline_readout
from mutomo.plotting.figures import predicted_vs_true, roc_and_scores
from mutomo.plotting.report import ReportFigure, write_report
from mutomo.plotting.x0 import MAX_LAYERS, x0_slices
from mutomo.reco import measure
from mutomo.reco.x0 import HighlandX0Inferrer, PocaX0
from mutomo.simulate import simulate
from mutomo.tasks import Presence


def x0_figure(run_dir: Path, problem: Problem, n_muons: int) -> ReportFigure | None:
    """Inferred X0 slices of a test volume seen by the optimised design, with the report's caption."""

    if n_muons <= 0:
        return None
    design = design_from_description(read_json(run_dir / "design_final.json", RERUN))
    key = (0, 2, 0)
    volume = problem.sample(key, index=0).volume
    inferrer = HighlandX0Inferrer()
    with torch.no_grad():
        r = simulate(design.detector(), volume, problem.source, n_muons, torch.Generator().manual_seed(7))
        p = 0.5 * (r.muons_in.momentum + r.muons_out.momentum)
        data = measure(r.hits_above, r.hits_below, volume, p, r.muons_in.weight * (r.muons_out.weight > 0))
        vmap = PocaX0(inferrer=inferrer)(data, volume)
    assert vmap.x0 is not None
    z_edges = volume.z_low + volume.voxel_size[2] * np.arange(volume.shape[2] + 1)
    path = x0_slices(
        run_dir / "figures" / "x0_slices.png",
        vmap.x0.numpy(),
        volume.x_range,
        volume.y_range,
        z_edges,
        truth=volume.x0.numpy(),
        measured=vmap.measured.numpy(),
        min_muons=inferrer.min_muons,
    )
    held = " (it holds the object)" if problem.task.kind == "presence" else ""
    caption = (
        f"Radiation length X0 per voxel inferred from {n_muons:,} muons ({vmap.method}: extended PoCA with the "
        "Highland inference; true muon momentum; the training (smooth) readout of the optimised design), in up to "
        f"{MAX_LAYERS} evenly spaced z slices of one volume drawn from the scene (key {key}){held}, each row of "
        "slices followed by the true X0 of the same slices; log colour scale. Grey hatched voxels were not measured "
        f"(fewer than {inferrer.min_muons:g} effective muons)."
    )
    return ReportFigure(path, "Inferred radiation length, slice by slice", caption)


def run_observations(run_dir: Path, name: str) -> Any:

    path = run_dir / "observations" / f"{name}.npz"
    try:
        return DesignObservations.load(path)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:  # numpy's, for a missing or damaged archive
        raise RunDirectoryError(f"{path}: unreadable ({exc}); {RERUN}") from None


def _headline(observations: Any) -> str:
    """The headline physical readout (the first trigger of ``evaluation.min_hits``)."""
    return headline_readout(list(observations.test))


def task_figure(run_dir: Path, problem: Problem, designs: list[str]) -> Path | None:
    """The task's own figure from the run's observations: calibration plot (regression), ROC
    curves and score distributions (presence)."""

    obs = {name: run_observations(run_dir, name) for name in designs}
    figures = run_dir / "figures"
    if problem.task.kind == "regression":
        answers = {}
        for name, o in obs.items():
            headline = _headline(o)
            cal, test = o.calibration[headline], o.test[headline]
            slope, intercept = np.polyfit(cal.outputs[:, 0], cal.truths, 1)
            answers[name] = (test.truths, slope * test.outputs[:, 0] + intercept)
        return predicted_vs_true(figures / "predicted_vs_true.png", answers)
    if problem.task.kind == "presence":
        assert isinstance(problem.task, Presence)
        scores = {}
        for name, o in obs.items():
            headline = _headline(o)
            test = o.test[headline]
            scores[name] = (test.truths, problem.task.scores(test, o.calibration.get(headline))[0])
        return roc_and_scores(figures / "presence.png", scores)
    return None


def write_run_report(run_dir: Path) -> Path:
    """Figures and ``report.html`` of the finished run in ``run_dir``; returns the report's path."""

    config = parse_config(read_json(run_dir / "config.json", RERUN), str(run_dir / "config.json"))
    problem = build_problem(config)
    writable_dir(run_dir / "figures", "figures folder")
    designs = list(read_json(run_dir / "evaluations.json", RERUN).get("designs", {}))
    extra: list[Path | ReportFigure | None] = [
        task_figure(run_dir, problem, designs),
        x0_figure(run_dir, problem, config.output.x0_muons),
    ]
    return write_report(run_dir, problem.scene.box, [f for f in extra if f is not None])
