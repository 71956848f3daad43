"""
A regression question from Python: comparing ladle-furnace designs
===================================================================

How full is a steel ladle furnace? TomOpt's paper task ships as the built-in ``ladle_furnace``: a
1 m³ furnace with steel walls, liquid steel up to a fill height under 10 cm of slag, and a
regression of the fill height from the precision-weighted mean height of the muons' points of
closest approach, calibrated by a straight line. ``make demo`` optimises it from the command line.
This tutorial uses the Python API to ask the question every result rests on: is one design better
than another, beyond the statistical error? It evaluates TomOpt's poor start and the two human
designs on the same test volumes and muons and compares them pairwise, in a short form (32 test
volumes, where the :doc:`ladle-furnace results </results/ladle_furnace>` use 960).
:func:`mutomo.optimise` trains a design from Python the same way (see :doc:`/getting-started`).
"""

# %%
# The problem and its designs
# ---------------------------
# ``load_benchmark`` builds the scene, task, muons, region, cost model and named designs of a
# built-in configuration. ``poor`` is TomOpt's deliberately poor start (every panel over one
# corner); ``human_resolution`` (two widely separated pairs a side) and ``human_acceptance`` (panels
# 10 cm apart next to the furnace) are human designs; all three cost the same 6,000 units of account.

import matplotlib.pyplot as plt
import torch

import mutomo
from mutomo.optimise.evaluate import observe_design, summarise

problem = mutomo.load_benchmark("ladle_furnace")
print(problem.task.kind, "| designs:", sorted(problem.designs))
designs = {name: problem.design(name, budget=6000.0) for name in ("poor", "human_resolution", "human_acceptance")}

# %%
# Evaluate, paired on the same volumes and muons
# ----------------------------------------------
# Each design is observed on the same test volumes and muons; the metric is the fill height's mean
# squared error (m²) after a calibration line fitted on the calibration volumes, with its statistical
# error (which includes the calibration line's). :func:`mutomo.paired` gives the difference of two
# designs and its error from the per-volume differences, in which the volumes' and muons'
# fluctuations cancel.

evaluation = mutomo.EvaluationSettings(n_volumes=32, calibration_volumes=32)
observed = {name: observe_design(d, problem, evaluation) for name, d in designs.items()}
metrics = {name: summarise(problem, obs)["physical"]["mse"] for name, obs in observed.items()}
for name, mse in metrics.items():
    print(f"{name:>17}: MSE {mse} m² (physical readout)")
for a, b in (("human_acceptance", "poor"), ("human_acceptance", "human_resolution")):
    difference = mutomo.paired(problem, observed[a], observed[b])["physical"]["mse"]
    print(f"{a} - {b} (paired): {difference} m², {abs(difference.value) / difference.error:.1f} standard errors")

# %%
# The designs seen from the side (z and x in m), and their MSE with its error:

fig, (ax_side, ax_mse) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
colours = {"poor": "tab:red", "human_resolution": "tab:blue", "human_acceptance": "tab:orange"}
for name, design in designs.items():
    with torch.no_grad():
        detector = design.detector()
        for side in ("above", "below"):
            panels = detector.panel_parameters(side)
            for centre, span in zip(panels["centre"].tolist(), panels["span"].tolist(), strict=True):
                x = [centre[0] - span[0] / 2, centre[0] + span[0] / 2]
                ax_side.plot(x, [centre[2]] * 2, color=colours[name], lw=1.5)
    ax_side.plot([], [], color=colours[name], label=name)
ax_side.axhspan(0.4, 1.4, color="grey", alpha=0.2, label="furnace (0.4–1.4 m)")
ax_side.set(xlabel="x (m)", ylabel="z (m)", title="panels")
ax_side.legend(fontsize="small", loc="center right")
names = list(metrics)
ax_mse.errorbar(range(len(names)), [metrics[n].value for n in names], yerr=[metrics[n].error for n in names], fmt="o")
ax_mse.set_xticks(range(len(names)), names)
ax_mse.set(yscale="log", ylabel="fill-height MSE, physical (m²)", title=f"{evaluation.n_volumes} test volumes")
plt.show()
