"""dtype and device flow through the whole chain: nothing silently falls back to float32 or CPU."""

import math

import pytest
import torch
from torch import nn

from mutomo.detector import Detector, DetectorPanel
from mutomo.muons import FluxSource, GenerationPlane, TabulatedFlux
from mutomo.reco import measure
from mutomo.reco.x0 import PocaX0
from mutomo.simulate import simulate
from mutomo.tasks.statistics import poca_height
from mutomo.volume import PassiveVolume


def chain(device: str, dtype: torch.dtype, n: int = 3000):
    """simulate -> measure -> extended PoCA X0 and fill height -> backward, all on ``device``."""
    vol = PassiveVolume.uniform("beryllium", (1.0, 1.0, 0.6), 0.1, z_low=0.2, device=device, dtype=dtype)
    vol = vol.with_box("lead", (0.0, 0.0, 0.2), (0.5, 0.5, 0.4))

    def panel(z: float) -> DetectorPanel:
        centre = nn.Parameter(torch.tensor([0.5, 0.5, z], dtype=dtype, device=device))
        span = nn.Parameter(torch.tensor([1.6, 1.6], dtype=dtype, device=device))
        return DetectorPanel(centre, span, 1e-3, 0.9, device=device, dtype=dtype)

    det = Detector([panel(z) for z in (1.0, 0.9, 0.85)], [panel(z) for z in (0.19, 0.1, 0.05)])
    source = FluxSource(GenerationPlane(1.01, (-0.2, 1.2), (-0.2, 1.2)), TabulatedFlux(theta_max=math.radians(60)))
    r = simulate(det, vol, source, n, torch.Generator(device=device).manual_seed(0))
    data = measure(r.hits_above, r.hits_below, vol, r.muons_in.momentum, r.muons_in.weight)
    vmap = PocaX0()(data, vol)
    height = poca_height(data, vol)
    (vmap.x0.sum() + height).backward()
    return r, data, vmap, height, det


def test_float64_flows_through_every_stage():
    r, data, vmap, height, det = chain("cpu", torch.float64)
    tensors = {
        "muons_out.position": r.muons_out.position,
        "hits_above.xy": r.hits_above.xy,
        "hits_below.weight": r.hits_below.weight,
        "incoming.covariance": data.incoming.covariance,
        "poca": data.scatters.poca,
        "poca_covariance": data.scatters.poca_covariance,
        "x0": vmap.x0,
        "uncertainty": vmap.uncertainty,
        "height": height,
        **{f"grad {name}": p.grad for name, p in det.named_parameters()},
    }
    wrong = {name: t.dtype for name, t in tensors.items() if t.dtype != torch.float64}
    assert not wrong, wrong


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (CI has none)")
def test_the_chain_runs_on_cuda_and_agrees_with_cpu_in_distribution():
    r, data, vmap, height, det = chain("cuda", torch.float32, n=20_000)
    assert vmap.x0.device.type == "cuda" and height.device.type == "cuda"
    assert all(p.grad is not None and p.grad.device.type == "cuda" for p in det.parameters())
    assert all(bool(torch.isfinite(p.grad).all()) for p in det.parameters())
    # Different random streams: compare the fill statistic within its statistical spread.
    _, _, _, height_cpu, _ = chain("cpu", torch.float32, n=20_000)
    assert float(height.detach().cpu()) == pytest.approx(float(height_cpu.detach()), abs=0.02)


def test_tune_allocator_takes_on_glibc():
    import platform
    import sys

    from mutomo.runtime import tune_allocator

    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        assert tune_allocator()
    else:
        assert not tune_allocator()
