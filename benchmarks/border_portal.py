"""The border portal's operating point (issue 29): detection of the uranium cube against scan
time and the number of modules, for the tiled placement, and how many muons the cube's voxel sees.

``operating-point CONFIG --modules K ... --exposures S ...`` observes, for every K (modules a
side, tiled by :func:`mutomo.studies.starts.tiled_for`) and scan time S (s), the configuration's
test cargos (keys ``(seed, 2, i)``, the target in about half) and clean reference cargos (keys
``(seed, 3, i)``) as the evaluation does: each cargo simulated once per scan time with that many
seconds of muons, the physical readout (hard edges, Bernoulli hits, the configuration's first
trigger), the configuration's voxel method, momentum and presence statistic. It reports per
cell the ROC AUC (DeLong's error), the detection at 1 % false alarm (stratified bootstrap error),
the mean muon weight that informed the cube's voxel in the cargos that hold it (the voxel
method's ``weight``: muons whose tracks pass there), and the reconstructed muons per cargo, and
writes a record (machine, date, commit, command) to ``benchmarks/results/border_portal/``.

Every cell sees the same cargos; the cells of one K use independent muons per scan time (a
longer scan is not the shorter one extended), as the evaluation's exposure ladder does.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/border_portal.py operating-point border_portal \\
        --modules 3 --exposures 60 120 240 --volumes 80 --references 24 --progress
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mutomo.benchrecord import load_average, new_record
from mutomo.config import load_config
from mutomo.config.build import build_problem, evaluation_settings
from mutomo.optimise.evaluate import CALIBRATION_STREAM, TEST_STREAM
from mutomo.optimise.problem import key_generator
from mutomo.studies.starts import tiled_for
from mutomo.tasks.metrics import bootstrap_metric, efficiency_at_false_alarm, roc_auc
from mutomo.tasks.presence_statistics import PresenceMaps, statistic_scores

HERE = Path(__file__).resolve().parent
FALSE_ALARM = 0.01


def _observe(
    problem: Any, settings: Any, design: Any, stream: int, volumes: range, clean: bool, say: Any
) -> dict[str, Any]:
    """Maps, truth and muon counts of the ``volumes`` (indices) of ``stream`` seen by ``design``, measured as
    the evaluation measures them (:meth:`~mutomo.optimise.problem.Problem.measured`, its keys and
    its headline physical readout)."""
    detector = design.detector()
    score, sigma, measured, inverse_x0, target, present, in_target, muons = [], [], [], [], [], [], [], []
    with torch.no_grad():
        for done, i in enumerate(volumes, 1):
            key = (settings.seed, stream, i)
            sample = problem.sample(key, index=i, clean=clean)
            (data,) = problem.measured(
                detector, sample, problem.n_muons, key_generator((*key, 0)), (settings.headline,),
                readout_generator=key_generator((*key, 1)),
            )  # fmt: skip
            vmap = problem.task.voxel_map(data, sample.volume)
            maps = PresenceMaps.of(vmap)
            mask = sample.target_mask().reshape(-1)
            score.append(maps.score)
            sigma.append(maps.sigma)
            measured.append(maps.measured)
            inverse_x0.append((1.0 / sample.volume.x0).reshape(-1).double())
            target.append(mask)
            present.append(bool(sample.present))
            weight = vmap.weight.reshape(-1)
            in_target.append(float(weight[mask].mean()) if bool(mask.any()) else float("nan"))
            muons.append(float(data.weight.sum()))
            if say is not None:
                say(done, len(volumes))
    return {
        "maps": PresenceMaps(torch.stack(score).double(), torch.stack(sigma).double(), torch.stack(measured)),
        "inverse_x0": torch.stack(inverse_x0),
        "target": torch.stack(target),
        "present": np.array(present),
        "in_target": np.array(in_target),
        "muons": np.array(muons),
    }


def _cell(
    problem: Any, settings: Any, design: Any, statistic: str, args: argparse.Namespace, label: str
) -> dict[str, Any]:
    start = time.time()

    def say(part: str) -> Any:
        if not args.progress:
            return None
        return lambda i, n: print(f"{label} {part} {i}/{n}: {time.time() - start:.0f} s", flush=True)

    tests = range(args.first, args.first + args.volumes)
    test = _observe(problem, settings, design, TEST_STREAM, tests, False, say("test"))
    # The likelihood statistic reads no references: none are simulated for it.
    n_refs = args.references if problem.task.needs_calibration else 0
    refs = (
        _observe(problem, settings, design, CALIBRATION_STREAM, range(n_refs), True, say("references"))
        if n_refs
        else None
    )
    scores = statistic_scores(
        statistic,
        test["maps"],
        test["maps"] if refs is None else refs["maps"],  # the likelihood statistic reads none
        reference_inverse_x0=None if refs is None else refs["inverse_x0"],
        shape=problem.scene.shape,
    ).numpy()
    labels = test["present"]
    if args.save_maps is not None:  # every map and its truth, for statistics tried offline
        args.save_maps.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, Any] = {}
        for part, obs in (("test", test), ("reference", refs)) if refs is not None else (("test", test),):
            maps = obs["maps"]
            arrays |= {f"{part}_score": maps.score.float().numpy(), f"{part}_sigma": maps.sigma.float().numpy()}
            arrays |= {f"{part}_measured": maps.measured.numpy(), f"{part}_present": obs["present"]}
            arrays |= {f"{part}_inverse_x0": obs["inverse_x0"].float().numpy(), f"{part}_target": obs["target"].numpy()}
        np.savez_compressed(args.save_maps / f"{label.replace('=', '').replace(' ', '_')}.npz", **arrays)
    detection = bootstrap_metric(lambda idx: efficiency_at_false_alarm(scores[idx], labels[idx], FALSE_ALARM), labels)
    with_cube = test["in_target"][labels]
    return {
        "auc": roc_auc(scores, labels).as_list(),
        "detection_at_1pc_false_alarm": detection.as_list(),
        "muons_in_cube_voxel": [float(np.mean(with_cube)), float(np.std(with_cube, ddof=1) / np.sqrt(len(with_cube)))],
        "muons_in_cube_voxel_range": [float(np.min(with_cube)), float(np.max(with_cube))],
        "reconstructed_muons_per_cargo": float(
            np.mean(test["muons"] if refs is None else np.concatenate([test["muons"], refs["muons"]]))
        ),
        "generated_muons_per_cargo": int(problem.n_muons),
        "test_volumes": int(labels.size),
        "first_test_volume": args.first,
        "with_target": int(labels.sum()),
        "reference_volumes": 0 if refs is None else int(refs["present"].size),
        "scores": scores.tolist(),
        "labels": labels.astype(int).tolist(),
        "muons_in_cube_voxel_per_cargo": [None if np.isnan(v) else float(v) for v in test["in_target"]],
        "seconds": time.time() - start,
    }


def operating_point(args: argparse.Namespace) -> dict[str, Any]:
    config = load_config(args.config)
    problem = build_problem(config)
    settings = evaluation_settings(config)
    cells: dict[str, Any] = {}
    for k in args.modules:
        design = tiled_for(problem, 2 * k)
        for seconds in args.exposures:
            at = replace(problem, n_muons=max(10, round(problem.n_muons * seconds / problem.exposure_s)))
            label = f"K={k} {seconds:g} s"
            cell = _cell(at, settings, design, config.task.statistic, args, label)
            row = {"modules_a_side": k, "scan_s": seconds, **cell}
            cells[label] = row
            print(
                f"{label}: AUC {row['auc'][0]:.3f} +- {row['auc'][1]:.3f}, detection at 1 % false alarm "
                f"{row['detection_at_1pc_false_alarm'][0]:.3f} +- {row['detection_at_1pc_false_alarm'][1]:.3f}, "
                f"muons in the cube's voxel {row['muons_in_cube_voxel'][0]:.1f}",
                flush=True,
            )
    return {
        "configuration": config.name,
        "inference": problem.task.inference,
        "momentum": config.task.momentum,
        "statistic": config.task.statistic,
        "trigger_hits": settings.headline.min_hits,
        "cells": cells,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    op = sub.add_parser("operating-point", help="detection against scan time and K for the tiled placement")
    op.add_argument("config", help="configuration file or built-in benchmark (border_portal)")
    op.add_argument("--modules", type=int, nargs="+", default=[3], help="modules a side (K)")
    op.add_argument("--exposures", type=float, nargs="+", default=[60.0, 120.0, 240.0], help="scan times (s)")
    op.add_argument("--volumes", type=int, default=80, help="test cargos (the target in about half)")
    op.add_argument(
        "--first", type=int, default=0, help="index of the first test cargo (runs of disjoint cargos merge: combine)"
    )
    op.add_argument("--references", type=int, default=24, help="clean reference cargos")
    op.add_argument("--out", type=Path, default=None, help="record path (default benchmarks/results/border_portal/)")
    op.add_argument("--progress", action="store_true")
    op.add_argument(
        "--save-maps",
        type=Path,
        default=None,
        help="folder for every cell's maps and truth (npz), to try statistics on",
    )
    args = parser.parse_args(argv)
    load_at_start = load_average()
    result = operating_point(args)
    record = new_record("border_portal_operating_point", Path(__file__), result, load_at_start)
    if argv is not None:  # called from Python (the tests): the arguments, not the interpreter's
        record["command"] = "python benchmarks/border_portal.py " + " ".join(argv)
    modules = "_".join(str(k) for k in args.modules)
    path = args.out or HERE / "results" / "border_portal" / f"operating_point_K{modules}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"# record: {path}")
    return result


if __name__ == "__main__":
    main()
