"""Molière's theory (mutomo.volume.moliere) against published numbers, then the model against it.

The first tests check the numerical Molière-Bethe reference against what is published: Bethe's
closed form of f1 and his tabulated f1(0), f2(0) (Phys. Rev. 89 (1953) 1256), the Rutherford
limits, the normalisation, the projection, Gottschalk's constant and Lynch & Dahl's screening
angle, and the widths of Highland's formula (PDG: 11 %) and of Lynch & Dahl's fit (~2 %). The
last ones simulate muons through slabs with ``propagate_volume`` and compare the 68/95/99 %
quantiles of |projected angle| with Molière's theory with the nuclear size: targets 5 / 7 / 12 %.
"""

import math

import numpy as np
import pytest
import torch
from scipy.integrate import simpson
from scipy.optimize import brentq
from scipy.special import digamma, expi, polygamma
from scipy.stats import norm

from mutomo.materials import get_material
from mutomo.muons import FixedSource, GenerationPlane
from mutomo.units import MUON_MASS
from mutomo.volume import PassiveVolume, RangeTables, highland_variance, lynch_dahl_variance, propagate_volume
from mutomo.volume.moliere import (
    CHI_0_P,
    CHI_C2_COEFF,
    helm_form_factor2,
    material_elements,
    moliere_for_slab,
    moliere_parameters,
    moliere_parameters_path,
    projected_abs_cdf_terms,
    projected_abs_quantiles,
    projected_density,
    projected_terms,
    solve_big_b,
    space_cdf_terms,
    space_terms,
)

LEVELS = (0.68, 0.95, 0.99)
TARGET = np.array([0.05, 0.07, 0.12])


# ------------------------------------------------------------------ the reference itself


def test_space_functions_match_bethes_closed_forms_and_table():
    """f0 = 2 exp(-x^2); f1 = 2 e^-x2 (x2 - 1) (Ei(x2) - ln x2) - 2 (1 - 2 e^-x2), x2 = x^2 (Bethe's
    closed form); f1(0) = 2 (1 - C) = 0.8456 and f2(0) = 2.4929 (Bethe's Table II; = Gamma''(3)).
    The numerical integrals agree to 1e-6 (Simpson on 8192 intervals)."""
    x = np.linspace(0.0, 8.0, 161)
    f = space_terms(x)
    x2 = x[1:] ** 2
    f1 = 2 * np.exp(-x2) * (x2 - 1) * (expi(x2) - np.log(x2)) - 2 * (1 - 2 * np.exp(-x2))
    assert np.abs(f[0] - 2 * np.exp(-(x**2))).max() < 1e-6
    assert np.abs(f[1, 1:] - f1).max() < 1e-6
    assert f[1, 0] == pytest.approx(0.8456, abs=1e-4)
    assert f[2, 0] == pytest.approx(2.4929, abs=1e-4)
    assert f[2, 0] == pytest.approx(2 * (digamma(3) ** 2 + polygamma(1, 3)), abs=1e-6)


def test_normalisation_and_single_scattering_limits():
    """The corrections carry no probability (f1, f2 integrate to 0) and, far out, f1/B is Rutherford
    single scattering: f1 -> 2 / x^4 (space), g1 -> 1 / (2 |x|^3) (projected); the next order is
    ~ ln x / x^2, so within 1 % at x = 30 and closer than at x = 10."""
    far = np.array([60.0])
    assert space_cdf_terms(far)[:, 0] == pytest.approx([1.0, 0.0, 0.0], abs=5e-4)
    assert projected_abs_cdf_terms(far)[:, 0] == pytest.approx([1.0, 0.0, 0.0], abs=5e-4)
    x = np.array([10.0, 30.0])
    space = space_terms(x)[1] * x**4 / 2
    projected = projected_terms(x)[1] * 2 * x**3
    for ratio in (space, projected):
        assert abs(ratio[1] - 1) < 0.01 and abs(ratio[1] - 1) < abs(ratio[0] - 1)


