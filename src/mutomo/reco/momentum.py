"""Muon momentum for reconstruction when the data does not carry it.

Scattering measures ``theta * p``; X0 needs p. A simulation knows each muon's momentum (pass
it as a tensor); a plain tracker does not, and the caller picks an estimate:

* :class:`ConstantMomentum`: one momentum for every muon, 4 GeV/c by default, the mean energy
  of cosmic muons at sea level (PDG Review of Particle Physics, "Cosmic rays", sec. 30.3:
  "the mean energy of muons at the ground is ~ 4 GeV").
* :class:`FluxMeanMomentum`: the flux model's mean momentum at each muon's measured zenith
  angle (inclined muons are harder: between 0.1 GeV/c and 1 TeV/c, GCCLY15 gives 4.5 GeV/c
  at the zenith, 6.8 GeV/c at 45 deg and 10 GeV/c at 60 deg).

* :class:`ExpectedMomentum`: the posterior mean ``E[p | zenith, measured deflection]`` under
  the flux model's spectrum at the muon's zenith, truncated at the momentum needed to cross
  the volume, times the Highland likelihood of the measured deflection in a nominal material
  (or a current X0 map).

A per-muon *measurement* of the momentum would need material of known X0 in the tracker
(multiple scattering between tracking planes); mutomo's panels are massless, so it is not
offered. :class:`ExpectedMomentum` uses the deflection in the volume itself, through an assumed
X0: a muon that scatters more than the assumed material explains is taken to be slower, which
is right for the background and wrong for an unexpected dense object (module benchmarks:
benchmarks/README.md, "Reconstruction without the truth"). Every estimate is unbiased only on
average: per muon, ``p`` varies over decades, so X0 inferred with them is systematically
shifted, and that shift is what a calibration volume corrects.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from mutomo.errors import MutomoError
from mutomo.materials import Material, get_material
from mutomo.muons.flux import TabulatedFlux
from mutomo.reco.track_fit import Tracks
from mutomo.units import HIGHLAND_E0, MUON_MASS
from mutomo.volume.energy_loss import pumas_csda_range
from mutomo.volume.grid import PassiveVolume
from mutomo.volume.scattering import highland_g

#: Mean energy of sea-level cosmic muons (GeV), PDG "Cosmic rays" sec. 30.3.
SEA_LEVEL_MEAN_MOMENTUM = 4.0
#: Momentum classes of a reconstruction that marginalises over the momentum (``momentum =
#: "marginal"``; :meth:`ExpectedMomentum.prior` with this ``n_bins``): log-spaced over the flux
#: table's range, those under the range cut excluded. 12 over 0.1-1000 GeV/c are a factor 2.2
#: apart; ML/EM's time and memory grow with their number.
MARGINAL_BINS = 12


class MomentumEstimator(Protocol):
    """Gives each muon a momentum (GeV/c) from its tracks."""

    def __call__(self, incoming: Tracks, outgoing: Tracks) -> Tensor: ...


class MomentumPrior(Protocol):
    """A prior over each muon's momentum on a grid, for reconstructions that marginalise over it
    (:class:`mutomo.reco.MaximumLikelihoodEM`'s ``momentum_prior``)."""

    def prior(self, incoming: Tracks, outgoing: Tracks) -> tuple[Tensor, Tensor]:
        """``(log_prior, momentum)``, each ``(mu, K)``: log prior probabilities of ``K`` momentum
        classes per muon (``-inf`` excluded, at least one finite per row) and their momenta (GeV/c)."""
        ...


@runtime_checkable
class RangedMomentumPrior(MomentumPrior, Protocol):
    """A momentum prior that also gives what a range cut under another material needs
    (:class:`ExpectedMomentum`; ML/EM's ``range_cut``)."""

    def class_ranges(self, incoming: Tracks, outgoing: Tracks) -> ClassRanges:
        """Each muon's momentum classes' ranges (:class:`ClassRanges`)."""
        ...


@dataclass(frozen=True)
class ClassRanges:
    """Each muon's momentum classes, before the range cut, with what the cut needs: the prior of
    :meth:`ExpectedMomentum.prior` keeps a class only if its range exceeds the areal density of
    the muon's straight path through a volume of the nominal background; :meth:`under` redoes
    that cut, and each class's momentum, for a muon whose path crosses one voxel of another
    material.

    Attributes:
        log_spectrum: ``(n, K)`` the log of the flux spectrum at each muon's zenith in each
            momentum bin, with no cut.
        log_momentum: ``(K,)`` ``ln p_k`` (GeV/c) of each bin's centre on entering the volume;
            the bins are equal in ``ln p``, ``2 half_width`` wide.
        half_width: half a bin's width in ``ln p``.
        path: ``(n,)`` each muon's straight path length through the volume (m).
        density: the nominal background's density (kg/m^3).
        log_kinetic: ``(F,)`` a fine grid of ``ln T`` (T in GeV), increasing.
        medium_log_range: ``(F,)`` ``ln R`` (kg/m^2) of the nominal medium (the background's
            dominant material by mass) on that grid (PUMAS CSDA range times its density).
    """

    log_spectrum: Tensor
    log_momentum: Tensor
    half_width: float
    path: Tensor
    density: float
    log_kinetic: Tensor
    medium_log_range: Tensor

    def select_classes(self, keep: Tensor) -> ClassRanges:
        """The same with only the classes ``keep`` (``(K,)`` bool)."""
        return replace(self, log_spectrum=self.log_spectrum[:, keep], log_momentum=self.log_momentum[keep])

    def under(self, material: Material, muon: Tensor, length: Tensor, tail: Tensor) -> tuple[Tensor, Tensor]:
        """``(log_prior, momentum)``, each ``(E, K)``: for the muon ``muon`` (``(E,)``) of each
        path entry, if the entry's voxel, crossed over ``length`` (m) with ``tail`` (m) of its
        path still to go, holds ``material`` and the rest of the path the nominal background, the
        normalised log prior of its classes and each class's momentum (GeV/c) in the middle of
        the voxel.

        CSDA, continuous slowing down (PDG Review, "Passage of particles through matter", sec.
        34.2.5; PUMAS tables, Niess et al., CPC 229 (2018) 54), with ``R_m`` each material's range
        in kg/m^2 and ``before = path - length - tail`` (the muon's straight path, at least 0):

        * the cut: a muon is seen below the volume only if it crosses it. Run backwards from
          leaving the volume with ``T = 0``, it needs ``T_2 = R_nom^-1(rho_nom tail)`` leaving
          the voxel, ``T_1 = R_h^-1(R_h(T_2) + rho_h length)`` entering it and ``R_nom(T_1) +
          rho_nom before`` of range on entering the volume: a least momentum ``p_min``. Each
          bin keeps the part of it above ``p_min``, its spectrum taken flat in ``ln p`` inside
          the bin (a fraction of its prior; the bins are a factor ``e^(2 half_width)`` wide, 2.2
          for 12 bins, so an all-or-nothing cut would turn a few centimetres of path into a
          whole bin of the softest, most deflected muons), and the kept prior is renormalised:
          the prior of a muon that was seen. The hardest bin is always kept. The prior's own
          cut (:meth:`ExpectedMomentum.prior`) keeps a whole bin if its centre is above the
          nominal ``p_min``: with the nominal medium at the nominal density, the bins this keeps
          more than half of.
        * the momentum: each bin enters with the geometric centre of its kept part, reaches the
          voxel with ``R_nom^-1(R_nom(T) - rho_nom before)`` and its middle with
          ``R_h^-1(R_h(.) - rho_h length / 2)``: the momentum at which it scatters there, where
          the prior's mid-path momentum assumes the nominal background all along (floored at
          the table's lowest energy for a bin that stops before; those are cut).

        A dense object demands more range: a muon that crossed 10 cm of uranium had at least
        ~0.5 GeV/c on entering the cargo, and it scatters in the uranium with what it has left
        there (benchmarks/README.md, "What a perfect reconstruction would detect")."""
        with torch.no_grad():
            log_t, nominal = self.log_kinetic, self.medium_log_range
            own = _log_range_table(material, log_t)
            length, tail = length.detach().to(log_t.dtype), tail.detach().to(log_t.dtype)
            least = float(torch.exp(nominal[0]))
            after = torch.log((self.density * tail).clamp(min=least))
            log_t2 = _interp(after, nominal, log_t)  # ln T leaving the voxel
            range_h = torch.exp(_interp(log_t2, log_t, own)) + material.density * length
            log_t1 = _interp(torch.log(range_h), own, log_t)  # ln T entering it
            before = (self.path.index_select(0, muon) - length - tail).clamp(min=0) * self.density
            need = torch.exp(_interp(log_t1, log_t, nominal)) + before
            t_min = torch.exp(_interp(torch.log(need), nominal, log_t))
            log_p_min = 0.5 * torch.log(t_min**2 + 2 * MUON_MASS * t_min)
            low = torch.maximum(self.log_momentum[None, :] - self.half_width, log_p_min[:, None])
            high = self.log_momentum[None, :] + self.half_width
            fraction = ((high - low) / (2 * self.half_width)).clamp(0, 1)
            fraction[:, -1] = torch.where(fraction[:, -1] > 0, fraction[:, -1], 1.0)
            spectrum = self.log_spectrum.index_select(0, muon)
            cut = spectrum + torch.log(fraction)
            # Each bin's kept part enters at its geometric centre, and slows to the voxel's middle.
            p = torch.exp(0.5 * (torch.minimum(low, high) + high))
            kinetic = torch.sqrt(p**2 + MUON_MASS**2) - MUON_MASS
            reaching = (torch.exp(_interp(torch.log(kinetic), log_t, nominal)) - before[:, None]).clamp(min=least)
            at_voxel = _interp(torch.log(reaching), nominal, log_t)
            own_least = float(torch.exp(own[0]))
            middle = torch.exp(_interp(at_voxel, log_t, own)) - 0.5 * material.density * length[:, None]
            kinetic = torch.exp(_interp(torch.log(middle.clamp(min=own_least)), own, log_t))
            momentum = torch.sqrt(kinetic**2 + 2 * MUON_MASS * kinetic)
            return cut - torch.logsumexp(cut, -1, keepdim=True), momentum


@functools.lru_cache(maxsize=64)
def _log_range_table_np(material: Material, lo: float, hi: float, n: int) -> np.ndarray:
    return np.log(pumas_csda_range(material, np.exp(np.linspace(lo, hi, n))) * material.density)


def _log_range_table(material: Material, log_kinetic: Tensor) -> Tensor:
    """``ln R`` (kg/m^2) of ``material`` on the grid ``log_kinetic`` (ln GeV, log-uniform: the
    grid of :class:`ClassRanges`), cached per material."""
    lo, hi, n = float(log_kinetic[0]), float(log_kinetic[-1]), log_kinetic.numel()
    table = torch.from_numpy(_log_range_table_np(material, lo, hi, n))
    return table.to(device=log_kinetic.device, dtype=log_kinetic.dtype)


class ConstantMomentum:
    """The same momentum (GeV/c, > 0) for every muon."""

    def __init__(self, momentum: float = SEA_LEVEL_MEAN_MOMENTUM) -> None:
        if not momentum > 0:
            raise MutomoError(f"ConstantMomentum.momentum must be > 0 GeV/c; got {momentum}")
        self.momentum = float(momentum)

    def __call__(self, incoming: Tracks, outgoing: Tracks) -> Tensor:
        return torch.full_like(incoming.xy[:, 0], self.momentum)


class FluxMeanMomentum:
    """The flux model's mean momentum at the incoming track's zenith angle.

    Args:
        flux: tabulated flux (its momentum range sets the mean; e.g. a lower bound at the
            momentum needed to cross the volume). Default: GCCLY15 from 0.1 GeV/c to 1 TeV/c.
    """

    def __init__(self, flux: TabulatedFlux | None = None) -> None:
        self.flux = flux if flux is not None else TabulatedFlux()

    def __call__(self, incoming: Tracks, outgoing: Tracks) -> Tensor:
        cos_theta = torch.rsqrt(1 + (incoming.slope.detach() ** 2).sum(-1))
        return self.flux.mean_momentum(cos_theta)


#: Muons per chunk of the posterior (a chunk holds ``chunk x n_bins`` numbers per tensor).
_CHUNK = 32768


def _mixture(background: str | Material | Mapping[str, float] | Mapping[Material, float]) -> dict[Material, float]:
    """``{material: volume fraction}`` (fractions normalised to 1) from a name, a material or a mapping."""
    if isinstance(background, (str, Material)):
        return {get_material(background): 1.0}
    if not isinstance(background, Mapping) or not background:
        raise MutomoError(
            "background must be a material (name) or a non-empty mapping material -> volume fraction; "
            f"got {background!r}"
        )
    fractions = {get_material(k): float(v) for k, v in background.items()}
    total = sum(fractions.values())
    if not all(math.isfinite(v) and v >= 0 for v in fractions.values()) or not total > 0:
        raise MutomoError(f"background volume fractions must be finite, >= 0 and not all 0; got {background!r}")
    return {m: v / total for m, v in fractions.items()}


class ExpectedMomentum:
    """Each muon's expected momentum given its zenith and its measured deflection.

    For a muon of measured zenith ``theta_z`` and projected deflections ``a_x, a_y`` (the change
    of ``atan`` of the track slopes across the volume), the posterior mean over a grid of entry
    momenta ``p_k``

        E[p | theta_z, a] = sum_k w_k p_mid,k / sum_k w_k,
        w_k = pi_k(theta_z) 1{R(p_k) > X} prod_{j=x,y} N(a_j; 0, s_k^2 + m_j),
        s_k^2 = (13.6 MeV / (beta_mid,k p_mid,k))^2 t (1 + 0.038 ln(t / beta_mid,k^2))^2,

    where:

    * ``pi_k(theta_z)``: the flux model's momentum spectrum of muons crossing a horizontal
      plane at that zenith (GCCLY15 by default, Guan et al. 2015, arXiv:1509.06176,
      :meth:`TabulatedFlux.momentum_table`), interpolated linearly between zenith rows;
    * ``1{R(p_k) > X}``: the acceptance. A muon is measured below the volume only if it crosses
      it, i.e. if its CSDA range ``R`` (PUMAS tables, Niess et al., CPC 229 (2018) 54; the
      physics of the PDG muon tables, Groom et al. 2001) exceeds the areal density ``X = rho L``
      of its path ``L = H sqrt(1 + t_x^2 + t_y^2)`` through the nominal background: the spectrum
      is truncated at that range-limited minimum momentum (range in kg/m^2 of the material
      that dominates the background by mass, scaled to the mixture's density);
    * ``p_mid,k``: the momentum at mid-path, from ``R(p_mid) = R(p_k) - X / 2`` (CSDA): the
      momentum the scattering sees on average, and the one reported;
    * ``s_k^2``: Highland's projected width (PDG Review, "Passage of particles through
      matter", eq. 34.15; Lynch & Dahl, NIM B58 (1991) 6; the log term on the total thickness)
      for the thickness ``t = L / X0``: ``X0`` of the nominal background (for a mixture,
      ``1 / X0 = sum_i f_i / X0_i`` with volume fractions ``f_i``), or, with :meth:`with_map`,
      ``t = sum`` of ``dl / X0(voxel)`` along the straight line from entry to exit through a
      current X0 map (an iteration: reconstruct, re-estimate the momenta, reconstruct);
    * ``m_j``: the measurement variance of ``a_j`` from the two track fits' slope covariances
      (as in :class:`mutomo.reco.x0.HighlandX0Inferrer`).

    This is the Bayesian momentum weighting of Schultz et al. ("Statistical reconstruction for
    cosmic ray muon tomography", IEEE Trans. Image Process. 16 (2007) 1985, where the unknown
    momentum enters through a prior on the scattering width) made per muon: a larger deflection
    means a lower momentum, bounded below by the range cut; an undeflected muon gets the flux
    mean above the range cut. The Gaussian core is Highland's; single hard scatters (Rutherford
    tail) are read as low momentum, which the range cut bounds.

    No gradient: the estimate is computed from detached tracks (like
    :class:`FluxMeanMomentum`), so it is a fixed per-muon number to every downstream gradient;
    every weight is finite (the highest grid momentum is always accepted), so no NaN arises.

    Args:
        volume: the passive volume's geometry (height, voxel grid); its materials are not read.
        background: the nominal content: a material (name) or ``{material: volume fraction}``
            (e.g. ``{"iron": 0.3, "air": 0.7}`` for random iron clutter). What the operator
            assumes, not the truth of the scanned volume.
        flux: tabulated flux (its momentum range is the grid's); default GCCLY15, 0.1 GeV/c to
            1 TeV/c, 0-85 deg (use the same table as the muon source).
        n_bins: momentum bins (log-spaced over the flux table's range), >= 8.
        x0_map: optional ``(nx, ny, nz)`` current X0 map (m) of ``volume``'s voxels
            (:meth:`with_map`); voxels <= 0 or not finite (unmeasured) take the nominal X0.
        deflection: weight by the likelihood of the measured deflection (default). ``False``:
            ``E[p | zenith, range cut]``, the flux mean above the range-limited minimum momentum
            at the muon's zenith (mid-path), which does not read the deflection and so cannot
            explain an object's scattering away as low momentum.

    Example:
        >>> import torch
        >>> from mutomo.volume import PassiveVolume
        >>> est = ExpectedMomentum(PassiveVolume.uniform("water", (1.0, 1.0, 1.0), 0.1), "water")
        >>> round(est.x0, 3), round(est.density)
        (0.361, 1000)
    """

    def __init__(
        self,
        volume: PassiveVolume,
        background: str | Material | Mapping[str, float] | Mapping[Material, float],
        flux: TabulatedFlux | None = None,
        n_bins: int = 128,
        x0_map: Tensor | None = None,
        deflection: bool = True,
    ) -> None:
        if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 8:
            raise MutomoError(f"ExpectedMomentum.n_bins must be an integer >= 8; got {n_bins!r}")
        if x0_map is not None and tuple(x0_map.shape) != tuple(volume.shape):
            raise MutomoError(
                f"ExpectedMomentum.x0_map must have the volume's shape {tuple(volume.shape)}; got {tuple(x0_map.shape)}"
            )
        self.volume = volume
        self.background = _mixture(background)
        self.flux = flux if flux is not None else TabulatedFlux()
        self.n_bins = n_bins
        self.deflection = bool(deflection)
        self.x0_map = None if x0_map is None else x0_map.detach()
        #: Nominal radiation length (m): ``1 / X0 = sum_i f_i / X0_i``.
        self.x0 = 1.0 / sum(f / m.x0 for m, f in self.background.items())
        #: Nominal density (kg/m^3): ``sum_i f_i rho_i``.
        self.density = sum(f * m.density for m, f in self.background.items())
        dominant = max(self.background, key=lambda m: self.background[m] * m.density)
        cos_centres, momentum, probability = self.flux.momentum_table(n_bins)
        kinetic = np.sqrt(momentum.numpy() ** 2 + MUON_MASS**2) - MUON_MASS
        # Range in kg/m^2 on the grid, and its inverse (ln R -> ln T) on a finer grid for p_mid.
        self._log_range = torch.from_numpy(np.log(pumas_csda_range(dominant, kinetic) * dominant.density))
        fine_t = np.geomspace(1e-3, 1e5, 2001)
        self._fine_log_range = torch.from_numpy(np.log(pumas_csda_range(dominant, fine_t) * dominant.density))
        self._fine_log_t = torch.from_numpy(np.log(fine_t))
        self._cos_centres = cos_centres
        self._momentum = momentum
        self._log_prior = torch.log(probability.clamp(min=1e-300))

    def with_map(self, x0_map: Tensor) -> ExpectedMomentum:
        """The same estimator with each muon's thickness ``t`` taken through ``x0_map``
        ``(nx, ny, nz)`` (m) along its straight entry-exit line (the iteration step)."""
        return ExpectedMomentum(self.volume, self.background, self.flux, self.n_bins, x0_map, self.deflection)

    def __call__(self, incoming: Tracks, outgoing: Tracks) -> Tensor:
        """``(mu,)`` posterior mean momentum at mid-path (GeV/c), detached."""
        with torch.no_grad():
            out = [
                self._chunk(incoming, outgoing, start, min(start + _CHUNK, incoming.xy.shape[0]))
                for start in range(0, incoming.xy.shape[0], _CHUNK)
            ]
        if not out:
            return torch.zeros_like(incoming.xy[:, 0]).detach()
        return torch.cat(out).to(incoming.xy.dtype)

    def path_thickness(self, incoming: Tracks, outgoing: Tracks) -> Tensor:
        """``(mu,)`` thickness ``t`` (radiation lengths) of each muon's path: ``L / X0`` of the
        nominal background, or through the X0 map along the straight entry-exit line (4 samples
        per voxel layer, midpoint rule)."""
        vol = self.volume
        slope = incoming.slope.detach().double()
        length = (vol.z_high - vol.z_low) * torch.sqrt(1 + (slope**2).sum(-1))
        if self.x0_map is None:
            return length / self.x0
        nx, ny, nz = vol.shape
        n_s = 4 * nz
        entry = incoming.at(vol.z_high).detach().double()
        exit_ = outgoing.at(vol.z_low).detach().double()
        frac = (torch.arange(n_s, dtype=torch.float64, device=entry.device) + 0.5) / n_s
        points = entry[:, None, :] + frac[None, :, None] * (exit_ - entry)[:, None, :]  # (mu, S, 3)
        origin = torch.tensor(vol.origin, dtype=torch.float64, device=entry.device)
        size = torch.tensor(vol.voxel_size, dtype=torch.float64, device=entry.device)
        index = torch.floor((points - origin) / size).long()
        bound = torch.tensor([nx - 1, ny - 1, nz - 1], device=entry.device)
        index = torch.minimum(index.clamp(min=0), bound)
        flat = (index[..., 0] * ny + index[..., 1]) * nz + index[..., 2]
        x0 = self.x0_map.to(device=entry.device, dtype=torch.float64).reshape(-1)
        x0 = torch.where(torch.isfinite(x0) & (x0 > 0), x0, torch.full_like(x0, self.x0))
        inverse = (1 / x0).index_select(0, flat.reshape(-1)).reshape(flat.shape)
        return length * inverse.mean(-1)

    def prior(self, incoming: Tracks, outgoing: Tracks) -> tuple[Tensor, Tensor]:
        """The prior of each muon's momentum before its deflection is read: ``(log_prior,
        p_mid)``, each ``(mu, n_bins)`` float64, detached. ``log_prior``: the log of the flux
        model's spectrum at the muon's zenith on the grid, ``-inf`` for the bins below the range
        cut (the highest bin is always kept); ``p_mid``: each bin's momentum at mid-path (GeV/c).
        See the class docstring; :class:`mutomo.reco.MaximumLikelihoodEM` marginalises over it."""
        with torch.no_grad():
            device, f64 = incoming.xy.device, torch.float64
            slope_in = incoming.slope.detach().to(f64)
            cos_z = torch.rsqrt(1 + (slope_in**2).sum(-1))
            log_prior = self._spectrum(cos_z)
            # Acceptance and the mid-path momentum, from the range (kg/m^2) and the path's areal density.
            path = (self.volume.z_high - self.volume.z_low) / cos_z  # (mu,) m
            areal = (self.density * path)[:, None]  # (mu, 1) kg/m^2
            log_range = self._log_range.to(device=device, dtype=f64)[None, :]  # (1, K)
            accept = log_range > torch.log(areal)
            accept[:, -1] = True  # the hardest bin always crosses: every row keeps a finite weight
            mid_range = (torch.exp(log_range) - 0.5 * areal).clamp(min=float(torch.exp(self._fine_log_range[0])))
            log_t_mid = _interp(torch.log(mid_range), self._fine_log_range.to(device), self._fine_log_t.to(device))
            t_mid = torch.exp(log_t_mid)
            p_mid = torch.sqrt(t_mid**2 + 2 * MUON_MASS * t_mid)  # (mu, K)
            return torch.where(accept, log_prior, torch.full_like(log_prior, -math.inf)), p_mid

    def _spectrum(self, cos_z: Tensor) -> Tensor:
        """``(mu, n_bins)`` the log of the flux model's spectrum on the grid at each zenith
        ``cos_z`` ``(mu,)``: the table's zenith rows around it, linearly interpolated."""
        device, f64 = cos_z.device, torch.float64
        centres = self._cos_centres.to(device=device, dtype=f64)
        x = cos_z.to(f64).clamp(float(centres[0]), float(centres[-1])).contiguous()
        hi = torch.searchsorted(centres, x).clamp(1, centres.numel() - 1)
        lo = hi - 1
        a = ((x - centres[lo]) / (centres[hi] - centres[lo]))[:, None]
        log_prior = self._log_prior.to(device=device, dtype=f64)
        return torch.logaddexp(
            log_prior[lo] + torch.log1p(-a.clamp(max=1 - 1e-12)), log_prior[hi] + torch.log(a.clamp(min=1e-12))
        )

    def class_ranges(self, incoming: Tracks, outgoing: Tracks) -> ClassRanges:
        """What a range cut under another material needs (:class:`ClassRanges`): each muon's
        spectrum on the grid before the range cut, its straight path through the volume, the
        grid's momenta and the nominal medium's range table. Detached, float64."""
        with torch.no_grad():
            device = incoming.xy.device
            cos_z = torch.rsqrt(1 + (incoming.slope.detach().to(torch.float64) ** 2).sum(-1))
            return ClassRanges(
                log_spectrum=self._spectrum(cos_z),
                log_momentum=torch.log(self._momentum.to(device=device, dtype=torch.float64)),
                half_width=0.5 * float(torch.log(self._momentum[1] / self._momentum[0])),
                path=(self.volume.z_high - self.volume.z_low) / cos_z,
                density=self.density,
                log_kinetic=self._fine_log_t.to(device),
                medium_log_range=self._fine_log_range.to(device),
            )

    def _chunk(self, incoming: Tracks, outgoing: Tracks, start: int, stop: int) -> Tensor:
        rows = torch.arange(start, stop, device=incoming.xy.device)
        inc, out = incoming.select(rows), outgoing.select(rows)
        f64 = torch.float64
        log_prior, p_mid = self.prior(inc, out)
        if not self.deflection:
            return (torch.softmax(log_prior, dim=-1) * p_mid).sum(-1)
        slope_in, slope_out = inc.slope.detach().to(f64), out.slope.detach().to(f64)
        angle = torch.atan(slope_out) - torch.atan(slope_in)  # (mu, 2) projected deflections
        # Measurement variance of each projected deflection: d atan(s)/ds = 1 / (1 + s^2).
        meas = torch.zeros_like(angle)
        for t in (inc, out):
            slope = t.slope.detach().to(f64)
            meas = meas + t.covariance.detach().to(f64).diagonal(dim1=-2, dim2=-1)[:, 2:] / (1 + slope**2) ** 2
        beta2 = p_mid**2 / (p_mid**2 + MUON_MASS**2)
        thickness = self.path_thickness(inc, out).to(f64).clamp(min=1e-9)[:, None]
        width2 = HIGHLAND_E0**2 / (beta2 * p_mid**2) * highland_g(thickness, beta2)  # (mu, K)
        total = width2[..., None] + meas[:, None, :]  # (mu, K, 2)
        log_like = (-0.5 * torch.log(total) - 0.5 * angle[:, None, :] ** 2 / total).sum(-1)
        w = torch.softmax(log_prior + log_like, dim=-1)
        return (w * p_mid).sum(-1)


def _interp(x: Tensor, xp: Tensor, fp: Tensor) -> Tensor:
    """Piecewise-linear interpolation of ``fp(xp)`` (``xp`` increasing) at ``x``, clamped at the ends."""
    xp, fp = xp.to(x.dtype), fp.to(x.dtype)
    xc = x.clamp(float(xp[0]), float(xp[-1])).contiguous()
    hi = torch.searchsorted(xp, xc).clamp(1, xp.numel() - 1)
    lo = hi - 1
    frac = (xc - xp[lo]) / (xp[hi] - xp[lo])
    return fp[lo] + frac * (fp[hi] - fp[lo])
