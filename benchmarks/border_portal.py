"""The border portal's operating point (issue 29): detection of the uranium cube against scan
time and the number of modules, for the tiled placement, and how many muons the cube's voxel sees.

``operating-point CONFIG --modules K ... --exposures S ...`` observes, for every K (modules a
side, tiled by :func:`mutomo.studies.starts.tiled_for`) and scan time S (s), the configuration's
test cargos (keys ``(seed, 2, i)``, the target in about half) and clean reference cargos (keys
``(seed, 3, i)``) as the evaluation does: each cargo simulated once per scan time with that many
seconds of muons, the physical readout (hard edges, Bernoulli hits, the configuration's first
trigger), the configuration's voxel method, momentum and presence statistic. It reports per
cell the ROC AUC (DeLong's error), the detection at 1 % false alarm (stratified bootstrap error;
with fewer than 100 clean test cargos its threshold is the highest clean score, whose expected
false-alarm rate on new cargos, ``threshold_false_alarm``, is above 1 %:
:func:`mutomo.tasks.metrics.threshold_false_alarm`),
the mean muon weight that informed the cube's voxel in the cargos that hold it (the voxel
method's ``weight``: muons whose tracks pass there) and its score in each of those cargos (``cube_score_per_cargo``:
the statistic's voxel score, the evidence with the likelihood statistic), and the reconstructed muons per cargo, and
writes a record (machine, date, commit, command) to ``benchmarks/results/border_portal/``.

``--oracle-rest`` (likelihood statistic only) scores each voxel with every other voxel at its true X0
instead of the ML/EM fit (:meth:`~mutomo.reco.MaximumLikelihoodEM.oracle_evidence_map`): what a perfect
reconstruction of the rest of the cargo would reach on the same cargos and muons, an upper reference and
not a scan anyone can run. Its records say ``"oracle": "rest at truth"`` and merge only with their like.

Every cell sees the same cargos; the cells of one K use independent muons per scan time (a
longer scan is not the shorter one extended), as the evaluation's exposure ladder does.

``--first F`` starts at test cargo ``F``: runs of disjoint cargos (on two cores, or in two
sessions) merge with ``combine RECORD... --out OUT``, which recomputes every cell's metrics on
the union (the same cells in each, the same configuration and statistic; a statistic with
references reads the same references in each run). ``compare A[#CELL] B[#CELL]`` pairs two cells
on the cargos both saw (the same cargos and generated muons, whatever the modules): the AUC
difference with DeLong's paired error and the detection difference at 1 % false alarm with a
stratified bootstrap over the shared cargos.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/border_portal.py operating-point border_portal \\
        --modules 3 --exposures 60 120 240 --volumes 80 --references 24 --progress
    python benchmarks/border_portal.py combine first.json later.json --out all.json
    python benchmarks/border_portal.py compare K6.json K8.json --out paired.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mutomo.benchrecord import load_average, new_record, record_cell
from mutomo.config import load_config
from mutomo.config.build import build_problem, evaluation_settings
from mutomo.errors import MutomoError
from mutomo.optimise.evaluate import CALIBRATION_STREAM, TEST_STREAM
from mutomo.optimise.problem import key_generator
from mutomo.studies.starts import tiled_for
from mutomo.tasks.metrics import (
    bootstrap_metric,
    efficiency_at_false_alarm,
    paired_auc_difference,
    roc_auc,
    threshold_false_alarm,
)
from mutomo.tasks.presence_statistics import PresenceMaps, statistic_scores

HERE = Path(__file__).resolve().parent
FALSE_ALARM = 0.01


def _observe(
    problem: Any,
    settings: Any,
    design: Any,
    stream: int,
    volumes: range,
    clean: bool,
    say: Any,
    oracle_rest: bool = False,
) -> dict[str, Any]:
    """Maps, truth and muon counts of the ``volumes`` (indices) of ``stream`` seen by ``design``, measured as
    the evaluation measures them (:meth:`~mutomo.optimise.problem.Problem.measured`, its keys and
    its headline physical readout). ``oracle_rest``: the likelihood statistic's evidence with every
    other voxel at its truth (:meth:`~mutomo.reco.MaximumLikelihoodEM.oracle_evidence_map`)."""
    detector = design.detector()
    score, sigma, measured, inverse_x0, target, present, in_target, muons = [], [], [], [], [], [], [], []
    target_score = []
    with torch.no_grad():
        for done, i in enumerate(volumes, 1):
            key = (settings.seed, stream, i)
            sample = problem.sample(key, index=i, clean=clean)
            (data,) = problem.measured(
                detector, sample, problem.n_muons, key_generator((*key, 0)), (settings.headline,),
                readout_generator=key_generator((*key, 1)),
            )  # fmt: skip
            task, volume = problem.task, sample.volume
            if oracle_rest:
                vmap = task.method.oracle_evidence_map(data, volume, volume.x0, *task.hypotheses)
            else:
                vmap = task.voxel_map(data, volume)
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
            target_score.append(float(maps.score[mask].max()) if bool(mask.any()) else float("nan"))
            muons.append(float(data.weight.sum()))
            if say is not None:
                say(done, len(volumes))
    return {
        "maps": PresenceMaps(torch.stack(score).double(), torch.stack(sigma).double(), torch.stack(measured)),
        "inverse_x0": torch.stack(inverse_x0),
        "target": torch.stack(target),
        "present": np.array(present),
        "in_target": np.array(in_target),
        "target_score": np.array(target_score),
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
    test = _observe(problem, settings, design, TEST_STREAM, tests, False, say("test"), args.oracle_rest)
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
    return {
        **_metrics(scores, labels),
        **_cube_muons(test["in_target"][labels]),
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
        "cube_score_per_cargo": [None if np.isnan(v) else float(v) for v in test["target_score"]],
        "seconds": time.time() - start,
    }


def _detection(scores: np.ndarray, labels: np.ndarray) -> Callable[[np.ndarray], float]:
    """The detection at 1 % false alarm of the cargos ``idx`` (for the bootstrap)."""
    return lambda idx: efficiency_at_false_alarm(scores[idx], labels[idx], FALSE_ALARM)


def _metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """AUC, detection at 1 % false alarm and its threshold's expected false-alarm rate."""
    return {
        "auc": roc_auc(scores, labels).as_list(),
        "detection_at_1pc_false_alarm": bootstrap_metric(_detection(scores, labels), labels).as_list(),
        "threshold_false_alarm": threshold_false_alarm(int((~labels).sum()), FALSE_ALARM),
    }


