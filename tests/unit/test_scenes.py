"""Scenes from configuration: every background kind, objects, reproducibility, and refusals."""

import numpy as np
import pytest
import torch

from mutomo.config.build import build_problem
from mutomo.config.schema import ConfigError, load_config, parse_config
from mutomo.materials import get_material
from mutomo.scenes import Scene, SceneSpec


def made_of(x0, name):
    """Voxels whose X0 is that of material ``name``."""
    return torch.isclose(x0, torch.tensor(get_material(name).x0, dtype=x0.dtype), rtol=1e-5)


def scene(**kwargs):
    spec = {"size": [1.0, 1.0, 1.0], "origin": [0.0, 0.0, 0.4], "voxel": 0.1, **kwargs}
    return Scene(SceneSpec.model_validate(spec))


def test_a_key_always_gives_the_same_volume_and_other_keys_differ():
    s = scene(
        background={"clutter": {"iron": 0.2, "water": 0.3, "air": 0.5}},
        objects=[
            {"material": "lead", "size": [0.2] * 3, "low": {"min": [0] * 3, "max": [0.8] * 3}, "probability": 0.5}
        ],
    )
    a, b, c = s.sample((3, 1, 7)), s.sample((3, 1, 7)), s.sample((3, 1, 8))
    assert (a.volume.material_index == b.volume.material_index).all() and a.objects == b.objects
    assert not (a.volume.material_index == c.volume.material_index).all()
    with pytest.raises(ValueError, match="non-negative"):
        s.sample((-1,))


def test_uniform_background_and_a_fixed_object_land_exactly():
    s = scene(
        background={"material": "concrete"},
        objects=[{"material": "uranium", "size": [0.2, 0.1, 0.3], "low": [0.3, 0.5, 0.1]}],
    )
    v = s.sample((0,))
    uranium = made_of(v.volume.x0, "uranium")
    assert int(uranium.sum()) == 2 * 1 * 3
    assert uranium[3:5, 5:6, 1:4].all()
    assert v.present and v.objects[0].low == pytest.approx((0.3, 0.5, 0.5))  # absolute: origin z = 0.4
    assert v.target_mask().sum() == 6


def test_layers_give_the_fill_height_the_voxels_hold():
    s = scene(
        background={
            "layers": [
                {"material": "steel", "thickness": 0.1},
                {"material": "liquid_steel", "thickness": {"values": [0.2, 0.5]}, "target": True},
                {"material": "slag", "thickness": 0.1},
            ],
            "above": "air",
        }
    )
    for i in range(10):
        v = s.sample((i,))
        melt = made_of(v.volume.x0[5, 5], "liquid_steel")
        top_layer = int(melt.nonzero().max()) + 1
        assert v.fill_height == pytest.approx(0.4 + 0.1 * top_layer)
        assert v.fill_height in (pytest.approx(0.7), pytest.approx(1.0))
        assert made_of(v.volume.x0[5, 5, top_layer], "slag")


def test_clutter_fractions_and_fill_height_follow_the_specification():
    fractions = {"iron": 0.1, "water": 0.3, "wood": 0.6}
    s = scene(background={"clutter": fractions, "fill_height": {"min": 0.3, "max": 0.7}, "above": "air"})
    counts = dict.fromkeys(fractions, 0)
    total = 0
    for i in range(20):
        v = s.sample((i,))
        n_fill = round((v.fill_height - 0.4) / 0.1)
        assert 3 <= n_fill <= 7
        x0 = v.volume.x0
        assert made_of(x0[:, :, n_fill:], "air").all()
        for name in fractions:
            counts[name] += int(made_of(x0[:, :, :n_fill], name).sum())
        total += 100 * n_fill
    for name, p in fractions.items():
        # Binomial: within 4 standard deviations of the requested fraction.
        assert abs(counts[name] / total - p) < 4 * np.sqrt(p * (1 - p) / total), (name, counts[name] / total)


def test_object_probability_forcing_and_conditions():
    s = scene(
        background={"material": "concrete"},
        objects=[
            {"material": "uranium", "size": [0.1] * 3, "low": {"min": [0] * 3, "max": [0.9] * 3}, "probability": 0.3},
            {"material": "lead", "size": [0.1] * 3, "low": [0, 0, 0], "role": "other", "when": "target_absent"},
        ],
    )
    present = np.array([s.sample((i,)).present for i in range(600)])
    assert abs(present.mean() - 0.3) < 4 * np.sqrt(0.3 * 0.7 / 600)
    for i in range(20):
        forced = s.sample((i,), present=True)
        assert forced.present and [o.role for o in forced.objects] == ["target"]
        absent = s.sample((i,), present=False)
        assert not absent.present and [o.material for o in absent.objects] == ["lead"]
        low = forced.objects[0].low
        assert all(0.0 <= low[a] - (0.4 if a == 2 else 0.0) <= 0.9 + 1e-9 for a in range(3))


