"""Every entry of every registry a configuration names has a test case here, and a new entry
without one fails (as cheetah's test configuration does for its element classes).

The registries: voxel methods (:data:`mutomo.reco.methods.VOXEL_METHODS`), momentum options
(:data:`mutomo.reco.momentum_options.MOMENTUM_OPTIONS`), task kinds
(:data:`mutomo.tasks.TASK_KINDS`), design kinds (:data:`mutomo.design.DESIGN_KINDS`) and
gradient-free methods (:data:`mutomo.studies.baselines.METHODS`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest
import torch

from mutomo import DESIGN_KINDS, MOMENTUM_OPTIONS, TASK_KINDS, VOXEL_METHODS
from mutomo.config import build_problem, load_benchmark, parse_config
from mutomo.config.schema import SWEEP_METHODS
from mutomo.design import HodoscopeDesign, StackedDesign, design_from_description
from mutomo.detector import Detector, DetectorPanel
from mutomo.muons import FluxSource, TabulatedFlux
from mutomo.optimise.problem import SMOOTH, Problem, key_generator
from mutomo.reco import ScatterData, measure
from mutomo.reco.momentum_options import MomentumContext
from mutomo.simulate import acceptance_plane, simulate
from mutomo.studies.baselines import METHODS, search
from mutomo.studies.starts import random_starts, tiled_for
from mutomo.volume import PassiveVolume

# ----------------------------------------------------------------------------- voxel methods


@pytest.fixture(scope="module")
def lead_in_water() -> tuple[ScatterData, PassiveVolume, torch.Tensor]:
    """40,000 muons with their true momenta through 60 cm of water holding a 20 cm lead cube."""
    volume = PassiveVolume.uniform("water", size=(0.6, 0.6, 0.6), voxel_size=0.1, z_low=0.2)
    volume = volume.with_box("lead", low=(0.2, 0.2, 0.3), high=(0.4, 0.4, 0.5))

    def panel(z: float) -> DetectorPanel:
        return DetectorPanel(centre=(0.3, 0.3, z), span=(1.2, 1.2), resolution=1e-4, efficiency=1.0)

    detector = Detector(above=[panel(1.1), panel(1.0), panel(0.9)], below=[panel(0.1), panel(0.0), panel(-0.1)])
    source = FluxSource(acceptance_plane(detector, theta_max=math.radians(40)), TabulatedFlux())
    r = simulate(detector, volume, source, 40_000, torch.Generator().manual_seed(3), step_length=0.02)
    momentum = 0.5 * (r.muons_in.momentum + r.muons_out.momentum)
    data = measure(r.hits_above, r.hits_below, volume, momentum, r.muons_in.weight * (r.muons_out.weight > 0))
    lead = torch.zeros(volume.shape, dtype=torch.bool)
    lead[2:4, 2:4, 1:3] = True  # voxels of the cube (10 cm voxels; z from 0.2 m)
    return data, volume, lead


def _ranks_the_lead_first(entry_name: str, data, volume, lead) -> None:
    vmap = VOXEL_METHODS[entry_name].build()(data, volume)
    assert vmap.score.shape == volume.shape
    assert bool(torch.isfinite(vmap.score).all())
    top = int(torch.where(vmap.measured, vmap.score, torch.full_like(vmap.score, -math.inf)).argmax())
    assert bool(lead.reshape(-1)[top]), f"{entry_name}: highest score outside the lead"
    if VOXEL_METHODS[entry_name].infers_x0:
        assert vmap.x0 is not None
        x0_lead = float(vmap.x0[lead & vmap.measured].median())
        x0_water = float(vmap.x0[~lead & vmap.measured].median())
        assert x0_lead < 0.2 * x0_water, (entry_name, x0_lead, x0_water)  # PDG: 0.0056 m against 0.361 m
    else:
        assert vmap.x0 is None


VOXEL_CASES: dict[str, Callable[..., None]] = {name: _ranks_the_lead_first for name in VOXEL_METHODS}
# A new method is added here deliberately, with its own expectation if the shared one does not fit.
VOXEL_CASES_EXPECTED = {"poca", "extended_poca", "asr", "bca", "mlem"}


def test_every_voxel_method_has_a_case():
    assert set(VOXEL_METHODS) == VOXEL_CASES_EXPECTED, "a voxel method without a test case: add it here"


@pytest.mark.parametrize("name", sorted(VOXEL_METHODS))
def test_voxel_method_cases(name, lead_in_water):
    VOXEL_CASES[name](name, *lead_in_water)


# ----------------------------------------------------------------------------- momentum options


@pytest.fixture(scope="module")
def waste() -> Problem:
    return load_benchmark("waste_block")


def _measured(problem: Problem, option: str) -> tuple[ScatterData, MomentumContext]:
    p = replace(problem, momentum=MOMENTUM_OPTIONS[option])
    sample = p.sample((0, 0, 0), 0)
    design = p.design("human_close", (), None)
    r = simulate(design.detector(), sample.volume, p.source, 3000, key_generator((1,)), step_length=p.step_length)
    return p.measure(r.hits_above, r.hits_below, r, sample), p.momentum_context(r, sample)


def _momenta(data: ScatterData) -> torch.Tensor:
    return data.momentum[data.weight > 0]


MOMENTUM_CASES: dict[str, Callable[[ScatterData, MomentumContext], None]] = {
    "true": lambda d, c: _true_means(d, c),
    "constant": lambda d, c: torch.testing.assert_close(_momenta(d), torch.full_like(_momenta(d), 4.0)),
    "flux_mean": lambda d, c: _in_range(_momenta(d), 3.0, 30.0, varies=True),
    "expected": lambda d, c: _in_range(_momenta(d), 0.1, 1e4, varies=True),
    "range_mean": lambda d, c: _in_range(_momenta(d), 3.0, 60.0, varies=True),
    "marginal": lambda d, c: _has_prior(d),
    "posterior": lambda d, c: _posterior(d, c),
}


def _in_range(p: torch.Tensor, low: float, high: float, varies: bool) -> None:
    assert bool(((p > low) & (p < high)).all()), (float(p.min()), float(p.max()))
    assert not varies or float(p.std()) > 0


def _true_means(d: ScatterData, c: MomentumContext) -> None:
    """Each measured muon's momentum is the mean of its true momenta in and out, and the momentum
    it lost is passed on (for ML/EM to spread along its path)."""
    truth = 0.5 * (c.muons_in.momentum + c.muons_out.momentum).to(d.momentum.dtype)
    assert float((d.momentum[:, None] - truth[None, :]).abs().amin(1).max()) == 0.0
    assert d.momentum_loss is not None and bool((d.momentum_loss >= 0).all())


def _posterior(d: ScatterData, c: MomentumContext) -> None:
    """Each muon's own posterior momentum: positive, spread, and not the flux mean it started from."""
    _in_range(_momenta(d), 0.1, 1e4, varies=True)
    flux_mean = MOMENTUM_OPTIONS["flux_mean"].momenta(c)
    assert not isinstance(flux_mean, torch.Tensor)
    assert not torch.allclose(_momenta(d), flux_mean(d.incoming, d.outgoing)[d.weight > 0])


