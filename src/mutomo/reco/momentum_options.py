"""The momentum options a configuration names (``task.momentum``): what momentum each muon's
reconstruction receives, as one table read by the problem, the configuration check, the error
messages and the documentation.

An option says where one muon's momentum comes from (the truth, a constant, the flux, a
posterior over the flux), whether ML/EM marginalises over it instead, and which voxel methods
can use it. :meth:`MomentumOption.apply` is the one place a measured batch gets its momenta.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from torch import Tensor

from mutomo.materials import Material
from mutomo.muons.batch import MuonBatch
from mutomo.muons.flux import TabulatedFlux
from mutomo.reco.maps import ScatterData
from mutomo.reco.methods import VOXEL_METHODS
from mutomo.reco.mlem import MaximumLikelihoodEM
from mutomo.reco.momentum import (
    MARGINAL_BINS,
    ConstantMomentum,
    ExpectedMomentum,
    FluxMeanMomentum,
    MomentumEstimator,
    MomentumPrior,
)
from mutomo.volume.grid import PassiveVolume


@dataclass(frozen=True)
class MomentumContext:
    """What a momentum option may use for one volume.

    Attributes:
        muons_in: the muons entering the volume (true momenta: only an oracle reads them).
        muons_out: the muons leaving it.
        volume: the reconstructed volume's grid.
        background: the scene's nominal background (what the operator assumes it holds),
            never the drawn volume.
        flux: the muon source's flux model.
    """

    muons_in: MuonBatch
    muons_out: MuonBatch
    volume: PassiveVolume
    background: Mapping[Material, float]
    flux: TabulatedFlux


def _true(c: MomentumContext) -> Tensor:
    return 0.5 * (c.muons_in.momentum + c.muons_out.momentum)


def _constant(c: MomentumContext) -> MomentumEstimator:
    return ConstantMomentum()


def _flux_mean(c: MomentumContext) -> MomentumEstimator:
    return FluxMeanMomentum(c.flux)


def _expected(c: MomentumContext) -> MomentumEstimator:
    return ExpectedMomentum(c.volume, c.background, c.flux, deflection=True)


def _range_mean(c: MomentumContext) -> MomentumEstimator:
    return ExpectedMomentum(c.volume, c.background, c.flux, deflection=False)


@dataclass(frozen=True)
class MomentumOption:
    """One momentum option of the registry.

    Attributes:
        name: the name a configuration uses.
        summary: one line for the schema, ``mutomo tasks`` and the documentation.
        momenta: the per-muon momenta (GeV/c) or the estimator that gives them from the tracks.
        oracle: whether it reads the true momenta (and the momentum lost in the volume,
            which ML/EM then spreads along the path); a detector does not know them.
        marginal: whether the reconstruction receives a momentum prior over
            :data:`~mutomo.reco.momentum.MARGINAL_BINS` classes (ML/EM marginalises over it).
        posterior: whether each muon's momentum is its posterior effective momentum after such
            an ML/EM reconstruction (for the methods that take one momentum per muon).
    """

    name: str
    summary: str
    momenta: Callable[[MomentumContext], Tensor | MomentumEstimator]
    oracle: bool = False
    marginal: bool = False
    posterior: bool = False

    def methods(self) -> tuple[str, ...]:
        """The voxel methods that can use this option."""
        if self.marginal and not self.posterior:
            return tuple(n for n, e in VOXEL_METHODS.items() if e.marginalises_momentum)
        if self.posterior:
            return tuple(n for n, e in VOXEL_METHODS.items() if not e.marginalises_momentum)
        return tuple(VOXEL_METHODS)

    def refusal(self, inference: str) -> str | None:
        """Why inference ``inference`` (a voxel method or a task statistic) cannot use this
        option, or ``None`` when it can."""
        allowed = self.methods()
        if inference in allowed or allowed == tuple(VOXEL_METHODS):
            return None
        if self.posterior:
            return (
                f"momentum {self.name!r} (each muon's momentum from an ML/EM fit) is for inference "
                f"{list(allowed)}; got inference {inference!r} (mlem marginalises itself: momentum 'marginal')"
            )
        only = allowed[0] if len(allowed) == 1 else list(allowed)
        return (
            f"momentum {self.name!r} needs inference {only!r} (the one method that marginalises over the "
            f"momentum); got inference {inference!r}"
        )

    def momentum_loss(self, context: MomentumContext) -> Tensor | None:
        """``(mu,)`` momentum each muon lost in the volume (GeV/c) for an oracle, else ``None``."""
        return context.muons_in.momentum - context.muons_out.momentum if self.oracle else None

    def prior(
        self, volume: PassiveVolume, background: Mapping[Material, float], flux: TabulatedFlux
    ) -> MomentumPrior | None:
        """The prior ML/EM marginalises over (``marginal`` and ``posterior``) in ``volume`` with
        the nominal ``background`` and the source's ``flux``, else ``None``."""
        if not self.marginal:
            return None
        return ExpectedMomentum(volume, background, flux, n_bins=MARGINAL_BINS)

    def apply(self, data: ScatterData, context: MomentumContext) -> ScatterData:
        """``data`` (measured with :meth:`momenta`) given this option's prior, or, for
        ``posterior``, each muon's posterior momentum (detached, like every estimate)."""
        prior = self.prior(context.volume, context.background, context.flux)
        if prior is None:
            return data
        data = replace(data, momentum_prior=prior)
        if self.posterior:
            p = MaximumLikelihoodEM().posterior_momentum(data, context.volume)
            data = replace(data, momentum=p.to(data.momentum.dtype), momentum_prior=None)
        return data


MOMENTUM_OPTIONS: dict[str, MomentumOption] = {
    o.name: o
    for o in (
        MomentumOption("flux_mean", "the flux model's mean momentum at each muon's zenith", _flux_mean),
        MomentumOption("constant", "4 GeV/c for every muon (PDG: mean energy of sea-level muons)", _constant),
        MomentumOption("true", "each muon's true momentum: an oracle no detector has", _true, oracle=True),
        MomentumOption(
            "expected", "E[p | zenith, deflection] in the scene's nominal background (posterior mean)", _expected
        ),
        MomentumOption("range_mean", "the flux mean above the momentum needed to cross the background", _range_mean),
        MomentumOption(
            "marginal",
            "each muon's momentum a hidden variable with the flux prior above the range cut (mlem only)",
            _flux_mean,
            marginal=True,
        ),
        MomentumOption(
            "posterior",
            "each muon's posterior momentum after an ML/EM reconstruction with 'marginal' "
            "(poca, extended_poca, asr, bca)",
            _flux_mean,
            marginal=True,
            posterior=True,
        ),
    )
}
"""Momentum options by name, in the order they are listed to users."""