def _cube_muons(with_cube: np.ndarray) -> dict[str, Any]:
    """The muons in the cube's voxel over the cargos that hold it: mean, its error, range."""
    return {
        "muons_in_cube_voxel": [float(np.mean(with_cube)), float(np.std(with_cube, ddof=1) / np.sqrt(len(with_cube)))],
        "muons_in_cube_voxel_range": [float(np.min(with_cube)), float(np.max(with_cube))],
    }


def operating_point(args: argparse.Namespace) -> dict[str, Any]:
    config = load_config(args.config)
    problem = build_problem(config)
    settings = evaluation_settings(config)
    cells: dict[str, Any] = {}
    if args.oracle_rest and config.task.statistic != "likelihood":
        raise MutomoError(
            f"--oracle-rest needs the likelihood statistic; {args.config} has statistic {config.task.statistic!r}"
        )
    if args.volumes < 2 or args.first < 0:
        raise MutomoError(f"--volumes must be at least 2 and --first at least 0; got {args.volumes} and {args.first}")
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
        "oracle": "rest at truth" if args.oracle_rest else None,
        "cells": cells,
    }


_SETTINGS = ("configuration", "inference", "momentum", "statistic", "trigger_hits", "oracle")


def _cargos(cell: dict[str, Any]) -> range:
    """The test cargos' indices of a cell (records before ``--first`` start at 0)."""
    first = int(cell.get("first_test_volume", 0))
    return range(first, first + int(cell["test_volumes"]))


