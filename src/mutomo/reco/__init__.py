"""Reconstruction: track fits, scatter quantities (PoCA), voxel assignment, and every voxel
method (PoCA X0, ASR, BCA, ML/EM; by name: :data:`mutomo.reco.methods.VOXEL_METHODS`) with the
momenta they receive (:data:`mutomo.reco.momentum_options.MOMENTUM_OPTIONS`)."""

from mutomo.reco.asr import AngleStatisticsReconstruction, triggered_voxels
from mutomo.reco.bca import BinnedClustering
from mutomo.reco.maps import ScatterData, VoxelMap, VoxelMethod, measure
from mutomo.reco.mlem import MaximumLikelihoodEM, MLEMResult, PathLengths, path_lengths
from mutomo.reco.momentum import (
    ConstantMomentum,
    ExpectedMomentum,
    FluxMeanMomentum,
    MomentumEstimator,
    MomentumPrior,
)
from mutomo.reco.poca import Scatters, compute_scatters
from mutomo.reco.track_fit import Tracks, at_least_two, fit_tracks
from mutomo.reco.voxelise import (
    VoxelWeights,
    binned_poca,
    box_probability,
    crosses_volume,
    extended_poca,
    poca_voxel_weights,
    poca_within_height,
    voxel_indices,
)
from mutomo.reco.x0 import HighlandX0Inferrer, PocaX0, X0Estimate, X0Inferrer

__all__ = [
    "HighlandX0Inferrer",
    "PocaX0",
    "X0Estimate",
    "X0Inferrer",
    "AngleStatisticsReconstruction",
    "BinnedClustering",
    "ConstantMomentum",
    "ExpectedMomentum",
    "FluxMeanMomentum",
    "MLEMResult",
    "MaximumLikelihoodEM",
    "MomentumEstimator",
    "MomentumPrior",
    "PathLengths",
    "ScatterData",
    "VoxelMap",
    "VoxelMethod",
    "measure",
    "path_lengths",
    "triggered_voxels",
    "Scatters",
    "Tracks",
    "VoxelWeights",
    "at_least_two",
    "binned_poca",
    "box_probability",
    "compute_scatters",
    "crosses_volume",
    "extended_poca",
    "fit_tracks",
    "poca_voxel_weights",
    "poca_within_height",
    "voxel_indices",
]
