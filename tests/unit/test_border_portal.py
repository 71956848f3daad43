"""The border-control portal (issue 29): the built-in ``border_portal`` configuration (a 20-ft
container's cargo, modules sized like real ones, z fixed by the portal's frame), objects drawn
under the goods' fill height, and a short optimisation whose placements never overlap."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from mutomo.config import build_problem, load_config, parse_config
from mutomo.design.describe import design_from_description
from mutomo.design.hodoscopes import HodoscopeDesign
from mutomo.scenes.scene import Scene
from mutomo.scenes.spec import SceneSpec


def _materials(volume) -> dict[str, np.ndarray]:
    index = volume.material_index.numpy()
    return {m.name: index == i for i, m in enumerate(volume.materials)}


def test_the_portal_builds_with_its_container_shell_and_modules_at_fixed_heights():
    config = load_config("border_portal")
    problem = build_problem(config)
    sample = problem.scene.sample((0, 2, 0), present=True)
    where = _materials(sample.volume)
    assert sample.volume.material_index.shape == (61, 25, 26)
    assert where["container_floor"][:, :, 0].all() and where["container_wall"][:, :, -1].all()  # floor, roof
    for wall in (where["container_wall"][0], where["container_wall"][-1]):  # the front wall and the doors
        assert wall[:, 1:-1].all()
    assert where["container_wall"][1:-1, 0, 1:-1].all() and where["container_wall"][1:-1, -1, 1:-1].all()
    assert where["uranium"].sum() == 1
    for name in ["tiled", "offset", "block", "poor"]:
        design = problem.design(name)
        assert isinstance(design, HodoscopeDesign) and design.n_modules == 6
        assert design._layout.overlaps(design.centres.detach().numpy()) == []
        assert sorted(set(design.centres[:, 2].tolist())) == pytest.approx([-0.2, 4.05])
    assert config.design.trainable == ["xy"]  # z is fixed by the portal's frame


def test_the_uranium_cube_lies_under_the_goods_and_inside_the_walls():
    problem = build_problem(load_config("border_portal"))
    dz = problem.scene.voxel_size[2]
    seen_heights = []
    for i in range(40):
        sample = problem.scene.sample((3, 2, i), present=True)
        cube = next(p for p in sample.objects if p.name == "uranium cube")
        assert sample.fill_height is not None and cube.high[2] <= sample.fill_height + 1e-9
        assert cube.index_low[0] >= 1 and cube.index_high[0] <= 60 and cube.index_low[1] >= 1
        assert cube.index_high[1] <= 24 and cube.index_low[2] >= 1
        seen_heights.append((cube.low[2] - problem.scene.z_low) / dz)
    assert len(set(np.round(seen_heights).astype(int).tolist())) > 5  # spread over the heights, not piled up


def _spec(fill, low, below_fill=True):
    return SceneSpec.model_validate(
        {
            "size": [1.0, 1.0, 1.0],
            "voxel": 0.1,
            "background": {"clutter": {"wood": 0.5, "air": 0.5}, "fill_height": fill},
            "objects": [{"material": "lead", "size": [0.1, 0.1, 0.1], "low": low, "below_fill": below_fill}],
        }
    )


def test_below_fill_maps_the_drawn_height_under_the_fill_and_keeps_the_draws():
    """With the fill at 0.5 m, a height drawn uniformly in [0, 0.9] m is mapped onto [0, 0.4] m:
    the same key gives the same x and y as without the option, and z scaled by 0.4 / 0.9."""
    anywhere = {"min": [0.0, 0.0, 0.0], "max": [0.9, 0.9, 0.9]}
    under, free = Scene(_spec(0.5, anywhere)), Scene(_spec(0.5, anywhere, below_fill=False))
    for i in range(20):
        a, b = under.sample((1, i)).objects[0], free.sample((1, i)).objects[0]
        assert a.index_low[:2] == b.index_low[:2] and a.index_high[2] <= 5
        drawn = b.index_low[2] * 0.1  # the free cube's voxel edge, within half a voxel of the drawn height
        assert abs(a.low[2] - drawn * 0.4 / 0.9) <= 0.1 * (0.5 + 0.5 * 0.4 / 0.9) + 1e-9


def test_below_fill_refuses_a_fill_that_can_be_lower_than_the_object():
    with pytest.raises(ValidationError, match=r"objects\[0\] \(lead\)\.below_fill: the fill can be as low as 0\.3 m"):
        _spec({"min": 0.3, "max": 0.8}, [0.0, 0.0, 0.25])


def test_a_short_portal_optimisation_moves_modules_in_xy_only_and_never_overlaps(tmp_path):
    from mutomo.app.run import run

    config = parse_config(
        {
            "extends": "border_portal",
            "task": {"exposure_s": 10.0},
            "training": {"epochs": 2, "volumes_per_epoch": 8, "exposure_s": 10.0, "validation_volumes": 0},
            "evaluation": {
                "n_volumes": 8,
                "calibration_volumes": 4,
                "exposure_factors": [1.0],
                "min_hits": [3],
                "bounds": [],
                "compare": ["offset"],
            },
            "design": {"start": "tiled"},
            "output": {"x0_muons": 2000},
        }
    )
    torch.manual_seed(0)
    evaluations = run(config, tmp_path / "run", progress=False)
    assert {"initial", "offset", "optimised"} <= set(evaluations["designs"])
    start = json.loads((tmp_path / "run" / "design_initial.json").read_text())
    final = json.loads((tmp_path / "run" / "design_final.json").read_text())
    moved = np.array(final["centres"]) - np.array(start["centres"])
    assert np.abs(moved[:, :2]).max() > 0 and np.abs(moved[:, 2]).max() == 0  # x, y moved; z fixed
    design = design_from_description(final)
    assert isinstance(design, HodoscopeDesign) and design._layout.overlaps(design.centres.detach().numpy()) == []
