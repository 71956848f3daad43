"""Many designs of one layout trained as one: many starts in one pass.

:class:`StackedDesign` holds K member designs of one layout and trains them as one design: its
detector is :meth:`~mutomo.detector.Detector.stack` of the members' detectors, so one
simulation serves all K, and its loss (:func:`~mutomo.optimise.loop.batch_loss`) is the *sum*
of the members' losses, each computed from the member's own outputs, so that every member's
gradient is the gradient of its own loss. The members of a batch share its volumes and its
muons (the same generated muons and scattering draws, read out by each member's panels);
they differ in their panels only. With ``training.hits = "sampled"`` each member's hits are
kept or lost by its own Bernoulli draws. Members may be designs of free panels or of hodoscope
modules (:class:`~mutomo.design.hodoscopes.HodoscopeDesign`: their panel groups are
flattened into panels by the stack, each module's panels in one block, so that the gradient
still reaches each member's module centres).

:func:`copy_design` makes a fresh design equal to another (the seed of every start).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from mutomo.design.base import Design, DesignBounds
from mutomo.design.hodoscopes import HodoscopeDesign
from mutomo.design.panels import DetectorDesign
from mutomo.detector import Detector
from mutomo.errors import MutomoError


class StackedDesign(Design):
    """K designs of one layout trained together as one (see the module docstring).

    Args:
        members: the designs (at least one), each with the same number of panels above and
            below, all with a fixed budget or all without. They are held, not copied: training
            the stack trains them. The stack's ``trainable`` is every group some member trains;
            a member's frozen groups stay frozen.
    """

    members: nn.ModuleList

    def __init__(self, members: Sequence[Design]) -> None:
        super().__init__()
        if len(members) < 1:
            raise MutomoError("StackedDesign.members needs at least one design")
        layouts = {(d.detector().n_panels("above"), d.detector().n_panels("below")) for d in members}
        if len(layouts) != 1:
            raise MutomoError(f"StackedDesign.members must share one panel layout; got {sorted(layouts)}")
        budgets = {d.budget is None for d in members}
        if len(budgets) != 1:
            raise MutomoError("StackedDesign.members must all have a fixed budget or all none")
        self.members = nn.ModuleList(members)
        self.trainable = tuple(dict.fromkeys(g for d in members for g in d.trainable))

    def __len__(self) -> int:
        return len(self.members)

    def __iter__(self) -> Iterator[Design]:
        return iter(self._designs())

    def _designs(self) -> list[Design]:
        return [m for m in self.members if isinstance(m, Design)]

    @property
    def bounds(self) -> DesignBounds:  # type: ignore[override]
        return self._designs()[0].bounds

    @property
    def budget(self) -> float | None:  # type: ignore[override]
        """``None`` for soft-budget members; else the largest member budget (each member keeps its own)."""
        budgets = [d.budget for d in self._designs()]
        return None if budgets[0] is None else max(b for b in budgets if b is not None)

    @property
    def smoothness(self) -> float:
        return self._designs()[0].smoothness

    @smoothness.setter
    def smoothness(self, value: float) -> None:
        for d in self._designs():
            d.smoothness = value

    def detector(self) -> Detector:
        """The members' detectors stacked: a detector with the design axis ``(K,)``."""
        return Detector.stack([d.detector() for d in self._designs()])

    def cost(self) -> Tensor:
        """``(K,)`` cost of every member."""
        return torch.stack([d.cost() for d in self._designs()])

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        groups: dict[str, list[nn.Parameter]] = {}
        for d in self._designs():
            for name, params in d.parameter_groups().items():
                groups.setdefault(name, []).extend(params)
        return groups

    def project_(self) -> None:
        for d in self._designs():
            d.project_()

    def describe(self) -> dict[str, Any]:
        return {"kind": "stacked", "members": [d.describe() for d in self._designs()]}


def copy_design(template: Design, budget: float | None = None) -> Design:
    """A new design equal to ``template`` (rebuilt from its description, in its dtype); a design
    of free panels gets the fixed ``budget`` (``None``: none)."""
    d = template.describe()
    copy: Design
    if isinstance(template, DetectorDesign):
        copy = DetectorDesign.from_description({**d, "budget": budget}, template.cost_model)
    elif isinstance(template, HodoscopeDesign):
        copy = HodoscopeDesign.from_description(d, template.cost_model)
    else:
        raise MutomoError(f"copy_design needs a DetectorDesign or a HodoscopeDesign; got {type(template).__name__}")
    return copy.to(next(template.parameters()).dtype)


# ----------------------------------------------------------------------------- grouping
