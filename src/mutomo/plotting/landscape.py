"""Figures of a landscape (``landscape.json``, :mod:`mutomo.studies.landscape`): the distinct
near-optimal designs side by side, their metric against cost, and the budget front or the
module-count front."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

from mutomo.plotting.landscape_report import write_landscape_report

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mutomo.plotting.figures import detector_views  # noqa: E402
from mutomo.plotting.style import paper_style, save_figure  # noqa: E402

HUMAN_MARKERS = ("*", "P", "X", "D", "^", "v")


#: Units of the task metrics on an axis (regression: the fill height's, in m).
METRIC_UNITS = {"mse": "m$^2$", "exposure_to_goal_s": "s"}


def _value(pair: list[float | None]) -> tuple[float, float]:
    v, e = pair
    return (np.nan if v is None else float(v)), (np.nan if e is None else float(e))


def landscape_views(path: Path, landscape: dict[str, Any], volume_box: tuple[float, ...], most: int = 6) -> Path:
    """Side and top views of the near-optimal distinct designs (best first, at most ``most``),
    then the human designs, on common axes; each titled with its metric and standard error."""
    designs: dict[str, dict[str, Any]] = {}
    name = landscape["metric"]["name"]
    unit = f" {METRIC_UNITS[name]}" if name in METRIC_UNITS else ""
    near = [c for c in landscape["clusters"] if c["near_optimal"]]
    near.sort(key=lambda c: c["worse_than_best"][0] if c["worse_than_best"][0] is not None else np.inf)
    for c in near[:most]:
        v, e = _value(c["metric"])
        label = f"group {c['id']} (x{c['size']}), {v:.3g}±{e:.1g}{unit}"
        designs[label] = landscape["starts"][c["representative"]]["design"]
    for human, h in landscape["humans"].items():
        v, e = _value(h["metric"])
        designs[f"{human}, {v:.3g}±{e:.1g}{unit}"] = h["design"]
    return detector_views(path, designs, volume_box)


def metric_label(metric: dict[str, Any]) -> str:
    """Axis label of a landscape metric: name, unit where it has one, readout."""
    unit = METRIC_UNITS.get(metric["name"])
    return f"{metric['name']} ({unit + ', ' if unit else ''}{metric['readout']} readout)"


@paper_style
def metric_vs_cost(path: Path, landscape: dict[str, Any]) -> Path:
    """Left: every start's metric against its cost (error bars: standard errors; the distinct
    designs' best members filled, near-optimal ones in colour), the human designs as stars.
    Right: the distinct designs ranked by their paired difference to the best, with the
    tolerance, and the human designs' paired differences."""
    m = landscape["metric"]
    label = metric_label(m)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11.0, 4.2))
    reps = {c["representative"]: c for c in landscape["clusters"]}
    costs = np.array([s["cost"] for s in landscape["starts"]] + [h["cost"] for h in landscape["humans"].values()])
    mean_cost = float(costs.mean())
    fixed = float(costs.max() - costs.min()) <= 1e-3 * abs(mean_cost)
    # Under a fixed budget every design costs the same: spread the points by 1 % for legibility.
    offsets = np.linspace(-0.01, 0.01, len(costs)) * mean_cost if fixed else np.zeros(len(costs))
    for i, s in enumerate(landscape["starts"]):
        v, e = _value(s["metric"])
        c = reps.get(i)
        colour = "tab:red" if c is not None and c["near_optimal"] else "0.5"
        left.errorbar(
            s["cost"] + offsets[i], v, yerr=e, fmt="o" if c is not None else ".", color=colour, alpha=0.8, capsize=2
        )
    n = len(landscape["starts"])
    for k, (name, h) in enumerate(landscape["humans"].items()):
        v, e = _value(h["metric"])
        left.errorbar(h["cost"] + offsets[n + k], v, yerr=e, fmt=HUMAN_MARKERS[k % 6], ms=10, capsize=3, label=name)
    if fixed:
        left.set_xlim(0.95 * mean_cost, 1.05 * mean_cost)
        left.ticklabel_format(axis="x", useOffset=False)
        left.text(
            0.02,
            0.98,
            f"fixed budget: every design costs {mean_cost:.5g}\n(points spread by 1 % for legibility)",
            transform=left.transAxes,
            va="top",
            fontsize=8,
        )
    left.plot([], [], "o", color="tab:red", label="near-optimal distinct design")
    left.plot([], [], "o", color="0.5", label="other distinct design")
    left.plot([], [], ".", color="0.5", label="other start")
    left.set(xlabel="cost (units of account)", ylabel=label, title="every start and the human designs")
    left.legend(fontsize=8)
    clusters = sorted(
        landscape["clusters"],
        key=lambda c: c["worse_than_best"][0] if c["worse_than_best"][0] is not None else np.inf,
    )
    for r, c in enumerate(clusters):
        v, e = _value(c["worse_than_best"])
        right.errorbar(r, v, yerr=e, fmt="o", color="tab:red" if c["near_optimal"] else "0.5", capsize=2)
    for k, (name, h) in enumerate(landscape["humans"].items()):
        v, e = _value(h["worse_than_best"])
        right.axhspan(v - e, v + e, alpha=0.15, color=f"C{k}")
        right.axhline(v, color=f"C{k}", ls=":", label=f"{name} (+- 1 s.e.)")
    best = _value(landscape["starts"][landscape["best"]]["metric"])[0]
    fraction = landscape["settings"]["tolerance_fraction"]
    if fraction is not None:
        right.axhline(fraction * abs(best), color="k", ls="--", lw=1, label=f"{fraction:.0%} of the best")
    right.axhline(0.0, color="k", lw=0.8)
    unmeasured = sum(1 for s in landscape["starts"] if s["metric"][0] is None)
    if unmeasured:
        right.text(
            0.98,
            0.02,
            f"{unmeasured} of {len(landscape['starts'])} starts have no metric\n(the physical readout tracks no muon)",
            transform=right.transAxes,
            ha="right",
            fontsize=8,
        )
    right.set(
        xlabel="distinct design, ranked (count)",
        ylabel=f"worse than the best, paired: {label}",
        title="distinct designs against the best (same volumes and muons)",
    )
    right.legend(fontsize=8)
    return save_figure(fig, path)


