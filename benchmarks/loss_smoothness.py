"""Is the ladle's training loss of one batch smooth in the design, and is autograd's derivative
that of the expected loss?

Purpose. A probe by hand (benchmarks/README.md, "A surrogate where there is no gradient") found
the training loss of one fixed batch jumping below a millimetre: finite differences along panel
0's height gave slopes of -3.5 to +7.4 over 10 um steps against an autograd derivative of 0.09.
This script finds where the jumps came from, and measures what is left.

Set-up. The ladle furnace (``mutomo.load_benchmark("ladle_furnace")``), its training
loss (``calibrated_mse``) on one batch, ``mutomo.optimise.loop.training_batch_loss`` with
``TrainingSettings(volumes_per_epoch=8, muons_per_volume=500)``, Bernoulli-sampled hits unless
said otherwise (``sampled_hits``; the ladle configuration's ``hits = "sampled"``), panel edges
at the annealing's final width 5 mm. Designs: ``human_acceptance`` at the fixed budget 6000, and
the random starts of ``mutomo.studies.methods.even_panels(problem, 4, ("z",))`` drawn by
``random_starts(..., seed=s)``: ``random0`` (seed 0, the surrogate benchmark's start) and
``random1000`` (its "random" design of seed 0, where the hand probe ran). Parameters: ``z`` is
panel 0's height (m), ``x`` its x centre (m), ``share`` its budget-share logit (every span moves
with it under the fixed budget). Precisions: ``float32_legacy`` is training's float32 with the
PoCA written as in the textbook (``D = a c - b^2``; the code before this study, swapped in here
by :func:`legacy_poca`), ``float32`` the current PoCA (from ``n = v1 x v2``), ``float64`` the
whole pipeline (scene, muons, design) in double precision. Different precisions draw different
muons (a float64 draw is not a float32 draw): compare slopes within a precision, not values
across.

Definitions.

* Scan: the loss of batch 0 at ``points`` equally spaced values of one parameter over
  ``[-half, +half]`` around the design; ``slopes`` are the finite differences of neighbours
  (steps ``2 half / (points - 1)``: 10 um for half = 0.1 mm, 100 um for half = 1 mm), ``noise``
  the r.m.s. residual of the loss about a quadratic fit over the scan; ``autograd`` the
  derivative at the centre; ``flips`` the number of (muon, step) pairs where the hard selection
  of the reconstruction (:func:`mutomo.reco.voxelise.crosses_volume`: the fitted tracks enter
  the top face and leave the bottom one, the only step function of the design between the hits
  and the loss) changed, and ``flip_jump`` the largest loss change at such a step beyond the
  quadratic trend.
* Bias (question 2): on ``--batches`` batches (epochs 0, 1, ...), autograd's derivative ``g_b``
  and the central difference ``f_b(h) = (L_b(+h) - L_b(-h)) / 2h`` on the same batch (the mean
  of ``f_b`` is the central difference of the batch-averaged loss). ``bias = mean(f_b - g_b)``
  with its paired standard error, and ``z = bias / s.e.``; ``h`` is 1 and 4 mm for ``z``, 1 mm
  for ``x``, 0.02 for ``share`` (about 1 mm of span).

* A/B (``--ab-seeds``, not in the default run): from the random start of each seed (the
  methods table's 8 heights), ``optimise`` with the configuration's settings at ``--ab-epochs``
  x 8 volumes x 500 muons, once with the legacy PoCA and once with the current one (same
  batches), judged both with the current PoCA as in methods_table.py: physical MSE of the fill
  height (m^2) on 96 test volumes of 1000 muons, and the paired difference legacy - current.

Run (scans and bias, about 6 minutes on one core):
``PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/loss_smoothness.py [--batches 16]
[--out benchmarks/results/loss_smoothness.json]``; the A/B (about 4 minutes a seed):
``... loss_smoothness.py --skip-scans --skip-bias --ab-seeds 0 1
--out benchmarks/results/loss_smoothness_ab.json``. Results and conclusions in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

import mutomo.reco.maps as maps
import mutomo.reco.poca as poca_module
from mutomo.config.build import load_benchmark
from mutomo.design.base import Design
from mutomo.design.panels import DetectorDesign
from mutomo.optimise.loop import TrainingSettings, training_batch_loss
from mutomo.optimise.problem import Problem
from mutomo.studies.methods import LADLE_BUDGET as BUDGET
from mutomo.studies.methods import copy_panels, even_panels
from mutomo.studies.starts import random_starts

TRAINABLE = ("xy", "z", "size")
PARAMETERS = {"z": ("z", (0,)), "x": ("xy", (0, 0)), "share": ("share_logit", (0,))}
DTYPES = {"float32_legacy": torch.float32, "float32": torch.float32, "float64": torch.float64}


def legacy_formula(params: Tensor, z_mid: float) -> Tensor:
    """The PoCA as computed before this study (``D = a c - b^2``, cancelling in float32)."""
    x1, y1, tx1, ty1, x2, y2, tx2, ty2 = params.unbind(-1)
    one = torch.ones_like(x1)
    v1 = torch.stack([tx1, ty1, one], -1)
    v2 = torch.stack([tx2, ty2, one], -1)
    w = torch.stack([x1 - x2, y1 - y2, torch.zeros_like(x1)], -1)
    a, b, c = (v1 * v1).sum(-1), (v1 * v2).sum(-1), (v2 * v2).sum(-1)
    d, e = (v1 * w).sum(-1), (v2 * w).sum(-1)
    den = a * c - b**2
    reg = den / (den**2 + poca_module.PARALLEL_EPS**2)
    s = (b * e - c * d) * reg
    t = (a * e - b * d) * reg
    p1 = torch.stack([x1, y1, torch.full_like(x1, z_mid)], -1) + s[..., None] * v1
    p2 = torch.stack([x2, y2, torch.full_like(x2, z_mid)], -1) + t[..., None] * v2
    return 0.5 * (p1 + p2)


@contextlib.contextmanager
def legacy_poca(active: bool) -> Iterator[None]:
    """Swap the textbook PoCA formula in (``active``) for the duration."""
    current = poca_module._poca
    if active:
        poca_module._poca = legacy_formula
    try:
        yield
    finally:
        poca_module._poca = current


class SelectionRecorder:
    """Records the outputs of :func:`mutomo.reco.voxelise.crosses_volume` on every muon."""

    def __init__(self, n_muons: int) -> None:
        self.n_muons = n_muons
        self.calls: list[Tensor] = []
        self.original = maps.crosses_volume

    def __enter__(self) -> SelectionRecorder:
        def recording(incoming: Any, outgoing: Any, volume: Any) -> Tensor:
            out = self.original(incoming, outgoing, volume)
            if out.shape[0] == self.n_muons:  # measure()'s selection over every muon, not its compact refit
                self.calls.append(out.detach().clone())
            return out

        maps.crosses_volume = recording
        return self

    def __exit__(self, *exc: object) -> None:
        maps.crosses_volume = self.original

    def take(self) -> Tensor:
        out = torch.cat(self.calls) if self.calls else torch.zeros(0)
        self.calls = []
        return out


def make_problem(dtype: torch.dtype) -> Problem:
    problem = load_benchmark("ladle_furnace")
    problem.scene.dtype = dtype  # volumes, hence muons and hits, in this precision
    return problem


def make_design(problem: Problem, name: str, dtype: torch.dtype, smoothness: float = 0.005) -> DetectorDesign:
    """``human_acceptance`` (budget 6000) or ``random<seed>`` (methods_table's template, random
    heights), every parameter group trainable, in ``dtype``."""
    if name == "human_acceptance":
        base = problem.design(name, TRAINABLE, 6000.0)
    else:
        base = random_starts(even_panels(problem, 4, ("z",)), 1, seed=int(name.removeprefix("random")))[0]
    assert isinstance(base, DetectorDesign)
    d = DetectorDesign.from_description(base.describe() | {"trainable": list(TRAINABLE)}, base.cost_model)
    d = d.to(dtype)
    d.smoothness = smoothness
    return d


def loss_and_gradients(
    problem: Problem, design: DetectorDesign, settings: TrainingSettings, epoch: int
) -> tuple[float, dict[str, float]]:
    """The batch's loss and autograd's derivative in every parameter of ``PARAMETERS``."""
    for p in design.parameters():
        p.grad = None
    total = training_batch_loss(design, problem, settings, epoch, problem.task.loss).total
    total.backward()
    grads = {}
    for key, (name, index) in PARAMETERS.items():
        grad = getattr(design, name).grad
        grads[key] = float(grad[index]) if grad is not None else 0.0
    return float(total.detach()), grads


def shifted_loss(
    problem: Problem, design: DetectorDesign, settings: TrainingSettings, epoch: int, key: str, delta: float
) -> tuple[float, float]:
    """(the parameter's value as stored, the batch's loss) with parameter ``key`` moved by ``delta``."""
    name, index = PARAMETERS[key]
    p = getattr(design, name)
    with torch.no_grad():
        old = p[index].clone()
        p[index] = old + delta
        value = float(p[index])
        try:
            loss = float(training_batch_loss(design, problem, settings, epoch, problem.task.loss).total)
        finally:
            p[index] = old
    return value, loss


def scan(
    problem: Problem,
    design: DetectorDesign,
    settings: TrainingSettings,
    key: str,
    half: float,
    points: int,
    legacy: bool,
) -> dict[str, Any]:
    """The loss of batch 0 along one parameter (see the module docstring's definitions)."""
    with legacy_poca(legacy):
        _, grads = loss_and_gradients(problem, design, settings, 0)
        xs, ys, selections = [], [], []
        with SelectionRecorder(settings.muons_per_volume) as recorder:
            for delta in np.linspace(-half, half, points):
                xi, yi = shifted_loss(problem, design, settings, 0, key, float(delta))
                xs.append(xi)
                ys.append(yi)
                selections.append(recorder.take())
    x, y = np.array(xs) - xs[points // 2], np.array(ys)
    slopes = np.diff(y) / np.diff(x)
    fit = np.polyval(np.polyfit(x, y, 2), x)
    residual = y - fit
    flips = [int((a != b).sum()) for a, b in zip(selections[:-1], selections[1:], strict=True)]
    jumps = np.abs(np.diff(residual))
    flipped = [float(j) for j, f in zip(jumps, flips, strict=True) if f]
    return {
        "parameter": key,
        "half_width": half,
        "step": 2 * half / (points - 1),
        "points": points,
        "autograd": grads[key],
        "slope_min": float(slopes.min()),
        "slope_max": float(slopes.max()),
        "slope_median": float(np.median(slopes)),
        "end_to_end_slope": float((y[-1] - y[0]) / (x[-1] - x[0])),
        "noise": float(residual.std()),
        "flips": int(sum(flips)),
        "flip_jump": max(flipped) if flipped else 0.0,
        "largest_step_jump": float(jumps.max()),
        "loss": y.tolist(),
        "offsets": x.tolist(),
    }


def bias(
    problem: Problem, design: DetectorDesign, settings: TrainingSettings, batches: int, legacy: bool
) -> dict[str, Any]:
    """Autograd's derivative against central differences, batch by batch (module docstring)."""
    steps = {"z": [1e-3, 4e-3], "x": [1e-3], "share": [0.02]}
    per_batch: dict[str, list[float]] = {}
    with legacy_poca(legacy):
        for epoch in range(batches):
            _, grads = loss_and_gradients(problem, design, settings, epoch)
            for key, hs in steps.items():
                per_batch.setdefault(f"{key}_autograd", []).append(grads[key])
                for h in hs:
                    (xp, lp), (xm, lm) = (shifted_loss(problem, design, settings, epoch, key, s) for s in (h, -h))
                    per_batch.setdefault(f"{key}_fd_{h:g}", []).append((lp - lm) / (xp - xm))
    out: dict[str, Any] = {"batches": batches, "per_batch": per_batch}
    for key, hs in steps.items():
        g = np.array(per_batch[f"{key}_autograd"])
        out[f"{key}_autograd"] = mean_se(g)
        for h in hs:
            f = np.array(per_batch[f"{key}_fd_{h:g}"])
            m, se = mean_se(f - g)
            out[f"{key}_fd_{h:g}"] = mean_se(f)
            out[f"{key}_bias_{h:g}"] = [m, se, m / se if se > 0 else math.inf]
    return out


def mean_se(values: np.ndarray) -> list[float]:
    return [float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values)))]


