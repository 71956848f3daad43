"""Materials with the properties the simulation needs, each from a cited source.

Unless stated otherwise every number is from the PDG "Atomic and Nuclear Properties of
Materials" tables (pdg.lbl.gov/AtomicNuclearProperties, D. E. Groom; values as in PDG Review
2024): radiation length X0 (g/cm^2, converted to metres with the listed density), density,
<Z/A>, mean excitation energy I, and the elemental mass fractions of compounds and mixtures.

The composition is used for two things: the Rutherford tail of multiple scattering, which
scales with sum_i w_i Z_i (Z_i + 1) / A_i (Lynch & Dahl 1991), and the PUMAS stopping-power
tables computed through the ``mulder`` package (see :mod:`mutomo.volume.energy_loss`).

Example:
    >>> from mutomo.materials import get_material
    >>> round(get_material("lead").x0, 5)
    0.00561
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from mutomo.units import EV, G_PER_CM2, G_PER_CM3, HBARC_GEV_FM, MOLIERE_CHI_C2, NUCLEAR_R0_FM

# Element symbol -> (Z, A [g/mol]); PDG atomic weights.
ELEMENTS: Mapping[str, tuple[int, float]] = MappingProxyType(
    {
        "H": (1, 1.008),
        "Be": (4, 9.012182),
        "C": (6, 12.0107),
        "N": (7, 14.007),
        "O": (8, 15.999),
        "Na": (11, 22.98976928),
        "Mg": (12, 24.305),
        "Al": (13, 26.9815385),
        "Si": (14, 28.0855),
        "Ar": (18, 39.948),
        "K": (19, 39.0983),
        "Ca": (20, 40.078),
        "Fe": (26, 55.845),
        "Cu": (29, 63.546),
        "Ag": (47, 107.8682),
        "Sn": (50, 118.710),
        "W": (74, 183.84),
        "Au": (79, 196.966569),
        "Pb": (82, 207.2),
        "U": (92, 238.02891),
        "Pu": (94, 244.06420),
    }
)


@dataclass(frozen=True)
class Material:
    """A homogeneous material.

    Attributes:
        name: Lower-case identifier.
        x0: Radiation length (m).
        density: Density (kg/m^3).
        z_over_a: Mean <Z/A> (mol/g).
        mean_excitation: Mean excitation energy I (GeV).
        composition: Element symbol -> mass fraction (sums to 1).
        source: Where the numbers come from.
    """

    name: str
    x0: float
    density: float
    z_over_a: float
    mean_excitation: float
    composition: Mapping[str, float] = field(repr=False, compare=False)
    source: str = field(default="PDG Atomic and Nuclear Properties", repr=False)

    def __post_init__(self) -> None:
        if not self.x0 > 0:
            raise ValueError(f"Material {self.name!r}: x0 must be > 0 m, got {self.x0}")
        if not self.density > 0:
            raise ValueError(f"Material {self.name!r}: density must be > 0 kg/m^3, got {self.density}")
        unknown = set(self.composition) - set(ELEMENTS)
        if unknown:
            raise ValueError(f"Material {self.name!r}: unknown elements {sorted(unknown)}; known: {sorted(ELEMENTS)}")
        total = sum(self.composition.values())
        if abs(total - 1.0) > 2e-3:
            raise ValueError(f"Material {self.name!r}: composition mass fractions sum to {total}, not 1")

    def __hash__(self) -> int:
        return hash(
            (
                self.name,
                self.x0,
                self.density,
                self.mean_excitation,
                tuple(sorted(self.composition.items())),
            )
        )

    @property
    def x0_g_cm2(self) -> float:
        """Radiation length in g/cm^2."""
        return self.x0 * self.density / G_PER_CM2

    @property
    def zz1_over_a(self) -> float:
        """sum_i w_i Z_i (Z_i + 1) / A_i (mol/g), the Rutherford-tail strength."""
        return sum(w * ELEMENTS[s][0] * (ELEMENTS[s][0] + 1) / ELEMENTS[s][1] for s, w in self.composition.items())

    @property
    def tail_x0(self) -> float:
        """Single-scattering tail strength per radiation length, chi_c^2 (p beta)^2 / (x/X0), in GeV^2.

        chi_c^2 = 0.157 MeV^2 * Z(Z+1)/A * t[g/cm^2] / (p beta)^2 (Lynch & Dahl 1991), so per
        radiation length the strength depends on the composition only (A cancels with X0).
        """
        return MOLIERE_CHI_C2 * self.zz1_over_a * self.x0_g_cm2

    def _tail_shares(self) -> dict[str, float]:
        """Each element's share of ``sum_i w_i Z_i (Z_i + 1) / A_i`` (sums to 1)."""
        weights = {s: w * ELEMENTS[s][0] * (ELEMENTS[s][0] + 1) / ELEMENTS[s][1] for s, w in self.composition.items()}
        total = sum(weights.values())
        return {s: w / total for s, w in weights.items()}

    @property
    def screening_p2(self) -> float:
        """Screening angle squared times p^2, ``chi_a^2 p^2`` (GeV^2 rad^2), at beta = 1.

        ``chi_a^2 = 2.007e-5 Z^(2/3) (1 + 3.34 (alpha Z)^2) / p^2[MeV]`` (Lynch & Dahl 1991,
        eq. 6 with beta = 1); for compounds ``ln chi_a`` is the ``Z(Z+1)/A``-weighted mean of
        the elements' values (their eq. 8).
        """
        alpha = 1 / 137.035999
        log_chi2 = 0.0
        for s, share in self._tail_shares().items():
            z = ELEMENTS[s][0]
            log_chi2 += share * math.log(2.007e-11 * z ** (2 / 3) * (1 + 3.34 * (alpha * z) ** 2))
        return math.exp(log_chi2)

    @property
    def nuclear_p(self) -> float:
        """``hbar c / R`` (GeV) of the nuclei that dominate the scattering tail.

        Each element's ``R = 1.2 fm A^(1/3)`` is weighted by its share of ``Z(Z+1)/A``.
        """
        return sum(
            share * HBARC_GEV_FM / (NUCLEAR_R0_FM * ELEMENTS[s][1] ** (1 / 3))
            for s, share in self._tail_shares().items()
        )


