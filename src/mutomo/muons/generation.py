"""Muon sources: where and how muons enter the simulation, and exposure-time bookkeeping."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch

from mutomo.errors import MutomoError
from mutomo.muons.batch import MuonBatch
from mutomo.muons.flux import TabulatedFlux


@dataclass(frozen=True)
class GenerationPlane:
    """A horizontal rectangle on which muons start.

    Attributes:
        z: Height (m).
        x_range, y_range: (min, max) extents (m).
    """

    z: float
    x_range: tuple[float, float]
    y_range: tuple[float, float]

    def __post_init__(self) -> None:
        # Checked here, once: the sources build their muons from the plane without re-checking them.
        if not math.isfinite(self.z):
            raise MutomoError(f"GenerationPlane.z must be finite (m); got {self.z}")
        for name, (lo, hi) in (("x_range", self.x_range), ("y_range", self.y_range)):
            if not hi > lo:
                raise MutomoError(f"GenerationPlane.{name} must have max > min (m); got {(lo, hi)}")
            if not (math.isfinite(lo) and math.isfinite(hi)):
                raise MutomoError(f"GenerationPlane.{name} must be finite (m); got {(lo, hi)}")

    @property
    def area(self) -> float:
        """Area in m^2."""
        return (self.x_range[1] - self.x_range[0]) * (self.y_range[1] - self.y_range[0])

    def sample_xy(
        self,
        n: int,
        generator: torch.Generator | None,
        dtype: torch.dtype,
        device: torch.device | str | None,
    ) -> torch.Tensor:
        """``(n, 3)`` uniform points on the plane."""
        u = torch.rand(n, 2, generator=generator, dtype=dtype, device=device)
        lo = torch.tensor([self.x_range[0], self.y_range[0]], dtype=dtype, device=device)
        hi = torch.tensor([self.x_range[1], self.y_range[1]], dtype=dtype, device=device)
        xy = lo + u * (hi - lo)
        return torch.cat([xy, torch.full((n, 1), self.z, dtype=dtype, device=device)], dim=1)


class MuonSource(Protocol):
    """Anything that produces a :class:`MuonBatch`."""

    plane: GenerationPlane

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> MuonBatch: ...


def _direction(cos_theta: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
    """Downward unit vectors for zenith ``acos(cos_theta)`` and azimuth ``phi``, ``(mu, 3)``."""
    sin_theta = torch.sqrt((1 - cos_theta**2).clamp(min=0.0))
    return torch.stack([sin_theta * torch.cos(phi), sin_theta * torch.sin(phi), -cos_theta], dim=-1)


def _check_n(n: int) -> None:
    if int(n) < 1:
        raise MutomoError(f"The number of muons must be >= 1; got {n}")


class FluxSource:
    """Cosmic muons from a tabulated flux through a horizontal generation plane.

    Example:
        >>> plane = GenerationPlane(z=2.0, x_range=(0.0, 1.0), y_range=(0.0, 1.0))
        >>> source = FluxSource(plane, TabulatedFlux(momentum_range=(0.5, 500.0)))
        >>> len(source.sample(1000, torch.Generator().manual_seed(0)))
        1000
    """

    def __init__(self, plane: GenerationPlane, flux: TabulatedFlux | None = None) -> None:
        self.plane = plane
        self.flux = flux if flux is not None else TabulatedFlux()

    @property
    def rate(self) -> float:
        """Muons per second crossing the generation plane (within the flux table's ranges)."""
        return self.flux.rate_per_area * self.plane.area

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> MuonBatch:
        _check_n(n)
        momentum, cos_theta, charge = self.flux.sample(n, generator, dtype=dtype, device=device)
        phi = (2 * math.pi) * torch.rand(n, generator=generator, dtype=dtype, device=device)
        # The flux table's momenta are > 0, the plane is finite and the directions are unit
        # vectors by construction: no value check on every muon of every step.
        return MuonBatch.create(
            position=self.plane.sample_xy(n, generator, dtype, device),
            direction=_direction(cos_theta, phi),
            momentum=momentum,
            charge=charge,
            validate=False,
        )


class FixedSource:
    """Muons of one momentum and one direction, uniform over the plane (or at ``point``).

    For tests and calibration: ``FixedSource(plane, momentum=10.0, theta=0.0)`` is a vertical
    10 GeV/c beam over the plane.
    """

    def __init__(
        self,
        plane: GenerationPlane,
        momentum: float,
        theta: float = 0.0,
        phi: float = 0.0,
        charge: float = -1.0,
        point: tuple[float, float] | None = None,
    ) -> None:
        if not momentum > 0:
            raise MutomoError(f"FixedSource.momentum must be > 0 GeV/c; got {momentum}")
        if not 0 <= theta < math.pi / 2:
            raise MutomoError(f"FixedSource.theta must be in [0, pi/2) rad; got {theta}")
        self.plane, self.momentum, self.theta, self.phi, self.charge, self.point = (
            plane,
            momentum,
            theta,
            phi,
            charge,
            point,
        )

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> MuonBatch:
        _check_n(n)
        if self.point is None:
            position = self.plane.sample_xy(n, generator, dtype, device)
        else:
            position = torch.tensor([[*self.point, self.plane.z]], dtype=dtype, device=device).expand(n, 3).clone()
        cos_t = torch.full((n,), math.cos(self.theta), dtype=dtype, device=device)
        direction = _direction(cos_t, torch.full((n,), self.phi, dtype=dtype, device=device))
        full = torch.full((n,), 1.0, dtype=dtype, device=device)
        return MuonBatch.create(position, direction, self.momentum * full, charge=self.charge * full)


class FixedMomentumSource:
    """Another source's muons, each given one momentum: the directions, positions and charges
    of ``source`` (the same draws), the momentum ``momentum`` for every muon.

    TomOpt's convention (Strong et al., Mach. Learn.: Sci. Technol. 5 035002, 2024) is muons of
    a fixed 5 GeV/c with the sky's directions; :mod:`mutomo.optimise.systematics` uses this to
    ask how a design fares when the spectrum is that instead of the flux model's.

    Example:
        >>> plane = GenerationPlane(z=2.0, x_range=(0.0, 1.0), y_range=(0.0, 1.0))
        >>> source = FixedMomentumSource(FluxSource(plane, TabulatedFlux(momentum_range=(0.5, 500.0))), 5.0)
        >>> float(source.sample(10, torch.Generator().manual_seed(0)).momentum.max())
        5.0
    """

    def __init__(self, source: MuonSource, momentum: float) -> None:
        if not (math.isfinite(momentum) and momentum > 0):
            raise MutomoError(f"FixedMomentumSource.momentum must be finite and > 0 GeV/c; got {momentum}")
        self.source, self.momentum = source, float(momentum)
        self.plane = source.plane

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> MuonBatch:
        muons = self.source.sample(n, generator, dtype=dtype, device=device)
        return muons.replace(momentum=torch.full_like(muons.momentum, self.momentum))


def exposure_time(n_muons: int, source: FluxSource) -> float:
    """Seconds of sky exposure that ``n_muons`` through ``source.plane`` represent."""
    _check_n(n_muons)
    return n_muons / source.rate


def muon_count(seconds: float, source: FluxSource) -> int:
    """Expected number of muons through ``source.plane`` in ``seconds`` of exposure (rounded)."""
    if not seconds > 0:
        raise MutomoError(f"exposure time must be > 0 s; got {seconds}")
    return max(1, round(seconds * source.rate))
