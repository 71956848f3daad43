"""A design problem, and the one path from a detector and a volume to the task's outputs.

A :class:`Problem` holds the scene (volumes from keys), the task kind, the muon source (the
same for every design, so that designs are compared on the same muons), where panels may go,
what they cost, and the named designs of the configuration. :meth:`Problem.observe` simulates
one volume once and reads it out in one or several ways (the smooth relaxation used in
training, and physical readouts with hard edges, Bernoulli hits and a trigger), then
reconstructs with the configured momentum and returns the task's outputs for each.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor

from mutomo.design.base import Design, DesignBounds
from mutomo.design.files import NamedDesign, design_from_file
from mutomo.design.hodoscopes import Box, HodoscopeModule
from mutomo.detector import AreaCostModel, Detector, Hits
from mutomo.detector.readout import physical_readout, sampled_readout
from mutomo.errors import ConfigError, DesignFileError
from mutomo.muons import FluxSource
from mutomo.muons.generation import exposure_time, muon_count
from mutomo.optimise.systematics import NOMINAL, Variation
from mutomo.reco import MomentumPrior, ScatterData, measure
from mutomo.reco.momentum_options import MomentumContext, MomentumOption
from mutomo.scenes import Scene, VolumeSample
from mutomo.simulate import SimulationResult, simulate
from mutomo.tasks import TaskKind


@dataclass(frozen=True)
class Readout:
    """How hits are read out: the smooth relaxation (``sampled``: with Bernoulli-drawn hits, see
    :func:`~mutomo.detector.readout.sampled_readout`), or physically with a trigger of
    ``min_hits`` per side (``None``: every panel of the side)."""

    physical: bool = False
    min_hits: int | None = 2
    sampled: bool = False

    @property
    def name(self) -> str:
        if not self.physical:
            return "smooth_sampled" if self.sampled else "smooth"
        if self.min_hits == 2:
            return "physical"
        return "physical_all" if self.min_hits is None else f"physical_min{self.min_hits}"


SMOOTH = Readout()
SAMPLED = Readout(sampled=True)


def key_generator(key: Sequence[int]) -> torch.Generator:
    """A generator seeded by a key of integers, independent of anything drawn before."""
    return torch.Generator().manual_seed(hash(tuple(int(k) for k in key)) % (2**63))


@dataclass
class Problem:
    """Everything a design is optimised and evaluated against (see the module docstring).

    Built from a configuration by :func:`mutomo.config.build_problem`, or by hand from its parts.

    Attributes:
        name: a label.
        scene: volumes from keys.
        task: the task kind with its inference.
        source: the muon source (fixed for every design).
        bounds: where panels may go and what they may be.
        cost_model: prices panels.
        designs: the named designs, each a builder ``(trainable, budget) -> Design`` in this
            problem's region and cost model (see :meth:`design`).
        momentum: what momentum each muon's reconstruction receives (a
            :class:`~mutomo.reco.momentum_options.MomentumOption`, e.g.
            ``MOMENTUM_OPTIONS["flux_mean"]``).
        n_muons: muons per test volume; ``exposure_s`` is the exposure they represent.
        step_length: propagation step (m).
        hodoscope: the built module that designs with ``modules`` place, if any.
        keep_out: boxes no module may enter: the scene's box and the region's ``keep_out``.
        variation: the world the muons are simulated in (:mod:`mutomo.optimise.systematics`):
            nominal unless :meth:`under` gave another; what the reconstruction assumes (the
            source's flux, the design's panels, the exposure) is nominal whatever it is.
    """

    name: str
    scene: Scene
    task: TaskKind
    source: FluxSource
    bounds: DesignBounds
    cost_model: AreaCostModel
    designs: dict[str, NamedDesign]
    momentum: MomentumOption
    n_muons: int
    step_length: float = 0.05
    hodoscope: HodoscopeModule | None = None
    keep_out: tuple[Box, ...] = ()
    variation: Variation = NOMINAL

    def under(self, variation: Variation) -> Problem:
        """This problem in the world of ``variation`` (a systematic variation): the same volumes,
        task, designs and assumptions, the muons simulated as ``variation`` says."""
        return replace(self, variation=variation)

    @property
    def made_for(self) -> dict[str, str]:
        """What a design file made for this problem records (``made_for``): the problem's name,
        its task and a fingerprint of its scene and task (12 hex digits of a SHA-256 of the
        scene's specification, the task's kind and inference): designs evaluated on another
        problem are warned of by name."""
        text = json.dumps(
            {"scene": self.scene.spec.model_dump(mode="json"), "task": [self.task.kind, self.task.inference]},
            sort_keys=True,
        )
        return {
            "problem": self.name,
            "task": f"{self.task.kind} by {self.task.inference}",
            "fingerprint": hashlib.sha256(text.encode()).hexdigest()[:12],
        }

    def design_json(self, design: Design) -> str:
        """``design``'s description as a design file made for this problem (with ``made_for``)."""
        return json.dumps({**design.describe(), "made_for": self.made_for}, indent=2)

    @property
    def exposure_s(self) -> float:
        return exposure_time(self.n_muons, self.source)

    def muons_for(self, seconds: float) -> int:
        """Muons through the source's plane in ``seconds`` of exposure."""
        return muon_count(seconds, self.source)

    def sample(self, key: Sequence[int], index: int | None = None, clean: bool = False) -> VolumeSample:
        """The volume of ``key``; for a presence task, volume ``index`` of a set holds the object
        when ``index`` is even, so that sets are balanced; ``clean`` volumes never hold it."""
        present = None if index is None or self.task.kind != "presence" else index % 2 == 0
        return self.scene.sample(key, present=False if clean else present)

    def momentum_context(self, result: SimulationResult, sample: VolumeSample) -> MomentumContext:
        """What the momentum option may use for ``sample``'s volume: the scene's nominal
        background (what the operator assumes), never the drawn volume."""
        return MomentumContext(
            result.muons_in, result.muons_out, sample.volume, self.scene.nominal_background(), self.source.flux
        )

    def momentum_prior(self, sample: VolumeSample) -> MomentumPrior | None:
        """The prior ML/EM marginalises over for ``sample``'s volume (``momentum`` options
        ``marginal`` and ``posterior``), else ``None``."""
        return self.momentum.prior(sample.volume, self.scene.nominal_background(), self.source.flux)

    def measure(self, above: Hits, below: Hits, result: SimulationResult, sample: VolumeSample) -> ScatterData:
        """Fit the tracks of hits read out from ``result`` and give the muons this problem's
        momenta (``momentum``): what a reconstruction of ``sample``'s volume receives."""
        context = self.momentum_context(result, sample)
        alive = result.muons_in.weight * (result.muons_out.weight > 0)
        loss = self.momentum.momentum_loss(context)
        momenta = self.momentum.measured_momenta(context)
        data = measure(above, below, sample.volume, momenta, alive, momentum_loss=loss)
        return self.momentum.apply(data, context)

    def observe(
        self,
        detector: Detector,
        sample: VolumeSample,
        n_muons: int,
        generator: torch.Generator,
        readouts: Sequence[Readout] = (SMOOTH,),
        readout_generator: torch.Generator | None = None,
    ) -> list[Tensor]:
        """Simulate ``n_muons`` through ``detector`` and the volume once, read the hits out in each
        of ``readouts`` and return the task's ``(observable,)`` outputs for each (the smooth ones
        differentiable in the detector's parameters). In the world of :attr:`variation`: the
        detector as built, the muons of its sky, scattering and rate; the hits read back as the
        design (``detector``) says."""
        measured = self.measured(detector, sample, n_muons, generator, readouts, readout_generator)
        return [self.task.output(data, sample) for data in measured]

    def measured(
        self,
        detector: Detector,
        sample: VolumeSample,
        n_muons: int,
        generator: torch.Generator,
        readouts: Sequence[Readout] = (SMOOTH,),
        readout_generator: torch.Generator | None = None,
    ) -> list[ScatterData]:
        """What :meth:`observe` hands the task for each of ``readouts``: the fitted tracks with
        their momenta (:meth:`measure`), for a reconstruction of one's own (e.g. voxel maps)."""
        world = self.variation
        built = world.as_built.build(detector)  # the detector as built: the design unless a variation says
        sky = world.sky if world.sky is not None else self.source
        result = simulate(
            built,
            sample.volume,
            sky,
            world.muons(n_muons),
            generator,
            step_length=self.step_length,
            scatter_params=world.scatter,
        )
        measured = []
        for readout in readouts:
            above, below = result.hits_above, result.hits_below
            gen = readout_generator if readout_generator is not None else generator
            if readout.physical:
                above = physical_readout(above, built, "above", result.muons_in.weight, gen, readout.min_hits)
                below = physical_readout(below, built, "below", result.muons_out.weight, gen, readout.min_hits)
            elif readout.sampled:
                above = sampled_readout(above, built, "above", gen)
                below = sampled_readout(below, built, "below", gen)
            # The reconstruction reads the hits believing the design (positions, heights, resolutions).
            above = world.as_built.recorded(above, detector, built, "above")
            below = world.as_built.recorded(below, detector, built, "below")
            measured.append(self.measure(above, below, result, sample))
        return measured

    def design(
        self,
        name: str,
        trainable: Sequence[str] = ("xy", "z", "size"),
        budget: float | None = None,
        what: str = "design",
    ) -> Design:
        """A named design (:attr:`designs`), or a design JSON file, in this problem's region and
        cost model; with ``budget`` its panels are scaled (keeping their relative costs) so that
        it costs exactly that. Raises :class:`~mutomo.errors.ConfigError` whose message starts
        with ``what`` (the caller's name for the field that named the design)."""
        if name in self.designs:
            build, where = self.designs[name], f"{what} {name!r} (designs.{name})"
        elif Path(name).exists():
            where = f"{what} {name!r}"

            def build(trainable: Sequence[str], budget: float | None) -> Design:
                return design_from_file(
                    name,
                    self.bounds,
                    self.cost_model,
                    trainable,
                    budget,
                    keep_out=self.keep_out,
                    made_for=self.made_for,
                )

        else:
            raise ConfigError(f"{what}: {name!r} is neither a design under [designs] {sorted(self.designs)} nor a file")
        try:
            return build(trainable, budget)
        except DesignFileError:
            raise
        except (ValueError, TypeError, RuntimeError) as exc:  # torch's own for ragged or non-numeric lists
            raise ConfigError(f"{where}: {exc}") from None
