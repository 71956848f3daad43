"""The ``mutomo`` command line."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from mutomo.detector import Detector, DetectorPanel
from mutomo.muons import FluxSource, TabulatedFlux, exposure_time
from mutomo.optimise.task import Task
from mutomo.simulate import acceptance_plane, simulate
from mutomo.volume import PassiveVolume
from mutomo.volume.propagation import position_at_z

DEMO_MATERIALS = ("water", "concrete", "iron", "lead", "uranium")


def _demo_detector() -> Detector:
    above = [DetectorPanel((0.5, 0.5, z), (1.0, 1.0), 1e-4, 0.9) for z in (1.15, 1.05)]
    below = [DetectorPanel((0.5, 0.5, z), (1.0, 1.0), 1e-4, 0.9) for z in (0.25, 0.15)]
    return Detector(above, below)


def run_demo(output: Path, n_muons: int = 200_000, seed: int = 0) -> dict[str, float]:
    """Simulate muons through 20 cm slabs of several materials and summarise; returns the numbers."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    detector = _demo_detector()
    flux = TabulatedFlux(momentum_range=(0.1, 1000.0), theta_max=math.radians(85.0))
    source = FluxSource(acceptance_plane(detector, theta_max=math.radians(60.0)), flux)
    summary: dict[str, float] = {}
    angles: dict[str, np.ndarray] = {}
    tracks: dict[str, np.ndarray] = {}
    start = time.perf_counter()
    print(
        f"mutomo demo: {n_muons:,} cosmic muons (GCCLY15 via mulder) per material, 1 x 1 x 0.2 m slabs of 10 cm voxels"
    )
    print(f"generation plane {source.plane.area:.2f} m^2 -> {exposure_time(n_muons, source):.1f} s of exposure per run")
    print(f"{'material':10s} {'reach lower':>12s} {'stopped':>8s} {'RMS angle':>10s} {'mean |angle|':>13s}")
    for name in DEMO_MATERIALS:
        volume = PassiveVolume.uniform(name, size=(1.0, 1.0, 0.2), voxel_size=0.1, z_low=0.4)
        result = simulate(detector, volume, source, n_muons, generator)
        w_in, w_out = result.muons_in.weight, result.muons_out.weight
        crossed = result.hits_above.weight.prod(0) > 0.5
        reach = (result.hits_below.weight.prod(0) / 0.9**2 > 0.5) & crossed
        d_in, d_out = result.muons_in.direction, result.muons_out.direction
        theta_x = torch.atan2(d_out[:, 0], -d_out[:, 2]) - torch.atan2(d_in[:, 0], -d_in[:, 2])
        ok = crossed & (w_out > 0)
        a = theta_x[ok].numpy()
        angles[name] = a
        summary[f"{name}_reach_fraction"] = float(reach.float().mean())
        summary[f"{name}_rms_mrad"] = float(1e3 * np.sqrt(np.mean(a**2)))
        stopped = float(((w_in > 0) & (w_out == 0) & crossed).float().sum() / crossed.float().sum())
        print(
            f"{name:10s} {summary[f'{name}_reach_fraction']:12.3f} {stopped:8.4f} "
            f"{summary[f'{name}_rms_mrad']:8.2f} mrad {1e3 * np.mean(np.abs(a)):9.2f} mrad"
        )
        if name == "lead":
            sel = torch.nonzero(reach)[:40, 0]
            zs = [1.2, volume.z_high, volume.z_low, 0.1]
            xs = [
                position_at_z(result.muons_in[sel], zs[0])[:, 0],
                result.muons_in.position[sel, 0],
                result.muons_out.position[sel, 0],
                position_at_z(result.muons_out[sel], zs[3])[:, 0],
            ]
            tracks = {"x": torch.stack(xs).numpy(), "z": np.array(zs)[:, None].repeat(len(sel), 1)}
    summary["seconds"] = time.perf_counter() - start
    summary["exposure_s"] = exposure_time(n_muons, source)
    summary["n_muons"] = float(n_muons)
    from mutomo.plotting.demo import demo_figure

    figure = demo_figure(
        output / "demo_scattering.png",
        tracks,
        angles,
        (0.4, 0.6),
        [1.15, 1.05, 0.25, 0.15],
        [(0.0, 1.0)] * 4,
    )
    print(f"figure written to {figure}; {summary['seconds']:.1f} s in all")
    return summary


