"""Evaluating designs on a problem's test volumes: smooth and physical, alone and paired.

Every design is observed on the same test volumes (keys ``(seed, 2, i)``) with the same muons
(generators keyed by the volume), so differences between designs are paired. Each volume is
simulated once and read out

* ``smooth``: the training relaxation (sigmoid edges of width ``smoothness``, hit
  probabilities as weights);
* ``physical``: hard edges, Bernoulli hits and a trigger of ``min_hits[0]`` hits per side
  (the headline), and ``physical_minK`` / ``physical_all`` for the other entries of
  ``min_hits`` (see :mod:`mutomo.detector.readout`).

The momentum the reconstruction uses is the problem's (``"true"`` is an oracle). Regression
tasks are calibrated on their own calibration volumes (keys ``(seed, 3, i)``) for each design
and readout; for presence with clean references those volumes are drawn without the object and
serve as the references. For presence, the headline physical readout is repeated at the
exposures ``exposure_factors`` x the task's to measure the exposure needed to reach the goal
(references included).

Under each systematic variation of ``systematics`` (:mod:`mutomo.optimise.systematics`) every
design is observed again, on the same test and calibration volumes and muon keys, in the
headline physical readout alone (:func:`observe_variation`); :func:`systematics_json` gives the
metrics and paired differences under each, for ``evaluations.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mutomo.design.base import Design
from mutomo.errors import ConfigError, MutomoError
from mutomo.optimise.problem import SMOOTH, Problem, Readout, key_generator
from mutomo.optimise.systematics import Variation
from mutomo.tasks import Metric, Observations

TEST_STREAM, CALIBRATION_STREAM = 2, 3
#: The reference detectors evaluated beside the designs (:mod:`mutomo.studies.bounds` builds them):
#: not designs one could build at the budget, so verdicts about "every design" leave them out.
REFERENCE_DESIGNS = ("ideal", "ideal_momentum")


@dataclass(frozen=True)
class EvaluationSettings:
    """How designs are evaluated (see the module docstring).

    Attributes:
        n_volumes: test volumes.
        calibration_volumes: calibration volumes (regression only).
        seed: seeds the test volumes and muons.
        min_hits: triggers of the physical readouts (``None``: every panel of a side); the
            first is the headline ``physical``.
        exposure_factors: presence: exposures (x the task's) for the exposure-to-goal metric.
        smoothness: panel-edge width (m) of the smooth readout.
        systematics: the systematic variations every design is also observed under (headline
            readout only; none by default).
    """

    n_volumes: int = 96
    calibration_volumes: int = 32
    seed: int = 12345
    min_hits: tuple[int | None, ...] = (2,)
    exposure_factors: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)
    smoothness: float = 0.005
    systematics: tuple[Variation, ...] = ()

    def __post_init__(self) -> None:
        if self.n_volumes < 4 or self.calibration_volumes < 2:
            raise MutomoError(f"evaluation needs n_volumes >= 4 and calibration_volumes >= 2; got {self}")
        if not self.min_hits:
            raise MutomoError("evaluation.min_hits needs at least one entry")

    @property
    def readouts(self) -> list[Readout]:
        return [SMOOTH, *(Readout(physical=True, min_hits=k) for k in self.min_hits)]

    @property
    def headline(self) -> Readout:
        """The headline physical readout (the first trigger of :attr:`min_hits`)."""
        return Readout(physical=True, min_hits=self.min_hits[0])

    def check_triggers(self, designs: dict[str, Design]) -> None:
        """Refuse, before anything is simulated, a design with fewer panels on a side than a
        trigger of :attr:`min_hits` asks for (a track needs that many recorded hits a side),
        naming the design, the side and ``evaluation.min_hits``."""
        wanted = max((k for k in self.min_hits if k is not None), default=None)
        if wanted is None:
            return
        for name, design in designs.items():
            with torch.no_grad():
                detector = design.detector()
            for side in ("above", "below"):
                n = detector.n_panels(side)
                if n < wanted:
                    raise ConfigError(
                        f"evaluation.min_hits = {list(_trigger_names(self.min_hits))} asks for {wanted} hits a side, "
                        f"but design {name!r} has {n} panels {side} the volume; give triggers of at most {n} "
                        '(or "all") for this design, or give it more panels'
                    )


def _trigger_names(min_hits: tuple[int | None, ...]) -> list[int | str]:
    """``min_hits`` as a configuration writes it (``None`` is ``"all"``)."""
    return ["all" if k is None else k for k in min_hits]


@dataclass
class DesignObservations:
    """A design's observations on the test (and calibration) volumes, by readout name."""

    test: dict[str, Observations]
    calibration: dict[str, Observations] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        """Write every array to one compressed ``.npz`` file (keys ``part/readout/field``)."""
        arrays: dict[str, np.ndarray] = {}
        for part in ("test", "calibration"):
            for name, o in getattr(self, part).items():
                arrays[f"{part}/{name}/outputs"] = o.outputs
                arrays[f"{part}/{name}/truths"] = o.truths
                for t, v in o.ladder.items():
                    arrays[f"{part}/{name}/ladder/{t!r}"] = v
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, **arrays)  # type: ignore[arg-type]
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> DesignObservations:
        """Read what :meth:`save` wrote."""
        parts: dict[str, dict[str, Observations]] = {"test": {}, "calibration": {}}
        with np.load(path) as data:
            for key in data.files:
                part, name, field_name, *rest = key.split("/")
                obs = parts[part].setdefault(name, Observations(np.empty(0), np.empty(0)))
                if field_name == "ladder":
                    obs.ladder[float(rest[0])] = data[key]
                else:
                    setattr(obs, field_name, data[key])
        return cls(parts["test"], parts["calibration"])


