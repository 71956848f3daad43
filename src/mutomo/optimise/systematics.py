"""Systematic variations: the world differing from the model in what we do not know.

A :class:`Variation` is one named way the simulated world departs from the model the designs
were trained and judged with: the scattering's core wider or narrower, its single-scattering
tail gone, another momentum spectrum, the built detector worse or misaligned than designed, the
muon rate higher or lower. :meth:`Problem.under <mutomo.optimise.problem.Problem.under>` gives
the problem in that world; everything the operator assumes stays nominal (the flux the momentum
option reads, the panels' positions and resolutions the track fit reads, the exposure the
report quotes), so a variation is a mismatch the design does not know of. Every design is
observed under a variation on the same volumes and muons (the same keys), so differences stay
paired.

:data:`VARIATIONS` is the registry a configuration names (``evaluation.systematics.variations``
and ``training.systematics``); :class:`SystematicSizes` holds how large each is (defaults and
their sources: docs/systematics.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from mutomo.detector.as_built import AsBuilt
from mutomo.errors import MutomoError
from mutomo.muons import FixedMomentumSource, FluxSource, MuonSource, Reyna06Flux, TabulatedFlux, TiltedFlux
from mutomo.muons.flux import FluxModel
from mutomo.volume.scattering import DEFAULT_SCATTER, ScatterParameters


@dataclass(frozen=True)
class Variation:
    """One systematic variation (see the module docstring).

    Attributes:
        name: its name (a key of :data:`VARIATIONS`, or ``"nominal"``).
        summary: what it does, with its size.
        scatter: the scattering model's constants in this world.
        sky: the muons simulated (``None``: the problem's source); the reconstruction still assumes
            the problem's flux.
        as_built: how the built detector differs from every design.
        exposure_factor: muons per volume x this (the exposure the report quotes is unchanged).
    """

    name: str
    summary: str = "the model as it is"
    scatter: ScatterParameters = DEFAULT_SCATTER
    sky: MuonSource | None = field(default=None, compare=False)
    as_built: AsBuilt = AsBuilt()
    exposure_factor: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.exposure_factor) and self.exposure_factor > 0):
            raise MutomoError(f"Variation.exposure_factor must be a finite number > 0; got {self.exposure_factor}")

    def muons(self, n_muons: int) -> int:
        """Muons a volume of ``n_muons`` nominal muons gets in this world (at least 10)."""
        return n_muons if self.exposure_factor == 1.0 else max(10, round(n_muons * self.exposure_factor))


NOMINAL = Variation("nominal")
"""The model as it is."""

OTHER_FLUX_MODELS: dict[str, Callable[[], FluxModel]] = {"Reyna06": Reyna06Flux}
"""Flux models the variation ``flux_model`` may put in GCCLY15's place (mulder's Gaisser90 is not
one: it holds only above ~100/cos(theta) GeV, see :class:`~mutomo.muons.flux.MulderFlux`)."""


@dataclass(frozen=True)
class SystematicSizes:
    """How large each variation is (``[evaluation.systematics]``; sources in docs/systematics.md).

    Attributes:
        core_width: relative change of the scattering core's width (``core_width_up/down``).
        index_shift: change of the spectral index (``index_up/down``).
        fixed_momentum: momentum (GeV/c) of every muon (``fixed_momentum``).
        flux_model: the other flux model (``flux_model``), a key of :data:`OTHER_FLUX_MODELS`.
        resolution_factor: built resolution / nominal (``detector_worse``).
        efficiency_factor: built efficiency / nominal (``detector_worse``).
        misalignment: standard deviation (m) of each panel's shift in x, y, z (``misalignment``).
        misalignment_seed: seeds the shifts.
        exposure: relative change of the muon rate (``exposure_up/down``).
    """

    core_width: float = 0.04
    index_shift: float = 0.1
    fixed_momentum: float = 5.0
    flux_model: str = "Reyna06"
    resolution_factor: float = 1.2
    efficiency_factor: float = 0.8
    misalignment: float = 0.003
    misalignment_seed: int = 0
    exposure: float = 0.10

    def __post_init__(self) -> None:
        checks = {
            "core_width": 0 < self.core_width < 1,
            "index_shift": 0 < self.index_shift <= 2,
            "fixed_momentum": 0 < self.fixed_momentum < math.inf,
            "resolution_factor": 0 < self.resolution_factor < math.inf,
            "efficiency_factor": 0 < self.efficiency_factor < math.inf,
            "misalignment": 0 <= self.misalignment < math.inf,
            "exposure": 0 < self.exposure < 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise MutomoError(f"SystematicSizes: {', '.join(f'{n} = {getattr(self, n)}' for n in bad)} out of range")
        if self.flux_model not in OTHER_FLUX_MODELS:
            raise MutomoError(f"SystematicSizes.flux_model must be one of {list(OTHER_FLUX_MODELS)}")


@dataclass(frozen=True)
class VariationKind:
    """An entry of :data:`VARIATIONS`: a name, what it means, and how to build it from the sizes
    and the problem's (nominal) muon source."""

    name: str
    summary: str
    build: Callable[[SystematicSizes, FluxSource], Variation]


def _sky(source: FluxSource, model: FluxModel) -> FluxSource:
    """``source``'s plane and ranges with another flux model."""
    flux = source.flux
    return FluxSource(source.plane, TabulatedFlux(model, momentum_range=flux.momentum_range, theta_max=flux.theta_max))


