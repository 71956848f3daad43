"""The ML/EM reconstruction as a voxel method: :class:`MaximumLikelihoodEM` and its result."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import torch
import torch.utils.checkpoint
from torch import Tensor

from mutomo.errors import MutomoError
from mutomo.materials import get_material
from mutomo.reco.maps import ScatterData, VoxelMap
from mutomo.reco.mlem.evidence import Hypothesis, voxel_evidence
from mutomo.reco.mlem.information import fisher_diagonal, marginal_variance, sandwich_variance
from mutomo.reco.mlem.model import (
    MAX_MEASUREMENT_VARIANCE,
    EMProblem,
    _cast,
    _em_step,
    _highland_scale,
    _log_likelihood,
    _moments,
    em_update,
    log_likelihood,
    momentum_along_path,
    posterior_momentum,
    transverse_scatters,
    with_momentum_classes,
    with_outliers,
)
from mutomo.reco.mlem.paths import PathLengths, PathModel, muon_path, path_lengths
from mutomo.reco.momentum import MomentumPrior, RangedMomentumPrior
from mutomo.units import HIGHLAND_E0
from mutomo.volume.grid import PassiveVolume
from mutomo.volume.scattering import highland_g, highland_inverse

# S07's nominal momentum (GeV/c) in the scattering density lambda = (E0 / p0)^2 / X0.
NOMINAL_MOMENTUM = 3.0
# Largest change of ln rho of a voxel beyond its EM step in one over-relaxed step (a factor e^3 = 20).
MAX_LOG_STEP = 3.0
#: The uncertainties :class:`MaximumLikelihoodEM` can report (its ``error``).
ERRORS = ("robust", "conditional", "marginal", "sandwich")


@dataclass(frozen=True)
class MLEMResult:
    """The ML/EM reconstruction, with what it was computed from.

    Attributes:
        inverse_x0: ``(*batch, nx, ny, nz)`` the EM's ``rho = 1 / X0`` (m^-1), Rossi model (no
            log term; see :attr:`x0` for the corrected one).
        density: ``(*batch, nx, ny, nz)`` the scattering density ``lambda = (E0 / p0)^2 rho``
            of S07 (m^-1, nominal ``p0`` of the method).
        x0: ``(*batch, nx, ny, nz)`` radiation length (m): ``1 / rho`` with Highland's log term
            corrected if the method's ``log_term``; 0 where unmeasured.
        uncertainty: one standard deviation of ``x0`` (m) from the Fisher information
            (robust, conditional on the other voxels, marginal, or sandwich: the method's ``error``); 0 where
            unmeasured.
        measured: bool, voxels crossed by at least ``min_path`` (and more than 0) of weighted path.
        weight: muon weight that crossed each voxel.
        path: weighted path length through each voxel (m).
        log_likelihood: ``(iterations + 1, *batch)`` the log-likelihood before each iteration
            and after the last (detached).
        momentum: with a momentum prior, ``(mu,)`` each muon of the data's posterior effective
            momentum at the reconstructed map (GeV/c, detached; :func:`posterior_momentum`),
            the data's own momentum for the muons the EM did not use (zero weight, or a path
            that misses the grid); ``None`` with given momenta.
    """

    inverse_x0: Tensor
    density: Tensor
    x0: Tensor
    uncertainty: Tensor
    measured: Tensor
    weight: Tensor
    path: Tensor
    log_likelihood: Tensor
    momentum: Tensor | None = None

    def log_term_factor(self) -> Tensor:
        """``(V,)`` flat: each measured voxel's ``rho / (1 / X0)``, the Highland log-term factor
        between the EM's density and the reported X0 (1 where unmeasured, whose ``x0`` is 0): a
        material's 1/X0 times it is the EM's density (:mod:`mutomo.reco.mlem.evidence`)."""
        rho, measured = self.inverse_x0.reshape(-1), self.measured.reshape(-1)
        return torch.where(measured, rho * self.x0.reshape(-1), torch.ones_like(rho))


class MaximumLikelihoodEM:
    """ML/EM reconstruction of the scattering density (Schultz et al. 2007; module docstring).

    Args:
        iterations: EM iterations (>= 1), unrolled for the gradient.
        initial_x0: starting radiation length (m), > 0: one number, or a tensor broadcasting to
            ``(*batch, nx, ny, nz)`` (e.g. another method's map). ``None`` (default): the ML fit
            of one uniform density to the whole volume (per batch entry), by ``uniform_iterations``
            EM steps from water's X0 on the problem with all voxels merged (cheap: O(muons)).
            The EM converges slowly where many voxels share the muons (from water, 10 cm voxels of
            uniform concrete are still at 1.8 x their X0 after 20 iterations); the uniform start
            puts the background right at once.
        uniform_iterations: EM steps of the uniform fit (>= 1).
        path: ``"poca"`` (entry -> PoCA -> exit, default) or ``"straight"`` (entry -> exit).
        min_path: voxels crossed by less weighted path length than this (m) are unmeasured.
        measurement_error: add the track fits' covariance to each muon's model covariance.
        log_term: correct the reported X0 for Highland's log term (module docstring).
        nominal_momentum: ``p0`` (GeV/c) of the scattering density ``lambda`` reported in
            :attr:`MLEMResult.density` (S07: 3 GeV/c); it does not change X0.
        checkpoint: when a gradient is being recorded, recompute each iteration in the backward
            pass instead of storing its intermediate tensors: the memory of one iteration instead
            of all of them, for one more forward pass per iteration (which is ~1/6 of the
            backward's cost; benchmarks/README.md).
        momentum_prior: reconstruct without the momenta: ``None`` (default) uses the data's
            ``momentum_prior`` if it has one, else each muon's momentum in the data (the truth
            or an estimate). A
            :class:`~mutomo.reco.momentum.MomentumPrior`, e.g. an
            :class:`~mutomo.reco.ExpectedMomentum` (with ``n_bins`` 12-24; its deflection
            setting is not used: :meth:`~mutomo.reco.ExpectedMomentum.prior` is the flux spectrum
            at the muon's zenith above the range cut, on its momentum grid), makes each muon's
            momentum a hidden variable with that prior: the EM's E-step also
            takes the posterior of each muon's momentum class at the current density map, and
            the likelihood is the mixture over classes (class docstring). A muon that scatters
            much is then read as slow only as far as the rest of the map, seen by every other
            muon, does not explain it; one momentum per muon (``ExpectedMomentum`` with a nominal
            map) explained a dense object away (benchmarks/README.md, "Reconstruction without
            the truth"). Costs ``n_bins`` times the memory and time of an iteration.
        acceleration: the largest over-relaxation exponent (>= 1; 1: plain EM steps), module
            docstring.
        error: the reported uncertainty: ``"robust"`` (default; ``max(J_jj / I_jj^2, 1 /
            I_jj)``, :func:`sandwich_variance` with ``at_least_fisher``: the sandwich, which
            covers the deflections' non-Gaussian tails, never below the Fisher error),
            ``"conditional"`` (``1 / I_jj``, the Fisher error with the other voxels known),
            ``"marginal"`` (``(I^-1)_jj``, the other voxels unknown: :func:`marginal_variance`)
            or ``"sandwich"`` (``J_jj / I_jj^2`` alone). Pulls of each: benchmarks/README.md,
            "Voxel X0 pulls".
        outlier_fraction: ``epsilon`` in ``[0, 0.5)``, the prior probability that a muon's
            deflection is not described by the Gaussian model (a hard single scatter, a bad
            track): each muon's likelihood gets a broad component of that weight
            (:func:`~mutomo.reco.mlem.model.with_outliers`), which takes a muon no density
            explains instead of letting it drive the voxels on its path up. 0 (default): none.
        range_cut: with a momentum prior that has class ranges (:class:`~mutomo.reco.ExpectedMomentum`),
            the material evidence (:meth:`evidence_map`) redoes the prior's range cut under each
            material it tries in a voxel, and scatters each class there at the momentum it has
            left in it (:meth:`~mutomo.reco.momentum.ClassRanges.under`): the muons that crossed
            10 cm of uranium were harder than those that crossed the nominal cargo, which the
            prior alone does not know (benchmarks/README.md, "What a perfect reconstruction
            would detect"). The EM and the map it fits are unchanged. On the border portal it ties
            the evidence without it (40 cargos; benchmarks/README.md, "The range cut under each
            hypothesis"). ``False`` (default): every hypothesis keeps the nominal cut.

    Example:
        >>> method = MaximumLikelihoodEM(iterations=10)
        >>> method.name
        'mlem'
    """

    name = "mlem"

    def __init__(
        self,
        iterations: int = 20,
        initial_x0: float | Tensor | None = None,
        uniform_iterations: int = 10,
        path: PathModel = "poca",
        min_path: float = 0.5,
        measurement_error: bool = True,
        log_term: bool = True,
        nominal_momentum: float = NOMINAL_MOMENTUM,
        checkpoint: bool = True,
        momentum_prior: MomentumPrior | None = None,
        acceleration: float = 16.0,
        error: Literal["conditional", "marginal", "sandwich", "robust"] = "robust",
        outlier_fraction: float = 0.0,
        range_cut: bool = False,
    ) -> None:
        if error not in ERRORS:
            raise MutomoError(f"error must be one of {ERRORS}; got {error!r}")
        if not (isinstance(acceleration, (int, float)) and math.isfinite(acceleration) and acceleration >= 1):
            raise MutomoError(f"acceleration (the largest over-relaxation exponent) must be >= 1; got {acceleration!r}")
        for name, value in (("iterations", iterations), ("uniform_iterations", uniform_iterations)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise MutomoError(f"{name} must be an integer >= 1; got {value!r}")
        bad = initial_x0 is not None and (
            not bool(torch.isfinite(initial_x0).all() and (initial_x0 > 0).all())
            if isinstance(initial_x0, Tensor)
            else not (math.isfinite(initial_x0) and initial_x0 > 0)
        )
        if bad:
            raise MutomoError(f"initial_x0 (the initial radiation length, m) must be finite and > 0; got {initial_x0}")
        if isinstance(outlier_fraction, bool) or not (
            isinstance(outlier_fraction, (int, float)) and 0 <= outlier_fraction < 0.5
        ):
            raise MutomoError(f"outlier_fraction must be a number in [0, 0.5); got {outlier_fraction!r}")
        if path not in ("poca", "straight"):
            raise MutomoError(f"path must be 'poca' or 'straight'; got {path!r}")
        if not min_path >= 0:
            raise MutomoError(f"min_path must be >= 0 m; got {min_path}")
        if not nominal_momentum > 0:
            raise MutomoError(f"nominal_momentum must be > 0 GeV/c; got {nominal_momentum}")
        self.iterations = iterations
        self.initial_x0 = initial_x0
        self.uniform_iterations = uniform_iterations
        self.path: PathModel = path
        self.min_path = min_path
        self.measurement_error = measurement_error
        self.log_term = log_term
        self.nominal_momentum = nominal_momentum
        self.checkpoint = checkpoint
        self.momentum_prior = momentum_prior
        self.acceleration = float(acceleration)
        self.error = error
        self.outlier_fraction = float(outlier_fraction)
        self.range_cut = bool(range_cut)

    def __call__(self, data: ScatterData, volume: PassiveVolume) -> VoxelMap:
        """Reconstruct; the score is ``1 / X0`` (m^-1). Maps are ``(*batch, nx, ny, nz)``."""
        return self.voxel_map(self.reconstruct(data, volume))

    def problem(self, data: ScatterData, volume: PassiveVolume) -> EMProblem:
        """Path lengths, transverse data, scales and counts of the muons of nonzero weight."""
        keep = torch.nonzero(data.weight.detach() > 0).squeeze(1)
        incoming, outgoing = data.incoming.select(keep), data.outgoing.select(keep)
        poca = data.scatters.poca.index_select(0, keep)
        paths = path_lengths(muon_path(incoming, outgoing, poca, volume, self.path), volume)
        # Muons whose path misses the grid carry no information on it: drop them too.
        crossed = torch.zeros(keep.numel(), dtype=torch.bool, device=keep.device)
        crossed[paths.muon] = True
        if not bool(crossed.all()):
            renumber = torch.cumsum(crossed.long(), 0) - 1
            paths = replace(paths, muon=renumber[paths.muon], n_muons=int(crossed.sum()))
            rows = torch.nonzero(crossed).squeeze(1)
            keep = keep[rows]
            incoming, outgoing = incoming.select(rows), outgoing.select(rows)
        n_voxels = paths.n_voxels
        batch = None if data.batch is None else data.batch.index_select(0, keep)
        if batch is not None:
            paths = replace(
                paths,
                voxel=paths.voxel + batch.index_select(0, paths.muon) * n_voxels,
                n_voxels=n_voxels * data.batch_size,
            )
        p = data.momentum.index_select(0, keep)
        scale = _highland_scale(p)
        scale_entry = scale.index_select(0, paths.muon)
        if data.momentum_loss is not None:
            loss = data.momentum_loss.index_select(0, keep)
            scale_entry = _highland_scale(momentum_along_path(paths, p, loss))
        weight = data.weight.index_select(0, keep)
        # A muon whose tracks leave its angle uncertain by over a radian, or its displacement by
        # over a metre (e.g. a side whose panels all sit at one height: no lever arm), carries no
        # scattering information; its covariance (~1e10 and more) would overflow the float32
        # determinants of every EM step, and their gradients, into inf and NaN. It gets no weight,
        # and its tracks' covariances are set to 0 before they are propagated.
        with torch.no_grad():
            probe = transverse_scatters(incoming, outgoing, volume.z_low, self.measurement_error).noise
            useless = ~(probe.diagonal(dim1=-2, dim2=-1).amax(-1) <= MAX_MEASUREMENT_VARIANCE)
        if bool(useless.any()):
            incoming, outgoing = (
                replace(t, covariance=torch.where(useless[:, None, None], torch.zeros_like(t.covariance), t.covariance))
                for t in (incoming, outgoing)
            )
            weight = torch.where(useless, torch.zeros_like(weight), weight)
        obs = transverse_scatters(incoming, outgoing, volume.z_low, self.measurement_error)
        noise = obs.noise
        w_muon = weight.index_select(0, paths.muon)
        count = torch.zeros(paths.n_voxels, dtype=weight.dtype, device=weight.device).index_add(0, paths.voxel, w_muon)
        problem = EMProblem(
            paths=paths,
            scaled_w=paths.weight_matrices() * scale_entry,
            deflection=obs.deflection,
            noise=noise,
            scale=scale,
            weight=weight,
            count=count,
            batch=batch,
            grid_shape=(*data.batch_shape, *volume.shape),
            muons=keep,
        )
        prior = self.momentum_prior if self.momentum_prior is not None else data.momentum_prior
        ranges = None
        if self.range_cut:
            if not isinstance(prior, RangedMomentumPrior):
                raise MutomoError(
                    "range_cut redoes the momentum prior's range cut under each material the evidence tries: it "
                    f"needs a momentum prior with class ranges (ExpectedMomentum, momentum 'marginal'); got {prior!r}"
                )
            ranges = prior.class_ranges(incoming, outgoing)
        if prior is not None:
            problem = with_momentum_classes(problem, *prior.prior(incoming, outgoing), ranges=ranges)
        return with_outliers(problem, self.outlier_fraction)

    def initial(self, problem: EMProblem) -> Tensor:
        """``(V,)`` the starting ``rho = 1 / X0`` (m^-1), flat over batch and grid: from
        ``initial_x0``, or the uniform ML fit (see the class docstring)."""
        dtype, device = problem.weight.dtype, problem.weight.device
        if self.initial_x0 is not None:
            x0 = torch.as_tensor(self.initial_x0, dtype=dtype, device=device)
            return (1 / x0).expand(problem.grid_shape).reshape(-1)
        # One voxel per batch entry: W is additive over a muon's path, so merge its entries.
        n_batch = math.prod(problem.batch_shape)
        n_mu = problem.weight.shape[0] // problem.classes
        muon = torch.arange(n_mu, device=device)
        zero = torch.zeros(n_mu, dtype=dtype, device=device)
        merged = torch.stack([zero.index_add(0, problem.paths.muon, w) for w in problem.scaled_w])
        batch = problem.batch[:: problem.classes] if problem.batch is not None else torch.zeros_like(muon)
        count = torch.zeros(n_batch, dtype=dtype, device=device).index_add(0, batch, problem.per_muon(problem.weight))
        paths = PathLengths(muon=muon, voxel=batch, length=zero, tail=zero, n_muons=n_mu, n_voxels=n_batch)
        uniform = replace(problem, paths=paths, scaled_w=merged, count=count)
        rho = torch.full((n_batch,), 1 / get_material("water").x0, dtype=dtype, device=device)
        for _ in range(self.uniform_iterations):
            # Checkpointed as the iterations are: each step's per-muon intermediates (~80 a row)
            # would otherwise stay for the backward pass, ~8 GiB at 1e6 muons in 12 momentum classes.
            if self.checkpoint and torch.is_grad_enabled():
                rho = torch.utils.checkpoint.checkpoint(em_update, rho, uniform, use_reentrant=False)
            else:
                rho = em_update(rho, uniform)
        return rho.repeat_interleave(math.prod(problem.grid_shape[-3:]))

    def reconstruct(self, data: ScatterData, volume: PassiveVolume) -> MLEMResult:
        """Run the EM and convert to X0 (see :class:`MLEMResult`). In float32 the EM runs in
        float64 and its results are cast back: the 2 x 2 determinants of a muon's covariance
        range from ~1e-40 (a short path through air, micrometre tracking) to ~1e30, beyond
        float32, whose reciprocal and its derivative then overflow into inf and NaN."""
        work, dtype, result = self._fit(data, volume)
        if work.log_prior is not None and work.muons is not None:
            with torch.no_grad():
                p = posterior_momentum(result.inverse_x0.detach().reshape(-1), work)
            momentum = data.momentum.detach().clone()
            momentum[work.muons] = p.to(momentum.dtype)
            result = replace(result, momentum=momentum)
        return _cast(result, dtype) if dtype == torch.float32 else result

    def evidence_map(
        self, data: ScatterData, volume: PassiveVolume, targets: Sequence[Hypothesis], innocents: Sequence[Hypothesis]
    ) -> VoxelMap:
        """Reconstruct, then score each voxel by its evidence for a target material
        (:mod:`mutomo.reco.mlem.evidence`): ``max_t l(t) - max_b l(b)`` (nats) over the target
        materials and the innocent ones (or their inverse radiation lengths, m^-1; with
        ``range_cut``, materials redo the momentum prior's range cut), the other voxels
        at the fit (:func:`~mutomo.reco.mlem.evidence.voxel_evidence`: exact above its floor, an
        upper bound below). The map's ``score`` is that log-likelihood ratio where measured (0 elsewhere),
        with no X0 or error (the score is not a 1/X0). Runs in float64, like :meth:`reconstruct`."""
        work, dtype, result = self._fit(data, volume, with_error=False)  # the evidence reads no error
        rho = result.inverse_x0.reshape(-1)
        measured = result.measured.reshape(-1)
        evidence = voxel_evidence(rho, work, result.log_term_factor(), targets, innocents)
        score = torch.where(measured, evidence, torch.zeros_like(evidence)).reshape(result.measured.shape)
        weight = result.weight.to(dtype)
        return VoxelMap(method=self.name, score=score.to(dtype), weight=weight, measured=result.measured)

    def oracle_evidence_map(
        self,
        data: ScatterData,
        volume: PassiveVolume,
        true_x0: Tensor,
        targets: Sequence[Hypothesis],
        innocents: Sequence[Hypothesis],
    ) -> VoxelMap:
        """:meth:`evidence_map` with every other voxel at its true radiation length ``true_x0``
        (``(nx, ny, nz)``, m) instead of the fit: an oracle no scan has, the evidence a perfect
        reconstruction of the rest of the volume would leave each voxel. Knowing the rest can only
        add information about one voxel (the chain rule of relative entropy; Cover & Thomas,
        Elements of Information Theory, 2nd ed., Wiley 2006, section 2.5), so this is the upper
        reference of the fitted evidence on the same muons; no EM is run. Each voxel's density is
        its true ``1 / X0`` times its Highland log-term factor: the path-weighted mean, over the
        muons crossing it, of ``(1 + 0.038 ln t_i)^2`` at each muon's true thickness ``t_i = sum_j
        L_ij / X0_j`` (the factor the fit reports, evaluated at the truth; module docstring), 1
        without ``log_term``. Raises :class:`~mutomo.errors.MutomoError` unless ``true_x0`` has the
        volume's grid shape and is positive."""
        if tuple(true_x0.shape) != tuple(volume.shape) or not bool((true_x0 > 0).all()):
            raise MutomoError(
                f"oracle_evidence_map: true_x0 must be the volume's {tuple(volume.shape)} radiation lengths (m, > 0); "
                f"got shape {tuple(true_x0.shape)}"
            )
        work, dtype = self._working_problem(data, volume)
        inverse_x0 = (1 / true_x0.to(torch.float64)).expand(work.grid_shape).reshape(-1)
        weights = _PathWeights.of(work)
        factor = torch.ones_like(inverse_x0)
        if self.log_term:
            thickness = _along_path(work, inverse_x0)  # each muon's true t_i
            factor = weights.mean(highland_g(thickness) / thickness.clamp(min=1e-300))
        measured = self._measured(weights.total)
        evidence = voxel_evidence(inverse_x0 * factor, work, factor, targets, innocents)
        score = torch.where(measured, evidence, torch.zeros_like(evidence)).reshape(work.grid_shape)
        weight = work.count.reshape(work.grid_shape)
        return VoxelMap(
            method=self.name, score=score.to(dtype), weight=weight.to(dtype), measured=measured.reshape(work.grid_shape)
        )

    def _measured(self, path_sum: Tensor) -> Tensor:
        """``(V,)`` the voxels crossed by at least ``min_path`` of weighted path length (m),
        from each voxel's ``path_sum`` (``sum_i w_i L_ij``)."""
        return (path_sum >= self.min_path) & (path_sum > 0)

    def fit(self, data: ScatterData, volume: PassiveVolume) -> tuple[EMProblem, MLEMResult]:
        """The EM problem in its working precision (float64 for float32 data: :meth:`reconstruct`)
        and the fit on it, in that precision and without the X0 error: what a diagnosis of single
        voxels and muons reads (:func:`~mutomo.reco.mlem.voxel_log_likelihoods`,
        :func:`~mutomo.reco.mlem.outlier_posterior`; ``benchmarks/border_portal_cargo.py``)."""
        work, _, result = self._fit(data, volume, with_error=False)
        return work, result

    def _fit(
        self, data: ScatterData, volume: PassiveVolume, with_error: bool = True
    ) -> tuple[EMProblem, torch.dtype, MLEMResult]:
        """The problem in the EM's working precision (float64 for float32 data: :meth:`reconstruct`),
        the data's dtype, and the fit on that problem (``with_error=False``: without the X0
        error, NaN where measured: :meth:`_reconstruct`)."""
        work, dtype = self._working_problem(data, volume)
        return work, dtype, self._reconstruct(work, with_error)

    def _working_problem(self, data: ScatterData, volume: PassiveVolume) -> tuple[EMProblem, torch.dtype]:
        """The problem in the EM's working precision (float64 for float32 data: :meth:`reconstruct`)
        and the data's dtype."""
        problem = self.problem(data, volume)
        dtype = problem.weight.dtype
        return (_cast(problem, torch.float64) if dtype == torch.float32 else problem), dtype

    def posterior_momentum(self, data: ScatterData, volume: PassiveVolume) -> Tensor:
        """``(mu,)`` each muon's posterior effective momentum (GeV/c, detached) after
        reconstructing with its momentum marginalised (:attr:`MLEMResult.momentum`): for the
        methods that need one momentum per muon (``momentum = "posterior"`` in a configuration).
        Needs a momentum prior (``momentum_prior`` here or on the data)."""
        if self.momentum_prior is None and data.momentum_prior is None:
            raise MutomoError("posterior_momentum needs a momentum prior (momentum_prior here or on the data)")
        with torch.no_grad():
            momentum = self.reconstruct(data, volume).momentum
        assert momentum is not None
        return momentum

    def voxel_map(self, result: MLEMResult) -> VoxelMap:
        """The :class:`VoxelMap` of a reconstruction; its score is ``1 / X0`` (m^-1)."""
        r = result
        score = torch.where(r.measured, 1 / torch.where(r.measured, r.x0, torch.ones_like(r.x0)), 0.0)
        return VoxelMap(
            method=self.name, score=score, weight=r.weight, measured=r.measured, x0=r.x0, uncertainty=r.uncertainty
        )

    def _reconstruct(self, problem: EMProblem, with_error: bool = True) -> MLEMResult:
        """The EM on ``problem``; ``with_error=False`` skips the error (one more pass over the
        muons, two with the sandwich) and leaves ``uncertainty`` NaN where measured."""
        rho = self.initial(problem)
        n_batch = math.prod(problem.batch_shape)
        per_entry = math.prod(problem.grid_shape[-3:])
        omega = torch.ones(n_batch, dtype=rho.dtype, device=rho.device)

        def step(rho: Tensor, omega: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            m = _moments(rho, problem)
            value = _log_likelihood(problem, m)
            rho_em = _em_step(rho, problem, m)
            if self.acceleration == 1.0:
                return rho_em, value, omega
            # Over-relaxed step in ln rho, kept only where it does not lower the likelihood
            # (class docstring): every accepted point is at least as likely as the current one,
            # and the fallback, the EM point, is too.
            exponent = omega.repeat_interleave(per_entry)
            log_em = torch.log(rho_em / rho)
            trial = rho_em * torch.exp(((exponent - 1) * log_em).clamp(-MAX_LOG_STEP, MAX_LOG_STEP))
            gain = _log_likelihood(problem, _moments(trial, problem)) - value
            better = (gain >= 0).reshape(-1).detach()
            rho_next = torch.where(better.repeat_interleave(per_entry), trial, rho_em)
            omega = torch.where(better, (2 * omega).clamp(max=self.acceleration), torch.ones_like(omega))
            return rho_next, value, omega

        history = []
        for _ in range(self.iterations):
            if self.checkpoint and torch.is_grad_enabled():
                rho, value, omega = torch.utils.checkpoint.checkpoint(step, rho, omega, use_reentrant=False)
            else:
                rho, value, omega = step(rho, omega)
            history.append(value.detach())
        with torch.no_grad():  # a record, not on the graph
            history.append(log_likelihood(rho, problem))
        weights = _PathWeights.of(problem)
        path_sum = weights.total
        measured = self._measured(path_sum)
        inverse_x0 = rho
        if self.log_term:
            raw = _along_path(problem, rho)
            inverse_x0 = rho / weights.mean(raw / highland_inverse(raw))  # (1 + 0.038 ln t)^2 per muon
        # Both finite and > 0 wherever a muon crossed (measured voxels were), taken only there.
        if not with_error:
            sigma_rho = torch.full_like(rho, math.nan)
        elif self.error != "conditional":
            if self.error == "marginal":
                variance = marginal_variance(rho, problem)
            else:
                variance = sandwich_variance(rho, problem, at_least_fisher=self.error == "robust")
            sigma_rho = torch.sqrt(torch.where(measured & (variance > 0), variance, torch.ones_like(variance)))
        else:
            fisher = fisher_diagonal(rho, problem)
            sigma_rho = torch.rsqrt(torch.where(measured, fisher, torch.ones_like(fisher)))
        safe = torch.where(measured, inverse_x0, torch.ones_like(inverse_x0))
        x0 = torch.where(measured, 1 / safe, 0.0)
        uncertainty = torch.where(measured, sigma_rho / (safe * rho), 0.0)  # dX0 = X0 drho / rho
        grid = problem.grid_shape
        return MLEMResult(
            inverse_x0=rho.reshape(grid),
            density=(HIGHLAND_E0 / self.nominal_momentum) ** 2 * rho.reshape(grid),
            x0=x0.reshape(grid),
            uncertainty=uncertainty.reshape(grid),
            measured=measured.reshape(grid),
            weight=problem.count.reshape(grid),
            path=path_sum.reshape(grid),
            log_likelihood=torch.stack(history),
        )


@dataclass(frozen=True)
class _PathWeights:
    """Each path entry's weight ``w_i L_ij`` (muon weight times length), with its muons and voxels,
    and each voxel's total ``sum_i w_i L_ij`` (``(V,)``)."""

    weight: Tensor
    muon: Tensor
    voxel: Tensor
    total: Tensor

    @classmethod
    def of(cls, problem: EMProblem) -> _PathWeights:
        paths = problem.paths
        weight = problem.per_muon(problem.weight).index_select(0, paths.muon) * paths.length
        total = torch.zeros(paths.n_voxels, dtype=weight.dtype, device=weight.device).index_add(0, paths.voxel, weight)
        return cls(weight, paths.muon, paths.voxel, total)

    def mean(self, per_muon: Tensor) -> Tensor:
        """``(V,)`` the path-weighted mean of a per-muon quantity (``(n,)``) over the muons crossing
        each voxel; 1 where none crosses."""
        summed = torch.zeros_like(self.total).index_add(
            0, self.voxel, self.weight * per_muon.index_select(0, self.muon)
        )
        crossed = self.total > 0
        return torch.where(crossed, summed / torch.where(crossed, self.total, 1.0), 1.0)


def _along_path(problem: EMProblem, inverse_x0: Tensor) -> Tensor:
    """``(n,)`` each muon's ``sum_j L_ij inverse_x0_j`` over its path (``inverse_x0`` flat ``(V,)``)."""
    paths = problem.paths
    along = paths.length * inverse_x0.index_select(0, paths.voxel)
    return torch.zeros_like(problem.per_muon(problem.weight)).index_add(0, paths.muon, along)
