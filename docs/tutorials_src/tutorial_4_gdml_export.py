"""
Exporting a design to Geant4 (GDML) and reading it back
=======================================================

A design is worth building only if it holds up in a full simulation. ``mutomo export`` writes a run's
design, with one test volume of its scene, as GDML for Geant4: a ``G4_AIR`` world, each panel a box
of plastic scintillator with the auxiliary ``SensDet = PanelSD``, and the volume's voxels merged into
boxes of their materials (defined by their elements' mass fractions and density). This tutorial
makes a short ladle-furnace run, exports it, and reads the file back to check it holds what was
designed.

The export needs ``pyg4ometry``, an extra because it brings VTK: ``pip install "mutomo[export]"``
(``make test`` and ``make docs`` install it).
"""

# %%
# A short run to export
# ---------------------
# The built-in ``ladle_furnace`` benchmark, cut to two epochs and a few volumes (a configuration may
# ``extends`` a built-in one and override it table by table).

import tempfile
from pathlib import Path

import matplotlib.pyplot as plt

from mutomo.app.cli import main
from mutomo.io.gdml import read_gdml

workdir = Path(tempfile.mkdtemp(prefix="mutomo_gdml_"))
config_path = workdir / "ladle_short.toml"
_ = config_path.write_text(
    """
extends = "ladle_furnace"

[training]
epochs = 2
volumes_per_epoch = 4
validation_volumes = 0

[evaluation]
n_volumes = 8
calibration_volumes = 8
compare = []
min_hits = [2]

[output]
x0_muons = 0
"""
)
run_dir = workdir / "run"
assert main(["optimise", str(config_path), "--output", str(run_dir), "--no-report"]) == 0

# %%
# Export
# ------
# ``--design`` picks the design (``optimised`` by default, ``best_validated``, ``initial``, another
# design the run evaluated, or a design JSON file) and ``--volume-index`` the test volume.

gdml = workdir / "ladle.gdml"
assert main(["export", str(run_dir), "--gdml", str(gdml), "--volume-index", "0"]) == 0
print(f"{gdml.name}: {gdml.stat().st_size / 1e3:.0f} kB")

# %%
# Read it back
# ------------
# :func:`mutomo.io.gdml.read_gdml` reads the file with pyg4ometry's GDML reader, lengths in m
# (the file holds mm). :func:`mutomo.io.gdml.compare_gdml` lists every difference between such
# contents and the detector and volume that were written; the test suite checks the export with it.

contents = read_gdml(gdml)
print("world:", contents.world_material, [round(w, 2) for w in contents.world_size], "m")
print("materials:", {name: f"{m.density:.0f} kg/m^3" for name, m in contents.materials.items()})
print("voxel boxes:", contents.n_boxes, {k: f"{v:.3f} m^3" for k, v in contents.material_volumes.items()})
for name, panel in sorted(contents.panels.items()):
    centre = ", ".join(f"{c:.3f}" for c in panel.centre)
    print(f"{name:>14}: centre ({centre}) m, size {panel.size[0]:.3f} x {panel.size[1]:.3f} m, {panel.material}")

# %%
# The panels as Geant4 will see them (side view, x and z in m):

fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
for name, panel in contents.panels.items():
    x, _, z = panel.centre
    colour = "tab:blue" if name.startswith("panel_above") else "tab:green"
    ax.plot([x - panel.size[0] / 2, x + panel.size[0] / 2], [z, z], color=colour, lw=2)
ax.axhspan(0.4, 1.4, color="tab:orange", alpha=0.25, label="scanned volume (0.4–1.4 m)")
ax.set(xlabel="x (m)", ylabel="z (m)", title="panels read back from the GDML file")
ax.legend(loc="upper right")
plt.show()
