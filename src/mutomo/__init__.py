"""mutomo: differentiable design of muon scattering tomography detectors.

The package mirrors the simulation chain (see ``docs`` in README.md):

* :mod:`mutomo.materials` -- cited material properties,
* :mod:`mutomo.muons` -- cosmic-ray flux models, sampling and the :class:`MuonBatch`,
* :mod:`mutomo.volume` -- voxelised passive volumes and the scattering / energy-loss kernels,
* :mod:`mutomo.detector` -- detector panels (``nn.Module``), hits and the cost model,
* :mod:`mutomo.errors` -- :class:`MutomoError`, raised for every input mutomo refuses.

Units are metres, GeV (momenta in GeV/c), radians and seconds throughout; see
:mod:`mutomo.units`.
"""

from mutomo.errors import MutomoError
from mutomo.materials import Material, get_material, known_materials
from mutomo.muons.batch import MuonBatch

__all__ = ["Material", "MuonBatch", "MutomoError", "get_material", "known_materials"]
__version__ = "0.1.0"