@paper_style
def front_figure(path: Path, front: dict[str, Any]) -> Path:
    """The best metric reached at each budget (error bars: standard errors; every start as a dot),
    the human designs at their own costs; on a module-count front each point is at its cost (K x
    the module's price) and labelled with K, the human points the tiled placements."""
    m = front["metric"]
    modules = front.get("axis") == "modules"
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    budgets = [p["budget"] for p in front["budgets"]]
    best = np.array([_value(p["metric"]) for p in front["budgets"]])
    for p in front["budgets"]:
        starts = np.array([_value(s)[0] for s in p["starts"]])
        ax.plot([p["budget"]] * len(starts), starts, ".", color="0.6")
    ax.plot([], [], ".", color="0.6", label="each start")
    ax.errorbar(budgets, best[:, 0], yerr=best[:, 1], fmt="o", color="tab:red", capsize=3, label="best start")
    for p in front["budgets"] if modules else []:
        ax.annotate(
            f"K={p['modules']}", (p["budget"], 0.0), xycoords=("data", "axes fraction"), ha="center", va="bottom"
        )
    if "envelope" in front:
        ax.step(budgets, front["envelope"], where="post", color="tab:red", lw=1, label="best at this budget or less")
    for k, (name, h) in enumerate(front["humans"].items()):
        if "metric" in h:  # a design as given (not a rule applied at every point)
            v, e = _value(h["metric"])
            ax.errorbar(h["cost"], v, yerr=e, fmt=HUMAN_MARKERS[k % 6], ms=10, capsize=3, color=f"C{k}", label=name)
        scaled = h.get("scaled", [])
        if scaled:
            pts = np.array([[s["cost"], *_value(s["metric"])] for s in scaled])
            ax.errorbar(
                pts[:, 0] * (1 + 0.02 * (k + 1)),
                pts[:, 1],
                yerr=pts[:, 2],
                fmt=HUMAN_MARKERS[k % 6] + ":",
                ms=6,
                capsize=2,
                color=f"C{k}",
                alpha=0.7,
                label=name if modules else f"{name} scaled to each budget",
            )
    ax.set(
        xscale="log",
        xlabel="cost: K modules x the module's price (units of account)" if modules else "budget (units of account)",
        ylabel=metric_label(m),
        title="performance against the number of modules" if modules else "performance against budget",
    )
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def write_landscape_figures(folder: Path, landscape: dict[str, Any], volume_box: tuple[float, ...]) -> list[Path]:
    """Every figure of a landscape under ``folder/figures/`` (the near-optimal designs' views,
    metric against cost and, when it has one, the budget front) and ``folder/report.html``
    (:mod:`mutomo.plotting.landscape_report`); returns the figures and the report."""

    figures = folder / "figures"
    out = [
        landscape_views(figures / "landscape_views.png", landscape, volume_box),
        metric_vs_cost(figures / "metric_vs_cost.png", landscape),
    ]
    if "front" in landscape:
        name = "module_front" if landscape["front"].get("axis") == "modules" else "budget_front"
        out.append(front_figure(figures / f"{name}.png", landscape["front"]))
    return [*out, write_landscape_report(folder, landscape, out)]
