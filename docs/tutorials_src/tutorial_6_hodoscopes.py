"""
Hodoscopes that are already built: placement, keep-out regions, the module-count front
======================================================================================

Often the detector modules exist before the study: hodoscopes bought or built for another
experiment, each a rigid box holding its panels at fixed heights with a fixed resolution and
efficiency. Then the only design question is *where they go*, and perhaps *how many to buy*.
mutomo describes the module once in a ``[hodoscope]`` table; a design lists the modules' centres
(``modules``); training moves only those centres; and after every step the modules are projected
back into the allowed region, apart from each other and out of keep-out boxes (the scanned volume
itself, and whatever else a module may not enter: the road, a wall, the lorry's axles). The built-in
``lorry_uranium`` benchmark (``mutomo tasks`` lists it) is such a problem at full size: four
1 × 1 × 0.3 m modules around a lorry's cargo.

This tutorial uses a lorry in miniature so that the page builds in well under a minute: a
1.2 × 0.8 × 0.8 m cargo of water that may hide a 20 cm uranium cube, 0.4 m modules of two panels,
3,000 muons a test volume, 6 short epochs, 32 test volumes. The numbers printed
show the form of the output, not a result: at these sizes the errors are as large as the differences
between designs (the :doc:`lorry results </results/lorry>` page has the full-size study).
"""

# %%
# The configuration
# -----------------
# ``[hodoscope]`` is the built module: its box (x, y, z in m), the heights of its panels above the
# box's bottom face, their resolution and efficiency, and the price of one module. ``[region]``
# bounds the module centres' x and y and the heights of the boxes above (``z_above``) and below
# (``z_below``) the cargo; ``keep_out`` adds boxes ``[x0, x1, y0, y1, z0, z1]`` (m) no module may
# enter, here the lorry's front and rear axles under the cargo's ends. The cargo itself is always
# kept out. ``trainable = ["xy", "z"]`` moves the modules; nothing else of a module can change.
# With ``fixed_budget = false`` the cost is the modules' price, which placement does not change.

import json
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from matplotlib.patches import Patch, Rectangle

import mutomo
from mutomo.app.cli import main
from mutomo.design.hodoscopes import module_sides

CONFIG = """
name = "small_lorry"

[task]
kind = "presence"
inference = "poca"
muons_per_volume = 3000
reference = "clean"              # scores against clean cargos seen by the same modules

[scene]
size = [1.2, 0.8, 0.8]
origin = [0.0, 0.0, 1.0]         # the cargo's underside, 1 m above the road
voxel = 0.2
background = { material = "water" }

[[scene.objects]]
name = "uranium cube"
material = "uranium"
size = [0.2, 0.2, 0.2]
low = { min = [0.0, 0.0, 0.0], max = [1.0, 0.6, 0.6] }
probability = 0.5

[muons]
theta_max_deg = 30.0

[hodoscope]                      # the built module: a 0.4 x 0.4 x 0.1 m box, a panel at its bottom and top
size = [0.4, 0.4, 0.1]
panel_heights = [0.0, 0.1]
resolution = 3e-4
efficiency = 0.95
cost = 1000.0

[region]
x = [-0.2, 1.4]
y = [-0.2, 1.0]
z_above = [1.9, 2.6]
z_below = [0.2, 0.9]
keep_out = [
    [-0.2, 0.1, -0.2, 1.0, 0.2, 1.0],   # front axle and wheels
    [1.1, 1.4, -0.2, 1.0, 0.2, 1.0],    # rear axle and wheels
]

[designs.tiled]                  # human: two modules above, two below, evenly along the cargo
modules = [[0.3, 0.4, 1.95], [0.9, 0.4, 1.95], [0.3, 0.4, 0.85], [0.9, 0.4, 0.85]]

[designs.bunched]                # a poor start: all four at the front end of the cargo
modules = [[0.3, 0.2, 1.95], [0.3, 0.6, 1.95], [0.3, 0.2, 0.85], [0.3, 0.6, 0.85]]

[design]
start = "bunched"
trainable = ["xy", "z"]
fixed_budget = false

[training]
epochs = 6
volumes_per_epoch = 6            # the presence task's least: pairs with and without, plus references
muons_per_volume = 1000
validation_volumes = 0

[training.learning_rates]
xy = 0.1
z = 0.1

[evaluation]
n_volumes = 32
bounds = []                      # no ideal detectors beside the designs (see Concepts), to keep it short
calibration_volumes = 8          # clean reference cargos
min_hits = [2]
exposure_factors = [1.0]
compare = ["tiled"]

[output]
x0_muons = 0
"""

workdir = Path(tempfile.mkdtemp(prefix="mutomo_hodoscopes_"))
config_path = workdir / "small_lorry.toml"
_ = config_path.write_text(CONFIG)

