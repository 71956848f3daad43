"""From a configuration to built objects (mutomo.config.build): the soft budget reaches the
training, and a problem holds no configuration."""

from __future__ import annotations

import dataclasses

import pytest

from mutomo.config import build_design, build_problem, parse_config, settings_from
from mutomo.config.schema import RunConfig
from mutomo.optimise import optimise


def _soft(budget: float | None) -> RunConfig:
    design = {"start": "human_acceptance", "trainable": ["size"], "fixed_budget": False}
    if budget is not None:
        design["budget"] = budget
    training = {
        "epochs": 12,
        "volumes_per_epoch": 4,
        "muons_per_volume": 200,
        "validation_volumes": 0,
        "warmup_epochs": 1,
        "hits": "expected",
    }
    return parse_config({"extends": "ladle_furnace", "design": design, "training": training})


def _trained_cost(config: RunConfig) -> tuple[float, float, list[float]]:
    problem = build_problem(config)
    design = build_design(config, problem)
    start = float(design.cost().detach())
    history = optimise(design, problem, settings_from(config, problem), run_dir=None, progress=False)
    return start, float(design.cost().detach()), [r.loss["budget"] for r in history.records]


def test_the_soft_budget_of_a_configuration_trains_under_its_penalty():
    """``design.fixed_budget = false`` with ``design.budget``: the budget reaches the training
    (it was silently dropped), its penalty is in the loss, and the cost ends nearer the budget
    than the same run without one (same muons)."""
    config = _soft(3000.0)
    problem = build_problem(config)
    assert settings_from(config, problem).budget == 3000.0
    assert build_design(config, problem).budget is None  # soft: no fixed budget on the design
    start, with_budget, penalties = _trained_cost(config)
    _, without, free_penalties = _trained_cost(_soft(None))
    assert start > 5000.0  # the evenly spaced human design: eight 0.866 m panels, ~6000
    assert penalties[0] > 1.0 and all(p == 0.0 for p in free_penalties)
    assert abs(with_budget - 3000.0) < abs(without - 3000.0)
    assert with_budget < start - 500.0, (start, with_budget)


def test_a_fixed_budget_has_no_penalty():
    config = parse_config({"extends": "ladle_furnace"})
    assert settings_from(config, build_problem(config)).budget is None


def test_a_problem_holds_built_designs_not_the_configuration():
    """The problem's named designs are builders; nothing of it is a pydantic model."""
    problem = build_problem(parse_config({"extends": "ladle_furnace"}))
    for field in dataclasses.fields(problem):
        value = getattr(problem, field.name)
        assert "pydantic" not in type(value).__module__, field.name
    assert callable(problem.designs["poor"])
    with pytest.raises(ValueError, match="neither a design"):
        problem.design("nobody", what="design.start")
