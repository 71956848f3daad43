"""Reference geometries the performance benchmarks measure on (``benchmarks/tomopt_geometry.py``,
``tomopt_side_by_side.py``, ``scaling.py``, ``design_batch.py``, ``simulation_throughput.py``,
``reconstruction_throughput.py``, ``mlem_throughput.py`` are scripts over this module).

TomOpt's test geometry (TomOpt's own tests): a 1 m x 1 m footprint, six passive layers from
z = 0.2 to 0.8 m of beryllium with a lead block in one corner (x, y < 0.5 m, z < 0.4 m), panels
above from z = 1.00 m down in 5 cm steps and below from 0.20 m down (the top lower panel 1 um
under the volume: mutomo wants panels strictly outside), 2 m x 2 m span, 100 um resolution, 0.9
efficiency, every panel's position and span trainable. Muons come from GCCLY15 up to 70 deg
zenith over TomOpt's generation area (``MuonGenerator2016.from_volume``: the footprint widened
by ``tan(15 deg) (h - z_low + voxel)`` on every side). One step (:func:`full_step`): generate,
propagate, hits, track fits, PoCA with covariance, extended PoCA, Highland X0 per voxel, loss =
mean squared X0 error over measured voxels, backward to the panels.

The throughput geometry (:func:`throughput_geometry`): 1 m of iron in 10 cm voxels between four
trainable panels a side, muons up to 45 deg.
"""

from __future__ import annotations

import math
import resource
import statistics
import time
from typing import Any

import torch
from torch import nn

from mutomo.detector import Detector, DetectorPanel
from mutomo.muons import FluxSource, GenerationPlane, TabulatedFlux
from mutomo.reco import measure
from mutomo.reco.x0 import PocaX0
from mutomo.simulate import acceptance_plane, simulate
from mutomo.volume import PassiveVolume

PANELS_ABOVE = (1.0, 0.95, 0.9, 0.85)


PANELS_BELOW = (0.2, 0.15, 0.1, 0.05)


def volume(voxel: float = 0.1, height: float = 0.6, device: str | torch.device = "cpu") -> PassiveVolume:
    """Beryllium with a lead corner block, ``voxel`` (m) cubes over 1 x 1 x ``height`` m from z = 0.2 m."""
    return PassiveVolume.uniform("beryllium", (1.0, 1.0, height), voxel, z_low=0.2, device=device).with_box(
        "lead", (0.0, 0.0, 0.2), (0.5, 0.5, 0.4)
    )


def detector(
    panels_per_side: int = 4, jitter: float = 0.0, seed: int = 0, device: str | torch.device = "cpu"
) -> Detector:
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
        centre = (torch.tensor([0.5, 0.5, z]) + torch.cat([shift[i], torch.zeros(1)])).to(device)
        span = torch.tensor([2.0, 2.0], device=device)
        return DetectorPanel(nn.Parameter(centre), nn.Parameter(span), 1e-4, 0.9, device=device)

    return Detector([panel(z, i) for i, z in enumerate(above)], [panel(z, len(above) + i) for i, z in enumerate(below)])


def source(voxel: float = 0.1) -> FluxSource:
    """TomOpt's generation area for this volume, at the top panel, zenith up to 70 deg."""
    d = math.tan(math.radians(15)) * (1.0 - 0.2 + voxel)
    plane = GenerationPlane(z=1.0 + 1e-3, x_range=(-d, 1 + d), y_range=(-d, 1 + d))
    return FluxSource(plane, TabulatedFlux(theta_max=math.radians(70)))


def full_step(det: Detector, vol: PassiveVolume, src: FluxSource, n: int, seed: int = 0) -> torch.Tensor:
    """One step (see the module docstring); returns the loss, ``(*design,)``, after backward."""
    result = simulate(det, vol, src, n, torch.Generator(device=vol.x0.device).manual_seed(seed))
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
    device: str = "cpu",
    repeats: int = 1,
) -> dict[str, Any]:
    """Build the setup on ``device``, run one untimed warm-up step on ``warmup_muons`` (default
    min(n, 1000)) muons, then ``repeats`` timed steps on ``n`` (seeds ``seed``, ``seed + 2``, ...).

    Returns the median seconds (wall; on a GPU after synchronising it, so the queued kernels are
    counted), the median CPU seconds of this process (less sensitive to other processes on a
    shared machine), this process's peak RSS (MiB), its peak RSS after the set-up, before any step
    (MiB), every timed step's seconds and, on a CUDA device, the largest GPU memory the timed
    steps held (``torch.cuda.max_memory_allocated``, MiB).
    """
    vol, src = volume(voxel, height, device), source(voxel)
    dets = [
        detector(panels_per_side, jitter=0.05 if designs > 1 else 0.0, seed=k, device=device) for k in range(designs)
    ]
    cuda = torch.device(device).type == "cuda"

    def batch() -> Detector:
        return dets[0] if designs == 1 else Detector.stack(dets)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    setup = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    full_step(batch(), vol, src, min(n, 1000) if warmup_muons is None else warmup_muons, seed + 1)  # not timed
    if cuda:
        sync()
        torch.cuda.reset_peak_memory_stats(device)
    walls, cpus = [], []
    for r in range(repeats):
        for d in dets:
            d.zero_grad(set_to_none=True)
        start, cpu_start = time.perf_counter(), time.process_time()
        full_step(batch(), vol, src, n, seed + 2 * r)
        sync()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu_start)
    grads = [p.grad for d in dets for p in d.parameters()]
    if not all(g is not None and bool(torch.isfinite(g).all()) for g in grads):
        raise RuntimeError("mutomo step produced missing or non-finite panel gradients")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result: dict[str, Any] = {
        "seconds": statistics.median(walls),
        "cpu_seconds": statistics.median(cpus),
        "rss_mib": peak,
        "setup_mib": setup,
        "all_seconds": walls,
    }
    if cuda:
        result["gpu_peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return result


def throughput_geometry() -> tuple[Detector, PassiveVolume, FluxSource]:
    """The throughput geometry (module docstring): detector, volume, source."""

    def panel(z: float) -> DetectorPanel:
        return DetectorPanel(
            nn.Parameter(torch.tensor([0.5, 0.5, z])),
            nn.Parameter(torch.tensor([1.0, 1.0])),
            nn.Parameter(torch.tensor([1e-4])),
            nn.Parameter(torch.tensor([0.9])),
        )

    detector = Detector([panel(z) for z in (1.7, 1.6, 1.5, 1.45)], [panel(z) for z in (0.35, 0.3, 0.2, 0.1)])
    volume = PassiveVolume.uniform("iron", (1.0, 1.0, 1.0), 0.1, z_low=0.4)
    source = FluxSource(
        acceptance_plane(detector, theta_max=math.radians(45)), TabulatedFlux(theta_max=math.radians(45))
    )
    return detector, volume, source