def _x0_figure(run_dir: Path, task: Task, n_muons: int) -> Path | None:
    """Inferred X0 slices of a mid-range test volume seen by the optimised design."""
    from mutomo.inference import PocaX0
    from mutomo.optimise.design import DetectorDesign
    from mutomo.plotting.x0 import x0_slices
    from mutomo.reco import measure

    if n_muons <= 0:
        return None
    design = DetectorDesign.from_description(json.loads((run_dir / "design_final.json").read_text()))
    target = task.targets[len(task.targets) // 2]
    volume = task.volume(target)
    with torch.no_grad():
        r = simulate(design.detector(), volume, task.source, n_muons, torch.Generator().manual_seed(7))
        p = 0.5 * (r.muons_in.momentum + r.muons_out.momentum)
        data = measure(r.hits_above, r.hits_below, volume, p, r.muons_in.weight * (r.muons_out.weight > 0))
        vmap = PocaX0()(data, volume)
    assert vmap.x0 is not None
    z_edges = volume.z_low + volume.voxel_size[2] * np.arange(volume.shape[2] + 1)
    return x0_slices(
        run_dir / "figures" / "x0_slices.png",
        vmap.x0.numpy(),
        volume.x_range,
        volume.y_range,
        z_edges,
        truth=volume.x0.numpy(),
    )


def _report(run_dir: Path) -> Path:
    from mutomo.io.config import parse_config
    from mutomo.optimise.run import build_task
    from mutomo.plotting.report import write_report

    config = parse_config(json.loads((run_dir / "config.json").read_text()), str(run_dir / "config.json"))
    task = build_task(config)
    volume = task.volume(task.targets[0])
    box = (*volume.x_range, *volume.y_range, volume.z_low, volume.z_high)
    (run_dir / "figures").mkdir(exist_ok=True)
    extra = _x0_figure(run_dir, task, config.output.x0_muons)
    return write_report(run_dir, box, [extra] if extra is not None else None)


def _print_evaluations(evaluations: dict) -> None:
    print(f"{'design':20s} {'MSE (m^2)':>22s} {'cost':>8s}")
    for name, e in evaluations.items():
        print(f"{name:20s} {e['mse']:11.3e} +- {e['mse_error']:.1e} {e['design']['cost']:8.0f}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mutomo", description="Differentiable muon tomography detector design")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="simulate cosmic muons through slabs of several materials")
    demo.add_argument("--output", type=Path, default=Path("demo_output"), help="folder for the figure")
    demo.add_argument("--muons", type=int, default=200_000, help="muons per material (>= 1)")
    demo.add_argument("--seed", type=int, default=0)
    opt = sub.add_parser("optimise", help="optimise a detector for a task (TOML or YAML configuration)")
    opt.add_argument("config", type=Path)
    opt.add_argument("--output", type=Path, default=None, help="run directory (default: output.directory)")
    opt.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint in the run directory")
    opt.add_argument("--no-report", action="store_true", help="skip the figures and report.html")
    ev = sub.add_parser("evaluate", help="evaluate a saved design (JSON) on a task's test volumes")
    ev.add_argument("design", help="design JSON file, or the name of a built-in design of the task")
    ev.add_argument("--config", type=Path, default=None, help="configuration for the task and evaluation settings")
    rep = sub.add_parser("report", help="(re)write the figures and report.html of a run directory")
    rep.add_argument("run_dir", type=Path)
    args = parser.parse_args(argv)
    if args.command == "demo":
        if args.muons < 1:
            parser.error(f"--muons must be >= 1; got {args.muons}")
        run_demo(args.output, args.muons, args.seed)
        return 0
    from mutomo.io.config import ConfigError, RunConfig, load_config
    from mutomo.runtime import tune_allocator

    if args.command in ("optimise", "evaluate"):
        tune_allocator()  # loops of steps: reuse freed memory instead of page-faulting it in again
    try:
        if args.command == "optimise":
            from mutomo.optimise.run import run

            config = load_config(args.config)
            run_dir = args.output if args.output is not None else Path(config.output.directory)
            start = time.perf_counter()
            evaluations = run(config, run_dir, resume=not args.fresh)
            _print_evaluations(evaluations)
            if not args.no_report:
                print(f"report: {_report(run_dir)}")
            print(f"run directory {run_dir}; {time.perf_counter() - start:.0f} s")
        elif args.command == "evaluate":
            from mutomo.optimise.design import DetectorDesign
            from mutomo.optimise.evaluate import evaluate
            from mutomo.optimise.run import build_task, design_description

            config = load_config(args.config) if args.config is not None else RunConfig()
            task = build_task(config)
            design = DetectorDesign.from_description(design_description(args.design, task, "design"))
            e = config.evaluation
            result = evaluate(design, task, e.n_volumes, e.n_muons, e.calibration_per_target, e.seed)
            _print_evaluations({args.design: {**result.__dict__, "design": design.describe()}})
        elif args.command == "report":
            print(f"report: {_report(args.run_dir)}")
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
