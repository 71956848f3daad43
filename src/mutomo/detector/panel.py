"""Detector panels: ``nn.Module`` s that own their design parameters, and the hits they record."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn


def register_value(
    module: nn.Module,
    name: str,
    value: float | Sequence[float] | Tensor,
    size: int,
    device: torch.device | str | None,
    dtype: torch.dtype,
) -> None:
    """Register ``value`` on ``module``: as a parameter when the caller passed an ``nn.Parameter``
    (so the caller decides what is trained), otherwise as a buffer."""
    if isinstance(value, nn.Parameter):
        if value.numel() != size:
            raise ValueError(f"{type(module).__name__}.{name} must have {size} element(s); got {value.numel()}")
        module.register_parameter(name, value)
        return
    tensor = torch.as_tensor(value, dtype=dtype, device=device).reshape(-1)
    if tensor.numel() == 1 and size > 1:
        tensor = tensor.expand(size).clone()
    if tensor.numel() != size:
        raise ValueError(f"{type(module).__name__}.{name} must have {size} element(s); got {tensor.numel()}")
    module.register_buffer(name, tensor)


class DetectorPanel(nn.Module):
    """A flat, horizontal, rectangular tracking panel.

    Each argument may be a plain value (stored as a buffer: fixed) or an ``nn.Parameter``
    (trained by whoever optimises the module).

    Args:
        centre: (x, y, z) of the panel centre (m).
        span: (x, y) full widths (m), > 0.
        resolution: Gaussian position resolution sigma (m), > 0, same in x and y.
        efficiency: Probability to record a hit for a muon inside the panel, in (0, 1].

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
    ) -> None:
        super().__init__()
        register_value(self, "centre", centre, 3, device, dtype)
        register_value(self, "span", span, 2, device, dtype)
        register_value(self, "resolution", resolution, 1, device, dtype)
        register_value(self, "efficiency", efficiency, 1, device, dtype)
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field when a value is out of its allowed range."""
        if bool((self.span <= 0).any()):
            raise ValueError(f"DetectorPanel.span must be > 0 m in x and y; got {self.span.tolist()}")
        if bool((self.resolution <= 0).any()):
            raise ValueError(f"DetectorPanel.resolution must be > 0 m; got {self.resolution.item()}")
        eff = self.efficiency.item()
        if not 0 < eff <= 1:
            raise ValueError(f"DetectorPanel.efficiency must be in (0, 1]; got {eff}")
        if not bool(torch.isfinite(self.centre).all()):
            raise ValueError(f"DetectorPanel.centre must be finite; got {self.centre.tolist()}")

    @property
    def area(self) -> Tensor:
        """Panel area (m^2)."""
        return self.span[0] * self.span[1]


@dataclass(frozen=True)
class Hits:
    """Hits of a batch of muons on a stack of panels, panel axis first.

    Attributes:
        xy: ``(panel, mu, 2)`` measured positions (m): true crossing plus Gaussian noise.
        z: ``(panel,)`` panel heights (m).
        resolution: ``(panel,)`` position resolution sigma (m).
        weight: ``(panel, mu)`` probability that the hit was recorded: efficiency times the
            smooth geometric acceptance, in [0, 1] (0 or 1 for recorded data).
        true_xy: ``(panel, mu, 2)`` true crossing points (m), when known (simulation).
    """

    xy: Tensor
    z: Tensor
    resolution: Tensor
    weight: Tensor
    true_xy: Tensor | None = None

    @property
    def n_panels(self) -> int:
        return int(self.z.shape[0])

    @property
    def positions(self) -> Tensor:
        """``(panel, mu, 3)`` measured hit positions with the panel heights."""
        z = self.z[:, None, None].expand(*self.xy.shape[:-1], 1)
        return torch.cat([self.xy, z], dim=-1)


def smooth_acceptance(xy: Tensor, centre_xy: Tensor, span: Tensor, smoothness: float | Tensor) -> Tensor:
    """Differentiable inside-the-panel weight, the product over x and y of two sigmoid edges.

    ``sigmoid((x - x_low) / s) * sigmoid((x_high - x) / s)``: 1 well inside, 0 well outside, 1/2
    on an edge; ``s`` (m) sets the width of the edge and can be annealed towards 0.

    Args:
        xy: ``(panel, mu, 2)`` crossing points.
        centre_xy: ``(panel, 2)`` panel centres.
        span: ``(panel, 2)`` panel widths.
        smoothness: edge width ``s`` (m), > 0.

    Returns:
        ``(panel, mu)`` weights in [0, 1].
    """
    half = 0.5 * span[:, None, :]
    offset = xy - centre_xy[:, None, :]
    inside = torch.sigmoid((offset + half) / smoothness) * torch.sigmoid((half - offset) / smoothness)
    return inside.prod(dim=-1)
