"""Issue 32: the propagation step as two pure kernels, compiled (``torch.compile``) when switched
on: they agree with the plain kernels at float rounding, and fall back to them cleanly."""

import math
import warnings

import pytest
import torch

from mutomo import runtime
from mutomo.muons import FluxSource, GenerationPlane, TabulatedFlux
from mutomo.volume import PassiveVolume, propagate_volume, scattering
from mutomo.volume import propagation as propagation_module


def _volume(dtype=torch.float32):
    return PassiveVolume.uniform("iron", (0.5, 0.5, 0.3), 0.1, z_low=0.0, dtype=dtype).with_box(
        "lead", (0.0, 0.0, 0.0), (0.25, 0.25, 0.2)
    )


def _muons(n=4000, dtype=torch.float32):
    plane = GenerationPlane(z=0.5, x_range=(0.0, 0.5), y_range=(0.0, 0.5))
    source = FluxSource(plane, TabulatedFlux(momentum_range=(0.3, 100.0), theta_max=math.radians(60)))
    return source.sample(n, torch.Generator().manual_seed(1), dtype=dtype)


def test_failing_compiled_kernels_fall_back_to_the_plain_ones(monkeypatch):
    """When compiling fails (no C++ compiler, an unsupported platform), the propagation warns once,
    switches the compiled kernels off and gives the plain kernels' results, bit for bit."""
    volume, muons = _volume(), _muons()
    plain = propagate_volume(muons, volume, generator=torch.Generator().manual_seed(2))

    def broken(*args):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(
        propagation_module,
        "_compiled",
        (
            propagation_module._fallback(broken, propagation_module._step_enter),
            propagation_module._fallback(broken, propagation_module._step_scatter),
        ),
    )
    runtime.set_compiled_kernels(True)
    try:
        with pytest.warns(RuntimeWarning, match="compiled propagation kernels are unavailable"):
            fallen = propagate_volume(muons, volume, generator=torch.Generator().manual_seed(2))
        assert not runtime.compiled_kernels_enabled()
    finally:
        runtime.set_compiled_kernels(None)
    for name in ("position", "direction", "momentum", "weight", "path_x0"):
        assert torch.equal(getattr(plain, name), getattr(fallen, name))


def test_gradient_through_the_volume_takes_the_plain_kernels(monkeypatch):
    """With a trainable X0 the step records a graph: the plain kernels run even when compiled
    ones are switched on (they are compiled for inference only)."""
    x0 = torch.nn.Parameter(torch.full((5, 5, 2), 0.0176))
    volume = PassiveVolume.uniform("iron", (0.5, 0.5, 0.2), 0.1, x0=x0)

    def never(*args):
        raise AssertionError("the compiled kernels ran with a graph to record")

    monkeypatch.setattr(propagation_module, "_compiled", (never, never))
    runtime.set_compiled_kernels(True)
    try:
        out = propagate_volume(_muons(200), volume, generator=torch.Generator().manual_seed(0))
    finally:
        runtime.set_compiled_kernels(None)
    out.path_x0.sum().backward()
    assert volume.x0.grad is not None and bool(torch.isfinite(volume.x0.grad).all())


def _compiles() -> bool:
    try:
        torch.compile(lambda t: t * 2 + 1, dynamic=True)(torch.ones(8))
    except Exception:  # noqa: BLE001 - any failure of the compiler stack
        return False
    return True


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compiled_kernels_agree_with_the_plain_ones(dtype):
    """The compiled kernels compute the same step with fused arithmetic: the values agree at
    float rounding (measured: positions within 1.4e-5 m after 30 steps in float32, 1.2e-14 m in
    float64), except for the rare muon whose discrete choice (a hard single scatter drawn or
    not, a voxel edge, the range-out test) flips with the last bit."""
    if not _compiles():
        pytest.skip("torch.compile does not work on this machine")
    volume, muons = _volume(dtype), _muons(20_000, dtype)
    plain = propagate_volume(muons, volume, generator=torch.Generator().manual_seed(3))
    runtime.set_compiled_kernels(True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # no silent fallback
            fused = propagate_volume(muons, volume, generator=torch.Generator().manual_seed(3))
    finally:
        runtime.set_compiled_kernels(None)
    # Muons that stopped or turned horizontal (weight 0) keep moving with meaningless values, which
    # the two kernels need not agree on; every other muon agrees to a tenth of a millimetre.
    alive = plain.weight > 0
    assert float((fused.weight != plain.weight).to(dtype).mean()) < 1e-3
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    close = (
        ((fused.position - plain.position).abs().max(-1).values < tol)
        & ((fused.direction - plain.direction).abs().max(-1).values < tol)
        & ((fused.momentum - plain.momentum).abs() < tol * plain.momentum)
    )
    assert float(close[alive].to(dtype).mean()) > 0.999


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hard_scatters_of_a_few_muons_are_those_of_every_muon(dtype):
    """The plain kernels evaluate the single scatters only for the muons that have one in the step
    (~1 %): the same angles and the same gradients as evaluating every muon."""
    n = 20_000
    gen = torch.Generator().manual_seed(5)
    u_hard, u_phi, u_accept = torch.rand(3, n, generator=gen, dtype=dtype)
    d_chi2 = (torch.rand(n, generator=gen, dtype=dtype) * 1e-6).requires_grad_()
    cut2 = (torch.rand(n, generator=gen, dtype=dtype) * 2e-5 + 1e-6).requires_grad_()
    inv_nuclear2 = torch.rand(n, generator=gen, dtype=dtype) * 1e5  # enters only the acceptance test
    inputs = (u_hard, u_phi, u_accept, d_chi2, cut2, inv_nuclear2)
    every = scattering.hard_scatters(*inputs)
    few = scattering._hard_scatters_of_few(*inputs)
    assert 0 < int((every[0] != 0).sum()) < 0.2 * n
    weights = torch.randn(2, n, generator=gen, dtype=dtype)
    grads = []
    for out in (every, few):
        assert all(torch.equal(a, b) for a, b in zip(out, every, strict=True))
        grads.append(torch.autograd.grad((weights[0] * out[0] + weights[1] * out[1]).sum(), (d_chi2, cut2)))
    for a, b in zip(*grads, strict=True):
        assert torch.equal(a, b)


def test_plain_propagation_with_hard_scatters_of_a_few_muons_is_unchanged(monkeypatch):
    """The whole propagation with the single scatters of a few muons gives, bit for bit, what
    evaluating them for every muon gives."""
    volume, muons = _volume(), _muons()
    few = propagate_volume(muons, volume, generator=torch.Generator().manual_seed(6))
    monkeypatch.setattr(scattering, "_hard_scatters_of_few", scattering.hard_scatters)
    every = propagate_volume(muons, volume, generator=torch.Generator().manual_seed(6))
    for name in ("position", "direction", "momentum", "weight", "path_x0"):
        assert torch.equal(getattr(few, name), getattr(every, name)), name
