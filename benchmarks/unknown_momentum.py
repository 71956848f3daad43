"""Reconstruction without the truth: does each method still find a small dense cube when the
momentum is not measured? (issue 13, deliverable 2)

Set-up: a 1 m x 1 m x 1 m volume (z 0.4-1.4 m) of 10 cm voxels with a background of concrete,
water, or iron clutter (each voxel iron with probability 0.3, else air, drawn per seed), and one
10 cm cube (one voxel) of uranium or lead at a random voxel off the volume's faces (ix, iy, iz
in 1..n-2: face voxels are crossed by fewer muons that enter through the top and leave through
the bottom). Three 100 um panels 10 cm apart on each side, 1.6 m wide, efficiency 0.9; muons
from GCCLY15 (0.1-1000 GeV/c, 0-40 deg) for ``--minutes`` of exposure through the generation
plane (:func:`mutomo.muons.generation.muon_count`); muons that stop are lost.

Each volume is simulated once and measured once; every momentum assignment is then applied to
the same measured muons (paired):

* ``true``: the mean of the momenta in and out (an oracle);
* ``constant``: 4 GeV/c (:class:`~mutomo.reco.ConstantMomentum`);
* ``flux_mean``: the flux mean at the measured zenith (:class:`~mutomo.reco.FluxMeanMomentum`);
* ``range_mean``: ``ExpectedMomentum(..., deflection=False)``: the flux mean at the measured
  zenith above the range-limited minimum momentum of the nominal background (mid-path);
* ``expected``: :class:`~mutomo.reco.ExpectedMomentum` with the nominal background
  (concrete, water, or ``{iron: 0.3, air: 0.7}``: what the operator assumes, not the drawn volume);
* ``expected_map``: the same, once iterated: the extended-PoCA X0 map reconstructed with the
  ``expected`` momenta gives each muon its path's thickness, and the momenta are re-estimated;
* ``marginal`` (ML/EM only): no momentum per muon; the EM marginalises over each muon's momentum
  with the flux prior at its zenith above the range cut of the nominal background
  (``ExpectedMomentum.prior``, ``MARGINAL_BINS`` classes; ``momentum = "marginal"`` in a
  configuration);
* ``posterior`` (the other methods): each muon's posterior effective momentum after that ML/EM
  reconstruction (``MLEMResult.momentum``: the classes' Highland scale averaged over their
  posterior at the reconstructed map; ``momentum = "posterior"`` in a configuration).

"Ranks top": the cube's voxel is measured and ranks highest of the measured voxels (``top1``);
``top3``: among the three highest; ``near``: the highest-ranked voxel is the cube's or touches it
(Chebyshev distance <= 1 voxel: PoCA's depth resolution spreads a small object's muons into the
voxels above and below it). The rank is :func:`mutomo.tasks.statistics.ranking_score`'s: for the
X0 methods, which report each voxel's error, the empirical-Bayes shrunk density, so that a voxel
seen by a handful of muons does not win on its noise; ASR and BCA by their raw score.
``top1_raw``: the cube first by the raw score (1/X0) alone, as before 2026-11-30. Fractions over
seeds carry the binomial error ``sqrt(f (1 - f) / n)`` (0 at f = 0 or 1: then read the count).
For the X0 methods the imaging error is the median ``|ln(X0_est / X0_true)|`` over the cube
voxels (one per volume) and over the measured background voxels (all volumes); CNR =
(score_cube - mean_bg) / std_bg per volume over the measured background voxels, mean and its
standard error over volumes.

Usage: python benchmarks/unknown_momentum.py [--seeds 10] [--minutes 10] [--methods ...]
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from mutomo.detector import Detector, DetectorPanel
from mutomo.muons import FluxSource, TabulatedFlux
from mutomo.muons.generation import muon_count
from mutomo.reco import (
    AngleStatisticsReconstruction,
    BinnedClustering,
    ConstantMomentum,
    ExpectedMomentum,
    FluxMeanMomentum,
    MaximumLikelihoodEM,
    ScatterData,
    VoxelMap,
    measure,
)
from mutomo.reco.momentum import MARGINAL_BINS
from mutomo.reco.x0 import PocaX0
from mutomo.simulate import acceptance_plane, simulate
from mutomo.tasks.statistics import ranking_score
from mutomo.volume import PassiveVolume

THETA_MAX = math.radians(40)
FLUX = TabulatedFlux(momentum_range=(0.1, 1000.0), theta_max=THETA_MAX)
#: Nominal content of each background (volume fractions), as the operator would assume it.
BACKGROUNDS: dict[str, dict[str, float]] = {
    "concrete": {"concrete": 1.0},
    "iron_clutter": {"iron": 0.3, "air": 0.7},
    "water": {"water": 1.0},
}
CUBES = ("uranium", "lead")
MOMENTA = ("true", "constant", "flux_mean", "range_mean", "expected", "expected_map", "marginal", "posterior")
X0_METHODS = ("poca", "extended_poca", "mlem")
#: Methods that can marginalise over the momentum (the others have no ``marginal`` row).
MARGINAL_METHODS = ("mlem",)


def methods() -> dict[str, object]:
    """The voxel methods, with their defaults."""
    return {
        "poca": PocaX0(extended=False),
        "extended_poca": PocaX0(),
        "asr": AngleStatisticsReconstruction(),
        "bca": BinnedClustering(),
        "mlem": MaximumLikelihoodEM(),
    }


def cube_volume(
    background: str, cube: str, seed: int, n: int = 10, voxel: float = 0.1, with_cube: bool = True
) -> tuple[PassiveVolume, int]:
    """A cube of ``n`` voxels a side (z from 0.4 m) of ``background`` with a one-voxel ``cube``
    at a random voxel off the faces; returns the volume and the cube's flat voxel index.
    ``with_cube=False``: the same draw of the background without the cube (a clean reference)."""
    rng = np.random.default_rng([seed, n, list(BACKGROUNDS).index(background), CUBES.index(cube)])
    size = n * voxel
    if background == "iron_clutter":
        fractions = BACKGROUNDS[background]
        index = torch.from_numpy((rng.random((n, n, n)) >= fractions["iron"]).astype(np.int64))  # 0 iron, 1 air
        volume = PassiveVolume(["iron", "air"], index, voxel, (0.0, 0.0, 0.4))
    else:
        volume = PassiveVolume.uniform(background, (size, size, size), voxel, z_low=0.4)
    ix, iy, iz = (int(v) for v in rng.integers(1, n - 1, size=3))
    if not with_cube:
        return volume, (ix * n + iy) * n + iz
    low = np.array([ix, iy, iz], dtype=float) * voxel + np.array([0.0, 0.0, 0.4])
    volume = volume.with_box(cube, tuple(low), tuple(low + voxel))
    return volume, (ix * n + iy) * n + iz


def detector_for(volume: PassiveVolume) -> Detector:
    """Three 100 um, 90 % efficient panels 10 cm apart on each side, 0.6 m wider than the volume."""
    (x_lo, x_hi), (y_lo, y_hi) = volume.x_range, volume.y_range
    centre, span = (0.5 * (x_lo + x_hi), 0.5 * (y_lo + y_hi)), (x_hi - x_lo + 0.6, y_hi - y_lo + 0.6)

    def panel(z: float) -> DetectorPanel:
        return DetectorPanel((*centre, z), span, 1e-4, 0.9)

    top, bottom = volume.z_high, volume.z_low
    return Detector(
        [panel(top + 0.3), panel(top + 0.2), panel(top + 0.1)],
        [panel(bottom - 0.1), panel(bottom - 0.2), panel(bottom - 0.3)],
    )


def simulate_and_measure(volume: PassiveVolume, minutes: float, seed: int) -> ScatterData:
    """``minutes`` of exposure; the measured muons with their true (mean in/out) momenta."""
    det = detector_for(volume)
    source = FluxSource(acceptance_plane(det, THETA_MAX), FLUX)
    n = muon_count(60.0 * minutes, source)
    with torch.no_grad():
        r = simulate(det, volume, source, n, torch.Generator().manual_seed(seed))
        momentum = 0.5 * (r.muons_in.momentum + r.muons_out.momentum)
        return measure(r.hits_above, r.hits_below, volume, momentum, r.muons_in.weight * (r.muons_out.weight > 0))


def momenta(data: ScatterData, volume: PassiveVolume, background: str) -> dict[str, torch.Tensor]:
    """Every momentum assignment of the same measured muons (see the module docstring)."""
    inc, out = data.incoming, data.outgoing
    expected = ExpectedMomentum(volume, BACKGROUNDS[background], FLUX)
    p_expected = expected(inc, out)
    with torch.no_grad():
        x0_map = PocaX0()(replace(data, momentum=p_expected), volume).x0
    assert x0_map is not None
    return {
        "true": data.momentum,
        "constant": ConstantMomentum()(inc, out),
        "flux_mean": FluxMeanMomentum(FLUX)(inc, out),
        "range_mean": ExpectedMomentum(volume, BACKGROUNDS[background], FLUX, deflection=False)(inc, out),
        "expected": p_expected,
        "expected_map": expected.with_map(x0_map)(inc, out),
    }


def marginal(data: ScatterData, volume: PassiveVolume, background: str) -> ScatterData:
    """The measured muons with no momentum but the flux mean, and the momentum prior ML/EM
    marginalises over (``momentum = "marginal"``)."""
    prior = ExpectedMomentum(volume, BACKGROUNDS[background], FLUX, n_bins=MARGINAL_BINS)
    return replace(data, momentum=FluxMeanMomentum(FLUX)(data.incoming, data.outgoing), momentum_prior=prior)


@dataclass
class Outcome:
    """One map's verdict on one volume."""

    top1: bool
    top3: bool
    near: bool
    top1_raw: bool  # the cube first by the raw score, without ranking_score's shrinkage
    cnr: float
    cube_log_error: float  # |ln(X0_est / X0_true)| of the cube voxel (nan: no X0 or unmeasured)
    background_log_errors: np.ndarray  # the same over the measured background voxels


