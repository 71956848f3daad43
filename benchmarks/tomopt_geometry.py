"""Where a step on TomOpt's test geometry spends its time, stage by stage.

The geometry and the step are :mod:`mutomo.studies.reference_geometries` (shared by the
benchmark scripts); this script profiles the step.

The geometry (TomOpt's own tests): a 1 m x 1 m footprint, six passive layers from z = 0.2 to
0.8 m of beryllium with a lead block in one corner (x, y < 0.5 m, z < 0.4 m), panels above
from z = 1.00 m down in 5 cm steps and below from 0.20 m down (the top lower panel 1 um under
the volume: mutomo wants panels strictly outside), 2 m x 2 m span, 100 um resolution, 0.9
efficiency, every panel's position and span trainable. Muons come from GCCLY15 up to 70 deg
zenith over TomOpt's generation area (``MuonGenerator2016.from_volume``: the footprint widened
by ``tan(15 deg) (h - z_low + voxel)`` on every side).

One step: generate, propagate, hits, track fits, PoCA with covariance, extended PoCA, Highland
X0 per voxel, loss = mean squared X0 error over measured voxels, backward to the panels.

Run as a script it profiles that step, stage by stage (:func:`profile_step`; benchmarks/README.md,
"Where a training step's time goes"):

    python benchmarks/tomopt_geometry.py --muons 10000 100000 --threads 1 --repeats 5 [--compile]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from mutomo import runtime
from mutomo.detector import Detector
from mutomo.muons import FluxSource
from mutomo.reco import compute_scatters, extended_poca, measure, poca_within_height
from mutomo.reco.voxelise import tail_share
from mutomo.reco.x0 import PocaX0
from mutomo.studies.reference_geometries import detector, source, volume
from mutomo.volume import PassiveVolume, propagate_straight, propagate_volume
from mutomo.volume.grid import steps_per_layer
from mutomo.volume.propagation import MAX_STEP_X0

STAGES = (
    "generation",
    "propagation: scattering draws",
    "propagation: steps",
    "hits",
    "track fits",
    "PoCA + covariance",
    "extended PoCA",
    "X0 inference",
    "backward",
)


def _stage_times(det: Detector, vol: PassiveVolume, src: FluxSource, n: int, seed: int) -> dict[str, float]:
    """One step of :func:`full_step`, timed stage by stage: CPU seconds of this process (with one
    thread, the wall time on a quiet machine; unlike wall time, it does not count the time other
    processes on a shared machine take). The step runs as ``full_step`` runs
    it; the stages that ``measure`` and ``PocaX0`` bundle are timed by running their parts again
    on the same inputs (the PoCA and its covariance, the extended-PoCA weights) and subtracting,
    and the scattering draws by drawing as many again (the generator is a copy, so the step's
    own draws are unchanged)."""
    gen = torch.Generator().manual_seed(seed)
    clock = [time.process_time()]
    out: dict[str, float] = {}

    def lap(name: str) -> None:
        now = time.process_time()
        out[name] = now - clock[0]
        clock[0] = now

    muons = src.sample(n, gen, dtype=vol.x0.dtype)
    lap("generation")
    draws_gen = torch.Generator().set_state(gen.get_state())
    muons_in = propagate_straight(muons, vol.z_high)
    muons_out = propagate_volume(muons_in, vol, 0.01, gen)
    lap("propagation")
    noise = [torch.randn(det.n_panels(side), n, 2, generator=gen) for side in ("above", "below")]
    hits_above, hits_below = det.hits(muons_in, "above", noise[0]), det.hits(muons_out, "below", noise[1])
    lap("hits")
    data = measure(hits_above, hits_below, vol, 0.5 * (muons_in.momentum + muons_out.momentum), muons_in.weight)
    lap("measure")
    vmap = PocaX0()(data, vol)
    lap("inference")
    assert vmap.x0 is not None
    measured = vmap.measured.to(vmap.x0.dtype)
    loss = (((vmap.x0 - vol.x0) ** 2) * measured).sum() / measured.sum().clamp(min=1)
    loss.backward()
    lap("backward")
    # The bundled parts, again on the same inputs.
    with torch.no_grad():
        start = time.process_time()
        for iz in range(vol.shape[2]):  # as many draws as the propagation made (one per step)
            for _ in range(_steps_in_layer(vol, iz)):  # the draws as drawn, without any layout copy
                torch.randn(n, 4, generator=draws_gen, dtype=vol.x0.dtype)
                torch.rand(n, 3, generator=draws_gen, dtype=vol.x0.dtype)
        draws = time.process_time() - start
    start = time.process_time()
    scatters = compute_scatters(data.incoming, data.outgoing, 0.5 * (vol.z_low + vol.z_high))
    poca = time.process_time() - start
    start = time.process_time()
    points = poca_within_height(scatters.poca, data.incoming, data.outgoing, vol)
    extended_poca(points, scatters.poca_covariance, data.weight, vol).sparse(tail_share(points.dtype))
    spread = time.process_time() - start
    return {
        "generation": out["generation"],
        "propagation: scattering draws": draws,
        "propagation: steps": out["propagation"] - draws,
        "hits": out["hits"],
        "track fits": out["measure"] - poca,
        "PoCA + covariance": poca,
        "extended PoCA": spread,
        "X0 inference": out["inference"] - spread,
        "backward": out["backward"],
    }


def _steps_in_layer(vol: PassiveVolume, iz: int) -> int:
    x0_min = float(vol.layer_properties(iz)[0][:, 0].min())
    return steps_per_layer(vol.voxel_size[2], min(0.01, MAX_STEP_X0 * x0_min))


def profile_step(n: int, repeats: int = 5, seed: int = 0) -> dict[str, float]:
    """Median seconds of each stage of the TomOpt-geometry step (see :func:`_stage_times`) over
    ``repeats`` steps on ``n`` muons, after one untimed step of the same size; ``total`` is the
    median of the steps' sums."""
    vol, src, det = volume(), source(), detector()
    _stage_times(det, vol, src, n, seed + 1000)  # warm-up at full size: first-call costs excluded
    runs = [_stage_times(det, vol, src, n, seed + r) for r in range(repeats)]
    result = {stage: statistics.median(r[stage] for r in runs) for stage in STAGES}
    result["total"] = statistics.median(sum(r.values()) for r in runs)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description="Profile one TomOpt-geometry step, stage by stage")
    parser.add_argument("--muons", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="compiled propagation kernels")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    runtime.tune_allocator()
    if args.compile:
        runtime.set_compiled_kernels(True)
    profiles = {n: profile_step(n, args.repeats) for n in args.muons}
    print("| stage | " + " | ".join(f"{n:,} muons (ms)" for n in args.muons) + " |")
    print("|---|" + "---:|" * len(args.muons))
    for stage in (*STAGES, "total"):
        print(f"| {stage} | " + " | ".join(f"{1000 * profiles[n][stage]:,.1f}" for n in args.muons) + " |")
    print(json.dumps({str(n): p for n, p in profiles.items()}))


if __name__ == "__main__":
    main()
