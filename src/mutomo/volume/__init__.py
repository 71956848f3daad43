"""Passive volumes and the physics of muons crossing them."""

from mutomo.volume.energy_loss import RangeTables
from mutomo.volume.grid import PassiveVolume
from mutomo.volume.propagation import position_at_z, propagate_straight, propagate_volume
from mutomo.volume.scattering import ScatterParameters, highland_variance, lynch_dahl_variance

__all__ = [
    "PassiveVolume",
    "RangeTables",
    "ScatterParameters",
    "highland_variance",
    "lynch_dahl_variance",
    "position_at_z",
    "propagate_straight",
    "propagate_volume",
]
