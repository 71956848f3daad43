"""How much one muon through the border portal's 10 cm cube can say about its material: the
expected log-likelihood ratio (Kullback-Leibler divergence) of uranium against lead and against
steel per muon, with its momentum unknown (a mixture over the cosmic spectrum) and known (issue 29).

The muon crosses the cube (10 cm, path 0.1 / cos(zenith) m) and nothing else; its scattering is
Highland's (PDG Review of Particle Physics 2024, "Passage of particles through matter", eq. 34.15,
with ``(1 + 0.038 ln(x / X0))`` on the standard deviation), Gaussian in each transverse direction.
Two data sets per muon:

* ``angle_and_displacement``: the deflection and the displacement in both directions, noise-free:
  four Gaussian components whose covariance scales with the same ``theta0^2``, so the likelihood
  reads only ``r = D^T C^-1 D``, ``r / theta0^2 ~ chi^2_4``;
* ``angles_with_noise``: the two deflection angles with each track pair's angular resolution added
  (three panels over 0.3 m with 1 mm hits, the border portal's modules: a slope error of
  ``1 mm / sqrt(2 * 0.15^2 m^2)`` = 4.7 mrad per track, 6.7 mrad for the difference of two).

Unknown momentum: ``p(D | material) = E_p[N(D; 0, theta0(p, material)^2)]`` over the flux's
momenta and zenith angles above a momentum cut (the muons that cross the cargo and reach a module
below; 0.3 and 1 GeV/c bracket it); known momentum: the Gaussians themselves. The divergence is
estimated by Monte Carlo (the mixture over a histogram of 400,000 flux draws, ``--bins`` in
ln p, the expectation over ``--draws`` muons), with its standard error and the per-muon spread of
the log-ratio.

What it bounds: every other material on the muon's path adds independent scattering, and every
tracking or path error adds noise. Each is a channel applied to the data under both hypotheses,
so it can only lower the divergence (data-processing inequality; T. M. Cover and J. A. Thomas,
Elements of Information Theory, 2nd ed., Wiley 2006, section 2.8): ``n`` muons through the cube
give an expected evidence (the likelihood statistic's ``E_j``) of at most ``n`` times the
``angle_and_displacement`` divergence, with a per-muon spread of the log-ratio that adds in
quadrature.

``--records R...`` (operating-point records of the likelihood statistic, each with one cell and its
cargos' muon counts) adds an estimate, not a measurement, of what a statistic that realised this
bound would detect: each uranium cargo's evidence drawn as a Gaussian sum over the muons its cube's
voxel counted (mean ``n`` times the divergence, variance ``n`` times the per-muon spread squared,
uranium against lead, p > 0.3 GeV/c), against the record's own 1 % threshold (its highest clean score below
100 clean cargos: :func:`mutomo.tasks.metrics.false_alarm_threshold`).
Optimistic: the count is the reconstruction's (muons whose path model crosses the voxel, clipping
its corners or not) and every muon is given the full 10 cm.

Usage::

    python benchmarks/border_portal_information.py --out benchmarks/results/border_portal/information.json \\
        --records benchmarks/results/border_portal/operating_point_likelihood_K6_300.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch

from mutomo.benchrecord import load_average, new_record
from mutomo.muons.flux import TabulatedFlux
from mutomo.tasks.metrics import false_alarm_threshold
from mutomo.units import HIGHLAND_E0, HIGHLAND_LOG_COEFF, MUON_MASS

HERE = Path(__file__).resolve().parent
CUBE = 0.1  # m, the border portal's uranium cube (src/mutomo/config/builtin/border_portal.toml)
#: Inverse radiation lengths (m^-1) of the scene's materials, as Scene.material_hypotheses gives
#: them for border_portal (PDG atomic and nuclear properties: X0 of U 3.166 mm, Pb 5.612 mm, iron 17.57 mm).
INVERSE_X0 = {"uranium": 315.83, "lead": 178.18, "steel": 56.89}
#: One module's slope error (rad): 1 mm hits on three panels at 0, 0.15, 0.3 m, sigma / sqrt(sum (z - mean)^2).
TRACK_SLOPE_ERROR = 1e-3 / np.sqrt(2 * 0.15**2)


def highland_variance(momentum: np.ndarray, cos_zenith: np.ndarray, inverse_x0: float) -> np.ndarray:
    """``theta0^2`` (rad^2) of a muon crossing the cube at ``momentum`` (GeV/c) and zenith angle."""
    t = CUBE / cos_zenith * inverse_x0
    beta_p = momentum**2 / np.sqrt(momentum**2 + MUON_MASS**2)
    return (HIGHLAND_E0 / beta_p * np.sqrt(t) * (1 + HIGHLAND_LOG_COEFF * np.log(t))) ** 2


def divergence(
    momentum: np.ndarray, cos_zenith: np.ndarray, first: str, second: str, dims: int, noise: float,
    draws: int, bins: int, rng: np.random.Generator,
) -> dict[str, list[float]]:  # fmt: skip
    """Per-muon log-ratio ``ln p(D | first) - ln p(D | second)`` with D drawn under ``first``:
    mean (the divergence) with its Monte Carlo error, and spread, for unknown and known momentum.
    The unknown-momentum density is the mixture over a ``bins x bins / 4`` histogram of the
    flux's (ln p, cos zenith), each bin at its mean momentum and angle, weighted by its count."""
    i_draw = rng.choice(momentum.size, draws)
    v_first = highland_variance(momentum[i_draw], cos_zenith[i_draw], INVERSE_X0[first]) + noise
    v_second = highland_variance(momentum[i_draw], cos_zenith[i_draw], INVERSE_X0[second]) + noise
    r = v_first * rng.chisquare(dims, draws)  # D^T D over the dims components, drawn under `first`
    edges = (
        np.linspace(np.log(momentum.min()), np.log(momentum.max()) + 1e-9, bins + 1),
        np.linspace(0, 1, bins // 4 + 1),
    )
    counts, *_ = np.histogram2d(np.log(momentum), cos_zenith, bins=edges)
    sums_p, *_ = np.histogram2d(np.log(momentum), cos_zenith, bins=edges, weights=momentum)
    sums_c, *_ = np.histogram2d(np.log(momentum), cos_zenith, bins=edges, weights=cos_zenith)
    full = counts > 0
    p_bin, c_bin, log_w = sums_p[full] / counts[full], sums_c[full] / counts[full], np.log(counts[full] / counts.sum())

    def log_mixture(material: str) -> np.ndarray:
        # ln sum_b w_b (Gaussian density of D at bin b), without the factor common to both materials.
        v = highland_variance(p_bin, c_bin, INVERSE_X0[material]) + noise
        out = np.empty(draws)
        for start in range(0, draws, 2_000):
            terms = log_w[None, :] - 0.5 * dims * np.log(v)[None, :] - 0.5 * r[start : start + 2_000, None] / v[None, :]
            top = terms.max(1, keepdims=True)
            out[start : start + 2_000] = top[:, 0] + np.log(np.exp(terms - top).sum(1))
        return out

    unknown = log_mixture(first) - log_mixture(second)
    known = -0.5 * dims * np.log(v_first / v_second) - 0.5 * r * (1 / v_first - 1 / v_second)
    return {
        name: [float(x.mean()), float(x.std(ddof=1) / np.sqrt(x.size)), float(x.std(ddof=1))]
        for name, x in (("unknown_momentum", unknown), ("known_momentum", known))
    }


def _bound_detection(path: Path, row: dict) -> dict:
    """The detection a statistic realising ``row``'s divergence would reach on a record's cargos
    (module docstring), beside the record's own."""
    (cell,) = json.loads(path.read_text())["results"]["cells"].values()
    scores, labels = np.array(cell["scores"]), np.array(cell["labels"]).astype(bool)
    if cell.get("muons_in_cube_voxel_per_cargo") is None:
        raise SystemExit(
            f"{path}: no per-cargo muon counts (recorded from 2026-12-07, session 41, on); pass its later runs"
        )
    counts = np.array([n for n, u in zip(cell["muons_in_cube_voxel_per_cargo"], labels, strict=True) if u], dtype=float)
    threshold = false_alarm_threshold(scores[~labels], 0.01)  # the record's own 1 % threshold
    mean, spread = row["unknown_momentum"][0], row["unknown_momentum"][2]
    above = [
        0.5 * math.erfc((threshold - n * mean) / (math.sqrt(2 * n) * spread)) if n > 0 else 0.0 for n in counts
    ]  # fmt: skip
    return {
        "record": path.name,
        "cargos_with_target": int(labels.sum()),
        "threshold": threshold,
        "median_muons_in_cube_voxel": float(np.median(counts)),
        "bound_detection": float(np.mean(above)),
        "measured_detection": float(np.mean(scores[labels] > threshold)),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=40_000, help="muons drawn for each expectation")
    parser.add_argument(
        "--bins", type=int, default=160, help="ln p bins of the unknown-momentum mixture (a quarter as many in cos)"
    )
    parser.add_argument("--cuts", type=float, nargs="+", default=[0.3, 1.0], help="momentum cuts (GeV/c)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "border_portal" / "information.json")
    parser.add_argument("--records", type=Path, nargs="*", default=[], help="operating-point records to bound")
    args = parser.parse_args(argv)
    load_at_start = load_average()
    drawn = TabulatedFlux(momentum_range=(0.1, 1000.0)).sample(
        400_000, torch.Generator().manual_seed(20261207), dtype=torch.float64
    )
    momentum, cos_zenith = drawn[0].numpy(), drawn[1].numpy()
    rng = np.random.default_rng(20261207)
    data = {"angle_and_displacement": (4, 0.0), "angles_with_noise": (2, 2 * TRACK_SLOPE_ERROR**2)}
    rows = []
    for cut in args.cuts:
        keep = momentum > cut
        for name, (dims, noise) in data.items():
            for second in ("lead", "steel"):
                d = divergence(
                    momentum[keep], cos_zenith[keep], "uranium", second, dims, noise, args.draws, args.bins, rng
                )
                rows.append({"momentum_cut": cut, "data": name, "against": second, **d})
                print(
                    f"p > {cut:g} GeV/c, {name}, uranium against {second}: per muon "
                    f"{d['unknown_momentum'][0]:.4f} +- {d['unknown_momentum'][1]:.4f} nats (momentum unknown), "
                    f"{d['known_momentum'][0]:.3f} +- {d['known_momentum'][1]:.3f} (known)",
                    flush=True,
                )
    result = {"cube_m": CUBE, "inverse_x0": INVERSE_X0, "track_slope_error_rad": TRACK_SLOPE_ERROR, "rows": rows}
    bound = next(r for r in rows if r["data"] == "angle_and_displacement" and r["against"] == "lead")
    result["bound_detection"] = [_bound_detection(path, bound) for path in args.records]
    record = new_record("border_portal_information", Path(__file__), result, load_at_start)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    for b in result["bound_detection"]:
        print(
            f"{b['record']}: a statistic at the bound would detect {b['bound_detection']:.2f} of the "
            f"{b['cargos_with_target']} cubes above the highest clean score ({b['threshold']:.2f} nats); measured "
            f"{b['measured_detection']:.2f}"
        )
    print(f"# record: {args.out}")
    return result


if __name__ == "__main__":
    main()
