"""Presence statistics on closed-form cases (issue 25): voxels of known level among clutter of
known materials, a volume without the target below one with it, finite gradients, the learned
statistic's train / held-out split and localisation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mutomo.errors import MutomoError
from mutomo.tasks.metrics import roc_auc
from mutomo.tasks.presence_statistics import (
    UNMEASURED,
    PresenceMaps,
    VoxelClassifier,
    batch_material_scores,
    learned_scores,
    localisation,
    material_reference,
    material_scores,
    material_voxel_scores,
    smooth_max,
    statistic_scores,
    voxel_features,
)

D = torch.float64
SHAPE = (6, 5, 4)
N_VOXELS = 120
#: Clutter by voxel (1/X0 in 1/m): wood (X0 ~ 0.8 m), steel 5 %, air 10 %; the target tungsten.
WOOD, STEEL, AIR, TUNGSTEN = 1 / 0.8, 1 / 0.0176, 1 / 304.0, 1 / 0.0035
#: Mean score of each material relative to the voxel's level (a deflection statistic grows
#: with the material's scattering; numbers chosen for the test, not physics).
RELATIVE = {WOOD: 1.0, STEEL: 2.0, AIR: 0.6, TUNGSTEN: 4.0}


def _clutter(rng: np.random.Generator, n: int, target: bool, noise: float = 0.08):
    """``n`` volumes of clutter: per voxel a position level (the same for every volume, 1 to 3),
    a material drawn wood/steel/air 85/5/10 %, and log-normal noise; with ``target`` one random
    voxel of tungsten per volume. Returns maps, true 1/X0 and target masks."""
    level = np.linspace(1.0, 3.0, N_VOXELS)
    materials = rng.choice([WOOD, STEEL, AIR], size=(n, N_VOXELS), p=[0.85, 0.05, 0.10])
    mask = np.zeros((n, N_VOXELS), dtype=bool)
    if target:
        where = rng.integers(0, N_VOXELS, n)
        materials[np.arange(n), where] = TUNGSTEN
        mask[np.arange(n), where] = True
    relative = np.vectorize(RELATIVE.get)(materials)
    score = level * relative * np.exp(noise * rng.standard_normal((n, N_VOXELS)))
    maps = PresenceMaps(
        torch.tensor(score, dtype=D), torch.zeros(n, N_VOXELS, dtype=D), torch.ones(n, N_VOXELS, dtype=bool)
    )
    return maps, torch.tensor(materials, dtype=D), torch.tensor(mask)


def test_material_reference_finds_the_voxel_level_and_the_densest_background_material():
    rng = np.random.default_rng(0)
    refs, inv, _ = _clutter(rng, 40, target=False)
    reference = material_reference(refs, inv)
    level = torch.tensor(np.linspace(1.0, 3.0, N_VOXELS), dtype=D)
    # The median over references is the majority material's (wood's) level, whatever the clutter drew.
    assert torch.allclose(reference.level, level, rtol=0.1)
    assert reference.log and reference.densest_inverse_x0 == pytest.approx(STEEL)
    # Steel sits at ln 2 above wood, the noise at 0.08 in ln.
    assert float(reference.offset) == pytest.approx(math.log(2.0), abs=0.05)
    assert float(reference.noise.median()) == pytest.approx(0.08, rel=0.3)


def test_material_statistic_separates_tungsten_from_steel_clutter_where_the_clean_statistic_does_not():
    """The issue's failure: in clean references every voxel is sometimes steel, so the per-voxel
    mean and spread of the clean statistic are steel-inflated in some voxels and floored in the
    others; a clean volume's steel in the latter scores like the target. The material statistic
    puts every voxel's steel at the same level."""
    rng = np.random.default_rng(1)
    refs, inv, _ = _clutter(rng, 24, target=False)
    with_target, _, _ = _clutter(rng, 60, target=True)
    without, _, _ = _clutter(rng, 60, target=False)
    test = PresenceMaps(
        *(torch.cat([getattr(with_target, f), getattr(without, f)]) for f in ("score", "sigma", "measured"))
    )
    labels = np.r_[np.ones(60, bool), np.zeros(60, bool)]
    material = statistic_scores("material", test, refs, reference_inverse_x0=inv).numpy()
    clean = statistic_scores("clean", test, refs).numpy()
    auc_material, auc_clean = roc_auc(material, labels), roc_auc(clean, labels)
    assert auc_material.value > 0.99
    assert auc_clean.value < auc_material.value - 3 * auc_material.error - 0.05


