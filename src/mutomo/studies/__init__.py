"""Studies over many designs: landscapes of many starts (:mod:`~mutomo.studies.landscape`,
:mod:`~mutomo.studies.starts`, :mod:`~mutomo.studies.grouping`) and gradient-free searches
(:mod:`~mutomo.studies.search`, :mod:`~mutomo.studies.baselines`,
:mod:`~mutomo.studies.surrogate`). Sweeps of a configuration's trials on Ray are
:mod:`mutomo.sweep`."""

from mutomo.studies.baselines import METHODS, search
from mutomo.studies.grouping import design_distance, group_designs
from mutomo.studies.landscape import LandscapeSettings, judge_landscape, observe_designs, run_landscape
from mutomo.studies.search import DesignVector, SearchResult, design_objective
from mutomo.studies.starts import jittered_starts, random_starts

__all__ = [
    "METHODS",
    "DesignVector",
    "LandscapeSettings",
    "SearchResult",
    "design_distance",
    "design_objective",
    "group_designs",
    "jittered_starts",
    "judge_landscape",
    "observe_designs",
    "random_starts",
    "run_landscape",
    "search",
]
