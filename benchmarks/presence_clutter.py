"""Presence in clutter: every presence statistic x voxel method x momentum, paired on the same
volumes and muons (issue 25, "the methods table for presence in clutter").

Two steps, so that statistics can be compared without simulating again:

``collect CONFIG --out maps.npz``
    Simulates each volume once, as :func:`mutomo.optimise.evaluate.observe_design` does for its
    headline physical readout (the configuration's seed and keys, hard edges, Bernoulli hits,
    ``>= 2`` hits a side), then reconstructs it with every momentum and method. Three sets:
    the test volumes (keys ``(seed, 2, i)``, the target in the even ones), the clean reference
    volumes (``(seed, 3, i)``) and, for the learned statistic, training volumes (``(seed, 5,
    i)``, the target in the even ones) that no test statistic sees. Per volume and cell it keeps
    the voxel scores, their errors and which voxels were measured; per volume the true 1/X0 of
    every voxel and which voxels belong to the target.

``table maps.npz [maps2.npz ...] --out STEM``
    Every statistic of :data:`mutomo.tasks.presence.STATISTICS` on every cell: ROC AUC with
    DeLong's error, detection efficiency at 1 % false alarm (stratified bootstrap error), the paired AUC
    difference to the ``clean`` statistic (DeLong, same volumes), and localisation: the fraction
    of target volumes whose highest-scoring measured voxel of the map is a target voxel (as
    :meth:`mutomo.tasks.presence.Presence.localisation`; binomial error). Writes
    ``STEM.json`` and ``STEM.md``.

Usage::

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/presence_clutter.py collect configs/crate_clutter.toml \\
        --design human_close --volumes 240 --references 48 --train 240 --out /tmp/crate.npz
    PYTHONPATH=src python benchmarks/presence_clutter.py table /tmp/crate.npz \\
        --out benchmarks/results/presence_clutter/crate_clutter
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import sys
import time
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mutomo.config import load_config
from mutomo.config.build import build_problem, evaluation_settings
from mutomo.detector.readout import physical_readout
from mutomo.optimise.evaluate import CALIBRATION_STREAM, TEST_STREAM
from mutomo.optimise.problem import key_generator
from mutomo.reco.methods import VOXEL_METHODS, voxel_method
from mutomo.reco.momentum_options import MOMENTUM_OPTIONS
from mutomo.simulate import simulate
from mutomo.tasks.metrics import bootstrap_metric, efficiency_at_false_alarm, paired_auc_difference, roc_auc
from mutomo.tasks.presence_statistics import (
    STATISTICS as ALL_STATISTICS,
)
from mutomo.tasks.presence_statistics import (
    PresenceMaps,
    fitted_classifier,
    learned_scores,
    localisation,
    material_reference,
    statistic_scores,
)

TRAIN_STREAM = 5
SETS = ("test", "references", "train")


#: The statistics that read the voxel maps this script stores (1/X0 and its error); the likelihood
#: statistic reads ML/EM's evidence maps instead (benchmarks/border_portal.py measures it).
STATISTICS = tuple(name for name in ALL_STATISTICS if name != "likelihood")


def collect(args: argparse.Namespace) -> None:
    config = load_config(args.config)
    problem = build_problem(config)
    if args.muons:
        problem = replace(problem, n_muons=args.muons)
    settings = evaluation_settings(config)
    design = problem.design(args.design, (), None)
    design.smoothness = settings.smoothness
    detector = design.detector()
    momenta = tuple(args.momenta)
    by_momentum = {p: replace(problem, momentum=MOMENTUM_OPTIONS[p]) for p in momenta}
    methods = {m: voxel_method(m) for m in args.methods}
    arrays: dict[str, list[np.ndarray]] = {}
    start = time.time()
    sets = {"test": (TEST_STREAM, args.volumes, False), "references": (CALIBRATION_STREAM, args.references, True)}
    if args.train:
        sets["train"] = (TRAIN_STREAM, args.train, False)
    with torch.no_grad():
        for name, (stream, n, clean) in sets.items():
            for i in range(n):
                key = (settings.seed, stream, i)
                sample = problem.sample(key, index=i, clean=clean)
                volume = sample.volume
                result = simulate(
                    detector, volume, problem.source, problem.n_muons, key_generator((*key, 0)),
                    step_length=problem.step_length,
                )  # fmt: skip
                gen = key_generator((*key, 1))
                (trigger,) = settings.min_hits[:1]
                above = physical_readout(result.hits_above, detector, "above", result.muons_in.weight, gen, trigger)
                below = physical_readout(result.hits_below, detector, "below", result.muons_out.weight, gen, trigger)
                arrays.setdefault(f"{name}/present", []).append(np.array(sample.present))
                arrays.setdefault(f"{name}/inverse_x0", []).append((1.0 / volume.x0).reshape(-1).double().numpy())
                arrays.setdefault(f"{name}/target", []).append(sample.target_mask().reshape(-1).numpy())
                for p in momenta:
                    data = by_momentum[p].measure(above, below, result, sample)
                    for m in MOMENTUM_OPTIONS[p].methods():
                        if m not in methods:
                            continue
                        vmap = methods[m](data, volume)
                        maps = PresenceMaps.of(vmap)
                        arrays.setdefault(f"{name}/{m}/{p}/score", []).append(maps.score.numpy())
                        arrays.setdefault(f"{name}/{m}/{p}/sigma", []).append(maps.sigma.numpy())
                        arrays.setdefault(f"{name}/{m}/{p}/measured", []).append(maps.measured.numpy())
                if args.progress:
                    print(f"{name} {i + 1}/{n}: {time.time() - start:.0f} s", flush=True)
    out = {k: np.stack(v) for k, v in arrays.items()}
    out["shape"] = np.array(problem.scene.shape)
    out["meta"] = np.array(
        json.dumps(
            {
                "config": str(args.config),
                "scene": config.name,
                "design": args.design,
                "n_muons": problem.n_muons,
                "exposure_s": problem.exposure_s,
                "seconds": time.time() - start,
                "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "command": "python benchmarks/presence_clutter.py " + " ".join(args.argv),
                "machine": {"platform": platform.platform(), "torch": torch.__version__},
            }
        )
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **out)  # type: ignore[arg-type]
    print(f"wrote {args.out} in {time.time() - start:.0f} s")


def _maps(data: Any, part: str, cell: str) -> PresenceMaps:
    return PresenceMaps(
        torch.from_numpy(data[f"{part}/{cell}/score"]).double(),
        torch.from_numpy(data[f"{part}/{cell}/sigma"]).double(),
        torch.from_numpy(data[f"{part}/{cell}/measured"]).bool(),
    )


def _pm(value: list[float] | tuple[float, float], digits: int = 3) -> str:
    v, e = value
    if e is None or not math.isfinite(e):
        return f"{v:.{digits}f}"
    return f"{v:.{digits}f} ± {e:.{digits}f}"


def _efficiency(scores: np.ndarray, labels: np.ndarray, idx: np.ndarray) -> float:
    """Detection efficiency at 1 % false alarm of the volumes ``idx``."""
    return efficiency_at_false_alarm(scores[idx], labels[idx], 0.01)


def scene_results(path: Path) -> dict[str, Any]:
    """Every statistic on every cell of one collected file (see the module docstring)."""
    with np.load(path) as raw:
        data = {k: raw[k] for k in raw.files}
    meta = json.loads(str(data["meta"]))
    shape = tuple(int(s) for s in data["shape"])
    labels = data["test/present"].astype(bool)
    cells = sorted({"/".join(k.split("/")[1:3]) for k in data if k.startswith("test/") and k.count("/") == 3})
    scene: dict[str, Any] = {
        "meta": meta,
        "test_volumes": int(labels.size),
        "with_target": int(labels.sum()),
        "reference_volumes": int(data["references/present"].size),
        "training_volumes": int(data["train/present"].size) if "train/present" in data else 0,
        "cells": {},
    }
    for cell in cells:
        test, refs = _maps(data, "test", cell), _maps(data, "references", cell)
        extra: dict[str, Any] = {
            "reference_inverse_x0": torch.from_numpy(data["references/inverse_x0"]),
            "shape": shape,
        }
        if f"train/{cell}/score" in data:
            extra |= {"train": _maps(data, "train", cell), "train_target": torch.from_numpy(data["train/target"])}
        rank = torch.where(test.measured, test.score, torch.full_like(test.score, -math.inf))
        loc = localisation(rank, torch.from_numpy(data["test/target"]), torch.from_numpy(labels))
        row: dict[str, Any] = {"localisation": list(loc)}
        scores: dict[str, np.ndarray] = {}
        train_labels = data["train/present"].astype(bool) if "train" in extra else None
        for name in STATISTICS:
            try:
                s, check = _scores(name, test, refs, extra, train_labels)
            except ValueError as exc:  # a statistic that needs what this file lacks (training volumes)
                row[name] = {"missing": str(exc)}
                continue
            scores[name] = s
            row[name] = {
                "auc": roc_auc(s, labels).as_list(),
                "efficiency_at_false_alarm": bootstrap_metric(partial(_efficiency, s, labels), labels).as_list(),
                "scores": s.tolist(),
                **check,
            }
            if name != "clean":
                row[name]["delta_auc_vs_clean"] = paired_auc_difference(s, scores["clean"], labels).as_list()
        scene["cells"][cell] = row
    return scene


def _scores(
    name: str, test: PresenceMaps, refs: PresenceMaps, extra: dict[str, Any], train_labels: np.ndarray | None
) -> tuple[np.ndarray, dict[str, Any]]:
    """The statistic ``name``'s scores of the test volumes and, for the learned one fitted on
    training volumes, its overfitting check and cost from the same fit: its AUC on its own
    training volumes (against the held-out test AUC), its parameter count and the seconds of the fit."""
    if name != "learned" or train_labels is None:
        return statistic_scores(name, test, refs, **extra).numpy(), {}
    reference = material_reference(refs, extra["reference_inverse_x0"])
    start = time.perf_counter()
    model = fitted_classifier(extra["train"], extra["train_target"], reference, extra["shape"])
    seconds = time.perf_counter() - start
    with torch.no_grad():
        on_test = learned_scores(test, reference, model, extra["shape"]).numpy()
        on_train = learned_scores(extra["train"], reference, model, extra["shape"]).numpy()
    check = {
        "train_auc": roc_auc(on_train, train_labels).as_list(),
        "fit_seconds": seconds,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    return on_test, check


def markdown(results: dict[str, Any]) -> str:
    """The tables of :func:`table`'s results."""
    lines: list[str] = []
    for name, r in results["scenes"].items():
        meta = r["meta"]
        lines += [
            f"### {name}: design {meta['design']}, {r['test_volumes']} test volumes ({r['with_target']} with the "
            f"target), {r['reference_volumes']} clean references, {r['training_volumes']} training volumes "
            f"(learned), {meta['n_muons']:,} muons ({meta['exposure_s']:.0f} s)",
            "",
            "Each statistic: AUC ± DeLong error, eff: detection efficiency at 1 % false alarm, Δ: AUC difference "
            "to `clean` paired on the same volumes (DeLong); loc: fraction of target volumes whose highest-scoring "
            "voxel is the target's (binomial error); for `learned` (a 6-parameter logistic classifier, fitted on the "
            "training volumes and scored on the test volumes) also its AUC on its own training volumes, the "
            "overfitting check. Collected by `" + meta["command"] + "`.",
            "",
            "| method | momentum | loc | " + " | ".join(STATISTICS) + " |",
            "|---|---|---:|" + "---:|" * len(STATISTICS),
        ]
        for cell, row in r["cells"].items():
            method, momentum = cell.split("/")
            parts = []
            for statistic in STATISTICS:
                c = row[statistic]
                if "auc" not in c:
                    parts.append("n/a")
                    continue
                text = f"{_pm(c['auc'])}, eff {_pm(c['efficiency_at_false_alarm'], 2)}"
                if "delta_auc_vs_clean" in c:
                    text += f", Δ {_pm(c['delta_auc_vs_clean'])}"
                if "train_auc" in c:
                    text += f", on its training volumes {_pm(c['train_auc'])}"
                parts.append(text)
            lines.append(f"| {method} | {momentum} | {_pm(row['localisation'], 2)} | " + " | ".join(parts) + " |")
        lines.append("")
    lines.append(f"Scored {results.get('date', '?')[:10]} by `{results['command']}`.")
    return "\n".join(lines) + "\n"


