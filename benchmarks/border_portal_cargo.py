"""Why one border-portal cargo scores what it scores (issue 29): the voxels and muons behind a
likelihood-statistic score.

For one test cargo (key ``(seed, 2, i)``, as ``border_portal.py operating-point`` draws it), seen
by the tiled placement of K modules a side for S seconds, this refits ML/EM as the statistic does
(:meth:`~mutomo.reco.MaximumLikelihoodEM.fit`) and reports:

* the cargo's score (the smooth maximum of the voxels' evidence, nats) and whether it holds the cube;
* the cube's voxels and the ``--top`` voxels of highest evidence: true and fitted 1/X0 (m^-1),
  the weighted muons that crossed each, the evidence, and each hypothesis's log-likelihood
  (nats, relative to the best: the target's materials first, then the innocent ones);
* for one voxel (``--voxel x,y,z``, else the highest-evidence one), every muon that crosses it:
  its deflection angles (mrad) and displacements (mm) in the incoming track's frame, its path
  length in the voxel (m) and, with an outlier component (``task.outlier_fraction``), its
  posterior of being an outlier.

It found that a clean cargo's 17.6-nat score came from one muon deflected by 3.7 rad through a
floor voxel (benchmarks/README.md, "A tail in the likelihood").

Usage::

    OMP_NUM_THREADS=1 python benchmarks/border_portal_cargo.py configs/border_portal_likelihood.toml \\
        --cargo 101 --modules 8 --exposure 300 [--voxel 59,19,0] [--out record.json]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mutomo.benchrecord import load_average, new_record
from mutomo.config import load_config
from mutomo.config.build import build_problem, evaluation_settings
from mutomo.errors import MutomoError
from mutomo.materials import Material
from mutomo.optimise.evaluate import TEST_STREAM
from mutomo.optimise.problem import key_generator
from mutomo.reco import MaximumLikelihoodEM
from mutomo.reco.mlem import Hypothesis, hypothesis_level, outlier_posterior, voxel_evidence, voxel_log_likelihoods
from mutomo.studies.starts import tiled_for
from mutomo.tasks.presence_statistics import PresenceMaps, likelihood_scores


def diagnose(args: argparse.Namespace) -> dict[str, Any]:
    config = load_config(args.config)
    problem = build_problem(config)
    task = problem.task
    method = getattr(task, "method", None)
    hypotheses = getattr(task, "hypotheses", None)
    if not isinstance(method, MaximumLikelihoodEM) or hypotheses is None:
        raise MutomoError(
            f"{args.config}: needs task.statistic = 'likelihood' (inference 'mlem'); the diagnosis weighs its evidence"
        )
    if args.exposure <= 0 or args.cargo < 0 or args.modules < 1:
        raise MutomoError(
            f"--exposure must be > 0 s, --cargo >= 0 and --modules >= 1; "
            f"got {args.exposure}, {args.cargo}, {args.modules}"
        )
    settings = evaluation_settings(config)
    at = replace(problem, n_muons=max(10, round(problem.n_muons * args.exposure / problem.exposure_s)))
    detector = tiled_for(problem, 2 * args.modules).detector()
    targets, innocents = hypotheses
    levels = [*targets, *innocents]
    with torch.no_grad():
        key = (settings.seed, TEST_STREAM, args.cargo)
        sample = at.sample(key, index=args.cargo, clean=False)
        (data,) = at.measured(
            detector, sample, at.n_muons, key_generator((*key, 0)), (settings.headline,),
            readout_generator=key_generator((*key, 1)),
        )  # fmt: skip
        work, result = method.fit(data, sample.volume)
        shape = tuple(result.inverse_x0.shape)
        rho, measured = result.inverse_x0.reshape(-1), result.measured.reshape(-1)
        factor = result.log_term_factor()
        evidence = torch.where(measured, voxel_evidence(rho, work, factor, targets, innocents), 0.0)
        fitted = method.voxel_map(result).score.reshape(-1)  # 1/X0, 0 where unmeasured
        true = (1 / sample.volume.x0).reshape(-1).double()
        score = float(
            likelihood_scores(PresenceMaps(evidence[None], torch.zeros_like(evidence)[None], measured[None]))[0]
        )
        cube = torch.nonzero(sample.target_mask().reshape(-1)).reshape(-1).tolist()
        if not bool(measured.any()):
            raise MutomoError(
                f"cargo {args.cargo}: no voxel is measured at {args.exposure:g} s with K = {args.modules}"
            )
        ranked = torch.where(measured, evidence, -torch.inf)  # the measured voxels of highest evidence
        top = torch.topk(ranked, min(args.top, int(measured.sum()))).indices.tolist()
        if args.voxel is not None:
            index = tuple(int(v) for v in args.voxel.split(","))
            if len(index) != 3 or not all(0 <= i < n for i, n in zip(index, shape, strict=True)):
                raise MutomoError(f"--voxel must be x,y,z inside the grid {shape}; got {args.voxel!r}")
            inspected = int(np.ravel_multi_index(index, shape))
        else:
            inspected = top[0]
        wanted = torch.zeros_like(measured)
        wanted[[*cube, *top, inspected]] = True
        log_like = voxel_log_likelihoods(rho, work, factor, levels, wanted)

        def voxel(j: int) -> dict[str, Any]:
            relative = log_like[:, j] - log_like[:, j].max()
            return {
                "index": [int(v) for v in np.unravel_index(j, shape)],
                "true_inverse_x0": float(true[j]),
                "fitted_inverse_x0": float(fitted[j]),
                "muons": float(result.weight.reshape(-1)[j]),
                "evidence": float(evidence[j]),
                "log_likelihood_minus_best": [float(v) for v in relative],
            }

        paths = work.paths
        crossing = paths.voxel == inspected
        muons = paths.muon[crossing]
        length = paths.length[crossing]
        posterior = outlier_posterior(rho, work)
        k = work.classes
        rows = work.deflection[::k]
        muon_rows = [
            {
                "muon": int(work.muons[m]) if work.muons is not None else int(m),
                "angle_mrad": [float(rows[m, 0, 0]) * 1e3, float(rows[m, 1, 0]) * 1e3],
                "displacement_mm": [float(rows[m, 0, 1]) * 1e3, float(rows[m, 1, 1]) * 1e3],
                "length_in_voxel_m": float(length[n]),
                "outlier_posterior": float(posterior[m]),
            }
            for n, m in enumerate(muons.tolist())
        ]
    return {
        "config": str(args.config),
        "cargo": args.cargo,
        "modules": args.modules,
        "exposure_s": args.exposure,
        "outlier_fraction": work.outlier_fraction,
        "present": bool(sample.present),
        "score": score,
        "hypotheses_inverse_x0": {
            "targets": [hypothesis_level(h) for h in targets],
            "innocents": [hypothesis_level(h) for h in innocents],
        },
        "hypotheses_materials": {"targets": [_name(h) for h in targets], "innocents": [_name(h) for h in innocents]},
        "range_cut": work.ranges is not None,
        "cube": [voxel(j) for j in cube],
        "top": [voxel(j) for j in top],
        "inspected": {**voxel(inspected), "muon_list": muon_rows},
        "outliers": {"above_half": int((posterior > 0.5).sum()), "muons": int(posterior.numel())},
    }


def _name(hypothesis: Hypothesis) -> str:
    return hypothesis.name if isinstance(hypothesis, Material) else f"1/X0 = {hypothesis:g} m^-1"


def _print(r: dict[str, Any]) -> None:
    print(
        f"cargo {r['cargo']} ({'cube' if r['present'] else 'clean'}), K = {r['modules']}, {r['exposure_s']:g} s, "
        f"outlier fraction {r['outlier_fraction']:g}: score {r['score']:.2f} nats; "
        f"{r['outliers']['above_half']} of {r['outliers']['muons']} muons with an outlier posterior above 1/2"
    )
    print("hypotheses:", r.get("hypotheses_materials"), "range cut:", r.get("range_cut", False))
    print("hypotheses 1/X0 (m^-1): targets", [round(v, 1) for v in r["hypotheses_inverse_x0"]["targets"]],
          "innocents", [round(v, 1) for v in r["hypotheses_inverse_x0"]["innocents"]])  # fmt: skip
    print(f"{'voxel':>18} {'true 1/X0':>10} {'fit 1/X0':>10} {'muons':>7} {'evidence':>9}  log-likelihood - best")
    for part in ("cube", "top"):
        for v in r[part]:
            ll = " ".join(f"{x:7.2f}" for x in v["log_likelihood_minus_best"])
            print(f"{part:>4} {str(tuple(v['index'])):>13} {v['true_inverse_x0']:10.1f} {v['fitted_inverse_x0']:10.1f} "
                  f"{v['muons']:7.1f} {v['evidence']:9.2f}  {ll}")  # fmt: skip
    v = r["inspected"]
    print(
        f"muons crossing voxel {tuple(v['index'])}: angle u, v (mrad); displacement u, v (mm); length (m); "
        "outlier posterior"
    )
    for m in v["muon_list"]:
        angle, shift = m["angle_mrad"], m["displacement_mm"]
        print(f"  {m['muon']:8d} {angle[0]:9.1f} {angle[1]:9.1f} {shift[0]:8.1f} {shift[1]:8.1f} "
              f"{m['length_in_voxel_m']:6.3f} {m['outlier_posterior']:6.3f}")  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="a configuration with task.statistic = 'likelihood'")
    parser.add_argument("--cargo", type=int, required=True, help="test cargo index (as operating-point numbers them)")
    parser.add_argument("--modules", type=int, default=8, help="modules a side (K), tiled")
    parser.add_argument("--exposure", type=float, default=300.0, help="scan time (s)")
    parser.add_argument(
        "--voxel", default=None, help="x,y,z of the voxel whose muons are listed (default: top evidence)"
    )
    parser.add_argument("--top", type=int, default=5, help="voxels of highest evidence to report")
    parser.add_argument("--out", type=Path, default=None, help="write the record here too")
    args = parser.parse_args(argv)
    load_at_start = load_average()
    try:
        result = diagnose(args)
    except MutomoError as error:
        if argv is not None:
            raise
        sys.exit(f"border_portal_cargo.py: {error}")
    _print(result)
    if args.out is not None:
        record = new_record("border_portal_cargo", Path(__file__), result, load_at_start)
        if argv is not None:
            record["command"] = shlex.join(["python", "benchmarks/border_portal_cargo.py", *argv])
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=1) + "\n")
        print(f"# record: {args.out}")
    return result


if __name__ == "__main__":
    main()
