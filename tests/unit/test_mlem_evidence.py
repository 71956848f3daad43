"""Each voxel's material evidence after ML/EM (:mod:`mutomo.reco.mlem.evidence`): the per-voxel
log-likelihoods against an independent numpy evaluation of the same mixture model, their
gradients, what the evidence says of uranium, iron and lead layers, and the likelihood presence
statistic built on it (configuration, refusals, a short run)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from mutomo.config import build_problem, load_config, parse_config
from mutomo.errors import MutomoError
from mutomo.materials import get_material
from mutomo.optimise.problem import SMOOTH, key_generator
from mutomo.reco import MaximumLikelihoodEM
from mutomo.reco.mlem import hypothesis_level, material_evidence, voxel_evidence, voxel_log_likelihoods
from mutomo.reco.mlem.evidence import EVIDENCE_FLOOR
from mutomo.reco.mlem.model import _cast
from mutomo.tasks.base import Observations
from mutomo.tasks.presence import Presence, split_presence
from mutomo.tasks.presence_statistics import PresenceMaps, likelihood_scores, statistic_scores
from tests.unit.test_mlem import CLASSES, D, DiscretePrior, toy

INV_X0 = {name: 1 / get_material(name).x0 for name in ("uranium", "lead", "iron", "water")}


def numpy_voxel_log_likelihood(problem, rho: np.ndarray, voxel: int, level: float) -> float:
    """Independent evaluation of l_j(h): explicit 4 x 4 covariances of every muon crossing
    ``voxel`` with that voxel at ``level`` (factor 1), log-sum-exp over the momentum classes."""
    muon = problem.paths.muon.numpy()
    vox = problem.paths.voxel.numpy()
    w = problem.paths.weight_matrices().numpy()  # (3, E), without the class scale
    k = problem.classes
    scale = problem.scale.numpy().reshape(-1, k)
    log_prior = problem.log_prior.numpy().reshape(-1, k)
    noise = problem.noise.numpy().reshape(-1, k, 4, 4)[:, 0]
    data = problem.deflection.numpy().reshape(-1, k, 4)[:, 0]
    weight = problem.weight.numpy().reshape(-1, k).sum(1)
    values = rho.copy()
    values[voxel] = level
    total = 0.0
    for i in np.unique(muon[vox == voxel]):
        entries = muon == i
        s = (w[:, entries] * values[vox[entries]]).sum(1)
        scatter = np.array([[s[0], s[1]], [s[1], s[2]]])
        terms = []
        for c in range(k):
            sigma = scale[i, c] * np.kron(np.eye(2), scatter) + noise[i]
            logdet = np.linalg.slogdet(sigma)[1]
            quad = data[i] @ np.linalg.solve(sigma, data[i])
            terms.append(log_prior[i, c] - 0.5 * logdet - 0.5 * quad - 2 * math.log(2 * math.pi))
        total += weight[i] * np.logaddexp.reduce(terms)
    return float(total)


def two_layer_problem(n: int = 300, seed: int = 3):
    t = toy(n, [(0.1, 0.0176), (0.1, 0.3608)], seed=seed, track_sigma=(2e-4, 1e-3), p_classes=CLASSES)
    method = MaximumLikelihoodEM(iterations=30, path="straight", momentum_prior=DiscretePrior(*CLASSES))
    return method, method.problem(t.data, t.volume), t


def test_voxel_log_likelihoods_are_the_mixture_likelihood_of_the_muons_crossing_each_voxel():
    """Iron over water, momenta hidden among three classes, track errors: l_j(h) for both layers
    and three levels (one the fitted value itself) equals an explicit numpy evaluation."""
    method, problem, t = two_layer_problem()
    rho = method._reconstruct(problem).inverse_x0.reshape(-1)
    levels = [float(rho[0]), INV_X0["iron"], INV_X0["uranium"]]
    got = voxel_log_likelihoods(rho, problem, torch.ones_like(rho), levels)
    assert got.shape == (3, 2)
    for j in range(2):
        for h, level in enumerate(levels):
            expected = numpy_voxel_log_likelihood(problem, rho.numpy(), j, level)
            assert float(got[h, j]) == pytest.approx(expected, rel=1e-10, abs=1e-8)


def test_the_chunks_change_nothing(monkeypatch):
    from mutomo.reco.mlem import evidence

    method, problem, _ = two_layer_problem(n=120)
    rho = method._reconstruct(problem).inverse_x0.reshape(-1)
    whole = voxel_log_likelihoods(rho, problem, torch.ones_like(rho), [10.0, 60.0])
    monkeypatch.setattr(evidence, "CHUNK_ENTRIES", 7)
    pieces = voxel_log_likelihoods(rho, problem, torch.ones_like(rho), [10.0, 60.0])
    torch.testing.assert_close(pieces, whole, rtol=1e-12, atol=1e-10)


def test_two_pass_evidence_is_exact_above_its_floor_and_an_upper_bound_below():
    """The first pass weighs uranium against lead alone (the densest innocent below it), the
    second iron and water where that bound is above the floor: equal to the one-pass evidence
    over every innocent above the floor, never below it elsewhere; a voxel mask evaluates only
    its voxels."""
    method, problem, _ = two_layer_problem(n=400, seed=4)
    rho = method._reconstruct(problem).inverse_x0.reshape(-1)
    ones = torch.ones_like(rho)
    targets, innocents = (INV_X0["uranium"],), (INV_X0["iron"], INV_X0["lead"], INV_X0["water"])
    full = material_evidence(voxel_log_likelihoods(rho, problem, ones, [*targets, *innocents]), 1)
    two = voxel_evidence(rho, problem, ones, targets, innocents)
    assert bool((two >= full - 1e-9).all())
    above = full > EVIDENCE_FLOOR
    torch.testing.assert_close(two[above], full[above], rtol=1e-12, atol=1e-9)
    assert float(full.min()) < EVIDENCE_FLOOR  # iron and water layers: both cases are exercised
    only = voxel_log_likelihoods(rho, problem, ones, [50.0], torch.tensor([False, True]))
    assert float(only[0, 0]) == 0.0
    assert float(only[0, 1]) == pytest.approx(float(voxel_log_likelihoods(rho, problem, ones, [50.0])[0, 1]))


def test_voxel_log_likelihoods_gradcheck_in_float64():
    """Gradients in the fitted map and the log-term factor, through the checkpointed chunks."""
    method, problem, _ = two_layer_problem(n=25, seed=5)
    rho = method._reconstruct(problem).inverse_x0.reshape(-1).detach().clone().requires_grad_(True)
    factor = torch.tensor([1.1, 1.05], dtype=D, requires_grad=True)

    def f(r, fac):
        return voxel_log_likelihoods(r, problem, fac, [INV_X0["iron"], 20.0])

    assert torch.autograd.gradcheck(f, (rho, factor), eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    ("material", "sign"),
    [("uranium", 1.0), ("iron", -1.0), ("lead", -1.0)],
)
def test_evidence_for_uranium_against_iron_and_lead_has_the_sign_of_the_truth(material, sign):
    """A 10 cm layer of each material under known momenta (1-10 GeV/c) and 1 mm / 5 mrad tracks:
    the evidence for uranium against iron and lead is positive only where the layer is uranium,
    and grows about linearly with the muon count (a sum of per-muon log-likelihood ratios)."""
    x0 = get_material(material).x0
    values = []
    for n in (200, 800):
        t = toy(n, [(0.1, x0)], seed=11, track_sigma=(1e-3, 5e-3))
        method = MaximumLikelihoodEM(iterations=30, path="straight", log_term=False)  # the toy has no log term
        vmap = method.evidence_map(t.data, t.volume, (INV_X0["uranium"],), (INV_X0["iron"], INV_X0["lead"]))
        assert vmap.x0 is None and vmap.uncertainty is None and bool(vmap.measured.all())
        values.append(float(vmap.score.reshape(-1)[0]))
    assert sign * values[0] > 2 and sign * values[1] > 2 * sign * values[0]


def test_material_evidence_is_target_max_minus_innocent_max_and_refuses_an_empty_side():
    ll = torch.tensor([[1.0, 5.0], [2.0, -1.0], [0.0, 7.0]])
    torch.testing.assert_close(material_evidence(ll, 1), torch.tensor([-1.0, -2.0]))
    torch.testing.assert_close(material_evidence(ll, 2), torch.tensor([2.0, -2.0]))
    with pytest.raises(MutomoError, match="at least one target and one innocent"):
        material_evidence(ll, 3)
    with pytest.raises(MutomoError, match="at least one hypothesis"):
        voxel_log_likelihoods(torch.ones(2, dtype=D), two_layer_problem(n=10)[1], torch.ones(2, dtype=D), [])


def test_evidence_map_keeps_float32_and_zero_where_unmeasured():
    t = toy(60, [(0.1, 0.0176), (0.1, 0.3608)], seed=8)
    data = _cast(t.data, torch.float32)
    volume = type(t.volume).uniform("water", (1.0, 1.0, 0.2), (1.0, 1.0, 0.1), z_low=0.4, dtype=torch.float32)
    method = MaximumLikelihoodEM(iterations=5, path="straight", min_path=1e9)  # nothing is measured
    vmap = method.evidence_map(data, volume, (300.0,), (50.0,))
    assert vmap.score.dtype == torch.float32 and not bool(vmap.measured.any()) and bool((vmap.score == 0).all())


def test_likelihood_scores_are_a_smooth_maximum_of_the_measured_evidence():
    score = torch.tensor([[3.0, -50.0, 9.0], [1.0, 2.0, 0.5]])
    measured = torch.tensor([[True, True, False], [True, True, True]])
    maps = PresenceMaps(score, torch.zeros_like(score), measured)
    got = likelihood_scores(maps)
    assert float(got[0]) == pytest.approx(3.0 - 0.1 * math.log(3), abs=1e-3)  # the unmeasured 9 is ignored
    assert float(got[1]) == pytest.approx(2.0 - 0.1 * math.log(3), abs=1e-3)
    torch.testing.assert_close(statistic_scores("likelihood", maps, maps), got)


def test_the_portal_with_the_likelihood_statistic_builds_its_hypotheses_from_the_scene():
    config = parse_config(
        {"extends": "border_portal", "task": {"inference": "mlem", "momentum": "marginal", "statistic": "likelihood"}}
    )
    problem = build_problem(config)
    task = problem.task
    assert isinstance(task, Presence) and not task.needs_calibration and task.min_batch == 2
    targets, innocents = ([hypothesis_level(h) for h in side] for side in task.hypotheses)
    assert [m.name for m in task.hypotheses[0]] == ["uranium"]
    assert targets == pytest.approx((INV_X0["uranium"],))
    assert INV_X0["lead"] == pytest.approx(max(innocents)) and len(innocents) == 8  # 5 goods, wall, floor, lead
    shipped = load_config("configs/border_portal_likelihood.toml")
    assert shipped.task.statistic == "likelihood" and shipped.task.inference == "mlem"


@pytest.mark.parametrize(
    ("task", "match"),
    [
        ({"inference": "asr", "momentum": "posterior", "statistic": "likelihood"}, "needs inference 'mlem'"),
    ],
)
def test_the_likelihood_statistic_without_mlem_is_refused_naming_the_field(task, match):
    with pytest.raises(MutomoError, match=match):
        parse_config({"extends": "border_portal", "task": task})


def test_a_target_material_that_is_also_innocent_is_refused():
    config = parse_config(
        {
            "extends": "border_portal",
            "task": {"inference": "mlem", "momentum": "marginal", "statistic": "likelihood"},
            "scene": {
                "background": {"clutter": {"uranium": 0.01, "air": 0.99}, "fill_height": {"min": 0.6, "max": 2.5}}
            },
        }
    )
    with pytest.raises(MutomoError, match="task.statistic = 'likelihood'.*'uranium' is both"):
        build_problem(config)


def test_a_portal_training_step_with_the_likelihood_statistic_moves_the_modules():
    """A cargo's score, through the evidence, the EM and the smooth readout, has finite gradients
    on the modules' x and y, not all zero (20,000 muons, ~9 s of the portal's flux: enough for a
    few hundred measured voxels)."""
    config = parse_config(
        {"extends": "border_portal", "task": {"inference": "mlem", "momentum": "marginal", "statistic": "likelihood"}}
    )
    problem = replace(build_problem(config), n_muons=20_000)
    design = problem.design("tiled")
    sample = problem.scene.sample((7, 0, 0), present=True)
    (out,) = problem.observe(design.detector(), sample, problem.n_muons, key_generator((7, 1, 0)), (SMOOTH,))
    maps = split_presence(out).maps
    assert int(maps.measured.sum()) > 100
    likelihood_scores(maps).backward()
    grad = design.module_xy.grad  # the trainable x and y of each module; z is fixed by the frame
    assert grad is not None and bool(torch.isfinite(grad).all()) and float(grad.abs().max()) > 0


def test_the_likelihood_statistic_scores_without_calibration_volumes():
    """The evaluation's path: scores and metrics from the test outputs alone (no references),
    the exposure ladder included."""
    task = Presence("mlem", statistic="likelihood", hypotheses=((300.0,), (50.0, 180.0)))
    v = 4
    rows = []
    for evidence in ([5.0, -2.0, 0.0, 1.0], [-1.0, -3.0, 0.0, 0.2], [3.0, 0.0, 0.0, 0.0], [-4.0, -1.0, -2.0, 0.1]):
        blocks = [evidence, [0.0] * v, [1.0] * v, [1.0] * v, [0.0] * v]
        rows.append(np.concatenate(blocks))
    outputs = np.array(rows)
    test = Observations(outputs, np.array([1.0, 0.0, 1.0, 0.0]), ladder={60.0: outputs})
    scores, ladder = task.scores(test, None)
    assert scores[0] > scores[1] and scores[2] > scores[3]
    np.testing.assert_allclose(ladder[60.0], scores)
    assert task.metrics(test, None)["auc"].value == 1.0


def test_the_oracle_evidence_holds_the_rest_at_the_truth_with_the_log_term_at_the_true_thickness():
    """The oracle reads no fit: after one EM step from water the fitted evidence of a uranium layer
    over an iron one is 20 nats short of the oracle's, which has the sign of the truth in each
    layer whatever the EM did. Its densities are the true 1/X0 times Highland's log-term factor
    at each muon's true thickness, path-weighted over the muons of the voxel (computed here
    independently, in numpy)."""
    layers = [(0.1, get_material("uranium").x0), (0.1, get_material("iron").x0)]
    t = toy(400, layers, seed=5, track_sigma=(1e-3, 5e-3))
    true_x0 = torch.tensor([x0 for _, x0 in reversed(layers)], dtype=D).reshape(t.volume.shape)  # z index 0: bottom
    hypotheses = ((INV_X0["uranium"],), (INV_X0["iron"], INV_X0["lead"]))
    for log_term in (False, True):
        method = MaximumLikelihoodEM(iterations=1, path="straight", log_term=log_term)
        oracle = method.oracle_evidence_map(t.data, t.volume, true_x0, *hypotheses).score.reshape(-1)
        if not log_term:  # the toy's scattering has no log term: only without it is the model right
            assert float(oracle[1]) > 20 and float(oracle[0]) < -20  # uranium on top, iron below
        problem = method.problem(t.data, t.volume)
        muon, voxel = problem.paths.muon.numpy(), problem.paths.voxel.numpy()
        length, weight = problem.paths.length.numpy(), problem.weight.numpy()
        inverse = 1 / true_x0.reshape(-1).numpy()
        thickness = np.bincount(muon, length * inverse[voxel], minlength=weight.size)
        per_muon = (1 + 0.038 * np.log(thickness)) ** 2 if log_term else np.ones_like(thickness)
        w = weight[muon] * length
        factor = np.bincount(voxel, w * per_muon[muon], minlength=2) / np.bincount(voxel, w, minlength=2)
        rho = torch.tensor(inverse * factor, dtype=D)
        expected = voxel_evidence(rho, problem, torch.tensor(factor, dtype=D), *hypotheses)
        torch.testing.assert_close(oracle, expected)
    method = MaximumLikelihoodEM(iterations=1, path="straight", log_term=False)
    oracle = method.oracle_evidence_map(t.data, t.volume, true_x0, *hypotheses).score.reshape(-1)
    fitted = method.evidence_map(t.data, t.volume, *hypotheses).score.reshape(-1)
    assert float(fitted[1]) < float(oracle[1]) - 10  # one EM step from water: the fit has not resolved the layers
    with pytest.raises(MutomoError, match="true_x0 must be the volume's"):
        method.oracle_evidence_map(t.data, t.volume, true_x0.reshape(-1), *hypotheses)