# %%
# The designs are hodoscope designs
# ---------------------------------
# ``build_problem`` builds the scene, the task, the module and the named designs; a named design
# with ``modules`` is a :class:`~mutomo.HodoscopeDesign`. Its trainable parameters are the module
# centres, nothing else; its cost is the number of modules times their price.

config = mutomo.load_config(config_path)
problem = mutomo.build_problem(config)
tiled = problem.design("tiled", ("xy", "z"))
assert isinstance(tiled, mutomo.HodoscopeDesign)
print(f"{tiled.n_modules} modules, cost {float(tiled.cost()):g}; above the cargo: {tiled.above}")
print(f"{problem.n_muons} muons a test volume: {problem.exposure_s:.0f} s of sky")
print("trained:", {name: tuple(p.shape) for name, p in tiled.named_parameters() if p.requires_grad})
print("keep-out boxes (the cargo, then the axles):", problem.keep_out)

# %%
# Keep-out regions and the projection
# -----------------------------------
# A starting placement that puts a module where it may not be is refused, naming the module:

centres = tiled.centres.detach().clone()
centres[3, 0] = 1.1  # the second module below, moved over the rear axle
try:
    mutomo.HodoscopeDesign(problem.hodoscope, centres, problem.bounds, keep_out=problem.keep_out)
except mutomo.MutomoError as error:
    print(error)

# %%
# During training a step may push a module into a keep-out box or into another module. After each
# step the design projects itself back: a module inside a box is pushed out along the axis of least
# penetration, overlapping modules are pushed apart, and every box stays in the region.
# :meth:`~mutomo.HodoscopeDesign.place_` applies the same projection to any placement:

design = problem.design("tiled", ("xy", "z"))
assert isinstance(design, mutomo.HodoscopeDesign)
wanted = design.centres.detach().clone()
wanted[2] = torch.tensor([0.15, 0.4, 0.85])  # 15 cm into the front axle's box
wanted[3] = torch.tensor([0.2, 0.5, 0.85])  # and onto the other module below
assert design.place_(wanted)
for k, (asked, got) in enumerate(zip(wanted.tolist(), design.centres.tolist(), strict=True)):
    print(f"module {k}: asked {[round(v, 2) for v in asked]} m -> placed {[round(v, 3) for v in got]} m")

# %%
# Optimise the placement
# ----------------------
# ``mutomo optimise`` trains the start (``bunched``) and evaluates it beside ``tiled`` on the same
# test cargos and muons (``initial`` is the start as it was before training, ``optimised`` the
# trained placement). Only the four centres move.

run_dir = workdir / "run"
assert main(["optimise", str(config_path), "--output", str(run_dir), "--no-report"]) == 0
evaluations = json.loads((run_dir / "evaluations.json").read_text())
final = json.loads((run_dir / "design_final.json").read_text())
start = json.loads((run_dir / "design_initial.json").read_text())
for name, entry in evaluations["designs"].items():
    auc, error = entry["physical"]["auc"]
    print(f"{name:>10}: AUC {auc:.2f} ± {error:.2f} (physical readout)")

# %%
# The start and the trained placement, from the side (x–z) and from above (x–y): the modules above
# the cargo in blue, those below it in green (outlined), the cargo in grey and the axles, which no
# module may enter, hatched:


def draw(ax, description, plane):
    """Module boxes of a design description (``design_*.json``) in the x-z or x-y plane."""
    size = description["module"]["size"]
    above = module_sides(description["centres"], problem.bounds)
    for centre, rotated, up in zip(description["centres"], description["rotated"], above, strict=True):
        sx, sy = (size[1], size[0]) if rotated else (size[0], size[1])
        width, height = (sx, size[2]) if plane == "xz" else (sx, sy)
        x, y = centre[0], centre[2] if plane == "xz" else centre[1]
        style = {"fc": "tab:blue", "alpha": 0.6} if up else {"fc": (0.17, 0.63, 0.17, 0.25), "ec": "tab:green", "lw": 2}
        ax.add_patch(Rectangle((x - width / 2, y - height / 2), width, height, **style))


