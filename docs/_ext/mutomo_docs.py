"""Pages generated from the code and from the results files, written before Sphinx reads the pages.

``_generated/configuration.md``: the configuration reference, from the pydantic schema
(:func:`mutomo.config.reference.config_fields`). ``_generated/api.md``: one autodoc entry per name
of ``mutomo.__all__``. ``_generated/results_*.md``: the tables of the JSON in
``benchmarks/results``, each with the command, machine and date the file records, rendered where
possible by the benchmark script's own table function, so no number is typed into a page.
A file is rewritten only when its text changes, so an unchanged page is not read again.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import math
import re
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx

import mutomo
from mutomo.config.reference import FieldRow, config_fields, value_forms
from mutomo.optimise.metric_text import round_to_error
from mutomo.optimise.verdict import headline as headline_readout
from mutomo.tasks.metrics import threshold_false_alarm

DOCS = Path(__file__).resolve().parents[1]
ROOT = DOCS.parent
RESULTS = ROOT / "benchmarks" / "results"
GENERATED = DOCS / "_generated"


def _write(name: str, text: str) -> None:
    GENERATED.mkdir(exist_ok=True)
    path = GENERATED / name
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _script(name: str) -> types.ModuleType:
    """A benchmark script as a module (for its table function; its ``main`` is not run)."""
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _source(path: Path) -> str:
    return f"`{path.relative_to(ROOT)}`"


# ------------------------------------------------------------------------------- configuration
def _table(rows: list[FieldRow]) -> list[str]:
    """Rows as a definition list: the key with its type, default and range; then its meaning."""
    lines = []
    for r in rows:
        allowed = f"; allowed: {r.allowed}" if r.allowed else ""
        lines += [
            f"`{r.key}` — {r.value_type}; default `{r.default}`{allowed}",
            f": {(r.description or '').replace(chr(10), ' ')}",
            "",
        ]
    return lines


def configuration() -> str:
    rows = config_fields()
    sections: dict[str, list[FieldRow]] = {}
    for row in rows:
        sections.setdefault(row.section, []).append(row)
    top = [r for r in rows if "." not in r.key and "[" not in r.key]
    lines = ["## Top level", "", *_table([r for r in top if not sections.get(r.key, [])[1:]]), ""]
    for row in top:
        below = sections[row.key][1:]
        if not below:
            continue
        about = row.description or ""
        about = about[:1].upper() + about[1:]
        lines += [f"## `{row.key}`", "", f"{about}. Type: {_cell(row.value_type)}.", "", *_table(below), ""]
    lines += [
        "## Drawn values",
        "",
        "A number marked `{min, max}` or `{values}` above may be drawn for each volume instead of given:",
        "",
    ]
    for written, form_rows in value_forms().items():
        lines += [f"### `{written}`", "", *_table(form_rows), ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ API
def api() -> str:
    groups: dict[str, list[str]] = {"Classes": [], "Functions": [], "Registries": []}
    for name in sorted(mutomo.__all__, key=str.lower):
        obj = getattr(mutomo, name)
        kind = "Classes" if inspect.isclass(obj) else "Functions" if callable(obj) else "Registries"
        groups[kind].append(name)
    lines: list[str] = []
    for kind, names in groups.items():
        lines += [f"## {kind}", ""]
        if kind == "Registries":
            for name in names:
                lines += [f"### `mutomo.{name}`", "", "| name | what it is |", "|---|---|"]
                for key, entry in getattr(mutomo, name).items():
                    text = getattr(entry, "summary", None) or (inspect.getdoc(entry) or "").split("\n\n")[0]
                    lines.append(f"| `{key}` | {_cell(text)} |")
                lines.append("")
            continue
        for name in names:
            directive = "autoclass" if kind == "Classes" else "autofunction"
            options = ["   :members:"] if kind == "Classes" else []
            lines += ["```{eval-rst}", f".. {directive}:: mutomo.{name}", *options, "```", ""]
    return "\n".join(lines)


# -------------------------------------------------------------------------------------- results
def _machine(machine: Any) -> str:
    if isinstance(machine, str):
        return machine
    keys = ("cpu_model", "cores", "memory_gib", "torch", "threads", "platform")
    return ", ".join(f"{k} {machine[k]}" for k in keys if k in machine)


def reco_methods() -> str:
    path = RESULTS / "reco_methods_table.json"
    data = json.loads(path.read_text())
    table = _script("reco_methods_table").markdown(data).replace("### ", "#### ")
    return (
        f"From {_source(path)}: command `{data['command']}`, machine: {_machine(data['machine'])}, "
        f"{data['seconds']:.0f} s in all.\n\n{table}\n"
    )


def presence_clutter() -> str:
    """Every presence statistic x method on the clutter scenes (benchmarks/results/presence_clutter/)."""
    out = []
    for path in sorted((RESULTS / "presence_clutter").glob("*.json")):
        data = json.loads(path.read_text())
        table = _script("presence_clutter").markdown(data)
        out.append(f"From {_source(path)}:\n\n{table}\n")
    return "\n".join(out)


def moliere() -> str:
    path = RESULTS / "moliere_highz.json"
    data = json.loads(path.read_text())
    script = _script("moliere_comparison")
    header = ["| material (Z) | points | q68 | q95 | q99 |", "|---|---:|---|---|---|"]
    return "\n".join(
        [
            f"From {_source(path)} ({data['machine']}, {data['muons']:,} muons a point; command "
            "`python benchmarks/moliere_comparison.py`). Worst deviation (model / Molière − 1) of each quantile "
            "of |projected angle| per material, energy loss off, and where it is. Target: 5 / 7 / 12 %.",
            "",
            "#### Against Molière's theory with the nuclear size (Helm form factor)",
            "",
            *header,
            *script.worst_table(data["rows"], "nuclear"),
            "",
            "#### Against Bethe's point-nucleus Molière theory",
            "",
            *header,
            *script.worst_table(data["rows"], "point"),
            "",
            "#### Energy loss on (1 and 3 GeV/c, 1–10 cm), against Molière with the nuclear size along the path",
            "",
            *header,
            *script.energy_loss_table(data["rows"]),
            "",
        ]
    )


def _records(benchmark: str) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) | {"_path": p} for p in sorted((RESULTS / benchmark).glob("*.json"))]


def _record_header(rec: dict[str, Any], title: str = "") -> list[str]:
    """A record's heading (its date) and provenance line (file, command, commit, machine, load)."""
    gpus = ", ".join(rec["machine"].get("gpus", []))
    load = rec.get("load_average_start")
    return [
        f"### {rec['date'][:16].replace('T', ' ')} UTC{title}",
        "",
        f"From {_source(rec['_path'])}: command `{rec['command']}`; commit `{(rec['git_commit'] or '?')[:10]}`"
        f"{' (uncommitted changes)' if rec.get('git_dirty') else ''}; machine: {gpus + ', ' if gpus else ''}"
        f"{_machine(rec['machine'])}{f'; load average {load[0]:.1f} at the start' if load else ''}.",
        "",
    ]