def judge(vmap: VoxelMap, volume: PassiveVolume, cube: int) -> Outcome:
    """Rank, CNR and imaging error of a map (see the module docstring)."""
    measured = vmap.measured.reshape(-1)
    score = vmap.score.detach().reshape(-1).double()
    raw = torch.where(measured, score, torch.full_like(score, -math.inf))
    top = torch.topk(ranking_score(vmap).detach().reshape(-1), 3).indices.tolist()
    ok = bool(measured[cube])
    bg = measured.clone()
    bg[cube] = False
    values = score[bg]
    cnr = float((score[cube] - values.mean()) / values.std()) if ok and values.numel() > 1 else math.nan
    cube_err, bg_err = math.nan, np.array([])
    if vmap.x0 is not None:
        ln_ratio = torch.log(vmap.x0.detach().reshape(-1).double().clamp(min=1e-30) / volume.x0.reshape(-1).double())
        cube_err = float(ln_ratio[cube].abs()) if ok else math.nan
        bg_err = ln_ratio[bg].abs().numpy()
    shape = vmap.score.shape
    best = torch.tensor(np.unravel_index(top[0], shape))
    where = torch.tensor(np.unravel_index(cube, shape))
    near = bool(measured[top[0]]) and int((best - where).abs().max()) <= 1
    top1_raw = ok and int(raw.argmax()) == cube
    return Outcome(ok and top[0] == cube, ok and cube in top, near, top1_raw, cnr, cube_err, bg_err)