def run_scans(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Question 1 and 3: which precision, readout, parameter and edge width make the loss jump."""
    plan: list[tuple[str, str, bool, str, float, int, float]] = []  # precision, design, sampled, key, half, points, s
    for precision in DTYPES:
        for sampled in (True, False):
            for half in (1e-4, 1e-3):
                plan.append((precision, "random1000", sampled, "z", half, args.points, 0.005))
    for key, halves in (("x", (1e-4, 1e-3)), ("share", (2e-3, 2e-2))):
        for half in halves:
            plan.append(("float64", "random1000", True, key, half, args.points, 0.005))
    for smoothness in (0.05, 0.0005):
        plan.append(("float64", "random1000", True, "z", 1e-3, args.points, smoothness))
    plan.append(("float32", "human_acceptance", True, "z", 1e-4, args.points, 0.005))
    plan.append(("float64", "random1000", True, "z", 1e-2, 4 * args.points, 0.005))
    problems = {dtype: make_problem(dtype) for dtype in set(DTYPES.values())}
    records = []
    for precision, name, sampled, key, half, points, smoothness in plan:
        t0 = time.perf_counter()
        dtype = DTYPES[precision]
        settings = TrainingSettings(volumes_per_epoch=8, muons_per_volume=500, sampled_hits=sampled)
        design = make_design(problems[dtype], name, dtype, smoothness)
        record = scan(problems[dtype], design, settings, key, half, points, precision == "float32_legacy")
        record |= {"precision": precision, "design": name, "sampled_hits": sampled, "smoothness": smoothness}
        record["seconds"] = time.perf_counter() - t0
        records.append(record)
        print(scan_row(record), file=sys.stderr, flush=True)
    return records


def run_bias(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Question 2: autograd against central differences averaged over batches."""
    plan = [("float64", name) for name in ("human_acceptance", "random0", "random1000")]
    plan += [("float32", "random1000"), ("float32_legacy", "random1000")]
    problems = {dtype: make_problem(dtype) for dtype in set(DTYPES.values())}
    settings = TrainingSettings(volumes_per_epoch=8, muons_per_volume=500, sampled_hits=True)
    records = []
    for precision, name in plan:
        t0 = time.perf_counter()
        dtype = DTYPES[precision]
        design = make_design(problems[dtype], name, dtype)
        record = bias(problems[dtype], design, settings, args.batches, precision == "float32_legacy")
        record |= {"precision": precision, "design": name, "seconds": time.perf_counter() - t0}
        records.append(record)
        print(bias_row(record), file=sys.stderr, flush=True)
    return records


def run_ab(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Designs trained with the legacy and with the current PoCA from the same starts, judged alike."""
    from dataclasses import replace

    from mutomo.config.build import settings_from
    from mutomo.config.schema import load_config
    from mutomo.optimise.evaluate import EvaluationSettings, paired, summarise
    from mutomo.optimise.loop import optimise
    from mutomo.studies.landscape import observe_designs

    problem = load_benchmark("ladle_furnace")
    base = replace(
        settings_from(load_config("ladle_furnace"), problem),
        epochs=args.ab_epochs,
        volumes_per_epoch=8,
        muons_per_volume=500,
        validation_volumes=0,
    )
    evaluation = EvaluationSettings(n_volumes=96, calibration_volumes=32, min_hits=(2,))
    records = []
    for seed in args.ab_seeds:
        start = random_starts(even_panels(problem, 4, ("z",)), 1, seed=seed)[0]
        trained = {}
        for name, legacy in (("legacy", True), ("current", False)):
            t0 = time.perf_counter()
            design = copy_panels(start)
            with legacy_poca(legacy):
                optimise(design, problem, replace(base, seed=seed), progress=False)
            trained[name] = design
            print(f"  A/B seed {seed} {name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        designs: dict[str, Design] = {
            "start": start,
            **trained,
            "human_acceptance": problem.design("human_acceptance", (), BUDGET),
        }
        obs = dict(zip(designs, observe_designs(list(designs.values()), problem, evaluation), strict=True))
        for name, judged in designs.items():
            metric = summarise(problem, obs[name])["physical"]["mse"]
            diff = paired(problem, obs[name], obs["current"])["physical"]["mse"]
            records.append(
                {
                    "seed": seed,
                    "design": name,
                    "mse": [metric.value, metric.error],
                    "minus_current": [diff.value, diff.error],
                    "z": judged.describe()["z"],
                }
            )
            print(ab_row(records[-1]), file=sys.stderr, flush=True)
    return records


def run_judge(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The configuration's designs judged with the legacy and with the current PoCA (same test
    volumes, muons and draws): how much the float32 cancellation moved the evaluation."""
    from mutomo.optimise.evaluate import EvaluationSettings, paired, summarise
    from mutomo.studies.landscape import observe_designs

    problem = load_benchmark("ladle_furnace")
    evaluation = EvaluationSettings(n_volumes=96, calibration_volumes=32, min_hits=(2,))
    names = ("human_acceptance", "human_resolution", "poor")
    designs = [problem.design(name, (), BUDGET) for name in names]
    obs = {}
    for which, legacy in (("legacy", True), ("current", False)):
        with legacy_poca(legacy):
            obs[which] = observe_designs(designs, problem, evaluation)
    records = []
    for i, name in enumerate(names):
        record: dict[str, Any] = {"design": name}
        for which in ("legacy", "current"):
            m = summarise(problem, obs[which][i])["physical"]["mse"]
            record[which] = [m.value, m.error]
        d = paired(problem, obs["legacy"][i], obs["current"][i])["physical"]["mse"]
        record["legacy_minus_current"] = [d.value, d.error]
        records.append(record)
        print(judge_row(record), file=sys.stderr, flush=True)
    return records


def judge_row(r: dict[str, Any]) -> str:
    (a, ae), (b, be), (d, de) = r["legacy"], r["current"], r["legacy_minus_current"]
    return f"| {r['design']} | {a:.4f} +- {ae:.4f} | {b:.4f} +- {be:.4f} | {d:+.1e} +- {de:.1e} |"


def ab_row(r: dict[str, Any]) -> str:
    (m, e), (d, de) = r["mse"], r["minus_current"]
    return f"| {r['seed']} | {r['design']} | {m:.4f} +- {e:.4f} | {d:+.1e} +- {de:.1e} |"


def scan_row(r: dict[str, Any]) -> str:
    return (
        f"| {r['precision']} | {r['design']} | {'sampled' if r['sampled_hits'] else 'expected'} | "
        f"{r['smoothness'] * 1e3:g} | {r['parameter']} | {r['step']:.3g} | {r['autograd']:+.4f} | "
        f"{r['slope_min']:+.3f} .. {r['slope_max']:+.3f} | {r['end_to_end_slope']:+.4f} | {r['noise']:.1e} | "
        f"{r['flips']} | {r['flip_jump']:.1e} |"
    )


def bias_row(r: dict[str, Any]) -> str:
    cells = []
    for key, hs in (("z", ["0.001", "0.004"]), ("x", ["0.001"]), ("share", ["0.02"])):
        g = r[f"{key}_autograd"]
        cells.append(f"{key}: {g[0]:+.4f} +- {g[1]:.4f}")
        for h in hs:
            b = r[f"{key}_bias_{h}"]
            cells.append(f"{b[0]:+.4f} +- {b[1]:.4f} ({b[2]:+.1f})")
    return f"| {r['precision']} | {r['design']} | " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=21, help="points of a scan (the wide one has 4x)")
    parser.add_argument("--batches", type=int, default=16, help="batches of the bias measurement")
    parser.add_argument("--skip-bias", action="store_true")
    parser.add_argument("--skip-scans", action="store_true")
    parser.add_argument("--ab-seeds", type=int, nargs="*", default=[], help="seeds of the training A/B")
    parser.add_argument("--ab-epochs", type=int, default=150)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/loss_smoothness.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    scans = [] if args.skip_scans else run_scans(args)
    biases = [] if args.skip_bias else run_bias(args)
    judged = [] if args.skip_scans else run_judge(args)
    ab = run_ab(args) if args.ab_seeds else []
    out = {
        "args": vars(args) | {"out": str(args.out)},
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, 1 thread",
        "seconds": time.perf_counter() - t0,
        "scans": scans,
        "bias": biases,
        "judge": judged,
        "ab": ab,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(f"# {out['machine']}; {out['seconds']:.0f} s")
    print(f"# command: {' '.join(sys.argv)}")
    if scans:
        print(
            "| precision | design | hits | edge (mm) | parameter | step | autograd | neighbour slopes | "
            "end-to-end slope | noise | flips | flip jump |"
        )
        print("|---|---|---|---:|---|---:|---:|---|---:|---:|---:|---:|")
        for r in scans:
            print(scan_row(r))
    if judged:
        print()
        print("| design | physical MSE, legacy PoCA | current PoCA | legacy - current (paired) |")
        print("|---|---|---|---|")
        for r in judged:
            print(judge_row(r))
    if biases:
        print()
        print(
            "| precision | design | z: autograd | bias h=1mm (z) | bias h=4mm | x: autograd | bias h=1mm | "
            "share: autograd | bias h=0.02 |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for r in biases:
            print(bias_row(r))
    if ab:
        print()
        print("| seed | design | physical MSE (m^2) | minus current (paired) |")
        print("|---:|---|---|---|")
        for r in ab:
            print(ab_row(r))
    return out


if __name__ == "__main__":
    main()