def _merged(scene: dict[str, Any], more: dict[str, Any], path: Path) -> dict[str, Any]:
    """``scene`` with the cells of ``more``, a second collection of the same scene (other methods
    or momenta on the same design, volumes and muons, so the volumes and muons are the same)."""
    same = ("design", "n_muons")
    if any(scene["meta"][k] != more["meta"][k] for k in same) or scene["test_volumes"] != more["test_volumes"]:
        raise SystemExit(
            f"{path}: a second collection of {scene['meta']['scene']!r} must have the same design, muons and test "
            f"volumes ({[scene['meta'][k] for k in same]}, {scene['test_volumes']}); got "
            f"{[more['meta'][k] for k in same]}, {more['test_volumes']}"
        )
    meta = {**scene["meta"], "command": scene["meta"]["command"] + "` and `" + more["meta"]["command"]}
    return {**scene, "meta": meta, "cells": {**scene["cells"], **more["cells"]}}


def table(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {
        "command": "python benchmarks/presence_clutter.py " + " ".join(args.argv),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "scenes": {},
    }
    for path in args.maps:
        scene = scene_results(path)
        name = scene["meta"]["scene"]
        results["scenes"][name] = _merged(results["scenes"][name], scene, path) if name in results["scenes"] else scene
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    text = markdown(results)
    args.out.with_suffix(".md").write_text(text)
    print(text)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    c = sub.add_parser("collect", help="simulate and keep every cell's maps")
    c.add_argument("config", type=Path)
    c.add_argument("--design", default="human_close")
    c.add_argument("--volumes", type=int, default=240)
    c.add_argument("--references", type=int, default=48)
    c.add_argument("--train", type=int, default=0, help="training volumes for the learned statistic")
    c.add_argument("--methods", nargs="+", default=list(VOXEL_METHODS), choices=VOXEL_METHODS)
    c.add_argument("--momenta", nargs="+", default=["flux_mean"], choices=list(MOMENTUM_OPTIONS))
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--muons", type=int, help="muons per volume instead of the configuration's exposure (tests)")
    c.add_argument("--progress", action="store_true")
    t = sub.add_parser("table", help="every statistic on collected maps")
    t.add_argument("maps", type=Path, nargs="+")
    t.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    torch.set_num_threads(1)
    collect(args) if args.step == "collect" else table(args)


if __name__ == "__main__":
    main()
