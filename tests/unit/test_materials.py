import pytest

from mutomo.materials import MATERIALS, get_material, known_materials

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
