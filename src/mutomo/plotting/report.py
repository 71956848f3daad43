"""The HTML report of an optimisation run: metrics tables and every figure with a caption.

Reads only the run directory's files (see :mod:`mutomo.app.run`); never imported by physics
code. Each figure is embedded as PNG and linked as SVG (vector, for a paper) beside it.
"""

from __future__ import annotations

import base64
import html
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mutomo.optimise.evaluate import REFERENCE_DESIGNS
from mutomo.optimise.metric_text import metric_label, round_to_error, value_text
from mutomo.optimise.verdict import WIN_SIGMAS, chance_lines, statistic_lines, systematics_envelope, systematics_lines
from mutomo.optimise.verdict import headline as headline_readout
from mutomo.plotting.figures import detector_views, loss_curves, parameter_trajectories
from mutomo.plotting.style import PNG_DPI, svg_path

SCREEN_PPI = 100  # CSS pixels per figure inch: a 10 pt font shows at ~14 px


@dataclass(frozen=True)
class ReportFigure:
    """A figure of the report: its PNG (an SVG of the same stem beside it), heading and caption."""

    path: Path
    heading: str
    caption: str


def _run_facts(run_dir: Path, evaluations: dict[str, Any]) -> dict[str, Any]:
    """What the captions quote about the run: designs, volumes, readouts, training settings."""
    config = json.loads((run_dir / "config.json").read_text())
    training, evaluation = config.get("training", {}), config.get("evaluation", {})
    return {
        "designs": ", ".join(evaluations["designs"]),
        "volumes_per_epoch": training.get("volumes_per_epoch", "?"),
        "validation_volumes": training.get("validation_volumes", "?"),
        "loss": config.get("task", {}).get("loss", evaluations["task"]["kind"]),
        "n_test": evaluation.get("n_volumes", "?"),
        "n_cal": evaluation.get("calibration_volumes", "?"),
        "momentum": evaluations["task"]["momentum"],
        "muons": evaluations["task"]["muons_per_volume"],
    }


def run_figures(run_dir: Path, volume_box: tuple[float, ...], evaluations: dict[str, Any]) -> list[ReportFigure]:
    """Draw the figures every run has (detector views, loss, parameters) into ``figures/``."""
    fig_dir = run_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    history = json.loads((run_dir / "history.json").read_text())
    designs = {name: e["design"] for name, e in evaluations["designs"].items()}
    facts = _run_facts(run_dir, evaluations)
    x0, x1, y0, y1, z0, z1 = volume_box
    box = f"x {x0:g} to {x1:g} m, y {y0:g} to {y1:g} m, z {z0:g} to {z1:g} m"
    return [
        ReportFigure(
            detector_views(fig_dir / "detector.png", designs, volume_box),
            "Detector designs",
            f"Where the panels of each evaluated design ({facts['designs']}) sit around the scanned volume ({box}), "
            "drawn to the same scale: side view (x-z) with the top view (x-y) under it. Panels above the volume are "
            "solid blue, panels below dashed green, the volume orange. 'optimised' is the design after training.",
        ),
        ReportFigure(
            loss_curves(fig_dir / "loss.png", history),
            "Training loss and detector cost",
            f"Left: the task loss ({facts['loss']}, dimensionless, log scale) of each training epoch on that epoch's "
            f"{facts['volumes_per_epoch']} freshly drawn volumes, and the validation loss on "
            f"{facts['validation_volumes']} fixed volumes, both with the training simulation. Right: the detector's "
            "cost (units of account of the cost model) during training, with the budget when it is fixed.",
        ),
        ReportFigure(
            parameter_trajectories(fig_dir / "parameters.png", history),
            "Panel parameters during training",
            "Every panel's parameters per epoch: height z, centre x and y, side length (m); resolution and "
            "efficiency where they were trained. One colour per panel, solid for panels above the volume, dashed "
            "below; 'above 1' is the design's first panel above the volume (the order of design_final.json).",
        ),
    ]


def _png_width(path: Path) -> int:
    """Pixel width from a PNG's header."""
    return int(struct.unpack(">I", path.read_bytes()[16:20])[0])


