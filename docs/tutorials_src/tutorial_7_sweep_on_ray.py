"""
A landscape and a sweep on Ray, on this machine and on a cluster
================================================================

``mutomo landscape`` (:doc:`tutorial_3_landscape`) trains K starts in one process, stacked on a
design axis. ``mutomo sweep`` runs the same study as independent *trials* on
`Ray <https://docs.ray.io>`_, one CPU each: gradient runs from ``starts`` starts, a budget front or a
module-count front, and gradient-free searches (random search, CMA-ES, TPE, ...) from the same
starts on the same muons, so that gradients and methods are compared paired. Ray is a dependency
of mutomo: on one machine there is nothing to set up; on a cluster, ``ray start`` makes one and
``--address`` joins it. Every trial checkpoints, so a trial whose worker dies is rerun and resumes,
and the same command again finishes only what is missing.

Here the ladle furnace with 2 gradient trials and 1 CMA-ES search, 8 epochs of 4 volumes of 300
muons, judged on 16 test volumes, on a local Ray of one CPU: the page builds in well under a
minute. The numbers printed show the form of the output, not a result (the full sweeps are on the
:doc:`landscape results </results/landscape>` page).
"""

# %%
# The configuration: a ``[sweep]`` table
# --------------------------------------
# A sweep is a configuration with a ``[sweep]`` table: ``starts`` gradient trials (uniform starts
# in the region, or around ``design.start`` with ``jitter``), ``methods`` × ``method_seeds``
# gradient-free trials (method seed S starts where gradient trial S starts), optionally ``budgets``
# (free panels) or ``modules`` (hodoscopes) for a front with ``front_starts`` trials per point, and
# ``workers``, the CPUs of a local Ray. ``configs/waste_block_sweep.toml`` and
# ``configs/lorry_sweep.toml`` are full-size examples.

import json
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt

from mutomo.app.cli import main

workdir = Path(tempfile.mkdtemp(prefix="mutomo_sweep_"))
config_path = workdir / "ladle_sweep.toml"
_ = config_path.write_text(
    """
extends = "ladle_furnace"

[evaluation]
n_volumes = 16
calibration_volumes = 16
compare = ["human_acceptance"]
min_hits = [2]

[sweep]
starts = 2
methods = ["cma"]
method_seeds = 1
workers = 1
"""
)

# %%
# Run it on this machine
# ----------------------
# Without ``--address`` the sweep starts a local Ray with ``workers`` CPUs (``--workers`` overrides
# it), runs the trials, shuts Ray down, and judges every finished design on the same test volumes
# and muons as the human designs. ``--epochs``, ``--volumes``, ``--muons`` and ``--eval-volumes``
# override the configuration's sizes, as for ``mutomo landscape``. In a terminal:
#
# .. code-block:: bash
#
#     mutomo sweep ladle_sweep.toml --epochs 8 --volumes 4 --muons 300 --eval-volumes 16 --output ladle_sweep
#
# From Python the command line is ``mutomo.app.cli.main``:

output = workdir / "ladle_sweep"
sizes = ["--epochs", "8", "--volumes", "4", "--muons", "300", "--eval-volumes", "16"]
command = ["sweep", str(config_path), *sizes, "--output", str(output)]
assert main(command) == 0

# %%
# What it wrote
# -------------
# ``trials/NAME/`` holds each trial's checkpoints and ``result.json``; ``trials.json`` every trial's
# status, attempts and seconds (and its error, for a trial that failed: the others go on);
# ``landscape.json`` the judgement, with the keys ``mutomo landscape`` writes and ``methods``, each
# gradient-free trial's metric and its paired difference to the gradient trial from the same start;
# ``designs/`` the near-optimal designs as design files.

print(sorted(p.name for p in output.iterdir()))
trials = json.loads((output / "trials.json").read_text())
for name, trial in trials.items():
    print(
        f"{name}: {trial['status']}, {trial['attempts']} attempt(s), {trial['seconds']:.1f} s, {trial['muons']:,} muons"
    )
landscape = json.loads((output / "landscape.json").read_text())


