"""The local surrogate: its gradient against the true one on smooth toys, its optimiser on toys
with and without a gradient, and its refusals."""

import math

import numpy as np
import pytest
import torch

from mutomo.errors import MutomoError
from mutomo.studies.baselines import METHODS, search
from mutomo.studies.surrogate import fit_gradient, surrogate_gradient, surrogate_search

DIM = 8
_A = np.random.default_rng(0).normal(size=(DIM, DIM))
HESSIAN = _A @ _A.T / DIM + np.eye(DIM)  # positive definite, condition number ~ 10
OPTIMUM = np.linspace(-0.5, 0.5, DIM)
FREQUENCY = np.linspace(1.0, 3.0, DIM)
BOX = (np.full(DIM, -2.0), np.full(DIM, 2.0))
POINT = np.random.default_rng(1).uniform(-1.0, 1.0, DIM)


def quadratic(x: np.ndarray) -> float:
    return float(0.5 * (x - OPTIMUM) @ HESSIAN @ (x - OPTIMUM))


def quadratic_grad(x: np.ndarray) -> np.ndarray:
    return HESSIAN @ (x - OPTIMUM)


def sines(x: np.ndarray) -> float:
    return float(np.sin(FREQUENCY * x).sum())


def sines_grad(x: np.ndarray) -> np.ndarray:
    return FREQUENCY * np.cos(FREQUENCY * x)


def staircase(x: np.ndarray) -> float:
    """Floor of the quadratic in steps of 0.1: piecewise constant, zero gradient almost everywhere."""
    return float(np.floor(10.0 * quadratic(x)))


def noisy(f, sigma: float, seed: int):
    rng = np.random.default_rng(seed)
    return lambda x: f(x) + sigma * rng.normal()


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# ----------------------------------------------------------------------------- the gradient


@pytest.mark.parametrize(("f", "grad"), [(quadratic, quadratic_grad), (sines, sines_grad)])
@pytest.mark.parametrize("seed", range(5))
def test_surrogate_gradient_matches_the_true_gradient_without_noise(f, grad, seed):
    """16 points (8 antithetic pairs) in a trust region of half-width 0.05 x the box (0.2):
    exact for the quadratic (antithetic pairs cancel its curvature), within a few per cent for
    the sines (third-order terms, ~ |w|^3 r^2 / 6)."""
    estimate = surrogate_gradient(f, POINT, 0.05, 16, bounds=BOX, seed=seed)
    true = grad(POINT)
    assert cosine(estimate, true) > 0.95
    assert np.linalg.norm(estimate - true) / np.linalg.norm(true) < 0.2


@pytest.mark.parametrize(("f", "grad"), [(quadratic, quadratic_grad), (sines, sines_grad)])
@pytest.mark.parametrize("seed", range(5))
def test_surrogate_gradient_with_noise_within_its_looser_bound(f, grad, seed):
    """Additive Gaussian noise of s.d. 0.05 on every value (|gradient| ~ 2-6 here): 16 points in
    the half-width 0.2 region give a gradient error of s.d. ~ 0.05 / 0.2 per direction, so the
    bound is looser: cosine > 0.9 and relative error < 40 %."""
    estimate = surrogate_gradient(noisy(f, 0.05, seed), POINT, 0.05, 16, bounds=BOX, seed=seed)
    true = grad(POINT)
    assert cosine(estimate, true) > 0.9
    assert np.linalg.norm(estimate - true) / np.linalg.norm(true) < 0.4


def test_surrogate_gradient_where_autograd_gives_zero():
    """On the staircase autograd's gradient is zero; the surrogate's (of the staircase averaged
    over the trust region) points along the underlying quadratic's."""
    x = torch.tensor(POINT, requires_grad=True)
    h, o = torch.tensor(HESSIAN), torch.tensor(OPTIMUM)
    torch.floor(10.0 * 0.5 * (x - o) @ h @ (x - o)).backward()
    assert x.grad is not None and torch.all(x.grad == 0)
    estimate = surrogate_gradient(staircase, POINT, 0.05, 32, bounds=BOX, seed=0)
    assert cosine(estimate, 10.0 * quadratic_grad(POINT)) > 0.95


def test_fit_gradient_one_intercept_per_iteration():
    """Points of two iterations whose values differ by a constant (one batch each: common random
    numbers within an iteration, different ones across) still give the exact gradient of a
    linear objective; a single intercept would not."""
    rng = np.random.default_rng(3)
    g = rng.normal(size=DIM)
    points = rng.uniform(0.4, 0.6, size=(4 * DIM, DIM))
    groups = np.repeat([0, 1], 2 * DIM)
    values = points @ g + 5.0 * groups
    centre = np.full(DIM, 0.5)
    assert np.allclose(fit_gradient(points, values, groups, centre), g)
    assert not np.allclose(fit_gradient(points, values, np.zeros_like(groups), centre), g, atol=0.1)
    values[::3] = np.nan  # left out of the fit
    assert np.allclose(fit_gradient(points, values, groups, centre), g)
    assert fit_gradient(points[:4], values[:4], groups[:4], centre) is None  # underdetermined


# ----------------------------------------------------------------------------- the optimiser


def test_surrogate_is_a_registered_method():
    assert "surrogate" in METHODS
    result = search("surrogate", quadratic, BOX, 320, muons_per_call=10, seed=0, x0=np.zeros(DIM))
    assert result.method == "surrogate" and result.calls == 32 and result.muons == 320