def test_material_statistic_on_a_uniform_background_is_a_robust_z_score():
    rng = np.random.default_rng(2)
    n = 20
    level = torch.linspace(1.0, 2.0, N_VOXELS, dtype=D)
    score = level * torch.exp(0.1 * torch.tensor(rng.standard_normal((n, N_VOXELS)), dtype=D))
    refs = PresenceMaps(score, torch.zeros_like(score), torch.ones_like(score, dtype=bool))
    inv = torch.full_like(score, 1 / 0.1)  # one material: concrete-like
    reference = material_reference(refs, inv)
    test = PresenceMaps(level[None] * 1.5, torch.zeros(1, N_VOXELS, dtype=D), torch.ones(1, N_VOXELS, dtype=bool))
    u = material_voxel_scores(test, reference)
    expected = (torch.log(1.5 * level / reference.level) - reference.offset) / reference.noise
    assert torch.allclose(u[0], expected, rtol=1e-10)
    assert abs(float(reference.offset)) < 0.05  # the densest material is the background: no offset


def test_unmeasured_voxels_give_no_evidence_and_a_volume_without_target_scores_lower():
    rng = np.random.default_rng(3)
    refs, inv, _ = _clutter(rng, 12, target=False)
    hot, _, _ = _clutter(rng, 1, target=True)
    measured = hot.measured.clone()
    target = int(hot.score[0].argmax())
    measured[0, target] = False
    blind = PresenceMaps(hot.score, hot.sigma, measured)
    u = material_voxel_scores(blind, material_reference(refs, inv))
    assert float(u[0, target]) == UNMEASURED
    assert float(material_scores(hot, refs, inv)[0]) > float(material_scores(blind, refs, inv)[0])


def test_material_scores_have_finite_gradients_and_pass_gradcheck():
    rng = np.random.default_rng(4)
    maps, inv, _ = _clutter(rng, 10, target=False)
    hot, hot_inv, _ = _clutter(rng, 6, target=True)
    score = torch.cat([hot.score, maps.score]).clone().requires_grad_()
    sigma = 0.05 * torch.cat([hot.score, maps.score]).detach()
    measured = torch.ones_like(score, dtype=bool)
    measured[0, :5] = False  # unmeasured voxels: no gradient, still finite
    labels = torch.tensor([1.0] * 6 + [0.0] * 10, dtype=D)
    batch = PresenceMaps(score, sigma, measured)
    scores = batch_material_scores(batch, torch.cat([hot_inv, inv]), labels)
    scores.sum().backward()
    assert torch.isfinite(scores).all() and torch.isfinite(score.grad).all()
    assert float(scores[:6].detach().mean()) > float(scores[6:].detach().mean())
    reference = material_reference(maps, inv)

    def f(s):
        return smooth_max(material_voxel_scores(PresenceMaps(s, 0.05 * s, torch.ones_like(s, dtype=bool)), reference))

    x = hot.score[:2].clone().requires_grad_()
    assert torch.autograd.gradcheck(f, (x,))


def test_batch_material_scores_refuse_too_few_clean_volumes():
    rng = np.random.default_rng(5)
    maps, inv, _ = _clutter(rng, 6, target=False)
    labels = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0], dtype=D)
    with pytest.raises(MutomoError, match="at least 4 volumes without the target"):
        batch_material_scores(maps, inv, labels)


def test_learned_statistic_fits_on_training_volumes_and_holds_on_other_volumes():
    rng = np.random.default_rng(6)
    refs, inv, _ = _clutter(rng, 24, target=False)
    reference = material_reference(refs, inv)

    def draw(n):
        a, _, ta = _clutter(rng, n, target=True)
        b, _, tb = _clutter(rng, n, target=False)
        maps = PresenceMaps(*(torch.cat([getattr(a, f), getattr(b, f)]) for f in ("score", "sigma", "measured")))
        return maps, torch.cat([ta, tb]), np.r_[np.ones(n, bool), np.zeros(n, bool)]

    train, train_target, train_labels = draw(40)
    held, _, held_labels = draw(40)
    model = VoxelClassifier()
    model.fit(voxel_features(train, reference, SHAPE), train_target, train.measured)
    with torch.no_grad():
        on_train = roc_auc(learned_scores(train, reference, model, SHAPE).numpy(), train_labels)
        on_held = roc_auc(learned_scores(held, reference, model, SHAPE).numpy(), held_labels)
    assert on_held.value > 0.95
    assert on_train.value - on_held.value < 3 * math.hypot(on_train.error, on_held.error) + 0.02  # no overfit
    assert float(model.linear.weight[0, 0].detach()) > 0  # higher material score, more likely the target
    with pytest.raises(MutomoError, match="measured target voxel"):
        VoxelClassifier().fit(voxel_features(train, reference, SHAPE), torch.zeros_like(train_target), train.measured)


