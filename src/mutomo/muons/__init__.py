"""Cosmic muons: flux models, sampling and the batch container."""

from mutomo.muons.batch import MuonBatch
from mutomo.muons.flux import FluxModel, GCCLY15Flux, MulderFlux, Reyna06Flux, TabulatedFlux, TiltedFlux
from mutomo.muons.generation import (
    FixedMomentumSource,
    FixedSource,
    FluxSource,
    GenerationPlane,
    MuonSource,
    exposure_time,
    muon_count,
)

__all__ = [
    "FixedMomentumSource",
    "FixedSource",
    "FluxModel",
    "FluxSource",
    "GCCLY15Flux",
    "GenerationPlane",
    "MulderFlux",
    "MuonBatch",
    "MuonSource",
    "Reyna06Flux",
    "TabulatedFlux",
    "TiltedFlux",
    "exposure_time",
    "muon_count",
]
