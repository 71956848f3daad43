"""Molière's theory of multiple Coulomb scattering in Bethe's form, evaluated numerically.

This is a *reference* for validating the scattering model of :mod:`mutomo.volume.scattering`
(tests/physics/test_moliere.py, benchmarks/moliere_comparison.py); the simulation never calls it.
It needs only the target's elements (Z, A, mass fraction), its areal density and the muon's
momentum.

Theory (H. A. Bethe, Phys. Rev. 89 (1953) 1256, "Molière's theory of multiple scattering";
W. T. Scott, Rev. Mod. Phys. 35 (1963) 231, sec. IV; B. Gottschalk et al., NIM B74 (1993) 467):

* Characteristic single-scattering angle, ``chi_c^2 = 4 pi N_A (alpha hbar c)^2 z^2 t
  sum_i w_i Z_i (Z_i + 1) / A_i / (p beta c)^2`` (Bethe, with ``Z^2 -> Z (Z + 1)`` for the
  scattering on atomic electrons; numerically 0.1569 MeV^2 cm^2/g as in Gottschalk et al.), with
  ``t`` the areal density (g/cm^2). With energy loss along the path, ``chi_c^2`` is the integral
  of ``d chi_c^2 = ... dt / (p beta)^2`` (Scott; Gottschalk et al.).
* Screening angle (Molière), ``chi_a^2 = chi_0^2 (1.13 + 3.76 a^2)`` with ``chi_0 = hbar /
  (p a_TF)``, ``a_TF = 0.885 a_0 Z^(-1/3)`` the Thomas-Fermi radius and ``a = z Z alpha / beta``
  the Coulomb (beyond-Born) correction (Bethe). For a compound, ``ln chi_a^2`` is the
  mean of the elements' values weighted by ``w_i Z_i (Z_i + 1) / A_i`` (Molière's rule as written
  by Gottschalk et al. with their Z_S, Z_E, Z_X; the same as Lynch & Dahl, NIM B58 (1991) 6,
  eq. 8). Along a path with energy loss, the number of collisions adds up:
  ``Omega = int d chi_c^2 / (1.167 chi_a^2)``.
* ``b = ln(chi_c^2 / (1.167 chi_a^2)) = ln Omega`` (1.167 = exp(2 C - 1), C Euler's constant),
  and ``B`` the larger root of ``B - ln B = b`` (Bethe). The expansion needs B >~ 4.5
  (Omega >~ 20; Bethe).
* Space angle ``theta``, reduced angle ``x = theta / (chi_c sqrt(B))``: the distribution
  ``f(x) x dx`` with ``f = f0 + f1 / B + f2 / B^2`` (Bethe),
  ``f_n(x) = 1/n! int_0^inf u du J0(x u) exp(-u^2/4) [u^2/4 ln(u^2/4)]^n``, ``int f x dx = 1``.
* Projected angle ``phi`` (one plane), reduced the same way: Bethe's projected distribution,
  the one-dimensional Fourier transform of the same characteristic function,
  ``g_n(x) = 1/(pi n!) int_0^inf du cos(x u) exp(-u^2/4) [u^2/4 ln(u^2/4)]^n`` with
  ``int_-inf^inf g dx = 1``; ``g0 = exp(-x^2) / sqrt(pi)``. It is computed directly from this
  integral (not by projecting or sampling the space distribution; tests/physics checks that the
  two agree).

Everything is computed numerically: the integrals over ``u`` by Simpson's rule on ``[0, 16]``
(the integrand is below 1e-22 beyond; 8192 intervals), the cumulative distributions from the
same integrals with ``sin(x u) / u`` (projected) and ``x J1(x u)`` (space) in place of the
densities' kernels, and quantiles by bisection on them. The space-angle functions need SciPy
(Bessel functions; the ``dev`` extra); the projected ones only NumPy.

Example:
    >>> p = moliere_parameters([(82, 207.2, 1.0)], areal_density_g_cm2=11.35, momentum=10.0)   # 1 cm Pb
    >>> round(p.big_b, 2)
    13.62
    >>> q68, q95, q99 = projected_abs_quantiles(p, [0.68, 0.95, 0.99])
    >>> round(1e3 * float(q68), 2)     # mrad; Highland's theta0 is 1.98 mrad
    2.01
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from mutomo.errors import MutomoError
from mutomo.materials import ELEMENTS, Material, get_material
from mutomo.units import G_PER_CM2, HBARC_GEV_FM, MUON_MASS

# CODATA 2018.
FINE_STRUCTURE = 1 / 137.035999084
AVOGADRO = 6.02214076e23
BOHR_RADIUS_FM = 52917.721090
EULER_GAMMA = 0.5772156649015329

# chi_c^2 (p beta)^2 per unit of sum_i w_i Z_i (Z_i + 1) / A_i t[g/cm^2]: 4 pi N_A (alpha hbar c)^2,
# in GeV^2 cm^2 / g (= 0.1569 MeV^2 cm^2 / g, as in Gottschalk et al. 1993).
CHI_C2_COEFF = 4 * math.pi * AVOGADRO * (FINE_STRUCTURE * HBARC_GEV_FM * 1e-13) ** 2
# chi_0 p = hbar c / (0.885 a_0 Z^(-1/3)): Thomas-Fermi screening (Bethe 1953), GeV, times Z^(1/3).
CHI_0_P = HBARC_GEV_FM / (0.885 * BOHR_RADIUS_FM)
# 1.167 = exp(2 C - 1), C Euler's constant (Bethe 1953).
OMEGA_FACTOR = math.exp(2 * EULER_GAMMA - 1)
# Helm form-factor parameters (Lewin & Smith 1996): surface thickness s and the skin parameter a (fm).
HELM_S_FM = 0.9
HELM_A_FM = 0.52
# Smallest B for which Bethe's expansion in 1/B holds (Bethe 1953: Omega >~ 20).
MIN_B = 4.5

Element = tuple[int, float, float]
"""``(Z, A [g/mol], mass fraction)`` of one element of a target."""

# Quadrature in u: Simpson's rule on [0, U_MAX] (exp(-U_MAX^2 / 4) [U_MAX^2 / 4 ln(U_MAX^2 / 4)]^2 ~ 1e-23).
U_MAX = 16.0
N_INTERVALS = 8192


@dataclass(frozen=True)
class MoliereParameters:
    """Molière's parameters for one target and momentum.

    Attributes:
        chi_c2: characteristic single-scattering angle squared (rad^2).
        omega: mean number of scatters ``chi_c^2 / (1.167 chi_a^2)`` (= exp(b)).
        big_b: Bethe's B, the root of ``B - ln B = ln Omega``.
        nuclear: ``None`` for point nuclei (Molière, Bethe); otherwise the nuclear-size term
            ``nu(u)`` of the characteristic function on the quadrature nodes (see
            :func:`moliere_parameters_path`).
    """

    chi_c2: float
    omega: float
    big_b: float
    nuclear: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def b(self) -> float:
        """``ln Omega``."""
        return math.log(self.omega)

    @property
    def chi_a2(self) -> float:
        """Effective screening angle squared (rad^2)."""
        return self.chi_c2 / (OMEGA_FACTOR * self.omega)

    @property
    def angle_scale(self) -> float:
        """``chi_c sqrt(B)`` (rad): the unit of the reduced angle."""
        return math.sqrt(self.chi_c2 * self.big_b)


def solve_big_b(b: float) -> float:
    """The larger root of ``B - ln B = b`` (Bethe 1953), by Newton's method from ``B = b + ln b``.

    Raises:
        ValueError: when ``b < 1`` (no root: fewer than e scatters, no multiple scattering).
    """
    if not b >= 1.0:
        raise MutomoError(f"B - ln B = b has no root for b = {b} < 1 (fewer than e scatters)")
    big_b = max(b + math.log(max(b, 1.0)), 1.0 + 1e-9) + 1.0
    for _ in range(100):
        step = (big_b - math.log(big_b) - b) / (1.0 - 1.0 / big_b)
        big_b = max(big_b - step, 1.0 + 1e-12)
        if abs(step) < 1e-14 * big_b:
            break
    return big_b


def screening_angle2(z: int, momentum: float, beta: float, charge: float = 1.0) -> float:
    """Molière's screening angle squared ``chi_0^2 (1.13 + 3.76 (z Z alpha / beta)^2)`` (rad^2)."""
    a = charge * z * FINE_STRUCTURE / beta
    return (CHI_0_P * z ** (1 / 3) / momentum) ** 2 * (1.13 + 3.76 * a**2)


