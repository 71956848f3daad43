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


def predicted_vs_true(path: Path, evaluations: dict[str, dict[str, Any]]) -> Path:
    fig, ax = plt.subplots(figsize=(5.5, 5))
    lo = min(min(e["targets"]) for e in evaluations.values())
    hi = max(max(e["targets"]) for e in evaluations.values())
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    for i, (name, e) in enumerate(evaluations.items()):
        t = np.array(e["targets"]) + 0.012 * (i - len(evaluations) / 2)
        ax.plot(t, e["predictions"], ".", alpha=0.6, label=f"{name} (MSE {e['mse']:.2e})")
    ax.set(xlabel="true value", ylabel="predicted (bias-corrected)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def _embed(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(path.stem)}">'


def write_report(run_dir: Path, volume_box: tuple[float, ...], extra_figures: list[Path] | None = None) -> Path:
    """Make every figure from the run directory's files and bundle them into ``report.html``."""
    run_dir = Path(run_dir)
    fig_dir = run_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    history = json.loads((run_dir / "history.json").read_text())
    evaluations = json.loads((run_dir / "evaluations.json").read_text())
    timing = json.loads((run_dir / "timing.json").read_text()) if (run_dir / "timing.json").exists() else {}
    designs = {"initial": evaluations["initial"]["design"], "optimised": evaluations["optimised"]["design"]}
    designs.update({k: v["design"] for k, v in evaluations.items() if k not in ("initial", "optimised")})
    figures = [
        detector_views(fig_dir / "detector.png", designs, volume_box),
        loss_curves(fig_dir / "loss.png", history),
        parameter_trajectories(fig_dir / "parameters.png", history),
        predicted_vs_true(fig_dir / "predicted_vs_true.png", evaluations),
        *(extra_figures or []),
    ]
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{e['mse']:.3e} &plusmn; {e['mse_error']:.1e}</td>"
        f"<td>{e['design']['cost']:.0f}</td><td>{len(e['targets'])} x {e['n_muons']}</td></tr>"
        for name, e in evaluations.items()
    )
    config = html.escape((run_dir / "config.json").read_text())
    train_s, total_s = timing.get("training_seconds", float("nan")), timing.get("total_seconds", float("nan"))
    body = f"""<!doctype html><html><head><meta charset="utf-8"><title>mutomo run report</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:auto}}img{{max-width:100%}}
td,th{{padding:4px 10px;border-bottom:1px solid #ccc}}</style></head><body>
<h1>mutomo optimisation report</h1>
<p>Run directory: {html.escape(str(run_dir))}. Epochs: {len(history)}.
Training time: {train_s:.0f} s; whole run: {total_s:.0f} s.</p>
<h2>Metrics (bias-corrected mean squared error on the test volumes)</h2>
<table><tr><th>design</th><th>MSE</th><th>cost</th><th>volumes x muons</th></tr>{rows}</table>
<h2>Figures</h2>{"".join(f"<h3>{html.escape(p.stem)}</h3>{_embed(p)}" for p in figures)}
<h2>Configuration</h2><pre>{config}</pre></body></html>"""
    out = run_dir / "report.html"
    out.write_text(body)
    return out
