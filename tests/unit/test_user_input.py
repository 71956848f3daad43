"""Malformed input as a user gives it (issue 26): refused with exit 2, naming the file, field,
design or row, before anything is simulated or written; and configurations built on others."""

from __future__ import annotations

import pytest

from mutomo.app.cli import main
from mutomo.config import RunConfig, build_problem, load_config, parse_config
from mutomo.config.build import build_design, comparison_designs, evaluation_settings
from mutomo.errors import ConfigError

TWO_A_SIDE = {"xy": [0.5, 0.5], "z_above": [2.0, 1.5], "z_below": [0.3, -0.3], "span": 1.0}


def test_binary_junk_configuration_is_refused_naming_the_file(tmp_path, capsys):
    junk = tmp_path / "junk.toml"
    junk.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ConfigError, match=r"junk\.toml: not a text file \(byte 128 is not UTF-8\)"):
        load_config(junk)
    assert main(["optimise", str(junk), "--output", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "junk.toml: not a text file" in err and "this is a bug" not in err
    assert not (tmp_path / "run").exists()
    text = tmp_path / "fine.toml"
    text.write_text('extends = "ladle_furnace"\nname = "héllo"\n')  # UTF-8 text with a non-ASCII letter is read
    assert load_config(text).name == "héllo"


def test_folder_given_as_configuration_is_refused(tmp_path):
    folder = tmp_path / "conf.toml"
    folder.mkdir()
    with pytest.raises(ConfigError, match=r"conf\.toml: cannot be read"):
        load_config(folder)


def test_design_with_fewer_panels_than_a_trigger_is_refused_before_the_run_folder(tmp_path, capsys):
    path = tmp_path / "two.toml"
    path.write_text(
        'extends = "ladle_furnace"\n[designs.two]\nxy = [0.5, 0.5]\nz_above = [2.0, 1.5]\nz_below = [0.3, -0.3]\n'
        'span = 1.0\n[design]\nstart = "two"\n'
    )
    run_dir = tmp_path / "run"
    assert main(["optimise", str(path), "--output", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert "evaluation.min_hits = [2, 3, 'all'] asks for 3 hits a side" in err
    assert "design 'two' has 2 panels above" in err and str(path) in err
    assert not run_dir.exists()  # nothing half-written


def test_trigger_check_passes_designs_that_have_the_panels():
    config = parse_config({"extends": "ladle_furnace", "designs": {"two": TWO_A_SIDE}})
    problem = build_problem(config)
    two = problem.design("two", (), None, what="design")
    humans = comparison_designs(config, problem, None)
    settings = evaluation_settings(config)  # [2, 3, "all"]
    settings.check_triggers(humans)  # four panels a side: no refusal
    relaxed = evaluation_settings(
        config.model_copy(update={"evaluation": config.evaluation.model_copy(update={"min_hits": [2, "all"]})})
    )
    relaxed.check_triggers({"two": two, **humans})  # "all" is each design's own count
    with pytest.raises(ConfigError, match="design 'two' has 2 panels above"):
        settings.check_triggers({"two": two})


def test_extends_a_users_own_file_relative_to_it(tmp_path):
    (tmp_path / "base").mkdir()
    base = tmp_path / "base" / "scrap.toml"
    base.write_text('extends = "ladle_furnace"\nname = "scrap"\n[training]\nepochs = 7\n')
    child = tmp_path / "child.yaml"
    child.write_text("extends: base/scrap.toml\ntraining:\n  seed: 3\n")
    config = load_config(child)
    assert (config.name, config.training.epochs, config.training.seed) == ("scrap", 7, 3)
    assert config.scene == load_config("ladle_furnace").scene
    assert build_design(config, build_problem(config)) is not None


def test_extends_missing_file_and_circles_are_refused(tmp_path):
    child = tmp_path / "child.toml"
    child.write_text('extends = "nowhere.toml"\n')
    with pytest.raises(ConfigError, match=r"child\.toml: extends: 'nowhere\.toml' is neither a built-in benchmark"):
        load_config(child)
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text('extends = "b.toml"\n')
    b.write_text('extends = "a.toml"\n')
    with pytest.raises(ConfigError, match="extends itself"):
        load_config(a)
    with pytest.raises(ConfigError, match="extends must be"):
        parse_config({"extends": 3})


def test_reference_describes_the_budget_keys_and_the_batch_rule():
    """The configuration reference is generated from the schema's descriptions: the keys a new
    user needed and could not find are described there."""
    schema = RunConfig.model_json_schema()
    defs = schema["$defs"]
    assert ">= 6" in defs["TrainingConfig"]["properties"]["volumes_per_epoch"]["description"]
    assert "clean reference volumes" in defs["TaskConfig"]["properties"]["reference"]["description"]
    for key in ("budget", "fixed_budget", "trainable"):
        assert defs["DesignConfig"]["properties"][key]["description"], key
    for key in ("per_m2", "reference_resolution", "reference_efficiency", "resolution_exponent", "per_panel"):
        assert defs["CostConfig"]["properties"][key]["description"], key


def test_presence_batch_below_six_volumes_is_refused_naming_the_field(tmp_path, capsys):
    path = tmp_path / "small_batch.toml"
    path.write_text('extends = "waste_block"\n[training]\nvolumes_per_epoch = 4\n')
    assert main(["check", str(path), "--no-figure", "--no-timing"]) == 2
    assert "training.volumes_per_epoch must be >= 6 for this presence task; got 4" in capsys.readouterr().err
    path.write_text('extends = "waste_block"\n[task]\nreference = "volume"\n[training]\nvolumes_per_epoch = 4\n')
    assert main(["check", str(path), "--no-figure", "--no-timing"]) == 0  # no clean references: 4 is enough
