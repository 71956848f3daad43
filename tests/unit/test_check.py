"""``mutomo check`` and ``mutomo tasks`` (issue 26): what a run would do, before it does it."""

from __future__ import annotations

import yaml

from mutomo.app.check import preview_volumes
from mutomo.app.cli import main
from mutomo.config import build_problem, load_config
from mutomo.plotting.preview import contrast_slice
from tests.unit.test_landscape import SMALL_LADLE


def test_check_prints_what_a_run_would_do_and_draws_the_scene(tmp_path, capsys):
    config = tmp_path / "small.toml"
    config.write_text(SMALL_LADLE)
    figure = tmp_path / "preview.png"
    assert main(["check", str(config), "--figure", str(figure)]) == 0
    out = capsys.readouterr().out
    merged = yaml.safe_load(out.split("\n\n")[0].split("\n", 1)[1])  # the merged configuration, as YAML
    assert merged["task"]["muons_per_volume"] == 200 and merged["scene"]["voxel"] == 0.1  # own and inherited
    saved = tmp_path / "merged.yaml"
    saved.write_text(yaml.safe_dump(merged))
    assert load_config(saved).model_dump() == load_config(config).model_dump()  # valid as a file of its own
    for said in (
        "small.toml: valid. What `mutomo optimise` would do:",
        "task: regression by fill_statistic",
        "test volumes: 200 muons each",
        "training: 300 epochs x 16 volumes x 1,000 muons = 16,000 muons per epoch",
        "budget: fixed at 5999.65 (the start's cost)",
        "poor: 4 panels above, 4 below; cost 5999.65 [start]",
        "human_acceptance: 4 panels above, 4 below; cost 5999.65 [compared]",
        "evaluation: 4 test volumes, 2 calibration volumes",
        "headline error: MSE relative error about 71 % from the 4 test volumes",
        "estimated run time on this machine:",
        "no warnings",
    ):
        assert said in out, said
    assert figure.stat().st_size > 0 and figure.with_suffix(".svg").stat().st_size > 0


def test_check_prints_warnings_and_refuses_what_a_run_refuses(tmp_path, capsys):
    config = tmp_path / "scrap.toml"
    config.write_text(
        'extends = "waste_block"\n[task]\nexposure_s = 2\n'
        '[[materials]]\nname = "scrap"\ndensity = 7.85\ncomposition = { Fe = 1.0 }\n'
        '[scene]\nbackground = { material = "scrap" }\n'
    )
    assert main(["check", str(config), "--no-figure", "--no-timing"]) == 0
    out = capsys.readouterr().out
    assert "warning: materials[0] (scrap): density 7.85 kg/m^3 is implausible" in out
    assert "warning: task.exposure_s = 2 s gives about" in out and "estimated run time" not in out
    assert "AUC error about +-0.053 at AUC 0.5" in out  # 120 test volumes, half with the cube
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'extends = "ladle_furnace"\n[designs.two]\nxy = [0.5, 0.5]\nz_above = [2.0, 1.5]\n'
        'z_below = [0.3, -0.3]\n[design]\nstart = "two"\n'
    )
    figure = tmp_path / "never.png"
    assert main(["check", str(bad), "--figure", str(figure)]) == 2
    err = capsys.readouterr().err
    assert "evaluation.min_hits" in err and "design 'two' has 2 panels above" in err
    assert not figure.exists()


def test_preview_shows_the_slice_through_the_target():
    problem = build_problem(load_config("waste_block"))
    volumes = {k: v.numpy() for k, v in preview_volumes(problem).items()}
    with_target, without = volumes.values()
    iy = contrast_slice([with_target, without])
    assert (with_target[:, iy, :] < without[:, iy, :]).any()  # the uranium cube lies in that slice
    assert (with_target != without).any(axis=(0, 2)).nonzero()[0].tolist().count(iy) == 1


def test_tasks_lists_each_builtin_budget_and_designs(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    assert "budget fixed at the start's (poor) cost; start poor; poor 4+4 panels, cost 5999.6" in out
    assert "human_close 3+3 panels, cost" in out  # waste_block
    assert "see what it would do with `mutomo check FILE`" in out


def test_check_names_hodoscope_modules_and_their_price(capsys):
    assert main(["check", "lorry_uranium", "--no-figure", "--no-timing"]) == 0
    out = capsys.readouterr().out
    assert "budget: none (free cost, no penalty); hodoscope modules are bought as built, 25000 each" in out
    assert "poor: 6 panels above, 6 below (4 hodoscope modules); cost 100000 [start]" in out