def _observe_set(
    design: Design,
    problem: Problem,
    settings: EvaluationSettings,
    stream: int,
    n: int,
    ladder: bool,
    clean: bool = False,
    readouts: Sequence[Readout] | None = None,
) -> dict[str, Observations]:
    readouts = list(readouts) if readouts is not None else settings.readouts
    outputs: dict[str, list[np.ndarray]] = {r.name: [] for r in readouts}
    ladder_outputs: dict[float, list[np.ndarray]] = {}
    truths = []
    factors = sorted(set(settings.exposure_factors) | {1.0}) if ladder else []
    head = next(i for i, r in enumerate(readouts) if r.physical)  # the ladder's readout
    detector = design.detector()
    with torch.no_grad():
        for i in range(n):
            key = (settings.seed, stream, i)
            sample = problem.sample(key, index=i, clean=clean)
            truths.append(problem.task.truth(sample))
            values = problem.observe(
                detector,
                sample,
                problem.n_muons,
                key_generator((*key, 0)),
                readouts,
                readout_generator=key_generator((*key, 1)),
            )
            for r, v in zip(readouts, values, strict=True):
                outputs[r.name].append(v.double().cpu().numpy())
            for k, f in enumerate(factors):
                seconds = problem.exposure_s * f
                if f == 1.0:
                    value = values[head]
                else:
                    n_muons = max(10, round(problem.n_muons * f))
                    (value,) = problem.observe(
                        detector,
                        sample,
                        n_muons,
                        key_generator((*key, 2, k)),
                        readouts[head : head + 1],
                        readout_generator=key_generator((*key, 3, k)),
                    )
                ladder_outputs.setdefault(seconds, []).append(value.double().cpu().numpy())
    t = np.array(truths, dtype=float)
    result = {name: Observations(np.stack(v), t) for name, v in outputs.items()}
    if ladder:
        result[readouts[head].name].ladder = {s: np.stack(v) for s, v in ladder_outputs.items()}
    return result


def observe_design(design: Design, problem: Problem, settings: EvaluationSettings) -> DesignObservations:
    """Observe ``design`` on the test volumes (and calibration volumes, for regression), in the
    smooth and every physical readout."""
    settings.check_triggers({"the design": design})
    saved = design.smoothness
    design.smoothness = settings.smoothness
    presence = problem.task.kind == "presence"
    try:
        test = _observe_set(design, problem, settings, TEST_STREAM, settings.n_volumes, ladder=presence)
        calibration = (
            # For presence the calibration volumes are the clean references (balanced for a learned
            # statistic, whose target volumes train it), at every exposure.
            _observe_set(
                design,
                problem,
                settings,
                CALIBRATION_STREAM,
                settings.calibration_volumes,
                presence,
                clean=presence and problem.task.clean_calibration,
            )
            if problem.task.needs_calibration
            else {}
        )
    finally:
        design.smoothness = saved
    return DesignObservations(test, calibration)