def helm_form_factor2(q_fm: np.ndarray, a_mass: float) -> np.ndarray:
    """Squared Helm form factor of a nucleus of mass number ``A`` at momentum transfer ``q`` (1/fm).

    ``F = 3 j1(q r_n) / (q r_n) exp(-(q s)^2 / 2)`` with ``r_n^2 = c^2 + 7/3 pi^2 a^2 - 5 s^2``,
    ``c = 1.23 A^(1/3) - 0.60 fm``, ``a = 0.52 fm``, ``s = 0.9 fm`` (R. H. Helm, Phys. Rev. 104
    (1956) 1466; parameters of J. D. Lewin and P. F. Smith, Astropart. Phys. 6 (1996) 87, sec. 4).
    Its rms radius is within 1 % of the measured charge radii of heavy nuclei (5.52 fm for Pb).
    """
    c = 1.23 * a_mass ** (1 / 3) - 0.60
    r_n = math.sqrt(c**2 + (7 / 3) * math.pi**2 * HELM_A_FM**2 - 5 * HELM_S_FM**2)
    x = np.asarray(q_fm, dtype=float) * r_n
    small = x < 1e-2
    xs = np.where(small, 1.0, x)
    sphere = np.where(small, 1 - x**2 / 10, 3 * (np.sin(xs) - xs * np.cos(xs)) / xs**3)
    return np.asarray((sphere * np.exp(-((q_fm * HELM_S_FM) ** 2) / 2)) ** 2)


