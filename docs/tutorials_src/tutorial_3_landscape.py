"""
A landscape of near-optimal designs
===================================

Gradient descent from one start finds one design. ``mutomo landscape`` trains K random starts at
once — one simulation serves all K, stacked on a design axis — evaluates each finished design on
the same test volumes and muons as the human designs, groups designs that ended within a distance
of each other, and keeps those within a tolerance of the best: the distinct designs that are about
as good. ``mutomo sweep`` runs the same trials (and gradient-free baselines) as Ray tasks, locally or
on a cluster, from the ``[sweep]`` table of a configuration.

Here the ladle furnace with 6 starts, cut to a few epochs and test volumes so that the page builds in
seconds: the printed numbers show the form of the output, not a result (the full landscape is on
the :doc:`landscape results </results/landscape>` page).
"""

# %%
# The run
# -------

import json
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt

from mutomo.app.cli import main

workdir = Path(tempfile.mkdtemp(prefix="mutomo_landscape_"))
config_path = workdir / "ladle_landscape.toml"
_ = config_path.write_text(
    """
extends = "ladle_furnace"

[evaluation]
n_volumes = 16
calibration_volumes = 16
compare = ["human_acceptance"]
min_hits = [2]
"""
)
output = workdir / "landscape"
arguments = ["--starts", "6", "--epochs", "8", "--volumes", "4", "--muons", "300", "--eval-volumes", "16"]
assert main(["landscape", str(config_path), *arguments, "--output", str(output)]) == 0

# %%
# What it wrote
# -------------
# ``landscape.json`` holds every start's finished design and metric (``[value, error]``), the paired
# difference of each to the best, the groups of distinct designs and the near-optimal ones;
# ``figures/`` holds their views.

landscape = json.loads((output / "landscape.json").read_text())
print(sorted(p.name for p in output.iterdir()))
print("near-optimal:", landscape["near_optimal"]["count"], "of", len(landscape["starts"]), "starts")
for i, start in enumerate(landscape["starts"]):
    mse, error = start["metric"]
    # a metric the evaluation could not define (e.g. too few muons tracked) is None: shown n/a
    shown = "n/a" if mse is None else f"{mse:.4f} ± {error:.4f} m²"
    print(f"start {i}: physical MSE {shown}, group {start['cluster']}")

# %%
# Each start's metric against the human design's, with their statistical errors:

fig, ax = plt.subplots(figsize=(7, 3.2), layout="constrained")
values = [(i, *s["metric"]) for i, s in enumerate(landscape["starts"]) if s["metric"][0] is not None]
ax.errorbar([i for i, _, _ in values], [v for _, v, _ in values], yerr=[e for _, _, e in values], fmt="o", capsize=3)
for name, human in landscape["humans"].items():
    value, error = human["metric"]
    ax.axhspan(value - error, value + error, alpha=0.2, color="tab:orange")
    ax.axhline(value, color="tab:orange", label=f"{name} (± 1 s.e.)")
ax.set(xlabel="start", ylabel="fill-height MSE, physical (m²)", title="starts after 8 epochs, 16 test volumes")
ax.legend()
plt.show()
