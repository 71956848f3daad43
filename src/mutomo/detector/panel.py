"""Detector panels: ``nn.Module`` s that own their design parameters, and the hits they record."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mutomo.errors import MutomoError


def register_value(
    module: nn.Module,
    name: str,
    value: float | Sequence[float] | Tensor,
    size: int,
    device: torch.device | str | None,
    dtype: torch.dtype,
) -> None:
    """Register ``value`` on ``module``: as a parameter when the caller passed an ``nn.Parameter``
    (so the caller decides what is trained), otherwise as a buffer.

    The value is ``(size,)``, or ``(*design, size)`` for a batch of designs (a scalar or a
    single element broadcasts to ``size``)."""
    if isinstance(value, nn.Parameter):
        if value.shape[-1:] != (size,) and not (size == 1 and value.dim() == 1):
            raise MutomoError(
                f"{type(module).__name__}.{name} must have {size} element(s) on its last axis; got shape "
                f"{tuple(value.shape)}"
            )
        module.register_parameter(name, value)
        return
    tensor = torch.as_tensor(value, dtype=dtype, device=device)
    if tensor.dim() == 0 or (size == 1 and tensor.dim() == 1 and tensor.numel() > 1):
        tensor = tensor[..., None]  # a scalar, or one value per design of a 1-element field
    if tensor.shape[-1] == 1 and size > 1:
        tensor = tensor.expand(*tensor.shape[:-1], size).clone()
    if tensor.shape[-1] != size:
        raise MutomoError(f"{type(module).__name__}.{name} must have {size} element(s); got {tensor.shape[-1]}")
    module.register_buffer(name, tensor)


class DetectorPanel(nn.Module):
    """A flat, horizontal, rectangular tracking panel.

    Each argument may be a plain value (stored as a buffer: fixed) or an ``nn.Parameter``
    (trained by whoever optimises the module). Values may carry leading design axes, e.g.
    ``centre`` of shape ``(K, 3)`` for K candidate positions of this panel, evaluated in one
    pass (see :meth:`mutomo.detector.Detector.stack`).

    Args:
        centre: (x, y, z) of the panel centre (m).
        span: (x, y) full widths (m), > 0.
        resolution: Gaussian position resolution sigma (m), > 0, same in x and y.
        efficiency: Probability to record a hit for a muon inside the panel, in (0, 1].
        validate: check the values (:meth:`validate`); ``False`` is for mutomo's internal
            rebuilding of panels from values that were checked when they entered (a batch of
            designs, a design's panels rebuilt on every training step), so that no step
            re-checks them.

    Example:
        >>> panel = DetectorPanel(centre=(0.5, 0.5, 1.2), span=(1.0, 1.0), resolution=1e-4, efficiency=0.9)
        >>> float(panel.area)
        1.0
    """

    centre: Tensor
    span: Tensor
    resolution: Tensor
    efficiency: Tensor

    def __init__(
        self,
        centre: Sequence[float] | Tensor,
        span: Sequence[float] | Tensor,
        resolution: float | Tensor = 1e-4,
        efficiency: float | Tensor = 0.9,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        *,
        validate: bool = True,
    ) -> None:
        super().__init__()
        register_value(self, "centre", centre, 3, device, dtype)
        register_value(self, "span", span, 2, device, dtype)
        register_value(self, "resolution", resolution, 1, device, dtype)
        register_value(self, "efficiency", efficiency, 1, device, dtype)
        if validate:  # False only for panels built from values already checked (Detector.stack)
            self.validate()

    def validate(self) -> None:
        """Raise :class:`MutomoError` naming the field when a value is out of its allowed range
        (NaN and inf included)."""
        if not bool(((self.span > 0) & torch.isfinite(self.span)).all()):
            raise MutomoError(f"DetectorPanel.span must be > 0 m in x and y; got {self.span.tolist()}")
        if not bool(((self.resolution > 0) & torch.isfinite(self.resolution)).all()):
            raise MutomoError(f"DetectorPanel.resolution must be > 0 m; got {self.resolution.tolist()}")
        if not bool(((self.efficiency > 0) & (self.efficiency <= 1)).all()):
            raise MutomoError(f"DetectorPanel.efficiency must be in (0, 1]; got {self.efficiency.tolist()}")
        if not bool(torch.isfinite(self.centre).all()):
            raise MutomoError(f"DetectorPanel.centre must be finite; got {self.centre.tolist()}")

    @property
    def area(self) -> Tensor:
        """Panel area (m^2), ``(*design,)``."""
        return self.span[..., 0] * self.span[..., 1]


@dataclass(frozen=True)
class Hits:
    """Hits of a batch of muons on a stack of panels, after any design axes.

    Attributes:
        xy: ``(*design, panel, mu, 2)`` measured positions (m): true crossing plus Gaussian noise.
        z: ``(*design, panel)`` panel heights (m).
        resolution: ``(*design, panel)`` position resolution sigma (m).
        weight: ``(*design, panel, mu)`` probability that the hit was recorded: efficiency times
            the smooth geometric acceptance, in [0, 1] (0 or 1 for recorded data).
        true_xy: ``(*design, panel, mu, 2)`` true crossing points (m), when known (simulation).

    ``*design`` is empty for one detector; a batch of designs (:meth:`Detector.stack`) gives it.
    """

    xy: Tensor
    z: Tensor
    resolution: Tensor
    weight: Tensor
    true_xy: Tensor | None = None

    @property
    def n_panels(self) -> int:
        return int(self.weight.shape[-2])

    @property
    def design_shape(self) -> tuple[int, ...]:
        """The leading design axes (``()`` for one detector, and after :meth:`flatten_designs`)."""
        return tuple(self.weight.shape[:-2])

    @property
    def positions(self) -> Tensor:
        """``(*design, panel, mu, 3)`` measured hit positions with the panel heights."""
        z = self.z[..., None] if self.z.shape == self.weight.shape else self.z[..., None, None]
        return torch.cat([self.xy, z.expand(*self.xy.shape[:-1], 1)], dim=-1)

    def select(self, index: Tensor) -> Hits:
        """The hits of the muons at ``index`` (``(k,)`` long; hits without design axes)."""
        if self.design_shape:
            raise MutomoError("Hits.select works on hits without design axes; call flatten_designs() first")

        def per_muon(t: Tensor) -> Tensor:  # (panel,) stays; (panel, mu) is selected
            return t.index_select(1, index) if t.dim() == 2 else t

        return Hits(
            xy=self.xy.index_select(1, index),
            z=per_muon(self.z),
            resolution=per_muon(self.resolution),
            weight=self.weight.index_select(1, index),
            true_xy=None if self.true_xy is None else self.true_xy.index_select(1, index),
        )

    def flatten_designs(self) -> Hits:
        """One design axis merged into the muon axis, design-major: ``xy (panel, D mu, 2)``, with
        ``z``, ``resolution`` ``(panel, D mu)`` (one value per muon and panel). Identity without
        design axes."""
        if not self.design_shape:
            return self
        n_panel, n_mu = self.weight.shape[-2:]
        n_design_axes = len(self.design_shape)

        def merge(t: Tensor) -> Tensor:  # (*design, panel, mu, ...) -> (panel, D mu, ...)
            t = t.reshape(-1, n_panel, n_mu, *t.shape[n_design_axes + 2 :])
            return t.transpose(0, 1).reshape(n_panel, -1, *t.shape[3:])

        def per_muon(t: Tensor) -> Tensor:  # (*design, panel) -> (panel, D mu)
            return merge(t[..., None].expand(*t.shape, n_mu))

        return Hits(
            xy=merge(self.xy),
            z=per_muon(self.z),
            resolution=per_muon(self.resolution),
            weight=merge(self.weight),
            true_xy=None if self.true_xy is None else merge(self.true_xy),
        )


def smooth_acceptance(xy: Tensor, centre_xy: Tensor, span: Tensor, smoothness: float | Tensor) -> Tensor:
    """Differentiable inside-the-panel weight, the product over x and y of two sigmoid edges.

    ``sigmoid((x - x_low) / s) * sigmoid((x_high - x) / s)``: 1 well inside, 0 well outside, 1/2
    on an edge; ``s`` (m) sets the width of the edge and can be annealed towards 0.

    Args:
        xy: ``(*design, panel, mu, 2)`` crossing points.
        centre_xy: ``(*design, panel, 2)`` panel centres.
        span: ``(*design, panel, 2)`` panel widths.
        smoothness: edge width ``s`` (m), > 0.

    Returns:
        ``(*design, panel, mu)`` weights in [0, 1].
    """
    half = 0.5 * span[..., None, :]
    offset = xy - centre_xy[..., None, :]
    inside = torch.sigmoid((offset + half) / smoothness) * torch.sigmoid((half - offset) / smoothness)
    return inside.prod(dim=-1)
