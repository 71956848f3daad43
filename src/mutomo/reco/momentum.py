"""Muon momentum for reconstruction when the data does not carry it.

Scattering measures ``theta * p``; X0 needs p. A simulation knows each muon's momentum (pass
it as a tensor); a plain tracker does not, and the caller picks an estimate:

* :class:`ConstantMomentum`: one momentum for every muon, 4 GeV/c by default, the mean energy
  of cosmic muons at sea level (PDG Review of Particle Physics, "Cosmic rays", sec. 30.3:
  "the mean energy of muons at the ground is ~ 4 GeV").
* :class:`FluxMeanMomentum`: the flux model's mean momentum at each muon's measured zenith
  angle (inclined muons are harder: between 0.1 GeV/c and 1 TeV/c, GCCLY15 gives 4.5 GeV/c
  at the zenith, 6.8 GeV/c at 45 deg and 10 GeV/c at 60 deg).

A per-muon estimate from the scattering itself would need material of known X0 in the
tracker (multiple scattering between tracking planes); mutomo's panels are massless, so it is
not offered. Both estimates are unbiased only on average: per muon, ``p`` varies over decades,
so X0 inferred with them is systematically shifted, and that shift is what a calibration
volume corrects.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from mutomo.errors import MutomoError
from mutomo.muons.flux import TabulatedFlux
from mutomo.reco.track_fit import Tracks

#: Mean energy of sea-level cosmic muons (GeV), PDG "Cosmic rays" sec. 30.3.
SEA_LEVEL_MEAN_MOMENTUM = 4.0


class MomentumEstimator(Protocol):
    """Gives each muon a momentum (GeV/c) from its tracks."""

    def __call__(self, incoming: Tracks, outgoing: Tracks) -> Tensor: ...


class ConstantMomentum:
    """The same momentum (GeV/c, > 0) for every muon."""

    def __init__(self, momentum: float = SEA_LEVEL_MEAN_MOMENTUM) -> None:
        if not momentum > 0:
            raise MutomoError(f"ConstantMomentum.momentum must be > 0 GeV/c; got {momentum}")
        self.momentum = float(momentum)

    def __call__(self, incoming: Tracks, outgoing: Tracks) -> Tensor:
        return torch.full_like(incoming.xy[:, 0], self.momentum)


class FluxMeanMomentum:
    """The flux model's mean momentum at the incoming track's zenith angle.

    Args:
        flux: tabulated flux (its momentum range sets the mean; e.g. a lower bound at the
            momentum needed to cross the volume). Default: GCCLY15 from 0.1 GeV/c to 1 TeV/c.
    """

    def __init__(self, flux: TabulatedFlux | None = None) -> None:
        self.flux = flux if flux is not None else TabulatedFlux()

    def __call__(self, incoming: Tracks, outgoing: Tracks) -> Tensor:
        cos_theta = torch.rsqrt(1 + (incoming.slope.detach() ** 2).sum(-1))
        return self.flux.mean_momentum(cos_theta)
