"""``mutomo demo``: cosmic muons through 20 cm slabs of several materials, summarised and drawn."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

from mutomo.detector import Detector, DetectorPanel
from mutomo.io.files import writable_dir
from mutomo.muons import FluxSource, TabulatedFlux, exposure_time
from mutomo.plotting.demo import demo_figure
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
    output = writable_dir(output, "--output")
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

    figure = demo_figure(
        output / "demo_scattering.png",
        tracks,
        angles,
        (0.4, 0.6),
        [1.15, 1.05, 0.25, 0.15],
        [(0.0, 1.0)] * 4,
        material="lead",
    )
    print(f"figure written to {figure}; {summary['seconds']:.1f} s in all")
    return summary