def _link(path: Path, run_dir: Path) -> str:
    """``path`` as the report links it: relative to the run directory when inside it."""
    try:
        return path.resolve().relative_to(run_dir.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_uri()


def _embed(number: int, figure: ReportFigure, run_dir: Path) -> str:
    """A numbered ``<figure>``: the PNG embedded at ~100 px per inch (never wider than the page),
    its caption, and links to the SVG and PNG files."""
    png = figure.path
    data = base64.b64encode(png.read_bytes()).decode()
    width = round(_png_width(png) * SCREEN_PPI / PNG_DPI)
    alt = html.escape(figure.heading)
    image = f'<img src="data:image/png;base64,{data}" alt="{alt}" width="{width}">'
    links = f'<a href="{_link(png, run_dir)}">PNG</a>'
    if svg_path(png).exists():
        links = f'<a href="{_link(svg_path(png), run_dir)}">SVG (vector)</a> &middot; {links}'
    caption = f"<b>Figure {number}.</b> {html.escape(figure.caption)} <span class=files>[{links}]</span>"
    return f'<figure id="{html.escape(png.stem)}"><h3>{alt}</h3>{image}<figcaption>{caption}</figcaption></figure>'


def _fmt(value: list[float | None]) -> str:
    """``[value, error]`` rounded to its error (the landscape report's tables)."""
    v, e = value
    if v is None:
        return "not reached"
    return html.escape(round_to_error(v, e))


def _metric_table(entries: dict[str, dict[str, Any]], readouts: list[str]) -> str:
    """Designs as rows, (readout, metric) as columns: headers with units, values rounded to their
    error, a missing value said in words."""
    metrics = sorted({m for e in entries.values() for r in readouts for m in e.get(r, {})})
    head = "".join(f"<th>{html.escape(r)}: {html.escape(metric_label(m))}</th>" for r in readouts for m in metrics)
    rows = ""
    for name, e in entries.items():
        cells = "".join(
            f"<td>{html.escape(value_text(m, e[r][m])) if m in e.get(r, {}) else ''}</td>"
            for r in readouts
            for m in metrics
        )
        if "design" not in e:
            cost = "<td></td>"
        elif name in REFERENCE_DESIGNS:  # a bound: what money cannot buy, so its price is not the point
            cost = f"<td>ignored ({e['design']['cost']:.2g})</td>"
        else:
            cost = f"<td>{e['design']['cost']:.0f}</td>"
        rows += f"<tr><td>{html.escape(name)}</td>{cost}{cells}</tr>"
    return f"<table><tr><th>design</th><th>cost (units of account)</th>{head}</tr>{rows}</table>"


def _percent(value: list[float | None]) -> str:
    """A share as a percentage rounded to its error (``undefined`` when there is none)."""
    v, e = value
    if v is None:
        return "undefined"
    return f"{html.escape(round_to_error(100 * v, None if e is None else 100 * e))} %"


def bounds_section(evaluations: dict[str, Any]) -> str:
    """The report's "how far from the best possible" section: each design's share of the possible
    gain over the start (:mod:`mutomo.studies.bounds`) on the headline readout, in a table and in
    words, and what measuring the momentum would add. Empty without bounds."""
    shares = evaluations.get("shares")
    if not shares:
        return ""
    headline = headline_readout(evaluations["readouts"])
    metrics = sorted({m for values in shares.values() for m in values.get(headline, {})})
    head = "".join(f"<th>share of the possible gain in {html.escape(metric_label(m))}</th>" for m in metrics)
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td>"
        + "".join(f"<td>{_percent(values[headline][m])}</td>" for m in metrics)
        + "</tr>"
        for name, values in shares.items()
        if name not in REFERENCE_DESIGNS[:1]
    )
    words = []
    for name in ("optimised", "best_validated"):
        if name in shares and metrics:
            m = metrics[0]
            words.append(
                f"The {name} design reaches {_percent(shares[name][headline][m])} of the gain in "
                f"{html.escape(metric_label(m))} that the ideal detector reaches over the start with this inference "
                "and exposure."
            )
    bounds = evaluations.get("bounds", {})
    momentum = evaluations["paired"].get("ideal_momentum - ideal", {}).get(headline)
    if momentum:
        resolution = bounds.get("momentum_resolution")
        changes = "; ".join(
            f"{html.escape(metric_label(m))} {html.escape(value_text(m, v))}" for m, v in momentum.items()
        )
        words.append(
            f"Measuring each muon's momentum to {100 * resolution:.3g} % would change the ideal detector's metrics by: "
            f"{changes} (ideal_momentum &minus; ideal, paired)."
        )
    return f"""<h2>How far from the best possible</h2>
<p>Each design's share of the possible gain over the start ({html.escape(str(bounds.get("start", "initial")))}):
(metric(design) &minus; metric(start)) / (metric(ideal) &minus; metric(start)), oriented so that 0 % is no better
than the start and 100 % as good as the <i>ideal</i> detector: panels as large as the region allows, spread over
its heights, at its best resolution and efficiency, cost ignored, seen through the same readout
({html.escape(headline)}) and inference. Errors from the paired differences (same volumes and muons). A share
above 100 % means a design beats the ideal detector: the inference gains from something other than more and
better-measured muons (e.g. where the panels sit), and the ideal is no bound for it. {" ".join(words)}</p>
<div class=table><table><tr><th>design</th>{head}</tr>{rows}</table></div>"""


