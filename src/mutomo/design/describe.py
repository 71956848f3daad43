"""Designs by kind: the one table of design kinds, and a design rebuilt from its description.

A design's :meth:`~mutomo.design.base.Design.describe` writes a JSON-able dictionary whose
``kind`` names its class here (free panels have none, for files written before kinds existed).
Adding a design kind is one module and one line of :data:`DESIGN_KINDS`;
``tests/unit/test_registries.py`` enumerates the table and fails a kind without a test case.
"""

from __future__ import annotations

from typing import Any

from mutomo.design.base import Design
from mutomo.design.hodoscopes import HodoscopeDesign
from mutomo.design.panels import DetectorDesign
from mutomo.design.stacked import StackedDesign
from mutomo.detector.cost import CostModel
from mutomo.errors import MutomoError

DESIGN_KINDS: dict[str, type[Design]] = {
    "panels": DetectorDesign,
    "hodoscopes": HodoscopeDesign,
    "stacked": StackedDesign,
}
"""Design classes by the ``kind`` their description carries (free panels: ``"panels"`` or none)."""


def design_kind(d: dict[str, Any]) -> str:
    """The kind of the description ``d`` (a key of :data:`DESIGN_KINDS`)."""
    kind = d.get("kind", "panels")
    if kind not in DESIGN_KINDS:
        raise MutomoError(f"design description: unknown kind {kind!r}; allowed {sorted(DESIGN_KINDS)}")
    return str(kind)


def design_from_description(d: dict[str, Any], cost_model: CostModel | None = None) -> Design:
    """Rebuild a design from its :meth:`~mutomo.design.base.Design.describe` output, whatever
    its kind (free panels, hodoscopes, or a :class:`~mutomo.design.stacked.StackedDesign`,
    whose members are rebuilt here one by one)."""
    kind = design_kind(d)
    if kind == "stacked":
        return StackedDesign([design_from_description(m, cost_model) for m in d["members"]])
    if kind == "hodoscopes":
        return HodoscopeDesign.from_description(d, cost_model)
    return DetectorDesign.from_description(d, cost_model)
