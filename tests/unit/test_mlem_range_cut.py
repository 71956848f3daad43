"""The momentum prior's range cut redone under each material a voxel's evidence tries
and each class's momentum in the voxel (:meth:`mutomo.reco.momentum.ClassRanges.under`, ML/EM's
``range_cut``): against an independent forward CSDA chain through the PUMAS range tables (scipy
root-finding), against the prior's own cut for the nominal medium, inside the per-voxel
likelihoods against an explicit numpy mixture, and its refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import brentq

from mutomo.config import build_problem, load_config, parse_config
from mutomo.errors import MutomoError
from mutomo.materials import get_material
from mutomo.reco import ExpectedMomentum, MaximumLikelihoodEM
from mutomo.reco.mlem import voxel_evidence, voxel_log_likelihoods
from mutomo.reco.mlem.evidence import EVIDENCE_FLOOR
from mutomo.tasks.presence import Presence
from mutomo.units import HIGHLAND_E0, MUON_MASS
from mutomo.volume.energy_loss import pumas_csda_range
from tests.unit.test_mlem import CLASSES, D, DiscretePrior, toy

URANIUM, LEAD, WATER = (get_material(n) for n in ("uranium", "lead", "water"))


def areal_range(material, kinetic: float) -> float:
    """CSDA range (kg/m^2) of a muon of kinetic energy ``kinetic`` (GeV) in ``material``."""
    return float(pumas_csda_range(material, np.array([kinetic]))[0]) * material.density


def slowed(kinetic: float, material, areal: float) -> float:
    """Kinetic energy (GeV) left after ``areal`` (kg/m^2) of ``material``, 0 if the muon stops."""
    left = areal_range(material, kinetic) - areal
    return (
        brentq(lambda x: areal_range(material, x) - left, 1e-3, kinetic) if left > areal_range(material, 1e-3) else 0.0
    )


def residual_range(kinetic: float, segments) -> float:
    """Forward CSDA chain: the muon enters with ``kinetic`` (GeV) and crosses each ``(material,
    areal density kg/m^2)`` in turn; its range left (kg/m^2 of the last material) on leaving, or
    the (negative) shortfall where it stops."""
    t = kinetic
    for i, (material, areal) in enumerate(segments):
        if t <= 0:
            return -areal  # stopped in the segment before
        left = areal_range(material, t) - areal
        if left <= 0 or i == len(segments) - 1:
            return left
        t = slowed(t, material, areal)
    return math.inf


def water_prior(height: float = 0.2) -> tuple[ExpectedMomentum, object]:
    """The prior of a water volume of ``height`` (m) and the two-layer toy's tracks."""
    t = toy(400, [(height / 2, 0.0176), (height / 2, 0.3608)], seed=5, track_sigma=(2e-4, 1e-3), p_classes=CLASSES)
    return ExpectedMomentum(t.volume, "water", n_bins=12), t


def kept_fractions(got: torch.Tensor, spectrum: torch.Tensor) -> torch.Tensor:
    """``(K,)`` the fraction of each bin a normalised log prior keeps, the hardest bin's taken as 1."""
    ratio = got - spectrum
    return torch.exp(ratio - ratio[-1])


def test_each_bin_keeps_what_a_forward_csda_chain_through_the_material_leaves_crossing():
    """Ten muons, a uranium and a lead voxel at three depths of a 2 m water path: the least
    momentum to cross, found by root-finding on a forward CSDA chain (the water before, the
    voxel's material, the water after; PUMAS ranges, scipy), cuts each bin where the method cuts
    it (the part of the bin above it, flat in ln p, to 0.3 % of a bin), and each kept bin's
    momentum in the middle of the voxel is the forward chain's from the kept part's centre (to
    0.5 %)."""
    prior, t = water_prior(height=2.0)
    ranges = prior.class_ranges(t.data.incoming, t.data.outgoing)
    log_p, h = ranges.log_momentum.numpy(), ranges.half_width
    muon = torch.arange(10)
    partial = 0
    for material, length in ((URANIUM, 0.1), (LEAD, 0.3)):
        for depth in (0.0, 0.5, 0.9):  # the fraction of the rest of the path that comes before the voxel
            path = ranges.path[muon]
            tail = (path - length) * (1 - depth)
            got, momentum = ranges.under(material, muon, torch.full((10,), length, dtype=D), tail)
            assert torch.allclose(torch.logsumexp(got, -1), torch.zeros(10, dtype=D), atol=1e-12)
            for i in range(10):
                before = float(path[i] - length - tail[i])
                segments = [(WATER, WATER.density * before), (material, material.density * length)]
                segments.append((WATER, WATER.density * float(tail[i])))
                t_min = brentq(lambda x, s=segments: residual_range(x, s), 1e-3, 1e4, xtol=1e-9)
                log_p_min = 0.5 * math.log(t_min**2 + 2 * MUON_MASS * t_min)
                low = np.maximum(log_p - h, log_p_min)
                expected = np.clip((log_p + h - low) / (2 * h), 0, 1)
                got_fraction = kept_fractions(got[i], ranges.log_spectrum[i]).numpy()
                assert got_fraction == pytest.approx(expected, abs=3e-3)
                partial += int(((expected > 0.01) & (expected < 0.99)).sum())
                for k in np.nonzero(expected > 0.01)[0]:
                    p_in = math.exp(0.5 * (low[k] + log_p[k] + h))
                    entering = math.sqrt(p_in**2 + MUON_MASS**2) - MUON_MASS
                    middle = slowed(slowed(entering, WATER, segments[0][1]), material, segments[1][1] / 2)
                    assert float(momentum[i, k]) == pytest.approx(
                        math.sqrt(middle**2 + 2 * MUON_MASS * middle), rel=5e-3
                    )
    assert partial >= 50  # every muon's least momentum falls inside a bin


