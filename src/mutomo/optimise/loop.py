"""The optimisation loop: one explicit function, extended by passing strategies.

For each epoch :func:`optimise`

1. sets the panel-edge smoothness (annealed geometrically from ``smoothness[0]`` to
   ``smoothness[1]``) and each group's learning rate (linear warm-up over ``warmup_epochs``,
   then a cosine decay to ``final_lr_fraction`` of it);
2. draws the epoch's training volumes from the problem's scene (keys ``(seed, 0, epoch, i)``; a
   task whose loss needs pairs gets every volume twice) and fresh muons from generators keyed
   the same way, so any epoch is reproducible on its own;
3. simulates, reconstructs and infers each volume (the smooth readout), computes the loss
   (:class:`~mutomo.optimise.loss.LossBreakdown`), back-propagates and steps every parameter
   group's optimiser (and, for a task with a learned inference such as ``task.statistic =
   "learned"``, that inference's: co-training, :data:`INFERENCE_GROUP`), then projects the
   design back into its bounds. A step whose gradients are
   not finite is skipped (and recorded), so NaN or inf never reaches a parameter;
   With ``systematics`` (robust training, domain randomisation), the epoch is simulated in a
   world drawn uniformly from the nominal one and those variations
   (:func:`epoch_variation`, :mod:`mutomo.optimise.systematics`), so that the design cannot
   exploit one model;
4. evaluates the loss on fixed validation volumes (always in the nominal world) (every ``validate_every`` epochs);
5. records the epoch in the :class:`History` and writes a checkpoint (design, optimisers,
   history), so that a killed run resumes from its last completed epoch and ends exactly where
   an uninterrupted run would.

Learning rates are in physical units because the design's parameters are (Adam moves a
parameter by about its learning rate per step): metres per step for positions, e-folds per step
for sizes, shares and resolutions. Strategies: ``loss`` (``(outputs (volume, observable), truths
(volume,)) -> scalar``, default the task's), ``optimiser`` (a factory from parameters and
learning rate to a ``torch.optim.Optimizer``, per group), ``stopping`` (a :class:`StoppingRule`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from mutomo.design.base import PARAMETER_GROUPS, Design
from mutomo.errors import MutomoError
from mutomo.io.files import PathLike, writable_dir
from mutomo.optimise.checkpoint import load_latest, save_checkpoint
from mutomo.optimise.loss import LossBreakdown, budget_penalty
from mutomo.optimise.problem import SAMPLED, SMOOTH, Problem, Readout, key_generator
from mutomo.optimise.progress import Progress
from mutomo.optimise.systematics import NOMINAL, Variation

TRAINING_STREAM, VALIDATION_STREAM = 0, 1
VARIATION_STREAM = 4
"""Key stream of the draws of each epoch's world in robust training."""

OptimiserFactory = Callable[[Iterable[nn.Parameter], float], torch.optim.Optimizer]


