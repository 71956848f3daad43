"""
Your own hits files, reconstructed with every method
====================================================

Hits recorded by a real tracker or simulated by another tool (Geant4, muograph) come to mutomo as
files: muograph-style CSV, ROOT or HDF5. This tutorial writes such a file, reads it back as any
file of yours would be read, and reconstructs the volume with every voxel method of the registry
(``mutomo.VOXEL_METHODS``): binned and extended PoCA with Highland X0 inference, ASR, binned
clustering and ML/EM.

The hits here come from mutomo's own simulation of a 20 cm lead block in 1 m × 1 m × 0.8 m of water
(100,000 muons, about 5 minutes of exposure), so that the truth is known; with a file of your own,
start at "Read the file".
"""

# %%
# A file of hits
# --------------
# Three panels above and three below the volume, 100 µm resolution, 90 % efficiency.
# :func:`mutomo.io.write_csv` writes muograph's columns (``E, X0.., Y0.., Z0..``; mm and the kinetic
# energy in MeV).

import math
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

import mutomo
from mutomo.io import hits_from_simulation, read_csv, write_csv

volume = mutomo.PassiveVolume.uniform("water", (1.0, 1.0, 0.8), 0.1, z_low=0.4)
volume = volume.with_box("lead", (0.4, 0.3, 0.6), (0.6, 0.5, 0.8))


def panel(z: float) -> mutomo.DetectorPanel:
    return mutomo.DetectorPanel((0.5, 0.5, z), (1.6, 1.6), resolution=1e-4, efficiency=0.9)


detector = mutomo.Detector([panel(1.5), panel(1.4), panel(1.3)], [panel(0.3), panel(0.2), panel(0.1)])
source = mutomo.FluxSource(
    mutomo.acceptance_plane(detector, math.radians(40)), mutomo.TabulatedFlux(theta_max=math.radians(40))
)
n_muons = 100_000
result = mutomo.simulate(detector, volume, source, n_muons, torch.Generator().manual_seed(0))
print(f"{n_muons:,} muons = {mutomo.exposure_time(n_muons, source) / 60:.1f} min of exposure")

path = Path(tempfile.mkdtemp(prefix="mutomo_hits_")) / "hits.csv"
write_csv(path, hits_from_simulation(result))
print(path.name, f"{path.stat().st_size / 1e6:.1f} MB;", path.read_text().splitlines()[0][:70], "...")

# %%
# Read the file
# -------------
# :func:`mutomo.io.read_csv` needs the panels' resolution (one value, or one per plane) and a
# height between the planes above and those below the volume (``z_split``, m). The momenta come
# from the file's energy column, when it has one; a real tracker records none (see below).

hits = read_csv(path, resolution=1e-4, z_split=0.8)
print(
    "planes above:",
    [round(z, 3) for z in hits.above.z.tolist()],
    "below:",
    [round(z, 3) for z in hits.below.z.tolist()],
    "(m)",
)
print("muons:", hits.above.xy.shape[1])

# %%
# Every method
# ------------
# :func:`mutomo.measure` fits the tracks on both sides and computes the deflections and points of
# closest approach; each voxel method then makes a map. The X0 methods report 1/X0 (m⁻¹); ASR the
# median of the muons' normalised deflections θβp / 13.6 MeV (dimensionless); binned clustering
# −median ln m of its pair metric ``m = |V_i - V_j| / (θ_i p_i θ_j p_j)``, in m (rad GeV/c)⁻².

assert hits.momentum is not None
data = mutomo.measure(hits.above, hits.below, volume, hits.momentum)
maps = {name: entry.build()(data, volume) for name, entry in mutomo.VOXEL_METHODS.items()}
is_lead = (volume.x0 < 0.01).reshape(-1)
for name, vmap in maps.items():
    best = int(torch.where(vmap.measured, vmap.score, -torch.inf).argmax())
    where = "lead" if is_lead[best] else "water"
    line = f"{name:>14}: highest-scoring voxel is {where}"
    if vmap.x0 is not None:
        x0 = vmap.x0.detach().reshape(-1)
        line += f"; median X0 of the lead voxels {float(x0[is_lead].median()):.4f} m (true 0.0056)"
    print(line)

# %%
# A horizontal slice through the block, each method's map beside the truth (grey: voxels with too
# few muons to be measured):

lead_layers = torch.nonzero((volume.x0 < 0.01).any(dim=0).any(dim=0)).reshape(-1).tolist()
layer = lead_layers[-1]
z_low = volume.z_low + layer * 0.1
print(f"layer {layer}: z from {z_low:.1f} to {z_low + 0.1:.1f} m")
fig, axes = plt.subplots(1, len(maps) + 1, figsize=(15, 3.1), layout="constrained")
extent = (*volume.x_range, *volume.y_range)
truth = axes[0].imshow(1 / volume.x0[:, :, layer].T.numpy(), origin="lower", extent=extent, cmap="viridis")
axes[0].set(title="truth", xlabel="x (m)", ylabel="y (m)")
fig.colorbar(truth, ax=axes[0], label="1/X0 (m⁻¹)", shrink=0.8)
cmap = plt.get_cmap("viridis").with_extremes(bad="lightgrey")
units = {"asr": "median θβp / 13.6 MeV (dimensionless)", "bca": "−median ln m, m in m (rad GeV/c)⁻²"}
for ax, (name, vmap) in zip(axes[1:], maps.items(), strict=True):
    score = np.where(vmap.measured.numpy(), vmap.score.detach().numpy(), np.nan)[:, :, layer]
    image = ax.imshow(score.T, origin="lower", extent=extent, cmap=cmap)
    ax.set(title=name, xlabel="x (m)")
    fig.colorbar(image, ax=ax, label=units.get(name, "1/X0 (m⁻¹)"), shrink=0.8)
plt.show()

# %%
# Without the momenta
# -------------------
# A tracker measures no momentum. Give :func:`mutomo.measure` an estimate instead
# (:class:`mutomo.FluxMeanMomentum`: the flux's mean at each muon's zenith angle), or let ML/EM
# marginalise over each muon's momentum: ``task.momentum`` in a configuration, explained with the
# :doc:`concepts </concepts>`, and measured on the :doc:`reconstruction methods
# </results/reconstruction>` page.

estimate = mutomo.measure(hits.above, hits.below, volume, mutomo.FluxMeanMomentum())
asr = mutomo.VOXEL_METHODS["asr"].build()(estimate, volume)
best = int(torch.where(asr.measured, asr.score, -torch.inf).argmax())
print("ASR with the flux mean momentum: highest-scoring voxel is", "lead" if is_lead[best] else "water")