def _check_elements(elements: Sequence[Element]) -> None:
    if not elements:
        raise MutomoError("a target needs at least one element (Z, A, mass fraction)")
    total = sum(w for _, _, w in elements)
    if abs(total - 1.0) > 2e-3:
        raise MutomoError(f"mass fractions sum to {total}, not 1")
    for z, a, w in elements:
        if z < 1 or a <= 0 or w < 0:
            raise MutomoError(f"bad element (Z={z}, A={a}, w={w})")


def moliere_parameters_path(
    elements: Sequence[Element],
    areal_steps_g_cm2: Sequence[float] | np.ndarray,
    momenta: Sequence[float] | np.ndarray,
    mass: float = MUON_MASS,
    charge: float = 1.0,
    nuclear_size: bool = False,
) -> MoliereParameters:
    """Molière's parameters along a path cut into pieces, each at its own momentum.

    ``chi_c^2`` and ``Omega`` are sums over the pieces (Gottschalk et al. 1993), so a muon
    losing energy is handled by passing the momentum in the middle of each piece.

    With ``nuclear_size``, the single-scattering law on the nuclear charge (the ``Z^2`` part of
    ``Z (Z + 1)``) is multiplied by the squared Helm form factor of each nucleus
    (:func:`helm_form_factor2`), which Molière's point-nucleus theory leaves out. In Molière's
    theory the logarithm of the characteristic function is the integral of the single-scattering
    law against ``J0(k chi) - 1``; the form factor only removes scatters far outside the
    screening region, so ``B`` is unchanged and the exponent gains
    ``nu(u) / B = 2 / B sum_i s_i int_0^inf (1 - F_i^2(q)) (1 - J0(u y)) dy / y^3`` (reduced
    angle ``y``, ``q = p y chi_c sqrt(B) / hbar c``, ``s_i`` element i's share of the nuclear
    scattering). It is expanded with the point-nucleus term to second order in 1/B, as Bethe
    expands his.

    Args:
        elements: the target's ``(Z, A, mass fraction)``.
        areal_steps_g_cm2: ``(n,)`` areal density of each piece (g/cm^2).
        momenta: ``(n,)`` momentum (GeV/c) representative of each piece.
        mass: particle mass (GeV/c^2), the muon's by default.
        charge: particle charge in units of e.
        nuclear_size: include the nuclear form factor.
    """
    _check_elements(elements)
    t = np.atleast_1d(np.asarray(areal_steps_g_cm2, dtype=float))
    p = np.atleast_1d(np.asarray(momenta, dtype=float))
    if t.shape != p.shape or np.any(t < 0) or np.any(p <= 0):
        raise MutomoError("areal_steps_g_cm2 and momenta must have one shape, with t >= 0 and p > 0")
    beta = p / np.sqrt(p**2 + mass**2)
    weights = np.array([w * z * (z + 1) / a for z, a, w in elements])
    zz1_over_a = float(weights.sum())
    # Molière's compound rule: ln chi_a^2 averaged with weights w_i Z_i (Z_i + 1) / A_i.
    log_chi_a2 = sum(
        (wi / zz1_over_a)
        * np.log([screening_angle2(z, float(pk), float(bk), charge) for pk, bk in zip(p, beta, strict=True)])
        for (z, _, _), wi in zip(elements, weights, strict=True)
    )
    d_chi_c2 = CHI_C2_COEFF * charge**2 * zz1_over_a * t / (p * beta) ** 2
    chi_c2 = float(d_chi_c2.sum())
    if chi_c2 <= 0:
        raise MutomoError("the path has no material (zero areal density)")
    omega = float((d_chi_c2 / (OMEGA_FACTOR * np.exp(log_chi_a2))).sum())
    big_b = solve_big_b(math.log(omega))
    nuclear = None
    if nuclear_size:
        scale = math.sqrt(chi_c2 * big_b)
        shares = [(w * z * z / a / zz1_over_a, a) for z, a, w in elements]
        pieces = [(float(dk / chi_c2), float(pk)) for dk, pk in zip(d_chi_c2, p, strict=True) if dk > 0]
        nuclear = _nuclear_term(shares, pieces, scale)
    return MoliereParameters(chi_c2=chi_c2, omega=omega, big_b=big_b, nuclear=nuclear)


