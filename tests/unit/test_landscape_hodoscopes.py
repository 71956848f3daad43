"""Hodoscope designs in landscapes: the human tiling of K modules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mutomo.benchmarks import load_benchmark
from mutomo.errors import MutomoError
from mutomo.optimise.hodoscopes import HodoscopeDesign, HodoscopeModule, tiled_placement

# A lorry in miniature: a 1.2 x 0.8 x 0.8 m cargo of water that may hide a 20 cm uranium cube,
# four 0.4 m modules of two panels tiled over and under it.
TINY_LORRY = """name = "tiny_lorry"
[task]
kind = "presence"
inference = "poca"
muons_per_volume = 400
reference = "clean"

[scene]
size = [1.2, 0.8, 0.8]
origin = [0.0, 0.0, 1.0]
voxel = 0.2

[scene.background]
material = "water"

[[scene.objects]]
name = "uranium cube"
material = "uranium"
size = [0.2, 0.2, 0.2]
low = { min = [0.0, 0.0, 0.0], max = [1.0, 0.6, 0.6] }
probability = 0.5

[muons]
theta_max_deg = 30.0

[hodoscope]
size = [0.4, 0.4, 0.1]
panel_heights = [0.0, 0.1]
cost = 1000.0

[region]
x = [-0.2, 1.4]
y = [-0.2, 1.0]
z_above = [1.9, 2.6]
z_below = [0.2, 0.9]

[designs.tiled]
modules = [[0.3, 0.4, 1.95], [0.9, 0.4, 1.95], [0.3, 0.4, 0.85], [0.9, 0.4, 0.85]]

[design]
start = "tiled"
trainable = ["xy", "z"]
fixed_budget = false

[training]
epochs = 1
volumes_per_epoch = 6
validation_volumes = 0

[evaluation]
n_volumes = 4
calibration_volumes = 2
min_hits = [2]
exposure_factors = [1.0]
compare = ["tiled"]
"""


def tiny_config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "tiny_lorry.toml"
    path.write_text(TINY_LORRY + extra)
    return path


@pytest.fixture(scope="module")
def lorry():
    return load_benchmark("lorry_uranium")


def lorry_template(problem, trainable=("xy", "z")) -> HodoscopeDesign:
    design = problem.design("poor", trainable)
    assert isinstance(design, HodoscopeDesign)
    return design


def valid(design: HodoscopeDesign) -> bool:
    """No module overlaps another or a keep-out box, and every centre lies in its range."""
    centres = design.centres.detach().double().numpy()
    ranges = np.array(design.centre_ranges())
    inside = (centres >= ranges[..., 0] - 1e-6) & (centres <= ranges[..., 1] + 1e-6)
    return design._layout.overlaps(centres) == [] and bool(inside.all())


def test_tiled_placement_is_the_lorry_human_design_and_refuses_what_does_not_fit(lorry):
    tiled = tiled_placement(lorry.bounds, lorry.scene.box, lorry.hodoscope, 4, keep_out=lorry.keep_out)
    human = lorry.design("tiled", ())
    torch.testing.assert_close(tiled.centres, human.centres)
    eight = tiled_placement(lorry.bounds, lorry.scene.box, lorry.hodoscope, 8, keep_out=lorry.keep_out)
    assert eight.above == [True] * 4 + [False] * 4 and valid(eight)
    with pytest.raises(MutomoError, match=">= 2"):
        tiled_placement(lorry.bounds, lorry.scene.box, lorry.hodoscope, 1)
    wide = HodoscopeModule(size=(3.0, 3.0, 0.3), panel_heights=(0.0, 0.3))
    with pytest.raises(MutomoError, match="tiled placement of 4 modules does not fit"):
        tiled_placement(lorry.bounds, lorry.scene.box, wide, 4, keep_out=lorry.keep_out)
