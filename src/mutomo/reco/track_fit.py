"""Straight-line track fits of the hits on one side of the volume.

Each projection is fitted independently (the panels measure x and y with independent
Gaussian errors): ``x(z) = x_ref + t_x (z - z_ref)`` by weighted least squares with weights
``w_i = p_i / sigma_i^2``, where ``p_i`` is the probability that panel ``i`` recorded the muon
(efficiency times acceptance). The normal equations give, with ``S_k = sum_i w_i dz_i^k``:

    x_ref = (S2 Sx - S1 Sxz) / D,   t_x = (S0 Sxz - S1 Sx) / D,   D = S0 S2 - S1^2,
    Cov(x_ref, t_x) = [[S2, -S1], [-S1, S0]] / D

(e.g. PDG Review, "Statistics", linear least squares), evaluated with moments centred on the
weighted mean height, which is the same algebra without the cancellation. A tiny floor on the weights keeps
``D > 0`` for muons that hit nothing, so values and gradients stay finite; such muons get track
weight 0 through ``P(at least two hits)``, computed exactly from the ``p_i`` (Poisson-binomial),
which is differentiable in every panel parameter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from mutomo.detector.panel import Hits
from mutomo.errors import MutomoError

# Relative weight given to unrecorded hits so that every fit stays well posed.
WEIGHT_FLOOR = 1e-6
# Smallest lever arm (m) of a fit: panels closer together than this count as one height.
MIN_LEVER_ARM = 1e-6


@dataclass(frozen=True)
class Tracks:
    """Fitted straight tracks, one per muon.

    Attributes:
        z_ref: reference height (m) at which ``xy`` is given.
        xy: ``(mu, 2)`` position at ``z_ref`` (m).
        slope: ``(mu, 2)`` dx/dz and dy/dz.
        covariance: ``(mu, 4, 4)`` covariance of ``(x, y, t_x, t_y)``.
        chi2: ``(mu,)`` weighted sum of squared residuals over resolution^2.
        ndof: ``(mu,)`` expected number of degrees of freedom, ``2 sum p_i - 4``.
        weight: ``(mu,)`` probability that at least two panels recorded the muon, times the
            incoming muon weight.
    """

    z_ref: float
    xy: Tensor
    slope: Tensor
    covariance: Tensor
    chi2: Tensor
    ndof: Tensor
    weight: Tensor

    def at(self, z: Tensor | float) -> Tensor:
        """``(mu, 3)`` points of the tracks at height(s) ``z`` (scalar or ``(mu,)``)."""
        z = torch.as_tensor(z, dtype=self.xy.dtype, device=self.xy.device).expand(self.xy.shape[0])
        return torch.cat([self.xy + self.slope * (z - self.z_ref)[:, None], z[:, None]], dim=-1)

    def select(self, index: Tensor) -> Tracks:
        """The tracks of the muons at ``index`` (``(k,)`` long), in that order."""
        return replace(
            self,
            xy=self.xy.index_select(0, index),
            slope=self.slope.index_select(0, index),
            covariance=self.covariance.index_select(0, index),
            chi2=self.chi2.index_select(0, index),
            ndof=self.ndof.index_select(0, index),
            weight=self.weight.index_select(0, index),
        )

    @property
    def direction(self) -> Tensor:
        """``(mu, 3)`` unit vectors along the track, pointing downwards (-z)."""
        d = torch.cat([-self.slope, -torch.ones_like(self.slope[:, :1])], dim=-1)
        return d / d.norm(dim=-1, keepdim=True)


def at_least_two(probabilities: Tensor) -> Tensor:
    """P(at least two of n independent events), each with its probability; ``(n, mu) -> (mu,)``.

    ``1 - prod(1 - p) - sum_i p_i prod_{j != i} (1 - p_j)``, evaluated by a running
    recursion over the panels so that no division by ``1 - p`` is needed.
    """
    none = torch.ones_like(probabilities[0])
    one = torch.zeros_like(probabilities[0])
    for p in probabilities:
        one = one * (1 - p) + none * p
        none = none * (1 - p)
    return (1 - none - one).clamp(min=0.0, max=1.0)


def fit_tracks(hits: Hits, z_ref: float, muon_weight: Tensor | None = None) -> Tracks:
    """Fit straight lines to the hits of one side.

    Args:
        hits: hits on the panels of one side, ``(panel, mu, ...)``; with design axes
            ``(*design, panel, mu, ...)`` the designs are fitted together and the tracks hold
            them design-major along the muon axis (``D * mu`` tracks, see :meth:`Hits.flatten_designs`).
        z_ref: reference height (m) for the fitted position; for precise tracks use the face of
            the volume the side looks at.
        muon_weight: optional ``(mu,)`` weight carried into the track weight; with design axes it
            serves every design (the same muons), or is given per track (``(D * mu,)``).

    Returns:
        :class:`Tracks`.
    """
    if hits.n_panels < 2:
        raise MutomoError(f"a straight-line fit needs at least 2 panels on a side; got {hits.n_panels}")
    n_designs = math.prod(hits.design_shape)
    if muon_weight is not None and n_designs > 1 and muon_weight.shape[-1] == hits.weight.shape[-1]:
        # One weight per muon serves every design, design-major like the tracks (as in measure());
        # multiplying the (D * mu,) track weights by it failed on the shapes.
        muon_weight = muon_weight.repeat(n_designs)
    hits = hits.flatten_designs()
    p = hits.weight

    def per_muon(t: Tensor) -> Tensor:  # (panel,) -> (panel, 1); (panel, mu) as it is
        return t[:, None] if t.dim() == 1 else t

    inv_var = per_muon(1.0 / hits.resolution**2)  # (panel, 1 or mu)
    w = (p + WEIGHT_FLOOR) * inv_var  # (panel, mu)
    dz = per_muon(hits.z - z_ref)  # (panel, 1 or mu)
    # Centred moments (numerically stable when panels sit close together): with z_bar the
    # weighted mean height, slope = sum w (z - z_bar)(x - x_bar) / S2c and the position at z_ref
    # is x_bar - slope z_bar. S2c is floored at S0 (1 um)^2 so that panels at one height (e.g. all
    # pushed onto a bound) give a finite, if useless, fit instead of 0/0.
    s0 = w.sum(0)
    z_bar = (w * dz).sum(0) / s0
    dzc = dz - z_bar  # (panel, mu)
    s2c = torch.maximum((w * dzc**2).sum(0), s0 * MIN_LEVER_ARM**2)
    x_bar = (w[..., None] * hits.xy).sum(0) / s0[:, None]  # (mu, 2)
    slope = (w[..., None] * dzc[..., None] * (hits.xy - x_bar)).sum(0) / s2c[:, None]
    xy = x_bar - slope * z_bar[:, None]
    s1 = s0 * z_bar
    det = s0 * s2c  # = S0 S2 - S1^2
    s2 = s2c + s0 * z_bar**2
    residual = hits.xy - (xy[None] + slope[None] * dz[..., None])
    chi2 = (p[..., None] * inv_var[..., None] * residual**2).sum((0, 2))
    var_pos, var_slope, cov_ps = s2 / det, s0 / det, -s1 / det
    # Built by stacking, not by slice assignment: assigning into a zeros tensor makes autograd
    # copy the whole (mu, 4, 4) gradient once per assignment.
    zero = torch.zeros_like(var_pos)
    cov = torch.stack(
        [
            *(var_pos, zero, cov_ps, zero),
            *(zero, var_pos, zero, cov_ps),
            *(cov_ps, zero, var_slope, zero),
            *(zero, cov_ps, zero, var_slope),
        ],
        dim=-1,
    ).reshape(-1, 4, 4)
    weight = at_least_two(p)
    if muon_weight is not None:
        weight = weight * muon_weight
    return Tracks(z_ref=z_ref, xy=xy, slope=slope, covariance=cov, chi2=chi2, ndof=2 * p.sum(0) - 4, weight=weight)
