"""Multiple Coulomb scattering of muons: a Gaussian core plus a single-scattering tail.

The model, per step of path length ``ds`` through a material of radiation length ``X0``, is
Molière's theory (Bethe, Phys. Rev. 89 (1953) 1256) cut into the scatters below an angle, summed
into a Gaussian, and those above it, drawn one by one, with the finite size of the nucleus in
both (Cooper & Rainwater, Phys. Rev. 97 (1955) 492; Butkevich et al., NIM A488 (2002) 282):

* **Core.** ``chi_c^2 = 0.157 MeV^2 Z(Z+1)/A t[g/cm^2]/(p beta)^2`` is Molière's characteristic
  angle (Lynch & Dahl, NIM B58 (1991) 6, eq. 2), ``chi_a`` the screening angle (their eq. 6) and
  ``Omega = chi_c^2 / (1.167 chi_a^2)`` the mean number of scatters; ``chi_c^2`` and ``Omega``
  are *accumulated* along the path. The scatters below a cut ``n_c sigma`` have the projected
  variance ``sigma^2 = chi_c^2 / 2 [ln(n_c^2 sigma^2 / chi_a^2) - 1]`` (screened Rutherford law);
  with ``n_c^2 = 2 e / 1.167`` this is ``y - ln y = ln Omega`` for ``y = 2 sigma^2 / chi_c^2``:
  Bethe's equation for B, so the core is exactly the Gaussian of Molière's theory,
  ``sigma^2 = chi_c^2 B / 2``, and ``n_c = 2.158`` is not a free constant. The variance used is
  Lynch & Dahl's eq. 7, ``theta0^2 = chi_c^2 / (1 + F^2) [(1 + v)/v ln(1 + v) - 1]`` with
  ``F = 0.98``, ``v = Omega / (2 (1 - F))``, which equals ``chi_c^2 B / 2`` within 1 % for
  ``Omega > 1e3`` (1 mm of beryllium has 1e3) and is smooth down to ``Omega = 0``; less the
  scatters that the nuclear form factor removes below the cut (:func:`core_terms`), which
  matters once the core reaches the nuclear angle (-9 % in the 68 % quantile for 10 cm of
  lead). Each step adds the difference of the core variance after and before it, so the
  variance after any division of a slab into steps is the thick-target value (applying the
  formula per step, as per-step Highland does, underestimates thick targets by 8-17 %).
* **Tail.** Rutherford single scatters harder than the cut ``theta_c = n_c theta0(after)``:
  their number in the step is Poisson with mean ``d chi_c^2 / theta_c^2`` and their angles
  follow ``P(> theta) = (theta_c / theta)^2``, thinned by the dipole form factor of the
  nucleus, ``F^2 = (1 + q^2 <r^2> / 12)^-4`` with ``q = p theta``, ``<r^2> = 3 R^2 / 5`` for a
  uniform sphere of radius ``R = 1.2 fm A^(1/3)`` (PDG Review sec. 34.3), i.e.
  ``(1 + theta^2 / (20 theta_N^2))^-4`` with ``theta_N = hbar c / (p R)``: heavy nuclei cut
  the tail earlier. Because the cut rises along the path, hard scatters drawn earlier that
  now lie below it are counted again in the core; the core increment is reduced by their
  expected variance ``chi_c,acc^2 int F^2 dtheta / theta`` between the two cuts (the form factor
  thinned them), which keeps the total variance independent of the step size.
* **Displacement.** The lateral offset at the end of a step is correlated with the angle as in
  PDG eq. 34.21: ``y = ds (z1 sigma / sqrt(12) + z2 sigma / 2)`` with ``theta = z2 sigma``
  (correlation sqrt(3)/2); a hard scatter happens on average mid-step, giving ``ds theta / 2``.

No constant is fitted. The model is checked against Molière's theory with and without the
nuclear size (:mod:`mutomo.volume.moliere`, tests/physics/test_moliere.py) and against the
Geant4 1 cm samples in ../shared/data (tests/physics/test_scattering.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from mutomo.errors import MutomoError
from mutomo.units import HIGHLAND_E0, HIGHLAND_LOG_COEFF

# Number of random numbers a scattering step consumes per muon.
N_SCATTER_RANDOMS = 7


# Euler's constant: Molière's 1.167 = exp(2 C - 1) (Bethe, Phys. Rev. 89 (1953) 1256).
EULER_GAMMA = 0.5772156649015329
# The cut that makes the Gaussian core Molière's: the scatters below n_c sigma have the variance
# sigma^2 = chi_c^2 B / 2 exactly when n_c^2 = 2 e / 1.167 (see the module docstring).
MOLIERE_TAIL_CUT = math.sqrt(2.0) * math.exp(1.0 - EULER_GAMMA)


@dataclass(frozen=True)
class ScatterParameters:
    """Constants of the scattering model; none is fitted to data.

    Attributes:
        tail_cut: ``n_c``: hard scatters are those above ``n_c`` core widths;
            ``sqrt(2 e / 1.167) = 2.158`` follows from Molière's B (module docstring).
        max_angle: Largest projected angle kept after a step (rad); guards tan() near pi/2.
        form_factor_scale: ``12 / (<r^2>/R^2) = 20`` for a uniformly charged sphere.
        core_scale: factor on the width of the Gaussian core (angle and displacement); 1 is the
            model. A systematic variation (:mod:`mutomo.optimise.systematics`): the world's
            scattering wider or narrower than the model's, by what the model's offset from
            Geant4 allows.
        single_scatter: draw the single-scattering tail; ``False`` leaves the Gaussian core alone
            (a systematic variation: the tail's share of the angles removed). The random numbers
            are drawn either way, so the muons stay the same.
    """

    tail_cut: float = MOLIERE_TAIL_CUT
    max_angle: float = 1.2
    form_factor_scale: float = 20.0
    core_scale: float = 1.0
    single_scatter: bool = True

    def __post_init__(self) -> None:
        if not (math.isfinite(self.core_scale) and self.core_scale > 0):
            raise MutomoError(f"ScatterParameters.core_scale must be a finite number > 0; got {self.core_scale}")


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
    ``n = sqrt(d_x^2 + d_z^2)``, well defined for every muon that moves downwards. For a muon
    flying exactly along y (``n = 0``: horizontal, so already given weight 0) both vectors are
    0 rather than NaN, so its (meaningless) values stay finite.
    """
    # n is floored: 1/0 made a muon flying along y NaN, and its NaN position then crashed the next
    # voxel lookup. The floor (the smallest normal number, far below the n of any muon that is not
    # exactly horizontal) costs one operation in the stepping loop; torch.where on the components
    # would cost several.
    norm = torch.sqrt(dx**2 + dz**2)
    inv = 1.0 / norm.clamp(min=torch.finfo(norm.dtype).tiny)
    e1 = (dz * inv, torch.zeros_like(dx), -dx * inv)
    e2 = (-dx * dy * inv, norm, -dy * dz * inv)
    return e1, e2


@dataclass(frozen=True)
class ScatterState:
    """Per-muon accumulators the scattering model carries between steps.

    Attributes:
        chi_c2: ``(mu,)`` accumulated Molière characteristic angle squared (rad^2).
        omega: ``(mu,)`` accumulated mean number of scatters (dimensionless).
        cut_var: ``(mu,)`` Lynch & Dahl's variance of the two; the tail cut is ``n_c`` times its root.
        nuclear_loss: ``(mu,)`` ``G(W)`` at that cut (:func:`core_terms`).
        core_var: ``(mu,)`` the Gaussian core's variance; all three are carried so that each step
            evaluates them once.
    """

    chi_c2: Tensor
    omega: Tensor
    cut_var: Tensor
    nuclear_loss: Tensor
    core_var: Tensor

    @classmethod
    def zeros(cls, like: Tensor) -> ScatterState:
        return cls(*(torch.zeros_like(like) for _ in range(5)))


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


def core_terms(
    chi_c2: Tensor, omega: Tensor, inv_nuclear2: Tensor, params: ScatterParameters = DEFAULT_SCATTER
) -> tuple[Tensor, Tensor, Tensor]:
    """The cut, the nuclear loss below it and the Gaussian core (rad^2), each ``(mu,)``.

    Lynch & Dahl's variance ``theta0^2`` is, within 1 % for Omega > 1e3, ``chi_c^2 B / 2``: the
    variance of the point-nucleus scatters below the cut ``n_c theta0`` (module docstring). The
    nuclear form factor ``F^2 = (1 + z)^-4``, ``z = theta^2 / (s theta_N^2)``, removes from them
    ``chi_c^2 int_0^cut (1 - F^2) dtheta / theta = chi_c^2 / 2 G(W)`` per plane, with
    ``W = 1 + cut^2 / (s theta_N^2)`` and ``G(W) = ln W + 11/6 - 1/W - 1/(2 W^2) - 1/(3 W^3)``
    (since ``(1 - (1 + z)^-4) / z = sum_k=1..4 (1 + z)^-k``). It matters once the core reaches
    the nuclear angle: -9 % in the 68 % quantile for 10 cm of lead.

    Args:
        chi_c2: ``(mu,)`` characteristic angle squared, accumulated (rad^2).
        omega: ``(mu,)`` mean number of scatters, accumulated.
        inv_nuclear2: ``(mu,)`` ``1 / (s theta_N^2)`` (rad^-2), ``theta_N = hbar c / (p R)`` the
            nuclear angle and ``s`` the form-factor scale.
        params: model constants.

    Returns:
        ``(cut_var, nuclear_loss, core_var)``: ``theta0^2`` (the cut is ``n_c theta0``),
        ``G(W)``, and ``theta0^2 - chi_c^2 G(W) / 2`` (at least 0).
    """
    cut_var = lynch_dahl_variance(chi_c2, omega)
    w = 1.0 + params.tail_cut**2 * cut_var * inv_nuclear2
    r = 1.0 / w
    nuclear_loss = torch.log(w) + (11.0 / 6.0) - r * (1.0 + r * (0.5 + r * (1.0 / 3.0)))
    return cut_var, nuclear_loss, (cut_var - 0.5 * chi_c2 * nuclear_loss).clamp(min=0.0)


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
    hard_subset: bool = False,
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
        hard_subset: evaluate the single scatters only for the muons that have one in this step
            (~1 %; :func:`hard_scatters` on them, the same numbers): faster op by op, but a
            data-dependent selection that a compiled kernel would break on.

    Returns:
        ``(new_direction (dx, dy, dz), displacement (x, y), new_state)``, each component
        ``(mu,)``; the displacement is the x and y components of the offset perpendicular to
        the incoming direction, on top of the straight ``step_length * direction`` part.
    """
    strength = tail_x0 * (step_length / x0)  # chi_c^2 (p beta)^2 of the step
    d_chi2 = strength / (momentum * beta) ** 2
    d_omega = strength / (1.167 * screening_p2)
    chi_c2, omega = state.chi_c2 + d_chi2, state.omega + d_omega
    inv_nuclear2 = (momentum / nuclear_p) ** 2 * (1.0 / params.form_factor_scale)  # 1 / (s theta_N^2)
    cut_var, nuclear_loss, var_new = core_terms(chi_c2, omega, inv_nuclear2, params)
    new_state = ScatterState(chi_c2, omega, cut_var, nuclear_loss, var_new)
    cut2_new = params.tail_cut**2 * cut_var
    # Earlier hard scatters that now fall below the raised cut, and so into the core: their variance
    # is chi_c,acc^2 int F^2 dtheta / theta between the cuts (projected, per axis), i.e.
    # chi_c,acc^2 / 2 [ln(cut_new^2 / cut_old^2) - (G(W_new) - G(W_old))]. The floor keeps the log
    # finite in float32 (it is multiplied by chi_c,acc^2 = 0 before the first step).
    ratio = (cut_var / state.cut_var.clamp(min=1e-30)).clamp(min=1.0)
    overlap = state.chi_c2 * 0.5 * (torch.log(ratio) - (nuclear_loss - state.nuclear_loss))
    var_old = state.core_var
    core_sigma = torch.sqrt((var_new - var_old - overlap).clamp(min=0.0))
    if params.core_scale != 1.0:
        core_sigma = core_sigma * params.core_scale

    z_angle_x, z_angle_y, z_disp_x, z_disp_y, u_hard, u_phi, u_accept = randoms.unbind(0)

    hard = (u_hard, u_phi, u_accept, d_chi2, cut2_new, inv_nuclear2)
    hard_x, hard_y = _hard_scatters_of_few(*hard) if hard_subset else hard_scatters(*hard)
    if not params.single_scatter:
        hard_x, hard_y = torch.zeros_like(hard_x), torch.zeros_like(hard_y)

    theta_x = (core_sigma * z_angle_x + hard_x).clamp(-params.max_angle, params.max_angle)
    theta_y = (core_sigma * z_angle_y + hard_y).clamp(-params.max_angle, params.max_angle)

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


def hard_scatters(
    u_hard: Tensor, u_phi: Tensor, u_accept: Tensor, d_chi2: Tensor, cut2: Tensor, inv_nuclear2: Tensor
) -> tuple[Tensor, Tensor]:
    """The single scatters of a step, projected: ``(theta_x, theta_y)`` of the hard scatter each
    muon has (0 for most), each ``(mu,)``.

    Their number is Poisson with mean ``d chi_c^2 / cut^2`` (<< 1 per step, so at most one is
    drawn: where ``u_hard`` falls below the mean), the angle follows ``P(> theta) = (cut /
    theta)^2`` (``u_hard`` rescaled to the unit interval is the draw), thinned by the nuclear
    form factor ``(1 + theta^2 / (s theta_N^2))^-4`` (accepted where ``u_accept`` is below it),
    at azimuth ``2 pi u_phi`` (module docstring).
    """
    mean_hard = _hard_mean(d_chi2, cut2)
    is_hard = u_hard < mean_hard
    v = (u_hard / mean_hard.clamp(min=1e-300)).clamp(min=1e-12, max=1.0)
    hard2 = cut2 / v
    hard_angle = torch.sqrt(hard2)
    form_factor = (1.0 + hard2 * inv_nuclear2) ** -4
    hard_angle = torch.where(is_hard & (u_accept < form_factor), hard_angle, torch.zeros_like(hard_angle))
    phi = (2 * math.pi) * u_phi
    return hard_angle * torch.cos(phi), hard_angle * torch.sin(phi)


def _hard_mean(d_chi2: Tensor, cut2: Tensor) -> Tensor:
    """Poisson mean of a step's single scatters above the cut, ``d chi_c^2 / cut^2``, at most 1."""
    return (d_chi2 / cut2.clamp(min=1e-300)).clamp(max=1.0)


def _hard_scatters_of_few(
    u_hard: Tensor, u_phi: Tensor, u_accept: Tensor, d_chi2: Tensor, cut2: Tensor, inv_nuclear2: Tensor
) -> tuple[Tensor, Tensor]:
    """:func:`hard_scatters` evaluated only where a muon has a hard scatter (``u_hard`` below the
    Poisson mean, ~1 % of the muons in a step), 0 elsewhere: the same values (up to the sign of
    a zero) at a fifth of the cost of the plain step's ~20 full-length operations."""
    few = torch.nonzero(u_hard < _hard_mean(d_chi2, cut2)).squeeze(1)
    zero = torch.zeros_like(d_chi2)
    if few.numel() == 0:
        return zero, zero
    picked = (t.index_select(0, few) for t in (u_hard, u_phi, u_accept, d_chi2, cut2, inv_nuclear2))
    hard_x, hard_y = hard_scatters(*picked)
    return zero.index_put((few,), hard_x), zero.index_put((few,), hard_y)


def draw_scatter_randoms(
    n: int, generator: torch.Generator | None, dtype: torch.dtype, device: torch.device | str | None
) -> Tensor:
    """``(7, n)`` random numbers for :func:`scatter_step`: 4 rows of normals, 3 of uniforms
    (the generator must live on ``device``). Drawn muon by muon, as an ``(n, 4)`` and an
    ``(n, 3)`` block, so that a seed gives the same muons whatever the layout."""
    return rows_of(*draw_scatter_blocks(n, generator, dtype, device))


def draw_scatter_blocks(
    n: int, generator: torch.Generator | None, dtype: torch.dtype, device: torch.device | str | None
) -> tuple[Tensor, Tensor]:
    """The draws of :func:`draw_scatter_randoms` as drawn: ``(n, 4)`` normals and ``(n, 3)``
    uniforms; :func:`rows_of` lays them out as its ``(7, n)`` rows (inside a compiled kernel that
    copy fuses away)."""
    normals = torch.randn(n, 4, generator=generator, dtype=dtype, device=device)
    uniforms = torch.rand(n, 3, generator=generator, dtype=dtype, device=device)
    return normals, uniforms


def rows_of(normals: Tensor, uniforms: Tensor) -> Tensor:
    """``(7, n)``: the columns of ``normals (n, 4)`` and ``uniforms (n, 3)`` as contiguous rows."""
    return torch.cat([normals.T, uniforms.T], dim=0)
