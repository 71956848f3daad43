"""What is trained: free panels (:mod:`~mutomo.design.panels`), hodoscope modules
(:mod:`~mutomo.design.hodoscopes`), stacks of designs trained as one
(:mod:`~mutomo.design.stacked`), their descriptions and kinds (:mod:`~mutomo.design.describe`)
and design files (:mod:`~mutomo.design.files`)."""

from mutomo.design.base import PARAMETER_GROUPS, SIDES, Design, DesignBounds
from mutomo.design.describe import DESIGN_KINDS, design_from_description
from mutomo.design.files import NamedDesign, design_from_file, read_design_file
from mutomo.design.hodoscopes import HodoscopeDesign, HodoscopeModule, tiled_placement
from mutomo.design.panels import DetectorDesign
from mutomo.design.stacked import StackedDesign, copy_design

__all__ = [
    "DESIGN_KINDS",
    "PARAMETER_GROUPS",
    "SIDES",
    "Design",
    "DesignBounds",
    "DetectorDesign",
    "HodoscopeDesign",
    "HodoscopeModule",
    "NamedDesign",
    "StackedDesign",
    "copy_design",
    "design_from_description",
    "design_from_file",
    "read_design_file",
    "tiled_placement",
]
