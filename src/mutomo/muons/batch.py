"""The :class:`MuonBatch`: the muons of one simulated exposure, as named tensors."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

from mutomo.errors import MutomoError
from mutomo.units import MUON_MASS


def _first_bad(ok: Tensor) -> int:
    """Index of the first muon (leading axis) for which ``ok`` is false (NaN counts as false)."""
    bad = ~ok.reshape(ok.shape[0], -1).all(1)
    return int(bad.nonzero()[0, 0])


def _check_values(position: Tensor, norm: Tensor, momentum: Tensor, weight: Tensor | None) -> None:
    """The value checks of :meth:`MuonBatch.create` (``norm``: the directions' lengths)."""
    positive = (momentum > 0) & torch.isfinite(momentum)
    if not bool(positive.all()):
        raise MutomoError(f"MuonBatch.momentum must be finite and > 0 GeV/c; muon {_first_bad(positive)}")
    if not bool(torch.isfinite(position).all()):
        raise MutomoError(f"MuonBatch.position must be finite (m); muon {_first_bad(torch.isfinite(position))}")
    if not bool(((norm > 0) & torch.isfinite(norm)).all()):
        first = _first_bad((norm > 0) & norm.isfinite())
        raise MutomoError(f"MuonBatch.direction must be a finite, non-zero vector; muon {first}")
    if weight is not None and not bool(((weight >= 0) & (weight <= 1)).all()):
        raise MutomoError(f"MuonBatch.weight must be in [0, 1]; muon {_first_bad((weight >= 0) & (weight <= 1))}")


@dataclass(frozen=True)
class MuonBatch:
    """A batch of muons. Frozen: propagation returns new batches.

    Attributes:
        position: ``Float[Tensor, "mu 3"]`` position (m).
        direction: ``Float[Tensor, "mu 3"]`` unit direction of flight; muons from the sky have
            ``direction[:, 2] < 0``.
        momentum: ``Float[Tensor, "mu"]`` momentum (GeV/c), > 0.
        charge: ``Float[Tensor, "mu"]`` charge in units of e (+1 or -1).
        weight: ``Float[Tensor, "mu"]`` weight in [0, 1]: 0 for muons that stopped or left.
        path_x0: ``Float[Tensor, "mu"]`` radiation lengths traversed so far (dimensionless);
            the Highland log term is evaluated on this total (Lynch & Dahl 1991).
    """

    position: Tensor
    direction: Tensor
    momentum: Tensor
    charge: Tensor
    weight: Tensor
    path_x0: Tensor

    def __post_init__(self) -> None:
        n = self.position.shape[-2] if self.position.dim() >= 2 else -1
        if self.position.shape[-1:] != (3,) or self.direction.shape != self.position.shape:
            raise MutomoError(
                f"MuonBatch.position and .direction must both have shape (mu, 3); got "
                f"{tuple(self.position.shape)} and {tuple(self.direction.shape)}"
            )
        for name in ("momentum", "charge", "weight", "path_x0"):
            t = getattr(self, name)
            if t.shape != self.position.shape[:-1]:
                raise MutomoError(f"MuonBatch.{name} must have shape (mu,) = ({n},); got {tuple(t.shape)}")

    @classmethod
    def create(
        cls,
        position: Tensor,
        direction: Tensor,
        momentum: Tensor,
        charge: Tensor | None = None,
        weight: Tensor | None = None,
        *,
        validate: bool = True,
    ) -> MuonBatch:
        """Build a batch, filling charge (-1), weight (1) and path_x0 (0) when omitted.

        ``validate=False`` skips the checks of the values (finite, momentum > 0, non-zero
        directions, weights in [0, 1]): for mutomo's own sources, whose values hold by
        construction, so that a training step does not re-check every muon it generated. Data
        from a user or a file keep the default."""
        if position.shape[0] == 0:
            raise MutomoError("MuonBatch needs at least one muon (got mu = 0)")
        norm = direction.norm(dim=-1, keepdim=True)
        if validate:
            _check_values(position, norm[..., 0], momentum, weight)
        ones = torch.ones_like(momentum)
        return cls(
            position=position,
            direction=direction / norm,
            momentum=momentum,
            charge=-ones if charge is None else charge,
            weight=ones if weight is None else weight,
            path_x0=torch.zeros_like(momentum),
        )

    def __len__(self) -> int:
        return int(self.position.shape[-2])

    @property
    def device(self) -> torch.device:
        return self.position.device

    @property
    def dtype(self) -> torch.dtype:
        return self.position.dtype

    @property
    def energy(self) -> Tensor:
        """Total energy (GeV), ``(mu,)``."""
        return torch.sqrt(self.momentum**2 + MUON_MASS**2)

    @property
    def kinetic_energy(self) -> Tensor:
        """Kinetic energy (GeV), ``(mu,)``."""
        return self.energy - MUON_MASS

    @property
    def beta(self) -> Tensor:
        """Speed over c, ``(mu,)``."""
        return self.momentum / self.energy

    @property
    def theta(self) -> Tensor:
        """Zenith angle of the direction of *arrival* (0 = from straight above), ``(mu,)``."""
        return torch.acos((-self.direction[..., 2]).clamp(-1.0, 1.0))

    @property
    def slopes(self) -> Tensor:
        """``(mu, 2)`` dx/dz and dy/dz of the line of flight."""
        return self.direction[..., :2] / self.direction[..., 2:3]

    def replace(self, **changes: Tensor) -> MuonBatch:
        """A copy with some fields replaced."""
        return dataclasses.replace(self, **changes)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> MuonBatch:
        """Move every tensor (floating point ones are cast to ``dtype`` when given)."""
        return MuonBatch(
            **{f.name: getattr(self, f.name).to(device=device, dtype=dtype) for f in dataclasses.fields(self)}
        )

    def repeat(self, times: int) -> MuonBatch:
        """The batch ``times`` times over, one copy after the other (``(times * mu, ...)``)."""
        return MuonBatch(
            **{
                f.name: getattr(self, f.name).repeat(times, *([1] * (getattr(self, f.name).dim() - 1)))
                for f in dataclasses.fields(self)
            }
        )

    def __getitem__(self, index: Tensor | slice) -> MuonBatch:
        """Select muons (boolean mask, indices or slice) -- for analysis, not for the training path."""
        return MuonBatch(**{f.name: getattr(self, f.name)[index] for f in dataclasses.fields(self)})
