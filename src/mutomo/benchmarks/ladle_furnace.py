"""The ladle-furnace benchmark (TomOpt's paper task, Strong et al., Mach. Learn.: Sci. Technol. 5
(2024) 035002): infer how full a steel ladle furnace is.

Geometry (as the paper): a 1 x 1 m furnace between z = 0.4 and 1.4 m in 10 cm voxels. Its walls
and floor are steel one voxel thick; inside, liquid steel (X0 = 0.01991 m) fills it up to the
fill height h, under 10 cm of slag (X0 = 0.08211 m), with air above. Here h is the height of the
top of the liquid steel, from 0.6 to 1.3 m in voxel steps (8 values; at 1.3 m the slag reaches
the rim).

Detector: 4 panels above and 4 below, 100 um resolution, 0.9 efficiency, square panels sharing a
fixed budget (that of the paper's starting design, eight 0.866 m panels). Panels above may sit
between z = 1.42 and 2.2 m, panels below between -0.4 and 0.38 m, centres within x, y in
[-0.5, 1.5] m.

Designs built in:

* ``poor`` (the paper's deliberately bad start): 0.866 m panels 1 cm apart, centred on a corner
  of the furnace (x = y = 0), just above (1.45-1.48 m) and below (0.32-0.35 m) it;
* ``human_resolution``: centred panels in two widely separated pairs per side (1.45/1.50 and
  2.15/2.20 m above, 0.30/0.35 and -0.40/-0.35 m below): long lever arms, precise angles;
* ``human_acceptance``: centred panels evenly spaced 10 cm apart next to the furnace
  (1.45-1.75 m above, 0.05-0.35 m below): more muons through every panel, shorter lever arms.

Inference: the precision-weighted mean PoCA height (:func:`mutomo.inference.tasks.poca_height`)
with a linear bias correction fitted on calibration volumes; training scores the raw statistic
with TomOpt's spread-over-range loss, which a linear correction leaves unchanged.

Muons: GCCLY15, 0.1 GeV/c-1 TeV/c, zenith up to 40 deg, from a fixed 2 x 2 m plane at z = 2.21 m
centred on the furnace, the same for every design, so that designs are compared on the same muons.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mutomo.detector import AreaCostModel
from mutomo.inference.tasks import poca_height
from mutomo.muons import FluxSource, GenerationPlane, TabulatedFlux
from mutomo.optimise.design import DesignBounds, DetectorDesign
from mutomo.optimise.loss import SpreadOverRangeLoss
from mutomo.reco.maps import ScatterData
from mutomo.volume.grid import PassiveVolume

VOXEL = 0.1
Z_FLOOR = 0.4
FILL_HEIGHTS = tuple(round(0.6 + VOXEL * i, 10) for i in range(8))  # 0.6 ... 1.3 m
START_SPAN = 0.866
RESOLUTION = 1e-4
EFFICIENCY = 0.9


class LadleFurnace:
    """The ladle-furnace task (see the module docstring)."""

    name = "ladle_furnace"
    targets = FILL_HEIGHTS
    # Two steps per 10 cm voxel: the scattering model's width changes by < 3 % between 1 mm and
    # 10 cm steps (tests/physics/test_scattering.py), and 5 cm steps make an epoch 4x cheaper.
    step_length = 0.05

    def __init__(self, theta_max_deg: float = 40.0, cost_model: AreaCostModel | None = None) -> None:
        self.bounds = DesignBounds(x=(-0.5, 1.5), y=(-0.5, 1.5), z_above=(1.42, 2.2), z_below=(-0.4, 0.38))
        self.cost_model = cost_model if cost_model is not None else AreaCostModel()
        plane = GenerationPlane(z=self.bounds.z_above[1] + 0.01, x_range=(-0.5, 1.5), y_range=(-0.5, 1.5))
        self.source = FluxSource(
            plane, TabulatedFlux(momentum_range=(0.1, 1000.0), theta_max=math.radians(theta_max_deg))
        )
        self.loss = SpreadOverRangeLoss()
        self.budget = 8 * float(
            self.cost_model(
                torch.tensor([[START_SPAN, START_SPAN]]), torch.tensor([RESOLUTION]), torch.tensor([EFFICIENCY])
            )
        )
        self._volumes: dict[float, PassiveVolume] = {}

    def volume(self, target: float) -> PassiveVolume:
        """The furnace filled to ``target`` (m, one of ``FILL_HEIGHTS``)."""
        key = round(float(target), 6)
        if key not in {round(h, 6) for h in FILL_HEIGHTS}:
            raise ValueError(f"fill height must be one of {FILL_HEIGHTS} m; got {target}")
        if key not in self._volumes:
            materials = ["steel", "liquid_steel", "slag", "air"]
            index = torch.full((10, 10, 10), 3, dtype=torch.long)
            melt_top = round((key - Z_FLOOR) / VOXEL)  # layers below this index hold melt (from layer 1)
            index[:, :, 1:melt_top] = 1
            index[:, :, melt_top] = 2
            index[0, :, :] = index[-1, :, :] = 0
            index[:, 0, :] = index[:, -1, :] = 0
            index[:, :, 0] = 0
            self._volumes[key] = PassiveVolume(materials, index, VOXEL, origin=(0.0, 0.0, Z_FLOOR))
        return self._volumes[key]

    def predict(self, data: ScatterData, volume: PassiveVolume) -> Tensor:
        """Raw fill statistic: the precision-weighted mean PoCA height (m)."""
        return poca_height(data, volume)

    def design(self, xy: tuple[float, float], z_above: list[float], z_below: list[float]) -> DetectorDesign:
        """Eight 0.866 m panels centred at ``xy`` with the task's budget and bounds."""
        return DetectorDesign(
            xy=[list(xy)] * 8,
            z=[*z_above, *z_below],
            n_above=4,
            span=START_SPAN,
            resolution=RESOLUTION,
            efficiency=EFFICIENCY,
            bounds=self.bounds,
            budget=self.budget,
            cost_model=self.cost_model,
            trainable=("xy", "z", "size"),
        )

    def designs(self) -> dict[str, DetectorDesign]:
        """The paper's poor starting design and its two human designs."""
        return {
            "poor": self.design((0.0, 0.0), [1.48, 1.47, 1.46, 1.45], [0.35, 0.34, 0.33, 0.32]),
            "human_resolution": self.design((0.5, 0.5), [2.2, 2.15, 1.5, 1.45], [0.35, 0.3, -0.35, -0.4]),
            "human_acceptance": self.design((0.5, 0.5), [1.75, 1.65, 1.55, 1.45], [0.35, 0.25, 0.15, 0.05]),
        }
