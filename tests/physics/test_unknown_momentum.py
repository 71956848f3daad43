"""Reconstruction without the truth (issue 13, deliverable 2).

The estimator: :class:`~mutomo.reco.ExpectedMomentum` gives each muon ``E[p | zenith, deflection]``
under the flux spectrum cut at the range-limited minimum momentum. Checked here: by the tower
property of conditional expectation, over muons drawn from that very model the mean of the
estimates is the mean momentum (to its statistical error); in a volume that hardly scatters or
stops muons it is the flux mean; it falls as the deflection grows; it is finite and carries no
gradient.

The ranking: a one-voxel uranium or lead cube in concrete, water or iron clutter, seen without
the true momenta, is the highest-scoring voxel for the methods and momentum estimates where
benchmarks/unknown_momentum.py finds that it holds (benchmarks/README.md, "Reconstruction without
the truth"); where it does not hold, the benchmark records it and nothing is asserted here.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from mutomo.errors import MutomoError
from mutomo.muons import TabulatedFlux
from mutomo.reco import ExpectedMomentum, FluxMeanMomentum, Tracks
from mutomo.units import HIGHLAND_E0, MUON_MASS
from mutomo.volume import PassiveVolume
from mutomo.volume.energy_loss import pumas_csda_range
from mutomo.volume.scattering import highland_g

FLUX = TabulatedFlux(momentum_range=(0.1, 1000.0), theta_max=math.radians(40))
#: Slope resolution of each fitted track (rad): three 100 um planes 10 cm apart.
SLOPE_SIGMA = 1e-4 / math.sqrt(0.02)


def tracks(slope_in: torch.Tensor, angle: torch.Tensor, height: float) -> tuple[Tracks, Tracks]:
    """Incoming and outgoing tracks with slopes ``slope_in (mu, 2)`` and projected deflections
    ``angle (mu, 2)``, each slope measured with :data:`SLOPE_SIGMA`."""
    n = slope_in.shape[0]
    slope_out = torch.tan(torch.atan(slope_in) + angle)
    cov = torch.diag(torch.tensor([1e-8, 1e-8, SLOPE_SIGMA**2, SLOPE_SIGMA**2], dtype=torch.float64)).expand(n, 4, 4)

    def make(slope: torch.Tensor, z: float) -> Tracks:
        zeros = torch.zeros(n, dtype=torch.float64)
        return Tracks(z, torch.full((n, 2), 0.5, dtype=torch.float64), slope, cov, zeros, zeros + 2, zeros + 1)

    return make(slope_in, height), make(slope_out, 0.0)


def draw_from_model(material: str, height: float, n: int, seed: int) -> tuple[Tracks, Tracks, torch.Tensor]:
    """Muons drawn from the estimator's own model: p and zenith from the flux, kept if their
    CSDA range exceeds the path (PUMAS), p at mid-path by the range, projected deflections
    Gaussian with Highland's width plus the slope noise of both tracks. Returns the tracks and
    the mid-path momenta."""
    g = torch.Generator().manual_seed(seed)
    p, cos_t, _ = FLUX.sample(n, g, dtype=torch.float64)
    phi = 2 * math.pi * torch.rand(n, generator=g, dtype=torch.float64)
    tan_t = torch.sqrt(1 - cos_t**2) / cos_t
    slope_in = torch.stack([tan_t * torch.cos(phi), tan_t * torch.sin(phi)], -1)
    path = height / cos_t
    kinetic = (torch.sqrt(p**2 + MUON_MASS**2) - MUON_MASS).numpy()
    range_m = pumas_csda_range(material, kinetic)
    keep = torch.from_numpy(range_m) > path
    fine = np.geomspace(1e-3, 1e5, 4001)
    half = np.clip(range_m - 0.5 * path.numpy(), 1e-9, None)  # stopped muons are dropped below
    t_mid = np.exp(np.interp(np.log(half), np.log(pumas_csda_range(material, fine)), np.log(fine)))
    t_mid_t = torch.from_numpy(t_mid)
    p_mid = torch.sqrt(t_mid_t**2 + 2 * MUON_MASS * t_mid_t)
    beta2 = p_mid**2 / (p_mid**2 + MUON_MASS**2)
    x0 = PassiveVolume.uniform(material, (1.0, 1.0, height), (1.0, 1.0, height)).materials[0].x0
    width2 = HIGHLAND_E0**2 / (beta2 * p_mid**2) * highland_g(path / x0, beta2)
    meas = 2 * SLOPE_SIGMA**2 / (1 + slope_in**2) ** 2  # both tracks' slope noise, in angle
    angle = torch.randn(n, 2, generator=g, dtype=torch.float64) * torch.sqrt(width2[:, None] + meas)
    inc, out = tracks(slope_in[keep], angle[keep], height)
    return inc, out, p_mid[keep]


@pytest.mark.parametrize("material, height", [("iron", 0.5), ("concrete", 1.0)])
def test_mean_of_the_estimates_is_the_mean_momentum_of_the_model(material, height):
    """E[E[p | data]] = E[p]: over 40k muons drawn from the model the mean estimate matches the
    mean mid-path momentum within 4 standard errors of the latter (the estimate varies less than
    p; measured: +1.3 and +1.1 errors). The flux mean without the range cut is 12 errors below
    (5.1 against 5.9 and 5.7 GeV/c: the cut removes soft muons), so the test tells them apart."""
    volume = PassiveVolume.uniform(material, (1.0, 1.0, height), 0.1)
    inc, out, p_mid = draw_from_model(material, height, 40_000, seed=1)
    estimate = ExpectedMomentum(volume, material, FLUX)(inc, out)
    error = float(p_mid.std() / math.sqrt(p_mid.numel()))
    assert float(estimate.mean()) == pytest.approx(float(p_mid.mean()), abs=4 * error)
    # Informative: the estimate follows the true momentum muon by muon.
    corr = float(torch.corrcoef(torch.stack([estimate.log(), p_mid.log()]))[0, 1])
    assert corr > 0.7, corr


def test_a_volume_that_hardly_scatters_gives_the_flux_mean():
    """1 cm of air: no range cut, deflections far below the tracks' noise at every momentum
    but the softest, so E[p | zenith, deflection] is the flux mean at the zenith (to 2 %)."""
    volume = PassiveVolume.uniform("air", (1.0, 1.0, 0.01), 0.01)
    g = torch.Generator().manual_seed(2)
    slope_in = 0.5 * torch.rand(20_000, 2, generator=g, dtype=torch.float64) - 0.25
    angle = SLOPE_SIGMA * math.sqrt(2) * torch.randn(20_000, 2, generator=g, dtype=torch.float64)
    inc, out = tracks(slope_in, angle, 0.01)
    expected = ExpectedMomentum(volume, "air", FLUX)(inc, out)
    flux_mean = FluxMeanMomentum(FLUX)(inc, out)
    assert float(expected.mean()) == pytest.approx(float(flux_mean.mean()), rel=0.02)
    no_deflection = ExpectedMomentum(volume, "air", FLUX, deflection=False)(inc, out)
    torch.testing.assert_close(no_deflection, flux_mean, rtol=0.02, atol=0.0)


def test_estimate_falls_with_the_deflection_and_stops_at_the_range_cut():
    """Vertical muons through 1 m of concrete: the estimate decreases strictly with the
    deflection and never drops below the range-limited minimum momentum (at mid-path)."""
    volume = PassiveVolume.uniform("concrete", (1.0, 1.0, 1.0), 0.1)
    angles = torch.tensor([0.0, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0], dtype=torch.float64)
    inc, out = tracks(torch.zeros(len(angles), 2, dtype=torch.float64), torch.stack([angles, 0 * angles], -1), 1.0)
    estimate = ExpectedMomentum(volume, "concrete", FLUX)(inc, out)
    assert bool((estimate.diff() < 0).all()), estimate
    # 1 m of concrete (2300 kg/m^2) stops muons below ~0.5 GeV/c; at mid-path they are slower.
    assert float(estimate[-1]) > 0.1 and float(estimate[0]) > 5 * float(estimate[-1])
    prior_only = ExpectedMomentum(volume, "concrete", FLUX, deflection=False)(inc, out)
    assert float(estimate[0]) > float(prior_only[0]) > float(estimate[4])


def test_estimate_is_finite_and_detached():
    volume = PassiveVolume.uniform("water", (1.0, 1.0, 1.0), 0.1)
    slope_in = torch.tensor([[0.0, 0.0], [0.5, -0.5], [1.0, 0.0]], dtype=torch.float64, requires_grad=True)
    angle = torch.tensor([[0.0, 0.0], [1.5, 1.5], [1e-9, 0.0]], dtype=torch.float64)
    inc, out = tracks(slope_in, angle, 1.0)
    for est in (ExpectedMomentum(volume, "water", FLUX), ExpectedMomentum(volume, {"iron": 0.3, "air": 0.7}, FLUX)):
        p = est(inc, out)
        assert p.shape == (3,) and not p.requires_grad and bool(torch.isfinite(p).all() and (p > 0).all())
        mapped = est.with_map(torch.zeros(volume.shape))(inc, out)  # unmeasured map: nominal X0
        torch.testing.assert_close(mapped, p)


def test_bad_arguments_are_refused_by_name():
    volume = PassiveVolume.uniform("water", (1.0, 1.0, 1.0), 0.1)
    with pytest.raises(MutomoError, match="n_bins"):
        ExpectedMomentum(volume, "water", FLUX, n_bins=4)
    with pytest.raises(MutomoError, match="background"):
        ExpectedMomentum(volume, {"water": -1.0}, FLUX)
    with pytest.raises(MutomoError, match="x0_map"):
        ExpectedMomentum(volume, "water", FLUX, x0_map=torch.ones(3, 3, 3))


# ----------------------------------------------------------------------------- ranking


def _benchmark():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "unknown_momentum.py"
    spec = importlib.util.spec_from_file_location("unknown_momentum_benchmark", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "momentum, inference",
    [("expected", "extended_poca"), ("range_mean", "extended_poca"), ("marginal", "mlem"), ("posterior", "poca")],
)
def test_configured_momentum_runs_end_to_end_with_finite_gradients(momentum, inference):
    """``momentum = "expected"`` (or ``"range_mean"``, or ``"marginal"`` with ML/EM, or
    ``"posterior"``: ML/EM's posterior momenta given to PoCA) in a configuration: the problem uses
    ExpectedMomentum (or its prior) in the scene's nominal background (30 % iron clutter here),
    and the training loss has finite gradients in the design."""
    from mutomo.config.build import build_design, build_problem
    from mutomo.config.schema import parse_config
    from mutomo.optimise.loop import TrainingSettings, batch_loss
    from mutomo.reco.momentum import MARGINAL_BINS

    scene = {
        "size": [0.6, 0.6, 0.6],
        "origin": [0.0, 0.0, 0.3],
        "voxel": 0.1,
        "background": {"clutter": {"iron": 0.3, "air": 0.7}},
        "objects": [{"material": "uranium", "size": [0.1] * 3, "low": [0.2] * 3, "probability": 1.0}],
    }
    design = {"xy": [0.3, 0.3], "z_above": [1.1, 1.0], "z_below": [0.2, 0.1], "span": 0.8}
    config = parse_config(
        {
            "task": {"kind": "imaging", "inference": inference, "muons_per_volume": 2000, "momentum": momentum},
            "scene": scene,
            "designs": {"a": design},
            "design": {"start": "a"},
        }
    )
    problem = build_problem(config)
    fractions = {m.name: round(f, 6) for m, f in problem.scene.nominal_background().items()}
    assert fractions == {"iron": 0.3, "air": 0.7}
    prior = problem.momentum_prior(problem.sample((0, 0, 0)))
    assert (prior is not None and prior.n_bins == MARGINAL_BINS) == (momentum in ("marginal", "posterior"))
    trainable = build_design(config, problem)
    settings = TrainingSettings(volumes_per_epoch=4, muons_per_volume=2000)
    parts = batch_loss(trainable, problem, (0, 0, 0), 4, 2000, problem.task.loss, settings)
    parts.total.backward()
    assert math.isfinite(float(parts.total.detach()))
    grads = [p.grad for p in trainable.parameters() if p.grad is not None]
    assert grads and all(bool(torch.isfinite(g).all()) for g in grads)


UNKNOWN = ("constant", "flux_mean", "range_mean", "expected")


@pytest.fixture(scope="module")
def benchmark():
    return _benchmark()


def _maps(bench, background: str, cube: str, seed: int, names: tuple[str, ...]):
    """The benchmark's volume, muons and momenta (10 minutes, 1 m^3 of 10 cm voxels)."""
    volume, index = bench.cube_volume(background, cube, seed)
    data = bench.simulate_and_measure(volume, 10.0, seed)
    momenta = bench.momenta(data, volume, background)
    methods = bench.methods()
    out = {
        (name, p): bench.judge(methods[name](replace(data, momentum=momenta[p]), volume), volume, index)
        for name in names
        for p in ("true", *UNKNOWN)
    }
    # ML/EM marginalising over the momentum, and its posterior momenta for the other methods.
    mlem = methods["mlem"]
    fit = mlem.reconstruct(bench.marginal(data, volume, background), volume)
    if "mlem" in names:
        out[("mlem", "marginal")] = bench.judge(mlem.voxel_map(fit), volume, index)
    posterior = replace(data, momentum=fit.momentum)
    for name in set(names) - {"mlem"}:
        out[(name, "posterior")] = bench.judge(methods[name](posterior, volume), volume, index)
    return out


@pytest.mark.parametrize("background, cube, seed", [("concrete", "uranium", 0), ("water", "lead", 1)])
def test_mlem_marginalising_the_momentum_ranks_the_cube_top_and_images_the_background(
    benchmark, background, cube, seed
):
    """ML/EM with each muon's momentum a hidden class (``momentum = "marginal"``) ranks the cube's
    voxel first where one momentum per muon does not, and images the background within ~e^0.5
    where the flux mean is off by ~e^2.5 (benchmark, 10 volumes: concrete + U 10/10 first,
    background 0.28; water + Pb 10/10, 0.78; the flux mean 2/10 and 6/10, backgrounds 2.6 and 3.1)."""
    out = _maps(benchmark, background, cube, seed, ("mlem",))
    marginal, flux_mean = out[("mlem", "marginal")], out[("mlem", "flux_mean")]
    assert marginal.top1
    assert np.median(marginal.background_log_errors) < 1.0 < np.median(flux_mean.background_log_errors) - 1.0
    assert marginal.cube_log_error < 1.0


def test_poca_with_the_mlem_posterior_momenta_ranks_the_cube_top_and_images_the_background(benchmark):
    """A uranium cube in concrete (seed 1): binned and extended PoCA with ML/EM's posterior
    momenta (``momentum = "posterior"``) rank its voxel first, as they do with the true momenta,
    where the flux mean does not (by the raw 1/X0 it left it out of the top three; by
    ``ranking_score``, which the benchmark ranks by, binned PoCA has it third), and image the
    concrete within ~e^0.3
    where the flux mean is off by ~e^1.5 (a 3-volume trial: background 0.31 against 1.44 for
    binned PoCA, 0.39 with the true momenta)."""
    out = _maps(benchmark, "concrete", "uranium", 1, ("poca", "extended_poca"))
    for name in ("poca", "extended_poca"):
        posterior, flux_mean = out[(name, "posterior")], out[(name, "flux_mean")]
        assert out[(name, "true")].top1 and posterior.top1 and not flux_mean.top1, name
        assert not flux_mean.top1_raw and posterior.top1_raw, name
        assert np.median(posterior.background_log_errors) < 0.5 < np.median(flux_mean.background_log_errors) - 0.5


@pytest.mark.parametrize("seed", [0, 1])
def test_cube_in_water_ranks_top_without_the_true_momentum(benchmark, seed):
    """A 10 cm uranium cube in 1 m^3 of water, 10 minutes: ASR ranks its voxel first with every
    momentum estimate, BCA with those that do not read the deflection (benchmark, 10 seeds:
    ASR 10/10 with each; BCA 10/10, and 8/10 with ``expected``, which is not asserted). The
    X0 methods do not (benchmarks/README.md). ExpectedMomentum images the water itself: the
    median |ln(X0_est / X0_true)| of the background voxels by extended PoCA falls from >1
    (flux mean) to <0.2 (benchmark: 2.0 -> 0.09), while the cube's own X0 is explained away."""
    out = _maps(benchmark, "water", "uranium", seed, ("asr", "bca", "extended_poca"))
    for p in ("true", *UNKNOWN):
        assert out[("asr", p)].top1, p
    for p in ("true", "constant", "flux_mean", "range_mean"):
        assert out[("bca", p)].top1, p
    assert np.median(out[("extended_poca", "expected")].background_log_errors) < 0.2
    assert np.median(out[("extended_poca", "flux_mean")].background_log_errors) > 1.0


@pytest.mark.slow
@pytest.mark.parametrize("cube", ["uranium", "lead"])
def test_cube_ranking_without_the_true_momentum_over_ten_volumes(benchmark, cube):
    """The benchmark's ten volumes per background (benchmarks/README.md, "Reconstruction without
    the truth", same seeds): what holds there is asserted, at thresholds at or below the measured
    fractions (the binomial error of a fraction of 10 is up to 0.16).

    * water: ASR ranks the cube first in >= 8/10 volumes with every unknown-momentum estimate;
      BCA with constant, flux_mean and range_mean;
    * concrete: ASR has the uranium cube among its top 3 in >= 8/10 with every estimate;
    * with the true momentum, every method puts its highest voxel on or next to the cube in
      water (>= 8/10) and in concrete (>= 7/10);
    * ML/EM marginalising over the momentum ranks the cube first in water (>= 8/10) and in
      concrete (>= 8/10; measured 10/10 uranium, 9/10 lead);
    * with ML/EM's posterior momenta (``momentum = "posterior"``) binned and extended PoCA rank
      the cube first in water (>= 8/10; measured 9-10/10) and in concrete (>= 7/10; uranium 8
      and 8/10, lead 8 and 7/10, as with the true momenta: 9-8 and 9-8/10); ASR ranks it first
      in concrete (>= 8/10; 9 and 8/10, against 6 and 2/10 with the flux mean), BCA too (>= 7/10).

    The X0 methods are ranked by ``ranking_score`` (the empirical-Bayes shrunk density: a voxel
    of a handful of muons does not win on its noise); by the raw 1/X0 the PoCA methods found
    lead in concrete in 3-4/10 only with the posterior momenta (7-8/10 with the true ones).
    Not asserted (they fail, recorded in the README): the PoCA X0 methods with one momentum per
    muon from the flux or a nominal background, and 30 % iron clutter (lead: 1-3/10 for every
    method but ML/EM with the true momenta, 6/10).
    """
    names = ("poca", "extended_poca", "asr", "bca", "mlem")
    results = {bg: [_maps(benchmark, bg, cube, s, names) for s in range(10)] for bg in ("water", "concrete")}

    def frac(bg: str, name: str, p: str, what: str = "top1") -> float:
        return sum(getattr(r[(name, p)], what) for r in results[bg]) / 10

    for p in UNKNOWN:
        assert frac("water", "asr", p) >= 0.8, p
        if cube == "uranium":
            assert frac("concrete", "asr", p, "top3") >= 0.8, p
    for p in ("constant", "flux_mean", "range_mean"):
        assert frac("water", "bca", p) >= 0.8, p
    for name in names:
        assert frac("water", name, "true", "near") >= 0.8, name
        assert frac("concrete", name, "true", "near") >= 0.7, name
    assert frac("water", "mlem", "marginal") >= 0.8
    assert frac("concrete", "mlem", "marginal") >= 0.8
    for name in ("poca", "extended_poca"):
        assert frac("water", name, "posterior") >= 0.8, name
        assert frac("concrete", name, "posterior") >= 0.7, name
    assert frac("concrete", "asr", "posterior") >= 0.8
    assert frac("concrete", "bca", "posterior") >= 0.7
