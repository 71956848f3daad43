"""Where each border-portal placement's muons sample the cargo (issue 29, deliverable 5): the
acceptance map.

For each placement (tiled K modules a side, :func:`mutomo.studies.starts.tiled_for`, and the
configuration's named designs), one clean cargo (the evaluation's reference key ``(seed, 3, i)``)
is scanned for S seconds with the same generated muons, measured as the evaluation measures them
(the physical readout, the configuration's first trigger), and each 10 cm voxel gets the
weighted number of reconstructed muons whose path crosses it: the ML/EM problem's ``count``
(``M_j``, :class:`mutomo.reco.mlem.EMProblem`), the same number the operating point reports for the
cube's voxel (``muons_in_cube_voxel``). No EM is run: the map is geometry and the trigger, not the
statistic.

The record holds, per placement, the map averaged over the inside's height (muons per voxel, x by
y), the muons through each horizontal layer of the inside, the inside voxels' median count and
its 10th percentile, the fraction of inside voxels crossed by at least 10 and 50 muons, and the
modules' centres; ``--figure`` draws the maps from the record
with each placement's detection at 1 % false alarm beside it (``--detection NAME=RECORD[#CELL]``,
an operating-point record of ``border_portal.py``).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/border_portal_acceptance.py configs/border_portal_robust.toml \\
        --modules 3 6 8 --designs offset block --exposure 300 \\
        --detection 'K=6 tiled=results/border_portal/operating_point_robust_K6_300_combined.json' \\
        --figure acceptance.png

(the docs draw the same figure from the record when they are built: docs/_ext/mutomo_docs.py)
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from mutomo.benchrecord import load_average, new_record, record_cell  # noqa: E402
from mutomo.config import load_config  # noqa: E402
from mutomo.config.build import build_problem, evaluation_settings  # noqa: E402
from mutomo.errors import MutomoError  # noqa: E402
from mutomo.optimise.evaluate import CALIBRATION_STREAM  # noqa: E402
from mutomo.optimise.metric_text import round_to_error  # noqa: E402
from mutomo.optimise.problem import key_generator  # noqa: E402
from mutomo.reco import MaximumLikelihoodEM  # noqa: E402
from mutomo.studies.starts import tiled_for  # noqa: E402

HERE = Path(__file__).resolve().parent
INSET = 0.06  # m: the lower modules' outlines are drawn this far inside their edges


def _placements(problem: Any, modules: list[int], designs: list[str]) -> dict[str, Any]:
    """``{label: design}``: the tiled placements of K modules a side, then the named designs."""
    out = {f"K={k} tiled": tiled_for(problem, 2 * k) for k in modules}
    for name in designs:
        if name not in problem.designs:
            raise MutomoError(
                f"--designs: the configuration has no design {name!r}; it has {', '.join(problem.designs)}"
            )
        design = problem.designs[name]((), None)
        out[f"K={design.centres.shape[0] // 2} {name}"] = design
    return out


def acceptance(args: argparse.Namespace) -> dict[str, Any]:
    config = load_config(args.config)
    problem = build_problem(config)
    method = getattr(problem.task, "method", None)
    if not isinstance(method, MaximumLikelihoodEM):
        raise MutomoError(
            f"{args.config}: the acceptance map counts the ML/EM problem's muons per voxel; "
            "use a configuration with task.inference = 'mlem' (e.g. configs/border_portal_robust.toml)"
        )
    if problem.hodoscope is None:
        raise MutomoError(f"{args.config}: has no [hodoscope] module; the acceptance map compares module placements")
    module_size = [float(v) for v in problem.hodoscope.size]
    if not args.exposure > 0:
        raise MutomoError(f"--exposure must be > 0 s; got {args.exposure}")
    settings = evaluation_settings(config)
    at = replace(problem, n_muons=max(10, round(problem.n_muons * args.exposure / problem.exposure_s)))
    key = (settings.seed, CALIBRATION_STREAM, args.cargo)
    sample = at.sample(key, index=args.cargo, clean=True)
    volume = sample.volume
    inside = (slice(1, volume.shape[0] - 1), slice(1, volume.shape[1] - 1), slice(1, volume.shape[2] - 1))
    rows: dict[str, Any] = {}
    with torch.no_grad():
        for label, design in _placements(problem, args.modules, args.designs).items():
            (data,) = at.measured(
                design.detector(), sample, at.n_muons, key_generator((*key, 0)), (settings.headline,),
                readout_generator=key_generator((*key, 1)),
            )  # fmt: skip
            em = method.problem(data, volume)
            count = em.count.reshape(volume.shape).double().numpy()
            cells = count[inside]
            rows[label] = {
                "modules": [[round(float(v), 4) for v in c] for c in design.centres.tolist()],
                "above": [bool(a) for a in design.above],
                "module_size_m": module_size,
                "reconstructed_muons": float(data.weight.sum()),
                "median_muons_per_voxel": float(np.median(cells)),
                "p10_muons_per_voxel": float(np.percentile(cells, 10)),
                "fraction_at_least_10": float(np.mean(cells >= 10)),
                "fraction_at_least_50": float(np.mean(cells >= 50)),
                "muons_per_layer": _muons_per_layer(em, volume.shape).tolist(),
                "map_xy": np.round(cells.mean(axis=2), 2).tolist(),
            }
            row = rows[label]
            print(
                f"{label}: {row['reconstructed_muons']:,.0f} muons, median {row['median_muons_per_voxel']:.1f} a "
                f"voxel, {100 * row['fraction_at_least_10']:.1f} % of the inside crossed by >= 10",
                flush=True,
            )
    origin, voxel = [float(v) for v in volume.origin], [float(v) for v in volume.voxel_size]
    return {
        "configuration": config.name,
        "scan_s": args.exposure,
        "cargo": {"stream": CALIBRATION_STREAM, "index": args.cargo},
        "trigger_hits": settings.headline.min_hits,
        "voxel_m": voxel[0],
        "inside_low_m": [origin[0] + voxel[0], origin[1] + voxel[1]],
        "region": {"x": list(problem.bounds.x), "y": list(problem.bounds.y)},
        "detection": _detection_sources(args.detection),
        "placements": rows,
    }


def _muons_per_layer(em: Any, shape: tuple[int, int, int]) -> np.ndarray:
    """``(nz - 2,)`` the weighted muons whose path crosses each horizontal layer of the inside
    (walls, floor and roof excluded) in at least one voxel: each muon once a layer, however many
    of its voxels it crosses there (an inclined muon crosses several)."""
    nx, ny, nz = shape
    voxel, muon = em.paths.voxel, em.paths.muon
    ix, iy, iz = voxel // (ny * nz), (voxel // nz) % ny, voxel % nz
    inside = (ix > 0) & (ix < nx - 1) & (iy > 0) & (iy < ny - 1) & (iz > 0) & (iz < nz - 1)
    pairs = torch.unique(muon[inside] * nz + iz[inside])
    weight = em.per_muon(em.weight).double()
    layers = torch.zeros(nz, dtype=torch.float64).index_add(0, pairs % nz, weight[pairs // nz])
    return np.round(layers[1 : nz - 1].numpy(), 1)


def _detection_sources(specs: list[str]) -> dict[str, str]:
    """``{label: "RECORD[#CELL]"}`` from ``--detection LABEL=RECORD[#CELL]`` (format checked
    here; the records are read when the table or figure is drawn, so a record written later, or
    recombined, shows its current numbers)."""
    out: dict[str, str] = {}
    for spec in specs:
        label, _, source = spec.rpartition("=")  # labels hold "=" (K=6 tiled), paths do not
        if not label or not source or source.startswith("#"):
            raise MutomoError(f"--detection takes LABEL=RECORD[#CELL], e.g. 'K=6 tiled=results/x.json'; got {spec!r}")
        out[label] = source
    return out


def _detection(result: dict[str, Any], label: str) -> tuple[str | None, dict[str, Any] | None]:
    """``(source, cell)`` of a placement's detection: its ``RECORD[#CELL]`` (a path relative to
    ``benchmarks/``, or absolute; ``None`` if none was given) and that operating-point cell
    (detection, AUC, test cargos; ``None`` if none was given or the record is missing)."""
    source = result["detection"].get(label)
    if source is None:
        return None, None
    path, _, cell = source.partition("#")
    file = Path(path) if Path(path).is_absolute() else HERE / path
    return source, (dict(record_cell(file, cell)[2]) if file.is_file() else None)


def table(result: dict[str, Any]) -> str:
    """The record as a Markdown table: each placement's muons and how evenly they sample the inside,
    with its detection where an operating-point record was given."""
    lines = [
        "| placement | muons reconstructed | muons a voxel, median (10th percentile) | inside crossed by >= 10 muons "
        "| by >= 50 | muons through a layer, least to most | detection at 1 % false alarm (cargos) | AUC |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, p in result["placements"].items():
        source, det = _detection(result, label)
        if det is None:
            detected, auc = ("not measured", "") if source is None else (f"record missing: {source}", "")
        else:
            d, e = det["detection_at_1pc_false_alarm"][:2]
            a, ae = det["auc"][:2]
            detected, auc = f"{round_to_error(d, e)} ({det['test_volumes']})", round_to_error(a, ae)
        layers = p["muons_per_layer"]
        lines.append(
            f"| {label} | {p['reconstructed_muons']:,.0f} | {p['median_muons_per_voxel']:.0f} "
            f"({p['p10_muons_per_voxel']:.0f}) | {100 * p['fraction_at_least_10']:.0f} % | "
            f"{100 * p['fraction_at_least_50']:.0f} % | {min(layers):,.0f}–{max(layers):,.0f} | {detected} | {auc} |"
        )
    return "\n".join(lines) + "\n"


def figure(result: dict[str, Any], path: Path) -> None:
    """One panel per placement: muons per voxel (mean over the inside's height) seen from above,
    the container's inside outlined, modules above solid and below dashed, detection in the title."""
    placements = result["placements"]
    n = len(placements)
    columns = min(n, 3)
    rows = math.ceil(n / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(6.2 * columns, 3.0 * rows + 0.6), squeeze=False)
    vmax = max(float(np.max(p["map_xy"])) for p in placements.values())
    voxel = result["voxel_m"]
    x_low, y_low = result["inside_low_m"]
    image = None
    for ax, (label, p) in zip(axes.flat, placements.items(), strict=False):
        grid = np.asarray(p["map_xy"])
        extent = (x_low, x_low + grid.shape[0] * voxel, y_low, y_low + grid.shape[1] * voxel)
        image = ax.imshow(grid.T, origin="lower", extent=extent, cmap="viridis", vmin=0, vmax=vmax)
        ax.add_patch(
            Rectangle((extent[0], extent[2]), extent[1] - extent[0], extent[3] - extent[2], fill=False, lw=1.2)
        )
        sx, sy = p["module_size_m"][:2]
        for (cx, cy, _), above in zip(p["modules"], p["above"], strict=True):
            inset = 0.0 if above else INSET  # a lower module under an upper one stays visible
            ax.add_patch(
                Rectangle(
                    (cx - sx / 2 + inset, cy - sy / 2 + inset), sx - 2 * inset, sy - 2 * inset, fill=False,
                    lw=1.0, ls="-" if above else "--", ec="white" if above else "orange",
                )
            )  # fmt: skip
        ax.set_xlim(*result["region"]["x"])
        ax.set_ylim(*result["region"]["y"])
        ax.set_aspect("equal")
        ax.set_xlabel("x along the container (m)")
        ax.set_ylabel("y across (m)")
        det = _detection(result, label)[1]
        title = f"{label}: median {p['median_muons_per_voxel']:.0f} muons a voxel"
        if det is not None:
            d, e = det["detection_at_1pc_false_alarm"][:2]
            title += f"\ndetection at 1 % false alarm {round_to_error(d, e)} ({det['test_volumes']} cargos)"
        ax.set_title(title, fontsize=9)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    if image is not None:
        bar = fig.colorbar(image, ax=axes, shrink=0.85)
        bar.set_label(f"muons crossing a 10 cm voxel in {result['scan_s']:g} s\n(mean over the cargo's height)")
    fig.suptitle(
        f"Where each placement's muons sample the cargo ({result['configuration']}, clean cargo "
        f"{result['cargo']['index']}, {result['scan_s']:g} s scan)\nmodules over the roof: solid white; "
        f"in the road pit: dashed orange, drawn {100 * INSET:.0f} cm inside their edges",
        fontsize=10,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="configuration file (ML/EM inference, e.g. configs/border_portal_robust.toml)")
    parser.add_argument("--modules", type=int, nargs="*", default=[6, 8], help="tiled placements: modules a side")
    parser.add_argument("--designs", nargs="*", default=[], help="the configuration's named designs")
    parser.add_argument("--exposure", type=float, default=300.0, help="scan time (s)")
    parser.add_argument("--cargo", type=int, default=0, help="index of the clean reference cargo")
    parser.add_argument("--detection", nargs="*", default=[], help="LABEL=RECORD[#CELL]: a placement's detection")
    parser.add_argument("--out", type=Path, default=None, help="record path")
    parser.add_argument("--figure", type=Path, default=None, help="PNG of the maps")
    args = parser.parse_args(argv)
    load_at_start = load_average()
    try:
        result = acceptance(args)
    except MutomoError as error:
        if argv is not None:
            raise
        sys.exit(f"border_portal_acceptance.py: {error}")
    record = new_record("border_portal_acceptance", Path(__file__), result, load_at_start)
    if argv is not None:
        record["command"] = shlex.join(["python", "benchmarks/border_portal_acceptance.py", *argv])
    path = args.out or HERE / "results" / "border_portal" / "acceptance.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"# record: {path}")
    if args.figure is not None:
        figure(result, args.figure)
        print(f"# figure: {args.figure}")
    return result


if __name__ == "__main__":
    main()
