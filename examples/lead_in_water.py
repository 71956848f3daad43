"""Reconstruct a lead block inside a drum of water and save the inferred X0 slices.

Run: .venv/bin/python examples/lead_in_water.py [OUTPUT.png]
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import torch

from mutomo.detector import Detector, DetectorPanel
from mutomo.muons import FluxSource, TabulatedFlux, exposure_time
from mutomo.plotting.x0 import x0_slices
from mutomo.reco import AngleStatisticsReconstruction, BinnedClustering, measure
from mutomo.reco.x0 import PocaX0
from mutomo.simulate import acceptance_plane, simulate
from mutomo.volume import PassiveVolume


def main(output: Path) -> None:
    # A 1 x 1 x 0.8 m "drum" of water in 10 cm voxels with a 20 x 20 x 20 cm lead block inside.
    volume = PassiveVolume.uniform("water", (1.0, 1.0, 0.8), 0.1, z_low=0.4)
    volume = volume.with_box("lead", (0.4, 0.3, 0.6), (0.6, 0.5, 0.8))

    def panel(z: float) -> DetectorPanel:
        return DetectorPanel((0.5, 0.5, z), (1.6, 1.6), resolution=1e-4, efficiency=0.9)

    detector = Detector([panel(1.5), panel(1.4), panel(1.3)], [panel(0.3), panel(0.2), panel(0.1)])
    source = FluxSource(acceptance_plane(detector, math.radians(40)), TabulatedFlux(theta_max=math.radians(40)))
    n = 400_000
    result = simulate(detector, volume, source, n, torch.Generator().manual_seed(0))
    # Truth momentum (mean of entry and exit); see mutomo.reco.momentum for estimates without it.
    momentum = 0.5 * (result.muons_in.momentum + result.muons_out.momentum)
    data = measure(result.hits_above, result.hits_below, volume, momentum, result.muons_in.weight)
    estimate = PocaX0(extended=True)(data, volume)
    assert estimate.x0 is not None
    x0 = estimate.x0.detach().numpy()
    is_lead = volume.x0.numpy() < 0.01
    print(f"{n:,} muons = {exposure_time(n, source) / 60:.1f} min of exposure")
    lead, water = np.median(x0[is_lead]), np.median(x0[~is_lead])
    print(f"median inferred X0: lead voxels {lead:.4f} m (true 0.0056), water voxels {water:.3f} m (true 0.361)")
    for method in (AngleStatisticsReconstruction(), BinnedClustering()):
        vmap = method(data, volume)
        best = int(torch.where(vmap.measured, vmap.score, -torch.inf).argmax())
        print(f"{method.name}: highest-scoring voxel is {'lead' if is_lead.reshape(-1)[best] else 'water'}")
    z_edges = volume.z_low + 0.1 * np.arange(volume.shape[2] + 1)
    path = x0_slices(output, x0, volume.x_range, volume.y_range, z_edges, truth=volume.x0.numpy())
    print(f"wrote {path}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("demo_output/lead_in_water_x0.png"))
