"""Detector panels, hits and cost."""

from mutomo.detector.cost import AreaCostModel, CostModel
from mutomo.detector.detector import Detector, PanelGroup
from mutomo.detector.panel import DetectorPanel, Hits, smooth_acceptance

__all__ = [
    "AreaCostModel",
    "CostModel",
    "Detector",
    "DetectorPanel",
    "Hits",
    "PanelGroup",
    "smooth_acceptance",
]
