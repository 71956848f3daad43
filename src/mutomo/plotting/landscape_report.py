"""``report.html`` of a landscape or a sweep: the distinct designs, the human designs, the
budget front or the module-count front, the methods and the trials as tables, and every figure with a caption.

Reads only ``landscape.json``'s content and the figures already written
(:func:`mutomo.plotting.landscape.write_landscape_figures`).
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

from mutomo.plotting.report import STYLE, ReportFigure, _embed, _fmt

CAPTIONS = {
    "landscape_views": (
        "The near-optimal designs and the human designs",
        "Side (x-z) and top (x-y) views of each distinct near-optimal design (its best member; at most six, best "
        "first) and of the human designs, on common axes: panels as bars, the scene's box shaded; each titled with "
        "its {metric} on the {readout} readout (value ± standard error on the test volumes).",
    ),
    "metric_vs_cost": (
        "Metric against cost, and the distance to the best",
        "Left: every finished design's {metric} ({readout} readout) against its cost, error bars one standard "
        "error; distinct designs' best members filled, near-optimal ones in red; human designs as large markers. "
        "Right: the distinct designs ranked by their paired difference to the best (same volumes and muons) with "
        "its standard error, the tolerance band, and the human designs' paired differences.",
    ),
    "budget_front": (
        "The budget front",
        "The best {metric} ({readout} readout) reached at each budget (error bars: standard errors; every trial "
        "as a dot) and its monotone envelope; the human designs at their own cost and scaled to every budget.",
    ),
    "module_front": (
        "The module-count front",
        "The best {metric} ({readout} readout) reached with K hodoscope modules, at its cost (K x the module's "
        "price; error bars: standard errors; every trial as a dot), and its monotone envelope; the human tiled "
        "placement of every K, and the human designs at their own cost.",
    ),
}


def _row(cells: list[str], tag: str = "td") -> str:
    return "<tr>" + "".join(f"<{tag}>{c}</{tag}>" for c in cells) + "</tr>"


def _table(head: list[str], rows: list[list[str]]) -> str:
    return f"<div class=table><table>{_row(head, 'th')}{''.join(_row(r) for r in rows)}</table></div>"


def _designs_table(result: dict[str, Any]) -> str:
    rows = []
    for c in result["clusters"]:
        apart = c["sets_apart"]
        rows.append(
            [
                str(c["id"]),
                str(c["size"]),
                _fmt(c["metric"]),
                _fmt(c["worse_than_best"]),
                f"{c['cost']:.6g}",
                "yes" if c["near_optimal"] else "",
                html.escape(f"{apart['parameter']}: {apart['value']:.3g} m vs {apart['best']:.3g} m"),
            ]
        )
    for name, h in result["humans"].items():
        rows.append([html.escape(name), "", _fmt(h["metric"]), _fmt(h["worse_than_best"]), f"{h['cost']:.6g}", "", ""])
    m = html.escape(f"{result['metric']['name']} ({result['metric']['readout']})")
    head = ["design", "starts", m, "worse than best (paired)", "cost", "near-optimal", "differs most from best"]
    return _table(head, rows)


def _front_table(front: dict[str, Any]) -> str:
    modules = front.get("axis") == "modules"
    scaled = {
        name: {s["budget"]: s["metric"] for s in h["scaled"]} for name, h in front["humans"].items() if h["scaled"]
    }
    first = "modules (cost)" if modules else "budget"
    head = [first, "best trial", "envelope", *(html.escape(n if modules else f"{n} scaled") for n in scaled)]
    rows = [
        [
            f"{p['modules']} ({p['budget']:.6g})" if modules else f"{p['budget']:.6g}",
            _fmt(p["metric"]),
            _fmt([e if math.isfinite(e) else None, None]),
            *(_fmt(s.get(p["budget"], [None, None])) for s in scaled.values()),
        ]
        for p, e in zip(front["budgets"], front["envelope"], strict=True)
    ]
    return _table(head, rows)


def _methods_table(methods: dict[str, Any]) -> str:
    rows = []
    for name, e in methods.items():
        minus = e.get("minus_gradient", [[None, None]] * len(e["seeds"]))
        for s, m, d, mu, sec in zip(e["seeds"], e["metric"], minus, e["muons"], e["seconds"], strict=True):
            rows.append(
                [html.escape(name), str(s), _fmt(m), "" if name == "gradient" else _fmt(d), str(mu), f"{sec:.0f}"]
            )
    return _table(["method", "start", "metric", "minus gradient (paired)", "muons", "seconds"], rows)


def _trials_table(trials: dict[str, Any]) -> str:
    rows = [
        [
            html.escape(name),
            html.escape(t["status"]),
            str(t.get("attempts", "")),
            f"{t['seconds']:.0f}" if "seconds" in t else "",
            html.escape(t.get("error", "")),
        ]
        for name, t in trials.items()
    ]
    return _table(["trial", "status", "attempts", "seconds (last attempt)", "error"], rows)


def write_landscape_report(folder: Path, result: dict[str, Any], figures: list[Path]) -> Path:
    """Write ``folder/report.html`` for a landscape (``mutomo landscape``) or a sweep
    (``mutomo sweep``: with its methods and trials)."""
    m = result["metric"]
    near = result["near_optimal"]
    facts = {"metric": m["name"], "readout": m["readout"]}
    numbered = [
        ReportFigure(f, CAPTIONS[f.stem][0], CAPTIONS[f.stem][1].format(**facts)) for f in figures if f.stem in CAPTIONS
    ]
    kind = "sweep" if "trials" in result else "landscape"
    direction = "higher" if m["higher_is_better"] else "lower"
    sections = [
        f"<p>{len(result['starts'])} finished starts form {len(result['clusters'])} distinct designs (grouping "
        f"distance {result['settings']['threshold']} m); <b>{near['count']} near-optimal</b>, costing "
        f"{near['cost_range'][0]:.6g} to {near['cost_range'][1]:.6g}; among them the largest spread is in "
        f"{html.escape(near['largest_spread']['parameter'])} ({near['largest_spread']['range_m']:.3g} m). Metric: "
        f"{html.escape(m['name'])} on the {html.escape(m['readout'])} readout ({direction} is better), on "
        f"{result['evaluation']['n_volumes']} test volumes, the same volumes and muons for every design. "
        f"Muons simulated in training: {result['muons']}.</p>",
        "<h2>Distinct designs and the human designs</h2>",
        _designs_table(result),
    ]
    if "front" in result:
        heading = "Module-count front" if result["front"].get("axis") == "modules" else "Budget front"
        sections += [f"<h2>{heading}</h2>", _front_table(result["front"])]
    if result.get("methods"):
        sections += [
            "<h2>Gradient-free methods against the gradient trials from the same starts</h2>",
            _methods_table(result["methods"]),
        ]
    if "trials" in result:
        sections += ["<h2>Trials</h2>", _trials_table(result["trials"])]
    body = f"""<!doctype html><html><head><meta charset="utf-8"><title>mutomo {kind} report</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head><body>
<h1>mutomo {kind} report: {html.escape(str(result.get("problem", "")))}</h1>
{"".join(sections)}
<h2>Figures</h2>
{"".join(_embed(i + 1, f, folder) for i, f in enumerate(numbered))}
</body></html>"""
    out = folder / "report.html"
    out.write_text(body)
    return out
