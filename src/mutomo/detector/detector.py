"""A detector: panels above and below a passive volume, optionally grouped."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from mutomo.detector.cost import AreaCostModel, CostModel
from mutomo.detector.panel import DetectorPanel, Hits, register_value, smooth_acceptance
from mutomo.muons.batch import MuonBatch
from mutomo.volume.grid import PassiveVolume
from mutomo.volume.propagation import position_at_z


class PanelGroup(nn.Module):
    """Panels that move together (a hodoscope): member centres are offsets from ``offset``.

    Args:
        panels: The members; their ``centre`` is relative to the group.
        offset: (x, y, z) of the group (m); an ``nn.Parameter`` moves the whole group.
    """

    offset: Tensor
    panels: nn.ModuleList

    def __init__(
        self,
        panels: Sequence[DetectorPanel],
        offset: Sequence[float] | Tensor = (0.0, 0.0, 0.0),
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if not panels:
            raise ValueError("PanelGroup.panels must hold at least one panel")
        self.panels = nn.ModuleList(panels)
        register_value(self, "offset", offset, 3, device, dtype)


def _as_group(item: DetectorPanel | PanelGroup) -> PanelGroup:
    return (
        item if isinstance(item, PanelGroup) else PanelGroup([item], device=item.centre.device, dtype=item.centre.dtype)
    )


class Detector(nn.Module):
    """Panels above (measuring incoming tracks) and below (outgoing tracks) a passive volume.

    Args:
        above, below: Panels or :class:`PanelGroup` s on each side.
        smoothness: Width (m) of the sigmoid panel edges in the acceptance weight; a buffer,
            so it can be annealed with :meth:`set_smoothness`.
        cost_model: Prices each panel (default :class:`AreaCostModel`).
    """

    smoothness: Tensor
    above: nn.ModuleList
    below: nn.ModuleList

    def __init__(
        self,
        above: Sequence[DetectorPanel | PanelGroup],
        below: Sequence[DetectorPanel | PanelGroup],
        smoothness: float = 0.01,
        cost_model: CostModel | None = None,
    ) -> None:
        super().__init__()
        if not above or not below:
            raise ValueError("Detector needs at least one panel above and one below the volume")
        if not smoothness > 0:
            raise ValueError(f"Detector.smoothness must be > 0 m; got {smoothness}")
        self.above = nn.ModuleList([_as_group(p) for p in above])
        self.below = nn.ModuleList([_as_group(p) for p in below])
        ref = next(iter(self.buffers()))
        self.register_buffer("smoothness", torch.tensor(float(smoothness), dtype=ref.dtype, device=ref.device))
        self.cost_model: CostModel = cost_model if cost_model is not None else AreaCostModel()

    def set_smoothness(self, value: float) -> None:
        """Set the panel-edge width (m), e.g. while annealing."""
        if not value > 0:
            raise ValueError(f"Detector.smoothness must be > 0 m; got {value}")
        self.smoothness.fill_(value)

    @staticmethod
    def _stack(groups: nn.ModuleList) -> dict[str, Tensor]:
        centres: list[Tensor] = []
        spans: list[Tensor] = []
        res: list[Tensor] = []
        eff: list[Tensor] = []
        for group in groups:
            assert isinstance(group, PanelGroup)
            for panel in group.panels:
                assert isinstance(panel, DetectorPanel)
                centres.append(panel.centre + group.offset)
                spans.append(panel.span)
                res.append(panel.resolution)
                eff.append(panel.efficiency)
        return {
            "centre": torch.stack(centres),
            "span": torch.stack(spans),
            "resolution": torch.cat(res),
            "efficiency": torch.cat(eff),
        }

    def panel_parameters(self, side: str) -> dict[str, Tensor]:
        """Stacked effective parameters of one side (``"above"`` or ``"below"``):
        ``centre (panel, 3)``, ``span (panel, 2)``, ``resolution (panel,)``, ``efficiency (panel,)``."""
        if side not in ("above", "below"):
            raise ValueError(f"side must be 'above' or 'below'; got {side!r}")
        return self._stack(self.above if side == "above" else self.below)

    def check_outside(self, volume: PassiveVolume) -> None:
        """Raise ``ValueError`` if a panel sits inside the volume or on the wrong side of it."""
        for side in ("above", "below"):
            z = self.panel_parameters(side)["centre"][:, 2]
            for i, zi in enumerate(z.tolist()):
                if side == "above" and zi <= volume.z_high:
                    raise ValueError(
                        f"panel {i} above the volume has z = {zi:.4g} m; it must be > z_high = {volume.z_high:.4g} m"
                    )
                if side == "below" and zi >= volume.z_low:
                    raise ValueError(
                        f"panel {i} below the volume has z = {zi:.4g} m; it must be < z_low = {volume.z_low:.4g} m"
                    )

    def hits(self, muons: MuonBatch, side: str, noise: Tensor) -> Hits:
        """Hits of muons flying in straight lines through the panels of one side.

        Args:
            muons: the batch on its straight segment on that side (e.g. at the volume's entry
                for ``"above"``, at its exit for ``"below"``).
            side: ``"above"`` or ``"below"``.
            noise: ``(panel, mu, 2)`` standard normal draws (reparameterisation: the hit is
                ``true + resolution * noise``, differentiable in the resolution).
        """
        p = self.panel_parameters(side)
        true = position_at_z(muons, p["centre"][:, 2:3])[..., :2]
        xy = true + p["resolution"][:, None, None] * noise
        acceptance = smooth_acceptance(true, p["centre"][:, :2], p["span"], self.smoothness)
        weight = p["efficiency"][:, None] * acceptance * muons.weight[None, :]
        return Hits(xy=xy, z=p["centre"][:, 2], true_xy=true, resolution=p["resolution"], weight=weight)

    def panel_costs(self) -> Tensor:
        """``(panel,)`` cost of every panel, above then below."""
        params = [self.panel_parameters(s) for s in ("above", "below")]
        span = torch.cat([p["span"] for p in params])
        res = torch.cat([p["resolution"] for p in params])
        eff = torch.cat([p["efficiency"] for p in params])
        return self.cost_model(span, res, eff)

    def cost(self) -> Tensor:
        """Total cost (scalar tensor)."""
        return self.panel_costs().sum()

    def n_panels(self, side: str) -> int:
        return int(self.panel_parameters(side)["centre"].shape[0])
