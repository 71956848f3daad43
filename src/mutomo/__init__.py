"""mutomo: differentiable design of muon scattering tomography detectors.

``import mutomo`` gives the names a study needs; everything else is reachable by its module.
The package mirrors the chain (docs: *Concepts*, and ``DESIGN.md``):

* the physics: :mod:`~mutomo.materials`, :mod:`~mutomo.muons` (flux, generation,
  :class:`MuonBatch`), :mod:`~mutomo.volume` (voxelised volumes, scattering, energy loss),
  :mod:`~mutomo.detector` (panels, hits, cost), :func:`simulate`, :mod:`~mutomo.scenes`;
* the reconstruction: :mod:`~mutomo.reco` (track fits, PoCA, every voxel method,
  momentum options) and :mod:`~mutomo.tasks` (the questions, their losses and metrics);
* what is trained and how: :mod:`~mutomo.design`, :mod:`~mutomo.optimise`,
  :mod:`~mutomo.studies`;
* the file format and the application: :mod:`~mutomo.config`, :mod:`~mutomo.io`,
  :mod:`~mutomo.app`, :mod:`~mutomo.plotting`.

Units are metres, GeV (momenta in GeV/c), radians and seconds throughout; see
:mod:`mutomo.units`. Every input mutomo refuses raises :class:`MutomoError`.

Example:
    >>> import mutomo
    >>> problem = mutomo.load_benchmark("ladle_furnace")
    >>> sorted(mutomo.VOXEL_METHODS)
    ['asr', 'bca', 'extended_poca', 'mlem', 'poca']
"""

__version__ = "0.1.0"

import importlib
import sys
import types
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the names below, for type checkers and editors; loaded on first use at run time
    from mutomo.config import build_problem, load_benchmark, load_config
    from mutomo.design import (
        DESIGN_KINDS,
        DesignBounds,
        DetectorDesign,
        HodoscopeDesign,
        HodoscopeModule,
        design_from_description,
    )
    from mutomo.detector import AreaCostModel, Detector, DetectorPanel
    from mutomo.errors import MutomoError
    from mutomo.materials import Material, get_material, known_materials
    from mutomo.muons import FluxSource, MuonBatch, TabulatedFlux, exposure_time
    from mutomo.optimise import (
        EvaluationSettings,
        Problem,
        TrainingSettings,
        observe_design,
        optimise,
        paired,
    )
    from mutomo.optimise.evaluate import evaluate
    from mutomo.reco import (
        AngleStatisticsReconstruction,
        BinnedClustering,
        ConstantMomentum,
        FluxMeanMomentum,
        MaximumLikelihoodEM,
        PocaX0,
        measure,
    )
    from mutomo.reco.methods import VOXEL_METHODS
    from mutomo.reco.momentum_options import MOMENTUM_OPTIONS
    from mutomo.scenes import Scene, SceneSpec
    from mutomo.simulate import acceptance_plane, simulate
    from mutomo.tasks import TASK_KINDS, Imaging, Presence, Regression
    from mutomo.tasks.statistics import poca_height, presence_score
    from mutomo.volume import PassiveVolume

#: Where each public name lives: ``import mutomo`` loads none of them (a command that needs only
#: the units or the errors starts without the configuration, the optimisation or plotting); the
#: first ``mutomo.NAME`` imports its module (PEP 562).
_EXPORTS: dict[str, str] = {
    "build_problem": "mutomo.config",
    "load_benchmark": "mutomo.config",
    "load_config": "mutomo.config",
    "DESIGN_KINDS": "mutomo.design",
    "DesignBounds": "mutomo.design",
    "DetectorDesign": "mutomo.design",
    "HodoscopeDesign": "mutomo.design",
    "HodoscopeModule": "mutomo.design",
    "design_from_description": "mutomo.design",
    "AreaCostModel": "mutomo.detector",
    "Detector": "mutomo.detector",
    "DetectorPanel": "mutomo.detector",
    "MutomoError": "mutomo.errors",
    "Material": "mutomo.materials",
    "get_material": "mutomo.materials",
    "known_materials": "mutomo.materials",
    "FluxSource": "mutomo.muons",
    "MuonBatch": "mutomo.muons",
    "TabulatedFlux": "mutomo.muons",
    "exposure_time": "mutomo.muons",
    "EvaluationSettings": "mutomo.optimise",
    "Problem": "mutomo.optimise",
    "TrainingSettings": "mutomo.optimise",
    "evaluate": "mutomo.optimise",
    "observe_design": "mutomo.optimise",
    "optimise": "mutomo.optimise",
    "paired": "mutomo.optimise",
    "AngleStatisticsReconstruction": "mutomo.reco",
    "BinnedClustering": "mutomo.reco",
    "ConstantMomentum": "mutomo.reco",
    "FluxMeanMomentum": "mutomo.reco",
    "MaximumLikelihoodEM": "mutomo.reco",
    "PocaX0": "mutomo.reco",
    "measure": "mutomo.reco",
    "VOXEL_METHODS": "mutomo.reco.methods",
    "MOMENTUM_OPTIONS": "mutomo.reco.momentum_options",
    "Scene": "mutomo.scenes",
    "SceneSpec": "mutomo.scenes",
    "acceptance_plane": "mutomo.simulate",
    "simulate": "mutomo.simulate",
    "Imaging": "mutomo.tasks",
    "Presence": "mutomo.tasks",
    "Regression": "mutomo.tasks",
    "TASK_KINDS": "mutomo.tasks",
    "poca_height": "mutomo.tasks.statistics",
    "presence_score": "mutomo.tasks.statistics",
    "PassiveVolume": "mutomo.volume",
}


class _Facade(types.ModuleType):
    """The package's module type: the import system binds each imported submodule to its
    package's name (``mutomo.optimise``, ``mutomo.simulate``); where that name is also a public
    function of the facade, the function stays (as when the facade imported eagerly), and the
    submodule is reached by ``import mutomo.optimise`` (``sys.modules``) as always."""

    def __setattr__(self, name: str, value: object) -> None:
        if isinstance(value, types.ModuleType) and name in _EXPORTS and value.__name__ == f"mutomo.{name}":
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Facade


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mutomo' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "DESIGN_KINDS",
    "MOMENTUM_OPTIONS",
    "TASK_KINDS",
    "VOXEL_METHODS",
    "AngleStatisticsReconstruction",
    "AreaCostModel",
    "BinnedClustering",
    "ConstantMomentum",
    "DesignBounds",
    "Detector",
    "DetectorDesign",
    "DetectorPanel",
    "EvaluationSettings",
    "FluxMeanMomentum",
    "FluxSource",
    "HodoscopeDesign",
    "HodoscopeModule",
    "Imaging",
    "Material",
    "MaximumLikelihoodEM",
    "MuonBatch",
    "MutomoError",
    "PassiveVolume",
    "PocaX0",
    "Presence",
    "Problem",
    "Regression",
    "Scene",
    "SceneSpec",
    "TabulatedFlux",
    "TrainingSettings",
    "acceptance_plane",
    "build_problem",
    "design_from_description",
    "evaluate",
    "exposure_time",
    "get_material",
    "known_materials",
    "load_benchmark",
    "load_config",
    "measure",
    "observe_design",
    "optimise",
    "paired",
    "poca_height",
    "presence_score",
    "simulate",
]
