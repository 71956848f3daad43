"""TomOpt's test geometry in mutomo, and one full step on it, shared by the benchmark scripts.

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
import math
import resource
import statistics
import time

import torch
from torch import nn

from mutomo import runtime
from mutomo.detector import Detector, DetectorPanel
from mutomo.inference import PocaX0
from mutomo.muons import FluxSource, GenerationPlane, TabulatedFlux
from mutomo.reco import compute_scatters, extended_poca, measure, poca_within_height
from mutomo.simulate import simulate
from mutomo.volume import PassiveVolume, propagate_straight, propagate_volume
from mutomo.volume.grid import steps_per_layer
from mutomo.volume.propagation import MAX_STEP_X0

PANELS_ABOVE = (1.0, 0.95, 0.9, 0.85)
PANELS_BELOW = (0.2, 0.15, 0.1, 0.05)


def volume(voxel: float = 0.1, height: float = 0.6) -> PassiveVolume:
    """Beryllium with a lead corner block, ``voxel`` (m) cubes over 1 x 1 x ``height`` m from z = 0.2 m."""
    return PassiveVolume.uniform("beryllium", (1.0, 1.0, height), voxel, z_low=0.2).with_box(
        "lead", (0.0, 0.0, 0.2), (0.5, 0.5, 0.4)
    )


def detector(panels_per_side: int = 4, jitter: float = 0.0, seed: int = 0) -> Detector:
    """TomOpt's four panels a side (every 5 cm from 1.00 m and from 0.20 m down); any other count
    spread evenly over the same 15 cm; centres optionally jittered by ``jitter`` (m)."""
    if panels_per_side == 4:
        offsets = [0.0, 0.05, 0.1, 0.15]
    else:
        offsets = [0.15 * i / max(panels_per_side - 1, 1) for i in range(panels_per_side)]
    above = [1.0 - o for o in offsets]
    below = [0.2 - 1e-6 - o for o in offsets]
    shift = torch.randn(2 * panels_per_side, 2, generator=torch.Generator().manual_seed(seed)) * jitter

    def panel(z: float, i: int) -> DetectorPanel:
        centre = torch.tensor([0.5, 0.5, z]) + torch.cat([shift[i], torch.zeros(1)])
        return DetectorPanel(nn.Parameter(centre), nn.Parameter(torch.tensor([2.0, 2.0])), 1e-4, 0.9)

    return Detector([panel(z, i) for i, z in enumerate(above)], [panel(z, len(above) + i) for i, z in enumerate(below)])


def source(voxel: float = 0.1) -> FluxSource:
    """TomOpt's generation area for this volume, at the top panel, zenith up to 70 deg."""
    d = math.tan(math.radians(15)) * (1.0 - 0.2 + voxel)
    plane = GenerationPlane(z=1.0 + 1e-3, x_range=(-d, 1 + d), y_range=(-d, 1 + d))
    return FluxSource(plane, TabulatedFlux(theta_max=math.radians(70)))


def full_step(det: Detector, vol: PassiveVolume, src: FluxSource, n: int, seed: int = 0) -> torch.Tensor:
    """One step (see the module docstring); returns the loss, ``(*design,)``, after backward."""
    result = simulate(det, vol, src, n, torch.Generator().manual_seed(seed))
    momentum = 0.5 * (result.muons_in.momentum + result.muons_out.momentum)
    data = measure(result.hits_above, result.hits_below, vol, momentum, result.muons_in.weight)
    vmap = PocaX0()(data, vol)
    assert vmap.x0 is not None
    measured = vmap.measured.to(vmap.x0.dtype)
    loss = (((vmap.x0 - vol.x0) ** 2) * measured).sum((-3, -2, -1)) / measured.sum((-3, -2, -1)).clamp(min=1)
    loss.sum().backward()
    return loss.detach()


def timed_step(
    n: int,
    voxel: float = 0.1,
    panels_per_side: int = 4,
    designs: int = 1,
    seed: int = 0,
    height: float = 0.6,
    warmup_muons: int | None = None,
) -> dict[str, float]:
    """Build the setup, run one untimed warm-up step on ``warmup_muons`` (default min(n, 1000))
    muons, then one timed step on ``n``.

    Returns seconds (wall), CPU seconds of this process (less sensitive to other processes on a
    shared machine), this process's peak RSS (MiB), and its peak RSS after the set-up, before any
    step (MiB).
    """
    vol, src = volume(voxel, height), source(voxel)
    dets = [detector(panels_per_side, jitter=0.05 if designs > 1 else 0.0, seed=k) for k in range(designs)]

    def batch() -> Detector:
        return dets[0] if designs == 1 else Detector.stack(dets)

    setup = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    full_step(batch(), vol, src, min(n, 1000) if warmup_muons is None else warmup_muons, seed + 1)  # not timed
    start, cpu_start = time.perf_counter(), time.process_time()
    full_step(batch(), vol, src, n, seed)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    grads = [p.grad for d in dets for p in d.parameters()]
    if not all(g is not None and bool(torch.isfinite(g).all()) for g in grads):
        raise RuntimeError("mutomo step produced missing or non-finite panel gradients")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "rss_mib": peak, "setup_mib": setup}


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
    extended_poca(points, scatters.poca_covariance, data.weight, vol).sparse()
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
