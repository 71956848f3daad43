"""Metrics as a physicist pastes them (issue 26): names with units, values rounded to their
error (two significant digits of the error), and what a missing value means.

Used by the report's tables (:mod:`mutomo.plotting.report`) and the command line.
"""

from __future__ import annotations

import math

METRIC_LABELS: dict[str, tuple[str, str]] = {
    "mse": ("MSE", "m²"),
    "auc": ("AUC", ""),
    "efficiency_at_false_alarm": ("efficiency at the false-alarm rate", ""),
    "exposure_to_goal_s": ("exposure to the goal", "s"),
    "exposure_ratio": ("exposure ratio", ""),
    "abs_log_error": ("|ln X0 error|", ""),
    "cnr": ("CNR", ""),
    "localisation": ("target ranked first", ""),
}
"""Each metric's label and unit (empty: dimensionless)."""

CENSORED = ("exposure_to_goal_s", "exposure_ratio")
"""Metrics whose missing value means the goal was not reached at any exposure tried."""
UNDEFINED = "undefined (no muon passes this trigger)"
NOT_REACHED = "not reached (the goal is not met at any exposure tried)"


def metric_label(metric: str) -> str:
    """``"MSE (m²)"``, ``"AUC"``: the metric's label with its unit; the name itself if unknown."""
    label, unit = METRIC_LABELS.get(metric, (metric, ""))
    return f"{label} ({unit})" if unit else label


def round_to_error(value: float, error: float | None, plus_minus: str = "±") -> str:
    """``value ± error`` with the error to two significant digits and the value to the same
    decimal place (``0.04406 ± 0.0421`` -> ``0.044 ± 0.042``; ``12345 ± 1234`` -> ``12300 ± 1200``);
    a zero or missing error leaves four significant digits."""
    if error is None or not math.isfinite(error):
        return f"{value:.4g}"
    if error == 0:
        return f"{value:.4g} {plus_minus} 0"
    decimals = 1 - math.floor(math.log10(abs(error)))
    if round(abs(error), decimals) >= 10 ** (2 - decimals):  # 0.0996 rounds to 0.10: one place fewer
        decimals -= 1
    shown = max(decimals, 0)
    return f"{round(value, decimals):.{shown}f} {plus_minus} {round(error, decimals):.{shown}f}"


def value_text(
    metric: str, value: list[float | None] | tuple[float | None, float | None], plus_minus: str = "±"
) -> str:
    """A metric's ``[value, error]`` as text: rounded to its error, or what its absence means."""
    v, e = value
    if v is None:
        return NOT_REACHED if metric in CENSORED else UNDEFINED
    return round_to_error(v, e, plus_minus)
