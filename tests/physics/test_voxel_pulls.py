"""Honest uncertainties in sparse voxels (issue 13): pulls of voxel ln X0 per occupancy class.

Repeated uniform iron blocks (one voxel layer: each 10 cm x 10 cm voxel spans the 30 cm depth)
under the detector of ``benchmarks/voxel_pulls.py`` (three 100 um panels a side, true momenta),
each seen by a different number of muons so that voxels fill every occupancy class. The truth is
fixed (iron's X0 from the material table); nothing is tuned on these data: the width of the
estimator comes from the moments of the truncated normal (``mutomo.reco.x0``).

Only voxels off the block's four side faces are judged. PoCA moves the far-away PoCAs of nearly
undeflected muons to the nearest voxel, so the edge voxels collect them (+0.1 in ln X0, +0.3 in
the corners), and with several voxel layers the top and bottom layers do (+-0.4 in ln X0 on a
30 cm iron block in three layers): biases of the PoCA assignment, not statistical errors, that
no per-voxel uncertainty describes (benchmarks/README.md, "Voxel X0 pulls").
"""

import importlib.util
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mutomo.reco import poca_within_height
from mutomo.reco.x0 import HighlandX0Inferrer, PocaX0

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "voxel_pulls.py"


def load():
    spec = importlib.util.spec_from_file_location("voxel_pulls", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pull_widths(ladder, material="iron", thickness=0.3, interior=False, extended=(False, True)):
    """Per method, the benchmark's summary rows (one per occupancy class), from volumes seen by
    ``muons`` muons for each ``(muons, seeds)`` of the ladder; every voxel, or only those off
    the block's side faces."""
    bench = load()
    volume = bench.block(material, thickness, layers=1)
    methods = {("extended_poca" if e else "poca"): PocaX0(extended=e) for e in extended}
    per_volume: dict[str, list] = {name: [] for name in methods}
    select = bench.interior(volume) if interior else None
    for muons, seeds in ladder:
        for name, pulls in bench.collect(methods, volume, muons, seeds, select).items():
            per_volume[name] += pulls
    return {name: bench.summarise(pulls) for name, pulls in per_volume.items()}


def check(widths, min_entries):
    for name, rows in widths.items():
        for row in rows:
            if row["low"] < 5:  # unmeasured by default: nothing there
                assert row["entries"] == 0, (name, row)
                continue
            assert row["entries"] >= min_entries, (name, row)
            # The requirement: unit width within 15 % in every class from 5 muons up.
            assert 0.85 <= row["std"] <= 1.15, (name, row)


def test_ln_x0_pulls_have_unit_width_in_every_occupancy_class():
    """Every voxel, those on the block's side faces too; ~1e6 muons over 74 volumes; 10-30 s on
    one shared core. More of the cheap sparse volumes, so that every class has 250-1300 entries
    and its width is known to 2-6 %. Before issue 13: 1.5-1.9; interior voxels only, before the
    PoCAs above and below the block were moved to its faces (the side faces' voxels: up to 1.27)."""
    start = time.perf_counter()
    ladder = [([2000, 3000, 4000, 6000], range(12)), ([12000, 20000, 30000], range(6)), ([70000, 140000], range(4))]
    widths = pull_widths(ladder)
    check(widths, min_entries=250)
    assert time.perf_counter() - start < 600  # a guard against a runaway, not a benchmark


@pytest.mark.slow
def test_ln_x0_pulls_have_unit_width_in_every_occupancy_class_many_volumes():
    """The same with 4x the volumes (other seeds), each class's width known to 1-8 %; 45-90 s.
    Measured: 0.96-1.08."""
    ladder = [([2000, 3000, 4000, 6000], range(100, 148)), ([12000, 20000, 30000], range(100, 124))]
    widths = pull_widths([*ladder, ([70000, 140000], range(100, 116))])
    check(widths, min_entries=1000)


def test_ln_x0_pulls_in_water_have_unit_width_in_every_occupancy_class():
    """1 m of water, binned PoCA, voxels off the side faces: most muons above ~20 GeV/c are
    measured with as much angular noise as they scatter, and a single 600 GeV/c muon of a voxel
    once sent its estimate to 15x the truth (pull widths 1.3-2.7 before the robust start of
    ``mutomo.reco.x0``). Measured: 0.99-1.12; extended PoCA 0.91-1.03 up to 200 muons, 1.28
    above (benchmarks/README.md, "Voxel X0 pulls")."""
    ladder = [([2000, 4000, 8000], range(12)), ([16000, 40000], range(6)), ([160000], range(4))]
    check(pull_widths(ladder, "water", 1.0, interior=True, extended=(False,)), min_entries=150)


def test_voxels_with_too_few_muons_are_not_measured():
    bench = load()
    volume = bench.block("iron", 0.3, layers=1)
    data = bench.simulate_and_measure(volume, 3000, seed=5)
    for min_muons in (5.0, 12.0):
        vmap = PocaX0(extended=False, min_muons=min_muons)(data, volume)
        assert vmap.count is not None and vmap.x0 is not None and vmap.uncertainty is not None
        sparse = vmap.count < min_muons
        assert bool(sparse.any()) and bool((~sparse).any())
        assert not bool(vmap.measured[sparse].any())
        assert bool((vmap.x0[sparse] == 0).all()) and bool(torch.isinf(vmap.uncertainty[sparse]).all())
        assert bool((vmap.score[sparse] == 0).all())
        ok = vmap.measured
        assert bool(torch.isfinite(vmap.uncertainty[ok]).all()) and bool((vmap.x0[ok] > 0).all())
    # Binned PoCA with unit weights: the count is the number of muons in the voxel.
    binned = PocaX0(extended=False)(data, volume)
    assert binned.count is not None
    assert torch.allclose(binned.count, binned.weight, rtol=0.1)


def test_reported_width_follows_the_truncated_gaussian_constant():
    """With negligible measurement error every muon counts the same and the reported
    sigma(ln X0) is sqrt(A / D^2 / (2 n)) / (d ln g / d ln t) (module docstring), for any X0."""
    from mutomo.reco.x0 import CORE_K, truncated_variance_constants
    from mutomo.units import HIGHLAND_LOG_COEFF

    a, d = truncated_variance_constants(CORE_K)
    bench = load()
    volume = bench.block("iron", 0.3, layers=1)
    data = bench.simulate_and_measure(volume, 40000, seed=8)
    vmap = PocaX0(extended=False)(data, volume)
    assert vmap.x0 is not None and vmap.uncertainty is not None and vmap.count is not None
    ok = vmap.measured
    rel = (vmap.uncertainty / vmap.x0)[ok]
    t = 0.3 / vmap.x0[ok]  # about: the mean path is a little longer than the depth
    c = 1 + HIGHLAND_LOG_COEFF * torch.log(t)
    expected = math.sqrt(a / d**2) / torch.sqrt(2 * vmap.count[ok]) * c / (c + 2 * HIGHLAND_LOG_COEFF)
    # Measurement error and the momentum-dependent weights change it by a few per cent only.
    ratio = (rel / expected).numpy()
    assert np.median(ratio) == pytest.approx(1.0, abs=0.1), np.quantile(ratio, [0.1, 0.5, 0.9])


def test_min_muons_below_one_is_refused():
    for bad in (0.0, 0.5, -3.0, math.nan):
        with pytest.raises(ValueError, match="min_muons"):
            HighlandX0Inferrer(min_muons=bad)
        with pytest.raises(ValueError, match="min_muons"):
            PocaX0(min_muons=bad)
    with pytest.raises(ValueError, match="min_muons"):
        PocaX0(inferrer=HighlandX0Inferrer(), min_muons=5.0)


def test_a_voxel_with_a_handful_of_muons_cannot_drive_the_presence_score():
    """Clean iron blocks: 8 references and a clean test volume, all well measured (~120 muons a
    voxel), except that in the test volume one voxel keeps only its 6 most deflected muons (the
    worst case: its X0 falls to ~1/3). Against the references' spread alone that voxel is ~20
    sigma out and drives the volume's score; with its own error in the
    z-score it stays near the clean volumes, while a real excess measured with many muons (every
    muon of one voxel deflected 1.7x more, i.e. X0 / 3) still stands out."""
    from dataclasses import replace

    from mutomo.tasks.presence_statistics import PresenceMaps, reference_scores

    bench = load()
    volume = bench.block("iron", 0.3, layers=1)
    method = PocaX0(extended=False)
    refs = [PresenceMaps.of(method(bench.simulate_and_measure(volume, 60000, s), volume)) for s in range(8)]
    data = bench.simulate_and_measure(volume, 60000, seed=50)
    voxel = (5, 5, 0)
    poca = poca_within_height(data.scatters.poca, data.incoming, data.outgoing, volume)  # as PocaX0 assigns
    cell = torch.clamp((poca[:, :2] / 0.1).floor().long(), 0, 9)  # one layer: (ix, iy)
    in_voxel = (cell[:, 0] == voxel[0]) & (cell[:, 1] == voxel[1])
    # Starve the voxel: keep its 6 most deflected muons.
    theta = torch.where(in_voxel, data.normalised_deflection, torch.full_like(data.weight, -1.0))
    keep = torch.zeros_like(in_voxel)
    keep[torch.topk(theta, 6).indices] = True
    starved = replace(data, weight=torch.where(in_voxel & ~keep, 0.0, data.weight))
    # A real excess with all its muons: deflections 1.7x larger in that voxel.
    scale = torch.where(in_voxel, 1.7, 1.0)[:, None]
    sc = data.scatters
    hot = replace(data, scatters=replace(sc, theta=sc.theta * scale[:, 0], theta_xy=sc.theta_xy * scale))
    clean = PresenceMaps.of(method(data, volume))
    outputs = {
        "clean": clean,
        "starved": PresenceMaps.of(method(starved, volume)),
        "hot": PresenceMaps.of(method(hot, volume)),
    }
    ref_maps = torch.stack([r.score for r in refs])
    assert 5 <= float(method(starved, volume).count[voxel]) < 10

    def score(maps, own_error=True):
        return float(reference_scores(maps.score[None], ref_maps, maps.sigma[None] if own_error else None))

    # Without the voxel's own error, the starved voxel dominates (the behaviour before issue 13).
    assert score(outputs["starved"], own_error=False) > score(clean, own_error=False) + 2.0
    with_error = {name: score(o) for name, o in outputs.items()}
    # Measured: clean 0.19, starved 0.23, hot 1.66 (a smooth maximum over 100 voxels: one voxel
    # at z ~ 5.3 gives ~1.6).
    assert with_error["starved"] < with_error["clean"] + 0.5, with_error
    assert with_error["hot"] > with_error["starved"] + 1.0, with_error


def layer_errors(data, volume, iterations=20):
    """Mean ln X0 error of ML/EM per layer (bottom to top) over the voxels off the side faces."""
    from mutomo.reco import MaximumLikelihoodEM

    with torch.no_grad():
        r = MaximumLikelihoodEM(iterations=iterations).reconstruct(data, volume)
    err = torch.log(r.x0.clamp(min=1e-9)) - torch.log(volume.x0)
    return [float(err[1:-1, 1:-1, k].mean()) for k in range(volume.shape[2])]


def test_mlem_gives_each_layer_the_momentum_at_its_depth():
    """30 cm of iron in three 10 cm layers, true momenta, 80k muons. A muon loses ~0.35 GeV/c
    there and scatters more in the layers it crosses last; with one momentum for its whole path,
    ML/EM's ln X0 fell from top to bottom by ~0.3 (+0.20, +0.05, -0.12; flat at +0.05 with the
    energy loss switched off). With the momentum lost spread along the path: flat within 0.1."""
    from dataclasses import replace

    bench = load()
    volume = bench.block("iron", 0.3, layers=3)
    data = bench.simulate_and_measure(volume, 80000, seed=3)
    assert data.momentum_loss is not None and float(data.momentum_loss.median()) > 0.2
    bottom, _, top = layer_errors(data, volume)
    assert abs(top - bottom) < 0.1, (bottom, top)
    bottom, _, top = layer_errors(replace(data, momentum_loss=None), volume)
    assert top - bottom > 0.2, (bottom, top)  # the old behaviour: the check can fail


def test_mlem_pulls_on_three_layers_have_unit_width_when_converged():
    """ML/EM's error describes the converged estimate: its pulls on three layers are 0.96-1.04
    (benchmark, 8 seeds; the Fisher error alone 0.97-1.07) at the default 20 (over-relaxed)
    iterations (before the over-relaxation the default 20 plain steps left the depth structure
    unresolved and the pulls at 0.72-0.83). ~10 s."""
    from mutomo.reco import MaximumLikelihoodEM

    bench = load()
    volume = bench.block("iron", 0.3, layers=3)
    per_volume = bench.collect(
        {"mlem": MaximumLikelihoodEM()},
        volume,
        [2000, 8000, 40000, 160000],
        range(4),
        bench.interior(volume),
    )["mlem"]
    check({"mlem": bench.summarise(per_volume)}, min_entries=100)


def test_mlem_pulls_in_water_have_unit_width_with_the_robust_error():
    """1 m of water, interior columns, ML/EM: with the Fisher error alone the pulls widen with
    the count (1.4 at 20-199 muons, 1.8 above 200: the Gaussian core's information overstates what
    Molière-tailed deflections carry in a light material); the default error, the sandwich never
    below the Fisher error, keeps every class with 100 entries or more within 1 +- 0.15
    (benchmark, 8-16 seeds: 0.99 / 1.02-1.04 / 1.08 / 1.08 / 1.12 for 5-9 ... 200+; here 0.93 /
    1.00 / 1.08 / 1.04 / 1.13, the Fisher error's 1.06 / 1.09 / 1.47 / 1.41 / 2.18). ~40 s."""
    from mutomo.reco import MaximumLikelihoodEM

    bench = load()
    volume = bench.block("water", 1.0)
    inside = bench.interior(volume)
    methods = {"robust": MaximumLikelihoodEM(), "fisher": MaximumLikelihoodEM(error="conditional")}
    per_volume = {name: [] for name in methods}
    for muons, seeds in (([1000, 2000], range(6)), ([8000, 16000], range(3)), ([160000], range(2))):
        for name, pulls in bench.collect(methods, volume, muons, seeds, inside).items():
            per_volume[name] += pulls
    rows = {name: bench.summarise(pulls) for name, pulls in per_volume.items()}
    judged = [row for row in rows["robust"] if row["low"] >= 5 and row["entries"] >= 100]
    assert len(judged) >= 4, rows["robust"]
    for row in judged:
        assert 0.85 <= row["std"] <= 1.15, row
    assert rows["fisher"][-1]["std"] > 1.3, rows["fisher"][-1]  # the check can fail: it did before
