"""Design files that know what they were made for (issue 26, point 4): a run's design files
record the problem, task and a scene fingerprint; evaluating one on another scene is allowed but
warned of by name, instead of a refusal about a panel outside the region."""

from __future__ import annotations

import json
import warnings

import pytest

from mutomo.app.cli import main
from mutomo.config import build_problem, load_config, parse_config
from mutomo.config.build import build_design
from mutomo.errors import ConfigError, MutomoWarning

MOVED = """extends = "ladle_furnace"
name = "ladle_moved"
[scene]
origin = [3.0, 0.0, 0.4]
[region]
x = [2.5, 4.5]
[task]
muons_per_volume = 200
[evaluation]
n_volumes = 4
calibration_volumes = 2
min_hits = [2]
compare = []
"""


@pytest.fixture()
def ladle_design_file(tmp_path):
    problem = build_problem(load_config("ladle_furnace"))
    path = tmp_path / "design_final.json"
    path.write_text(problem.design_json(build_design(load_config("ladle_furnace"), problem)))
    return problem, path


def test_a_design_file_records_what_it_was_made_for(ladle_design_file):
    problem, path = ladle_design_file
    made_for = json.loads(path.read_text())["made_for"]
    assert made_for["problem"] == "ladle_furnace" and made_for["task"] == "regression by fill_statistic"
    assert len(made_for["fingerprint"]) == 12 and made_for == problem.made_for
    with warnings.catch_warnings():
        warnings.simplefilter("error", MutomoWarning)  # on its own problem: no warning
        problem.design(str(path), (), None)


def test_evaluating_a_design_on_another_scene_is_warned_by_name(ladle_design_file, tmp_path, capsys):
    ladle, path = ladle_design_file
    config = tmp_path / "moved.toml"
    config.write_text(MOVED)
    moved = build_problem(load_config(config))
    assert moved.made_for["fingerprint"] != ladle.made_for["fingerprint"]
    with pytest.warns(MutomoWarning, match="design made for ladle_furnace .*, evaluated on ladle_moved"):
        design = moved.design(str(path), (), None)
    assert design.bounds.x == (-0.5, 4.5)  # the region widened to hold the design's own
    out = tmp_path / "m.json"
    assert main(["evaluate", str(path), "--config", str(config), "--json", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"warning: design file {path}: design made for ladle_furnace (regression by fill_statistic" in err
    assert "evaluated on ladle_moved" in err and out.exists()
    task = json.loads(out.read_text())["task"]  # what the at-chance verdict of `mutomo evaluate` reads
    assert task["kind"] == "regression" and task["no_information"]["mse"][0] > 0


def test_a_hand_written_design_outside_the_region_is_still_refused(ladle_design_file, tmp_path):
    _, path = ladle_design_file
    d = json.loads(path.read_text())
    del d["made_for"]
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps(d))
    config = tmp_path / "moved.toml"
    config.write_text(MOVED)
    with pytest.raises(ConfigError, match="outside the allowed range"):
        build_problem(parse_config(json.loads(json.dumps(load_config(config).model_dump())))).design(
            str(bare), (), None
        )


def test_exporting_a_design_of_another_scene_warns_and_names_the_overlap(ladle_design_file, tmp_path, capsys):
    """The ladle's design exported with a waste-block volume: warned by name, and its panels below
    (z 0.32-0.35 m, inside the block's 0-1 m) refused as overlapping the volume, not as too thick."""
    pytest.importorskip("pyg4ometry")
    _, path = ladle_design_file
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(load_config("waste_block").model_dump_json())
    assert main(["export", str(run), "--gdml", str(tmp_path / "x.gdml"), "--design", str(path)]) == 2
    err = capsys.readouterr().err
    assert (
        "warning: design file" in err and "design made for ladle_furnace, exported with a volume of waste_block" in err
    )
    assert "lies inside the scanned volume" in err and "thinner" not in err