def systematics_section(evaluations: dict[str, Any]) -> str:
    """The report's "does the win survive what we do not know" section: each comparison's paired
    difference of the headline metric under the nominal model and every systematic variation
    (same volumes and muons), with its significance, the envelope and the verdict in words.
    Empty without systematic variations."""
    record = evaluations.get("systematics")
    envelope = systematics_envelope(evaluations)
    if not record or not envelope:
        return ""
    metric, readout = record["metric"], record["readout"]
    label = html.escape(metric_label(metric))
    variations = record["variations"]
    tables = []
    for pair, e in envelope.items():
        rows = [("nominal", "the model as it is", e["nominal"], None)]
        rows += [(name, variations[name]["summary"], variations[name]["paired"][pair][metric], e["sigmas"][name])
                 for name in e["sigmas"]]  # fmt: skip
        body = "".join(
            f"<tr><td>{html.escape(name)}</td><td>{html.escape(summary)}</td>"
            f"<td>{html.escape(value_text(metric, difference))}</td>"
            f"<td>{'' if sigma is None else f'{sigma:.1f}'}</td></tr>"
            for name, summary, difference, sigma in rows
        )
        tables.append(
            f"<h3>{html.escape(pair)}</h3><div class=table><table><tr><th>variation</th><th>what differs</th>"
            f"<th>paired difference in {label}</th><th>standard errors in the first design's favour</th></tr>"
            f"{body}</table></div>"
        )
    words = " ".join(html.escape(line) for line in systematics_lines(evaluations))
    return f"""<h2>Does the win survive what we do not know?</h2>
<p>Every design observed again under each systematic variation (the world differing from the model in the
simulation only: the reconstruction still assumes the nominal flux, panel positions and resolutions), on the
same test volumes and muons, in the {html.escape(readout)} readout. A design wins under a variation when its paired
difference is in its favour by more than {WIN_SIGMAS:g} standard errors. {words}</p>
{"".join(tables)}"""


TASK_FIGURES = {  # stem: heading, caption template (filled with _run_facts)
    "predicted_vs_true": (
        "Fill height: answer against truth",
        "Regression on the {n_test} test volumes with the physical readout (hard panel edges, hits drawn with "
        "the panel efficiency, 2 hits a side; momentum: {momentum}; {muons} muons a volume): each design's answer "
        "after the calibration line fitted on its {n_cal} calibration volumes, against the true fill height. "
        "Points are shifted sideways per design for legibility; the legend gives each design's mean squared error.",
    ),
    "presence": (
        "Presence: ROC curves and scores",
        "Presence on the {n_test} test volumes with the physical readout (hard panel edges, hits drawn with the "
        "panel efficiency, 2 hits a side; momentum: {momentum}; {muons} muons a volume), half of them holding the "
        "object. Left: ROC curve of each design (detection efficiency against false-alarm rate as the score "
        "threshold falls). Right: for each design, the distribution of the presence score (a smooth maximum of "
        "voxel z-scores) over the test volumes with the object (orange) and without it (blue), filled, on a "
        "common score axis: the further apart, the better the design separates them.",
    ),
}


