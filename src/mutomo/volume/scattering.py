"""Multiple Coulomb scattering of muons: a Gaussian core plus a single-scattering tail.

The model, per step of path length ``ds`` through a material of radiation length ``X0``:

* **Core.** The projected-angle width is the Gaussian width of Lynch & Dahl (NIM B58 (1991) 6,
  eq. 7), ``theta0^2 = chi_c^2 / (1 + F^2) [(1 + v)/v ln(1 + v) - 1]`` with ``F = 0.98``,
  ``v = Omega / (2 (1 - F))`` and ``Omega = chi_c^2 / (1.167 chi_a^2)`` the mean number of
  scatters; it reproduces Molier's theory to ~2 % for all Z, where Highland's formula (PDG
  eq. 34.15) is good to 11 % and misses the Z dependence (about +7 % for 1 cm of lead).
  ``chi_c^2 = 0.157 MeV^2 Z(Z+1)/A t[g/cm^2]/(p beta)^2`` is Molier's characteristic
  angle (Lynch & Dahl eq. 2) and ``chi_a`` the screening angle (their eq. 6). Both are
  *accumulated* along the path. The core variance is ``theta0_LD^2 - kappa chi_c^2``: the
  explicit tail below carries a share ~ ``chi_c^2`` of the width that Lynch & Dahl fitted to
  the whole distribution. Each step adds the difference of the core variance after and
  before it, so the variance after any division of a slab into steps is the thick-target
  value (applying the formula per step, as per-step Highland does, underestimates thick
  targets by 8-17 %).
* **Tail.** Rutherford single scatters harder than a cut ``theta_c = n_c sigma_core(after)``:
  their number in the step is Poisson with mean ``d chi_c^2 / theta_c^2`` and their angles
  follow ``P(> theta) = (theta_c / theta)^2``, thinned by the dipole form factor of the
  nucleus, ``F^2 = (1 + q^2 <r^2> / 12)^-4`` with ``q = p theta``, ``<r^2> = 3 R^2 / 5`` for a
  uniform sphere of radius ``R = 1.2 fm A^(1/3)`` (PDG Review sec. 34.3), i.e.
  ``(1 + theta^2 / (20 theta_N^2))^-4`` with ``theta_N = hbar c / (p R)``: heavy nuclei cut
  the tail earlier. Because the cut rises along the path, hard scatters drawn earlier that
  now lie below it are counted again in the core; the core increment is reduced by their
  expected variance ``chi_c,acc^2 ln(theta_c(after) / theta_c(before))``, which keeps the
  total variance independent of the step size.
* **Displacement.** The lateral offset at the end of a step is correlated with the angle as in
  PDG eq. 34.21: ``y = ds (z1 sigma / sqrt(12) + z2 sigma / 2)`` with ``theta = z2 sigma``
  (correlation sqrt(3)/2); a hard scatter happens on average mid-step, giving ``ds theta / 2``.

``kappa`` and ``n_c`` are the two tuned constants (see :class:`ScatterParameters`), set
against the Geant4 1 cm samples in ../shared/data and checked in tests/physics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from mutomo.units import HIGHLAND_E0, HIGHLAND_LOG_COEFF

# Number of random numbers a scattering step consumes per muon.
N_SCATTER_RANDOMS = 7


@dataclass(frozen=True)
class ScatterParameters:
    """Tuned constants of the scattering model.

    Attributes:
        tail_share: ``kappa``: the core variance is ``theta0_LD^2 - kappa chi_c^2``.
        tail_cut: ``n_c``: hard scatters are those above ``n_c`` core widths.
        max_angle: Largest projected angle kept after a step (rad); guards tan() near pi/2.
        form_factor_scale: ``12 / (<r^2>/R^2) = 20`` for a uniformly charged sphere.

    ``tail_share = 1.2`` and ``tail_cut = 2.2`` were chosen on a grid (1.0-1.9 x 1.6-2.5) to
    centre the 68/95/99 % quantiles of |projected angle| on the Geant4 1 cm samples of
    aluminium, iron, lead and SiO2 at 1-400 GeV/c (mean deviations within +-4 % per material),
    keeping the 98 % Gaussian-fit width within 11 % of Highland from 1 mm to 1 m.
    """

    tail_share: float = 1.2
    tail_cut: float = 2.2
    max_angle: float = 1.2
    form_factor_scale: float = 20.0


DEFAULT_SCATTER = ScatterParameters()


def highland_g(t: Tensor, beta2: Tensor | float = 1.0) -> Tensor:
    """``g(t) = t (1 + 0.038 ln(t / beta^2))^2``: Highland's theta0^2 in units of (13.6 MeV / (beta p))^2."""
    return t * (1 + HIGHLAND_LOG_COEFF * torch.log(t / beta2)) ** 2