def combine(args: argparse.Namespace) -> dict[str, Any]:
    """One record of the cells common to every record, their disjoint cargos merged in order."""
    records = [json.loads(path.read_text())["results"] for path in args.records]
    for field in _SETTINGS:
        values = {str(r.get(field)) for r in records}
        if len(values) > 1:
            raise MutomoError(f"the records differ in {field} ({', '.join(sorted(values))}); merge like with like")
    labels = [label for label in records[0]["cells"] if all(label in r["cells"] for r in records[1:])]
    if not labels:
        raise MutomoError("the records share no cell (modules a side and scan time)")
    cells = {}
    for label in labels:
        parts = sorted((r["cells"][label] for r in records), key=lambda c: _cargos(c).start)
        for before, after in zip(parts, parts[1:], strict=False):
            if _cargos(after).start != _cargos(before).stop:
                raise MutomoError(
                    f"cell {label} sees cargos {_cargos(before)} and then {_cargos(after)}: combine merges "
                    "consecutive runs of cargos, without overlap or gap"
                )
        scores = np.concatenate([c["scores"] for c in parts])
        truth = np.concatenate([c["labels"] for c in parts]).astype(bool)
        per_cargo = [c.get("muons_in_cube_voxel_per_cargo") for c in parts]
        if all(v is not None for v in per_cargo):
            muons = _cube_muons(np.array([x for v in per_cargo for x in v], dtype=float)[truth])
        else:  # an earlier record kept the mean, error and range only: pool them (exact for the mean and spread)
            muons = _pooled_muons(parts)
        n = np.array([c["test_volumes"] for c in parts])
        cells[label] = {
            **parts[0],
            **_metrics(scores, truth),
            **muons,
            "reconstructed_muons_per_cargo": float(
                np.average([c["reconstructed_muons_per_cargo"] for c in parts], weights=n)
            ),
            "test_volumes": int(truth.size),
            "first_test_volume": _cargos(parts[0]).start,
            "with_target": int(truth.sum()),
            "scores": scores.tolist(),
            "labels": truth.astype(int).tolist(),
            "muons_in_cube_voxel_per_cargo": None if None in per_cargo else [x for v in per_cargo for x in v],
            "cube_score_per_cargo": (
                None
                if any("cube_score_per_cargo" not in c for c in parts)
                else [x for c in parts for x in c["cube_score_per_cargo"]]
            ),
            "seconds": float(sum(c["seconds"] for c in parts)),
        }
    return {**{f: records[0].get(f) for f in _SETTINGS}, "sources": [str(p) for p in args.records], "cells": cells}


