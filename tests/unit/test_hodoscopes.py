"""Hodoscopes (issue 11): rigid modules whose placement moves, kept apart and out of the volume."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mutomo import MutomoError
from mutomo.design.base import DesignBounds
from mutomo.design.describe import design_from_description
from mutomo.design.hodoscopes import OVERLAP_TOLERANCE, HodoscopeDesign, HodoscopeModule
from mutomo.design.panels import DetectorDesign
from mutomo.muons import FluxSource, TabulatedFlux
from mutomo.simulate import acceptance_plane, simulate
from mutomo.volume import PassiveVolume

D = torch.float64
MODULE = HodoscopeModule(size=(1.0, 1.0, 0.3), panel_heights=(0.0, 0.15, 0.3), resolution=3e-4, efficiency=0.95)
# A 2 x 1 x 1 m volume between z = 1 and 2; modules above in [2.1, 4], below in [-1, 0.9].
BOUNDS = DesignBounds(x=(-1.0, 3.0), y=(-1.0, 2.0), z_above=(2.1, 4.0), z_below=(-1.0, 0.9))
VOLUME_BOX = (0.0, 2.0, 0.0, 1.0, 1.0, 2.0)


def placement(centres, **kwargs) -> HodoscopeDesign:
    return HodoscopeDesign(MODULE, centres, BOUNDS, keep_out=[VOLUME_BOX], dtype=D, **kwargs)


SIDE_BY_SIDE = [[0.5, 0.5, 2.5], [1.5, 0.5, 2.5], [0.5, 0.5, 0.5], [1.5, 0.5, 0.5]]  # touching pairs


def volume() -> PassiveVolume:
    return PassiveVolume.uniform("iron", (2.0, 1.0, 1.0), 0.25, z_low=1.0, dtype=D)


def source() -> FluxSource:
    """One muon source for every placement (the generation plane must not move with the design)."""
    flux = TabulatedFlux(momentum_range=(1.0, 100.0), theta_max=math.radians(30))
    return FluxSource(acceptance_plane(placement(SIDE_BY_SIDE).detector(), theta_max=math.radians(30)), flux)


def hits(design: HodoscopeDesign | DetectorDesign, n: int = 4000, seed: int = 0):
    return simulate(design.detector(), volume(), source(), n, torch.Generator().manual_seed(seed))


def test_panels_move_with_their_module_and_keep_their_layout():
    design = placement(SIDE_BY_SIDE)
    d = design.describe()
    assert d["n_above"] == 6 and len(d["z"]) == 12
    # Module 0's panels: box bottom at 2.35 m, panels 0, 0.15, 0.3 m above it, top down.
    assert d["z"][:3] == pytest.approx([2.65, 2.5, 2.35])
    assert d["xy"][0] == pytest.approx([0.5, 0.5])
    with torch.no_grad():
        design.module_xy[0] += torch.tensor([0.1, -0.2], dtype=D)
        design.module_z[0] += 0.3
    moved = design.describe()
    assert moved["z"][:3] == pytest.approx([2.95, 2.8, 2.65])
    assert moved["xy"][1] == pytest.approx([0.6, 0.3])
    assert moved["xy"][3:6] == d["xy"][3:6]  # the other module stays
    rotated = HodoscopeModule(size=(2.0, 1.0, 0.3), panel_heights=(0.0, 0.3))
    turned = HodoscopeDesign(rotated, [[0.5, 1.0, 3.0], [1.0, 0.5, 0.0]], BOUNDS, rotated=[True, False], dtype=D)
    assert turned.describe()["span_xy"][0] == pytest.approx([1.0, 2.0])
    assert turned.describe()["span_xy"][2] == pytest.approx([2.0, 1.0])


def test_module_gradient_is_the_sum_of_its_panels_and_matches_finite_differences():
    design = placement(SIDE_BY_SIDE)
    design.smoothness = 0.05

    def acceptance(d: HodoscopeDesign | DetectorDesign) -> torch.Tensor:
        r = hits(d, n=3000)
        return r.hits_above.weight.sum() + r.hits_below.weight.sum()

    value = acceptance(design)
    value.backward()
    assert design.module_xy.grad is not None and design.module_z.grad is not None
    grad = design.module_xy.grad[1, 0].item()
    assert torch.isfinite(design.module_xy.grad).all() and torch.isfinite(design.module_z.grad).all()
    assert abs(grad) > 1.0  # module 1 sits at the acceptance's edge in x: it matters
    h = 1e-4
    with torch.no_grad():
        design.module_xy[1, 0] += h
        up = acceptance(design).item()
        design.module_xy[1, 0] -= 2 * h
        down = acceptance(design).item()
        design.module_xy[1, 0] += h
    assert grad == pytest.approx((up - down) / (2 * h), rel=2e-3)
    # Rigidity: the module's gradient is the sum of its panels' gradients, each panel moved alone.
    d = placement(SIDE_BY_SIDE).describe()
    panels = DetectorDesign(d["xy"], d["z"], 6, 1.0, 3e-4, 0.95, BOUNDS, trainable=("xy", "z"), dtype=D)
    panels.smoothness = 0.05
    acceptance(panels).backward()
    assert panels.xy.grad is not None
    assert grad == pytest.approx(float(panels.xy.grad[3:6, 0].sum()), rel=1e-9)


def test_modules_side_by_side_at_one_height_both_record_hits():
    design = placement(SIDE_BY_SIDE)
    r = hits(design, n=20_000)
    w = r.hits_above.weight  # (panel, mu): panels 0-2 module 0, 3-5 module 1
    recorded = [(w[3 * k : 3 * k + 3].prod(0) > 0.5).sum().item() for k in (0, 1)]
    assert min(recorded) > 0.2 * sum(recorded), recorded  # both, roughly evenly
    both = ((w[0:3].prod(0) > 0.5) & (w[3:6].prod(0) > 0.5)).sum().item()
    assert both == 0  # a muon crosses one module of a pair that only touches
    design.detector()  # builds
    loss = r.hits_above.weight.sum() + r.hits_below.weight.sum()
    loss.backward()
    assert torch.isfinite(design.module_xy.grad).all()


boxes = st.lists(
    st.tuples(st.floats(-1.0, 3.0), st.floats(-1.0, 2.0), st.sampled_from([2.5, 3.0, 3.7, 0.5, 0.0, -0.7])),
    min_size=2,
    max_size=8,
)


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(start=st.integers(0, 10_000), steps=boxes)
def test_fuzzed_steps_never_end_overlapping_or_outside(start, steps):
    g = torch.Generator().manual_seed(start)
    n = len(steps)
    # A valid start: modules on a grid, half above, half below.
    centres = [[-0.4 + 1.05 * (k // 2 % 3), -0.4 + 1.05 * (k // 6), 3.0 if k % 2 == 0 else 0.0] for k in range(n)]
    design = placement(centres)
    for x, y, z in steps:
        target = torch.tensor([[x, y, z]], dtype=D) + 0.3 * torch.randn(n, 3, generator=g, dtype=D)
        with torch.no_grad():  # an arbitrary (even huge) optimiser step towards random targets
            design.module_xy.copy_(target[:, :2])
            design.module_z.copy_(target[:, 2])
        design.project_()
        c = design.centres.detach()
        assert torch.isfinite(c).all()
        assert design._layout.overlaps(c.numpy()) == []
        for k in range(n):
            for axis, (lo, hi) in enumerate(design._layout.limits(k)):
                assert lo - 1e-9 <= float(c[k, axis]) <= hi + 1e-9


def test_touching_modules_are_not_moved():
    design = placement(SIDE_BY_SIDE)
    before = design.centres.detach().clone()
    design.project_()
    assert torch.equal(design.centres.detach(), before)
    a, b = design.centres[0].detach(), design.centres[1].detach()
    assert float(b[0] - a[0]) == pytest.approx(1.0)  # sharing a face
    assert OVERLAP_TOLERANCE < 1e-3


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: placement([[0.5, 0.5, 2.5], [0.9, 0.5, 2.5], [0.5, 0.5, 0.5]]), r"modules 0 and 1 overlap"),
        (lambda: placement([[0.5, 0.5, 1.6], [0.5, 0.5, 0.5]]), r"module 0 \(above\): centre z = 1\.6 m"),
        (lambda: placement([[0.5, 0.5, 2.5], [0.5, 0.5, 3.0]]), r"modules are needed above and below"),
        (lambda: placement([[2.9, 0.5, 2.5], [0.5, 0.5, 0.5]]), r"module 0 \(above\): centre x = 2\.9 m"),
        (lambda: placement([[0.5, 0.5, 2.5], [0.5, 0.5, 0.5]], rotated=[True]), r"rotated needs one value"),
        (lambda: placement([[0.5, 0.5, math.nan], [0.5, 0.5, 0.5]]), r"centres must be finite"),
        (lambda: HodoscopeModule(size=(1.0, 1.0, 0.3), panel_heights=()), r"at least one panel"),
        (lambda: HodoscopeModule(size=(1.0, 1.0, 0.3), panel_heights=(0.0, 0.4)), r"panel_heights\[1\] = 0\.4 m"),
        (lambda: HodoscopeModule(size=(1.0, 1.0, 0.3), panel_heights=(0.1,), panel_span=(1.2, 1.0)), r"panel_span"),
        (lambda: HodoscopeModule(size=(1.0, -1.0, 0.3), panel_heights=(0.1,)), r"size"),
    ],
)
def test_bad_placements_and_modules_are_refused_naming_the_module(build, message):
    with pytest.raises(MutomoError, match=message):
        build()


def test_description_round_trip_and_mixed_free_panels():
    free = DetectorDesign([[1.0, 0.5]] * 2, [3.5, -0.5], 1, 0.8, 1e-4, 0.9, BOUNDS, trainable=("z",), dtype=D)
    design = placement([[0.5, 0.5, 2.5], [1.5, 0.5, 0.5]], free=free, trainable=("xy", "z"))
    back = design_from_description(design.describe())
    assert isinstance(back, HodoscopeDesign)
    assert back.describe()["z"] == pytest.approx(design.describe()["z"])
    assert design.describe()["n_above"] == 4  # 3 module panels + 1 free panel above
    groups = design.parameter_groups()
    assert groups["z"][0] is design.module_z and groups["z"][1] is free.z
    MODULE_COST = HodoscopeModule(size=(1.0, 1.0, 0.3), panel_heights=(0.0,), cost=5000.0)
    priced = HodoscopeDesign(MODULE_COST, [[0.5, 0.5, 2.5], [1.5, 0.5, 0.5]], BOUNDS, dtype=D)
    assert float(priced.cost()) == 10_000.0


def test_a_region_too_small_sends_only_the_overlapping_modules_back():
    tight = DesignBounds(x=(0.0, 2.05), y=(0.0, 1.05), z_above=(2.1, 2.45), z_below=(-1.0, 0.9))
    design = HodoscopeDesign(MODULE, [[0.5, 0.5, 2.25], [1.55, 0.5, 2.25], [0.5, 0.5, 0.0]], tight, dtype=D)
    with torch.no_grad():  # the two modules above swap places through each other; the one below moves
        design.module_xy.copy_(torch.tensor([[1.4, 0.52], [0.6, 0.52], [0.9, 0.4]], dtype=D))
    design.project_()
    c = design.centres.detach()
    assert design._layout.overlaps(c.numpy()) == []
    assert c[2, :2].tolist() == pytest.approx([0.9, 0.5])  # clamped into the region, kept
    above = sorted(c[:2, 0].tolist())
    assert above[1] - above[0] >= 1.0 - 1e-6  # above: apart (separated, or sent back)


def test_a_short_lorry_optimisation_from_the_builtin_configuration(tmp_path):
    from mutomo.app.run import run
    from mutomo.config.schema import parse_config

    config = parse_config(
        {
            "extends": "lorry_uranium",
            "task": {"kind": "presence", "inference": "asr", "exposure_s": 10.0, "reference": "clean"},
            "training": {
                "epochs": 2,
                "volumes_per_epoch": 6,
                "exposure_s": 10.0,
                "validation_volumes": 4,
                "validate_every": 1,
            },
            "evaluation": {"n_volumes": 8, "calibration_volumes": 4, "exposure_factors": [1.0], "min_hits": [3]},
            "design": {"start": "tiled"},  # near the lorry: 10 s of muons inform the loss (the poor start needs 60 s)
            "output": {"x0_muons": 5000},
        }
    )
    evaluations = run(config, tmp_path / "run", progress=False)
    designs = {"initial", "tiled", "centred", "optimised", "best_validated"}
    assert set(evaluations["designs"]) == designs | {"ideal", "ideal_momentum"}  # the bounds: free ideal panels
    assert set(evaluations["paired"]) >= {"optimised - tiled", "optimised - centred", "ideal - tiled"}
    assert set(evaluations["shares"]) == designs - {"initial"} | {"ideal_momentum"}
    final = json.loads((tmp_path / "run" / "design_final.json").read_text())
    assert final["kind"] == "hodoscopes" and len(final["centres"]) == 4
    start = json.loads((tmp_path / "run" / "design_initial.json").read_text())
    assert final["centres"] != start["centres"]  # the modules moved
    design = design_from_description(final)
    assert isinstance(design, HodoscopeDesign) and design._layout.overlaps(design.centres.detach().numpy()) == []
    auc, error = evaluations["designs"]["tiled"]["physical_min3"]["auc"]
    assert 0 <= auc <= 1 and error > 0
    from mutomo.plotting.run_report import write_run_report

    report = write_run_report(tmp_path / "run")  # the headline readout here is physical_min3
    assert "presence" in report.read_text().lower() and (tmp_path / "run" / "figures" / "presence.svg").exists()


def test_tiled_rows_too_close_for_wide_modules_spread_over_the_region_instead():
    """Eight 1.5 m modules a side over the portal's 2.5 m wide container: two rows 1.25 m apart would
    overlap, so they go to the ends of the frame's allowed range (touching, 1.5 m apart); the
    lorry's single row keeps the footprint rule."""
    from mutomo.config.build import load_benchmark
    from mutomo.studies.starts import tiled_for

    design = tiled_for(load_benchmark("border_portal"), 16)
    centres = design.centres.detach().numpy()
    assert design._layout.overlaps(centres) == []
    assert sorted(set(np.round(centres[:, 1], 6).tolist())) == pytest.approx([0.5, 2.0])
    lorry = tiled_for(load_benchmark("lorry_uranium"), 8).centres.detach().numpy()
    assert lorry[:4, 0].tolist() == pytest.approx([0.5, 1.5, 2.5, 3.5]) and np.allclose(lorry[:, 1], 1.2)