def adam(params: Iterable[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """The default optimiser for every group."""
    return torch.optim.Adam(params, lr=lr)


OPTIMISERS: dict[str, OptimiserFactory] = {
    "adam": adam,
    "sgd": lambda params, lr: torch.optim.SGD(params, lr=lr),
    "rmsprop": lambda params, lr: torch.optim.RMSprop(params, lr=lr),
}

#: How robust training weighs the worlds (:attr:`TrainingSettings.systematics_weighting`).
WEIGHTINGS = ("uniform", "normalised")
#: Weight of the newest epoch in each world's running mean loss (normalised weighting): about the
#: last 1/0.2 = 5 visits to that world, so the scale follows the loss as the design improves.
WORLD_SCALE_DECAY = 0.2

#: The optimiser group of a task's trainable inference (:attr:`TaskKind.module`, e.g. the learned
#: presence statistic), trained by Adam beside the design's groups (co-training), with the same
#: warm-up and annealing.
INFERENCE_GROUP = "inference"
#: Its Adam step: the classifier's features are standardised, so weights of order 1 are reached
#: in ~100 steps (the ladle's 300 epochs leave it time to follow the moving panels).
INFERENCE_LEARNING_RATE = 0.01


@dataclass(frozen=True)
class TrainingSettings:
    """Settings of :func:`optimise` (see the module docstring).

    Attributes:
        epochs: number of epochs.
        volumes_per_epoch: training volumes per epoch (even: distinct targets, each twice).
        muons_per_volume: muons simulated per volume.
        validation_volumes: fixed validation volumes (0: no validation).
        validate_every: validate every this many epochs (and at the last).
        seed: seeds every random draw of the run.
        learning_rates: per parameter group (``PARAMETER_GROUPS``), in the groups' units per step.
        optimisers: per parameter group, a name in ``OPTIMISERS`` (default ``"adam"``).
        warmup_epochs: linear learning-rate warm-up length.
        final_lr_fraction: after the warm-up, learning rates follow a cosine from 1 down to this
            fraction of their value at the last epoch (noisy gradients: the design settles
            instead of wandering with the last steps' noise).
        smoothness: (start, end) panel-edge width (m), annealed geometrically over the run.
        budget_weight, budget_width: soft-budget penalty (used when the design has no fixed budget).
        budget: soft budget of a design without a fixed one; ``None``: no budget penalty (the
            cost is fixed, as for hodoscopes, or bounded by the region's span range).
        resample: draw fresh volumes and muons every epoch (``False``: the epoch-0 sample every
            epoch, i.e. common random numbers: a deterministic objective, for tests and debugging).
        sampled_hits: train on hits kept or lost by Bernoulli draws of the efficiency
            (:func:`~mutomo.detector.readout.sampled_readout`) instead of their probabilities.
        systematics: robust training: each epoch is simulated in a world drawn from the nominal
            one and these variations (:func:`epoch_variation`); none by default.
        systematics_weighting: ``"uniform"`` (each world's loss as it is) or ``"normalised"``
            (each divided by a running mean of that world's own loss, :data:`WORLD_SCALE_DECAY`):
            without it, a world whose loss is ten times the others' dominates the gradient.
    """

    epochs: int = 100
    volumes_per_epoch: int = 8
    muons_per_volume: int = 1000
    validation_volumes: int = 16
    validate_every: int = 10
    seed: int = 0
    learning_rates: dict[str, float] = field(
        default_factory=lambda: {"xy": 0.02, "z": 0.02, "size": 0.05, "resolution": 0.05, "efficiency": 0.05}
    )
    optimisers: dict[str, str] = field(default_factory=dict)
    warmup_epochs: int = 5
    final_lr_fraction: float = 0.1
    smoothness: tuple[float, float] = (0.05, 0.005)
    budget_weight: float = 1.0
    budget_width: float = 100.0
    budget: float | None = None
    resample: bool = True
    sampled_hits: bool = False
    systematics: tuple[Variation, ...] = ()
    systematics_weighting: str = "uniform"

    def __post_init__(self) -> None:
        if self.systematics_weighting not in WEIGHTINGS:
            raise MutomoError(
                f"systematics_weighting must be one of {list(WEIGHTINGS)}; got {self.systematics_weighting!r}"
            )
        if self.epochs < 1:
            raise MutomoError(f"epochs must be >= 1; got {self.epochs}")
        if self.volumes_per_epoch < 4 or self.volumes_per_epoch % 2:
            raise MutomoError(f"volumes_per_epoch must be even and >= 4; got {self.volumes_per_epoch}")
        if self.muons_per_volume < 10:
            raise MutomoError(f"muons_per_volume must be >= 10; got {self.muons_per_volume}")
        unknown = set(self.learning_rates) - set(PARAMETER_GROUPS)
        if unknown:
            raise MutomoError(f"learning_rates: unknown group(s) {sorted(unknown)}; allowed {PARAMETER_GROUPS}")
        bad = {k: v for k, v in self.optimisers.items() if k not in PARAMETER_GROUPS or v not in OPTIMISERS}
        if bad:
            raise MutomoError(
                f"optimisers: {bad} not allowed; groups {PARAMETER_GROUPS}, optimisers {sorted(OPTIMISERS)}"
            )
        if not 0 < self.final_lr_fraction <= 1:
            raise MutomoError(f"final_lr_fraction must be in (0, 1]; got {self.final_lr_fraction}")
        if not all(s > 0 for s in self.smoothness):
            raise MutomoError(f"smoothness must be > 0 m; got {self.smoothness}")


@dataclass
class EpochRecord:
    """What one epoch did."""

    epoch: int
    loss: dict[str, float]
    validation: float | None
    learning_rates: dict[str, float]
    smoothness: float
    skipped_step: bool
    seconds: float
    design: dict[str, Any]
    variation: str = NOMINAL.name


@dataclass
class History:
    """All epochs so far."""

    records: list[EpochRecord] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps([asdict(r) for r in self.records], indent=1)

    @classmethod
    def from_json(cls, text: str) -> History:
        return cls([EpochRecord(**r) for r in json.loads(text)])


class StoppingRule(Protocol):
    """Decides after each epoch whether to stop."""

    def __call__(self, history: History) -> bool: ...


class NoImprovement:
    """Stop when the validation loss has not improved for ``patience`` validations."""

    def __init__(self, patience: int = 5) -> None:
        self.patience = patience

    def __call__(self, history: History) -> bool:
        values = [r.validation for r in history.records if r.validation is not None]
        if len(values) <= self.patience:
            return False
        return min(values[-self.patience :]) >= min(values[: -self.patience])


def batch_losses(
    design: Design,
    problem: Problem,
    key: tuple[int, ...],
    n_volumes: int,
    n_muons: int,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    settings: TrainingSettings,
    readout: Readout | None = None,
) -> LossBreakdown:
    """Loss parts of a design on the ``n_volumes`` volumes of ``key``, differentiable in the design,
    each of shape ``(*design,)`` (scalars for one design). The hits are read out by ``readout``
    (default: the smooth relaxation, with Bernoulli-drawn hits if ``settings.sampled_hits``; a
    physical readout gives a loss that is not differentiable in the panels' positions).

    Volume ``j`` has key ``(*key, j)``; a task whose loss needs pairs sees each volume twice,
    with independent muons. A design whose detector has design axes (a
    :class:`~mutomo.design.stacked.StackedDesign`) is simulated in one pass: its members
    see the same volumes and the same muons, and each member's loss is computed from its own
    outputs only, so that the members' gradients stay separate. For a task that cannot observe
    several designs in one pass (``task.design_batches`` false, e.g. ASR), the members are
    simulated one after the other on the same keys (the same volumes and muons)."""
    members = getattr(design, "members", None)
    if members is not None and not problem.task.design_batches:
        parts = [batch_losses(m, problem, key, n_volumes, n_muons, loss, settings, readout) for m in members]
        return LossBreakdown(
            task=torch.stack([p.task for p in parts]),
            budget=torch.stack([p.budget for p in parts]),
            cost=torch.stack([p.cost for p in parts]),
        )
    detector = design.detector()
    design_shape = detector.design_shape
    pairs = problem.task.needs_pairs
    chosen = readout if readout is not None else SAMPLED if settings.sampled_hits else SMOOTH
    outputs, truths = [], []
    samples: dict[int, Any] = {}
    for i in range(n_volumes):
        j = i // 2 if pairs else i
        if j not in samples:
            samples[j] = problem.sample((*key, j), index=j)
        sample = samples[j]
        (out,) = problem.observe(detector, sample, n_muons, key_generator((*key, j, i)), (chosen,))
        if tuple(out.shape[: len(design_shape)]) != design_shape or out.dim() != len(design_shape) + 1:
            raise MutomoError(
                f"the {problem.task.kind} task's outputs {tuple(out.shape)} do not carry the design axes "
                f"{design_shape}: train these designs one at a time"
            )
        outputs.append(out)
        truths.append(problem.task.truth(sample))
    stacked = torch.stack(outputs, dim=-2)  # (*design, volume, observable)
    truth_t = torch.tensor(truths, dtype=stacked.dtype)
    flat = stacked.reshape(-1, *stacked.shape[-2:])
    task_loss = torch.stack([loss(o, truth_t) for o in flat]).reshape(design_shape)
    cost = design.cost()
    if design.budget is None and settings.budget is not None:
        penalty = budget_penalty(cost, settings.budget, settings.budget_width, settings.budget_weight)
    else:
        penalty = torch.zeros_like(cost)
    return LossBreakdown(task=task_loss, budget=penalty, cost=cost)


def batch_loss(
    design: Design,
    problem: Problem,
    key: tuple[int, ...],
    n_volumes: int,
    n_muons: int,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    settings: TrainingSettings,
    readout: Readout | None = None,
) -> LossBreakdown:
    """Loss of a design on the ``n_volumes`` volumes of ``key`` (differentiable in the design):
    :func:`batch_losses` summed over the design axes (a stacked design's loss is the sum of its
    members' losses, and its cost the sum of their costs)."""
    parts = batch_losses(design, problem, key, n_volumes, n_muons, loss, settings, readout)
    return LossBreakdown(task=parts.task.sum(), budget=parts.budget.sum(), cost=parts.cost.sum())


def _weighted(total: torch.Tensor, settings: TrainingSettings, world: str, scales: dict[str, float]) -> torch.Tensor:
    """The epoch's objective: its loss, or with normalised robust training the loss divided by
    the running mean of the losses in its ``world`` (updated here, :data:`WORLD_SCALE_DECAY`), so
    that each world counts by its relative improvement."""
    if not settings.systematics or settings.systematics_weighting != "normalised":
        return total
    value = abs(float(total.detach()))
    if not math.isfinite(value):
        return total  # a non-finite loss: the step is skipped below
    old = scales.get(world)
    scales[world] = value if old is None else (1 - WORLD_SCALE_DECAY) * old + WORLD_SCALE_DECAY * value
    return total / max(scales[world], 1e-12)


def epoch_variation(settings: TrainingSettings, epoch: int) -> Variation:
    """The world of ``epoch``'s training batch: the nominal one without ``settings.systematics``,
    else one drawn uniformly from the nominal one and those variations by a generator keyed by
    the seed and the epoch (so a resumed run draws the same)."""
    if not settings.systematics:
        return NOMINAL
    worlds = (NOMINAL, *settings.systematics)
    draw = epoch if settings.resample else 0
    generator = key_generator((settings.seed, VARIATION_STREAM, draw))
    return worlds[int(torch.randint(len(worlds), (1,), generator=generator))]


def training_batch_loss(
    design: Design,
    problem: Problem,
    settings: TrainingSettings,
    epoch: int,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    readout: Readout | None = None,
) -> LossBreakdown:
    """The loss of the training batch of ``epoch`` (the same volumes and muons for every design
    and every method: the gradient loop and the gradient-free baselines call this one), read out
    by ``readout`` (see :func:`batch_losses`), in the world of :func:`epoch_variation`."""
    draw = epoch if settings.resample else 0
    variation = epoch_variation(settings, epoch)
    return batch_loss(
        design,
        problem if variation is NOMINAL else problem.under(variation),
        (settings.seed, TRAINING_STREAM, draw),
        settings.volumes_per_epoch,
        settings.muons_per_volume,
        loss,
        settings,
        readout,
    )


def optimise(
    design: Design,
    problem: Problem,
    settings: TrainingSettings,
    *,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    optimiser: OptimiserFactory | None = None,
    stopping: StoppingRule | None = None,
    run_dir: PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
    evaluation_after_s: float = 0.0,
) -> History:
    """Optimise ``design`` in place for ``task``; returns the history (see the module docstring).

    Args:
        design: the design to train (its ``trainable`` groups move).
        problem: scene, task, muons.
        settings: epochs, batch sizes, learning rates, warm-up, annealing, seed.
        loss: task loss (default ``problem.task.loss``).
        optimiser: factory for every group's optimiser, overriding ``settings.optimisers``.
        stopping: stopping rule (default: run all epochs).
        run_dir: where checkpoints go (``run_dir/checkpoints/``, see
            :mod:`mutomo.optimise.checkpoint`); ``None``: none written. ``str`` or ``os.PathLike``.
        resume: continue from ``run_dir``'s newest readable checkpoint if there is one.
        progress: report progress (a bar on a terminal, a line every few epochs otherwise).
        evaluation_after_s: seconds of evaluation expected after training, counted in the time left.
    """
    if run_dir is not None:
        run_dir = writable_dir(run_dir, "run_dir")
    design.bounds.check_volume(problem.sample((0,)).volume)
    if settings.volumes_per_epoch < problem.task.min_batch:
        raise MutomoError(
            f"training.volumes_per_epoch must be >= {problem.task.min_batch} for this {problem.task.kind} task; "
            f"got {settings.volumes_per_epoch}"
        )
    loss_fn = loss if loss is not None else problem.task.loss
    groups = design.parameter_groups()
    base_lr = {g: settings.learning_rates.get(g, 0.0) for g in PARAMETER_GROUPS}
    optimisers = {}
    for g in design.trainable:
        factory = optimiser if optimiser is not None else OPTIMISERS[settings.optimisers.get(g, "adam")]
        optimisers[g] = factory(groups[g], base_lr[g])
    module = problem.task.module  # a learned inference, trained beside the detector (co-training)
    if module is not None and loss is None:
        groups[INFERENCE_GROUP] = list(module.parameters())
        base_lr[INFERENCE_GROUP] = INFERENCE_LEARNING_RATE
        optimisers[INFERENCE_GROUP] = adam(groups[INFERENCE_GROUP], INFERENCE_LEARNING_RATE)
    history = History()
    world_scales: dict[str, float] = {}  # running mean loss per world (normalised weighting)
    start = 0
    state = load_latest(run_dir) if resume and run_dir is not None else None
    if state is not None:
        design.load_state_dict(state["design"])
        if INFERENCE_GROUP in optimisers and module is not None and "inference" in state:
            module.load_state_dict(state["inference"])
        for g, o in optimisers.items():
            o.load_state_dict(state["optimisers"][g])
        history = History.from_json(state["history"])
        world_scales.update(state.get("world_scales", {}))
        start = state["epoch"] + 1
    s0, s1 = settings.smoothness
    report = Progress(problem.name, start, settings.epochs, enabled=progress, after_s=evaluation_after_s)
    for epoch in range(start, settings.epochs):
        t0 = time.perf_counter()
        frac = epoch / max(settings.epochs - 1, 1)
        smooth = s0 * (s1 / s0) ** frac
        design.smoothness = smooth
        warm = min(1.0, (epoch + 1) / max(settings.warmup_epochs, 1))
        f = settings.final_lr_fraction
        decay = f + (1 - f) * 0.5 * (1 + math.cos(math.pi * frac))
        lrs = {g: base_lr[g] * warm * decay for g in optimisers}
        for g, o in optimisers.items():
            for pg in o.param_groups:
                pg["lr"] = lrs[g]
        parts = training_batch_loss(design, problem, settings, epoch, loss_fn)
        for o in optimisers.values():
            o.zero_grad()
        world = epoch_variation(settings, epoch).name  # the world training_batch_loss simulated
        objective = _weighted(parts.total, settings, world, world_scales)
        if objective.requires_grad:  # else no muon of the batch saw the trainable panels: no gradient
            objective.backward()
        grads = [p.grad for g in optimisers for p in groups[g] if p.grad is not None]
        finite = all(bool(torch.isfinite(gr).all()) for gr in grads) and math.isfinite(float(parts.total.detach()))
        if finite:
            for o in optimisers.values():
                o.step()
            design.project_()
        validation = None
        last = epoch == settings.epochs - 1
        if settings.validation_volumes and ((epoch + 1) % settings.validate_every == 0 or last):
            with torch.no_grad():
                vparts = batch_loss(
                    design,
                    problem,
                    (settings.seed, VALIDATION_STREAM),
                    max(settings.validation_volumes, 8),
                    settings.muons_per_volume,
                    loss_fn,
                    settings,
                )
            validation = float(vparts.total)
        record = EpochRecord(
            epoch=epoch,
            loss=parts.as_floats(),
            validation=validation,
            learning_rates=lrs,
            smoothness=smooth,
            skipped_step=not finite,
            seconds=time.perf_counter() - t0,
            design=design.describe(),
            variation=world,
        )
        history.records.append(record)
        report.epoch(epoch, record.loss, validation)
        if run_dir is not None:
            save_checkpoint(
                run_dir,
                {
                    "epoch": epoch,
                    "design": design.state_dict(),
                    "optimisers": {k: o.state_dict() for k, o in optimisers.items()},
                    "world_scales": dict(world_scales),
                    **({"inference": module.state_dict()} if INFERENCE_GROUP in optimisers and module else {}),
                    "history": history.to_json(),
                },
            )
        if stopping is not None and stopping(history):
            break
    report.close()
    return history
