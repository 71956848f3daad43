"""The outlier component of ML/EM's likelihood (:func:`mutomo.reco.mlem.with_outliers`): the
mixture's likelihood and evidence against an independent numpy evaluation, its gradients, what
one muon deflected far beyond any scattering does to a fit with and without the component, and
refusals."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from mutomo.config import parse_config
from mutomo.errors import MutomoError
from mutomo.reco import MaximumLikelihoodEM
from mutomo.reco.mlem import MAX_MEASUREMENT_VARIANCE, log_likelihood, voxel_log_likelihoods, with_outliers
from tests.unit.test_mlem import CLASSES, D, DiscretePrior, toy
from tests.unit.test_mlem_evidence import numpy_voxel_log_likelihood


def numpy_outlier_log_likelihood(problem, rho: np.ndarray, voxel: int, level: float, fraction: float) -> float:
    """l_j(h) of the mixture ``(1 - eps) sum_k pi_k N(D; 0, Sigma_k) + eps N(D; 0, V I + E)``,
    evaluated muon by muon with explicit 4 x 4 matrices (numpy), independently of the torch code."""
    k = problem.classes
    muon, vox = problem.paths.muon.numpy(), problem.paths.voxel.numpy()
    noise = problem.noise.numpy().reshape(-1, k, 4, 4)[:, 0]
    data = problem.deflection.numpy().reshape(-1, k, 4)[:, 0]
    weight = problem.weight.numpy().reshape(-1, k).sum(1)
    total = 0.0
    for i in np.unique(muon[vox == voxel]):
        # The core: the numpy reference of the evidence tests on this muon alone, its weight removed.
        alone = _one_muon(problem, int(i))
        core = numpy_voxel_log_likelihood(alone, rho, voxel, level) / weight[i]
        sigma = MAX_MEASUREMENT_VARIANCE * np.eye(4) + noise[i]
        outlier = (
            -0.5 * np.linalg.slogdet(sigma)[1]
            - 0.5 * data[i] @ np.linalg.solve(sigma, data[i])
            - 2 * math.log(2 * math.pi)
        )
        total += weight[i] * np.logaddexp(math.log1p(-fraction) + core, math.log(fraction) + outlier)
    return float(total)


def _one_muon(problem, i: int):
    """The problem restricted to muon ``i`` (its path entries and class rows)."""
    k = problem.classes
    entries = problem.paths.muon == i
    rows = slice(i * k, (i + 1) * k)
    paths = replace(
        problem.paths,
        muon=torch.zeros(int(entries.sum()), dtype=torch.long),
        voxel=problem.paths.voxel[entries],
        length=problem.paths.length[entries],
        tail=problem.paths.tail[entries],
        n_muons=1,
    )
    return replace(
        problem,
        paths=paths,
        scaled_w=problem.scaled_w[:, entries],
        deflection=problem.deflection[rows],
        noise=problem.noise[rows],
        scale=problem.scale[rows],
        weight=problem.weight[rows],
        log_prior=problem.log_prior[rows],
        log_outlier=None,
        outlier_fraction=0.0,
    )


def kicked(problem, muon: int, angle: float):
    """The problem with one muon's u deflection set to ``angle`` (rad) on all its class rows, as
    a hard single scatter or a bad track gives."""
    k = problem.classes
    deflection = problem.deflection.clone()
    deflection[muon * k : (muon + 1) * k, 0, 0] = angle
    return replace(problem, deflection=deflection)


def two_layers(n: int = 300, seed: int = 3):
    """Iron over water, momenta hidden among three classes, track errors."""
    t = toy(n, [(0.1, 0.0176), (0.1, 0.3608)], seed=seed, track_sigma=(2e-4, 1e-3), p_classes=CLASSES)
    method = MaximumLikelihoodEM(iterations=40, path="straight", momentum_prior=DiscretePrior(*CLASSES))
    return method, method.problem(t.data, t.volume), t


@pytest.mark.parametrize("fraction", [1e-3, 0.05])
def test_the_mixture_likelihood_and_evidence_match_numpy(fraction):
    """Every muon crosses both layers, so the whole log-likelihood is l_j at the fit: both it and
    l_j(h) at three levels equal the numpy mixture, with one muon kicked to 0.5 rad."""
    method, problem, _ = two_layers(n=60)
    problem = with_outliers(kicked(problem, 7, 0.5), fraction)
    rho = method._reconstruct(problem).inverse_x0.reshape(-1)
    whole = float(log_likelihood(rho, problem))
    assert whole == pytest.approx(numpy_outlier_log_likelihood(problem, rho.numpy(), 0, float(rho[0]), fraction))
    levels = [float(rho[1]), 60.0, 316.0]
    got = voxel_log_likelihoods(rho, problem, torch.ones_like(rho), levels)
    for j in range(2):
        for h, level in enumerate(levels):
            expected = numpy_outlier_log_likelihood(problem, rho.numpy(), j, level, fraction)
            assert float(got[h, j]) == pytest.approx(expected, rel=1e-10, abs=1e-8)


def test_one_muon_deflected_by_radians_drives_the_fit_without_the_component_and_not_with_it():
    """One of 300 muons kicked to 3.7 rad (as on the portal's floor voxel): without the outlier
    component both layers' 1/X0 are pulled far from the clean fit; with it (1e-3) the fit is the
    clean one within 2 % and the muon's outlier posterior is 1. The EM still never lowers its
    likelihood."""
    method, problem, t = two_layers()
    clean = method._reconstruct(problem).inverse_x0.reshape(-1)
    bad = kicked(problem, 11, 3.7)
    without = method._reconstruct(bad).inverse_x0.reshape(-1)
    assert float((without / clean).max()) > 3.0, (without, clean)
    robust = with_outliers(bad, 1e-3)
    result = method._reconstruct(robust)
    with_ = result.inverse_x0.reshape(-1)
    torch.testing.assert_close(with_, clean, rtol=0.02, atol=0.0)
    history = result.log_likelihood
    assert bool((history.diff() >= -1e-9 * history.abs()[1:]).all()), history
    # The same component on the clean data moves the fit by less than its error.
    untouched = method._reconstruct(with_outliers(problem, 1e-3))
    torch.testing.assert_close(untouched.inverse_x0.reshape(-1), clean, rtol=0.02, atol=0.0)


def test_the_fit_with_outliers_is_a_stationary_point_of_the_mixture_likelihood():
    """At the EM's converged map the mixture's log-likelihood has zero gradient in every voxel's
    1/X0 (relative to its per-muon size): the M-step's count ``sum w (1 - r_out)`` is the mixture's."""
    method, problem, _ = two_layers()
    robust = with_outliers(kicked(problem, 11, 0.3), 0.05)
    rho = MaximumLikelihoodEM(iterations=400, path="straight", momentum_prior=DiscretePrior(*CLASSES))._reconstruct(
        robust
    )
    at = rho.inverse_x0.reshape(-1).clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(log_likelihood(at, robust), at)
    assert float((grad * at.detach()).abs().max()) < 1e-3 * float(robust.weight.sum()) ** 0.5, grad


def test_the_mixture_likelihood_gradchecks_in_float64():
    """Gradients in the map and in the data (the deflections the detector's design moves)."""
    _, problem, _ = two_layers(n=12, seed=5)
    robust = with_outliers(kicked(problem, 2, 0.4), 0.05)
    rho = torch.tensor([50.0, 3.0], dtype=D, requires_grad=True)
    deflection = robust.deflection.clone().requires_grad_(True)

    def f(r, d):
        moved = with_outliers(replace(robust, deflection=d), 0.05)
        return log_likelihood(r, moved)

    assert torch.autograd.gradcheck(f, (rho, deflection), eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("fraction", [-0.1, 0.5, math.nan, True])
def test_bad_outlier_fractions_are_refused_by_name(fraction):
    with pytest.raises(MutomoError, match="outlier_fraction"):
        MaximumLikelihoodEM(outlier_fraction=fraction)
    _, problem, _ = two_layers(n=10)
    if not isinstance(fraction, bool):
        with pytest.raises(MutomoError, match="outlier fraction"):
            with_outliers(problem, fraction)


def test_zero_fraction_is_the_gaussian_model():
    _, problem, _ = two_layers(n=30)
    rho = torch.tensor([50.0, 3.0], dtype=D)
    none = with_outliers(problem, 0.0)
    assert none.log_outlier is None
    with pytest.raises(MutomoError, match="with_outliers"):
        replace(problem, outlier_fraction=1e-3)  # a fraction without the log-densities
    assert float(log_likelihood(rho, none)) == float(log_likelihood(rho, problem))


def test_the_configuration_passes_the_fraction_and_refuses_it_without_mlem():
    config = parse_config(
        {
            "extends": "border_portal",
            "task": {"inference": "mlem", "momentum": "marginal", "statistic": "likelihood", "outlier_fraction": 1e-3},
        }
    )
    assert config.task.outlier_fraction == 1e-3
    with pytest.raises(MutomoError, match="outlier_fraction .* needs kind 'presence' and inference 'mlem'"):
        parse_config({"extends": "border_portal", "task": {"inference": "asr", "outlier_fraction": 1e-3}})
    with pytest.raises(MutomoError, match="outlier_fraction"):
        parse_config({"extends": "border_portal", "task": {"inference": "mlem", "outlier_fraction": 0.7}})


def test_the_evidence_with_outliers_gradchecks_in_float64():
    """The per-voxel log-likelihoods with the outlier column, through the checkpointed chunks."""
    method, problem, _ = two_layers(n=20, seed=6)
    robust = with_outliers(kicked(problem, 3, 0.4), 0.05)
    rho = method._reconstruct(robust).inverse_x0.reshape(-1).detach().clone().requires_grad_(True)
    factor = torch.tensor([1.1, 1.05], dtype=D, requires_grad=True)

    def f(r, fac):
        return voxel_log_likelihoods(r, robust, fac, [56.8, 20.0])

    assert torch.autograd.gradcheck(f, (rho, factor), eps=1e-6, atol=1e-5, rtol=1e-4)