def _has_prior(d: ScatterData) -> None:
    assert d.momentum_prior is not None
    _in_range(_momenta(d), 3.0, 30.0, varies=True)  # the data's own: the flux mean


def test_every_momentum_option_has_a_case():
    assert set(MOMENTUM_CASES) == set(MOMENTUM_OPTIONS), "a momentum option without a test case: add it here"


@pytest.mark.parametrize("option", sorted(MOMENTUM_OPTIONS))
def test_momentum_option_cases(option, waste):
    data, context = _measured(waste, option)
    opt = MOMENTUM_OPTIONS[option]
    assert (data.momentum_prior is not None) == (opt.marginal and not opt.posterior)
    assert (opt.momentum_loss(context) is not None) == opt.oracle
    assert isinstance(opt.momenta(context), torch.Tensor) == opt.oracle  # else an estimator of the tracks
    MOMENTUM_CASES[option](data, context)
    for method in VOXEL_METHODS:  # the configuration check and the option agree
        assert (opt.refusal(method) is None) == (method in opt.methods())


# ----------------------------------------------------------------------------- task kinds


def _problem(kind: str, inference: str) -> Problem:
    base = "ladle_furnace" if kind == "regression" else "waste_block"
    task = {"kind": kind, "inference": inference, "muons_per_volume": 2000, "exposure_s": None}
    return build_problem(parse_config({"extends": base, "task": task}))


