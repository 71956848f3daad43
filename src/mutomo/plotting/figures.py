"""The figures of an optimisation run: detector views, training curves, the task's own figure.

Every axis names its quantity and unit (``(dimensionless)`` for ratios, ``(count)`` for
counts), every figure with several lines has a legend naming each, and each is written as PNG
and SVG (:func:`~mutomo.plotting.style.save_figure`). Inputs are the run directory's JSON
records (see :mod:`mutomo.app.run`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from mutomo.plotting.style import paper_style, save_figure  # noqa: E402

ABOVE, BELOW, VOLUME = "tab:blue", "tab:green", "tab:orange"
EPOCH = "epoch (count)"
DIMENSIONLESS = "(dimensionless)"


def _epoch_axis(ax: Axes) -> None:
    """Label the x axis as epochs, with whole-number ticks."""
    ax.set_xlabel(EPOCH)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


# ---------------------------------------------------------------------------- detector views
def grid_columns(n: int, most: int = 3) -> int:
    """Columns for ``n`` panels, at most ``most`` a row, rows as evenly filled as possible.

    Example:
        >>> [grid_columns(n) for n in (1, 2, 3, 4, 5, 7)]
        [1, 2, 3, 2, 3, 3]
    """
    return math.ceil(n / math.ceil(n / most))


def _panel_extents(design: dict[str, Any]) -> np.ndarray:
    """``(panel, 6)``: x0, x1, y0, y1, z, z of each panel of a design description (square
    ``span`` sides, or ``span_xy`` for rectangular panels such as a hodoscope's)."""
    xy, z = np.asarray(design["xy"]), np.asarray(design["z"])
    span = (
        np.asarray(design["span_xy"]) if "span_xy" in design else np.repeat(np.asarray(design["span"])[:, None], 2, 1)
    )
    half = span / 2
    return np.stack(
        [xy[:, 0] - half[:, 0], xy[:, 0] + half[:, 0], xy[:, 1] - half[:, 1], xy[:, 1] + half[:, 1], z, z], 1
    )


def _common_limits(designs: dict[str, dict[str, Any]], box: tuple[float, ...]) -> list[tuple[float, float]]:
    """x, y and z limits that hold the volume and every panel of every design, with a margin."""
    points = np.concatenate([np.asarray(box)[None], *(_panel_extents(d) for d in designs.values())])
    limits = []
    for axis in range(3):
        lo, hi = points[:, 2 * axis : 2 * axis + 2].min(), points[:, 2 * axis : 2 * axis + 2].max()
        pad = 0.05 * (hi - lo) + 1e-3
        limits.append((float(lo - pad), float(hi + pad)))
    return limits


def _detector_legend(ax: Axes) -> None:
    handles = [
        Patch(color=VOLUME, alpha=0.3, label="scanned volume"),
        Line2D([], [], color=ABOVE, lw=2, label="panels above"),
        Line2D([], [], color=BELOW, lw=2, ls="--", label="panels below"),
    ]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)


def _draw_design(side: Axes, top: Axes, name: str, design: dict[str, Any], box: tuple[float, ...]) -> None:
    x0, x1, y0, y1, z0, z1 = box
    side.add_patch(Rectangle((x0, z0), x1 - x0, z1 - z0, color=VOLUME, alpha=0.3))
    top.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, color=VOLUME, alpha=0.3))
    for i, (px0, px1, py0, py1, z, _) in enumerate(_panel_extents(design)):
        colour, style = (ABOVE, "-") if i < design["n_above"] else (BELOW, "--")
        side.plot([px0, px1], [z, z], color=colour, ls=style, lw=2)
        top.add_patch(Rectangle((px0, py0), px1 - px0, py1 - py0, fill=False, edgecolor=colour, ls=style, lw=1.2))
    side.set(xlabel="x (m)", ylabel="z (m)")
    top.set(xlabel="x (m)", ylabel="y (m)", aspect="equal")
    side.set_title(f"{name}: side view", fontsize=9)
    top.set_title(f"{name}: top view", fontsize=9)
    _detector_legend(side)  # one legend a design, between its two views


