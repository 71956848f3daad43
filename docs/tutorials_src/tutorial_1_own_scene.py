"""
Your own scene and a presence question
======================================

Does a concrete block hide a uranium cube? This tutorial states that question as a configuration
file — the scene, the question, a starting detector and a budget — optimises the detector with
``mutomo optimise`` and reads the run directory it writes. Nothing here is built in: the same
steps work for any scene of boxes, layers or clutter (see :doc:`/reference/configuration`).

The sizes are cut so that the page builds in about a minute (6 epochs of 6 volumes, 32 test
volumes of 4,000 muons). They are far too small for a conclusion; the numbers printed below show
the form of the output, not a result.
"""

# %%
# The configuration
# -----------------
# A 1 m³ block of concrete in 10 cm voxels; with probability 1/2 a 10 cm uranium cube sits at a
# random place inside. The task is *presence*: a score per volume, from an ASR reconstruction, high
# when the cube is there. The detector measures no momentum, so the reconstruction uses the flux's
# mean momentum at each muon's zenith angle. The start is two stacks of three panels; training may
# move the panels and change their sizes under a fixed budget (the start's cost). The comparison
# design ``separated`` spreads the same panels for longer lever arms; comparison designs are scaled
# to the same budget.

import json
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt

import mutomo
from mutomo.app.cli import main

CONFIG = """
name = "cube_in_concrete"

[task]
kind = "presence"
inference = "asr"
muons_per_volume = 4000
momentum = "flux_mean"

[scene]
size = [1.0, 1.0, 1.0]
origin = [0.0, 0.0, 0.4]
voxel = 0.1
background = { material = "concrete" }

[[scene.objects]]
name = "uranium cube"
material = "uranium"
size = [0.1, 0.1, 0.1]
low = { min = [0.1, 0.1, 0.1], max = [0.8, 0.8, 0.8] }
probability = 0.5

[designs.start]
xy = [0.5, 0.5]
z_above = [1.8, 1.6, 1.45]
z_below = [0.35, 0.2, 0.05]
span = 1.2

[designs.separated]
xy = [0.5, 0.5]
z_above = [2.3, 1.9, 1.45]
z_below = [0.35, -0.05, -0.45]
span = 1.2

[design]
start = "start"
trainable = ["xy", "z", "size"]

[training]
epochs = 6
volumes_per_epoch = 6
muons_per_volume = 1000
validation_volumes = 0

[evaluation]
n_volumes = 32
calibration_volumes = 4
compare = ["separated"]
exposure_factors = [0.5, 1.0]

[output]
x0_muons = 0
"""

workdir = Path(tempfile.mkdtemp(prefix="mutomo_tutorial_"))
config_path = workdir / "cube_in_concrete.toml"
_ = config_path.write_text(CONFIG)

# %%
# ``load_config`` validates the file before anything is simulated; a mistake is refused with the
# field's dotted name and what is allowed.

config = mutomo.load_config(config_path)
print(config.task.kind, config.task.inference, "from", config.task.muons_per_volume, "muons a volume")
try:
    mutomo.config.parse_config({**config.model_dump(), "training": {"epochs": 0}})
except mutomo.MutomoError as error:
    print(error)

# %%
# Optimise
# --------
# ``mutomo optimise CONFIG`` trains the start, evaluates it with the comparison designs on the
# same test volumes and muons, and writes a run directory. From Python the command line is
# ``mutomo.app.cli.main``; in a terminal it is ``mutomo optimise cube_in_concrete.toml --output
# RUN_DIR``.

run_dir = workdir / "run"
exit_code = main(["optimise", str(config_path), "--output", str(run_dir), "--no-report"])
assert exit_code == 0, f"mutomo optimise failed with exit code {exit_code}"
print(sorted(p.name for p in run_dir.iterdir()))

# %%
# Read the result
# ---------------
# ``evaluations.json`` holds every design's metrics in every readout, each as ``[value, error]``,
# and the paired differences between designs on the same volumes and muons. ``physical`` is the
# readout a real tracker gives (hard panel edges, hits drawn with the panel efficiency).

evaluations = json.loads((run_dir / "evaluations.json").read_text())
for name, design in evaluations["designs"].items():
    auc, error = design["physical"]["auc"]
    print(f"{name:>16}: AUC {auc:.2f} ± {error:.2f} (physical)")
for pair, readouts in evaluations["paired"].items():
    difference, error = readouts["physical"]["auc"]
    print(f"{pair:>28}: {difference:+.2f} ± {error:.2f}")

# %%
# The training history and the designs' AUC, with their statistical errors:

history = json.loads((run_dir / "history.json").read_text())  # one record per epoch
names = list(evaluations["designs"])
fig, (ax_loss, ax_auc) = plt.subplots(1, 2, figsize=(9, 3.4), layout="constrained")
losses = [epoch["loss"]["task"] for epoch in history]
ax_loss.plot(range(1, len(losses) + 1), losses, marker="o")
ax_loss.set(xlabel="epoch", ylabel="training loss (dimensionless)", title="training: 1 − smooth AUC")
values = [evaluations["designs"][n]["physical"]["auc"] for n in names]
ax_auc.errorbar(range(len(names)), [v for v, _ in values], yerr=[e for _, e in values], fmt="o", capsize=4)
ax_auc.set_xticks(range(len(names)), names, rotation=20)
ax_auc.set(ylabel="AUC, physical readout (dimensionless)", title=f"{config.evaluation.n_volumes} test volumes")
plt.show()

# %%
# Next steps: raise ``training.epochs``, ``evaluation.n_volumes`` and the muons to the sizes of
# ``configs/uranium_in_concrete.toml``; add designs to ``evaluation.compare``; or give the
# optimised design (``run_dir / "design_final.json"``) to ``mutomo evaluate`` on held-out volumes.