#: Each kind's case: an inference it allows, muons per volume, and what its outputs must satisfy
#: (imaging needs a few muons in every voxel of the 1 m waste block for a measured map).
TASK_CASES: dict[str, tuple[str, int, Callable[[torch.Tensor, int], bool]]] = {
    # the fill statistic (m)
    "regression": ("fill_statistic", 2000, lambda out, n: out.shape == (1,) and bool(torch.isfinite(out).all())),
    # clean references: every voxel's score, its standard deviation, measured, true 1/X0, target
    "presence": (
        "asr",
        2000,
        lambda out, n: out.shape == (5 * n,) and bool(torch.isfinite(out).all() and (out[n:] >= 0).all()),
    ),
    # squared and absolute ln X0 error, contrast-to-noise
    "imaging": (
        "poca",
        20000,
        lambda out, n: out.shape == (3,) and bool(torch.isfinite(out[:2]).all() and (out[:2] >= 0).all()),
    ),
}


def test_every_task_kind_has_a_case():
    assert set(TASK_CASES) == set(TASK_KINDS), "a task kind without a test case: add it here"


@pytest.mark.parametrize("kind", sorted(TASK_KINDS))
def test_task_kind_cases(kind):
    inference, muons, check = TASK_CASES[kind]
    assert inference in TASK_KINDS[kind].inferences
    problem = _problem(kind, inference)
    design = problem.design(sorted(problem.designs)[0], (), None)
    sample = problem.sample((0, 0, 0), 0)
    (out,) = problem.observe(design.detector(), sample, muons, key_generator((2,)), (SMOOTH,))
    assert check(out, sample.volume.x0.numel()), out.shape


# ----------------------------------------------------------------------------- design kinds


def _panels(problem: Problem):
    return problem.design("human_close", ("xy", "z", "size"), None)


def _hodoscopes(problem: Problem):
    return tiled_for(problem, 3)


def _stacked(problem: Problem):
    return StackedDesign(random_starts(_panels(problem), 2, seed=0))


DESIGN_CASES = {
    "panels": ("waste_block", _panels),
    "hodoscopes": ("lorry_uranium", _hodoscopes),
    "stacked": ("waste_block", _stacked),
}


def test_every_design_kind_has_a_case():
    assert set(DESIGN_CASES) == set(DESIGN_KINDS), "a design kind without a test case: add it here"


@pytest.mark.parametrize("kind", sorted(DESIGN_KINDS))
def test_design_kind_cases(kind):
    """A design of each kind is an instance of its class and comes back from its JSON
    description with the same cost and the same panels."""
    benchmark, make = DESIGN_CASES[kind]
    design = make(load_benchmark(benchmark))
    assert isinstance(design, DESIGN_KINDS[kind])
    copy = design_from_description(json.loads(design.to_json()))
    assert type(copy) is type(design)
    torch.testing.assert_close(copy.cost().detach(), design.cost().detach())
    a, b = design.detector(), copy.detector()
    for side in ("above", "below"):
        torch.testing.assert_close(a.panel_parameters(side)["centre"], b.panel_parameters(side)["centre"])
    if kind == "hodoscopes":
        assert isinstance(design, HodoscopeDesign) and len(design.describe()["centres"]) == 3


# ----------------------------------------------------------------------------- gradient-free methods


def _quadratic(x: np.ndarray) -> float:
    return float(((x - 0.3) ** 2).sum())


def test_every_search_method_has_a_case_and_a_configuration_name():
    assert set(SEARCH_CASES) == set(METHODS), "a search method without a test case: add it here"
    assert tuple(METHODS) == SWEEP_METHODS


#: Each method minimises a 2-D quadratic (minimum 0 at 0.3, 0.3) in the unit box with 60 calls:
#: it must end below this value (random search: the expected best of 60 uniform draws is ~0.01).
SEARCH_CASES = {"random": 0.05, "cma": 0.01, "tpe": 0.05, "gp": 0.02, "surrogate": 0.02}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_search_method_cases(method):
    bounds = (np.zeros(2), np.ones(2))
    result = search(method, _quadratic, bounds, 60, seed=1)
    assert result.calls <= 60
    assert _quadratic(result.x) < SEARCH_CASES[method], (method, result.x)
