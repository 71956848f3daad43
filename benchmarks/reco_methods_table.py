"""Every voxel method with true and with unknown momenta, side by side: presence AUC, imaging
error and contrast-to-noise on the waste block and on lead in water (issue 13's result table).

(Not to be confused with ``methods_table.py``: optimisation methods, gradients against
gradient-free search, on the ladle furnace.)

Scenes, both built through the configuration path (:func:`mutomo.config.schema.parse_config`):

* ``waste_block``: the built-in configuration ``waste_block`` (1 m^3 of concrete in 10 cm voxels,
  a 10 cm uranium cube at a random voxel with probability 0.5, 600 s of exposure: 107,641 muons
  of GCCLY15, 0.1-1000 GeV/c, 0-60 deg, through the scene's generation plane);
* ``lead_in_water``: ``extends = "waste_block"`` with the background replaced by water and the
  object by a 10 cm lead cube (same size, placement range and probability): see
  :data:`LEAD_IN_WATER`.

Design: the configuration's human design ``human_close`` (three 1.6 m, 100 um, 90 % efficient
panels 10 cm apart on each side, hugging the block), the same for every cell.

Evaluation, as ``mutomo evaluate`` does it (:mod:`mutomo.optimise.evaluate`) with the
configuration's seed (12345): test volumes keyed ``(seed, 2, i)`` (the object in the even ones),
clean reference volumes keyed ``(seed, 3, i)``, muons and hits drawn from generators keyed by the
volume; the physical readout only (hard edges, Bernoulli hits, >= 2 hits a side); one exposure
(``exposure_factors = [1.0]``: the exposure-to-goal ladder is not measured). ``--volumes`` test
volumes and ``--references`` reference volumes, by default the configuration's 120 and 24.
Every cell (method x momentum) of a scene reads the *same* simulated muons and the same physical
hits: each volume is simulated and read out once, then reconstructed with every momentum and
every method (:func:`observe_cells`). That is what
``observe_design`` would do for each cell separately, only without simulating the volume again;
``tests/unit/test_benchmark_scripts.py`` checks that a cell's outputs are identical to
``observe_design``'s for the configuration with that inference and momentum.

Methods (``task.inference``): ``poca``, ``extended_poca`` (X0 from PoCA, binned or spread by
its uncertainty), ``asr`` (angle statistics), ``bca`` (binned clustering), ``mlem`` (ML/EM X0).
Momenta (``task.momentum``): ``true`` (mean of the momenta in and out: an oracle), ``flux_mean``
(the flux mean at the measured zenith: what the built-in waste block uses), ``range_mean``
(the flux mean above the range-limited minimum momentum of the scene's nominal background:
concrete or water; ``ExpectedMomentum(..., deflection=False)``). ``--momenta`` also takes
``constant`` (4 GeV/c), ``expected`` (``ExpectedMomentum`` with the deflection), not run for
the table, ``marginal`` (ML/EM only: no per-muon momentum, the EM marginalises over it with the
flux prior above the range cut) and ``posterior`` (PoCA, extended PoCA, ASR, BCA: each muon's
posterior effective momentum after that ML/EM reconstruction of the same volume,
``MaximumLikelihoodEM.posterior_momentum``); the Delta AUC vs ASR of those two is against ASR
with the flux mean (what ships).

Definitions:

* **AUC**: the presence task's own metric (:class:`mutomo.tasks.presence.Presence`, reference
  ``"clean"``): each voxel's score as a z-score against the per-voxel mean and spread of the
  clean reference blocks (plus the voxel's own error for the X0 methods), a smooth maximum over
  voxels per volume, ROC AUC over the test volumes with DeLong's standard error.
  ``eff@1%``: detection efficiency at 1 % false alarm, bootstrap error (with ~25 clean test
  volumes 1 % means: no clean volume above the threshold).
* **Delta AUC**: AUC(momentum) - AUC(true) for the same method, and AUC(method) - AUC(asr) for
  the same momentum, paired on the same volumes and muons (DeLong's paired error). The JSON keeps
  every cell's per-volume presence scores (``scores``, with the scene's ``labels``) for any other
  paired comparison.
* **Imaging error and CNR** (the definitions and code of ``unknown_momentum.py``'s ``judge``),
  on the test volumes that hold the cube (half of them), from the same maps: the cube voxel's
  ``|ln(X0_est / X0_true)|``, median over volumes, and the median of the same over every
  measured background voxel of those volumes; interval: 16-84 % of 400 bootstrap resamples of
  the volumes. CNR = (score_cube - mean_bg) / std_bg per volume over the measured background
  voxels (scores: 1/X0 for the X0 methods, the method's own score for ASR and BCA), mean and
  standard error over volumes where the cube's voxel is measured. The imaging error is ``n/a``
  for ASR and BCA: their scores are angle statistics, not an X0 (no X0 estimate to compare).
  ``top1``: fraction of those volumes whose highest-scoring measured voxel is the cube's
  (binomial error); raw scores, no reference.

Run (the numbers in README.md and benchmarks/README.md)::

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/reco_methods_table.py --volumes 120 --references 24

Results: ``benchmarks/results/reco_methods_table.json`` (every number) and ``.md`` (the tables);
``--out`` changes the stem.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import platform
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mutomo.config.build import build_problem, evaluation_settings
from mutomo.config.schema import RunConfig, parse_config
from mutomo.detector.readout import physical_readout
from mutomo.optimise.evaluate import CALIBRATION_STREAM, TEST_STREAM
from mutomo.optimise.problem import Problem, key_generator
from mutomo.reco.methods import VOXEL_METHODS, X0_METHODS
from mutomo.reco.momentum_options import MOMENTUM_OPTIONS
from mutomo.simulate import simulate
from mutomo.tasks import Observations
from mutomo.tasks.metrics import paired_auc_difference
from mutomo.tasks.presence import Presence, presence_outputs


def _load_unknown_momentum() -> Any:
    """``benchmarks/unknown_momentum.py`` (its ``judge``: ranks, CNR and imaging error)."""
    path = Path(__file__).resolve().parent / "unknown_momentum.py"
    spec = importlib.util.spec_from_file_location("unknown_momentum", path)
    assert spec is not None and spec.loader is not None
    module = sys.modules.setdefault("unknown_momentum", importlib.util.module_from_spec(spec))
    spec.loader.exec_module(module)
    return module


judge = _load_unknown_momentum().judge

SCENES = ("waste_block", "lead_in_water")
METHODS = tuple(VOXEL_METHODS)
MOMENTA = ("true", "flux_mean", "range_mean")
#: Every momentum a configuration may name (``--momenta``; the table's run uses :data:`MOMENTA`).
ALL_MOMENTA = tuple(MOMENTUM_OPTIONS)


def methods_for(momentum: str, methods: tuple[str, ...]) -> list[str]:
    """The methods of ``methods`` that have a cell with ``momentum`` (those it is for)."""
    allowed = MOMENTUM_OPTIONS[momentum].methods()
    return [m for m in methods if m in allowed]


DESIGN = "human_close"
#: The lead-in-water scene: the waste block with water around a lead cube.
LEAD_IN_WATER: dict[str, Any] = {
    "extends": "waste_block",
    "name": "lead_in_water",
    "description": "The waste block with a background of water hiding, with probability 0.5, a 10 cm lead cube.",
    "scene": {
        "background": {"material": "water"},
        "objects": [
            {
                "name": "lead cube",
                "material": "lead",
                "size": [0.1, 0.1, 0.1],
                "low": {"min": [0.0, 0.0, 0.0], "max": [0.9, 0.9, 0.9]},
                "probability": 0.5,
            }
        ],
    },
}


def scene_config(
    scene: str,
    volumes: int,
    references: int,
    inference: str = "asr",
    momentum: str = "flux_mean",
    muons: int | None = None,
) -> RunConfig:
    """The scene's configuration with the given evaluation size (one exposure, >= 2 hits a
    side), inference and momentum; ``muons``: muons per volume instead of the 600 s (tests)."""
    base = LEAD_IN_WATER if scene == "lead_in_water" else {"extends": "waste_block"}
    task: dict[str, Any] = {"inference": inference, "momentum": momentum}
    if muons is not None:
        task |= {"exposure_s": None, "muons_per_volume": muons}
    data = {
        **base,
        "task": task,
        "evaluation": {
            "n_volumes": volumes,
            "calibration_volumes": references,
            "exposure_factors": [1.0],
            "min_hits": [2],
        },
    }
    return parse_config(data, f"{scene} (reco_methods_table.py)")


@dataclass
class Cells:
    """Per-volume outputs of every (method, momentum) cell on one set of volumes."""

    outputs: dict[tuple[str, str], list[np.ndarray]] = field(default_factory=dict)
    judged: dict[tuple[str, str], list[Any]] = field(default_factory=dict)  # unknown_momentum.Outcome
    truths: list[float] = field(default_factory=list)


def observe_cells(
    problem: Problem,
    config: RunConfig,
    stream: int,
    n: int,
    clean: bool,
    methods: tuple[str, ...] = METHODS,
    momenta: tuple[str, ...] = MOMENTA,
    progress: bool = False,
) -> Cells:
    """Simulate and read out each volume of ``stream`` once (as
    :func:`mutomo.optimise.evaluate.observe_design` does for its physical readout), then
    reconstruct it with every momentum and method: the presence outputs of each cell (as
    :meth:`Presence.output` gives them) and, on volumes with the object, ``judge``'s verdict."""
    settings = evaluation_settings(config)
    (min_hits,) = settings.min_hits
    design = problem.design(DESIGN, (), None)
    design.smoothness = settings.smoothness  # as observe_design; the physical readout has hard edges
    detector = design.detector()
    t = config.task
    tasks = {m: Presence(m, t.false_alarm, t.goal, t.reference) for m in methods}
    by_momentum = {p: replace(problem, momentum=MOMENTUM_OPTIONS[p]) for p in momenta}
    cells = Cells()
    start = time.time()
    with torch.no_grad():
        for i in range(n):
            key = (settings.seed, stream, i)
            sample = problem.sample(key, index=i, clean=clean)
            cells.truths.append(problem.task.truth(sample))
            volume = sample.volume
            result = simulate(
                detector,
                volume,
                problem.source,
                problem.n_muons,
                key_generator((*key, 0)),
                step_length=problem.step_length,
            )
            gen = key_generator((*key, 1))
            above = physical_readout(result.hits_above, detector, "above", result.muons_in.weight, gen, min_hits)
            below = physical_readout(result.hits_below, detector, "below", result.muons_out.weight, gen, min_hits)
            cube = int(sample.target_mask().reshape(-1).nonzero()[0, 0]) if sample.present else None
            for p in momenta:
                data = by_momentum[p].measure(above, below, result, sample)  # Problem.observe's momenta
                for m in methods_for(p, methods):
                    vmap = tasks[m].method(data, volume)
                    cells.outputs.setdefault((m, p), []).append(presence_outputs(vmap, sample).double().numpy())
                    if cube is not None:
                        cells.judged.setdefault((m, p), []).append(judge(vmap, volume, cube))
            if progress:
                print(f"  stream {stream} volume {i + 1}/{n}: {time.time() - start:.0f} s", flush=True)
    return cells


