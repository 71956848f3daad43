"""The detector as built, when it differs from its design without the design knowing.

A design states each panel's position, resolution and efficiency; the built detector may be
worse or elsewhere. :class:`AsBuilt` describes how: every panel's resolution multiplied by
``resolution_factor``, its efficiency by ``efficiency_factor``, and its position shifted by a
per-panel draw of standard deviation ``misalignment`` in x, y and z (truncated at 3 standard
deviations, the same shift for panel ``i`` of a side whatever the design). The simulation records
muons with the built detector (:meth:`AsBuilt.build`); the reconstruction still believes the
design (:meth:`AsBuilt.recorded`): a hit is read in the panel's own frame, so a panel shifted by
``d`` reports ``true - d_xy`` at its nominal height, with its nominal resolution as the error.

Used by the systematic variations of :mod:`mutomo.optimise.systematics`; everything stays
differentiable in the design's parameters (the factors and shifts are constants).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from mutomo.detector.detector import Detector
from mutomo.detector.panel import DetectorPanel, Hits
from mutomo.errors import MutomoError

MAX_PANELS = 64
"""Shifts are drawn for this many panels a side, so panel ``i`` gets the same shift in every design."""
SIDES = ("above", "below")


@dataclass(frozen=True)
class AsBuilt:
    """How the built detector differs from its design (see the module docstring).

    Attributes:
        resolution_factor: built resolution / nominal (> 0; 1.2 is 20 % worse).
        efficiency_factor: built efficiency / nominal (> 0; a built efficiency above 1 is
            refused when the detector is built).
        misalignment: standard deviation (m) of each panel's shift in x, y and z (0: none).
        seed: seeds the shifts.
    """

    resolution_factor: float = 1.0
    efficiency_factor: float = 1.0
    misalignment: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("resolution_factor", "efficiency_factor"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise MutomoError(f"AsBuilt.{name} must be a finite number > 0; got {value}")
        if not (math.isfinite(self.misalignment) and self.misalignment >= 0):
            raise MutomoError(f"AsBuilt.misalignment must be a finite number >= 0 (m); got {self.misalignment}")

    @property
    def nominal(self) -> bool:
        """Whether the built detector is the design."""
        return self.resolution_factor == 1.0 and self.efficiency_factor == 1.0 and self.misalignment == 0.0

    def shifts(self, side: str, n_panels: int, dtype: torch.dtype, device: torch.device | str | None) -> Tensor:
        """``(panel, 3)`` shifts (m) of the ``n_panels`` panels of ``side``: normal draws of standard
        deviation :attr:`misalignment`, truncated at 3 of them, from a generator seeded by
        :attr:`seed` and the side (panel ``i`` has the same shift in every design)."""
        if n_panels > MAX_PANELS:
            raise MutomoError(f"AsBuilt draws shifts for at most {MAX_PANELS} panels a side; got {n_panels}")
        if self.misalignment == 0.0:
            return torch.zeros(n_panels, 3, dtype=dtype, device=device)
        generator = torch.Generator().manual_seed(self.seed * len(SIDES) + SIDES.index(side))
        draws = torch.randn(MAX_PANELS, 3, generator=generator, dtype=torch.float64)[:n_panels]
        return (self.misalignment * draws.clamp(-3.0, 3.0)).to(dtype=dtype, device=device)

    def build(self, detector: Detector) -> Detector:
        """The detector as built: ``detector``'s panels (any design axes kept) with the factors and
        shifts applied, differentiable in ``detector``'s parameters."""
        if self.nominal:
            return detector
        sides: dict[str, list[DetectorPanel]] = {}
        for side in SIDES:
            p = detector.panel_parameters(side)
            n = p["centre"].shape[-2]
            centre = p["centre"] + self.shifts(side, n, p["centre"].dtype, p["centre"].device)
            efficiency = p["efficiency"] * self.efficiency_factor
            if bool((efficiency.detach() > 1.0).any()):
                worst = float(p["efficiency"].detach().max())
                raise MutomoError(
                    f"AsBuilt.efficiency_factor = {self.efficiency_factor} makes a panel's efficiency "
                    f"{worst:.4g} x {self.efficiency_factor} > 1; give a factor of at most {1.0 / worst:.4g}"
                )
            resolution = p["resolution"] * self.resolution_factor
            sides[side] = [
                DetectorPanel(
                    centre[..., i, :],
                    p["span"][..., i, :],
                    resolution[..., i : i + 1],
                    efficiency[..., i : i + 1],
                    device=centre.device,
                    dtype=centre.dtype,
                    validate=False,  # the design's values were checked; the factors above
                )
                for i in range(n)
            ]
        return Detector(sides["above"], sides["below"], float(detector.smoothness), detector.cost_model)

    def recorded(self, hits: Hits, design: Detector, built: Detector, side: str) -> Hits:
        """Hits of ``built`` (:meth:`build`) as the reconstruction reads them, believing ``design``:
        positions in each panel's own frame (shifted by minus the panel's shift in x and y), at the
        design's heights, with the design's resolutions. Weights and true crossings unchanged."""
        if built is design:
            return hits
        nominal, actual = design.panel_parameters(side), built.panel_parameters(side)
        shift = (actual["centre"] - nominal["centre"])[..., :2].detach()  # (*design, panel, 2)
        return replace(
            hits,
            xy=hits.xy - shift[..., None, :],
            z=nominal["centre"][..., 2],
            resolution=nominal["resolution"],
        )
