import math

import pytest

from mutomo.materials import ELEMENTS, MATERIALS, Material, get_material, known_materials

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


# --- Material.from_composition -------------------------------------------------------------------

WATER_BY_MASS = {"H": 0.111894, "O": 0.888106}  # PDG water_liquid


def test_elements_cover_hydrogen_to_plutonium():
    assert len(ELEMENTS) == 94
    assert sorted(z for z, _ in ELEMENTS.values()) == list(range(1, 95))
    assert ELEMENTS["H"][0] == 1 and ELEMENTS["Pu"][0] == 94
    assert ELEMENTS["Pu"][1] == pytest.approx(244.064, abs=1e-3)  # longest-lived isotope, as the PDG


def test_atoms_are_converted_to_mass_fractions():
    by_atoms = Material.from_composition("h2o", 1000.0, {"H": 2, "O": 1}, by="atoms")
    by_mass = Material.from_composition("h2o", 1000.0, WATER_BY_MASS)
    for symbol, fraction in WATER_BY_MASS.items():
        assert by_atoms.composition[symbol] == pytest.approx(fraction, abs=2e-5)
    assert by_atoms.x0 == pytest.approx(by_mass.x0, rel=1e-4)
    assert by_atoms.z_over_a == pytest.approx(by_mass.z_over_a, rel=1e-4)
    # Atom fractions and atom counts are the same thing.
    scaled = Material.from_composition("h2o", 1000.0, {"H": 2 / 3, "O": 1 / 3}, by="atoms")
    assert scaled.x0 == pytest.approx(by_atoms.x0, rel=1e-12)


def test_mass_fractions_within_tolerance_are_normalised():
    m = Material.from_composition("w", 1000.0, {"H": 0.111894 * 1.0008, "O": 0.888106 * 1.0008})
    assert sum(m.composition.values()) == pytest.approx(1.0, abs=1e-12)


def test_mean_excitation_override_and_default():
    bragg = Material.from_composition("w", 1000.0, WATER_BY_MASS)
    given = Material.from_composition("w", 1000.0, WATER_BY_MASS, mean_excitation=79.7e-9)
    assert given.mean_excitation == 79.7e-9 and bragg.mean_excitation != given.mean_excitation
    assert given.x0 == bragg.x0  # I does not enter X0
    iron = Material.from_composition("fe", 7874.0, {"Fe": 1.0})
    assert iron.mean_excitation == pytest.approx(286e-9, rel=1e-12)  # an element's own I
    assert iron.x0 == pytest.approx(get_material("iron").x0, rel=2e-3)


def test_composition_built_materials_are_registered():
    for name in ("gold", "plutonium", "stainless_steel_304", "wood", "food"):
        m = get_material(name)
        assert m.x0 > 0 and m.density > 0 and abs(sum(m.composition.values()) - 1) < 1e-9
    assert get_material("Au") is get_material("gold") and get_material("ss304") is get_material("stainless_steel_304")
    steel = get_material("stainless_steel_304")
    assert steel.density == 8000.0 and steel.composition["Cr"] == pytest.approx(0.19)
    # Denser and higher Z than iron: a shorter radiation length in metres.
    assert get_material("plutonium").x0 < get_material("gold").x0 < get_material("lead").x0


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"composition": {"Xx": 1.0}}, ["'Xx'", "unknown element"]),
        ({"composition": {"fe": 1.0}}, ["'fe'", "did you mean 'Fe'"]),
        ({"composition": {"Am": 1.0}}, ["'Am'", "Z = 95", "1..94"]),
        ({"composition": {}}, ["composition", "non-empty"]),
        ({"composition": {"Fe": 1.1, "C": -0.1}}, ["composition['C']", ">= 0"]),
        ({"composition": {"Fe": float("nan")}}, ["composition['Fe']", "finite"]),
        ({"composition": {"Fe": "1"}}, ["composition['Fe']", "number"]),
        ({"composition": {"Fe": 0.98, "C": 0.01}}, ["sum to 0.99", "tolerance 1e-3"]),
        ({"composition": {"Fe": 0.0}, "by": "atoms"}, ["no element with a fraction > 0"]),
        ({"density": 0.0}, ["density", "> 0", "kg/m^3"]),
        ({"density": -8000.0}, ["density", "> 0"]),
        ({"density": float("inf")}, ["density", "finite"]),
        ({"density": "8000"}, ["density"]),
        ({"by": "volume"}, ["by must be 'mass' or 'atoms'", "'volume'"]),
        ({"mean_excitation": 286.0}, ["mean_excitation", "GeV"]),
        ({"mean_excitation": -1e-7}, ["mean_excitation", "GeV"]),
    ],
)
def test_from_composition_refuses_bad_input(kwargs, words):
    args = {"name": "bad_steel", "density": 7874.0, "composition": {"Fe": 1.0}} | kwargs
    with pytest.raises(ValueError) as err:
        Material.from_composition(**args)
    message = str(err.value)
    assert "'bad_steel'" in message, message
    for word in words:
        assert word in message, message


def test_from_composition_refuses_an_empty_name():
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        Material.from_composition("  ", 1000.0, {"H": 2, "O": 1}, by="atoms")


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
