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

import torch
from torch import Tensor

from mutomo.errors import MutomoError
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


# A smeared momentum's factor never goes below this (a Gaussian factor 1 + s*xi would turn
# negative for xi < -1/s: at s = 0.1 that is a 10-sigma draw, at s = 1 one muon in six).
MIN_SMEAR_FACTOR = 0.05


def smear_factor(c: MomentumContext, resolution: float) -> Tensor:
    """``(mu,)`` factors ``max(1 + resolution * xi, MIN_SMEAR_FACTOR)``, ``xi`` standard normal,
    one per muon: a momentum measured with a relative Gaussian resolution (a time-of-flight or
    spectrometer measurement; ``resolution`` = sigma_p / p). The draws are a function of the
    volume's muons alone (a generator seeded by their number and true momenta), so a volume seen
    twice gets the same measurement, two volumes independent ones, and every design the same
    measurement of the same muon. ``resolution = 0`` gives ones."""
    p = c.muons_in.momentum
    if resolution == 0:
        return torch.ones_like(p)
    key = (p.numel(), round(float(p.detach().double().sum()) * 1e6) % 2**61)
    generator = torch.Generator(device=p.device).manual_seed(hash(key) % 2**63)
    xi = torch.randn(p.shape, generator=generator, device=p.device, dtype=p.dtype)
    return (1 + resolution * xi).clamp(min=MIN_SMEAR_FACTOR)


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
        smearing: an oracle's relative momentum resolution (sigma_p / p): its momenta and
            momentum losses are multiplied by :func:`smear_factor` (0: exact).
    """

    name: str
    summary: str
    momenta: Callable[[MomentumContext], Tensor | MomentumEstimator]
    oracle: bool = False
    marginal: bool = False
    posterior: bool = False
    smearing: float = 0.0

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
        if not self.oracle:
            return None
        loss = context.muons_in.momentum - context.muons_out.momentum
        return loss * smear_factor(context, self.smearing) if self.smearing else loss

    def measured_momenta(self, context: MomentumContext) -> Tensor | MomentumEstimator:
        """The per-muon momenta (GeV/c), or the estimator that gives them from the tracks, this
        option hands the measurement (:attr:`momenta`, smeared for an oracle with ``smearing``)."""
        momenta = self.momenta(context)
        if self.smearing and isinstance(momenta, Tensor):
            return momenta * smear_factor(context, self.smearing)
        return momenta

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


def measured_momentum(resolution: float) -> MomentumOption:
    """The oracle ``true`` seen through a momentum measurement of relative resolution
    ``resolution`` (sigma_p / p, in [0, 1]; :func:`smear_factor`): what a detector measuring each
    muon's momentum would give a reconstruction (the ``ideal_momentum`` bound). ``0`` is ``true``."""
    if not 0 <= resolution <= 1:
        raise MutomoError(f"a momentum resolution (sigma_p / p) must be in [0, 1]; got {resolution}")
    summary = f"each muon's true momentum measured with a {100 * resolution:.3g} % relative resolution"
    return replace(MOMENTUM_OPTIONS["true"], name="measured", summary=summary, smearing=float(resolution))