@paper_style
def detector_views(path: Path, designs: dict[str, dict[str, Any]], volume_box: tuple[float, ...]) -> Path:
    """Side (x-z) and top (x-y) views of each design over the volume box (x0, x1, y0, y1, z0, z1),
    on common axes; at most three designs a row, each design's top view under its side view."""
    n = len(designs)
    cols = grid_columns(n)
    rows = 2 * math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(min(4.4 * cols, 11.0), 3.9 * rows), squeeze=False)
    (xlim, ylim, zlim) = _common_limits(designs, volume_box)
    for k, (name, design) in enumerate(designs.items()):
        side, top = _design_axes(axes, k, cols)
        _draw_design(side, top, name, design, volume_box)
        side.set(xlim=xlim, ylim=zlim)
        top.set(xlim=xlim, ylim=ylim)
    for k in range(n, rows // 2 * cols):  # the empty places of the last row
        for ax in _design_axes(axes, k, cols):
            ax.set_visible(False)
    return save_figure(fig, path)


def _design_axes(axes: np.ndarray, k: int, cols: int) -> tuple[Axes, Axes]:
    """Side and top view axes of design ``k`` in a grid of ``cols`` designs a row."""
    row, col = 2 * (k // cols), k % cols
    return axes[row, col], axes[row + 1, col]


# ---------------------------------------------------------------------------- training curves
@paper_style
def loss_curves(path: Path, history: list[dict[str, Any]]) -> Path:
    """Training (and validation) loss per epoch, and the detector's cost against its budget."""
    epochs = [r["epoch"] for r in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(epochs, [r["loss"]["task"] for r in history], lw=0.8, label="training task loss (this epoch's volumes)")
    val = [(r["epoch"], r["validation"]) for r in history if r["validation"] is not None]
    if val:
        a.plot(*zip(*val, strict=True), "o-", label="validation loss (fixed volumes)")
    if any(r["loss"]["budget"] for r in history):
        a.plot(epochs, [r["loss"]["budget"] for r in history], lw=0.8, label="budget penalty")
    a.set(ylabel=f"loss {DIMENSIONLESS}", yscale="log", title="Loss")
    a.legend()
    cost = np.array([r["loss"]["cost"] for r in history])
    b.plot(epochs, cost, lw=2.5, label="detector cost")
    budgets = [r["design"].get("budget") for r in history]
    if all(v is not None for v in budgets):
        b.plot(epochs, budgets, "k--", lw=1, label="budget")
    b.ticklabel_format(useOffset=False, axis="y")
    if np.ptp(cost) < 1e-4 * abs(cost.mean()):  # fixed budget: float noise only
        b.set_ylim(0.9 * cost.mean(), 1.1 * cost.mean())
    b.set(ylabel="detector cost (units of account)", title="Detector cost")
    for ax in (a, b):
        _epoch_axis(ax)
    b.legend()
    return save_figure(fig, path)


PARAMETERS = (  # key, column, y label, title, scale to the plotted unit
    ("z", None, "z (m)", "panel height", 1.0),
    ("xy", 0, "x (m)", "panel centre x", 1.0),
    ("xy", 1, "y (m)", "panel centre y", 1.0),
    ("span", None, "side length (m)", "panel side length", 1.0),
    ("resolution", None, "resolution (µm)", "panel resolution", 1e6),
    ("efficiency", None, f"efficiency {DIMENSIONLESS}", "panel efficiency", 1.0),
)


def panel_names(n_above: int, n_panels: int) -> list[str]:
    """``above 1 ... above n, below 1 ...`` in the design's panel order.

    Example:
        >>> panel_names(2, 3)
        ['above 1', 'above 2', 'below 1']
    """
    return [f"above {i + 1}" if i < n_above else f"below {i - n_above + 1}" for i in range(n_panels)]


def _parameter_series(history: list[dict[str, Any]]) -> list[tuple[np.ndarray, str, str]]:
    """``(values (epoch, panel), y label, title)`` of each plotted parameter; resolution and
    efficiency only where they change."""
    series = []
    for key, column, label, title, scale in PARAMETERS:
        if key not in history[0]["design"]:
            continue
        values = np.array([r["design"][key] for r in history], dtype=float) * scale
        values = values[..., column] if column is not None else values
        if key in ("resolution", "efficiency") and np.ptp(values) == 0:
            continue
        series.append((values, label, title))
    return series


@paper_style
def parameter_trajectories(path: Path, history: list[dict[str, Any]]) -> Path:
    """Each panel's parameters per epoch: one colour per panel (solid above the volume, dashed
    below), named in one legend for all plots."""
    epochs = [r["epoch"] for r in history]
    series = _parameter_series(history)
    n_panels = series[0][0].shape[1]
    names = panel_names(history[0]["design"]["n_above"], n_panels)
    rows = math.ceil(len(series) / 2)
    fig, axes = plt.subplots(rows, 2, figsize=(10, 3.2 * rows), squeeze=False)
    for ax, (values, label, title) in zip(axes.flat, series, strict=False):
        for i, name in enumerate(names):
            style = "-" if name.startswith("above") else "--"
            ax.plot(epochs, values[:, i], color=f"C{i % 10}", ls=style, lw=1.2, label=name)
        ax.set(ylabel=label, title=title)
        _epoch_axis(ax)
    for ax in axes.flat[len(series) :]:
        ax.set_visible(False)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", title="panel")
    return save_figure(fig, path)


# ---------------------------------------------------------------------------- task figures
@paper_style
def predicted_vs_true(path: Path, answers: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    """Regression: calibrated answer against the truth on the test volumes, per design
    (``answers[name] = (truth, answer)`` in m)."""
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    lo, hi = np.inf, -np.inf
    for i, (name, (truth, pred)) in enumerate(answers.items()):
        mse = float(np.mean((pred - truth) ** 2))
        ax.plot(truth + 0.008 * (i - len(answers) / 2), pred, ".", alpha=0.6, label=f"{name} (MSE {mse:.2e} m²)")
        lo, hi = min(lo, truth.min()), max(hi, truth.max())
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="perfect answer")
    ax.set(
        xlabel="true fill height (m)",
        ylabel="calibrated fill-height answer (m)",
        title="Fill height on the test volumes (physical readout)",
    )
    ax.legend()
    return save_figure(fig, path)


def roc_curve(label: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False-alarm rate and detection efficiency at every threshold (score >= t flags presence),
    from (0, 0) up."""
    label = label.astype(bool)
    thresholds = np.sort(np.unique(score))[::-1]
    tpr = [(score[label] >= t).mean() for t in thresholds]
    fpr = [(score[~label] >= t).mean() for t in thresholds]
    return np.array([0.0, *fpr]), np.array([0.0, *tpr])


@paper_style
def roc_and_scores(path: Path, scores: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    """Presence: ROC curves of every design (left), and each design's score distributions with
    and without the object as two filled histograms in its own small panel (right; one panel a
    design, on a common score axis) (``scores[name] = (labels, score)``)."""
    n = len(scores)
    fig = plt.figure(figsize=(10.5, max(4.8, 1.9 * n + 1.2)))
    grid = fig.add_gridspec(n, 2, width_ratios=(1.1, 1.0))
    roc = fig.add_subplot(grid[:, 0])
    everything = np.concatenate([s for _, s in scores.values()])
    bins = np.linspace(everything.min(), everything.max() + 1e-9, 30).tolist()
    hists: list[Axes] = []
    for k, (name, (label, score)) in enumerate(scores.items()):
        roc.plot(*roc_curve(label, score), drawstyle="steps-post", label=name)
        hist = fig.add_subplot(grid[k, 1], sharex=hists[0] if hists else None)
        hists.append(hist)
        label = label.astype(bool)
        hist.hist(score[~label], bins=bins, color="tab:blue", alpha=0.55, label="without the object")
        hist.hist(score[label], bins=bins, color="tab:orange", alpha=0.55, label="with the object")
        hist.set_ylabel("test volumes (count)")
        hist.set_title(name, loc="left")
        if k < n - 1:
            hist.xaxis.set_visible(False)  # the common score axis is labelled under the last panel
    roc.plot([0, 1], [0, 1], "k:", lw=1, label="chance")
    roc.set(
        xlabel=f"false-alarm rate {DIMENSIONLESS}",
        ylabel=f"detection efficiency {DIMENSIONLESS}",
        title="ROC (physical readout)",
    )
    roc.legend()
    hists[-1].set_xlabel(f"presence score {DIMENSIONLESS}")
    hists[0].legend(loc="upper right")
    return save_figure(fig, path)