def test_localisation_counts_target_volumes_whose_top_voxel_is_the_target():
    rank = torch.tensor([[0.0, 5.0, 1.0], [3.0, 1.0, 2.0], [0.0, 0.0, 9.0], [9.0, 0.0, 0.0]])
    target = torch.tensor([[0, 1, 0], [0, 0, 1], [0, 0, 1], [0, 0, 0]], dtype=torch.bool)
    present = torch.tensor([True, True, True, False])
    value, error = localisation(rank, target, present)
    assert value == pytest.approx(2 / 3)
    assert error == pytest.approx(math.sqrt(2 / 9 / 3))
    assert math.isnan(localisation(rank, target, torch.zeros(4, dtype=torch.bool))[0])


def _short_crate_training(statistic: str, run_dir=None):
    """3 epochs of 8 volumes x 3000 muons on the clutter crate with ``statistic`` as the training
    loss, from ``poor``: the problem, and whether the design moved with every step finite."""
    from dataclasses import replace
    from pathlib import Path

    from mutomo.config.build import build_problem, settings_from
    from mutomo.config.schema import load_config
    from mutomo.optimise.loop import optimise

    config = load_config(Path(__file__).resolve().parents[2] / "configs" / "crate_clutter.toml")
    config = config.model_copy(update={"task": config.task.model_copy(update={"statistic": statistic})})
    problem = build_problem(config)
    settings = replace(
        settings_from(config, problem),
        epochs=3,
        volumes_per_epoch=8,
        muons_per_volume=3000,
        validation_volumes=0,
        warmup_epochs=1,
    )
    design = problem.design("poor", ("xy", "z", "size"), None)
    before = {k: v.detach().clone() for k, v in design.state_dict().items()}
    history = optimise(design, problem, settings, progress=False, run_dir=run_dir)
    assert not any(r.skipped_step for r in history.records)
    assert all(math.isfinite(r.loss["total"]) for r in history.records)
    after = design.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    return problem


def test_a_short_training_with_the_material_statistic_moves_the_design_with_finite_gradients():
    """The material statistic as the training loss (each batch's clean volumes its references,
    left out of their own): a few epochs on the clutter crate, every step finite."""
    problem = _short_crate_training("material")
    assert problem.task.statistic == "material" and problem.task.min_batch == 8


def test_the_verdict_says_when_the_statistic_not_the_detector_is_the_limit():
    from mutomo.optimise.verdict import statistic_lines

    def evaluations(loc, auc, statistic="clean"):
        metrics = {"auc": [auc, 0.04], "localisation": [loc, 0.02]}
        return {
            "task": {"kind": "presence", "statistic": statistic},
            "readouts": ["smooth", "physical"],
            "designs": {"wide": {"physical": metrics}, "ideal": {"physical": metrics}},
        }

    (line,) = statistic_lines(evaluations(1.0, 0.63))
    assert "statistic ('clean'), not the detector, is the limit" in line
    assert "wide: the target ranks first in 100.0 +- 2.0 % of the target volumes, AUC 0.630 +- 0.040" in line
    assert "ideal:" not in line  # the bounds are not designs
    assert 'task.statistic = "material"' in line
    assert 'task.statistic = "material"' not in statistic_lines(evaluations(1.0, 0.63, "material"))[0]
    assert statistic_lines(evaluations(1.0, 0.97)) == []  # the AUC keeps what the map shows
    assert statistic_lines(evaluations(0.5, 0.55)) == []  # the map does not find the target either
    regression = evaluations(1.0, 0.6) | {"task": {"kind": "regression"}}
    assert statistic_lines(regression) == []


