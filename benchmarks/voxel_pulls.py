"""Pulls of voxel ln X0 per occupancy class, for every X0 method that reports an uncertainty.

Set-up: a uniform block (iron by default, 1 m x 1 m x 0.3 m in 10 cm voxels, z 0.4-0.7 m) under
three 100 um panels 10 cm apart on each side, 1.6 m wide, efficiency 0.9 (the set-up of
``tests/physics/test_reconstruction.py``); muons from the tabulated sea-level flux (1-1000 GeV/c,
0-40 deg), true momenta (the mean of the momenta in and out, and the momentum lost, which
ML/EM spreads along each path). Each volume is seen by a different
number of muons (``--muons``, several seeds each), so that voxels span every occupancy class.

Per measured voxel the pull is ``(ln X0_est - ln X0_true) / (sigma_X0 / X0_est)`` with X0_true
the material's X0 (fixed, from the volume). Voxels are classed by the effective number of muons
that informed them, ``n_eff = (sum w)^2 / sum w^2`` of the voxel's muon weights (the count of
muons for binned PoCA with unit weights). For each class the script prints the number of
voxel-entries, the mean pull, and the standard deviation of the pulls with its error (bootstrap
over volumes, since the voxels of one volume share its muons under extended PoCA and ML/EM).

ASR and BCA report no X0 and no uncertainty and are not in the table.

Usage: python benchmarks/voxel_pulls.py [--material iron] [--muons 1500 3000 ...] [--seeds 4]
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

from mutomo.detector import Detector, DetectorPanel
from mutomo.muons import FluxSource, TabulatedFlux
from mutomo.reco import MaximumLikelihoodEM, ScatterData, VoxelMap, measure
from mutomo.reco.x0 import PocaX0
from mutomo.simulate import acceptance_plane, simulate
from mutomo.volume import PassiveVolume

FLUX = TabulatedFlux(momentum_range=(1.0, 1000.0), theta_max=math.radians(40))
#: Occupancy classes (effective muons in the voxel): [low, high).
CLASSES: tuple[tuple[float, float], ...] = ((1, 5), (5, 10), (10, 20), (20, 50), (50, 200), (200, math.inf))


def block(material: str = "iron", thickness: float = 0.3, layers: int = 1) -> PassiveVolume:
    """A uniform block 1 m x 1 m x ``thickness``, bottom face at z = 0.4 m, in 10 cm x 10 cm
    voxels, ``layers`` of them in depth."""
    return PassiveVolume.uniform(material, (1.0, 1.0, thickness), (0.1, 0.1, thickness / layers), z_low=0.4)


def simulate_and_measure(volume: PassiveVolume, n: int, seed: int) -> ScatterData:
    """Three 100 um panels 10 cm apart on each side, 1.6 m wide; true (mean in/out) momenta."""

    def panel(z: float) -> DetectorPanel:
        return DetectorPanel((0.5, 0.5, z), (1.6, 1.6), 1e-4, 0.9)

    top = volume.z_high
    det = Detector([panel(top + 0.3), panel(top + 0.2), panel(top + 0.1)], [panel(0.3), panel(0.2), panel(0.1)])
    source = FluxSource(acceptance_plane(det, math.radians(40)), FLUX)
    with torch.no_grad():
        r = simulate(det, volume, source, n, torch.Generator().manual_seed(seed))
        momentum = 0.5 * (r.muons_in.momentum + r.muons_out.momentum)
        alive = r.muons_in.weight * (r.muons_out.weight > 0)
        loss = r.muons_in.momentum - r.muons_out.momentum
        return measure(r.hits_above, r.hits_below, volume, momentum, alive, momentum_loss=loss)


def interior(volume: PassiveVolume) -> torch.Tensor:
    """``(nx, ny, nz)`` bool: voxels not on the block's four side faces."""
    inside = torch.zeros(volume.shape, dtype=torch.bool)
    inside[1:-1, 1:-1, :] = True
    return inside


