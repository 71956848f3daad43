"""Energy loss against PUMAS (via mulder) and PDG figures."""

import numpy as np
import pytest
import torch

from mutomo.muons import FixedSource, GenerationPlane
from mutomo.units import MUON_MASS
from mutomo.volume import PassiveVolume, propagate_volume
from mutomo.volume.energy_loss import pumas_stopping_power


@pytest.mark.parametrize("material", ["iron", "lead", "water"])
@pytest.mark.parametrize("kinetic", [1.0, 10.0, 100.0])
def test_mean_dedx_in_a_slab_matches_pumas(material, kinetic):
    """Mean energy lost in 2 cm, stepped at 1 cm, within 3 % of the PUMAS stopping power."""
    volume = PassiveVolume.uniform(material, (1.0, 1.0, 0.02), (1.0, 1.0, 0.02), dtype=torch.float64)
    p = float(np.sqrt((kinetic + MUON_MASS) ** 2 - MUON_MASS**2))
    muons = FixedSource(GenerationPlane(0.05, (0.4, 0.6), (0.4, 0.6)), p).sample(2000, dtype=torch.float64)
    out = propagate_volume(muons, volume, step_length=0.01, scattering=False)
    lost = float((muons.energy - out.energy).mean()) / 0.02
    assert lost == pytest.approx(float(pumas_stopping_power(material, kinetic)), rel=0.03)


@pytest.mark.parametrize("material, minimum", [("iron", 1.451), ("lead", 1.122), ("water", 1.992)])
def test_minimum_ionisation_matches_pdg(material, minimum):
    """PDG Atomic and Nuclear Properties: <dE/dx>_min in MeV cm^2/g."""
    from mutomo.materials import get_material

    t = np.geomspace(0.05, 5.0, 400)
    per_density = pumas_stopping_power(material, t) / get_material(material).density * 1e4  # GeV/m -> MeV cm2/g
    assert per_density.min() == pytest.approx(minimum, rel=0.02)


def test_muons_range_out_and_stop():
    """CSDA range of a 1 GeV muon in lead is 0.72 m (PUMAS): it stops in 1 m, not in 0.5 m."""
    muons = FixedSource(GenerationPlane(1.2, (0.4, 0.6), (0.4, 0.6)), 1.1).sample(100)
    thick = propagate_volume(muons, PassiveVolume.uniform("lead", (1.0, 1.0, 1.0), 0.1), scattering=False)
    thin = propagate_volume(muons, PassiveVolume.uniform("lead", (1.0, 1.0, 0.5), 0.1), scattering=False)
    assert bool((thick.weight == 0).all()) and bool((thin.weight == 1).all())
    assert bool(torch.isfinite(thick.momentum).all())
