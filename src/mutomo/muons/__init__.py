"""Cosmic muons: flux models, sampling and the batch container."""

from mutomo.muons.batch import MuonBatch
from mutomo.muons.flux import FluxModel, GCCLY15Flux, TabulatedFlux
from mutomo.muons.generation import (
    FixedSource,
    FluxSource,
    GenerationPlane,
    MuonSource,
    exposure_time,
    muon_count,
)

__all__ = [
    "FixedSource",
    "FluxModel",
    "FluxSource",
    "GCCLY15Flux",
    "GenerationPlane",
    "MuonBatch",
    "MuonSource",
    "TabulatedFlux",
    "exposure_time",
    "muon_count",
]