def run_volume(
    background: str, cube_material: str, seed: int, minutes: float, names: Sequence[str], n: int = 10
) -> dict[tuple[str, str], Outcome]:
    """Simulate one volume and judge every (method, momentum) on it."""
    volume, cube = cube_volume(background, cube_material, seed, n)
    data = simulate_and_measure(volume, minutes, seed)
    all_methods = methods()
    results = {}
    with torch.no_grad():
        for momentum_name, p in momenta(data, volume, background).items():
            with_p = replace(data, momentum=p)
            for name in names:
                results[(name, momentum_name)] = judge(all_methods[name](with_p, volume), volume, cube)  # type: ignore[operator]
        mlem = all_methods["mlem"]
        assert isinstance(mlem, MaximumLikelihoodEM)
        fit = mlem.reconstruct(marginal(data, volume, background), volume)
        for name in set(names) & set(MARGINAL_METHODS):
            results[(name, "marginal")] = judge(mlem.voxel_map(fit), volume, cube)
        assert fit.momentum is not None  # marginalised: each muon's posterior momentum
        with_p = replace(data, momentum=fit.momentum)
        for name in set(names) - set(MARGINAL_METHODS):
            results[(name, "posterior")] = judge(all_methods[name](with_p, volume), volume, cube)  # type: ignore[operator]
    return results


def fraction(hits: Sequence[bool]) -> str:
    n = len(hits)
    f = sum(hits) / n
    return f"{f:.2f} +- {math.sqrt(f * (1 - f) / n):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--voxels", type=int, default=10, help="voxels a side (10 cm each)")
    parser.add_argument("--methods", nargs="+", default=list(methods()))
    parser.add_argument("--backgrounds", nargs="+", default=list(BACKGROUNDS))
    parser.add_argument("--cubes", nargs="+", default=list(CUBES))
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.time()
    rows = []
    for background in args.backgrounds:
        for cube in args.cubes:
            per_seed = [
                run_volume(background, cube, s, args.minutes, args.methods, args.voxels) for s in range(args.seeds)
            ]
            for name in args.methods:
                for momentum_name in MOMENTA:
                    if (name, momentum_name) not in per_seed[0]:
                        continue
                    outs = [r[(name, momentum_name)] for r in per_seed]
                    cnr = np.array([o.cnr for o in outs])
                    cnr_ok = cnr[np.isfinite(cnr)]
                    cnr_text = (
                        f"{cnr_ok.mean():.1f} +- {cnr_ok.std(ddof=1) / math.sqrt(len(cnr_ok)):.1f}"
                        if len(cnr_ok) > 1
                        else "-"
                    )
                    img = "-"
                    if name in X0_METHODS:
                        cube_err = np.array([o.cube_log_error for o in outs])
                        bg_err = np.concatenate([o.background_log_errors for o in outs])
                        img = f"{np.nanmedian(cube_err):.2f} / {np.median(bg_err):.2f}"
                    ranks = " | ".join(
                        fraction([getattr(o, k) for o in outs]) for k in ("top1", "top3", "near", "top1_raw")
                    )
                    rows.append(f"| {background} | {cube} | {name} | {momentum_name} | {ranks} | {cnr_text} | {img} |")
            print(f"# {background} + {cube}: {time.time() - start:.0f} s", flush=True)
    print(f"\n{args.seeds} seeds per row, {args.minutes:g} min exposure, {args.voxels}^3 voxels of 10 cm\n")
    print(
        "| background | cube | method | momentum | top1 | top3 | near | top1 raw score | CNR "
        "| median abs ln(X0 ratio) cube / bg |"
    )
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    print(f"\ntotal {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
