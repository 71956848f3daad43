"""Continuous muon energy loss from CSDA range tables.

Stopping powers and CSDA ranges come from PUMAS (V. Niess et al., Comput. Phys. Commun. 229
(2018) 54) through the maintained ``mulder`` package: ionisation by the Bethe formula with the
Sternheimer density effect, plus bremsstrahlung, e+e- pair production and photonuclear losses
(the physics of the PDG muon tables, Groom, Mokhov & Striganov, At. Data Nucl. Data Tables 78
(2001) 183). Each material is tabulated once, from its composition, density and I, on a grid
of kinetic energies. In torch a step ``ds`` loses ``ds * S(T - ds S(T) / 2)`` (second-order
Runge-Kutta on the log-log interpolated stopping power S) while that loss is under 5 % of T;
larger losses move the muon along its range curve, ``R(T_after) = R(T_before) - ds``, which
is exact for any step in a homogeneous material. Muons whose residual range runs out stop.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from mutomo.errors import MutomoError
from mutomo.materials import Material, get_material

# Kinetic-energy grid of the tables (GeV): 1 MeV to 100 TeV.
T_MIN, T_MAX, N_GRID = 1e-3, 1e5, 801


def _mulder_name(material: Material) -> str:
    """Name under which ``material`` is defined in mulder: its name plus a digest of what PUMAS uses.

    mulder keeps one definition per name for the whole process, so two materials that share a name
    but not a composition, density or I (a user's "steel" and the built-in one) must not share it.
    """
    key = repr((material.name, sorted(material.composition.items()), material.density, material.mean_excitation))
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    return f"mutomo_{re.sub(r'[^A-Za-z0-9_]', '_', material.name)}_{digest}"


@functools.cache
def _pumas_tables(material: Material) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(kinetic energy GeV, CSDA range m, stopping power GeV/m) from mulder/PUMAS."""
    import mulder
    import mulder.materials as mm

    name = _mulder_name(material)
    try:
        if name not in mm.Material.all():
            mm.Material.define(
                name,
                composition=dict(material.composition),
                density=material.density,
                I=material.mean_excitation,
            )
        compiled = mulder.Physics().compile(name)
    except (KeyError, ValueError, RuntimeError) as err:
        raise MutomoError(
            f"Material {material.name!r}: mulder/PUMAS cannot tabulate its energy loss "
            f"(composition {dict(material.composition)}): {err}"
        ) from err
    kinetic = np.geomspace(T_MIN, T_MAX, N_GRID)
    csda = np.asarray(compiled.range(kinetic), dtype=float)
    dedx = np.asarray(compiled.stopping_power(kinetic, mode="continuous"), dtype=float)
    return kinetic, csda, dedx


def pumas_stopping_power(material: str | Material, kinetic: float | np.ndarray) -> np.ndarray:
    """Mean stopping power -dE/dx (GeV/m) of ``material`` at kinetic energy ``kinetic`` (GeV)."""
    t, _, dedx = _pumas_tables(get_material(material))
    return np.exp(np.interp(np.log(kinetic), np.log(t), np.log(dedx)))


def pumas_csda_range(material: str | Material, kinetic: float | np.ndarray) -> np.ndarray:
    """CSDA range (m) of a muon of kinetic energy ``kinetic`` (GeV) in ``material`` (PUMAS tables);
    times the density (kg/m^3) it is the range in kg/m^2."""
    t, csda, _ = _pumas_tables(get_material(material))
    return np.exp(np.interp(np.log(kinetic), np.log(t), np.log(csda)))


def _uniform_interp(table: Tensor, index: Tensor, x: Tensor, x0: float | Tensor, dx: float | Tensor) -> Tensor:
    """Linear interpolation of ``table[index, :]`` (rows on a uniform grid x0 + k dx) at ``x``."""
    n = table.shape[1]
    pos = ((x - x0) / dx).clamp(0.0, n - 1.000001)
    lo = pos.floor().long()
    frac = pos - lo
    flat = table.reshape(-1)
    base = index * n + lo
    # index_select, not flat[base]: the same values, 4x faster on CPU (advanced indexing goes
    # through a general kernel); the upper neighbour comes from the table shifted by one.
    return flat.index_select(0, base) * (1 - frac) + flat[1:].index_select(0, base) * frac


class RangeTables(torch.nn.Module):
    """CSDA range tables for a list of materials, indexed by material number.

    Args:
        materials: The materials, in the order of the indices used later.
        device, dtype: Where the tables live.

    Example:
        >>> import torch
        >>> tables = RangeTables(["iron"], dtype=torch.float64)
        >>> t = torch.tensor([10.0], dtype=torch.float64)
        >>> after, stopped = tables.step(t, torch.tensor([0]), torch.tensor([0.01], dtype=torch.float64))
        >>> 0.014 < float(t - after) < 0.017   # ~1.55 GeV/m in iron at 10 GeV
        True
    """

    log_range: Tensor
    log_kinetic_of_range: Tensor
    log_stopping_power: Tensor
    log_range_floor: Tensor

    def __init__(
        self,
        materials: Sequence[str | Material],
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        mats = [get_material(m) for m in materials]
        if not mats:
            raise MutomoError("RangeTables needs at least one material")
        self.materials = mats
        log_t = np.linspace(math.log(T_MIN), math.log(T_MAX), N_GRID)
        log_r_rows, log_t_of_r_rows = [], []
        log_r_all = [np.log(_pumas_tables(m)[1]) for m in mats]
        self.log_r_min = float(min(r[0] for r in log_r_all))
        self.log_r_max = float(max(r[-1] for r in log_r_all))
        log_r_grid = np.linspace(self.log_r_min, self.log_r_max, N_GRID)
        for log_r in log_r_all:
            log_r_rows.append(log_r)
            # Invert R(T) on a uniform ln R grid (ranges are strictly increasing in T).
            log_t_of_r_rows.append(np.interp(log_r_grid, log_r, log_t))
        self.log_t0, self.dlog_t = float(log_t[0]), float(log_t[1] - log_t[0])
        self.dlog_r = float(log_r_grid[1] - log_r_grid[0])
        self.register_buffer("log_range", torch.tensor(np.array(log_r_rows), dtype=dtype, device=device))
        self.register_buffer(
            "log_kinetic_of_range",
            torch.tensor(np.array(log_t_of_r_rows), dtype=dtype, device=device),
        )
        self.register_buffer(
            "log_stopping_power",
            torch.tensor(np.array([np.log(_pumas_tables(m)[2]) for m in mats]), dtype=dtype, device=device),
        )
        self.register_buffer("log_range_floor", torch.tensor([r[0] for r in log_r_all], dtype=dtype, device=device))

    def csda_range(self, kinetic: Tensor, material: Tensor) -> Tensor:
        """CSDA range (m) at kinetic energy ``kinetic`` (GeV) in material ``material`` (index), ``(mu,)``."""
        log_t = torch.log(kinetic.clamp(min=T_MIN))
        return torch.exp(_uniform_interp(self.log_range, material, log_t, self.log_t0, self.dlog_t))

    def stopping_power(self, kinetic: Tensor, material: Tensor) -> Tensor:
        """Mean stopping power -dE/dx (GeV/m), ``(mu,)``."""
        return _stopping_power(self.log_stopping_power, kinetic, material, self.log_t0, self.dlog_t)

    def step(self, kinetic: Tensor, material: Tensor, step_length: Tensor) -> tuple[Tensor, Tensor]:
        """Kinetic energy after ``step_length`` (m); also a boolean ``stopped`` mask, both ``(mu,)``."""
        first, rk2 = rk2_step(self.log_stopping_power, kinetic, material, step_length, self.log_t0, self.dlog_t)
        return self.finish_step(kinetic, material, step_length, first, rk2)

    def finish_step(
        self, kinetic: Tensor, material: Tensor, step_length: Tensor, first: Tensor, rk2: Tensor
    ) -> tuple[Tensor, Tensor]:
        """The second half of :meth:`step`, given :func:`rk2_step`'s ``(first, rk2)``: muons whose
        first-order loss is 5 % of their energy or more follow the range curve (and may stop)."""
        large = torch.nonzero(first >= 0.05 * kinetic).squeeze(1)
        stopped = torch.zeros_like(first, dtype=torch.bool)
        if large.numel() == 0:  # the common case: no muon is close to the end of its range
            return rk2, stopped
        # Only the few muons near the end of their range follow the range curve.
        t_l, m_l = kinetic[large], material[large]
        residual = self.csda_range(t_l, m_l) - step_length[large]
        floor = torch.exp(self.log_range_floor[m_l])
        stopped_l = residual <= floor
        log_r = torch.log(torch.maximum(residual, floor))
        by_range = torch.exp(_uniform_interp(self.log_kinetic_of_range, m_l, log_r, self.log_r_min, self.dlog_r))
        # A step never adds energy: a muon below the tables' T_MIN (which can only stop) keeps its
        # energy instead of being raised to T_MIN (the floor keeps every later value finite).
        after_l = torch.minimum(
            torch.where(stopped_l, torch.full_like(by_range, T_MIN), by_range.clamp(min=T_MIN)), t_l
        )
        return rk2.index_put((large,), after_l), stopped.index_put((large,), stopped_l)


def _stopping_power(
    log_stopping_power: Tensor, kinetic: Tensor, material: Tensor, log_t0: float | Tensor, dlog_t: float | Tensor
) -> Tensor:
    """Stopping power (GeV/m) from the ``(materials, grid)`` table of its logarithm; pure."""
    log_t = torch.log(kinetic.clamp(min=T_MIN))
    return torch.exp(_uniform_interp(log_stopping_power, material, log_t, log_t0, dlog_t))


def rk2_step(
    log_stopping_power: Tensor,
    kinetic: Tensor,
    material: Tensor,
    step_length: Tensor,
    log_t0: float | Tensor,
    dlog_t: float | Tensor,
) -> tuple[Tensor, Tensor]:
    """Second-order Runge-Kutta energy loss over ``step_length`` (m), pure (no branch on the data,
    so it fuses and compiles): ``(first, rk2)``, the first-order loss ``ds S(T)`` (GeV) and the
    kinetic energy after the step, ``T - ds S(T - ds S(T) / 2)``, each ``(mu,)``. Where ``first``
    reaches 5 % of T, :meth:`RangeTables.finish_step` replaces ``rk2`` by the range curve."""
    first = step_length * _stopping_power(log_stopping_power, kinetic, material, log_t0, dlog_t)
    mid = (kinetic - 0.5 * first).clamp(min=T_MIN)
    rk2 = kinetic - step_length * _stopping_power(log_stopping_power, mid, material, log_t0, dlog_t)
    return first, rk2
