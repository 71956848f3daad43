"""Materials with the properties the simulation needs, each from a cited source.

Unless stated otherwise every number is from the PDG "Atomic and Nuclear Properties of
Materials" tables (pdg.lbl.gov/AtomicNuclearProperties, D. E. Groom; values as in PDG Review
2024): radiation length X0 (g/cm^2, converted to metres with the listed density), density,
<Z/A>, mean excitation energy I, and the elemental mass fractions of compounds and mixtures.

Materials that the PDG does not tabulate, or that a user needs, are built from their elements with
:meth:`Material.from_composition`: X0 by Tsai's formula (PDG Review, "Passage of particles through
matter", Eq. 34.26), <Z/A> from the elements (``periodictable``) and I by Bragg additivity.

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
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from mutomo.errors import MutomoError, UnknownMaterialError
from mutomo.units import EV, G_PER_CM2, G_PER_CM3, HBARC_GEV_FM, MOLIERE_CHI_C2, NUCLEAR_R0_FM

# Elemental mean excitation energies I (eV) for Z = 1..94, in order of Z: the PDG "Atomic and
# Nuclear Properties of Materials" tables (pdg.lbl.gov/2020/AtomicNuclearProperties, one page per
# element), which take them from ICRU Report 37 (1984). H, N, O, F and Cl are the values of the
# gases; C is 78 eV for every form of carbon. A test checks every entry against the copy that
# ``mulder`` (PUMAS) carries.
_MEAN_EXCITATION_EV: tuple[float, ...] = (
    # H     He     Li     Be     B      C      N      O      F      Ne
    19.2, 41.8, 40.0, 63.7, 76.0, 78.0, 82.0, 95.0, 115.0, 137.0,
    # Na    Mg     Al     Si     P      S      Cl     Ar     K      Ca
    149.0, 156.0, 166.0, 173.0, 173.0, 180.0, 174.0, 188.0, 190.0, 191.0,
    # Sc    Ti     V      Cr     Mn     Fe     Co     Ni     Cu     Zn
    216.0, 233.0, 245.0, 257.0, 272.0, 286.0, 297.0, 311.0, 322.0, 330.0,
    # Ga    Ge     As     Se     Br     Kr     Rb     Sr     Y      Zr
    334.0, 350.0, 347.0, 348.0, 357.0, 352.0, 363.0, 366.0, 379.0, 393.0,
    # Nb    Mo     Tc     Ru     Rh     Pd     Ag     Cd     In     Sn
    417.0, 424.0, 428.0, 441.0, 449.0, 470.0, 470.0, 469.0, 488.0, 488.0,
    # Sb    Te     I      Xe     Cs     Ba     La     Ce     Pr     Nd
    487.0, 485.0, 491.0, 482.0, 488.0, 491.0, 501.0, 523.0, 535.0, 546.0,
    # Pm    Sm     Eu     Gd     Tb     Dy     Ho     Er     Tm     Yb
    560.0, 574.0, 580.0, 591.0, 614.0, 628.0, 650.0, 658.0, 674.0, 684.0,
    # Lu    Hf     Ta     W      Re     Os     Ir     Pt     Au     Hg
    694.0, 705.0, 718.0, 727.0, 736.0, 746.0, 757.0, 790.0, 790.0, 800.0,
    # Tl    Pb     Bi     Po     At     Rn     Fr     Ra     Ac     Th
    810.0, 823.0, 823.0, 830.0, 825.0, 794.0, 827.0, 826.0, 841.0, 847.0,
    # Pa    U      Np     Pu
    878.0, 890.0, 902.0, 921.0,
)  # fmt: skip
Z_MAX = len(_MEAN_EXCITATION_EV)  # 94: plutonium


def _element_table() -> tuple[dict[str, tuple[int, float]], dict[str, int]]:
    """Symbol -> (Z, A g/mol) for Z = 1..94 from ``periodictable``; also symbol -> Z for Z > 94.

    ``periodictable`` carries the IUPAC standard atomic weights. Elements without one (Tc, Pm,
    Np, Pu) are given the mass number of their longest-lived isotope; for those the mass of that
    isotope is used instead (e.g. Pu: 244.0642 g/mol, as in the PDG tables).
    """
    import periodictable

    known: dict[str, tuple[int, float]] = {}
    beyond: dict[str, int] = {}
    for element in periodictable.elements:
        z = int(element.number)
        if z < 1:
            continue  # periodictable's element 0 is the free neutron
        if z > Z_MAX:
            beyond[element.symbol] = z
            continue
        mass = float(element.mass)
        if mass == round(mass):
            mass = float(element[round(mass)].mass)
        known[element.symbol] = (z, mass)
    return known, beyond


_KNOWN, _BEYOND_Z_MAX = _element_table()

# Element symbol -> (Z, A [g/mol]) for Z = 1..94 (periodictable, IUPAC standard atomic weights).
ELEMENTS: Mapping[str, tuple[int, float]] = MappingProxyType(_KNOWN)

# Element symbol -> mean excitation energy I (GeV), Z = 1..94 (PDG / ICRU 37; see above).
ELEMENT_MEAN_EXCITATION: Mapping[str, float] = MappingProxyType(
    {symbol: _MEAN_EXCITATION_EV[z - 1] * EV for symbol, (z, _) in _KNOWN.items()}
)

# 1 / (4 alpha r_e^2 N_A) = 716.408 g/cm^2 for A = 1 g/mol (PDG Review, "Passage of particles
# through matter", Sec. 34.4.2, text below Eq. 34.26).
_TSAI_X0_SCALE_G_CM2 = 716.408
# Fine-structure constant (PDG 2024, "Physical constants").
_ALPHA = 1 / 137.035999084
# L_rad and L'_rad for Z = 1..4 (PDG Review, Table 34.2, from Tsai, Rev. Mod. Phys. 46 (1974) 815).
_LIGHT_L_RAD = {1: (5.31, 6.144), 2: (4.79, 5.621), 3: (4.74, 5.805), 4: (4.71, 5.924)}


def element_x0_g_cm2(symbol: str) -> float:
    """Radiation length (g/cm^2) of a pure element by Tsai's formula.

    ``1/X0 = 4 alpha r_e^2 N_A / A {Z^2 [L_rad - f(Z)] + Z L'_rad}`` (PDG Review, "Passage of
    particles through matter", Eq. 34.26), with ``L_rad = ln(184.15 Z^-1/3)``,
    ``L'_rad = ln(1194 Z^-2/3)`` for Z > 4 and the values of Table 34.2 for Z <= 4, and the
    Coulomb correction ``f(Z) = a^2 [1/(1 + a^2) + 0.20206 - 0.0369 a^2 + 0.0083 a^4 - 0.002 a^6]``,
    ``a = alpha Z`` (the equation after 34.26; Davies, Bethe & Maximon, Phys. Rev. 93 (1954) 788).

    Args:
        symbol: Element symbol with Z in 1..94, e.g. ``"Pb"``.

    Example:
        >>> round(element_x0_g_cm2("Pb"), 2)   # PDG: 6.37 g/cm^2
        6.37
    """
    z, a = ELEMENTS[symbol]
    if z in _LIGHT_L_RAD:
        l_rad, l_rad_prime = _LIGHT_L_RAD[z]
    else:
        l_rad = math.log(184.15 * z ** (-1 / 3))
        l_rad_prime = math.log(1194.0 * z ** (-2 / 3))
    a2 = (_ALPHA * z) ** 2
    coulomb = a2 * (1 / (1 + a2) + 0.20206 - 0.0369 * a2 + 0.0083 * a2**2 - 0.002 * a2**3)
    return _TSAI_X0_SCALE_G_CM2 * a / (z * z * (l_rad - coulomb) + z * l_rad_prime)


def _is_real(value: object) -> bool:
    """A real number (bools and strings are not)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_symbols(name: str, composition: Mapping[str, float]) -> None:
    """Refuse symbols that are not elements with Z in 1..94, naming the material and the symbol."""
    for symbol in composition:
        if symbol in ELEMENTS:
            continue
        if symbol in _BEYOND_Z_MAX:
            raise MutomoError(
                f"Material {name!r}: element {symbol!r} has Z = {_BEYOND_Z_MAX[symbol]}; "
                f"only Z = 1..{Z_MAX} (H..Pu) are supported"
            )
        hint = ""
        if isinstance(symbol, str) and symbol.strip().capitalize() in ELEMENTS:
            hint = f" (did you mean {symbol.strip().capitalize()!r}? symbols are case-sensitive)"
        raise MutomoError(
            f"Material {name!r}: composition has unknown element symbol {symbol!r}{hint}; "
            f"use a symbol of Z = 1..{Z_MAX}, e.g. 'H', 'Fe', 'Pb'"
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
        if not 0 < self.x0 < math.inf:
            raise MutomoError(f"Material {self.name!r}: x0 must be finite and > 0 m, got {self.x0}")
        if not 0 < self.density < math.inf:
            raise MutomoError(f"Material {self.name!r}: density must be finite and > 0 kg/m^3, got {self.density}")
        _check_symbols(self.name, self.composition)
        total = sum(self.composition.values())
        if abs(total - 1.0) > 2e-3:
            raise MutomoError(f"Material {self.name!r}: composition mass fractions sum to {total}, not 1")

    @classmethod
    def from_composition(
        cls,
        name: str,
        density: float,
        composition: Mapping[str, float],
        by: str = "mass",
        mean_excitation: float | None = None,
        source: str | None = None,
    ) -> Material:
        """Build a material from its elements: X0, <Z/A> and I computed, density given.

        * ``X0``: Tsai's formula for each element (:func:`element_x0_g_cm2`, PDG Eq. 34.26),
          combined as ``1/X0 = sum_j w_j / X0_j`` (same PDG section); ``w_j`` are mass fractions.
        * ``<Z/A> = sum_j w_j Z_j / A_j``.
        * ``I`` by Bragg additivity, ``ln I = sum_j w_j (Z/A)_j ln I_j / <Z/A>`` (ICRU Report 37;
          PDG Review, "Passage of particles through matter", on the mean excitation energy), from the
          elemental values of :data:`ELEMENT_MEAN_EXCITATION`. The rule ignores chemical binding
          and phase, so for compounds it can be 10 % or more off the measured value (for water it
          gives 69 eV against the PDG's 79.7 eV); pass ``mean_excitation`` where a measured value
          is tabulated. ``I`` only enters the ionisation loss, logarithmically.

        Args:
            name: Identifier of the material (lower case by convention).
            density: Density (kg/m^3), > 0.
            composition: Element symbol (Z = 1..94, e.g. ``"Fe"``) -> mass fraction (``by="mass"``,
                must sum to 1 within 1e-3 and is then normalised) or number of atoms / atom
                fraction (``by="atoms"``, any positive scale, e.g. ``{"H": 2, "O": 1}``).
            by: ``"mass"`` or ``"atoms"``: what the composition values are.
            mean_excitation: Mean excitation energy I (GeV) to use instead of Bragg additivity,
                e.g. ``79.7e-9`` for water.
            source: Where the composition and density come from (stored with the material).

        Raises:
            ValueError: naming the material and the field, for a non-positive density, an empty
                composition, an unknown symbol or Z outside 1..94, a negative or non-finite
                fraction, mass fractions not summing to 1, ``by`` not "mass" or "atoms", or a
                non-positive ``mean_excitation``.

        Example:
            >>> water = Material.from_composition("my_water", 1000.0, {"H": 2, "O": 1}, by="atoms")
            >>> round(water.x0_g_cm2, 2), round(water.z_over_a, 4)   # PDG: 36.08 g/cm^2, 0.55509
            (36.08, 0.5551)
        """
        if not isinstance(name, str) or not name.strip():
            raise MutomoError(f"Material name must be a non-empty string, got {name!r}")
        if not _is_real(density) or not math.isfinite(density) or not density > 0:
            raise MutomoError(f"Material {name!r}: density must be a finite number > 0 (kg/m^3), got {density!r}")
        if by not in ("mass", "atoms"):
            raise MutomoError(f"Material {name!r}: by must be 'mass' or 'atoms', got {by!r}")
        if not isinstance(composition, Mapping) or not composition:
            raise MutomoError(
                f"Material {name!r}: composition must be a non-empty mapping of element symbol -> "
                f"{'mass fraction' if by == 'mass' else 'number of atoms'}, got {composition!r}"
            )
        _check_symbols(name, composition)
        for symbol, value in composition.items():
            if not _is_real(value) or not math.isfinite(value) or value < 0:
                raise MutomoError(
                    f"Material {name!r}: composition[{symbol!r}] must be a finite number >= 0, got {value!r}"
                )
        if by == "mass":
            weights = {s: float(v) for s, v in composition.items() if v > 0}
            total = sum(weights.values())
            if abs(total - 1.0) > 1e-3:
                raise MutomoError(
                    f"Material {name!r}: composition mass fractions sum to {total:.6g}, not 1 (tolerance 1e-3); "
                    "normalise them, or pass by='atoms' for atom counts"
                )
        else:
            weights = {s: float(v) * ELEMENTS[s][1] for s, v in composition.items() if v > 0}
            total = sum(weights.values())
        if not total > 0:
            raise MutomoError(f"Material {name!r}: composition has no element with a fraction > 0")
        fractions = {s: w / total for s, w in weights.items()}

        inv_x0 = sum(w / element_x0_g_cm2(s) for s, w in fractions.items())
        z_over_a = sum(w * ELEMENTS[s][0] / ELEMENTS[s][1] for s, w in fractions.items())
        if mean_excitation is None:
            log_i = sum(
                w * ELEMENTS[s][0] / ELEMENTS[s][1] * math.log(ELEMENT_MEAN_EXCITATION[s]) for s, w in fractions.items()
            )
            mean_excitation = math.exp(log_i / z_over_a)
        elif not _is_real(mean_excitation) or not 0 < mean_excitation < 1e-5:
            raise MutomoError(
                f"Material {name!r}: mean_excitation must be in GeV, in (0, 1e-5) (elements span 19-921 eV), "
                f"e.g. 79.7e-9 for 79.7 eV; got {mean_excitation!r}"
            )
        return cls(
            name=name,
            x0=(1.0 / inv_x0) * G_PER_CM2 / float(density),
            density=float(density),
            z_over_a=z_over_a,
            mean_excitation=float(mean_excitation),
            composition=MappingProxyType(fractions),
            source=source or f"Material.from_composition (by {by}): Tsai X0 (PDG Eq. 34.26), Bragg-additive I",
        )

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
        _m("lead", 6.37, 11.35, 0.39575, 823.0, {"Pb": 1.0}),
        _m("uranium", 6.00, 18.95, 0.38651, 890.0, {"U": 1.0}),
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

# Built from their composition (Material.from_composition); tests/physics/test_materials_composition.py
# compares gold's X0 with the PDG's 6.46 g/cm^2 and wood's composition with the PDG's cellulose.
_COMPOSED = (
    Material.from_composition(
        "gold",
        19320.0,
        {"Au": 1.0},
        mean_excitation=790.0 * EV,
        source="PDG Atomic and Nuclear Properties (gold): density 19.32 g/cm^3, I = 790 eV; X0 by Tsai's formula",
    ),
    Material.from_composition(
        "plutonium",
        19840.0,
        {"Pu": 1.0},
        mean_excitation=921.0 * EV,
        source="PDG Atomic and Nuclear Properties (plutonium): density 19.84 g/cm^3, I = 921 eV; X0 by Tsai's formula",
    ),
    Material.from_composition(
        "stainless_steel_304",
        8000.0,
        {"Fe": 0.695, "Cr": 0.19, "Ni": 0.095, "Mn": 0.02},
        source=(
            "AISI 304 (UNS S30400: about 18-20 % Cr, 8-10.5 % Ni, up to 2 % Mn by mass, balance Fe), taken as "
            "Fe 69.5, Cr 19, Ni 9.5, Mn 2 % (C, Si, P, S, N, about 1 % together, left out); density 8.00 g/cm^3, "
            "the usual data-sheet value; X0 by Tsai's formula, I by Bragg additivity"
        ),
    ),
    Material.from_composition(
        "wood",
        520.0,
        {"C": 6, "H": 10, "O": 5},
        by="atoms",
        mean_excitation=77.6 * EV,
        source=(
            "Dry wood as cellulose (C6H10O5)n, the PDG's 'cellulose' composition and I = 77.6 eV, at 520 kg/m^3, "
            "typical of dry pine (species densities: USDA Forest Products Laboratory, Wood Handbook, FPL-GTR-190); "
            "lignin, hemicellulose and moisture are neglected"
        ),
    ),
    Material.from_composition(
        "food",
        1000.0,
        {"H": 2, "O": 1},
        by="atoms",
        mean_excitation=79.7 * EV,
        source="Foodstuffs modelled as liquid water (PDG water: I = 79.7 eV); X0 by Tsai's formula (36.08 g/cm^2)",
    ),
)
_TABLE.update({m.name: m for m in _COMPOSED})

MATERIALS: Mapping[str, Material] = MappingProxyType(_TABLE)


def known_materials() -> list[str]:
    """Names accepted by :func:`get_material`, sorted."""
    return sorted(MATERIALS)


def get_material(name: str | Material) -> Material:
    """Look a material up by name (case-insensitive); a :class:`Material` passes through.

    Raises:
        UnknownMaterialError: (a ``KeyError`` and a :class:`MutomoError`) for an unknown name;
            the message lists the known ones.
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
        "stainless_steel": "stainless_steel_304",
        "ss304": "stainless_steel_304",
    }
    key = aliases.get(key, key)
    if key not in MATERIALS:
        raise UnknownMaterialError(f"Unknown material {name!r}; known materials: {', '.join(known_materials())}")
    return MATERIALS[key]