def observe_variation(
    design: Design, problem: Problem, settings: EvaluationSettings, variation: Variation
) -> DesignObservations:
    """Observe ``design`` in the world of ``variation`` (:meth:`Problem.under`) on the test volumes
    and muon keys of :func:`observe_design` (and its calibration volumes, which the operator
    records in the same world), in the headline physical readout alone, without the exposure
    ladder."""
    settings.check_triggers({"the design": design})
    varied = problem.under(variation)
    presence = varied.task.kind == "presence"
    readouts = [settings.headline]
    saved = design.smoothness
    design.smoothness = settings.smoothness
    try:
        test = _observe_set(design, varied, settings, TEST_STREAM, settings.n_volumes, False, readouts=readouts)
        calibration = (
            _observe_set(
                design,
                varied,
                settings,
                CALIBRATION_STREAM,
                settings.calibration_volumes,
                False,
                presence and varied.task.clean_calibration,
                readouts,
            )
            if varied.task.needs_calibration
            else {}
        )
    finally:
        design.smoothness = saved
    return DesignObservations(test, calibration)


def summarise(problem: Problem, obs: DesignObservations) -> dict[str, dict[str, Metric]]:
    """Metrics of one design by readout."""
    return {name: problem.task.metrics(o, obs.calibration.get(name)) for name, o in obs.test.items()}


def paired(problem: Problem, a: DesignObservations, b: DesignObservations) -> dict[str, dict[str, Metric]]:
    """Differences ``a - b`` of the metrics by readout, paired on the same volumes and muons."""
    return {
        name: problem.task.paired(a.test[name], b.test[name], a.calibration.get(name), b.calibration.get(name))
        for name in a.test
        if name in b.test
    }


def evaluate(
    design: Design, problem: Problem, settings: EvaluationSettings | None = None
) -> dict[str, dict[str, Metric]]:
    """Metrics of ``design`` by readout (``"smooth"``, ``"physical"``, ...)."""
    return summarise(problem, observe_design(design, problem, settings or EvaluationSettings()))


def metrics_json(metrics: dict[str, dict[str, Metric]]) -> dict[str, dict[str, list[float | None]]]:
    """``{readout: {metric: [value, error]}}`` for JSON."""
    return {mode: {k: m.as_list() for k, m in values.items()} for mode, values in metrics.items()}


def headline_metric(problem: Problem) -> tuple[str, bool]:
    """The task's headline metric (the first of ``higher_is_better``) and whether higher is better."""
    name, higher = next(iter(problem.task.higher_is_better.items()))
    return name, higher


def systematics_json(
    problem: Problem,
    settings: EvaluationSettings,
    observations: dict[str, dict[str, DesignObservations]],
    pairs: Sequence[tuple[str, str]],
) -> dict[str, Any]:
    """The metrics of every design and the paired differences ``a - b`` of ``pairs`` under each
    variation of ``settings.systematics``, for ``evaluations.json``: ``{"readout", "metric",
    "higher_is_better", "variations": {NAME: {"summary", "designs": {DESIGN: {METRIC: [value,
    error]}}, "paired": {"A - B": {METRIC: [difference, error]}}}}}``.

    Args:
        observations: by variation name, each design's :func:`observe_variation`.
        pairs: the designs compared, ``(a, b)``.
    """
    metric, higher = headline_metric(problem)
    readout = settings.headline.name
    out: dict[str, Any] = {"readout": readout, "metric": metric, "higher_is_better": higher, "variations": {}}
    for variation in settings.systematics:
        obs = observations[variation.name]
        out["variations"][variation.name] = {
            "summary": variation.summary,
            "designs": {name: metrics_json(summarise(problem, o))[readout] for name, o in obs.items()},
            "paired": {
                f"{a} - {b}": metrics_json(paired(problem, obs[a], obs[b]))[readout]
                for a, b in pairs
                if a in obs and b in obs
            },
        }
    return out