def highland_inverse(g: Tensor, iterations: int = 30) -> Tensor:
    """Solve ``t (1 + 0.038 ln t)^2 = g`` for t (beta = 1), elementwise, differentiably.

    Newton's method in ``ln t`` from ``t = g`` (no gradient), then one Newton step with gradient
    so that ``dt/dg = 1 / g'(t)`` (implicit function theorem). Valid for t > 1e-8 (g > 1e-9),
    where g is increasing.

    Example:
        >>> import torch
        >>> t = torch.tensor([1e-3, 0.5, 30.0], dtype=torch.float64)
        >>> torch.allclose(highland_inverse(highland_g(t)), t)
        True
    """
    g = g.clamp(min=1e-9)
    with torch.no_grad():
        log_t = torch.log(g)
        for _ in range(iterations):
            t = torch.exp(log_t)
            c = 1 + HIGHLAND_LOG_COEFF * log_t
            residual = t * c**2 - g
            slope = t * c * (c + 2 * HIGHLAND_LOG_COEFF)  # d g / d ln t
            log_t = log_t - residual / slope
        t0 = torch.exp(log_t)
    c = 1 + HIGHLAND_LOG_COEFF * torch.log(t0)
    derivative = c * (c + 2 * HIGHLAND_LOG_COEFF)  # d g / d t
    return t0 - (highland_g(t0) - g) / derivative


def highland_variance(path_x0: Tensor, momentum: Tensor, beta: Tensor) -> Tensor:
    """Highland theta0^2 (rad^2) of the projected angle after ``path_x0`` radiation lengths.

    Args:
        path_x0: ``(mu,)`` total thickness in radiation lengths.
        momentum: ``(mu,)`` momentum (GeV/c).
        beta: ``(mu,)`` speed over c.

    Example:
        >>> import torch
        >>> one = torch.tensor([1.0], dtype=torch.float64)
        >>> theta0 = highland_variance(one, 10 * one, one).sqrt()   # 1 X0 at 10 GeV
        >>> round(float(theta0), 6)
        0.00136
    """
    return (HIGHLAND_E0 / (beta * momentum)) ** 2 * highland_g(path_x0.clamp(min=1e-12), beta**2)


Components = tuple[Tensor, Tensor, Tensor]


def perpendicular_basis(dx: Tensor, dy: Tensor, dz: Tensor) -> tuple[Components, Components]:
    """Two unit vectors orthogonal to the direction ``(dx, dy, dz)`` and to each other, as
    components ``(mu,)`` each.

    ``e1 = (d_z, 0, -d_x) / n`` and ``e2 = d x e1 = (-d_x d_y, n^2, -d_y d_z) / n`` with
    ``n = sqrt(d_x^2 + d_z^2)``, well defined for every muon that moves downwards.
    """
    norm = torch.sqrt(dx**2 + dz**2)
    inv = 1.0 / norm
    e1 = (dz * inv, torch.zeros_like(dx), -dx * inv)
    e2 = (-dx * dy * inv, norm, -dy * dz * inv)
    return e1, e2