def shown(pair, sign=""):
    """A ``[value, error]`` pair of landscape.json in m²; ``None``: a metric the evaluation could not
    define (e.g. a design whose physical readout tracks no muon through the volume)."""
    value, error = pair
    return "undefined" if value is None else f"{value:{sign}.4f} ± {error:.4f} m²"


for method, entry in landscape["methods"].items():
    for seed, pair in zip(entry["seeds"], entry["metric"], strict=True):
        print(f"{method} from start {seed}: physical MSE {shown(pair)}")
    for seed, pair in zip(entry["seeds"], entry.get("minus_gradient", []), strict=False):  # methods only
        print(f"  {method} − gradient (paired, start {seed}): {shown(pair, '+')}")

# %%
# The same command again
# ----------------------
# A sweep folder remembers the configuration and sizes it was started with (``sweep.json``). The
# same command again runs only the trials not yet done, here none, and judges again (a larger
# ``--eval-volumes`` judges the same designs on more volumes); a folder holding a sweep of another
# configuration is refused.

assert main(command) == 0

# %%
# Each trial's design and the human design on the 16 test volumes, with their statistical errors (a
# design whose metric is undefined is named on the axis but has no point):

fig, ax = plt.subplots(figsize=(7.5, 3.6), layout="constrained")
points = [(f"{s['trial']}\n(gradient)", s["metric"]) for s in landscape["starts"]]
for method, entry in landscape["methods"].items():
    if method != "gradient":  # the gradient trials are the starts above
        points += [
            (f"{method}_s{s}\n(from start {s})", m) for s, m in zip(entry["seeds"], entry["metric"], strict=True)
        ]
points += [(f"{name}\n(human)", human["metric"]) for name, human in landscape["humans"].items()]
for i, (_, (value, error)) in enumerate(points):
    if value is not None:
        ax.errorbar(i, value, yerr=error, fmt="o", capsize=4, color="tab:blue")
ax.set_xticks(range(len(points)), [n if v is not None else f"{n}\nundefined" for n, (v, _) in points])
ax.set(
    xlim=(-0.5, len(points) - 0.5),
    ylabel="fill-height MSE, physical (m²; lower is better)",
    yscale="log",
    title=f"sweep of {len(trials)} trials, 8 epochs each, 16 test volumes",
)
plt.show()

# %%
# On a cluster
# ------------
# The same sweep on many machines needs a Ray cluster and a folder every machine sees (the trials
# checkpoint into it, and a rerun trial resumes from it wherever Ray places it). On the first
# machine (the *head*; its address is ``HEAD_IP``), then on every other machine:
#
# .. code-block:: bash
#
#     ray start --head --port 6379 --num-cpus 32         # on the head
#     ray start --address HEAD_IP:6379 --num-cpus 32     # on every other machine
#     ray status --address HEAD_IP:6379                  # the machines and CPUs the cluster has
#
# Then, from any machine of the cluster, with the sweep's folder on shared storage:
#
# .. code-block:: bash
#
#     mutomo sweep configs/waste_block_sweep.toml --address HEAD_IP:6379 --output /shared/wb_sweep
#
# Each trial is one Ray task of one CPU (torch with one thread), so the cluster runs as many trials
# at once as it has CPUs; ``--workers`` applies only to a local Ray. ``--address auto`` joins the
# cluster the machine belongs to; a ``ray://HOST:10001`` address (Ray Client) needs
# ``pip install "ray[client]"``. An address at which no Ray answers is refused within seconds,
# before any trial starts. If ``ray start --head`` turned on token authentication (it does when a
# token exists in ``~/.ray/auth_token``), the machine that runs ``mutomo sweep`` needs the head's
# token: ``ray get-auth-token`` on the head prints it; give it as ``RAY_AUTH_MODE=token`` and
# ``RAY_AUTH_TOKEN=<token>``, or in ``~/.ray/auth_token``. If the sweep is interrupted, or a machine
# is lost, give the same command again: it finishes only what is missing. Afterwards:
#
# .. code-block:: bash
#
#     ray stop                                           # on every machine
#
# A near-optimal design of a sweep is a design file: judge it on held-out volumes before trusting
# it, e.g. ``mutomo evaluate /shared/wb_sweep/designs/best.json --config
# configs/waste_block_holdout.toml``.
