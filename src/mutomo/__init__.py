"""mutomo: differentiable design of muon scattering tomography detectors.

The package mirrors the simulation chain (see ``docs`` in README.md):

* :mod:`mutomo.materials` -- cited material properties,
* :mod:`mutomo.muons` -- cosmic-ray flux models, sampling and the :class:`MuonBatch`,
* :mod:`mutomo.volume` -- voxelised passive volumes and the scattering / energy-loss kernels,
* :mod:`mutomo.detector` -- detector panels (``nn.Module``), hits and the cost model.

Units are metres, GeV (momenta in GeV/c), radians and seconds throughout; see
:mod:`mutomo.units`.
"""

from mutomo.materials import Material, get_material, known_materials
from mutomo.muons.batch import MuonBatch

__all__ = ["Material", "MuonBatch", "get_material", "known_materials"]
__version__ = "0.1.0"