def _m(
    name: str,
    x0_g_cm2: float,
    rho_g_cm3: float,
    z_over_a: float,
    i_ev: float,
    composition: Mapping[str, float],
    source: str = "PDG Atomic and Nuclear Properties",
) -> Material:
    return Material(
        name=name,
        x0=x0_g_cm2 / rho_g_cm3 / 100.0,
        density=rho_g_cm3 * G_PER_CM3,
        z_over_a=z_over_a,
        mean_excitation=i_ev * EV,
        composition=MappingProxyType(dict(composition)),
        source=source,
    )


_SLAG_SOURCE = (
    "X0 = 0.08211 m from TomOpt's ladle-furnace benchmark (Strong et al. 2024); composition a typical "
    "ladle slag (40% CaO, 20% SiO2, 10% Al2O3, 10% MgO, 20% FeO by mass), whose Bragg-additive X0 of "
    "20.78 g/cm^2 (PDG elemental X0) sets the density 2.531 g/cm^3; <Z/A> and I from the same mixture "
    "(Bragg additivity of ln I)."
)

_TABLE: dict[str, Material] = {
    m.name: m
    for m in (
        _m(
            "air",
            36.62,
            1.205e-3,
            0.49919,
            85.7,
            {"N": 0.755267, "O": 0.231781, "Ar": 0.012827, "C": 0.000125},
        ),
        _m("water", 36.08, 1.000, 0.55509, 79.7, {"H": 0.111894, "O": 0.888106}),
        _m("polyethylene", 44.77, 0.94, 0.57034, 57.4, {"H": 0.143711, "C": 0.856289}),
        _m("beryllium", 65.19, 1.848, 0.44384, 63.7, {"Be": 1.0}),
        _m("graphite", 42.70, 2.210, 0.49955, 78.0, {"C": 1.0}, "PDG Atomic and Nuclear Properties: carbon (graphite)"),
        _m(
            "concrete",
            26.57,
            2.300,
            0.50274,
            135.2,
            {
                "H": 0.01,
                "C": 0.001,
                "O": 0.529107,
                "Na": 0.016,
                "Mg": 0.002,
                "Al": 0.033872,
                "Si": 0.337021,
                "K": 0.013,
                "Ca": 0.044,
                "Fe": 0.014,
            },
            "PDG Atomic and Nuclear Properties: shielding concrete",
        ),
        _m("silicon_dioxide", 27.05, 2.32, 0.49930, 139.2, {"Si": 0.467435, "O": 0.532565}),
        _m("aluminium", 24.01, 2.699, 0.48181, 166.0, {"Al": 1.0}),
        _m("silicon", 21.82, 2.329, 0.49848, 173.0, {"Si": 1.0}),
        _m("iron", 13.84, 7.874, 0.46557, 286.0, {"Fe": 1.0}),
        _m(
            "steel",
            13.84,
            7.874,
            0.46557,
            286.0,
            {"Fe": 1.0},
            "Carbon steel modelled as iron (PDG iron; C and Mn at <1% change X0 by <0.5%)",
        ),
        _m(
            "liquid_steel",
            13.84,
            6.951,
            0.46557,
            286.0,
            {"Fe": 1.0},
            "Molten steel: PDG iron X0 (13.84 g/cm^2) at 6.951 g/cm^3, giving X0 = 0.01991 m as in "
            "TomOpt's ladle-furnace benchmark",
        ),
        _m("copper", 12.86, 8.960, 0.45636, 322.0, {"Cu": 1.0}),
        _m("silver", 8.97, 10.50, 0.43572, 470.0, {"Ag": 1.0}),
        _m("tin", 8.82, 7.310, 0.42119, 488.0, {"Sn": 1.0}),
        _m("tungsten", 6.76, 19.30, 0.40250, 727.0, {"W": 1.0}),
        _m("gold", 6.46, 19.32, 0.40108, 790.0, {"Au": 1.0}),
        _m("lead", 6.37, 11.35, 0.39575, 823.0, {"Pb": 1.0}),
        _m("uranium", 6.00, 18.95, 0.38651, 890.0, {"U": 1.0}),
        _m(
            "plutonium",
            5.93,
            19.84,
            0.38514,
            921.0,
            {"Pu": 1.0},
            "PDG Atomic and Nuclear Properties: plutonium (A of 244Pu); X0 from Tsai's formula (PDG Review "
            "eq. 34.26), as the PDG table computes it",
        ),
        _m(
            "slag",
            20.78,
            2.531,
            0.4893,
            150.0,
            {"Ca": 0.2859, "Si": 0.0935, "Al": 0.0529, "Mg": 0.0603, "Fe": 0.1555, "O": 0.3519},
            _SLAG_SOURCE,
        ),
    )
}

MATERIALS: Mapping[str, Material] = MappingProxyType(_TABLE)


def known_materials() -> list[str]:
    """Names accepted by :func:`get_material`, sorted."""
    return sorted(MATERIALS)


def get_material(name: str | Material) -> Material:
    """Look a material up by name (case-insensitive); a :class:`Material` passes through.

    Raises:
        KeyError: for an unknown name; the message lists the known ones.
    """
    if isinstance(name, Material):
        return name
    key = str(name).strip().lower().replace(" ", "_").replace("-", "_")
    aliases = {
        "aluminum": "aluminium",
        "pb": "lead",
        "fe": "iron",
        "u": "uranium",
        "w": "tungsten",
        "cu": "copper",
        "au": "gold",
        "ag": "silver",
        "sn": "tin",
        "pu": "plutonium",
        "c": "graphite",
        "carbon": "graphite",
        "si": "silicon",
        "al": "aluminium",
        "h2o": "water",
        "sio2": "silicon_dioxide",
    }
    key = aliases.get(key, key)
    if key not in MATERIALS:
        raise KeyError(f"Unknown material {name!r}; known materials: {', '.join(known_materials())}")
    return MATERIALS[key]
