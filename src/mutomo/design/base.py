"""What every design is: the region it lives in (:class:`DesignBounds`) and the interface the
loop and the evaluation use (:class:`Design`). The kinds of design are
:mod:`~mutomo.design.panels` (free panels), :mod:`~mutomo.design.hodoscopes` (rigid modules)
and :mod:`~mutomo.design.stacked` (many designs trained as one); :mod:`~mutomo.design.describe`
lists them and rebuilds any from its description.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, is_dataclass
from typing import Any

import torch
from torch import Tensor, nn

from mutomo.detector import AreaCostModel, Detector
from mutomo.detector.cost import CostModel
from mutomo.errors import MutomoError
from mutomo.volume.grid import PassiveVolume

PARAMETER_GROUPS = ("xy", "z", "size", "resolution", "efficiency")
"""The parameter groups a design may train (each with its own learning rate and optimiser)."""
SIDES = ("above", "below")
"""The two sides of the volume a detector has panels on."""


@dataclass(frozen=True)
class DesignBounds:
    """Where panels may be and what they may be.

    Attributes:
        x, y: (min, max) allowed range of panel centres (m).
        z_above, z_below: (min, max) heights (m) of the panels above and below the volume.
        span: (min, max) square panel width (m), soft-budget mode.
        resolution: (min, max) position resolution (m).
        efficiency: (min, max) efficiency.
    """

    x: tuple[float, float]
    y: tuple[float, float]
    z_above: tuple[float, float]
    z_below: tuple[float, float]
    span: tuple[float, float] = (0.05, 5.0)
    resolution: tuple[float, float] = (1e-5, 1e-2)
    efficiency: tuple[float, float] = (0.5, 0.999)

    def __post_init__(self) -> None:
        for name in ("x", "y", "z_above", "z_below", "span", "resolution", "efficiency"):
            lo, hi = getattr(self, name)
            if not hi > lo:
                raise MutomoError(f"DesignBounds.{name} must have max > min; got {(lo, hi)}")
        if not self.z_below[1] < self.z_above[0]:
            raise MutomoError(f"DesignBounds: z_below {self.z_below} must lie under z_above {self.z_above}")
        if not (self.span[0] > 0 and self.resolution[0] > 0 and self.efficiency[0] > 0 and self.efficiency[1] < 1):
            raise MutomoError("DesignBounds: span and resolution must be > 0, efficiency inside (0, 1)")

    def check_volume(self, volume: PassiveVolume) -> None:
        """Refuse a region whose panels could sit inside the volume."""
        if self.z_above[0] <= volume.z_high:
            raise MutomoError(f"z_above starts at {self.z_above[0]} m, inside the volume (z_high = {volume.z_high} m)")
        if self.z_below[1] >= volume.z_low:
            raise MutomoError(f"z_below ends at {self.z_below[1]} m, inside the volume (z_low = {volume.z_low} m)")


def logit(p: Tensor) -> Tensor:
    """The inverse of the sigmoid (efficiencies are trained as logits)."""
    return torch.log(p) - torch.log1p(-p)


class Design(nn.Module):
    """What the optimisation loop and the evaluation need of a design: a detector built from its
    parameters, its cost, its parameter groups (keys of :data:`PARAMETER_GROUPS`), a projection
    back into its constraints after each step, and a JSON-ready description.

    Implemented by :class:`~mutomo.design.panels.DetectorDesign` (free panels) and
    :class:`mutomo.design.hodoscopes.HodoscopeDesign` (rigid modules, optionally with free
    panels); :func:`~mutomo.design.describe.design_from_description` rebuilds any from its
    description.
    """

    bounds: DesignBounds
    budget: float | None
    trainable: tuple[str, ...]
    smoothness: float

    def detector(self) -> Detector:
        raise NotImplementedError

    def cost(self) -> Tensor:
        raise NotImplementedError

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        raise NotImplementedError

    def project_(self) -> None:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        raise NotImplementedError

    def to_json(self) -> str:
        return json.dumps(self.describe(), indent=2)

    def _common_description(self) -> dict[str, Any]:
        """The part of :meth:`describe` every kind of design shares."""
        cost_model = getattr(self, "cost_model", None)
        return {
            "budget": self.budget,
            "cost": float(self.cost().detach().sum()),
            "bounds": asdict(self.bounds),
            "cost_model": asdict(cost_model) if is_dataclass(cost_model) and not isinstance(cost_model, type) else None,
            "trainable": list(self.trainable),
            "smoothness": self.smoothness,
        }


def bounds_and_cost_model(d: dict[str, Any], cost_model: CostModel | None) -> tuple[DesignBounds, CostModel | None]:
    """The region of a description, and its cost model unless one is given."""
    bounds = DesignBounds(**{k: tuple(v) for k, v in d["bounds"].items()})
    if cost_model is None and d.get("cost_model") is not None:
        cost_model = AreaCostModel(**d["cost_model"])
    return bounds, cost_model