def _median_interval(per_volume: list[np.ndarray], rng: np.random.Generator, n_boot: int = 400) -> list[float]:
    """``[median, 16 %, 84 %]`` of the pooled values, the interval from resampling the volumes."""
    pooled = np.concatenate(per_volume) if per_volume else np.array([])
    pooled = pooled[np.isfinite(pooled)]
    if pooled.size == 0:
        return [math.nan, math.nan, math.nan]
    boots = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(per_volume), len(per_volume))
        sample = np.concatenate([per_volume[j] for j in idx])
        sample = sample[np.isfinite(sample)]
        if sample.size:
            boots.append(np.median(sample))
    lo, hi = np.quantile(boots, [0.16, 0.84])
    return [float(np.median(pooled)), float(lo), float(hi)]


def cell_numbers(
    task: Presence, test: Cells, references: Cells, key: tuple[str, str], exposure_s: float, seed: int
) -> dict[str, Any]:
    """The cell's AUC, efficiency at the false-alarm rate, CNR, imaging error and top1."""
    test_obs = _observations(test, key, exposure_s)
    ref_obs = _observations(references, key, exposure_s)
    metrics = task.metrics(test_obs, ref_obs)
    outs = test.judged.get(key, [])
    cnr = np.array([o.cnr for o in outs], dtype=float)
    cnr = cnr[np.isfinite(cnr)]
    top1 = np.array([o.top1 for o in outs], dtype=float)
    row: dict[str, Any] = {
        "auc": metrics["auc"].as_list(),
        "efficiency_at_false_alarm": metrics["efficiency_at_false_alarm"].as_list(),
        "cnr": [float(cnr.mean()), float(cnr.std(ddof=1) / math.sqrt(cnr.size))] if cnr.size > 1 else [None, None],
        "cnr_volumes": int(cnr.size),
        "top1": [float(top1.mean()), float(math.sqrt(top1.mean() * (1 - top1.mean()) / top1.size))]
        if top1.size
        else [None, None],
        "volumes_with_cube": len(outs),
    }
    if key[0] in X0_METHODS:
        rng = np.random.default_rng(seed)
        row["cube_log_error"] = _median_interval([np.array([o.cube_log_error]) for o in outs], rng)
        row["background_log_error"] = _median_interval([o.background_log_errors for o in outs], rng)
    return row


