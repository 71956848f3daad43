"""Benchmark scripts on tiny inputs: the side-by-side script imports, its TomOpt worker is valid
Python and its mutomo half runs; the method table runs and reads the same outputs as
``observe_design``."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mutomo.errors import MutomoError

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
SCRIPT = BENCHMARKS / "tomopt_side_by_side.py"


def load(name="tomopt_side_by_side"):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_side_by_side_script_mutomo_half_runs_on_a_tiny_input():
    module = load()
    compile(module.TOMOPT_STEP, "tomopt_step", "exec")  # the TomOpt worker parses (it is not run here)
    assert "(1.0, 0.95, 0.9, 0.85)" in module.TOMOPT_STEP and "(0.2, 0.15, 0.1, 0.05)" in module.TOMOPT_STEP
    result = module.mutomo_step(300, 1)
    assert result["seconds"] > 0 and result["rss_mib"] > 0


def test_surrogate_vs_gradient_script_runs_on_a_tiny_input(tmp_path):
    """The surrogate-against-gradient benchmark end to end at a toy size (one iteration of the
    surrogate, four test volumes): every run is judged, paired with the gradient run, and the
    gradient cosines are finite numbers in [-1, 1]."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "surrogate_vs_gradient.py"
    spec = importlib.util.spec_from_file_location("surrogate_vs_gradient", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.main(
        ["--seeds", "0", "--epochs", "4", "--volumes", "4", "--muons", "50", "--surrogate-muons", "10", "--n", "16"]
        + [
            "--cosine-radii",
            "0.01",
            "--eval-volumes",
            "4",
            "--calibration-volumes",
            "8",
            "--eval-muons",
            "200",
            "--out",
            str(tmp_path / "result.json"),
        ]
    )
    methods = [r["method"] for r in out["records"]]
    assert methods[:4] == ["start", "gradient", "surrogate_smooth", "surrogate_physical"]
    by_method = {r["method"]: r for r in out["records"]}
    assert by_method["gradient"]["minus_gradient"][0] == 0.0
    assert by_method["surrogate_smooth"]["muons"] == 16 * 4 * 10  # one iteration of 16 calls of 40 muons fits
    assert (tmp_path / "result.json").exists()
    for by_design in out["cosines"]["0"].values():
        keys = ("surrogate_r0.05_n16", "surrogate_r0.01_n16", "surrogate_r0.05_n32", "autograd_batch0_vs_batch1")
        assert all(-1.0 <= by_design[k] <= 1.0 for k in keys)


def test_reco_methods_table_cells_read_what_observe_design_reads():
    """Each cell of the shared pass (one simulation per volume, every momentum and method) gives
    the outputs ``observe_design`` gives for the configuration with that inference and momentum."""
    from mutomo.config.build import build_problem, evaluation_settings
    from mutomo.optimise.evaluate import CALIBRATION_STREAM, observe_design

    module = load("reco_methods_table")
    shared = module.scene_config("lead_in_water", 4, 2, muons=2000)
    assert shared.scene.background.material == "water" and shared.scene.objects[0].material == "lead"
    momenta = ("true", "flux_mean", "range_mean", "marginal", "posterior")
    cells = module.observe_cells(build_problem(shared), shared, CALIBRATION_STREAM, 2, True, ("asr", "mlem"), momenta)
    assert ("asr", "marginal") not in cells.outputs  # ASR cannot marginalise over the momentum
    assert ("mlem", "posterior") not in cells.outputs  # ML/EM marginalises instead
    pairs = (("asr", "flux_mean"), ("mlem", "true"), ("mlem", "range_mean"), ("mlem", "marginal"), ("asr", "posterior"))
    for method, momentum in pairs:
        config = module.scene_config("lead_in_water", 4, 2, method, momentum, muons=2000)
        problem = build_problem(config)
        observed = observe_design(problem.design("human_close", ()), problem, evaluation_settings(config))
        expected = observed.calibration["physical"]
        np.testing.assert_array_equal(np.stack(cells.outputs[(method, momentum)]), expected.outputs)


def test_reco_methods_table_script_runs_on_a_tiny_input(tmp_path):
    """The table on 4 + 2 volumes of 1500 muons, with the outputs saved; the presence statistic
    variants script reads them, and its ``shipped`` variant gives the table's own scores."""
    module = load("reco_methods_table")
    out = tmp_path / "table"
    saved = tmp_path / "outputs.npz"
    module.main(
        ["--volumes", "4", "--references", "2", "--muons", "1500", "--out", str(out), "--save-outputs", str(saved)]
    )
    results = json.loads(out.with_suffix(".json").read_text())
    variants = load("presence_statistic_variants")
    data = np.load(saved)
    for method in ("poca", "asr", "mlem"):
        test, reference = data[f"waste_block/test/{method}/true"], data[f"waste_block/references/{method}/true"]
        shipped = variants.scores(test, reference, "shipped")
        np.testing.assert_allclose(
            shipped, results["scenes"]["waste_block"]["cells"][method]["true"]["scores"], rtol=1e-5
        )
    assert "| poca | true |" in variants.main([str(saved)])
    for scene in ("waste_block", "lead_in_water"):
        cells = results["scenes"][scene]["cells"]
        assert set(cells) == {"poca", "extended_poca", "asr", "bca", "mlem"}
        assert set(cells["asr"]) == {"true", "flux_mean", "range_mean"}
        assert "cube_log_error" in cells["mlem"]["true"] and "cube_log_error" not in cells["asr"]["true"]
        assert "delta_auc_vs_true" in cells["poca"]["flux_mean"]
    assert "| asr | flux_mean |" in out.with_suffix(".md").read_text()


def test_loss_smoothness_script_scans_a_tiny_batch():
    """benchmarks/loss_smoothness.py: its legacy PoCA equals the current one in float64 (the fix
    changed round-off only), and a 3-point float64 scan gives finite slopes near autograd's."""
    import torch

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "loss_smoothness.py"
    spec = importlib.util.spec_from_file_location("loss_smoothness", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    params = torch.randn(200, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.3
    assert torch.allclose(module.legacy_formula(params, 0.9), module.poca_module._poca(params, 0.9), atol=1e-8)
    problem = module.make_problem(torch.float64)
    design = module.make_design(problem, "random1000", torch.float64)
    settings = module.TrainingSettings(volumes_per_epoch=4, muons_per_volume=100, sampled_hits=True)
    record = module.scan(problem, design, settings, "z", 1e-5, 3, legacy=False)
    assert record["flips"] == 0
    assert abs(record["end_to_end_slope"] - record["autograd"]) <= 1e-3 * max(1.0, abs(record["autograd"]))


def test_bounds_script_records_a_tiny_bound(tmp_path):
    """benchmarks/bounds.py writes a record with its provenance and the bound's shares."""
    config = tmp_path / "tiny.toml"
    config.write_text(
        'extends = "ladle_furnace"\nname = "tiny"\n[task]\nmuons_per_volume = 100\n'
        "[evaluation]\nn_volumes = 4\ncalibration_volumes = 4\nmin_hits = [2]\ncompare = []\n"
    )
    out = tmp_path / "record.json"
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "bounds.py"
    subprocess.run([sys.executable, str(script), str(config), "--json", str(out)], check=True, capture_output=True)
    record = json.loads(out.read_text())
    assert record["benchmark"] == "bounds" and record["date"] and record["machine"]["cores"] >= 1
    assert record["results"]["configuration"] == "tiny"
    assert set(record["results"]["designs"]) == {"start", "ideal", "ideal_momentum"}
    assert "ideal_momentum" in record["results"]["shares"]


def test_presence_clutter_script_collects_maps_and_scores_them_as_the_task_does(tmp_path):
    """The clutter table on 4 + 4 + 4 volumes of 1500 muons: the reference maps it keeps are the
    calibration outputs ``observe_design`` gives, and each statistic's scores are the presence
    task's with that statistic."""
    from mutomo.config import load_config
    from mutomo.config.build import build_problem, evaluation_settings
    from mutomo.optimise.evaluate import observe_design
    from mutomo.tasks import Observations
    from mutomo.tasks.presence import Presence

    module = load("presence_clutter")
    maps = tmp_path / "maps.npz"
    config_path = Path(__file__).resolve().parents[2] / "configs" / "crate_clutter.toml"
    common = ["--volumes", "4", "--references", "4", "--muons", "1500", "--methods", "asr", "poca"]
    module.main(["collect", str(config_path), *common, "--train", "4", "--out", str(maps)])
    more = tmp_path / "posterior.npz"  # a second collection of the same scene, merged into its table
    posterior = ["--methods", "asr", "--momenta", "posterior", "--out", str(more)]
    module.main(["collect", str(config_path), *common[:6], *posterior])
    out = tmp_path / "table"
    module.main(["table", str(maps), str(more), "--out", str(out)])
    results = json.loads(out.with_suffix(".json").read_text())
    cells = results["scenes"]["crate_clutter"]["cells"]
    assert set(cells) == {"asr/flux_mean", "poca/flux_mean", "asr/posterior"}
    assert "` and `" in results["scenes"]["crate_clutter"]["meta"]["command"]
    assert "| asr | flux_mean |" in out.with_suffix(".md").read_text()
    config = load_config(config_path)  # the collected cell: ASR with the flux mean
    task = config.task.model_copy(update={"inference": "asr", "momentum": "flux_mean", "statistic": "clean"})
    config = config.model_copy(update={"task": task})
    problem = build_problem(config)
    from dataclasses import replace

    problem = replace(problem, n_muons=1500)
    settings = replace(evaluation_settings(config), n_volumes=4, calibration_volumes=4, exposure_factors=(1.0,))
    observed = observe_design(problem.design("human_close", ()), problem, settings)
    data = np.load(maps)
    reference = observed.calibration["physical"].outputs
    np.testing.assert_allclose(data["references/asr/flux_mean/score"], reference[:, : reference.shape[1] // 5])
    test = observed.test["physical"]
    for statistic in ("clean", "material"):
        task = Presence("asr", statistic=statistic)
        scores, _ = task.scores(Observations(test.outputs, test.truths), Observations(reference, np.zeros(4)))
        np.testing.assert_allclose(scores, cells["asr/flux_mean"][statistic]["scores"], rtol=1e-5)
        metrics = task.metrics(Observations(test.outputs, test.truths), Observations(reference, np.zeros(4)))
        assert metrics["localisation"].value == cells["asr/flux_mean"]["localisation"][0]


def test_systematics_ladle_script_runs_on_a_tiny_input(tmp_path):
    """Designs under systematic variations (issue 30) at a toy size: the nominal and robust designs
    trained and saved, read back as design files beside both human designs, judged under the
    variation against the better human design and against each other, the verdicts written."""
    module = load("systematics_ladle")
    toy = ["--epochs", "2", "--volumes", "4", "--muons", "100", "--variations", "tail_off"]
    trained = module.main([*toy, "--train", "nominal", "robust", "--save", str(tmp_path), "--no-evaluation"])
    assert set(trained["training"]) == {"nominal", "robust"}
    assert trained["training"]["robust"]["worlds"] and set(trained["training"]["nominal"]["worlds"]) == {"nominal"}
    files = [f"--design={n}={tmp_path / f'design_{n}.json'}" for n in ("nominal", "robust")]
    out = module.main([*toy, *files, "--out", str(tmp_path / "r.json")])
    assert set(out["designs"]) == {"nominal", "robust", "human_acceptance", "human_resolution"}
    human = out["better_human"]
    assert set(out["systematics"]["envelope"]) == {f"nominal - {human}", f"robust - {human}", "robust - nominal"}
    record = json.loads((tmp_path / "r.json").read_text())
    assert record["benchmark"] == "systematics_ladle" and record["results"]["verdicts"] == out["verdicts"]
    assert len(out["verdicts"]) == 3


def test_border_portal_operating_point_script_runs_on_a_tiny_input(tmp_path):
    """Two module counts at a few seconds of scan: every cell sees the same cargos (the same labels),
    reports AUC and detection with errors and counts the muons in the cube's voxel; the record
    names its command; ``--save-maps`` keeps every cell's maps and truth."""
    module = load("border_portal")
    out = tmp_path / "op.json"
    argv = ["operating-point", "border_portal", "--modules", "2", "3", "--exposures", "4", "--volumes", "8"]
    result = module.main([*argv, "--references", "4", "--out", str(out), "--save-maps", str(tmp_path / "maps")])
    cells = result["cells"]
    saved = np.load(tmp_path / "maps" / "K2_4_s.npz")  # the maps a statistic can be tried on offline
    assert saved["test_score"].shape == saved["test_target"].shape and saved["test_score"].shape[0] == 8
    assert saved["reference_inverse_x0"].shape[0] == 4 and not saved["reference_present"].any()
    assert set(cells) == {"K=2 4 s", "K=3 4 s"} and cells["K=2 4 s"]["labels"] == cells["K=3 4 s"]["labels"]
    for cell in cells.values():
        assert 0 <= cell["auc"][0] <= 1 and 0 <= cell["detection_at_1pc_false_alarm"][0] <= 1
        assert cell["muons_in_cube_voxel"][0] >= 0 and cell["generated_muons_per_cargo"] > 0
        assert cell["reconstructed_muons_per_cargo"] <= cell["generated_muons_per_cargo"]
    record = json.loads(out.read_text())
    assert record["command"].startswith("python benchmarks/border_portal.py operating-point border_portal")
    assert record["results"]["statistic"] == "material"
    # Two runs of the later cargos, combined, are the one run on all of them; compare pairs cells.
    parts = []
    for first in ("0", "4"):
        parts.append(tmp_path / f"part{first}.json")
        part = [*argv[:2], "--modules", "2", "--exposures", "4", "--volumes", "4", "--first", first]
        module.main([*part, "--references", "4", "--out", str(parts[-1])])
    merged = module.main(["combine", *map(str, parts), "--out", str(tmp_path / "all.json")])["cells"]["K=2 4 s"]
    whole = cells["K=2 4 s"]
    assert merged["scores"] == pytest.approx(whole["scores"]) and merged["labels"] == whole["labels"]
    assert merged["auc"] == pytest.approx(whole["auc"]) and merged["test_volumes"] == 8
    assert merged["muons_in_cube_voxel"] == pytest.approx(whole["muons_in_cube_voxel"])
    with pytest.raises(MutomoError, match="consecutive"):
        module.main(["combine", str(parts[1]), str(parts[1]), "--out", str(tmp_path / "bad.json")])
    paired = module.main(["compare", f"{out}#K=3 4 s", str(parts[1]), "--out", str(tmp_path / "p.json")])
    assert paired["cargos"] == [4, 8] and paired["test_volumes"] == 4  # only the cargos both saw
    self_paired = module.main(["compare", f"{out}#K=2 4 s", f"{out}#K=2 4 s", "--out", str(tmp_path / "s.json")])
    assert self_paired["auc_difference"] == [0.0, 0.0] and self_paired["detection_difference"][0] == 0.0
    with pytest.raises(MutomoError, match="name one"):
        module.main(["compare", str(out), str(parts[0]), "--out", str(tmp_path / "x.json")])


def test_border_portal_oracle_rest_scores_with_the_truth_and_does_not_merge_with_the_fit(tmp_path):
    """``--oracle-rest`` (the likelihood statistic's evidence with the rest of the cargo at its truth)
    names itself in the record, is refused for another statistic, and a combine refuses to merge
    it with the fitted statistic's record."""
    module = load("border_portal")
    config = str(BENCHMARKS.parent / "configs" / "border_portal_robust.toml")
    argv = ["operating-point", config, "--modules", "3", "--exposures", "4", "--volumes", "4"]
    oracle = module.main([*argv, "--oracle-rest", "--out", str(tmp_path / "oracle.json")])
    fitted = module.main([*argv, "--first", "4", "--out", str(tmp_path / "fitted.json")])
    assert oracle["oracle"] == "rest at truth" and fitted["oracle"] is None
    cell = oracle["cells"]["K=3 4 s"]
    assert len(cell["scores"]) == 4 and all(np.isfinite(cell["scores"]))
    for value, label in zip(cell["cube_score_per_cargo"], cell["labels"], strict=True):
        assert (value is None) == (not label) and (value is None or np.isfinite(value))  # the cube's evidence
    with pytest.raises(MutomoError, match="differ in oracle"):
        module.main(
            ["combine", str(tmp_path / "oracle.json"), str(tmp_path / "fitted.json"), "--out", str(tmp_path / "x.json")]
        )
    with pytest.raises(MutomoError, match="--oracle-rest needs the likelihood statistic"):
        module.main(
            ["operating-point", "border_portal", "--volumes", "2", "--oracle-rest", "--out", str(tmp_path / "y.json")]
        )


def test_border_portal_cargo_diagnosis_reports_the_voxels_and_muons_behind_a_score(tmp_path):
    """One cargo at a few seconds: the top voxel's evidence is the highest measured one and equals
    its best target's log-likelihood minus its best innocent's; every muon listed crosses it;
    the record names its command; a configuration without the likelihood statistic and a voxel
    outside the grid are refused by name."""
    module = load("border_portal_cargo")
    config = str(BENCHMARKS.parent / "configs" / "border_portal_robust.toml")
    argv = [config, "--cargo", "1", "--modules", "3", "--exposure", "20", "--top", "3"]
    result = module.main([*argv, "--out", str(tmp_path / "c.json")])
    top = result["top"]
    assert [v["evidence"] for v in top] == sorted((v["evidence"] for v in top), reverse=True)
    inspected = result["inspected"]
    assert inspected["index"] == top[0]["index"] and result["outlier_fraction"] == 1e-3
    targets = len(result["hypotheses_inverse_x0"]["targets"])
    ll = inspected["log_likelihood_minus_best"]
    assert max(ll) == 0.0 and inspected["evidence"] == pytest.approx(max(ll[:targets]) - max(ll[targets:]), abs=1e-9)
    assert len(inspected["muon_list"]) > 0 and all(m["length_in_voxel_m"] > 0 for m in inspected["muon_list"])
    assert all(0 <= m["outlier_posterior"] <= 1 for m in inspected["muon_list"])
    assert json.loads((tmp_path / "c.json").read_text())["command"].startswith(
        "python benchmarks/border_portal_cargo.py"
    )
    with pytest.raises(MutomoError, match="statistic = 'likelihood'"):
        module.main(["border_portal", "--cargo", "1", "--modules", "3", "--exposure", "5"])
    with pytest.raises(MutomoError, match="--voxel"):
        module.main([*argv, "--voxel", "99,0,0"])


def test_border_portal_information_known_momentum_matches_the_closed_form(tmp_path):
    """With the momentum known and no noise, four Gaussian components whose variance ratio is
    rho = theta0_U^2 / theta0_Pb^2 give 2 (rho - 1 - ln rho) nats per muon (the divergence of two
    zero-mean Gaussians); the unknown-momentum divergence is positive and far smaller."""
    module = load("border_portal_information")
    record = BENCHMARKS / "results" / "border_portal" / "operating_point_likelihood_K6_300.json"
    argv = ["--draws", "20000", "--bins", "80", "--cuts", "0.3", "1.0", "--records", str(record)]
    result = module.main([*argv, "--out", str(tmp_path / "i.json")])
    (bound,) = result["bound_detection"]  # measured: above the highest of the record's 40 clean cargos, as recorded
    cell = json.loads(record.read_text())["results"]["cells"]["K=6 300 s"]
    assert bound["measured_detection"] == pytest.approx(cell["detection_at_1pc_false_alarm"][0])
    assert 0 <= bound["bound_detection"] <= 1
    row = next(r for r in result["rows"] if r["data"] == "angle_and_displacement" and r["against"] == "lead")
    cos = np.linspace(0.5, 1.0, 50)  # rho depends on the angle only through Highland's log term
    rho = module.highland_variance(np.ones_like(cos), cos, 315.83) / module.highland_variance(
        np.ones_like(cos), cos, 178.18
    )
    closed = 2 * (rho - 1 - np.log(rho))
    mean, error, _ = row["known_momentum"]
    assert closed.min() - 4 * error <= mean <= closed.max() + 4 * error
    assert 0 < row["unknown_momentum"][0] < 0.3 * mean


def test_border_portal_acceptance_counts_each_muon_once_a_layer_and_draws_the_maps(tmp_path):
    """A few seconds of muons through a clean cargo for three placements: a muon seen above and
    below crosses each horizontal layer of the inside once unless it leaves by a side, so no
    layer holds more muons than were reconstructed and, for modules over the container's
    footprint, nearly all of them; the whole frame sees more than three modules; the detection of
    an operating-point record is read into the table; the figure is written; a configuration
    without ML/EM and a bad --detection are refused."""
    module = load("border_portal_acceptance")
    config = str(BENCHMARKS.parent / "configs" / "border_portal_robust.toml")
    op = load("border_portal")
    op.main(
        [
            "operating-point",
            config,
            "--modules",
            "3",
            "--exposures",
            "4",
            "--volumes",
            "2",
            "--out",
            str(tmp_path / "op.json"),
        ]
    )
    argv = [config, "--modules", "3", "8", "--designs", "offset", "--exposure", "10", "--out", str(tmp_path / "a.json")]
    result = module.main(
        [*argv, "--detection", f"K=3 tiled={tmp_path / 'op.json'}", "--figure", str(tmp_path / "a.png")]
    )
    rows = result["placements"]
    assert set(rows) == {"K=3 tiled", "K=8 tiled", "K=3 offset"}
    for row in rows.values():
        layers = np.asarray(row["muons_per_layer"])
        assert layers.max() <= row["reconstructed_muons"] + 1e-6
        assert layers.min() >= 0.8 * row["reconstructed_muons"]
        assert len(row["map_xy"]) == 59 and len(row["map_xy"][0]) == 23
    assert rows["K=8 tiled"]["reconstructed_muons"] > 2 * rows["K=3 tiled"]["reconstructed_muons"]
    assert rows["K=8 tiled"]["median_muons_per_voxel"] > rows["K=3 tiled"]["median_muons_per_voxel"]
    assert result["detection"] == {"K=3 tiled": str(tmp_path / "op.json")}
    shown = module.table(result).splitlines()
    assert len(shown) == 5 and "(2) |" in shown[2] and shown[3].endswith("not measured |  |")
    assert (tmp_path / "a.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "a.json").read_text())["command"].startswith(
        "python benchmarks/border_portal_acceptance.py"
    )
    with pytest.raises(MutomoError, match="mlem"):
        module.main(["border_portal", "--modules", "3", "--exposure", "5", "--out", str(tmp_path / "b.json")])
    with pytest.raises(MutomoError, match="--detection"):
        module.main([*argv, "--detection", "no-equals-sign"])
