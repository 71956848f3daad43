"""The voxel methods by the name a configuration uses: one table, read by the tasks, the
configuration check, ``mutomo tasks``, the error messages and the documentation.

Adding a voxel method is one module (a :class:`~mutomo.reco.maps.VoxelMethod`) and one line
here; ``tests/unit/test_registries.py`` enumerates this table and fails a method that has no
test case.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mutomo.reco.asr import AngleStatisticsReconstruction
from mutomo.reco.bca import BinnedClustering
from mutomo.reco.maps import VoxelMethod
from mutomo.reco.mlem import MaximumLikelihoodEM
from mutomo.reco.x0 import PocaX0


@dataclass(frozen=True)
class VoxelMethodEntry:
    """One voxel method of the registry.

    Attributes:
        name: the name a configuration uses (``task.inference``).
        build: a new method with its defaults.
        infers_x0: whether its map is an X0 estimate (imaging needs one); otherwise a score.
        marginalises_momentum: whether it can marginalise over each muon's unknown momentum
            itself (``momentum = "marginal"``); the others take one momentum per muon.
        summary: one line for ``mutomo tasks`` and the documentation.
    """

    name: str
    build: Callable[[], VoxelMethod]
    infers_x0: bool
    marginalises_momentum: bool
    summary: str


def _poca() -> VoxelMethod:
    return PocaX0(extended=False)


def _extended_poca() -> VoxelMethod:
    return PocaX0(extended=True)


VOXEL_METHODS: dict[str, VoxelMethodEntry] = {
    e.name: e
    for e in (
        VoxelMethodEntry("poca", _poca, True, False, "X0 per voxel from the scatters at each PoCA (Highland inverted)"),
        VoxelMethodEntry(
            "extended_poca",
            _extended_poca,
            True,
            False,
            "PoCA X0 with each scatter spread over voxels by its (correlated) uncertainty",
        ),
        VoxelMethodEntry(
            "asr",
            AngleStatisticsReconstruction,
            False,
            False,
            "angle statistics reconstruction: median scattering of the muons near each voxel (Stapleton 2014)",
        ),
        VoxelMethodEntry(
            "bca",
            BinnedClustering,
            False,
            False,
            "binned clustering of PoCA pairs: a high-Z discriminator per voxel (Thomay 2013)",
        ),
        VoxelMethodEntry(
            "mlem",
            MaximumLikelihoodEM,
            True,
            True,
            "maximum-likelihood density by expectation-maximisation over each muon's path (Schultz 2007)",
        ),
    )
}
"""Voxel methods by name, in the order they are listed to users."""

X0_METHODS: tuple[str, ...] = tuple(name for name, e in VOXEL_METHODS.items() if e.infers_x0)
"""Voxel methods that infer X0 (imaging needs one)."""


def voxel_method(name: str) -> VoxelMethod:
    """A new voxel method of the registry by name (a :class:`KeyError` for others: callers check
    the name against :data:`VOXEL_METHODS` where it enters)."""
    return VOXEL_METHODS[name].build()
