"""Figures of an optimisation run and a single HTML report bundling them with the metrics.

Reads only the run directory's files (see :mod:`mutomo.optimise.run`); never imported by physics code.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def detector_views(path: Path, designs: dict[str, dict[str, Any]], volume_box: tuple[float, ...]) -> Path:
    """Side (x-z) and top (x-y) views of each design over the volume box (x0, x1, y0, y1, z0, z1)."""
    x0, x1, y0, y1, z0, z1 = volume_box
    fig, axes = plt.subplots(2, len(designs), figsize=(4.2 * len(designs), 8), squeeze=False)
    for col, (name, d) in enumerate(designs.items()):
        side, top = axes[0, col], axes[1, col]
        side.add_patch(Rectangle((x0, z0), x1 - x0, z1 - z0, color="tab:orange", alpha=0.3, label="volume"))
        top.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, color="tab:orange", alpha=0.3))
        for i, ((x, y), z, s) in enumerate(zip(d["xy"], d["z"], d["span"], strict=True)):
            colour = "tab:blue" if i < d["n_above"] else "tab:green"
            side.plot([x - s / 2, x + s / 2], [z, z], color=colour, lw=2)
            top.add_patch(Rectangle((x - s / 2, y - s / 2), s, s, fill=False, edgecolor=colour, lw=1))
        if col == 0:
            side.plot([], [], color="tab:blue", lw=2, label="panel above")
            side.plot([], [], color="tab:green", lw=2, label="panel below")
            side.legend(fontsize=8, loc="best")
        side.set(title=f"{name}: side view", xlabel="x (m)", ylabel="z (m)")
        top.set(title=f"{name}: top view", xlabel="x (m)", ylabel="y (m)", aspect="equal")
        top.autoscale_view()
        side.autoscale_view()
    return _save(fig, path)


def loss_curves(path: Path, history: list[dict[str, Any]]) -> Path:
    epochs = [r["epoch"] for r in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.plot(epochs, [r["loss"]["task"] for r in history], lw=0.8, label="training task loss")
    val = [(r["epoch"], r["validation"]) for r in history if r["validation"] is not None]
    if val:
        a.plot(*zip(*val, strict=True), "o-", label="validation")
    if any(r["loss"]["budget"] for r in history):
        a.plot(epochs, [r["loss"]["budget"] for r in history], lw=0.8, label="budget penalty")
    a.set(xlabel="epoch", ylabel="loss", yscale="log")
    a.legend()
    cost = np.array([r["loss"]["cost"] for r in history])
    b.plot(epochs, cost)
    b.ticklabel_format(useOffset=False, axis="y")
    if np.ptp(cost) < 1e-4 * abs(cost.mean()):  # fixed budget: float noise only
        b.set_ylim(0.9 * cost.mean(), 1.1 * cost.mean())
    b.set(xlabel="epoch", ylabel="detector cost")
    return _save(fig, path)


def parameter_trajectories(path: Path, history: list[dict[str, Any]]) -> Path:
    epochs = [r["epoch"] for r in history]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8))
    for key, ax, label in (("z", axes[0], "z (m)"), ("span", axes[3], "span (m)")):
        values = np.array([r["design"][key] for r in history])
        ax.plot(epochs, values, lw=1)
        ax.set(xlabel="epoch", ylabel=label)
    xy = np.array([r["design"]["xy"] for r in history])
    axes[1].plot(epochs, xy[:, :, 0], lw=1)
    axes[1].set(xlabel="epoch", ylabel="x (m)")
    axes[2].plot(epochs, xy[:, :, 1], lw=1)
    axes[2].set(xlabel="epoch", ylabel="y (m)")
    return _save(fig, path)


def predicted_vs_true(path: Path, answers: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    """Regression: calibrated answer against the truth on the test volumes, per design
    (``answers[name] = (truth, answer)`` in m)."""
    fig, ax = plt.subplots(figsize=(5.8, 5))
    lo, hi = np.inf, -np.inf
    for i, (name, (truth, pred)) in enumerate(answers.items()):
        mse = float(np.mean((pred - truth) ** 2))
        ax.plot(truth + 0.008 * (i - len(answers) / 2), pred, ".", alpha=0.6, label=f"{name} (MSE {mse:.2e} m²)")
        lo, hi = min(lo, truth.min()), max(hi, truth.max())
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="perfect answer")
    ax.set(xlabel="true fill height (m)", ylabel="calibrated answer (m)", title="physical readout")
    ax.legend(fontsize=8)
    return _save(fig, path)


def roc_and_scores(path: Path, scores: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    """Presence: ROC curves and score distributions with and without the object, per design
    (``scores[name] = (labels, score)``)."""
    fig, (roc, hist) = plt.subplots(1, 2, figsize=(11, 4.4))
    for name, (label, score) in scores.items():
        label = label.astype(bool)
        thresholds = np.sort(np.unique(score))[::-1]
        tpr = [(score[label] >= t).mean() for t in thresholds]
        fpr = [(score[~label] >= t).mean() for t in thresholds]
        (line,) = roc.plot([0, *fpr], [0, *tpr], drawstyle="steps-post", label=name)
        bins = np.linspace(score.min(), score.max() + 1e-9, 30)
        hist.hist(score[label], bins=bins, histtype="step", color=line.get_color(), label=f"{name}: with object")
        hist.hist(score[~label], bins=bins, histtype="step", ls="--", color=line.get_color(), label=f"{name}: without")
    roc.plot([0, 1], [0, 1], "k:", lw=1, label="chance")
    roc.set(xlabel="false-alarm rate", ylabel="detection efficiency", title="ROC (physical readout)")
    roc.legend(fontsize=8)
    hist.set(xlabel="presence score (smooth max of voxel z-scores)", ylabel="test volumes", title="score distributions")
    hist.legend(fontsize=7)
    return _save(fig, path)


CAPTIONS = {
    "detector": "Side (x-z) and top (x-y) views of each design: panels above the volume in blue, below in green, "
    "the scanned volume in orange.",
    "loss": "Left: training loss per epoch and the validation loss on fixed volumes. Right: the detector's cost.",
    "parameters": "Trajectories of the panel parameters during training, one line per panel.",
    "predicted_vs_true": "Regression on the test volumes (physical readout): the answer after the calibration line "
    "fitted on calibration volumes, against the truth; points are shifted sideways per design for legibility.",
    "presence": "Presence on the test volumes (physical readout): ROC curve and the distributions of the "
    "presence score with and without the object, per design.",
    "x0_slices": "Inferred radiation length in slices of a test volume seen by the optimised design, beside the "
    "truth; grey voxels were not measured.",
}


def _embed(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    caption = html.escape(CAPTIONS.get(path.stem, ""))
    image = f'<img src="data:image/png;base64,{data}" alt="{html.escape(path.stem)}">'
    return f"<figure>{image}<figcaption>{caption}</figcaption></figure>"


def _fmt(value: list[float | None]) -> str:
    v, e = value
    if v is None:
        return "not reached"
    return f"{v:.4g} &plusmn; {e:.2g}" if e is not None else f"{v:.4g}"


def _metric_table(entries: dict[str, dict[str, Any]], readouts: list[str]) -> str:
    metrics = sorted({m for e in entries.values() for r in readouts for m in e.get(r, {})})
    head = "".join(f"<th>{html.escape(r)}: {html.escape(m)}</th>" for r in readouts for m in metrics)
    rows = ""
    for name, e in entries.items():
        cells = "".join(f"<td>{_fmt(e[r][m]) if m in e.get(r, {}) else ''}</td>" for r in readouts for m in metrics)
        cost = f"<td>{e['design']['cost']:.0f}</td>" if "design" in e else "<td></td>"
        rows += f"<tr><td>{html.escape(name)}</td>{cost}{cells}</tr>"
    return f"<table><tr><th>design</th><th>cost</th>{head}</tr>{rows}</table>"


def write_report(run_dir: Path, volume_box: tuple[float, ...], extra_figures: list[Path] | None = None) -> Path:
    """Make the figures every run has from the run directory's files and bundle them, with
    ``extra_figures`` (the task's own, made by the caller), into ``report.html``."""
    run_dir = Path(run_dir)
    fig_dir = run_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    history = json.loads((run_dir / "history.json").read_text())
    evaluations = json.loads((run_dir / "evaluations.json").read_text())
    timing = json.loads((run_dir / "timing.json").read_text()) if (run_dir / "timing.json").exists() else {}
    entries = evaluations["designs"]
    designs = {name: e["design"] for name, e in entries.items()}
    figures = [
        detector_views(fig_dir / "detector.png", designs, volume_box),
        loss_curves(fig_dir / "loss.png", history),
        parameter_trajectories(fig_dir / "parameters.png", history),
        *(extra_figures or []),
    ]
    readouts = evaluations["readouts"]
    config = html.escape((run_dir / "config.json").read_text())
    train_s, total_s = timing.get("training_seconds", float("nan")), timing.get("total_seconds", float("nan"))
    task = evaluations["task"]
    oracle = " (an oracle: real detectors do not know it)" if task["momentum"] == "true" else ""
    body = f"""<!doctype html><html><head><meta charset="utf-8"><title>mutomo run report</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:auto}}img{{max-width:100%}}
td,th{{padding:4px 10px;border-bottom:1px solid #ccc;font-size:90%}}figcaption{{color:#444;margin-bottom:1.5em}}</style>
</head><body>
<h1>mutomo optimisation report</h1>
<p>Run directory: {html.escape(str(run_dir))}. Epochs: {len(history)}.
Training time: {train_s:.0f} s; whole run: {total_s:.0f} s.</p>
<p>Task: {html.escape(task["kind"])} with {html.escape(task["inference"])}; momentum used by the reconstruction:
{html.escape(task["momentum"])}{oracle}; {task["muons_per_volume"]} muons ({task["exposure_s"]:.3g} s of exposure) per
test volume. <b>physical</b> readouts have hard panel edges, hits drawn with the panel efficiency and a trigger
(<i>physical</i>: 2 hits a side; <i>physical_minK</i>: K; <i>physical_all</i>: every panel); <b>smooth</b> is the
relaxation used in training.</p>
<h2>Metrics on the test volumes (value &plusmn; statistical error)</h2>{_metric_table(entries, readouts)}
<h2>Paired differences (same volumes and muons)</h2>{_metric_table(evaluations["paired"], readouts)}
<h2>Figures</h2>{"".join(f"<h3>{html.escape(p.stem)}</h3>{_embed(p)}" for p in figures)}
<h2>Configuration</h2><pre>{config}</pre></body></html>"""
    out = run_dir / "report.html"
    out.write_text(body)
    return out