@dataclass(frozen=True)
class ScatterState:
    """Per-muon accumulators the scattering model carries between steps.

    Attributes:
        chi_c2: ``(mu,)`` accumulated Molier characteristic angle squared (rad^2).
        omega: ``(mu,)`` accumulated mean number of scatters (dimensionless).
        core_var: ``(mu,)`` :func:`core_variance` of the two, carried so that each step
            evaluates it once.
    """

    chi_c2: Tensor
    omega: Tensor
    core_var: Tensor

    @classmethod
    def zeros(cls, like: Tensor) -> ScatterState:
        return cls(torch.zeros_like(like), torch.zeros_like(like), torch.zeros_like(like))


LYNCH_DAHL_F = 0.98


def lynch_dahl_variance(chi_c2: Tensor, omega: Tensor) -> Tensor:
    """Gaussian width squared (rad^2) of the projected angle, Lynch & Dahl (1991) eq. 7.

    Args:
        chi_c2: ``(mu,)`` characteristic angle squared, accumulated (rad^2).
        omega: ``(mu,)`` mean number of scatters, accumulated.
    """
    v = (0.5 / (1 - LYNCH_DAHL_F)) * omega.clamp(min=1e-6)
    bracket = (1 + v) / v * torch.log1p(v) - 1
    return chi_c2 / (1 + LYNCH_DAHL_F**2) * bracket


def core_variance(chi_c2: Tensor, omega: Tensor, params: ScatterParameters = DEFAULT_SCATTER) -> Tensor:
    """Accumulated Gaussian-core variance, ``theta0_LD^2 - kappa chi_c^2`` (rad^2), ``(mu,)``.

    Lynch & Dahl's width is a fit to the central 98 % of the *whole* distribution, single-scatter
    tail included; the explicit tail carries variance ~ chi_c^2, so ``kappa chi_c^2`` comes off
    the core. The share shrinks like 1/ln(Omega) as targets thicken and the core dominates.
    """
    return (lynch_dahl_variance(chi_c2, omega) - params.tail_share * chi_c2).clamp(min=0.0)