def test_projected_distribution_is_the_projection_of_the_space_one():
    """Bethe's projected functions (a 1-D Fourier transform) equal the space distribution integrated
    along a line, g(x) = 1/pi int_0^inf f(sqrt(x^2 + y^2)) dy, for B = 10."""
    big_b, x = 10.0, np.array([0.0, 1.0, 2.0, 4.0])
    y = np.linspace(0.0, 20.0, 1601)  # beyond 20 the line integral of f1 ~ 2 / y^4 is < 3e-5
    direct = projected_terms(x)
    projected = [simpson(space_terms(np.hypot(xi, y)), x=y, axis=1) / math.pi for xi in x]
    for i in range(len(x)):
        series = direct[:, i] @ [1, 1 / big_b, 1 / big_b**2]
        assert projected[i] @ [1, 1 / big_b, 1 / big_b**2] == pytest.approx(series, abs=2e-5)


def test_constants_and_parameters():
    """chi_c^2 (p beta)^2 per Z(Z+1)/A g/cm^2 is 0.1569 MeV^2 cm^2/g (Gottschalk et al., NIM B74
    (1993) 467); Molière's screening angle at alpha Z -> 0 is 1.13 chi_0^2 = 2.007e-5 Z^(2/3) / p^2
    [MeV] (Lynch & Dahl eq. 6, to 0.1 %); B solves B - ln B = b and refuses b < 1."""
    assert abs(CHI_C2_COEFF / 0.1569e-6 - 1) < 1e-3
    assert abs(1.13 * CHI_0_P**2 / 2.007e-11 - 1) < 1e-3
    for b in (1.5, 3.0, 8.0, 20.0):
        big_b = solve_big_b(b)
        assert big_b - math.log(big_b) == pytest.approx(b, abs=1e-12) and big_b > 1
    with pytest.raises(ValueError, match="no root"):
        solve_big_b(0.5)
    with pytest.raises(ValueError, match="B = .* < 4.5"):
        projected_abs_quantiles(moliere_parameters([(4, 9.012, 1.0)], 2e-3, 10.0), LEVELS)  # Omega ~ 10
    # The nuclear term vanishes for a nucleus much smaller than 1/q: Bethe's result is recovered.
    assert helm_form_factor2(np.array([1e-4]), 207.2)[0] == pytest.approx(1.0, abs=1e-6)


def gaussian_width_central_98(params):
    """sigma of a Gaussian matched to the central 98 % of Molière's projected distribution."""
    half = projected_abs_quantiles(params, [0.98])[0]
    x = np.linspace(0.0, half, 2001)
    var = 2 * np.trapezoid(projected_density(params, x) * x**2, x) / 0.98

    def mismatch(sigma):
        a = half / sigma
        return sigma**2 * (1 - 2 * a * norm.pdf(a) / (2 * norm.cdf(a) - 1)) - var

    return brentq(mismatch, 1e-3 * math.sqrt(var), 100 * math.sqrt(var))


@pytest.mark.parametrize("material", ["beryllium", "aluminium", "iron", "lead", "uranium"])
def test_widths_match_highland_and_lynch_dahl(material):
    """Two published fits to Molière's theory: Highland's formula (PDG eq. 34.15) is accurate to
    11 % for 1e-3 < x/X0 < 100, Lynch & Dahl's eq. 7 (98 % Gaussian width) to ~2 %. The 98 %
    Gaussian width of the numerical theory meets both, at 10 GeV/c (1.7 % and 9 % at most)."""
    m = get_material(material)
    one = torch.ones(1, dtype=torch.float64)
    beta = 10.0 / math.hypot(10.0, MUON_MASS)
    for x_over_x0 in (1e-3, 1e-1, 10.0, 100.0):
        params = moliere_for_slab(m, x_over_x0 * m.x0, 10.0)
        width = gaussian_width_central_98(params)
        highland = float(highland_variance(one * x_over_x0, one * 10.0, one * beta).sqrt())
        lynch_dahl = math.sqrt(float(lynch_dahl_variance(one * params.chi_c2, one * params.omega)))
        assert width == pytest.approx(highland, rel=0.11), (x_over_x0, width / highland)
        assert width == pytest.approx(lynch_dahl, rel=0.02), (x_over_x0, width / lynch_dahl)