def tomopt_side_by_side() -> str:
    lines = []
    for rec in _records("tomopt_side_by_side"):
        lines += [
            *_record_header(rec),
            "| muons | threads | kernels | mutomo muons/s | TomOpt muons/s | speed ratio | mutomo peak MiB "
            "| TomOpt peak MiB | memory ratio |",
            "|---:|---:|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in rec["results"]["rows"]:
            lines.append(
                f"| {r['muons']:,} | {r['threads']} | {r.get('kernels', 'plain')} | {r['mutomo_muons_per_s']:,.0f} | "
                f"{r['tomopt_muons_per_s']:,.0f} | {r['speed_ratio']:.0f}x | {r['mutomo_peak_rss_mib']:,.0f} | "
                f"{r['tomopt_peak_rss_mib']:,.0f} | {r['memory_ratio']:.1f}x |"
            )
        lines.append("")
    return "\n".join(lines)


def simulation_throughput() -> str:
    lines = []
    for rec in _records("simulation_throughput"):
        lines += [
            *_record_header(rec),
            "| muons | forward (muons/s) | forward + backward (muons/s) | peak memory (MiB) |",
            "|---:|---:|---:|---:|",
        ]
        for r in rec["results"]["rows"]:
            lines.append(
                f"| {r['muons']:,} | {r['forward_muons_per_s']:,.0f} | {r['forward_backward_muons_per_s']:,.0f} | "
                f"{r['peak_rss_mib']:,.0f} |"
            )
        lines.append("")
    return "\n".join(lines)


def scaling() -> str:
    path = RESULTS / "scaling.json"
    data = json.loads(path.read_text())
    script = _script("scaling")
    lines = [
        f"From {_source(path)} (command `python benchmarks/scaling.py`; one full step, forward and backward; "
        "the machine is not recorded in the file). Exponents are log-log slopes over all sizes and between "
        "the two largest.",
        "",
        *script.table(data),
    ]
    return "\n".join(lines) + "\n"


def methods_table() -> str:
    path = RESULTS / "methods_table_reevaluated.json"
    data = json.loads(path.read_text())
    a = data["args"]
    return (
        f"From {_source(path)}: the runs of {', '.join(f'`{p}`' for p in a['reevaluate'])} judged again on "
        f"{a['eval_volumes']} test volumes with {a['calibration_volumes']} calibration volumes (command "
        f"`python benchmarks/methods_table.py --table {a['out']}`); {a['epochs']} epochs of {a['volumes']} "
        f"volumes x {a['muons']} muons per trial, seeds {a['seeds']}.\n\n"
        + _script("methods_table").table(data["records"])
        + "\n"
    )


def _pm(value: list[float | None] | None, digits: int = 4) -> str:
    if not value or value[0] is None:
        return "n/a"
    return f"{value[0]:.{digits}f} ± {value[1]:.{digits}f}" if value[1] is not None else f"{value[0]:.{digits}f}"


def landscape() -> str:
    path = RESULTS / "landscape_ladle" / "landscape.json"
    d = json.loads(path.read_text())
    m = d["metric"]
    s = d["settings"]
    near = d["near_optimal"]
    best = d["starts"][d["best"]]
    metric_name = f"{m['readout']} {m['name']}"
    lines = [
        f"From {_source(path)}: problem `{d['problem']}`, {s['starts']} starts, {d['muons']:,} muons, "
        f"{d['evaluation']['n_volumes']} test volumes, {d['evaluation']['calibration_volumes']} calibration "
        f"volumes; training {d['seconds']['training']:.0f} s, evaluation {d['seconds']['evaluation']:.0f} s. "
        f"Metric: {metric_name} (m², lower is better).",
        "",
        f"{near['count']} distinct designs are near-optimal (within {s['tolerance_sigma']:g} standard errors or "
        f"{100 * s['tolerance_fraction']:g} % of the best); they differ most in `{near['largest_spread']['parameter']}`"
        f" ({near['largest_spread']['range_m']:.2f} m).",
        "",
        f"| design | {metric_name} (m²) | minus the best (paired) |",
        "|---|---:|---:|",
        f"| best of the landscape | {_pm(best.get('metric'))} | |",
    ]
    for name, h in d["humans"].items():
        lines.append(f"| {name} | {_pm(h['metric'])} | {_pm(h.get('worse_than_best'))} |")
    front = d.get("front")
    if front:
        lines += ["", f"Budget front (best of the starts at each budget, {metric_name}, m²):", ""]
        humans = {name: {round(x["budget"]): x["metric"] for x in h["scaled"]} for name, h in front["humans"].items()}
        lines += [
            "| budget | best start | " + " | ".join(f"{h} scaled to the budget" for h in humans) + " |",
            "|---:|---:|" + "---:|" * len(humans),
        ]
        for b in front["budgets"]:
            cells = " | ".join(_pm(h.get(round(b["budget"]))) for h in humans.values())
            lines.append(f"| {b['budget']:g} | {_pm(b['metric'])} | {cells} |")
    return "\n".join(lines) + "\n"


def lorry_modules() -> str:
    path = RESULTS / "lorry_modules.json"
    d = json.loads(path.read_text())
    lines = [
        f"From {_source(path)} (command `python benchmarks/lorry_modules.py`): {d['exposure_s']:.0f} s scans, "
        "tiled placements of K modules, presence of the uranium block.",
        "",
        "| modules K | cost | AUC | detection at 1 % false alarm | wall time (s) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in d["rows"]:
        lines.append(
            f"| {r['K']} | {r['cost']:,.0f} | {_pm(r['auc'], 2)} | {_pm(r['efficiency_at_false_alarm'], 2)} | "
            f"{r['seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def tomopt_side_by_side_gpu() -> str:
    """The side by side with mutomo on a GPU (TomOpt on the CPU, where its code pins it)."""
    lines = []
    for rec in _records("tomopt_side_by_side_gpu"):
        rows = rec["results"]["rows"]
        where = "a GPU" if rows and rows[0].get("device", "cpu") != "cpu" else "the CPU"
        lines += [
            *_record_header(rec, f", mutomo on {where}"),
            "| muons | kernels | mutomo muons/s | TomOpt muons/s (CPU, 1 thread) | speed ratio | mutomo peak GPU MiB |",
            "|---:|---|---:|---:|---:|---:|",
        ]
        for r in rows:
            tomopt, ratio, gpu = r["tomopt_muons_per_s"], r["speed_ratio"], r.get("mutomo_gpu_peak_mib")
            cells = [
                f"{r['muons']:,}",
                r.get("kernels", "plain"),
                f"{r['mutomo_muons_per_s']:,.0f}",
                "not run" if math.isnan(tomopt) else f"{tomopt:,.0f}",
                "—" if math.isnan(ratio) else f"{ratio:.0f}x",
                "—" if gpu is None or math.isnan(gpu) else f"{gpu:,.0f}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _measured(value: float | None, error: float | None, scale: float = 1.0) -> str:
    """``value ± error`` rounded to two significant digits of the error (exact values plainly)."""
    if value is None:
        return "undefined"
    if error is None or error != error or error <= 1e-9 * max(abs(value), 1e-300):
        return f"{scale * value:.4g}"  # exact, or no error known
    return round_to_error(scale * value, scale * error)


BOUND_METRICS = {  # metric: (column heading, scale)
    "mse": ("MSE (10⁻³ m²)", 1e3),
    "auc": ("AUC", 1.0),
    "efficiency_at_false_alarm": ("detection at the false-alarm rate", 1.0),
}
# (The exposure to the goal is left out: a bound run may measure a single exposure, and its paired
# difference is a ratio, not a difference.)


def bounds(name: str) -> str:
    """The ideal-detector bound of configuration ``name`` (benchmarks/results/bounds/NAME.json)."""
    path = RESULTS / "bounds" / f"{name}.json"
    if not path.exists():
        return f"No bound recorded yet for `{name}` (`python benchmarks/bounds.py {name}`).\n"
    rec = json.loads(path.read_text())
    res = rec["results"]
    headline = headline_readout(res["readouts"])
    metrics = [m for m in BOUND_METRICS if m in res["designs"]["start"][headline]]
    shared = [m for m in metrics if any(m in v.get(headline, {}) for v in res["shares"].values())]
    lines = [
        f"From {_source(path)}: command `{rec['command']}`; {rec['date'][:10]}; commit "
        f"`{(rec['git_commit'] or '?')[:10]}`; machine: {_machine(rec['machine'])}. Readout `{headline}`; "
        f"share of the possible gain over the start: 0 % is the start, 100 % the ideal detector.",
        "",
        "| design | "
        + " | ".join(BOUND_METRICS[m][0] for m in metrics)
        + " | "
        + " | ".join(f"share of the gain in {m} (%)" for m in shared)
        + " |",
        "|---|" + "---:|" * (len(metrics) + len(shared)),
    ]
    lines[2] += "".join(f" ideal − design, paired: {BOUND_METRICS[m][0]} |" for m in metrics)
    lines[3] += "---:|" * len(metrics)
    for design, entry in res["designs"].items():
        cells = [_measured(*entry[headline][m], scale=BOUND_METRICS[m][1]) for m in metrics]
        to_ideal = res["paired"].get(f"ideal - {design}", {}).get(headline, {})
        share = res["shares"].get(design, {}).get(headline, {})
        fixed = {"start": "0 (by definition)", "ideal": "100 (by definition)"}
        cells += [
            fixed.get(design) or _measured(*share[m], scale=100.0) if m in share or design in fixed else ""
            for m in shared
        ]
        cells += [_measured(*to_ideal[m], scale=BOUND_METRICS[m][1]) if m in to_ideal else "" for m in metrics]
        lines.append(f"| {design} | " + " | ".join(cells) + " |")
    others = [r for r in res["readouts"] if r.startswith("physical") and r != headline]
    if others and shared:
        m = shared[0]
        lines += [
            "",
            f"Share of the possible gain in {m} (%) under every trigger (hits a side: `physical` 2, "
            "`physical_minK` K, `physical_all` every panel):",
            "",
            "| design | " + " | ".join(f"`{r}`" for r in [headline, *others]) + " |",
            "|---|" + "---:|" * (1 + len(others)),
        ]
        for design, share in res["shares"].items():
            cells = [_measured(*share[r][m], scale=100.0) if m in share.get(r, {}) else "" for r in [headline, *others]]
            lines.append(f"| {design} | " + " | ".join(cells) + " |")
    exposures = {d: e[headline].get("exposure_to_goal_s") for d, e in res["designs"].items()}
    if any(v and v[0] is not None for v in exposures.values()):
        lines += [
            "",
            "Exposure to the task's detection goal at its false-alarm rate, interpolated on the exposure ladder "
            "('not reached': not by the longest exposure tried), and the ideal detector's exposure over the "
            "design's (paired on the same volumes; below 1: the ideal needs less):",
            "",
            "| design | exposure to the goal (s) | ideal / design, paired |",
            "|---|---:|---:|",
        ]
        for design, value in exposures.items():
            ratio = res["paired"].get(f"ideal - {design}", {}).get(headline, {}).get("exposure_ratio")
            reached = _measured(*value) if value and value[0] is not None else "not reached"
            lines.append(f"| {design} | {reached} | {_measured(*ratio) if ratio and ratio[0] else ''} |")
    momentum = res["paired"].get("ideal_momentum - ideal", {}).get(headline)
    if momentum:
        resolution = res["bounds"]["momentum_resolution"]
        text = "; ".join(
            f"{BOUND_METRICS[m][0]} {_measured(*momentum[m], scale=BOUND_METRICS[m][1])}"
            for m in metrics
            if m in momentum
        )
        lines += [
            "",
            f"Measuring each muon's momentum to {100 * resolution:g} % (`ideal_momentum − ideal`, paired): {text}.",
        ]
    return "\n".join(lines) + "\n"


def _panels(entry: dict[str, Any]) -> str:
    """A design's panel widths (its description's ``span``), e.g. ``panels 0.42–1.2 m``."""
    span = entry.get("design", {}).get("span")
    if span is None:
        return ""
    spans = span if isinstance(span, list) else [span]
    low, high = min(spans), max(spans)
    return f" (panels {low:.2g} m)" if abs(high - low) < 1e-6 else f" (panels {low:.2g}–{high:.2g} m)"


def ideal_variants() -> str:
    """The ladle's ideal detector against variants of it (benchmarks/results/bounds/ladle_ideal_variants/:
    ``mutomo evaluate`` outputs, whose pairs are ``variant - reference``, and ``benchmarks/bounds.py``
    records, whose pairs are ``ideal - design``): which of its features the MSE depends on."""
    lines = [
        "| variant | MSE (10⁻³ m²) | the region's ideal detector (10⁻³ m²) | variant − ideal, paired (10⁻³ m²) "
        "| file |",
        "|---|---:|---:|---:|---|",
    ]
    for path in sorted((RESULTS / "bounds" / "ladle_ideal_variants").glob("*.json")):
        d = json.loads(path.read_text())
        rows = []
        if "results" in d:  # a bound record: "ideal - X" for each X of its command's --design
            words = d["command"].split()
            named = {w.split("=")[0] for a, w in zip(words, words[1:], strict=False) if a == "--design"}
            d = d["results"]
            for key, diff in d["paired"].items():
                first, variant = key.split(" - ")
                if first == "ideal" and variant in named:
                    value, error = diff["physical"]["mse"]
                    rows.append((variant, "ideal", [-value, error]))
        else:
            for key, diff in d["paired"].items():
                variant, reference = key.split(" - ")
                rows.append((variant, reference, diff["physical"]["mse"]))
        for variant, reference, mse in rows:
            cells = [
                _measured(*d["designs"][variant]["physical"]["mse"], scale=1e3),
                _measured(*d["designs"][reference]["physical"]["mse"], scale=1e3),
                _measured(*mse, scale=1e3),
            ]
            label = f"`{variant}`{_panels(d['designs'][variant])}"
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {_source(path)} |")
    return "\n".join(lines) + "\n"


def systematics_ladle(path: Path | None = None) -> str:
    """The ladle designs under every systematic variation (benchmarks/results/systematics_ladle.json,
    written by benchmarks/systematics_ladle.py): each comparison's paired difference in the
    nominal world and under each variation, with the standard errors in the first design's
    favour, then the verdicts."""
    path = path or RESULTS / "systematics_ladle.json"
    if not path.exists():
        return "No systematics record yet (`python benchmarks/systematics_ladle.py`).\n"
    rec = json.loads(path.read_text())
    if "results" not in rec:  # the first run (issue 30's smoke run) wrote no provenance record
        return f"{_source(path)} holds no provenance record (rerun `python benchmarks/systematics_ladle.py`).\n"
    res = rec["results"]
    record = res["systematics"]
    metric, readout, higher = record["metric"], record["readout"], record["higher_is_better"]
    scale = BOUND_METRICS[metric][1] if metric in BOUND_METRICS else 1.0
    unit = BOUND_METRICS[metric][0] if metric in BOUND_METRICS else metric
    pairs = list(record["envelope"])
    worlds = {"nominal": {"summary": "the nominal world", "paired": {p: res["paired"][p][readout] for p in pairs}}}
    worlds |= record["variations"]

    def cell(diff: list[float | None] | None) -> str:
        if not diff:
            return ""
        value, error = diff
        if value is None or not error or error != error:
            return _measured(value, error, scale)
        sigmas = (value if higher else -value) / error
        text = f"{_measured(value, error, scale)} ({sigmas:+.1f} σ)"
        return f"**{text}**" if sigmas > 3 else text

    lines = [
        f"From {_source(path)}: command `{rec['command']}`; {rec['date'][:10]}; commit "
        f"`{(rec['git_commit'] or '?')[:10]}`; machine: {_machine(rec['machine'])}. "
        f"{res['set_up']['volumes']} test volumes, the same volumes and muons for every design and world; readout "
        f"`{readout}`. Each cell: the paired difference A − B in {unit} and, in brackets, the standard errors in "
        f"A's favour (a win by more than 3 is bold). The better human design is `{res['better_human']}`.",
        "",
        "| world | " + " | ".join(f"`{p}`" for p in pairs) + " |",
        "|---|" + "---:|" * len(pairs),
    ]
    for name, world in worlds.items():
        cells = [cell(world["paired"].get(p, {}).get(metric)) for p in pairs]
        lines.append(f"| {name}: {world['summary']} | " + " | ".join(cells) + " |")
    designs = res["designs"]
    lines += [
        "",
        "Each design's nominal "
        + unit
        + ": "
        + "; ".join(f"`{d}` {_measured(*e[readout][metric], scale=scale)}" for d, e in designs.items())
        + ".",
        "",
        *[f"- {v}" for v in res["verdicts"]],
    ]
    return "\n".join(lines) + "\n"


def waste_operating_point() -> str:
    """The waste block's detection against exposure for ``human_close`` with ML/EM marginalising
    over the momentum, every statistic (benchmarks/results/presence_clutter/: the 600 s cell of
    crate_and_waste.json and the waste_mlem_marginal_*.json collections)."""
    folder = RESULTS / "presence_clutter"
    rows = []
    for path in [folder / "crate_and_waste.json", *sorted(folder.glob("waste_mlem_marginal_*.json"))]:
        if not path.exists():
            continue
        scene = json.loads(path.read_text())["scenes"].get("waste_block")
        cell = scene and scene["cells"].get("mlem/marginal")
        if cell:
            rows.append((scene["meta"], cell, path))
    lines = [
        "| exposure (s) | muons | statistic | AUC | detection at 1 % false alarm | target ranked first | file |",
        "|---:|---:|---|---:|---:|---:|---|",
    ]
    for meta, cell, path in sorted(rows, key=lambda r: r[0]["exposure_s"]):
        for statistic in ("clean", "material"):
            c = cell[statistic]
            lines.append(
                f"| {meta['exposure_s']:.0f} | {meta['n_muons']:,} | `{statistic}` | {_measured(*c['auc'])} | "
                f"{_measured(*c['efficiency_at_false_alarm'])} | {_measured(*cell['localisation'])} | {_source(path)} |"
            )
    return "\n".join(lines) + "\n"


def border_portal_operating_point() -> str:
    """The border portal's tiled placement against scan time and modules a side
    (benchmarks/results/border_portal/operating_point_*.json, ``benchmarks/border_portal.py``)."""
    paths = sorted((RESULTS / "border_portal").glob("operating_point_*.json"))
    if not paths:
        return "No operating point recorded yet (`python benchmarks/border_portal.py operating-point border_portal`).\n"
    records = [json.loads(path.read_text()) | {"_path": path} for path in paths]
    # A run merged into a combined record (``border_portal.py combine``) is shown through it.
    merged = {Path(source).name for rec in records for source in rec["results"].get("sources", [])}
    lines = []
    for rec in records:
        if rec["_path"].name in merged:
            continue
        res = rec["results"]
        lines += [
            *_record_header(rec),
            *(
                [f"Merged from {', '.join(f'`{Path(s).name}`' for s in res['sources'])}.", ""]
                if res.get("sources")
                else []
            ),
            f"Configuration `{res.get('configuration', '?')}`: inference `{res['inference']}`, momentum "
            f"`{res['momentum']}`, statistic `{res['statistic']}`, at least {res['trigger_hits']} hits a side."
            + (
                " **Oracle:** each voxel's evidence with every other voxel at its true X0 instead of the fit "
                "(`--oracle-rest`), what a perfect reconstruction of the rest of the cargo would reach."
                if res.get("oracle")
                else ""
            ),
            "",
            "| modules a side | scan (s) | muons generated | muons reconstructed | muons in the cube's voxel "
            "(mean, range) | test cargos (with uranium) | AUC | detection at 1 % false alarm | the threshold's "
            "expected false alarm |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for cell in sorted(res["cells"].values(), key=lambda c: (c["modules_a_side"], c["scan_s"])):
            low, high = cell["muons_in_cube_voxel_range"]
            lines.append(
                f"| {cell['modules_a_side']} | {cell['scan_s']:g} | {cell['generated_muons_per_cargo']:,} | "
                f"{cell['reconstructed_muons_per_cargo']:,.0f} | {_measured(*cell['muons_in_cube_voxel'])} "
                f"({low:.0f}–{high:.0f}) | {cell['test_volumes']} ({cell['with_target']}) | "
                f"{_measured(*cell['auc'])} | {_measured(*cell['detection_at_1pc_false_alarm'])} | "
                f"{100 * _threshold_false_alarm(cell):.1f} % |"
            )
        lines.append("")
    return "\n".join(lines)


def _threshold_false_alarm(cell: dict[str, Any]) -> float:
    """A cell's expected false-alarm rate of its 1 % threshold (recorded, or from its clean count)."""
    if "threshold_false_alarm" in cell:
        return float(cell["threshold_false_alarm"])
    return threshold_false_alarm(int(cell["test_volumes"]) - int(cell["with_target"]), 0.01)


def border_portal_paired() -> str:
    """Cells of the border portal's operating point paired on the cargos both saw
    (benchmarks/results/border_portal/paired_*.json, ``benchmarks/border_portal.py compare``)."""
    paths = sorted((RESULTS / "border_portal").glob("paired_*.json"))
    if not paths:
        return "No paired comparison recorded yet (`python benchmarks/border_portal.py compare A B --out C`).\n"
    lines = [
        "| first | second | cargos (with uranium) | AUC, first | AUC, second | AUC difference | detection at 1 % "
        "false alarm, first | second | detection difference | the threshold's expected false alarm | date | file |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for path in paths:
        rec = json.loads(path.read_text())
        res = rec["results"]
        (auc_a, auc_b), (det_a, det_b) = res["auc"], res["detection_at_1pc_false_alarm"]
        names = [
            f"`{name}` ({statistic})"
            for name, statistic in zip((res["first"], res["second"]), res["statistics"], strict=True)
        ]
        lines.append(
            f"| {names[0]} | {names[1]} | {res['test_volumes']} ({res['with_target']}) | {_measured(*auc_a)} | "
            f"{_measured(*auc_b)} | {_measured(*res['auc_difference'])} | {_measured(*det_a)} | {_measured(*det_b)} | "
            f"{_measured(*res['detection_difference'])} | {100 * _threshold_false_alarm(res):.1f} % | "
            f"{rec['date'][:10]} | {_source(path)} |"
        )
    lines += [
        "",
        "Differences are first minus second on the same cargos and generated muons: the AUC's with DeLong's "
        "paired error, the detection's with a stratified bootstrap over the cargos (1,000 resamples). Command: "
        "`python benchmarks/border_portal.py compare FIRST[#CELL] SECOND[#CELL] --out FILE` (each file's record). "
        "With fewer than 100 clean cargos the 1 % threshold is the highest clean score, and its expected false-alarm "
        "rate on new cargos is 1 / (clean cargos + 1) (the last column; `mutomo.tasks.metrics.threshold_false_alarm`).",
    ]
    return "\n".join(lines) + "\n"


def border_portal_acceptance() -> str:
    """Where each border-portal placement's muons sample the cargo
    (benchmarks/results/border_portal/acceptance.json, ``benchmarks/border_portal_acceptance.py``):
    the script's own table, and its figure drawn from the record into ``_generated``."""
    path = RESULTS / "border_portal" / "acceptance.json"
    if not path.exists():
        return "No acceptance map recorded yet (`python benchmarks/border_portal_acceptance.py CONFIG`).\n"
    rec = json.loads(path.read_text()) | {"_path": path}
    script = _script("border_portal_acceptance")
    image = GENERATED / "border_portal_acceptance.png"
    drawn_from = max(path.stat().st_mtime, Path(script.__file__).stat().st_mtime)  # the record, or how it is drawn
    if not image.exists() or image.stat().st_mtime < drawn_from:
        GENERATED.mkdir(exist_ok=True)
        script.figure(rec["results"], image)
    return "\n".join(_record_header(rec)) + "\n" + script.table(rec["results"])


def lab_notes() -> str:
    """benchmarks/README.md, the dated lab notes, with its links made relative to docs/lab-notes.md
    (a Markdown results file, not a page of this site, is named instead of linked)."""
    text = (ROOT / "benchmarks" / "README.md").read_text().split("\n", 1)[1]
    text = re.sub(r"\[([^\]]*)\]\((results/[^)]*\.md)\)", r"\1 (`benchmarks/\2`)", text)
    return text.replace("](results/", "](../benchmarks/results/")


PAGES: dict[str, Callable[[], str]] = {
    "configuration.md": configuration,
    "api.md": api,
    "results_reco_methods.md": reco_methods,
    "results_presence_clutter.md": presence_clutter,
    "results_moliere.md": moliere,
    "results_tomopt.md": tomopt_side_by_side,
    "results_throughput.md": simulation_throughput,
    "results_scaling.md": scaling,
    "results_methods_table.md": methods_table,
    "results_landscape.md": landscape,
    "results_lorry_modules.md": lorry_modules,
    "results_tomopt_gpu.md": tomopt_side_by_side_gpu,
    "results_bounds_ladle_furnace.md": lambda: bounds("ladle_furnace"),
    "results_bounds_waste_block.md": lambda: bounds("waste_block"),
    "results_bounds_ladle_full_freedom.md": lambda: bounds("ladle_full_freedom"),
    "results_ladle_ideal_variants.md": ideal_variants,
    "results_systematics_ladle.md": systematics_ladle,
    "results_waste_operating_point.md": waste_operating_point,
    "results_bounds_waste_block_marginal.md": lambda: bounds("waste_block_marginal"),
    "results_border_portal_operating_point.md": border_portal_operating_point,
    "results_border_portal_paired.md": border_portal_paired,
    "results_border_portal_acceptance.md": border_portal_acceptance,
    "lab_notes.md": lab_notes,
}


def generate(app: Sphinx | None = None) -> None:
    for name, page in PAGES.items():
        _write(name, page())


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("builder-inited", generate)
    return {"parallel_read_safe": True, "version": mutomo.__version__}