def test_the_nominal_medium_keeps_more_than_half_of_the_bins_the_priors_own_cut_keeps():
    """With the voxel holding the nominal background itself, wherever it lies on the path, the
    bins kept more than half are those :meth:`ExpectedMomentum.prior`'s cut keeps (a bin whose
    centre has the range to cross)."""
    prior, t = water_prior(height=2.0)
    ranges = prior.class_ranges(t.data.incoming, t.data.outgoing)
    log_prior, _ = prior.prior(t.data.incoming, t.data.outgoing)
    n = log_prior.shape[0]
    muon = torch.arange(n)
    gen = torch.Generator().manual_seed(1)
    length = 0.05 + 0.3 * torch.rand(n, generator=gen, dtype=D)
    tail = (ranges.path - length) * torch.rand(n, generator=gen, dtype=D)
    got = ranges.under(WATER, muon, length, tail)[0]
    fraction = torch.stack([kept_fractions(g, s) for g, s in zip(got, ranges.log_spectrum, strict=True)])
    assert torch.equal(fraction > 0.5, torch.isfinite(log_prior))
    assert int((~torch.isfinite(log_prior)).sum()) > n  # the cut bites: 2 m of water stop 0.1-0.4 GeV/c


def test_a_denser_material_never_keeps_more_classes():
    prior, t = water_prior()
    ranges = prior.class_ranges(t.data.incoming, t.data.outgoing)
    muon = torch.arange(50)
    length, tail = torch.full((50,), 0.1, dtype=D), torch.full((50,), 0.05, dtype=D)
    kept = [torch.isfinite(ranges.under(m, muon, length, tail)[0]) for m in (WATER, LEAD, URANIUM)]
    assert bool((kept[1] <= kept[0]).all() and (kept[2] <= kept[1]).all())
    assert int(kept[2].sum()) < int(kept[0].sum())


def numpy_voxel_log_likelihood_under(problem, rho: np.ndarray, voxel: int, material) -> float:
    """Independent evaluation of l_j(material) with class ranges: every muon crossing ``voxel``,
    its class prior cut for that material there (``ClassRanges.under``) and the voxel's term of
    its 4 x 4 covariance scaled by each class's momentum in the voxel, the rest of the path by the
    class's own; log-sum-exp over the classes."""
    paths = problem.paths
    muon, vox = paths.muon.numpy(), paths.voxel.numpy()
    w = paths.weight_matrices().numpy()
    k = problem.classes
    scale = problem.scale.numpy().reshape(-1, k)
    noise = problem.noise.numpy().reshape(-1, k, 4, 4)[:, 0]
    data = problem.deflection.numpy().reshape(-1, k, 4)[:, 0]
    weight = problem.weight.numpy().reshape(-1, k).sum(1)
    total = 0.0
    for e in np.nonzero(vox == voxel)[0]:
        i = muon[e]
        log_prior, p = (x.numpy()[0] for x in problem.ranges.under(
            material, paths.muon[e : e + 1], paths.length[e : e + 1], paths.tail[e : e + 1]
        ))  # fmt: skip
        c_voxel = (HIGHLAND_E0 * np.sqrt(p**2 + MUON_MASS**2) / p**2) ** 2
        others = (muon == i) & (vox != voxel)
        rest = (w[:, others] * rho[vox[others]]).sum(1)
        own = w[:, e] / material.x0
        terms = []
        for c in range(k):
            s_ = scale[i, c] * rest + c_voxel[c] * own
            sigma = np.kron(np.eye(2), np.array([[s_[0], s_[1]], [s_[1], s_[2]]])) + noise[i]
            quad = data[i] @ np.linalg.solve(sigma, data[i])
            terms.append(log_prior[c] - 0.5 * np.linalg.slogdet(sigma)[1] - 0.5 * quad - 2 * math.log(2 * math.pi))
        total += weight[i] * np.logaddexp.reduce(terms)
    return float(total)


