"""Sea-level cosmic-muon flux models and their tabulation for sampling.

The default model is GCCLY15 (M. Guan et al., "A parametrization of the cosmic-ray muon flux
at sea-level", arXiv:1509.06176), a Gaisser-type formula refitted to data down to ~1 GeV and to
large zenith angles, evaluated by the maintained ``mulder`` package (``mulder.Reference``).
Fluxes here are differential in *momentum*: muons / (GeV/c m^2 s sr).

Note on normalisation: GCCLY15 gives 60.4 m^-2 s^-1 sr^-1 for vertical muons above 1 GeV/c,
14% under the classic "~70" quoted by the PDG Review ("Cosmic rays", sec. 30.3) from older
data, while the PDG notes that recent measurements favour a 10-20% lower normalisation; the
tests check the model against that band and against Guan's published formula.
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from mutomo.errors import MutomoError
from mutomo.units import MUON_MASS


@runtime_checkable
class FluxModel(Protocol):
    """Differential muon flux at sea level."""

    def flux(
        self,
        momentum: NDArray[np.float64],
        cos_theta: NDArray[np.float64],
        charge: int | None = None,
    ) -> NDArray[np.float64]:
        """Flux in muons / (GeV/c m^2 s sr), broadcasting ``momentum`` (GeV/c) and ``cos_theta``.

        ``charge`` selects mu+ (+1) or mu- (-1); ``None`` sums both.
        """
        ...


class MulderFlux:
    """A sea-level flux model of the maintained ``mulder`` package (``mulder.Reference(name)``).

    mulder 0.3 provides ``"GCCLY15"`` (Guan et al. 2015, arXiv:1509.06176, the default of
    mutomo) and ``"Gaisser90"`` (T. K. Gaisser, *Cosmic Rays and Particle Physics*, Cambridge
    University Press 1990, as in the PDG Review, "Cosmic rays", eq. 30.4), valid only above
    ~100/cos(theta) GeV: tabulated from 0.1 GeV/c it diverges (mean momentum 0.3 GeV/c, a rate
    300 times GCCLY15's), so the systematic variation ``flux_model`` uses :class:`Reyna06Flux`.
    """

    MODELS = ("GCCLY15", "Gaisser90")

    def __init__(self, name: str = "GCCLY15") -> None:
        if name not in self.MODELS:
            raise MutomoError(f"unknown flux model {name!r}; mulder provides {list(self.MODELS)}")
        import mulder  # local import: heavy extension module, only needed when tabulating

        self.name = name
        self._reference = mulder.Reference(name)

    def flux(
        self,
        momentum: NDArray[np.float64],
        cos_theta: NDArray[np.float64],
        charge: int | None = None,
    ) -> NDArray[np.float64]:
        p, c = np.broadcast_arrays(np.asarray(momentum, dtype=float), np.asarray(cos_theta, dtype=float))
        energy = np.sqrt(p**2 + MUON_MASS**2)
        kinetic = energy - MUON_MASS
        elevation = np.degrees(np.arcsin(np.clip(c, 0.0, 1.0)))
        kwargs = {} if charge is None else {"pid": -13 if charge > 0 else 13}
        per_kinetic = np.asarray(self._reference.flux(energy=kinetic, elevation=elevation, **kwargs))
        # dN/dp = dN/dT * dT/dp with dT/dp = p / E = beta.
        return per_kinetic * p / energy


class GCCLY15Flux(MulderFlux):
    """GCCLY15 sea-level flux (Guan et al. 2015) through ``mulder.Reference("GCCLY15")``."""

    def __init__(self) -> None:
        super().__init__("GCCLY15")


MU_PLUS_OVER_MINUS = 1.27
"""Charge ratio of sea-level muons, mu+/mu- (PDG Review, "Cosmic rays", sec. 30.3.1: 1.25-1.30 below ~100 GeV)."""

REYNA06 = (0.00253, 0.2455, 1.288, -0.2555, 0.0209)
"""Reyna's coefficients c1..c5 (c1 in cm^-2 s^-1 sr^-1 (GeV/c)^-1): the fit of Bugaev et al. (Phys.
Rev. D 58 (1998) 054001) to the vertical spectrum, as given by D. Reyna, arXiv:hep-ph/0604145."""


class Reyna06Flux:
    """Reyna's parameterisation of the sea-level muon momentum spectrum at every zenith angle
    (D. Reyna, "A simple parameterization of the cosmic-ray muon momentum spectra at the surface
    as a function of zenith angle", arXiv:hep-ph/0604145, 2006):

    ``flux(p, theta) = cos^3(theta) I_V(p cos(theta))``,
    ``I_V(z) = c1 z^-(c2 + c3 y + c4 y^2 + c5 y^3)``, ``y = log10(z / (GeV/c))``,

    fitted for 1-2000 GeV/c (below 1 GeV/c it is an extrapolation that falls faster than
    GCCLY15). The charges are split by the ratio :data:`MU_PLUS_OVER_MINUS`. A second, independent
    parameterisation beside GCCLY15 for the systematic variation ``flux_model``
    (:mod:`mutomo.optimise.systematics`): within 45 % of GCCLY15 between 1 and 100 GeV/c up to 60 deg.
    """

    def flux(
        self,
        momentum: NDArray[np.float64],
        cos_theta: NDArray[np.float64],
        charge: int | None = None,
    ) -> NDArray[np.float64]:
        p, c = np.broadcast_arrays(np.asarray(momentum, dtype=float), np.asarray(cos_theta, dtype=float))
        c = np.clip(c, 1e-6, 1.0)
        c1, c2, c3, c4, c5 = REYNA06
        z = p * c
        y = np.log10(z)
        total = 1e4 * c1 * c**3 * z ** -(c2 + y * (c3 + y * (c4 + y * c5)))  # cm^-2 -> m^-2
        if charge is None:
            return total
        plus = MU_PLUS_OVER_MINUS / (1.0 + MU_PLUS_OVER_MINUS)
        return total * (plus if charge > 0 else 1.0 - plus)


class TiltedFlux:
    """A flux model whose momentum spectrum is tilted by ``index_shift`` in its spectral index:
    ``flux(p, theta) (p / pivot)^-index_shift``.

    For a power law ``dN/dp ~ p^-gamma`` this changes ``gamma`` into ``gamma + index_shift`` (a
    positive shift softens the spectrum: fewer muons at high momentum, relative to ``pivot``).
    Used as a systematic variation of the spectrum's shape (:mod:`mutomo.optimise.systematics`);
    the muon count of a volume is fixed by the caller, so the normalisation does not matter there.

    Args:
        model: the flux model tilted.
        index_shift: change of the spectral index (dimensionless).
        pivot: momentum (GeV/c) at which the flux is unchanged.
    """

    def __init__(self, model: FluxModel, index_shift: float, pivot: float = 1.0) -> None:
        if not math.isfinite(index_shift):
            raise MutomoError(f"TiltedFlux.index_shift must be finite; got {index_shift}")
        if not pivot > 0:
            raise MutomoError(f"TiltedFlux.pivot must be > 0 GeV/c; got {pivot}")
        self.model, self.index_shift, self.pivot = model, float(index_shift), float(pivot)

    def flux(
        self,
        momentum: NDArray[np.float64],
        cos_theta: NDArray[np.float64],
        charge: int | None = None,
    ) -> NDArray[np.float64]:
        p = np.asarray(momentum, dtype=float)
        return self.model.flux(p, cos_theta, charge) * (p / self.pivot) ** -self.index_shift


class TabulatedFlux:
    """A flux model tabulated once on a (cos theta, ln p) grid, sampled by inverse CDF in torch.

    The table holds the rate of muons crossing a *horizontal* plane,
    ``dN/(dA dt dcos(theta) dln p) = 2 pi * flux(p, theta) * cos(theta) * p``, on ``n_cos`` x
    ``n_logp`` cells; a sample picks a cell from the cumulative table and a uniform point inside.

    Args:
        model: The flux model (default GCCLY15).
        momentum_range: (min, max) momentum in GeV/c; at least 0.1 GeV/c to 1 TeV by default.
        theta_max: Largest zenith angle (rad), at most pi/2.
        n_cos, n_logp: Grid size.

    Example:
        >>> table = TabulatedFlux(momentum_range=(1.0, 1000.0), theta_max=1.0)
        >>> 50 < table.rate_per_area < 200  # muons / (m^2 s) through a horizontal plane
        True
    """

    def __init__(
        self,
        model: FluxModel | None = None,
        momentum_range: tuple[float, float] = (0.1, 1000.0),
        theta_max: float = math.radians(85.0),
        n_cos: int = 256,
        n_logp: int = 512,
    ) -> None:
        p_min, p_max = momentum_range
        if not 0 < p_min < p_max:
            raise MutomoError(f"momentum_range must satisfy 0 < min < max (GeV/c); got {momentum_range}")
        if not 0 < theta_max <= math.pi / 2:
            raise MutomoError(f"theta_max must be in (0, pi/2] rad; got {theta_max}")
        self.model = model if model is not None else GCCLY15Flux()
        self.momentum_range = (float(p_min), float(p_max))
        self.theta_max = float(theta_max)
        self.cos_edges = np.linspace(math.cos(theta_max), 1.0, n_cos + 1)
        self.logp_edges = np.linspace(math.log(p_min), math.log(p_max), n_logp + 1)
        c = 0.5 * (self.cos_edges[1:] + self.cos_edges[:-1])
        lp = 0.5 * (self.logp_edges[1:] + self.logp_edges[:-1])
        cc, pp = np.meshgrid(c, np.exp(lp), indexing="ij")
        jac = 2 * math.pi * cc * pp * np.diff(self.cos_edges)[:, None] * np.diff(self.logp_edges)[None, :]
        plus = self.model.flux(pp, cc, charge=+1) * jac
        minus = self.model.flux(pp, cc, charge=-1) * jac
        total = plus + minus
        if not np.all(np.isfinite(total)) or total.sum() <= 0:
            raise MutomoError("The flux model returned non-finite or non-positive values on the grid")
        #: Rate through a horizontal plane, muons / (m^2 s), within the ranges.
        self.rate_per_area = float(total.sum())
        self._cdf = torch.from_numpy(np.cumsum(total.ravel()) / total.sum())
        self._plus_fraction = torch.from_numpy((plus / total).ravel())
        self._n_logp = n_logp
        self._edges = (self.cos_edges, self.logp_edges)
        self._device_tables: dict[torch.device, tuple[Tensor, ...]] = {}
        p_centres = np.exp(lp)
        self._table = total
        #: Mean momentum (GeV/c) of the muons of each cos(theta) row of the table.
        self._row_mean_p = torch.from_numpy((total * p_centres).sum(1) / total.sum(1))
        self._cos_centres = torch.from_numpy(c)

    def mean_momentum(self, cos_theta: Tensor) -> Tensor:
        """Mean momentum (GeV/c) of the tabulated muons at zenith ``cos_theta`` ``(mu,)``.

        Linear interpolation between the rows of the table (clamped at its ends): the expected
        momentum of a muon given its measured direction, within the table's momentum range.
        """
        table = self._row_mean_p.to(cos_theta)
        centres = self._cos_centres.to(cos_theta)
        x = cos_theta.detach().clamp(float(centres[0]), float(centres[-1])).contiguous()
        hi = torch.searchsorted(centres, x).clamp(1, centres.numel() - 1)
        lo = hi - 1
        frac = (x - centres[lo]) / (centres[hi] - centres[lo])
        return table[lo] + frac * (table[hi] - table[lo])

    def momentum_table(self, n_bins: int) -> tuple[Tensor, Tensor, Tensor]:
        """The momentum spectrum of each zenith row of the table, rebinned to ``n_bins`` equal
        bins in ln p over the table's momentum range.

        Returns:
            ``(cos_centres (n_cos,), momentum (n_bins,), probability (n_cos, n_bins))``: the row
            centres in cos(theta), the bins' geometric-centre momenta (GeV/c), and per row the
            fraction of its muons (crossing a horizontal plane) in each bin (rows sum to 1).
        """
        if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 2:
            raise MutomoError(f"n_bins (momentum bins of the table) must be an integer >= 2; got {n_bins!r}")
        edges = np.linspace(self.logp_edges[0], self.logp_edges[-1], n_bins + 1)
        cdf = np.concatenate([np.zeros((self._table.shape[0], 1)), np.cumsum(self._table, 1)], 1)
        # The cumulative of each row is piecewise linear in ln p (uniform inside a cell, as sampled).
        rebinned = np.stack([np.interp(edges, self.logp_edges, row) for row in cdf])
        probability = np.diff(rebinned, axis=1) / rebinned[:, -1:]
        momentum = np.exp(0.5 * (edges[1:] + edges[:-1]))
        return self._cos_centres.clone(), torch.from_numpy(momentum), torch.from_numpy(probability)

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Draw ``n`` muons crossing a horizontal plane.

        Returns:
            ``(momentum, cos_theta, charge)``, each ``Float[Tensor, "mu"]``.
        """
        # Drawn on ``device`` (the generator must live there): no host round trip on a GPU.
        u = torch.rand(n, 4, generator=generator, dtype=torch.float64, device=device)
        if u.device not in self._device_tables:  # copied to a device once, not per call
            host = (self._cdf, self._plus_fraction, *map(torch.from_numpy, self._edges))
            self._device_tables[u.device] = tuple(t.to(u.device) for t in host)
        cdf, plus_fraction, cos_edges, logp_edges = self._device_tables[u.device]
        cell = torch.searchsorted(cdf, u[:, 0].contiguous(), right=True).clamp(max=cdf.numel() - 1)
        i_cos, i_p = cell // self._n_logp, cell % self._n_logp
        cos_theta = cos_edges[i_cos] + u[:, 1] * (cos_edges[i_cos + 1] - cos_edges[i_cos])
        logp = logp_edges[i_p] + u[:, 2] * (logp_edges[i_p + 1] - logp_edges[i_p])
        charge = torch.where(u[:, 3] < plus_fraction[cell], 1.0, -1.0)
        return torch.exp(logp).to(dtype), cos_theta.to(dtype), charge.to(dtype)
