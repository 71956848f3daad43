"""Reports a physicist can paste (issue 26, point 7): units in headers, values rounded to their
error, missing values said in words; the time left counts the evaluation."""

from __future__ import annotations

import io

import pytest

from mutomo.optimise.metric_text import NOT_REACHED, UNDEFINED, metric_label, round_to_error, value_text
from mutomo.optimise.progress import Progress
from mutomo.plotting.report import _metric_table


@pytest.mark.parametrize(
    "value, error, text",
    [
        (0.04406, 0.0421, "0.044 ± 0.042"),
        (0.009209, 0.0022, "0.0092 ± 0.0022"),
        (12345.0, 1234.0, "12300 ± 1200"),
        (0.9712, 0.0123, "0.971 ± 0.012"),
        (0.26, 0.0996, "0.26 ± 0.10"),  # the error rounds up to a new digit
        (-0.007693, 0.0074, "-0.0077 ± 0.0074"),
        (0.5, 0.0, "0.5 ± 0"),
        (5.0, None, "5"),
    ],
)
def test_values_are_rounded_to_two_digits_of_their_error(value, error, text):
    assert round_to_error(value, error) == text


def test_missing_values_say_why_and_headers_carry_units():
    assert value_text("auc", [None, None]) == UNDEFINED == "undefined (no muon passes this trigger)"
    assert value_text("exposure_to_goal_s", [None, None]) == NOT_REACHED
    assert value_text("mse", [0.01002, 0.0026], "+-") == "0.0100 +- 0.0026"
    assert metric_label("mse") == "MSE (m²)" and metric_label("exposure_to_goal_s") == "exposure to the goal (s)"
    assert metric_label("auc") == "AUC" and metric_label("new_metric") == "new_metric"
    table = _metric_table(
        {
            "a": {"physical": {"mse": [0.04257, 0.0100]}, "design": {"cost": 6000.0}},
            "b": {"physical": {"mse": [None, None]}},
        },
        ["physical"],
    )
    assert "<th>physical: MSE (m²)</th>" in table and "<th>cost (units of account)</th>" in table
    assert "<td>0.043 ± 0.010</td>" in table and "<td>undefined (no muon passes this trigger)</td>" in table
    assert "None" not in table and "not reached" not in table


def test_time_left_counts_the_evaluation_after_training():
    stream = io.StringIO()
    progress = Progress("p", 0, 4, every=1, stream=stream, after_s=120.0)
    progress.epoch(0, {"task": 0.5, "budget": 0.0, "cost": 1.0}, None)
    line = stream.getvalue()
    assert "with ~120 s of evaluation)" in line
    left = float(line.split("~")[1].split(" s left")[0])
    assert left >= 120.0  # three epochs to go plus the evaluation
    plain = io.StringIO()
    Progress("p", 0, 4, every=1, stream=plain).epoch(0, {"task": 0.5, "budget": 0.0, "cost": 1.0}, None)
    assert "evaluation" not in plain.getvalue()