def test_the_per_voxel_likelihoods_use_each_materials_cut_and_momenta_and_materials_without_ranges_change_nothing():
    """Iron over water in 0.1 m layers under a 12-class water prior: with class ranges, each
    voxel's log-likelihood under uranium, lead and water equals the numpy mixture whose prior is
    each muon's spectrum cut for that material in that voxel and renormalised, and whose voxel
    term scatters at each class's momentum there; without them (``range_cut`` off), a material
    is only its 1 / X0."""
    prior, t = water_prior()
    with_cut = MaximumLikelihoodEM(iterations=10, path="straight", momentum_prior=prior, range_cut=True)
    problem = with_cut.problem(t.data, t.volume)
    assert problem.ranges is not None and problem.ranges.log_spectrum.shape[1] == problem.classes
    rho = with_cut._reconstruct(problem, with_error=False).inverse_x0.reshape(-1)
    ones = torch.ones_like(rho)
    materials = [URANIUM, LEAD, WATER]
    got = voxel_log_likelihoods(rho, problem, ones, materials)
    paths = problem.paths
    for j in range(2):
        for h, m in enumerate(materials):
            expected = numpy_voxel_log_likelihood_under(problem, rho.numpy(), j, m)
            assert float(got[h, j]) == pytest.approx(expected, rel=1e-10, abs=1e-8)
    # Uranium's prior is harder than lead's for the same muons: the cut is not the nominal one.
    crossing = paths.voxel == 0
    u, pb = (problem.ranges.under(m, paths.muon[crossing], paths.length[crossing], paths.tail[crossing])[0]
             for m in (URANIUM, LEAD))  # fmt: skip
    log_p = problem.ranges.log_momentum
    assert bool(((u.exp() * log_p).sum(-1) > (pb.exp() * log_p).sum(-1)).all())

    off = MaximumLikelihoodEM(iterations=10, path="straight", momentum_prior=prior).problem(t.data, t.volume)
    assert off.ranges is None
    as_levels = voxel_log_likelihoods(rho, off, ones, [1 / m.x0 for m in materials])
    assert torch.equal(voxel_log_likelihoods(rho, off, ones, materials), as_levels)
    # Numbers keep the nominal cut and momenta with ranges too: only a constant per muon (the
    # renormalisation) moves.
    levels = voxel_log_likelihoods(rho, problem, ones, [1 / m.x0 for m in materials])
    assert torch.allclose(levels - levels[0], as_levels - as_levels[0], atol=1e-8)
    # The two-pass evidence weighs materials too: its first pass is uranium against lead (the
    # densest innocent below it), an upper bound of the exact evidence, which it is above the floor.
    two_pass = voxel_evidence(rho, problem, ones, [URANIUM], [LEAD, WATER])
    exact = got[0] - got[1:].amax(0)
    assert torch.allclose(two_pass, got[0] - got[1], atol=1e-10) and bool((two_pass >= exact - 1e-10).all())
    above = two_pass > EVIDENCE_FLOOR
    assert torch.allclose(two_pass[above], exact[above], atol=1e-10)


def test_the_range_cut_leaves_the_em_fit_alone():
    prior, t = water_prior()
    fits = [
        MaximumLikelihoodEM(iterations=5, path="straight", momentum_prior=prior, range_cut=cut).reconstruct(
            t.data, t.volume
        )
        for cut in (False, True)
    ]
    assert torch.equal(fits[0].inverse_x0, fits[1].inverse_x0)


def test_a_range_cut_without_class_ranges_is_refused():
    t = toy(50, [(0.1, 0.0176), (0.1, 0.3608)], seed=1, p_classes=CLASSES)
    method = MaximumLikelihoodEM(momentum_prior=DiscretePrior(*CLASSES), range_cut=True)
    with pytest.raises(MutomoError, match="range_cut .* class ranges"):
        method.problem(t.data, t.volume)
    with pytest.raises(MutomoError, match="range_cut .* class ranges"):
        MaximumLikelihoodEM(range_cut=True).problem(t.data, t.volume)  # true momenta: no prior at all


@pytest.mark.parametrize(
    "task",
    [
        {"inference": "mlem", "momentum": "true", "statistic": "likelihood", "range_cut": True},
        {"inference": "mlem", "momentum": "marginal", "statistic": "material", "range_cut": True},
    ],
)
def test_a_range_cut_the_task_cannot_use_is_refused_naming_the_field(task):
    with pytest.raises(MutomoError, match="range_cut .* statistic 'likelihood' and momentum 'marginal'"):
        parse_config({"extends": "border_portal", "task": task})
    with pytest.raises(MutomoError, match="range_cut .* statistic 'likelihood'"):
        Presence(inference="mlem", statistic="material", range_cut=True)


def test_the_shipped_range_cut_portal_builds_materials_as_hypotheses():
    problem = build_problem(load_config("configs/border_portal_range_cut.toml"))
    task = problem.task
    assert isinstance(task, Presence) and isinstance(task.method, MaximumLikelihoodEM)
    assert task.method.range_cut and task.method.outlier_fraction == pytest.approx(1e-3)
    assert [m.name for m in task.hypotheses[0]] == ["uranium"] and "lead" in [m.name for m in task.hypotheses[1]]