def moliere_parameters(
    elements: Sequence[Element],
    areal_density_g_cm2: float,
    momentum: float,
    mass: float = MUON_MASS,
    charge: float = 1.0,
    nuclear_size: bool = False,
) -> MoliereParameters:
    """Molière's parameters for a target of areal density ``t`` (g/cm^2) at a fixed momentum (GeV/c).

    Args:
        elements: the target's ``(Z, A, mass fraction)``.
        areal_density_g_cm2: thickness times density (g/cm^2).
        momentum: momentum (GeV/c), constant through the target.
        mass: particle mass (GeV/c^2), the muon's by default.
        charge: particle charge in units of e.
        nuclear_size: include the nuclear form factor (see :func:`moliere_parameters_path`).
    """
    return moliere_parameters_path(elements, [areal_density_g_cm2], [momentum], mass, charge, nuclear_size)


@functools.cache
def _u_quadrature() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Simpson nodes ``u`` and weights on ``[0, U_MAX]``, and ``s ln s`` (s = u^2/4) there."""
    u = np.linspace(0.0, U_MAX, N_INTERVALS + 1)
    w = np.full_like(u, 2.0)
    w[1::2] = 4.0
    w[0] = w[-1] = 1.0
    w *= (U_MAX / N_INTERVALS) / 3.0
    s = u**2 / 4
    s_ln_s = np.zeros_like(s)
    s_ln_s[1:] = s[1:] * np.log(s[1:])
    return u, w, s_ln_s


def _nuclear_term(shares: list[tuple[float, float]], pieces: list[tuple[float, float]], scale: float) -> np.ndarray:
    """``nu(u)`` on the quadrature nodes: ``2 sum_i sum_k s_i c_k int (1 - F_i^2) (1 - J0(u y)) dy / y^3``.

    ``shares``: ``(s_i, A_i)``, element i's share of the nuclear scattering; ``pieces``:
    ``(c_k, p_k)``, each path piece's share of ``chi_c^2`` and its momentum; ``scale``:
    ``chi_c sqrt(B)`` (rad). The y-integral runs over a logarithmic grid around the reduced angle
    where ``q R = 1``, on 420 nodes in u, interpolated to the quadrature nodes.
    """
    from scipy.special import j0

    u, _, _ = _u_quadrature()
    # nu(u) ~ -(u^2/4) ln(u^2) near u = 0 (the form factor makes the second moment finite), so
    # nu / u^2 is interpolated, in ln u, from nodes that are dense near 0.
    u_coarse = np.concatenate([np.geomspace(1e-3, 1.0, 121)[:-1], np.linspace(1.0, U_MAX, 301)])
    nu = np.zeros_like(u_coarse)
    g = np.geomspace(1e-3, 1e3, 6001)
    dt = math.log(g[1] / g[0])
    trapezoid = np.full_like(g, dt)
    trapezoid[[0, -1]] = dt / 2
    for share, a_mass in shares:
        for c_k, p_k in pieces:
            y = g * HBARC_GEV_FM / (p_k * scale * 1.23 * a_mass ** (1 / 3))  # centred on q R = 1
            q = p_k * y * scale / HBARC_GEV_FM
            suppression = 1.0 - helm_form_factor2(q, a_mass)
            # dy / y^3 = dt / y^2 on the logarithmic grid.
            kernel = (1.0 - j0(u_coarse[:, None] * y)) * (suppression / y**2 * trapezoid)
            nu += 2 * share * c_k * kernel.sum(axis=1)
    ratio = np.interp(np.log(np.maximum(u, 1e-3)), np.log(u_coarse), nu / u_coarse**2)
    return np.asarray(ratio * u**2)


def _h(nuclear: np.ndarray | None) -> np.ndarray:
    """``h_n(u) = exp(-s) psi^n / n!`` for n = 0, 1, 2 with ``psi = s ln s (+ nu)``; ``(3, nodes)``."""
    u, _, s_ln_s = _u_quadrature()
    psi = s_ln_s if nuclear is None else s_ln_s + nuclear
    return np.exp(-(u**2) / 4) * np.stack([np.ones_like(psi), psi, psi**2 / 2])


def _transform(x: np.ndarray, kernel: str, nuclear: np.ndarray | None = None) -> np.ndarray:
    """``int_0^inf K(x, u) h_n(u) du`` for n = 0, 1, 2, shape ``(3, *x.shape)``."""
    u, w, _ = _u_quadrature()
    h = _h(nuclear)
    flat = np.atleast_1d(np.asarray(x, dtype=float)).ravel()
    out = np.empty((3, flat.size))
    for start in range(0, flat.size, 64):  # chunks keep the (chunk, nodes) kernel small
        xs = flat[start : start + 64, None]
        xu = xs * u
        if kernel == "cos":
            k = np.cos(xu)
        elif kernel == "sinc":  # sin(x u) / u, = x at u = 0
            k = np.where(u > 0, np.sin(xu) / np.where(u > 0, u, 1.0), xs)
        else:
            from scipy.special import j0, j1  # only the space-angle functions need SciPy

            k = u * j0(xu) if kernel == "j0" else xs * j1(xu)
        out[:, start : start + 64] = h @ (k * w).T
    return out.reshape((3, *np.shape(x)))


def projected_terms(x: np.ndarray | float, nuclear: np.ndarray | None = None) -> np.ndarray:
    """Bethe's projected-angle functions ``g_0, g_1, g_2`` at reduced angles ``x``; shape ``(3, *x.shape)``.

    ``g = g_0 + g_1 / B + g_2 / B^2`` is the density of the reduced projected angle on
    ``(-inf, inf)``. ``nuclear``: :attr:`MoliereParameters.nuclear` (None: point nuclei).
    """
    return _transform(np.abs(np.asarray(x, dtype=float)), "cos", nuclear) / math.pi


def projected_abs_cdf_terms(x: np.ndarray | float, nuclear: np.ndarray | None = None) -> np.ndarray:
    """The terms of ``P(|phi'| < x)``, ``2 int_0^x g_n``; shape ``(3, *x.shape)`` (the first is erf(x))."""
    return 2 * _transform(np.asarray(x, dtype=float), "sinc", nuclear) / math.pi


def space_terms(x: np.ndarray | float, nuclear: np.ndarray | None = None) -> np.ndarray:
    """Bethe's space-angle functions ``f_0, f_1, f_2`` at reduced angles ``x`` (needs SciPy); ``(3, *x.shape)``.

    ``f = f_0 + f_1 / B + f_2 / B^2`` with ``int_0^inf f x dx = 1``; ``f_0 = 2 exp(-x^2)``.
    """
    return _transform(np.asarray(x, dtype=float), "j0", nuclear)


def space_cdf_terms(x: np.ndarray | float, nuclear: np.ndarray | None = None) -> np.ndarray:
    """The terms of ``P(theta' < x)``, ``int_0^x f_n x' dx'`` (needs SciPy); ``(3, *x.shape)``."""
    return _transform(np.asarray(x, dtype=float), "j1", nuclear)


def _series(terms: np.ndarray, big_b: float) -> np.ndarray:
    return np.asarray(terms[0] + terms[1] / big_b + terms[2] / big_b**2)


def projected_density(params: MoliereParameters, angle: np.ndarray | float) -> np.ndarray:
    """Density (1/rad) of the projected angle ``phi`` (rad) on ``(-inf, inf)``."""
    scale = params.angle_scale
    return _series(projected_terms(np.asarray(angle) / scale, params.nuclear), params.big_b) / scale


def space_density(params: MoliereParameters, angle: np.ndarray | float) -> np.ndarray:
    """Density (1/rad) of the space angle ``theta`` (rad) on ``[0, inf)``: ``f(x) x / scale`` (needs SciPy)."""
    scale = params.angle_scale
    x = np.asarray(angle) / scale
    return _series(space_terms(x, params.nuclear), params.big_b) * x / scale


def _check_b(params: MoliereParameters) -> None:
    if params.big_b < MIN_B:
        raise MutomoError(
            f"B = {params.big_b:.2f} < {MIN_B}: Bethe's expansion of Molière's theory needs Omega >~ 20 "
            f"(here {params.omega:.1f}); use a thicker target"
        )


def _quantiles(
    cdf_terms: Callable[[np.ndarray, np.ndarray | None], np.ndarray],
    params: MoliereParameters,
    levels: Sequence[float],
) -> np.ndarray:
    """Bisection on the reduced cumulative distribution, all levels at once; angles in rad."""
    _check_b(params)
    q = np.asarray(levels, dtype=float)
    if np.any((q <= 0) | (q >= 1)):
        raise MutomoError(f"quantile levels must lie in (0, 1); got {levels}")
    lo, hi = np.zeros_like(q), np.full_like(q, 50.0)
    for _ in range(48):
        mid = 0.5 * (lo + hi)
        below = _series(cdf_terms(mid, params.nuclear), params.big_b) < q
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return 0.5 * (lo + hi) * params.angle_scale


def projected_abs_quantiles(params: MoliereParameters, levels: Sequence[float]) -> np.ndarray:
    """Quantiles (rad) of ``|phi|``, the absolute projected angle, at ``levels`` in (0, 1).

    Raises:
        ValueError: when B < 4.5, where Bethe's expansion does not hold.
    """
    return _quantiles(projected_abs_cdf_terms, params, levels)


def space_quantiles(params: MoliereParameters, levels: Sequence[float]) -> np.ndarray:
    """Quantiles (rad) of the space angle ``theta`` at ``levels`` in (0, 1) (needs SciPy)."""
    return _quantiles(space_cdf_terms, params, levels)


def material_elements(material: str | Material) -> list[Element]:
    """A mutomo material's elements as ``(Z, A, mass fraction)``."""
    m = get_material(material)
    return [(ELEMENTS[s][0], ELEMENTS[s][1], w) for s, w in m.composition.items()]


def moliere_for_slab(
    material: str | Material, thickness: float, momentum: float, nuclear_size: bool = False
) -> MoliereParameters:
    """Molière's parameters for a slab of ``material``, ``thickness`` (m) thick, at fixed ``momentum`` (GeV/c)."""
    m = get_material(material)
    return moliere_parameters(
        material_elements(m), thickness * m.density / G_PER_CM2, momentum, nuclear_size=nuclear_size
    )
