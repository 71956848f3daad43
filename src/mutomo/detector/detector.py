"""A detector: panels above and below a passive volume, optionally grouped."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from mutomo.detector.cost import AreaCostModel, CostModel
from mutomo.detector.panel import DetectorPanel, Hits, register_value, smooth_acceptance
from mutomo.errors import MutomoError
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
            raise MutomoError("PanelGroup.panels must hold at least one panel")
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
            raise MutomoError("Detector needs at least one panel above and one below the volume")
        if not smoothness > 0:
            raise MutomoError(f"Detector.smoothness must be > 0 m; got {smoothness}")
        self.above = nn.ModuleList([_as_group(p) for p in above])
        self.below = nn.ModuleList([_as_group(p) for p in below])
        ref = next(iter(self.buffers()))
        self.register_buffer("smoothness", torch.tensor(float(smoothness), dtype=ref.dtype, device=ref.device))
        self.cost_model: CostModel = cost_model if cost_model is not None else AreaCostModel()

    def set_smoothness(self, value: float) -> None:
        """Set the panel-edge width (m), e.g. while annealing."""
        if not value > 0:
            raise MutomoError(f"Detector.smoothness must be > 0 m; got {value}")
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
        # Panels may carry design axes of different (broadcastable) shapes: align them first.
        design = torch.broadcast_shapes(*(t.shape[:-1] for t in [*centres, *spans, *res, *eff]))
        return {
            "centre": torch.stack([c.expand(*design, 3) for c in centres], dim=-2),
            "span": torch.stack([w.expand(*design, 2) for w in spans], dim=-2),
            "resolution": torch.cat([r.expand(*design, 1) for r in res], dim=-1),
            "efficiency": torch.cat([e.expand(*design, 1) for e in eff], dim=-1),
        }

    def panel_parameters(self, side: str) -> dict[str, Tensor]:
        """Stacked effective parameters of one side (``"above"`` or ``"below"``):
        ``centre (*design, panel, 3)``, ``span (*design, panel, 2)``, ``resolution (*design, panel)``,
        ``efficiency (*design, panel)``; ``*design`` is empty unless panels carry design axes."""
        if side not in ("above", "below"):
            raise MutomoError(f"side must be 'above' or 'below'; got {side!r}")
        return self._stack(self.above if side == "above" else self.below)

    def check_outside(self, volume: PassiveVolume) -> None:
        """Raise ``ValueError`` if a panel sits inside the volume or on the wrong side of it."""
        for side in ("above", "below"):
            z = self.panel_parameters(side)["centre"][..., 2].reshape(-1, self.n_panels(side))
            for i, zi in enumerate(z.max(0).values.tolist() if side == "below" else z.min(0).values.tolist()):
                if side == "above" and zi <= volume.z_high:
                    raise MutomoError(
                        f"panel {i} above the volume has z = {zi:.4g} m; it must be > z_high = {volume.z_high:.4g} m"
                    )
                if side == "below" and zi >= volume.z_low:
                    raise MutomoError(
                        f"panel {i} below the volume has z = {zi:.4g} m; it must be < z_low = {volume.z_low:.4g} m"
                    )

    def hits(self, muons: MuonBatch, side: str, noise: Tensor) -> Hits:
        """Hits of muons flying in straight lines through the panels of one side.

        Args:
            muons: the batch on its straight segment on that side (e.g. at the volume's entry
                for ``"above"``, at its exit for ``"below"``).
            side: ``"above"`` or ``"below"``.
            noise: ``(panel, mu, 2)`` standard normal draws (reparameterisation: the hit is
                ``true + resolution * noise``, differentiable in the resolution); the same draws
                serve every design of a batch.

        Returns:
            :class:`Hits` with the detector's design axes leading.
        """
        p = self.panel_parameters(side)
        true = position_at_z(muons, p["centre"][..., 2:3])[..., :2]
        xy = true + p["resolution"][..., None, None] * noise
        acceptance = smooth_acceptance(true, p["centre"][..., :2], p["span"], self.smoothness)
        weight = p["efficiency"][..., None] * acceptance * muons.weight
        return Hits(xy=xy, z=p["centre"][..., 2], true_xy=true, resolution=p["resolution"], weight=weight)

    def panel_costs(self) -> Tensor:
        """``(*design, panel)`` cost of every panel, above then below."""
        params = [self.panel_parameters(s) for s in ("above", "below")]
        design = torch.broadcast_shapes(*(p["resolution"].shape[:-1] for p in params))
        span = torch.cat([p["span"].expand(*design, -1, 2) for p in params], dim=-2)
        res = torch.cat([p["resolution"].expand(*design, -1) for p in params], dim=-1)
        eff = torch.cat([p["efficiency"].expand(*design, -1) for p in params], dim=-1)
        return self.cost_model(span, res, eff)

    def cost(self) -> Tensor:
        """Total cost, ``(*design,)`` (a scalar tensor for one detector)."""
        return self.panel_costs().sum(-1)

    def n_panels(self, side: str) -> int:
        return int(self.panel_parameters(side)["centre"].shape[-2])

    @property
    def design_shape(self) -> tuple[int, ...]:
        """Leading design axes of the panel parameters (``()`` for one detector)."""
        shapes = [self.panel_parameters(s)["resolution"].shape[:-1] for s in ("above", "below")]
        return tuple(torch.broadcast_shapes(*shapes))

    @classmethod
    def stack(cls, detectors: Sequence[Detector]) -> Detector:
        """K detectors of the same layout as one detector with a leading design axis of size K.

        Each panel's parameters become ``torch.stack`` of the K detectors' (so gradients reach
        every original parameter); smoothness and cost model come from the first. Simulating and
        reconstructing the stack runs the K designs in one vectorised pass on the same muons.
        """
        if not detectors:
            raise MutomoError("Detector.stack needs at least one detector")
        first = detectors[0]
        batched = [i for i, d in enumerate(detectors) if d.design_shape]
        if batched:
            raise MutomoError(f"Detector.stack takes detectors without design axes; detectors {batched} have them")
        layout = [(d.n_panels("above"), d.n_panels("below")) for d in detectors]
        if len(set(layout)) != 1:
            raise MutomoError(
                f"Detector.stack needs the same number of panels above and below in every design; got {layout}"
            )

        def side(name: str) -> list[DetectorPanel]:
            params = [d.panel_parameters(name) for d in detectors]
            ref = params[0]["centre"]

            def stacked(key: str, i: int) -> Tensor:
                # (K, 3) centres, (K, 2) spans, (K, 1) resolutions and efficiencies
                return torch.stack([p[key][i] if p[key].dim() == 2 else p[key][i : i + 1] for p in params])

            return [
                DetectorPanel(
                    stacked("centre", i),
                    stacked("span", i),
                    stacked("resolution", i),
                    stacked("efficiency", i),
                    device=ref.device,
                    dtype=ref.dtype,
                    validate=False,  # the detectors' panels were checked when they were built
                )
                for i in range(ref.shape[0])
            ]

        return cls(side("above"), side("below"), float(first.smoothness), first.cost_model)
