"""A trainable detector design: the parameters the optimiser moves, in physical units.

:class:`DetectorDesign` owns square panels above and below the volume. Each group of
parameters is an ``nn.Parameter`` in plain units, so that an optimiser's step size *is* a
physical step (Adam moves a parameter by about its learning rate per step):

* ``xy`` (m) and ``z`` (m): panel centres;
* ``log_span`` (ln m, soft-budget mode) or ``share_logit`` (fixed-budget mode, see below);
* ``log_resolution`` (ln m) and ``logit_efficiency``.

Constraints are kept by **projection after each step** (:meth:`DetectorDesign.project_`):
centres into the allowed region (panels above stay in their z range above the volume, panels
below in theirs), spans, resolutions and efficiencies into their bounds. Gradients are never
clipped to zero: a parameter pushed against a bound simply stays on it.

**Fixed budget.** With ``budget`` set, the total cost is held exactly at the budget: each
panel gets the share ``softmax(share_logit)_i`` of it, and its area follows from its price per
square metre, ``area_i = share_i * budget / unit_cost_i`` (the cost model evaluated on 1 m^2,
which depends on the panel's resolution and efficiency). The optimiser learns how to share the
budget; panel sizes follow. Span bounds do not apply in this mode (they would break the budget).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from mutomo.design.base import PARAMETER_GROUPS, Design, DesignBounds, bounds_and_cost_model, logit
from mutomo.detector import AreaCostModel, Detector, DetectorPanel
from mutomo.detector.cost import CostModel
from mutomo.errors import MutomoError


class DetectorDesign(Design):
    """Square panels above and below a volume, with trainable physical parameters.

    Args:
        xy: ``(panel, 2)`` centres (m), the panels above first.
        z: ``(panel,)`` heights (m).
        n_above: how many of the panels are above the volume.
        span: ``(panel,)`` widths (m) of the square panels.
        resolution, efficiency: ``(panel,)`` or scalars.
        bounds: the allowed region and ranges.
        budget: total cost to hold fixed (fixed-budget mode); ``None`` for free spans.
        cost_model: prices panels (default :class:`~mutomo.detector.AreaCostModel`).
        trainable: which of ``PARAMETER_GROUPS`` are trained; the others are frozen.
        smoothness: panel-edge width (m) of the detectors built.
    """

    def __init__(
        self,
        xy: Sequence[Sequence[float]] | Tensor,
        z: Sequence[float] | Tensor,
        n_above: int,
        span: float | Sequence[float] | Tensor,
        resolution: float | Sequence[float] | Tensor,
        efficiency: float | Sequence[float] | Tensor,
        bounds: DesignBounds,
        budget: float | None = None,
        cost_model: CostModel | None = None,
        trainable: Sequence[str] = ("xy", "z", "size"),
        smoothness: float = 0.01,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        xy_t = torch.as_tensor(xy, dtype=dtype).reshape(-1, 2)
        n = xy_t.shape[0]

        def vec(value: object, name: str) -> Tensor:
            t = torch.as_tensor(value, dtype=dtype).reshape(-1)
            t = t.expand(n).clone() if t.numel() == 1 else t
            if t.numel() != n:
                raise MutomoError(f"DetectorDesign.{name} needs {n} values (one per panel); got {t.numel()}")
            return t

        z_t, span_t = vec(z, "z"), vec(span, "span")
        res_t, eff_t = vec(resolution, "resolution"), vec(efficiency, "efficiency")
        for name, t in (("xy", xy_t), ("z", z_t), ("span", span_t), ("resolution", res_t), ("efficiency", eff_t)):
            bad = ~torch.isfinite(t.reshape(n, -1)).all(1)
            if bool(bad.any()):
                i = int(bad.nonzero()[0, 0])
                raise MutomoError(f"DetectorDesign.{name}: panel {i} has a value that is not finite ({t[i].tolist()})")
        if not 1 <= n_above < n:
            raise MutomoError(f"DetectorDesign.n_above must be in [1, {n - 1}]; got {n_above}")
        unknown = set(trainable) - set(PARAMETER_GROUPS)
        if unknown:
            raise MutomoError(
                f"DetectorDesign.trainable: unknown group(s) {sorted(unknown)}; allowed {PARAMETER_GROUPS}"
            )
        if bool((span_t <= 0).any()) or bool((res_t <= 0).any()) or bool(((eff_t <= 0) | (eff_t >= 1)).any()):
            raise MutomoError("DetectorDesign: spans and resolutions must be > 0 m, efficiencies in (0, 1)")
        if budget is not None and not budget > 0:
            raise MutomoError(f"DetectorDesign.budget must be > 0; got {budget}")
        fixed = n * (cost_model.per_panel if cost_model is not None else 0.0)
        if budget is not None and not budget > fixed:
            raise MutomoError(
                f"DetectorDesign.budget ({budget:.6g}) must exceed the {n} panels' fixed cost ({fixed:.6g})"
            )
        self.n_above = n_above
        self.bounds = bounds
        self.budget = budget
        self.cost_model: CostModel = cost_model if cost_model is not None else AreaCostModel()
        self.smoothness = smoothness
        self.xy = nn.Parameter(xy_t.clone())
        self.z = nn.Parameter(z_t.clone())
        self.log_resolution = nn.Parameter(torch.log(res_t))
        self.logit_efficiency = nn.Parameter(logit(eff_t))
        if budget is None:
            self.log_span = nn.Parameter(torch.log(span_t))
        else:
            # Shares reproducing the given spans' costs, rescaled to the budget.
            costs = self._unit_cost(res_t, eff_t) * span_t**2
            self.share_logit = nn.Parameter(torch.log(costs / costs.sum()))
        self.trainable = tuple(trainable)
        for group, params in self.parameter_groups().items():
            for p in params:
                p.requires_grad_(group in self.trainable)
        self.check_bounds()

    # ------------------------------------------------------------------ values

    @property
    def resolution(self) -> Tensor:
        return torch.exp(self.log_resolution)

    @property
    def efficiency(self) -> Tensor:
        return torch.sigmoid(self.logit_efficiency)

    def _unit_cost(self, resolution: Tensor, efficiency: Tensor) -> Tensor:
        """``(panel,)`` cost per m^2 of each panel."""
        return self.cost_model.per_area(resolution, efficiency)

    @property
    def area_budget(self) -> float:
        """The part of the budget left for panel area once every panel's fixed cost is paid."""
        assert self.budget is not None
        return self.budget - self.z.shape[0] * self.cost_model.per_panel

    @property
    def shares(self) -> Tensor | None:
        """``(panel,)`` budget shares (fixed-budget mode), else ``None``."""
        return torch.softmax(self.share_logit, 0) if self.budget is not None else None

    @property
    def span(self) -> Tensor:
        """``(panel,)`` square panel widths (m)."""
        if self.budget is None:
            return torch.exp(self.log_span)
        area = self.shares * self.area_budget / self._unit_cost(self.resolution, self.efficiency)  # type: ignore[operator]
        return torch.sqrt(area)

    def detector(self) -> Detector:
        """A :class:`~mutomo.detector.Detector` whose panel values are functions of this design's
        parameters (gradients flow back here)."""
        span, res, eff = self.span, self.resolution, self.efficiency
        centre = torch.cat([self.xy, self.z[:, None]], dim=-1)
        panels = [
            DetectorPanel(centre[i], span[i].expand(2), res[i], eff[i], dtype=centre.dtype)
            for i in range(centre.shape[0])
        ]
        return Detector(panels[: self.n_above], panels[self.n_above :], self.smoothness, self.cost_model)

    def cost(self) -> Tensor:
        span = self.span
        return self.cost_model(torch.stack([span, span], -1), self.resolution, self.efficiency).sum()

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """The parameters of each group of ``PARAMETER_GROUPS``."""
        size = self.log_span if self.budget is None else self.share_logit
        return {
            "xy": [self.xy],
            "z": [self.z],
            "size": [size],
            "resolution": [self.log_resolution],
            "efficiency": [self.logit_efficiency],
        }

    # ------------------------------------------------------------- constraints

    @torch.no_grad()
    def project_(self) -> None:
        """Project every parameter back into its bounds (call after each optimiser step)."""
        b = self.bounds
        self.xy[:, 0].clamp_(*b.x)
        self.xy[:, 1].clamp_(*b.y)
        self.z[: self.n_above].clamp_(*b.z_above)
        self.z[self.n_above :].clamp_(*b.z_below)
        if self.budget is None:
            self.log_span.clamp_(math.log(b.span[0]), math.log(b.span[1]))
        self.log_resolution.clamp_(math.log(b.resolution[0]), math.log(b.resolution[1]))
        lo, hi = (math.log(e) - math.log1p(-e) for e in b.efficiency)
        self.logit_efficiency.clamp_(lo, hi)

    def check_bounds(self) -> None:
        """Raise ``ValueError`` naming the panel and field that lies outside the bounds."""
        b = self.bounds
        checks = [
            ("x", self.xy[:, 0], b.x),
            ("y", self.xy[:, 1], b.y),
            ("resolution", self.resolution, b.resolution),
            ("efficiency", self.efficiency, b.efficiency),
        ]
        if self.budget is None:
            checks.append(("span", self.span, b.span))
        for name, values, (lo, hi) in checks:
            for i, v in enumerate(values.tolist()):
                if not lo - 1e-6 <= v <= hi + 1e-6:
                    raise MutomoError(f"panel {i}: {name} = {v:.6g} is outside the allowed range [{lo}, {hi}]")
        for i, v in enumerate(self.z.tolist()):
            side, (lo, hi) = ("above", b.z_above) if i < self.n_above else ("below", b.z_below)
            if not lo - 1e-6 <= v <= hi + 1e-6:
                raise MutomoError(f"panel {i} ({side}): z = {v:.6g} m is outside the allowed range [{lo}, {hi}] m")

    # -------------------------------------------------------------- (de)serialise

    def describe(self) -> dict[str, Any]:
        """The design as plain numbers (JSON-ready), in physical units."""
        with torch.no_grad():
            return {
                "n_above": self.n_above,
                "xy": self.xy.tolist(),
                "z": self.z.tolist(),
                "span": self.span.tolist(),
                "resolution": self.resolution.tolist(),
                "efficiency": self.efficiency.tolist(),
                **self._common_description(),
            }

    @classmethod
    def from_description(cls, d: dict[str, Any], cost_model: CostModel | None = None) -> DetectorDesign:
        """Rebuild a design from :meth:`describe`'s output."""
        bounds, cost_model = bounds_and_cost_model(d, cost_model)
        return cls(
            xy=d["xy"],
            z=d["z"],
            n_above=d["n_above"],
            span=d["span"],
            resolution=d["resolution"],
            efficiency=d["efficiency"],
            bounds=bounds,
            budget=d.get("budget"),
            cost_model=cost_model,
            trainable=d.get("trainable", ("xy", "z", "size")),
            smoothness=d.get("smoothness", 0.01),
        )