fig, axes = plt.subplots(2, 2, figsize=(9, 6.6), layout="constrained", sharex=True)
trained = f"after {config.training.epochs} epochs"
for column, (title, description) in enumerate((("start (bunched)", start), (trained, final))):
    for row, plane in enumerate(("xz", "xy")):
        ax = axes[row, column]
        cargo, *axles = problem.keep_out
        for box in axles:
            y0, y1 = (box[4], box[5]) if plane == "xz" else (box[2], box[3])
            ax.add_patch(Rectangle((box[0], y0), box[1] - box[0], y1 - y0, fc="none", ec="0.4", hatch="//"))
        y0, y1 = (cargo[4], cargo[5]) if plane == "xz" else (cargo[2], cargo[3])
        ax.add_patch(Rectangle((cargo[0], y0), cargo[1] - cargo[0], y1 - y0, fc="0.85", ec="0.5"))
        draw(ax, description, plane)
        ax.set(xlim=problem.bounds.x, aspect="equal")
        if plane == "xz":
            ax.set(ylim=(problem.bounds.z_below[0], problem.bounds.z_above[1]), title=title, ylabel="z (m)")
        else:
            ax.set(ylim=problem.bounds.y, xlabel="x (m)", ylabel="y (m)")
legend = [
    Patch(fc="tab:blue", alpha=0.6, label="module above the cargo"),
    Patch(fc=(0.17, 0.63, 0.17, 0.25), ec="tab:green", lw=2, label="module below the cargo"),
    Patch(fc="0.85", ec="0.5", label="cargo (kept out)"),
    Patch(fc="none", ec="0.4", hatch="//", label="axles (keep-out boxes)"),
]
fig.legend(handles=legend, loc="outside lower center", ncols=4, fontsize="small")
plt.show()

# %%
# The module-count front
# ----------------------
# How many modules are worth buying? ``mutomo landscape CONFIG --starts N --modules K1 K2 ...``
# trains ``--front-starts`` random placements of each number of modules K (the same module, in the
# same region, out of the same keep-out boxes) and compares the best with the tiled placement of K
# modules (:func:`~mutomo.design.hodoscopes.tiled_placement`, the human rule), each at its cost,
# K times the module's price. The tiled placement of every K must fit the region and avoid the
# keep-out boxes, or the front is refused before anything is trained. ``mutomo sweep`` runs the same
# front as Ray trials from ``modules = [...]`` in the ``[sweep]`` table
# (see :doc:`the sweep tutorial <tutorial_7_sweep_on_ray>`).

out = workdir / "landscape"
arguments = ["--starts", "1", "--modules", "2", "4", "--front-starts", "2", "--epochs", "3", "--muons", "500"]
arguments += ["--eval-volumes", "16", "--output", str(out)]
assert main(["landscape", str(config_path), *arguments]) == 0
front = json.loads((out / "landscape.json").read_text())["front"]
for point in front["budgets"]:
    auc, error = point["metric"]
    print(f"{point['modules']} modules (cost {point['budget']:g}): best of 2 trained, AUC {auc:.2f} ± {error:.2f}")
for point in front["humans"]["tiled placement"]["scaled"]:
    auc, error = point["metric"]
    print(f"{point['modules']} modules tiled: AUC {auc:.2f} ± {error:.2f}")

# %%
# The front: for each number of modules the best trained placement and the tiled placement, with
# their statistical errors. At these sizes (3 epochs from random placements, 16 test cargos) the
# errors, about ±0.1 in AUC, are too large to tell the points apart, and the best of the trained
# placements is chosen on the same test cargos that judge it, which flatters it: judge a chosen design
# on held-out volumes (``mutomo evaluate``).

fig, ax = plt.subplots(figsize=(6.5, 3.6), layout="constrained")
ks = [p["modules"] for p in front["budgets"]]
series = {
    "best trained placement": ([p["metric"] for p in front["budgets"]], "o", -0.08),
    "tiled placement (human)": ([p["metric"] for p in front["humans"]["tiled placement"]["scaled"]], "s", 0.08),
}
for label, (metrics, marker, shift) in series.items():
    x = [i + shift for i, (value, _) in enumerate(metrics) if value is not None]
    defined = [m for m in metrics if m[0] is not None]
    ax.errorbar(x, [v for v, _ in defined], yerr=[e for _, e in defined], fmt=marker, capsize=3, label=label)
ax.axhline(0.5, color="0.5", ls=":", label="chance")
ax.set_xticks(range(len(ks)), [f"{k} modules\n(cost {k * config.hodoscope.cost:g})" for k in ks])
ax.set(
    xlim=(-0.6, len(ks) - 0.4),
    xlabel="number of modules K (cost in units of account)",
    ylabel="AUC, physical readout",
    ylim=(0, 1.05),
    title="module-count front, 16 test cargos",
)
ax.legend(fontsize="small", loc="lower right")
plt.show()

# %%
# Next steps: the full-size problem is ``mutomo optimise lorry_uranium`` (or a configuration with
# ``extends = "lorry_uranium"`` and your own ``[hodoscope]``, ``[region]`` and designs); its
# module-count front on Ray is ``mutomo sweep configs/lorry_sweep.toml``. A trained placement is
# a design file (``run_dir / "design_final.json"``) that ``mutomo evaluate`` judges on held-out
# volumes and ``mutomo export`` writes as GDML.
