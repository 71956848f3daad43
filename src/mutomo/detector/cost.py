"""Cost of detector panels.

The default model prices a panel as

    cost = c_area * area * (sigma_ref / sigma) ** a * ln(1 - eff) / ln(1 - eff_ref) + c_panel

* ``area`` (m^2): detector material and mechanics scale with the surface.
* ``(sigma_ref / sigma) ** a``: finer resolution needs finer readout pitch; with strip
  readout the channel count per unit length goes as 1 / pitch and sigma = pitch / sqrt(12),
  hence ``a = 1`` by default.
* ``ln(1 - eff) / ln(1 - eff_ref)``: a panel made of active layers that each stop a muon with
  a fixed probability reaches efficiency ``eff = 1 - exp(-k n)`` with ``n`` layers, so the
  active material (and its cost) grows as ``-ln(1 - eff)``; it diverges as eff -> 1.

* ``c_panel``: a fixed cost of every panel, whatever its size (readout crate, mechanics,
  installation); 0 by default.

At the reference resolution and efficiency the cost is ``c_area`` per m^2 (plus ``c_panel``). The defaults
(1000 per m^2 at 100 um and 90 %) are units of account, not a price list; set them for a
real technology. This is what lets an optimiser trade resolution against efficiency against
area under a budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from mutomo.errors import MutomoError


class CostModel(Protocol):
    """Cost of panels from their span, resolution and efficiency."""

    @property
    def per_panel(self) -> float:
        """Fixed cost of every panel."""
        ...

    def __call__(self, span: Tensor, resolution: Tensor, efficiency: Tensor) -> Tensor:
        """Cost per panel; inputs ``(panel, 2)``, ``(panel,)``, ``(panel,)``; output ``(panel,)``."""
        ...

    def per_area(self, resolution: Tensor, efficiency: Tensor) -> Tensor:
        """Cost per m^2 of panel (without ``per_panel``), ``(panel,)``."""
        ...


@dataclass(frozen=True)
class AreaCostModel:
    """The default cost model (see module docstring).

    Attributes:
        cost_per_m2: Cost of 1 m^2 at the reference resolution and efficiency.
        reference_resolution: sigma_ref (m).
        reference_efficiency: eff_ref in (0, 1).
        resolution_exponent: a.
        per_panel: c_panel, the fixed cost of each panel.

    Example:
        >>> import torch
        >>> model = AreaCostModel(cost_per_m2=1000.0)
        >>> round(float(model(torch.tensor([[1.0, 2.0]]), torch.tensor([1e-4]), torch.tensor([0.9]))), 2)
        2000.0
    """

    cost_per_m2: float = 1000.0
    reference_resolution: float = 1e-4
    reference_efficiency: float = 0.9
    resolution_exponent: float = 1.0
    per_panel: float = 0.0

    def __post_init__(self) -> None:
        if not self.cost_per_m2 > 0:
            raise MutomoError(f"AreaCostModel.cost_per_m2 must be > 0; got {self.cost_per_m2}")
        if not self.reference_resolution > 0:
            raise MutomoError(f"AreaCostModel.reference_resolution must be > 0 m; got {self.reference_resolution}")
        if not 0 < self.reference_efficiency < 1:
            raise MutomoError(f"AreaCostModel.reference_efficiency must be in (0, 1); got {self.reference_efficiency}")
        if not self.per_panel >= 0:
            raise MutomoError(f"AreaCostModel.per_panel must be >= 0; got {self.per_panel}")

    def per_area(self, resolution: Tensor, efficiency: Tensor) -> Tensor:
        precision = (self.reference_resolution / resolution) ** self.resolution_exponent
        # log1p(-eff) is finite for eff < 1; eff == 1 costs infinitely much by construction.
        active = torch.log1p(-efficiency.clamp(max=1 - 1e-7)) / math.log1p(-self.reference_efficiency)
        return self.cost_per_m2 * precision * active

    def __call__(self, span: Tensor, resolution: Tensor, efficiency: Tensor) -> Tensor:
        return span[..., 0] * span[..., 1] * self.per_area(resolution, efficiency) + self.per_panel