def _observations(cells: Cells, key: tuple[str, str], exposure_s: float) -> Observations:
    outputs = np.stack(cells.outputs[key])
    return Observations(outputs, np.array(cells.truths, dtype=float), {exposure_s: outputs})


def scene_table(
    scene: str,
    volumes: int,
    references: int,
    methods: tuple[str, ...] = METHODS,
    momenta: tuple[str, ...] = MOMENTA,
    progress: bool = False,
    muons: int | None = None,
    keep: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Every cell of one scene, and the paired AUC differences to ``true``. ``keep``: filled with
    every cell's per-volume presence outputs (``"test/method/momentum"``, ``"references/..."``,
    ``(volume, 5 voxel)``: :func:`mutomo.tasks.presence.presence_outputs`) and ``"labels"``, for other statistics."""
    config = scene_config(scene, volumes, references, muons=muons)
    problem = build_problem(config)
    settings = evaluation_settings(config)
    start = time.time()
    refs = observe_cells(problem, config, CALIBRATION_STREAM, references, True, methods, momenta, progress)
    t_refs = time.time() - start
    test = observe_cells(problem, config, TEST_STREAM, volumes, False, methods, momenta, progress)
    t_test = time.time() - start - t_refs
    t = config.task
    cells: dict[str, dict[str, Any]] = {}
    labels = np.array(test.truths, dtype=bool)
    if keep is not None:
        keep["labels"] = labels
        for name, observed in (("test", test), ("references", refs)):
            for (m, p), outputs in observed.outputs.items():
                keep[f"{name}/{m}/{p}"] = np.stack(outputs).astype(np.float32)
    scores: dict[tuple[str, str], np.ndarray] = {}
    for m in methods:
        task = Presence(m, t.false_alarm, t.goal, t.reference)
        cells[m] = {}
        for p in momenta:
            if (m, p) not in test.outputs:  # a marginal cell of a method that cannot marginalise
                continue
            cells[m][p] = cell_numbers(task, test, refs, (m, p), problem.exposure_s, settings.seed)
            scores[(m, p)], _ = task.scores(
                _observations(test, (m, p), problem.exposure_s), _observations(refs, (m, p), problem.exposure_s)
            )
            cells[m][p]["scores"] = scores[(m, p)].tolist()
    for (m, p), s in scores.items():
        if p != "true" and (m, "true") in scores:
            cells[m][p]["delta_auc_vs_true"] = paired_auc_difference(s, scores[(m, "true")], labels).as_list()
        # marginal and posterior: against what ships, ASR with the flux mean
        asr = ("asr", "flux_mean" if p in ("marginal", "posterior") else p)
        if m != "asr" and asr in scores:
            cells[m][p]["delta_auc_vs_asr"] = paired_auc_difference(s, scores[asr], labels).as_list()
    return {
        "config": config.model_dump(mode="json", include={"name", "task", "scene", "muons", "evaluation"}),
        "design": DESIGN,
        "n_muons": problem.n_muons,
        "exposure_s": problem.exposure_s,
        "test_volumes": volumes,
        "with_cube": int(labels.sum()),
        "labels": labels.astype(int).tolist(),
        "reference_volumes": references,
        "seconds": {"references": t_refs, "test": t_test},
        "cells": cells,
    }


# ---------------------------------------------------------------------------------------- tables
def _pm(value: list[float | None] | None, digits: int = 2) -> str:
    if value is None or value[0] is None:
        return "-"
    if value[1] is None or not math.isfinite(value[1]):
        return f"{value[0]:.{digits}f}"
    return f"{value[0]:.{digits}f} ± {value[1]:.{digits}f}"


def _interval(value: list[float] | None) -> str:
    if value is None:
        return "n/a"
    median, lo, hi = value
    if not math.isfinite(median):
        return "-"
    return f"{median:.2f} [{lo:.2f}, {hi:.2f}]"


def markdown(results: dict[str, Any]) -> str:
    """The tables of a result dictionary."""
    lines = []
    for scene, r in results["scenes"].items():
        lines += [
            f"### {scene}: {r['test_volumes']} test volumes ({r['with_cube']} with the cube), "
            f"{r['reference_volumes']} clean references, {r['n_muons']:,} muons ({r['exposure_s']:.0f} s), "
            f"design {r['design']}, physical readout (>= 2 hits a side)",
            "",
            "| method | momentum | AUC | Δ AUC vs true (paired) | Δ AUC vs ASR (paired) | eff. at 1 % FA | CNR | "
            "cube abs ln(X0 ratio) | background abs ln(X0 ratio) | top1 |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for m, by_p in r["cells"].items():
            for p, c in by_p.items():
                delta = _pm(c.get("delta_auc_vs_true"), 3)
                delta_asr = _pm(c.get("delta_auc_vs_asr"), 3)
                efficiency = _pm(c["efficiency_at_false_alarm"])
                lines.append(
                    f"| {m} | {p} | {_pm(c['auc'], 3)} | {delta} | {delta_asr} | {efficiency} | {_pm(c['cnr'], 1)} | "
                    f"{_interval(c.get('cube_log_error'))} | {_interval(c.get('background_log_error'))} | "
                    f"{_pm(c['top1'])} |"
                )
        s = r["seconds"]
        lines += ["", f"Wall time: references {s['references']:.0f} s, test volumes {s['test']:.0f} s.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--volumes", type=int, default=120, help="test volumes per scene (half with the cube)")
    parser.add_argument("--references", type=int, default=24, help="clean reference volumes per scene")
    parser.add_argument("--scenes", nargs="+", default=list(SCENES), choices=SCENES)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--momenta", nargs="+", default=list(MOMENTA), choices=ALL_MOMENTA)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "reco_methods_table")
    parser.add_argument("--muons", type=int, help="muons per volume instead of the 600 s (for tests)")
    parser.add_argument("--progress", action="store_true", help="print a line per volume")
    parser.add_argument(
        "--save-outputs", type=Path, help="also write every cell's per-volume voxel maps and errors (.npz, float32)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.time()
    results: dict[str, Any] = {
        "command": "python benchmarks/reco_methods_table.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": 1},
        "scenes": {},
    }
    kept: dict[str, np.ndarray] = {}
    methods, momenta = tuple(args.methods), tuple(args.momenta)
    for scene in args.scenes:
        keep: dict[str, np.ndarray] | None = {} if args.save_outputs else None
        results["scenes"][scene] = scene_table(
            scene, args.volumes, args.references, methods, momenta, args.progress, args.muons, keep
        )
        kept.update({f"{scene}/{k}": v for k, v in (keep or {}).items()})
        print(f"# {scene}: {time.time() - start:.0f} s", flush=True)
    if args.save_outputs:
        np.savez_compressed(args.save_outputs, **kept)  # type: ignore[arg-type]
    results["seconds"] = time.time() - start
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    text = markdown(results) + f"\nTotal wall time {results['seconds']:.0f} s; command `{results['command']}`.\n"
    args.out.with_suffix(".md").write_text(text)
    print(text)
    return results


if __name__ == "__main__":
    main()