def _percent(x: float) -> str:
    return f"{100 * x:.3g} %"


def _core(sign: int) -> Callable[[SystematicSizes, FluxSource], Variation]:
    def build(s: SystematicSizes, source: FluxSource) -> Variation:
        name = "core_width_up" if sign > 0 else "core_width_down"
        what = "wider" if sign > 0 else "narrower"
        scatter = replace(DEFAULT_SCATTER, core_scale=1.0 + sign * s.core_width)
        return Variation(name, f"scattering core {_percent(s.core_width)} {what}", scatter=scatter)

    return build


def _index(sign: int) -> Callable[[SystematicSizes, FluxSource], Variation]:
    def build(s: SystematicSizes, source: FluxSource) -> Variation:
        name = "index_up" if sign > 0 else "index_down"
        what = "softer" if sign > 0 else "harder"
        sky = _sky(source, TiltedFlux(source.flux.model, sign * s.index_shift))
        return Variation(name, f"spectral index {sign * s.index_shift:+.3g} ({what} spectrum)", sky=sky)

    return build


def _exposure(sign: int) -> Callable[[SystematicSizes, FluxSource], Variation]:
    def build(s: SystematicSizes, source: FluxSource) -> Variation:
        name = "exposure_up" if sign > 0 else "exposure_down"
        return Variation(name, f"muon rate {sign * 100 * s.exposure:+.3g} %", exposure_factor=1.0 + sign * s.exposure)

    return build


def _tail_off(s: SystematicSizes, source: FluxSource) -> Variation:
    return Variation("tail_off", "no single-scattering tail", scatter=replace(DEFAULT_SCATTER, single_scatter=False))


def _flux_model(s: SystematicSizes, source: FluxSource) -> Variation:
    return Variation("flux_model", f"spectrum of {s.flux_model}", sky=_sky(source, OTHER_FLUX_MODELS[s.flux_model]()))


def _fixed_momentum(s: SystematicSizes, source: FluxSource) -> Variation:
    summary = f"every muon at {s.fixed_momentum:.3g} GeV/c"
    return Variation("fixed_momentum", summary, sky=FixedMomentumSource(source, s.fixed_momentum))


def _detector_worse(s: SystematicSizes, source: FluxSource) -> Variation:
    summary = f"panels' resolution x {s.resolution_factor:.3g}, efficiency x {s.efficiency_factor:.3g}"
    built = AsBuilt(resolution_factor=s.resolution_factor, efficiency_factor=s.efficiency_factor)
    return Variation("detector_worse", summary, as_built=built)


def _misalignment(s: SystematicSizes, source: FluxSource) -> Variation:
    summary = f"panels shifted by {1000 * s.misalignment:.3g} mm (standard deviation, x, y and z)"
    built = AsBuilt(misalignment=s.misalignment, seed=s.misalignment_seed)
    return Variation("misalignment", summary, as_built=built)


VARIATIONS: dict[str, VariationKind] = {
    k.name: k
    for k in (
        VariationKind("core_width_up", "the Gaussian core of the scattering angles wider by core_width", _core(+1)),
        VariationKind("core_width_down", "the Gaussian core narrower by core_width", _core(-1)),
        VariationKind("tail_off", "no single-scattering tail (the Gaussian core alone)", _tail_off),
        VariationKind("flux_model", "the momentum spectrum of another flux model (flux_model)", _flux_model),
        VariationKind("index_up", "the spectral index raised by index_shift (a softer spectrum)", _index(+1)),
        VariationKind("index_down", "the spectral index lowered by index_shift (a harder spectrum)", _index(-1)),
        VariationKind("fixed_momentum", "every muon at fixed_momentum (TomOpt's convention)", _fixed_momentum),
        VariationKind(
            "detector_worse",
            "the built panels' resolution x resolution_factor and efficiency x efficiency_factor, unknown to the "
            "reconstruction",
            _detector_worse,
        ),
        VariationKind(
            "misalignment",
            "each panel shifted by a draw of standard deviation misalignment in x, y and z, unknown to the "
            "reconstruction",
            _misalignment,
        ),
        VariationKind("exposure_up", "the muon rate higher by exposure (more muons per volume)", _exposure(+1)),
        VariationKind("exposure_down", "the muon rate lower by exposure (fewer muons per volume)", _exposure(-1)),
    )
}
"""Every systematic variation a configuration may name."""

ALL = "all"
"""The name that stands for every variation of :data:`VARIATIONS`."""


def variation_names(names: Sequence[str], where: str) -> list[str]:
    """``names`` with ``"all"`` expanded, checked: an unknown or repeated name is refused with a
    :class:`MutomoError` that starts with ``where`` (the field that named them)."""
    expanded = [n for name in names for n in (VARIATIONS if name == ALL else [name])]
    unknown = [n for n in expanded if n not in VARIATIONS]
    if unknown:
        raise MutomoError(f"{where}: unknown variation(s) {unknown}; allowed {[ALL, *VARIATIONS]}")
    if len(set(expanded)) != len(expanded):
        raise MutomoError(f"{where}: a variation is named twice: {list(names)}")
    return expanded


def build_variations(
    names: Sequence[str], sizes: SystematicSizes, source: FluxSource, where: str = "variations"
) -> tuple[Variation, ...]:
    """The variations ``names`` (``"all"``: every one) of ``sizes``, around ``source`` (the
    problem's nominal muon source)."""
    return tuple(VARIATIONS[n].build(sizes, source) for n in variation_names(names, where))
