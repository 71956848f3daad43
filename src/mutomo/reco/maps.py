"""What every voxel reconstruction method consumes and produces, so that methods are pluggable.

:func:`measure` turns hits into :class:`ScatterData` (track fits on both sides, deflections and
PoCA, the muon momenta, and the selection weight of muons that crossed the volume). A
:class:`VoxelMethod` turns that into a :class:`VoxelMap`. The methods shipped are PoCA with
Highland X0 inference (:class:`mutomo.reco.x0.PocaX0`, binned or extended), angle statistics
reconstruction (:class:`mutomo.reco.asr.AngleStatisticsReconstruction`) and binned clustering
(:class:`mutomo.reco.bca.BinnedClustering`); any object with a ``name`` and the same call works.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from mutomo.detector.panel import Hits
from mutomo.errors import MutomoError
from mutomo.reco.momentum import MomentumEstimator, MomentumPrior
from mutomo.reco.poca import Scatters, compute_scatters
from mutomo.reco.track_fit import Tracks, fit_tracks
from mutomo.reco.voxelise import crosses_volume
from mutomo.units import HIGHLAND_E0, MUON_MASS
from mutomo.volume.grid import PassiveVolume


@dataclass(frozen=True)
class ScatterData:
    """Reconstructed muons, ready for a voxel method.

    Attributes:
        incoming, outgoing: tracks above and below the volume (reference planes at its faces).
        scatters: deflections and PoCA.
        momentum: ``(mu,)`` momenta used (GeV/c): truth or an estimate.
        momentum_loss: ``(mu,)`` momentum each muon lost in the volume (GeV/c), where it is known
            (with the true momenta, an oracle), else ``None``. ML/EM then gives each voxel of a
            muon's path the momentum at its depth (:mod:`mutomo.reco.mlem`).
        momentum_prior: a prior over each muon's momentum (from its tracks), for the methods
            that marginalise over it (ML/EM, whose own ``momentum_prior`` takes precedence); the
            others read ``momentum``. ``None``: none.
        weight: ``(mu,)`` muon weight: both tracks measured (probability) times the incoming
            muon weight times 1 if the tracks cross the volume's top and bottom faces.
        muon_index: ``(mu,)`` index of each muon in the hits it was measured from (design-major
            over a batch of designs), when :func:`measure` kept only the muons of nonzero
            weight; ``None`` when all were kept.
        batch: ``(mu,)`` flat index, into ``batch_shape``, of the design and volume each muon
            was measured in; ``None`` for one detector and one volume.
        batch_shape: the design axes of the hits (:meth:`mutomo.detector.Detector.stack`)
            followed by the batch axes of the volume (:meth:`mutomo.volume.PassiveVolume.stack`);
            ``()`` for one of each. Voxel maps and task quantities computed from these data
            carry these axes leading.
    """

    incoming: Tracks
    outgoing: Tracks
    scatters: Scatters
    momentum: Tensor
    weight: Tensor
    muon_index: Tensor | None = None
    batch: Tensor | None = None
    batch_shape: tuple[int, ...] = ()
    momentum_loss: Tensor | None = None
    momentum_prior: MomentumPrior | None = None

    @property
    def batch_size(self) -> int:
        """Number of (design, volume) pairs (1 for one of each)."""
        return math.prod(self.batch_shape)

    def batch_sum(self, values: Tensor) -> Tensor:
        """Sum of per-muon ``values (mu,)`` over the muons of each (design, volume) pair:
        ``(*batch_shape,)`` (a scalar for one detector and one volume)."""
        if self.batch is None:
            return values.sum()
        out = torch.zeros(self.batch_size, dtype=values.dtype, device=values.device)
        return out.index_add(0, self.batch, values).reshape(self.batch_shape)

    @property
    def normalised_deflection(self) -> Tensor:
        """``(mu,)`` ``u = theta beta p / 13.6 MeV``: the 3D deflection in units of the Highland
        width of one radiation length, ~ sqrt(L / X0) whatever the momentum."""
        p = self.momentum
        beta_p = p**2 / torch.sqrt(p**2 + MUON_MASS**2)
        return self.scatters.theta * beta_p / HIGHLAND_E0


@dataclass(frozen=True)
class VoxelMap:
    """A per-voxel reconstruction.

    Attributes:
        method: name of the method that made it.
        score: ``(nx, ny, nz)``; higher means more scattering (1/X0 in m^-1 for X0 methods,
            the deflection quantile for ASR, ``-median ln m`` for BCA); 0 where unmeasured.
        weight: ``(nx, ny, nz)`` muon weight that informed each voxel.
        measured: ``(nx, ny, nz)`` bool, voxels with enough muons for a score. Read it before
            ``score``, ``x0`` or ``uncertainty``: an unmeasured voxel holds a placeholder there.
        x0: ``(nx, ny, nz)`` radiation length (m) for methods that infer it, else ``None``;
            0 where unmeasured.
        uncertainty: one standard deviation of ``x0`` (m), else ``None``; ``uncertainty / x0``
            is that of ``ln X0``. Where unmeasured: inf for PoCA X0, 0 for ML/EM.
        count: ``(nx, ny, nz)`` effective number of muons ``(sum w)^2 / sum w^2`` that informed
            each voxel, for methods that report it (PoCA X0), else ``None``.
    """

    method: str
    score: Tensor
    weight: Tensor
    measured: Tensor
    x0: Tensor | None = None
    uncertainty: Tensor | None = None
    count: Tensor | None = None


class VoxelMethod(Protocol):
    """A voxel reconstruction: ``method(data, volume) -> VoxelMap``."""

    name: str

    def __call__(self, data: ScatterData, volume: PassiveVolume) -> VoxelMap: ...


def measure(
    hits_above: Hits,
    hits_below: Hits,
    volume: PassiveVolume,
    momentum: Tensor | MomentumEstimator,
    muon_weight: Tensor | None = None,
    covariance: bool = True,
    compact: bool = True,
    momentum_loss: Tensor | None = None,
) -> ScatterData:
    """Fit both sides, compute deflections and PoCA, and select muons crossing the volume.

    Args:
        hits_above, hits_below: hits on the panels above and below the volume.
        volume: the passive volume (its faces are the track reference planes).
        momentum: ``(mu,)`` momenta (GeV/c), or an estimator called on the fitted tracks.
        muon_weight: optional ``(mu,)`` weight of each muon (e.g. 0 for muons that stopped).
        covariance: compute the PoCA covariance (needed by extended PoCA).
        compact: keep only the muons of nonzero weight (tracked on both sides, crossing the
            volume): every voxel method and task weights muons, so the result is the same,
            and the PoCA, its covariance and the voxel work are done for those muons only.
            ``ScatterData.muon_index`` maps them back to the input muons.
        momentum_loss: optional ``(mu,)`` momentum lost in the volume (GeV/c), known with the
            true momenta only (see :class:`ScatterData`).

    Hits with design axes (from a :meth:`~mutomo.detector.Detector.stack`), and hits of a batch
    of volumes (:meth:`~mutomo.volume.PassiveVolume.stack`), are measured together: the result
    holds every design's and volume's muons along one axis, with ``batch`` telling which is
    which; ``momentum`` and ``muon_weight`` (one per muon of the hits) serve every design.
    """
    design_shape = hits_above.design_shape
    if hits_below.design_shape != design_shape:
        raise MutomoError(
            f"hits_above and hits_below must have the same design axes; got {design_shape} and "
            f"{hits_below.design_shape}"
        )
    n_designs = math.prod(design_shape)
    n_mu = hits_above.weight.shape[-1]  # every volume's muons, volume after volume
    if n_mu % volume.batch_size:
        raise MutomoError(f"hits hold {n_mu} muons, not a whole number for each of the {volume.batch_size} volumes")
    batch_shape = (*design_shape, *volume.batch_shape)
    if muon_weight is not None and design_shape:
        muon_weight = muon_weight.repeat(n_designs)  # the same muons for every design, design-major
    above, below = hits_above.flatten_designs(), hits_below.flatten_designs()
    if isinstance(momentum, Tensor) and momentum.shape != (n_mu,):
        raise MutomoError(f"momentum must have shape {(n_mu,)} (one per muon); got {tuple(momentum.shape)}")
    # Muons are held design-major, then volume after volume: consecutive blocks of n_mu / batch.
    batch = None
    if batch_shape:
        block = n_mu // volume.batch_size
        batch = torch.arange(math.prod(batch_shape), device=above.xy.device).repeat_interleave(block)
    index = None
    if compact:
        # Exact: a muon of weight exactly 0 adds 0 to every weighted sum and to its gradient. The
        # selection is made by a fit without autograd; the differentiable fit below runs on the
        # kept muons only and gives them the same weights.
        with torch.no_grad():
            index = torch.nonzero(_fit_both(above, below, volume, muon_weight)[2] > 0).squeeze(1)
        above, below = above.select(index), below.select(index)
        muon_weight = None if muon_weight is None else muon_weight.index_select(0, index)
        batch = None if batch is None else batch[index]
    incoming, outgoing, weight = _fit_both(above, below, volume, muon_weight)

    def per_kept_muon(values: Tensor) -> Tensor:
        values = values.repeat(n_designs) if design_shape else values
        return values if index is None else values.index_select(0, index)

    if momentum_loss is not None and momentum_loss.shape != (n_mu,):
        raise MutomoError(f"momentum_loss must have shape {(n_mu,)} (one per muon); got {tuple(momentum_loss.shape)}")
    p = per_kept_muon(momentum) if isinstance(momentum, Tensor) else momentum(incoming, outgoing)
    scatters = compute_scatters(incoming, outgoing, 0.5 * (volume.z_low + volume.z_high), covariance=covariance)
    return ScatterData(
        incoming=incoming,
        outgoing=outgoing,
        scatters=scatters,
        momentum=p,
        weight=weight,
        muon_index=index,
        batch=batch,
        batch_shape=batch_shape,
        momentum_loss=None if momentum_loss is None else per_kept_muon(momentum_loss),
    )


def _fit_both(
    above: Hits, below: Hits, volume: PassiveVolume, muon_weight: Tensor | None
) -> tuple[Tracks, Tracks, Tensor]:
    """Both sides' tracks and the ``(mu,)`` weight of each muon in :func:`measure`: both tracks
    measured, crossing the volume's faces."""
    incoming, outgoing = fit_tracks(above, volume.z_high, muon_weight), fit_tracks(below, volume.z_low)
    return incoming, outgoing, incoming.weight * outgoing.weight * crosses_volume(incoming, outgoing, volume)