def scatter_step(
    direction: Components,
    momentum: Tensor,
    beta: Tensor,
    state: ScatterState,
    step_length: Tensor,
    x0: Tensor,
    tail_x0: Tensor,
    screening_p2: Tensor,
    nuclear_p: Tensor,
    randoms: Tensor,
    params: ScatterParameters = DEFAULT_SCATTER,
) -> tuple[Components, tuple[Tensor, Tensor], ScatterState]:
    """Scatter muons over one step; pure function.

    Args:
        direction: unit direction before the step, as components ``(dx, dy, dz)``, each
            ``(mu,)`` (contiguous components keep every operation of the step on contiguous
            memory).
        momentum: ``(mu,)`` momentum (GeV/c) representative of the step.
        beta: ``(mu,)`` speed over c.
        state: accumulators before the step.
        step_length: ``(mu,)`` path length of the step (m).
        x0: ``(mu,)`` radiation length of the material (m).
        tail_x0: ``(mu,)`` ``chi_c^2 (p beta)^2`` per radiation length of the material (GeV^2).
        screening_p2: ``(mu,)`` ``chi_a^2 p^2`` of the material (GeV^2).
        nuclear_p: ``(mu,)`` ``hbar c / R_nucleus`` of the material (GeV).
        randoms: ``(7, mu)``: four rows of standard normals, then three of uniforms in [0, 1).
        params: model constants.

    Returns:
        ``(new_direction (dx, dy, dz), displacement (x, y), new_state)``, each component
        ``(mu,)``; the displacement is the x and y components of the offset perpendicular to
        the incoming direction, on top of the straight ``step_length * direction`` part.
    """
    d_chi2 = tail_x0 * (step_length / x0) / (momentum * beta) ** 2
    d_omega = tail_x0 * (step_length / x0) / (1.167 * screening_p2)
    chi_c2, omega = state.chi_c2 + d_chi2, state.omega + d_omega
    var_old, var_new = state.core_var, core_variance(chi_c2, omega, params)
    new_state = ScatterState(chi_c2=chi_c2, omega=omega, core_var=var_new)
    cut2_old = params.tail_cut**2 * var_old
    cut2_new = params.tail_cut**2 * var_new
    # Variance of earlier hard scatters that now fall below the raised cut (projected, per axis).
    ratio = (cut2_new / cut2_old.clamp(min=1e-300)).clamp(min=1.0)
    overlap = torch.where(state.chi_c2 > 0, state.chi_c2 * 0.5 * torch.log(ratio), torch.zeros_like(ratio))
    core_sigma = torch.sqrt((var_new - var_old - overlap).clamp(min=0.0))

    z_angle_x, z_angle_y, z_disp_x, z_disp_y, u_hard, u_phi, u_accept = randoms.unbind(0)

    # Hard single scatters: Poisson mean d_chi2 / cut^2 (<< 1 per step; at most one is drawn).
    mean_hard = (d_chi2 / cut2_new.clamp(min=1e-300)).clamp(max=1.0)
    is_hard = u_hard < mean_hard
    v = (u_hard / mean_hard.clamp(min=1e-300)).clamp(min=1e-12, max=1.0)
    hard_angle = torch.sqrt(cut2_new / v)
    theta_n = nuclear_p / momentum
    form_factor = (1.0 + (hard_angle / theta_n) ** 2 / params.form_factor_scale) ** -4
    hard_angle = torch.where(is_hard & (u_accept < form_factor), hard_angle, torch.zeros_like(hard_angle))
    phi = (2 * math.pi) * u_phi

    theta_x = (core_sigma * z_angle_x + hard_angle * torch.cos(phi)).clamp(-params.max_angle, params.max_angle)
    theta_y = (core_sigma * z_angle_y + hard_angle * torch.sin(phi)).clamp(-params.max_angle, params.max_angle)

    e1, e2 = perpendicular_basis(*direction)
    tan_x, tan_y = torch.tan(theta_x), torch.tan(theta_y)
    # (d, e1, e2) is orthonormal, so |d + tx e1 + ty e2| = sqrt(1 + tx^2 + ty^2).
    inv_norm = torch.rsqrt(1.0 + tan_x**2 + tan_y**2)
    new_direction = (
        (direction[0] + tan_x * e1[0] + tan_y * e2[0]) * inv_norm,
        (direction[1] + tan_y * e2[1]) * inv_norm,  # e1 has no y component
        (direction[2] + tan_x * e1[2] + tan_y * e2[2]) * inv_norm,
    )
    disp_1 = step_length * (core_sigma * z_disp_x / math.sqrt(12.0) + 0.5 * theta_x)
    disp_2 = step_length * (core_sigma * z_disp_y / math.sqrt(12.0) + 0.5 * theta_y)
    displacement = (disp_1 * e1[0] + disp_2 * e2[0], disp_2 * e2[1])
    return new_direction, displacement, new_state


def draw_scatter_randoms(
    n: int, generator: torch.Generator | None, dtype: torch.dtype, device: torch.device | str | None
) -> Tensor:
    """``(7, n)`` random numbers for :func:`scatter_step`: 4 rows of normals, 3 of uniforms
    (the generator must live on ``device``). Drawn muon by muon, as an ``(n, 4)`` and an
    ``(n, 3)`` block, so that a seed gives the same muons whatever the layout."""
    randoms = torch.empty(N_SCATTER_RANDOMS, n, dtype=dtype, device=device)
    randoms[:4].copy_(torch.randn(n, 4, generator=generator, dtype=dtype, device=device).T)
    randoms[4:].copy_(torch.rand(n, 3, generator=generator, dtype=dtype, device=device).T)
    return randoms
