"""Issue 32: the propagation step as two pure kernels, compiled when switched on (ahead of time
on the CPU, :mod:`mutomo.volume.aot`): they agree with the plain kernels at float rounding, the
training process never loads the compiler, and they fall back to the plain kernels cleanly."""

import dataclasses
import json
import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from mutomo import runtime
from mutomo.errors import MutomoError
from mutomo.muons import FluxSource, GenerationPlane, TabulatedFlux
from mutomo.volume import PassiveVolume, aot, propagate_volume, scattering
from mutomo.volume import propagation as propagation_module
from mutomo.volume.scattering import DEFAULT_SCATTER, ScatterParameters
from mutomo.volume.step import step_enter, step_scatter


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
        {"cpu": (propagation_module._fallback(broken, step_enter), propagation_module._fallback(broken, step_scatter))},
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

    monkeypatch.setattr(propagation_module, "_compiled", {"cpu": (never, never)})
    runtime.set_compiled_kernels(True)
    try:
        out = propagate_volume(_muons(200), volume, generator=torch.Generator().manual_seed(0))
    finally:
        runtime.set_compiled_kernels(None)
    out.path_x0.sum().backward()
    assert volume.x0.grad is not None and bool(torch.isfinite(volume.x0.grad).all())


# A training process with compiled kernels, in a fresh interpreter: it propagates the same muons
# with both kernels and reports how they compare, the memory the compiled ones added, and whether
# torch's compiler was ever imported.
_WORKER = textwrap.dedent(
    """
    import json, math, resource, sys, warnings
    import torch
    from mutomo import runtime
    from mutomo.muons import FluxSource, GenerationPlane, TabulatedFlux
    from mutomo.volume import PassiveVolume, propagate_volume

    dtype = getattr(torch, sys.argv[1])
    volume = PassiveVolume.uniform("iron", (0.5, 0.5, 0.3), 0.1, z_low=0.0, dtype=dtype).with_box(
        "lead", (0.0, 0.0, 0.0), (0.25, 0.25, 0.2)
    )
    if sys.argv[2] == "batch":  # two volumes in one pass: the enter kernel adds each muon's offset
        volume = PassiveVolume.stack([volume, volume.with_box("tungsten", (0.3, 0.3, 0.1), (0.4, 0.4, 0.2))])
    plane = GenerationPlane(z=0.5, x_range=(0.0, 0.5), y_range=(0.0, 0.5))
    source = FluxSource(plane, TabulatedFlux(momentum_range=(0.3, 100.0), theta_max=math.radians(60)))
    muons = source.sample(20_000, torch.Generator().manual_seed(1), dtype=dtype)
    plain = propagate_volume(muons, volume, generator=torch.Generator().manual_seed(3))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    runtime.set_compiled_kernels(True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no silent fallback
        fused = propagate_volume(muons, volume, generator=torch.Generator().manual_seed(3))
    added = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    alive = plain.weight > 0
    close = (
        ((fused.position - plain.position).abs().max(-1).values < tol)
        & ((fused.direction - plain.direction).abs().max(-1).values < tol)
        & ((fused.momentum - plain.momentum).abs() < tol * plain.momentum)
    )
    print(json.dumps({
        "weights_differ": float((fused.weight != plain.weight).to(dtype).mean()),
        "close": float(close[alive].to(dtype).mean()),
        "bitwise": bool(torch.equal(fused.position, plain.position)),
        "added_mib": added,
        "compiler_loaded": any(m.startswith(("torch._inductor", "torch._dynamo")) for m in sys.modules),
    }))
    """
)


def _train_with_compiled_kernels(dtype: str, cache, volumes: str = "one") -> dict:
    env = {**os.environ, "MUTOMO_KERNEL_CACHE": str(cache)}
    done = subprocess.run([sys.executable, "-c", _WORKER, dtype, volumes], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _check_agreement(out: dict) -> None:
    """The compiled kernels compute the same step with fused arithmetic: the values agree at
    float rounding (measured: positions within 1.4e-5 m after 30 steps in float32, 1.2e-14 m in
    float64), except for the rare muon whose discrete choice (a hard single scatter drawn or
    not, a voxel edge, the range-out test) flips with the last bit. Muons that stopped or turned
    horizontal (weight 0) keep moving with meaningless values, which the two need not agree on."""
    assert not out["bitwise"]  # really the compiled kernels, not a silent plain run
    assert out["weights_differ"] < 1e-3
    assert out["close"] > 0.999


def test_kernels_compiled_ahead_of_time_agree_and_keep_the_compiler_out(tmp_path):
    """A first use builds the two packages in another process and caches them; the training
    process loads them without importing torch's compiler (which costs ~180 MiB resident), and
    a second process reuses the cache without building again."""
    first = _train_with_compiled_kernels("float32", tmp_path)
    _check_agreement(first)
    assert not first["compiler_loaded"]
    packages = sorted(tmp_path.glob("*.pt2"))
    assert [p.name.split("-")[0] for p in packages] == ["enter", "scatter"]
    stamps = [p.stat().st_mtime_ns for p in packages]
    second = _train_with_compiled_kernels("float32", tmp_path)
    assert second == {**first, "added_mib": second["added_mib"]}  # the same numbers from the cache
    assert [p.stat().st_mtime_ns for p in sorted(tmp_path.glob("*.pt2"))] == stamps
    assert second["added_mib"] < 40  # loading two packages, not a compiler


@pytest.mark.slow
def test_kernels_compiled_ahead_of_time_agree_in_float64(tmp_path):
    _check_agreement(_train_with_compiled_kernels("float64", tmp_path))


@pytest.mark.slow
def test_kernels_compiled_ahead_of_time_agree_on_a_batch_of_volumes(tmp_path):
    _check_agreement(_train_with_compiled_kernels("float32", tmp_path, "batch"))


def test_package_names_change_with_what_is_compiled_in():
    """A package is reused only for the dtype, batching and model constants it was built for."""
    base = aot.KernelSpec("scatter", "float32", False, dataclasses.astuple(DEFAULT_SCATTER))
    assert base.digest() == aot.KernelSpec("scatter", "float32", False, dataclasses.astuple(DEFAULT_SCATTER)).digest()
    wider = dataclasses.replace(base, constants=dataclasses.astuple(ScatterParameters(core_scale=1.1)))
    for other in (wider, dataclasses.replace(base, dtype="float64"), dataclasses.replace(base, batched=True)):
        assert other.digest() != base.digest()


def test_a_failing_build_names_the_kernel(tmp_path, monkeypatch):
    """A build that fails (here a dtype the builder refuses; on a machine without a C++ compiler,
    the compiler's error) raises naming the kernel, with the builder's last words; the
    propagation turns that into its warning and the plain kernels."""
    monkeypatch.setenv("MUTOMO_KERNEL_CACHE", str(tmp_path))
    with pytest.raises(MutomoError, match=r"building the enter kernel failed \(.*invalid choice"):
        aot.loader(aot.KernelSpec("enter", "float16", False, ()))
    assert not list(tmp_path.glob("*.pt2"))


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