def _pooled_muons(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The cube's voxel's muons pooled from each part's mean, error of the mean and range."""
    n = np.array([c["with_target"] for c in parts], dtype=float)
    mean = np.array([c["muons_in_cube_voxel"][0] for c in parts])
    sd = np.array([c["muons_in_cube_voxel"][1] for c in parts]) * np.sqrt(n)
    total = float(np.average(mean, weights=n))
    var = (np.sum((n - 1) * sd**2) + np.sum(n * (mean - total) ** 2)) / (n.sum() - 1)
    return {
        "muons_in_cube_voxel": [total, float(np.sqrt(var / n.sum()))],
        "muons_in_cube_voxel_range": [
            min(c["muons_in_cube_voxel_range"][0] for c in parts),
            max(c["muons_in_cube_voxel_range"][1] for c in parts),
        ],
    }


def _one_cell(spec: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """``PATH[#CELL]``: the record's results and the cell (the only one when no label is given)."""
    path, _, label = spec.partition("#")
    label, results, cell = record_cell(Path(path), label)
    return f"{Path(path).name}#{label}", results, cell


def compare(args: argparse.Namespace) -> dict[str, Any]:
    """Two cells paired on the test cargos both saw: AUC and detection differences, first minus second.
    Configurations that extend one scene see the same cargos (keys ``(seed, 2, i)``); the cargos'
    truth must agree."""
    (name_a, res_a, a), (name_b, res_b, b) = _one_cell(args.first_cell), _one_cell(args.second_cell)
    shared = sorted(set(_cargos(a)) & set(_cargos(b)))
    if not shared:
        raise MutomoError(f"{name_a} (cargos {_cargos(a)}) and {name_b} (cargos {_cargos(b)}) share no cargo")
    pick_a = [i - _cargos(a).start for i in shared]
    pick_b = [i - _cargos(b).start for i in shared]
    sa, sb = np.asarray(a["scores"])[pick_a], np.asarray(b["scores"])[pick_b]
    labels = np.asarray(a["labels"])[pick_a].astype(bool)
    if not np.array_equal(labels, np.asarray(b["labels"])[pick_b].astype(bool)):
        raise MutomoError(f"{name_a} and {name_b} disagree on which cargos hold the target")
    detection_a, detection_b = _detection(sa, labels), _detection(sb, labels)
    return {
        "first": name_a,
        "second": name_b,
        "configurations": [res_a["configuration"], res_b["configuration"]],
        "statistics": [res_a["statistic"], res_b["statistic"]],
        "cargos": [shared[0], shared[-1] + 1],
        "test_volumes": len(shared),
        "with_target": int(labels.sum()),
        "auc": [roc_auc(sa, labels).as_list(), roc_auc(sb, labels).as_list()],
        "detection_at_1pc_false_alarm": [
            bootstrap_metric(detection_a, labels).as_list(),
            bootstrap_metric(detection_b, labels).as_list(),
        ],
        "threshold_false_alarm": threshold_false_alarm(int((~labels).sum()), FALSE_ALARM),
        "auc_difference": paired_auc_difference(sa, sb, labels).as_list(),
        "detection_difference": bootstrap_metric(lambda idx: detection_a(idx) - detection_b(idx), labels).as_list(),
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
    op.add_argument(
        "--oracle-rest",
        action="store_true",
        help="score each voxel's evidence with every other voxel at its truth, not the fit (likelihood statistic): "
        "the upper reference a perfect reconstruction of the rest would reach",
    )
    co = sub.add_parser("combine", help="merge records of disjoint test cargos into one")
    co.add_argument("records", type=Path, nargs="+", help="operating-point records")
    co.add_argument("--out", type=Path, required=True, help="the merged record's path")
    pa = sub.add_parser("compare", help="two cells paired on the cargos both saw")
    pa.add_argument("first_cell", help="RECORD[#CELL], e.g. operating_point_K6.json#'K=6 300 s'")
    pa.add_argument("second_cell", help="RECORD[#CELL]")
    pa.add_argument("--out", type=Path, required=True, help="the comparison's record path")
    args = parser.parse_args(argv)
    load_at_start = load_average()
    try:
        result = {"operating-point": operating_point, "combine": combine, "compare": compare}[args.command](args)
    except MutomoError as error:
        if argv is not None:
            raise
        sys.exit(f"border_portal.py {args.command}: {error}")
    kind = "border_portal_paired" if args.command == "compare" else "border_portal_operating_point"
    record = new_record(kind, Path(__file__), result, load_at_start)
    if argv is not None:  # called from Python (the tests): the arguments, not the interpreter's
        record["command"] = shlex.join(["python", "benchmarks/border_portal.py", *argv])
    modules = "_".join(str(k) for k in getattr(args, "modules", []))
    path = args.out or HERE / "results" / "border_portal" / f"operating_point_K{modules}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"# record: {path}")
    return result


if __name__ == "__main__":
    main()