@pytest.mark.parametrize(("f", "tolerance"), [(quadratic, 0.05), (staircase, 0.1)])
def test_surrogate_search_reaches_the_optimum(f, tolerance):
    """8 dimensions, box [-2, 2]^8, from the origin (quadratic value 0.85), 100 iterations of 16
    points: the final point is within ``tolerance`` of the optimum, on the staircase too (where
    autograd gives zero everywhere)."""
    start = np.zeros(DIM)
    result = surrogate_search(f, BOX, 1600, seed=1, x0=start)
    assert result.calls == 1600
    assert np.linalg.norm(result.x - OPTIMUM) < tolerance
    assert quadratic(result.x) < 0.01 * quadratic(start)
    assert np.all(result.x >= BOX[0]) and np.all(result.x <= BOX[1])


def test_surrogate_search_on_a_noisy_quadratic_and_at_the_bounds():
    """Noise s.d. 0.05 (start value 0.85), and an optimum outside the box along one axis: the
    answer is projected onto that face and the other coordinates still converge."""
    optimum = OPTIMUM.copy()
    optimum[0] = 3.0

    def f(x: np.ndarray) -> float:
        return float(0.5 * (x - optimum) @ (x - optimum))

    result = surrogate_search(noisy(f, 0.05, 0), BOX, 3200, seed=2, x0=np.zeros(DIM))
    assert result.x[0] == pytest.approx(2.0, abs=0.05)
    assert np.linalg.norm(result.x[1:] - optimum[1:]) < 0.15


def test_surrogate_search_reuses_evaluations_in_the_trust_region(monkeypatch):
    """Each fit sees the fresh points and the earlier ones still inside the trust region (as
    L-GSO reuses its history), and only those; the run is reproducible from its seed."""
    import mutomo.studies.surrogate as module

    seen: list[tuple[int, float]] = []
    original = module.fit_gradient

    def spy(points, values, groups, centre):
        seen.append((len(points), float(np.abs(points - centre).max())))
        return original(points, values, groups, centre)

    monkeypatch.setattr(module, "fit_gradient", spy)
    a = surrogate_search(quadratic, BOX, 1000, seed=4, x0=np.zeros(DIM), n=2 * DIM)
    assert len(seen) == 1000 // (2 * DIM)
    assert seen[0][0] == 2 * DIM and max(count for count, _ in seen) > 2 * (2 * DIM)
    assert all(reach <= 0.05 + 1e-9 for _, reach in seen)
    b = surrogate_search(quadratic, BOX, 1000, seed=4, x0=np.zeros(DIM), n=2 * DIM)
    assert np.array_equal(a.x, b.x) and a.trace == b.trace
    assert np.linalg.norm(a.x - OPTIMUM) < 0.1


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"budget": 0}, "budget"),
        ({"budget": -3}, "budget"),
        ({"budget": 10}, "budget"),  # fewer calls than one iteration (16)
        ({"muons_per_call": 0}, "muons_per_call"),
        ({"radius": 0.0}, "radius"),
        ({"radius": 0.7}, "radius"),
        ({"radius": math.nan}, "radius"),
        ({"n": 4}, "n"),  # fewer than 2 x dimension
        ({"n": 14}, "n"),  # 7 pairs cannot span 8 dimensions
        ({"n": 11}, "n"),  # odd
        ({"lr": 0.0}, "lr"),
        ({"x0": np.zeros(3)}, "x0"),
        ({"bounds": (np.zeros(DIM), np.zeros(DIM))}, "bounds"),
    ],
)
def test_surrogate_search_refuses_bad_input_naming_the_field(kwargs, field):
    args = {"bounds": BOX, "budget": 1000, **kwargs}
    bounds, budget = args.pop("bounds"), args.pop("budget")
    with pytest.raises(MutomoError, match=field):
        surrogate_search(quadratic, bounds, budget, **args)


def test_surrogate_gradient_refuses_bad_input():
    with pytest.raises(MutomoError, match="radius"):
        surrogate_gradient(quadratic, POINT, 0.0, 16, bounds=BOX)
    with pytest.raises(MutomoError, match="n "):
        surrogate_gradient(quadratic, POINT, 0.05, 10, bounds=BOX)
    with pytest.raises(MutomoError, match="bounds"):
        surrogate_gradient(quadratic, POINT, 0.05, 16, bounds=(np.zeros(3), np.ones(3)))
    with pytest.raises(MutomoError, match="finite"):
        surrogate_gradient(lambda x: math.nan, POINT, 0.05, 16, bounds=BOX)


# ----------------------------------------------------------------------------- the design objective


def test_design_objective_shares_batches_and_reads_out_physically():
    """``calls_per_batch`` calls see one batch (common random numbers for one iteration), the
    next call the next batch; the physical readout (hard edges, Bernoulli hits) gives a different
    loss than the smooth one on the same batch, and a bad ``calls_per_batch`` is refused."""
    from mutomo.config.build import load_benchmark
    from mutomo.optimise.loop import TrainingSettings
    from mutomo.optimise.problem import Readout
    from mutomo.studies.search import DesignVector, design_objective

    ladle = load_benchmark("ladle_furnace")
    design = ladle.design("human_acceptance", ("z",), 6000.0)
    settings = TrainingSettings(epochs=3, volumes_per_epoch=4, muons_per_volume=200, validation_volumes=0)
    vector = DesignVector(design)
    x = vector.get()
    smooth, _ = design_objective(design, ladle, settings, vector=vector, calls_per_batch=3)
    values = [smooth(x) for _ in range(4)]
    assert values[0] == values[1] == values[2] != values[3]
    physical, _ = design_objective(design, ladle, settings, vector=vector, readout=Readout(physical=True))
    first = physical(x)  # batch 0, as values[0]
    assert math.isfinite(first) and first != values[0]
    with pytest.raises(MutomoError, match="calls_per_batch"):
        design_objective(design, ladle, settings, vector=vector, calls_per_batch=0)
