import math

import pytest

from mutomo.materials import ELEMENTS, MATERIALS, get_material, known_materials

REQUIRED = [
    "air",
    "water",
    "polyethylene",
    "concrete",
    "aluminium",
    "iron",
    "steel",
    "copper",
    "lead",
    "tungsten",
    "uranium",
    "slag",
]


def test_required_materials_present_with_positive_properties():
    for name in REQUIRED:
        m = get_material(name)
        assert m.x0 > 0 and m.density > 0 and 0.3 < m.z_over_a < 0.6 and m.mean_excitation > 0
        assert abs(sum(m.composition.values()) - 1) < 2e-3


@pytest.mark.parametrize(
    "name, x0",
    [
        ("lead", 0.005612),
        ("iron", 0.01757),
        ("water", 0.3608),
        ("slag", 0.08211),
        ("liquid_steel", 0.01991),
        ("uranium", 0.003166),
        ("air", 303.9),
    ],
)
def test_radiation_lengths_match_pdg_and_tomopt(name, x0):
    assert get_material(name).x0 == pytest.approx(x0, rel=2e-3)


def test_aliases_and_case():
    assert get_material("Lead") is get_material("pb")
    assert get_material("aluminum") is MATERIALS["aluminium"]


def test_unknown_material_lists_known_ones():
    with pytest.raises(KeyError) as err:
        get_material("unobtainium")
    assert "unobtainium" in str(err.value) and "lead" in str(err.value) and len(known_materials()) >= 12


def test_tail_strength_grows_with_z():
    # chi_c^2 per radiation length ~ (Z+1)/(Z L_rad + L'_rad): rises slowly with Z.
    assert get_material("water").tail_x0 < get_material("iron").tail_x0 < get_material("lead").tail_x0


def tsai_x0_g_cm2(z: int, a: float) -> float:
    """Tsai's radiation length (PDG Review eq. 34.26 with the Coulomb correction f(Z), eq. 34.27)."""
    alpha_z = z / 137.035999
    f = alpha_z**2 * (1 / (1 + alpha_z**2) + 0.20206 - 0.0369 * alpha_z**2 + 0.0083 * alpha_z**4 - 0.002 * alpha_z**6)
    l_rad, l_rad_prime = {4: (4.71, 5.924)}.get(z, (math.log(184.15 * z ** (-1 / 3)), math.log(1194 * z ** (-2 / 3))))
    return 716.408 * a / (z**2 * (l_rad - f) + z * l_rad_prime)


@pytest.mark.parametrize("name", [n for n, m in MATERIALS.items() if len(m.composition) == 1])
def test_elemental_materials_agree_with_their_element(name):
    """<Z/A> equals the element's Z/A, and X0 is Tsai's (which the PDG tables list) to 0.2 %."""
    m = get_material(name)
    (symbol,) = m.composition
    z, a = ELEMENTS[symbol]
    assert m.z_over_a == pytest.approx(z / a, rel=2e-4)
    assert m.x0_g_cm2 == pytest.approx(tsai_x0_g_cm2(z, a), rel=2e-3)