def test_nuclear_size_narrows_thick_high_z_only():
    """The nuclear form factor removes Rutherford scatters above q ~ hbar c / R (28 MeV for lead):
    negligible for 1 mm of beryllium, -8 % (q68) and -25 % (q99) for 10 cm of lead, where the
    Gaussian core itself reaches that angle (Cooper & Rainwater 1955; Butkevich et al. 2002)."""
    ratio = {
        (m, t): projected_abs_quantiles(moliere_for_slab(m, t, 10.0, nuclear_size=True), LEVELS)
        / projected_abs_quantiles(moliere_for_slab(m, t, 10.0), LEVELS)
        for m, t in (("beryllium", 0.001), ("lead", 0.1))
    }
    assert np.abs(ratio["beryllium", 0.001] - 1).max() < 0.002
    assert ratio["lead", 0.1][0] < 0.94 and ratio["lead", 0.1][2] < 0.80
    assert np.all(np.diff(ratio["lead", 0.1]) < 0)  # the further out, the more is cut


# ------------------------------------------------------------------ the model against the reference


def model_quantiles(material, thickness, momentum, n=100_000, seed=0, energy_loss=False):
    """Quantiles (rad) of |projected exit angle| (x and y pooled) of muons sent straight down."""
    volume = PassiveVolume.uniform(material, (1.0, 1.0, thickness), (1.0, 1.0, thickness), dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    muons = FixedSource(GenerationPlane(thickness + 0.1, (0.4, 0.6), (0.4, 0.6)), momentum).sample(
        n, gen, dtype=torch.float64
    )
    out = propagate_volume(muons, volume, generator=gen, energy_loss=energy_loss)
    angles = [torch.atan2(out.direction[:, i], -out.direction[:, 2]).numpy() for i in (0, 1)]
    return np.quantile(np.abs(np.concatenate(angles)), LEVELS)


def moliere_with_energy_loss(material, thickness, momentum, piece=0.001):
    """Molière (nuclear size) along the slab: 1 mm pieces at the momentum of the continuous loss."""
    m = get_material(material)
    tables = RangeTables([m], dtype=torch.float64)
    index, half = torch.zeros(1, dtype=torch.long), torch.tensor([piece / 2], dtype=torch.float64)
    kinetic = torch.tensor([math.hypot(momentum, MUON_MASS) - MUON_MASS], dtype=torch.float64)
    momenta = []
    for _ in range(round(thickness / piece)):
        mid, _ = tables.step(kinetic, index, half)
        momenta.append(float(torch.sqrt(mid * (mid + 2 * MUON_MASS))))
        kinetic, _ = tables.step(mid, index, half)
    areal = np.full(len(momenta), piece * m.density / 10.0)
    return moliere_parameters_path(material_elements(m), areal, momenta, nuclear_size=True)


def check_against_moliere(material, thickness, momentum, seed=0, n=100_000):
    model = model_quantiles(material, thickness, momentum, n=n, seed=seed)
    nuclear = projected_abs_quantiles(moliere_for_slab(material, thickness, momentum, nuclear_size=True), LEVELS)
    point = projected_abs_quantiles(moliere_for_slab(material, thickness, momentum), LEVELS)
    return model / nuclear - 1, model / point - 1


FAST_CASES = [
    ("beryllium", 0.001, 10.0),
    ("aluminium", 0.01, 1.0),
    ("iron", 0.1, 10.0),
    ("tin", 0.01, 100.0),
    ("tungsten", 0.003, 10.0),
    ("gold", 0.01, 10.0),
    ("lead", 0.1, 10.0),
    ("uranium", 0.001, 400.0),
    ("plutonium", 0.03, 3.0),
]


@pytest.mark.parametrize("material, thickness, momentum", FAST_CASES)
def test_model_quantiles_match_moliere(material, thickness, momentum):
    """A representative subset, Z = 4-94, 1 mm-10 cm, 1-400 GeV/c, energy loss off: the model's
    68/95/99 % quantiles are within 5/7/12 % of Molière's theory with the nuclear size (the
    statistical error of a quantile is below 0.4 % with 2e5 angles). Against Bethe's point-nucleus
    theory the same holds where the nucleus is too small to matter (Z <= 13 here)."""
    vs_nuclear, vs_point = check_against_moliere(material, thickness, momentum)
    assert np.all(np.abs(vs_nuclear) < TARGET), vs_nuclear
    if get_material(material).composition.keys() <= {"Be", "Al"}:
        assert np.all(np.abs(vs_point) < TARGET), vs_point


def test_model_follows_the_nuclear_size_where_point_moliere_does_not():
    """10 cm of lead: the model sits with Molière + nuclear size (within the targets; ~1 % measured);
    point-nucleus Molière is 10-35 % wider, more than the targets could hide. A model without the
    form factor would fail this."""
    vs_nuclear, vs_point = check_against_moliere("lead", 0.1, 30.0, seed=1)
    assert np.all(np.abs(vs_nuclear) < TARGET), vs_nuclear
    assert vs_point[0] < -0.07 and vs_point[2] < -0.2, vs_point


def test_model_with_energy_loss_matches_moliere_along_the_path():
    """10 cm of uranium at 1 GeV/c loses ~20 % of its momentum: with the loss on, the model agrees
    with Molière's theory summed over 1 mm pieces at the momentum of the continuous loss."""
    model = model_quantiles("uranium", 0.1, 1.0, energy_loss=True, seed=2)
    reference = projected_abs_quantiles(moliere_with_energy_loss("uranium", 0.1, 1.0), LEVELS)
    at_entry = projected_abs_quantiles(moliere_for_slab("uranium", 0.1, 1.0, nuclear_size=True), LEVELS)
    assert np.all(np.abs(model / reference - 1) < TARGET), model / reference - 1
    assert np.all(reference / at_entry > 1.08)  # the loss matters: ignoring it would be 8 % off


HIGH_Z = ("tungsten", "gold", "lead", "uranium", "plutonium")
Z_SWEEP = ("beryllium", "graphite", "aluminium", "silicon", "iron", "copper", "silver", "tin", *HIGH_Z)
SLOW_CASES = sorted(
    {(m, t, p) for m in HIGH_Z for t in (0.001, 0.003, 0.01, 0.03, 0.1) for p in (1.0, 3.0, 10.0, 30.0, 100.0, 400.0)}
    | {(m, t, p) for m in Z_SWEEP for t in (0.001, 0.01, 0.1) for p in (1.0, 10.0, 100.0)}
)


@pytest.mark.slow
def test_model_quantiles_match_moliere_everywhere():
    """The full range of the issue: W, Au, Pb, U, Pu at 1 mm-10 cm and 1-400 GeV/c, and the Z sweep
    4-94 at 1 mm / 1 cm / 10 cm and 1/10/100 GeV/c (222 points): within 5/7/12 % of Molière with the
    nuclear size everywhere, and of point-nucleus Molière for Z <= 14."""
    failures = []
    for i, (material, thickness, momentum) in enumerate(SLOW_CASES):
        vs_nuclear, vs_point = check_against_moliere(material, thickness, momentum, seed=i, n=200_000)
        light = max(e[0] for e in material_elements(material)) <= 14
        if np.any(np.abs(vs_nuclear) >= TARGET) or (light and np.any(np.abs(vs_point) >= TARGET)):
            failures.append((material, thickness, momentum, np.round(vs_nuclear, 3), np.round(vs_point, 3)))
    assert not failures, failures