def _config(**changes):
    base = {
        "task": {"kind": "presence", "inference": "asr", "exposure_s": 60},
        "scene": {
            "size": [1, 1, 1],
            "origin": [0, 0, 0.4],
            "voxel": 0.1,
            "background": {"material": "concrete"},
            "objects": [{"material": "uranium", "size": [0.1] * 3, "low": [0.4] * 3, "probability": 0.5}],
        },
        "designs": {"start": {"xy": [0.5, 0.5], "z_above": [1.6, 1.5], "z_below": [0.3, 0.2]}},
        "design": {"start": "start"},
    }
    for path, value in changes.items():
        *parents, leaf = path.split(".")
        node = base
        for p in parents:
            node = node[p] if not p.isdigit() else node[int(p)]
        node[leaf if not leaf.isdigit() else int(leaf)] = value
    return base


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"scene.objects": [{"material": "uranium", "size": [0.1] * 3, "low": [0.95, 0, 0]}]}, r"outside the scene"),
        ({"scene.background": {"clutter": {"iron": 0.5, "air": 0.4}}}, r"fractions must sum to 1"),
        ({"scene.background": {"material": "unobtainium"}}, r"unknown material.*unobtainium"),
        ({"scene.objects.0.probability": 1.5}, r"scene\.objects\.0\.probability"),
        ({"scene.objects.0.probability": 1.0}, r"presence task needs"),
        ({"scene.size": [1.0, 1.0, 1.05]}, r"not a whole number"),
        ({"task.inference": "fill_statistic"}, r"does not fit a presence task"),
        ({"task.muons_per_volume": 100}, r"exactly one of exposure_s and muons_per_volume"),
        ({"task.kind": "regression", "task.inference": "fill_statistic"}, r"regression task needs"),
    ],
)
def test_bad_scenes_and_tasks_are_refused_naming_the_field(changes, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(_config(**changes))


def test_user_materials_are_built_from_composition_and_checked():
    ok = _config(**{"scene.background": {"material": "ss304"}})
    ok["materials"] = [
        {"name": "ss304", "density": 8000, "composition": {"Fe": 0.695, "Cr": 0.19, "Ni": 0.095, "Mn": 0.02}}
    ]
    problem = build_problem(parse_config(ok))
    assert problem.scene.materials[0].x0 == pytest.approx(0.0176, rel=0.03)  # ~ iron's 1.757 cm
    bad_density = dict(ok, materials=[{**ok["materials"][0], "density": -1}])
    with pytest.raises(ConfigError, match=r"materials\.0\.density"):
        parse_config(bad_density)
    bad_sum = dict(ok, materials=[{**ok["materials"][0], "composition": {"Fe": 0.5, "Cr": 0.2}}])
    with pytest.raises(ConfigError, match=r"sum to 1"):
        parse_config(bad_sum)
    bad_element = dict(ok, materials=[{**ok["materials"][0], "composition": {"Xx": 1.0}}])
    with pytest.raises(ConfigError, match=r"materials\[0\] \(ss304\).*Xx"):
        build_problem(parse_config(bad_element))


def test_empty_and_unknown_configurations_are_refused(tmp_path):
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="empty"):
        load_config(empty)
    with pytest.raises(ConfigError, match="extends: 'volcano' is neither a built-in benchmark"):
        parse_config({"extends": "volcano"})


def test_the_issue_example_configuration_validates_and_builds(tmp_path):
    path = tmp_path / "example.toml"
    path.write_text(
        """
[task]
kind = "presence"
inference = "asr"
exposure_s = 600
[scene]
size = [1.0, 1.0, 1.0]
origin = [0.0, 0.0, 0.4]
voxel = 0.1
background = { material = "concrete" }
[[scene.objects]]
material = "uranium"
size = [0.1, 0.1, 0.1]
low = { min = [0.1, 0.1, 0.1], max = [0.8, 0.8, 0.8] }
probability = 0.5
[[materials]]
name = "stainless_304"
density = 8000
composition = { Fe = 0.695, Cr = 0.19, Ni = 0.095, Mn = 0.02 }
[designs.start]
xy = [0.5, 0.5]
z_above = [1.6, 1.5]
z_below = [0.3, 0.2]
[design]
start = "start"
"""
    )
    problem = build_problem(load_config(path))
    assert problem.task.kind == "presence" and problem.exposure_s == pytest.approx(600, rel=1e-3)
    assert problem.sample((0, 2, 0), index=0).present and not problem.sample((0, 2, 1), index=1).present


def test_the_shipped_configurations_validate_and_build():
    from pathlib import Path

    from mutomo.config.schema import builtin_configs

    paths = [*builtin_configs().values(), *sorted(Path(__file__).resolve().parents[2].glob("configs/*.toml"))]
    assert len(paths) >= 3
    for path in paths:
        problem = build_problem(load_config(path))
        config = load_config(path)
        for name in [config.design.start, *config.evaluation.compare]:
            problem.design(name)