def _as_report_figure(figure: Path | ReportFigure, facts: dict[str, Any]) -> ReportFigure:
    """A caller's figure: a path gets the heading and caption of :data:`TASK_FIGURES` by its stem."""
    if isinstance(figure, ReportFigure):
        return figure
    heading, caption = TASK_FIGURES.get(figure.stem, (figure.stem, ""))
    return ReportFigure(figure, heading, caption.format(**facts))


STYLE = """body{font-family:sans-serif;max-width:1150px;margin:auto;padding:0 12px;line-height:1.4}
img{max-width:100%;height:auto;display:block}figure{margin:1em 0 2.5em 0}
figcaption{color:#333;margin-top:.5em}.files{white-space:nowrap}
.table{overflow-x:auto}td,th{padding:4px 10px;border-bottom:1px solid #ccc;font-size:90%}
pre{overflow-x:auto;font-size:85%}"""


def write_report(
    run_dir: Path, volume_box: tuple[float, ...], extra_figures: list[Path | ReportFigure] | None = None
) -> Path:
    """Make the figures every run has from the run directory's files and bundle them, with
    ``extra_figures`` (the task's own, made by the caller), into ``report.html``."""
    run_dir = Path(run_dir)
    evaluations = json.loads((run_dir / "evaluations.json").read_text())
    facts = _run_facts(run_dir, evaluations)
    figures = [
        *run_figures(run_dir, volume_box, evaluations),
        *(_as_report_figure(f, facts) for f in extra_figures or []),
    ]
    history = json.loads((run_dir / "history.json").read_text())
    timing = json.loads((run_dir / "timing.json").read_text()) if (run_dir / "timing.json").exists() else {}
    entries = evaluations["designs"]
    readouts = evaluations["readouts"]
    config = html.escape((run_dir / "config.json").read_text())
    train_s, total_s = timing.get("training_seconds", float("nan")), timing.get("total_seconds", float("nan"))
    task = evaluations["task"]
    oracle = " (an oracle: real detectors do not know it)" if task["momentum"] == "true" else ""
    verdict = chance_lines(evaluations) + statistic_lines(evaluations)
    warning = (
        '<div class=verdict style="border:2px solid #b00;padding:0.5em 1em;background:#fff4f4">'
        + "".join(
            f"<p><b>{html.escape(line)}</b></p>" if i == 0 else f"<p>{html.escape(line)}</p>"
            for i, line in enumerate(verdict)
        )
        + "</div>"
        if verdict
        else ""
    )
    body = f"""<!doctype html><html><head><meta charset="utf-8"><title>mutomo run report</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style>
</head><body>
<h1>mutomo optimisation report</h1>
<p>Run directory: {html.escape(str(run_dir))}. Epochs: {len(history)}.
Training time: {train_s:.0f} s; whole run: {total_s:.0f} s.</p>
<p>Task: {html.escape(task["kind"])} with {html.escape(task["inference"])}; momentum used by the reconstruction:
{html.escape(task["momentum"])}{oracle}; {task["muons_per_volume"]} muons ({task["exposure_s"]:.3g} s of exposure) per
test volume. <b>physical</b> readouts have hard panel edges, hits drawn with the panel efficiency and a trigger
(<i>physical</i>: 2 hits a side; <i>physical_minK</i>: K; <i>physical_all</i>: every panel); <b>smooth</b> is the
relaxation used in training.</p>
{warning}
<h2>Metrics on the test volumes (value &plusmn; statistical error, rounded to two digits of the error)</h2>
<div class=table>{_metric_table(entries, readouts)}</div>
<h2>Paired differences (same volumes and muons)</h2>
<div class=table>{_metric_table(evaluations["paired"], readouts)}</div>
{bounds_section(evaluations)}
{systematics_section(evaluations)}
<h2>Figures</h2>
<p>Each figure is embedded as PNG; the SVG link beside its caption gives the vector version for print.</p>
{"".join(_embed(i + 1, f, run_dir) for i, f in enumerate(figures))}
<h2>Configuration</h2><details><summary>config.json</summary><pre>{config}</pre></details></body></html>"""
    out = run_dir / "report.html"
    out.write_text(body)
    return out