# ---------------------------------------------------------------------------------- learned, as a task statistic
def _observations(rng: np.random.Generator, n: int):
    """Presence observations (the task's 5 voxel blocks) of ``n`` clutter volumes, the even ones
    holding the target, as :meth:`Problem.sample` draws a balanced set."""
    from mutomo.tasks.base import Observations

    a, inv_a, ta = _clutter(rng, n // 2, target=True)
    b, inv_b, tb = _clutter(rng, n - n // 2, target=False)
    order = np.argsort(np.r_[np.arange(0, n, 2)[: n // 2], np.arange(1, n, 2)[: n - n // 2]])
    blocks = [
        torch.cat(p)[order]
        for p in ((a.score, b.score), (a.sigma, b.sigma), (a.measured, b.measured), (inv_a, inv_b), (ta, tb))
    ]
    outputs = torch.cat([x.double() for x in blocks], -1).numpy()
    truths = np.r_[np.ones(n // 2), np.zeros(n - n // 2)][order]
    return Observations(outputs, truths)


def test_the_learned_statistic_is_a_task_statistic_fitted_on_the_calibration_target_volumes():
    """``task.statistic = "learned"``: the calibration volumes are drawn balanced (not clean), the
    classifier is fitted on those holding the target, its features against the clean ones, and
    the test volumes are only scored; without calibration target volumes it is refused."""
    from mutomo.tasks.base import Observations
    from mutomo.tasks.presence import Presence

    with pytest.raises(MutomoError, match="grid"):
        Presence("asr", statistic="learned")
    task = Presence("asr", statistic="learned", grid=SHAPE)
    assert not task.clean_calibration and task.min_batch == 8 and task.module is task.classifier
    assert Presence("asr", statistic="material").clean_calibration
    rng = np.random.default_rng(8)
    calibration, test = _observations(rng, 48), _observations(rng, 120)
    metrics = task.metrics(test, calibration)
    # The raw map's order puts a high-level voxel's steel above a low-level voxel's tungsten in
    # some volumes (localisation < 1); the classifier, reading each voxel against its level, does not.
    assert metrics["auc"].value > 0.95 > metrics["localisation"].value
    clean = calibration.truths < 0.5
    clean_only = Observations(calibration.outputs[clean], calibration.truths[clean])
    with pytest.raises(MutomoError, match="calibration_volumes"):
        task.metrics(test, clean_only)


def test_co_training_gradients_reach_the_maps_through_the_auc_and_the_classifier_through_both():
    from mutomo.tasks.presence_statistics import batch_learned_loss

    rng = np.random.default_rng(9)
    a, inv_a, ta = _clutter(rng, 6, target=True)
    b, inv_b, tb = _clutter(rng, 6, target=False)
    score = torch.cat([a.score, b.score]).requires_grad_(True)
    maps = PresenceMaps(score, torch.cat([a.sigma, b.sigma]), torch.cat([a.measured, b.measured]))
    labels = torch.cat([torch.ones(6), torch.zeros(6)]).to(D)
    model = VoxelClassifier()
    scores, voxel = batch_learned_loss(maps, torch.cat([inv_a, inv_b]), labels, torch.cat([ta, tb]), model, SHAPE)
    assert bool(model.ready) and scores.shape == (12,) and bool(torch.isfinite(scores).all())
    (map_grad,) = torch.autograd.grad(voxel, score, retain_graph=True, allow_unused=True)
    assert map_grad is None  # the voxel labels teach the classifier, not the detector
    (scores[:6].mean() - scores[6:].mean() + voxel).backward()
    assert score.grad is not None and bool(torch.isfinite(score.grad).all()) and float(score.grad.abs().sum()) > 0
    assert model.linear.weight.grad is not None and float(model.linear.weight.grad.abs().sum()) > 0


def test_a_short_co_training_with_the_learned_statistic_moves_the_design_and_the_classifier(tmp_path):
    """The learned statistic trained beside the detector: a few epochs on the clutter crate move
    both, every step finite, and the checkpoint holds the classifier for a resumed run."""
    from mutomo.optimise.checkpoint import load_latest

    problem = _short_crate_training("learned", run_dir=tmp_path)
    assert problem.task.statistic == "learned" and problem.task.grid == (12, 8, 8)
    classifier = problem.task.module
    assert classifier is not None and bool(classifier.ready)
    assert float(classifier.linear.weight.detach().abs().sum()) > 0
    state = load_latest(tmp_path)
    assert state is not None and torch.equal(state["inference"]["linear.weight"], classifier.linear.weight.detach())


def test_references_with_no_measured_voxel_give_no_evidence_instead_of_failing():
    """A detector that sees nothing of the volume (e.g. a few seconds of muons, modules far
    off): every voxel scores UNMEASURED and every volume the same, at chance."""
    rng = np.random.default_rng(4)
    refs, inv, _ = _clutter(rng, 6, target=False)
    blind = PresenceMaps(refs.score, refs.sigma, torch.zeros_like(refs.measured))
    reference = material_reference(blind, inv)
    assert not bool(reference.known.any()) and math.isnan(reference.densest_inverse_x0)
    hot, _, _ = _clutter(rng, 2, target=True)
    u = material_voxel_scores(PresenceMaps(hot.score, hot.sigma, torch.zeros_like(hot.measured)), reference)
    assert bool((u == UNMEASURED).all())