def voxel_pulls(
    vmap: VoxelMap, volume: PassiveVolume, select: torch.Tensor | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(count, pull)`` of the measured voxels of a map (those in ``select`` if given):
    effective muon count (``vmap.count``, else the weight) and the pull of ln X0 against the
    volume's true X0."""
    assert vmap.x0 is not None and vmap.uncertainty is not None
    # ``count`` (effective muons) where the method reports it; the weight otherwise (ML/EM, and
    # the code before issue 13, which had no count).
    count = getattr(vmap, "count", None)
    count = vmap.weight if count is None else count
    ok = vmap.measured & (vmap.x0 > 0) & torch.isfinite(vmap.uncertainty) & (vmap.uncertainty > 0)
    if select is not None:
        ok = ok & select
    x0, sigma, truth = vmap.x0[ok], vmap.uncertainty[ok], volume.x0[ok]
    pull = (torch.log(x0) - torch.log(truth)) / (sigma / x0)
    return count[ok].double().numpy(), pull.double().numpy()


def collect(
    methods: dict[str, Callable[[ScatterData, PassiveVolume], VoxelMap]],
    volume: PassiveVolume,
    muons: Sequence[int],
    seeds: Sequence[int],
    select: torch.Tensor | None = None,
) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """Per method, one ``(count, pull)`` pair of arrays per simulated volume (voxels in
    ``select`` if given)."""
    out: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {name: [] for name in methods}
    for n in muons:
        for seed in seeds:
            data = simulate_and_measure(volume, n, seed=1000 * n + seed)
            with torch.no_grad():
                for name, method in methods.items():
                    out[name].append(voxel_pulls(method(data, volume), volume, select))
    return out


def summarise(
    per_volume: list[tuple[np.ndarray, np.ndarray]], n_boot: int = 200, seed: int = 0
) -> list[dict[str, float]]:
    """Per occupancy class: entries, mean pull, pull std and its bootstrap error over volumes."""
    rng = np.random.default_rng(seed)
    rows = []
    for lo, hi in CLASSES:
        parts = [p[(c >= lo) & (c < hi)] for c, p in per_volume]
        pulls = np.concatenate(parts)
        row = {"low": lo, "high": hi, "entries": float(pulls.size), "mean": math.nan, "std": math.nan, "err": math.nan}
        if pulls.size >= 3:
            boots = []
            for _ in range(n_boot):
                pick = rng.integers(0, len(parts), len(parts))
                sample = np.concatenate([parts[i] for i in pick])
                if sample.size >= 2:
                    boots.append(sample.std(ddof=1))
            row.update(mean=float(pulls.mean()), std=float(pulls.std(ddof=1)), err=float(np.std(boots)))
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--material", default="iron")
    parser.add_argument("--thickness", type=float, default=0.3)
    parser.add_argument("--layers", type=int, default=1, help="voxel layers in depth (1: each voxel spans the block)")
    parser.add_argument("--muons", type=int, nargs="+", default=[2000, 4000, 8000, 16000, 40000, 160000])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--mlem", action="store_true", help="also ML/EM (slower)")
    parser.add_argument(
        "--mlem-errors",
        nargs="+",
        default=["robust"],
        choices=["robust", "conditional", "marginal", "sandwich"],
        help="ML/EM's reported errors, one row each (MaximumLikelihoodEM's error)",
    )
    parser.add_argument("--interior", action="store_true", help="only voxels not on the block's side faces")
    args = parser.parse_args()
    torch.set_num_threads(1)
    volume = block(args.material, args.thickness, args.layers)
    methods: dict[str, Callable[[ScatterData, PassiveVolume], VoxelMap]] = {
        "poca_x0": PocaX0(extended=False),
        "extended_poca_x0": PocaX0(extended=True),
    }
    if args.mlem:
        for error in args.mlem_errors:
            methods["mlem" if error == "robust" else f"mlem_{error}"] = MaximumLikelihoodEM(error=error)
    start = time.perf_counter()
    select = interior(volume) if args.interior else None
    results = collect(methods, volume, args.muons, range(args.seeds), select)
    print(
        f"# {args.material} {args.thickness} m in {args.layers} layer(s), "
        f"{'interior' if args.interior else 'all'} voxels, muons {args.muons} x {args.seeds} seeds, "
        f"{time.perf_counter() - start:.0f} s"
    )
    print("| method | n_eff | entries | mean pull | pull std |")
    print("|---|---|---:|---:|---:|")
    for name, per_volume in results.items():
        for row in summarise(per_volume):
            hi = "+" if math.isinf(row["high"]) else f"-{row['high'] - 1:.0f}"
            print(
                f"| {name} | {row['low']:.0f}{hi} | {row['entries']:.0f} | {row['mean']:+.3f} | "
                f"{row['std']:.3f} +- {row['err']:.3f} |"
            )


if __name__ == "__main__":
    main()
