"""Loss parts, budget modes, constraints, configuration validation, checkpoint and resume."""

import json
import math

import pytest
import torch

from mutomo.config.build import build_design, build_problem, load_benchmark
from mutomo.config.schema import ConfigError, load_config, parse_config
from mutomo.design.base import DesignBounds
from mutomo.design.panels import DetectorDesign
from mutomo.optimise.loop import TrainingSettings, optimise
from mutomo.optimise.loss import BCELoss, LossBreakdown, MSELoss, SpreadOverRangeLoss, budget_penalty

BOUNDS = DesignBounds(x=(-1.0, 2.0), y=(-1.0, 2.0), z_above=(1.5, 2.5), z_below=(-0.5, 0.3))


def design(budget=None, trainable=("xy", "z", "size")):
    return DetectorDesign(
        xy=[[0.5, 0.5]] * 4,
        z=[2.0, 1.8, 0.2, 0.0],
        n_above=2,
        span=[1.0, 0.8, 1.0, 0.6],
        resolution=1e-4,
        efficiency=0.9,
        bounds=BOUNDS,
        budget=budget,
        trainable=trainable,
    )


def test_task_losses():
    p, t = torch.tensor([1.0, 2.0, 4.0]), torch.tensor([1.0, 1.0, 1.0])
    assert float(MSELoss()(p, t)) == pytest.approx((0 + 1 + 9) / 3)
    logits = torch.tensor([10.0, -10.0])
    assert float(BCELoss()(logits, torch.tensor([1.0, 0.0]))) < 1e-4
    # Two targets, each twice: spreads 0.1 and 0.3 (std, ddof=1) -> mean 0.2; means 1.05 and 2.15 -> std 0.7778.
    pred = torch.tensor([1.0, 1.1 + 1e-12, 2.0, 2.3])
    pred[1] = 1.1 - 1e-12
    targ = torch.tensor([0.6, 0.6, 0.7, 0.7])
    spread = (0.1 / math.sqrt(2) + 0.3 / math.sqrt(2)) / 2
    expected = spread / torch.tensor([1.05, 2.15]).std().item()
    loss = SpreadOverRangeLoss()
    assert float(loss(pred, targ)) == pytest.approx(expected, rel=1e-5)
    assert float(loss(3.0 * pred + 7.0, targ)) == pytest.approx(expected, rel=1e-5)  # linear-map invariant
    with pytest.raises(ValueError, match="each predicted >= 2"):
        loss(pred[:3], targ[:3])


def test_budget_penalty_and_breakdown():
    under, over = budget_penalty(torch.tensor(900.0), 1000.0, 10.0), budget_penalty(torch.tensor(1100.0), 1000.0, 10.0)
    assert float(under) < 1e-4 and float(over) == pytest.approx(10.0, rel=1e-3)
    parts = LossBreakdown(task=torch.tensor(0.5), budget=over, cost=torch.tensor(1100.0))
    assert parts.as_floats()["total"] == pytest.approx(0.5 + float(over))
    with pytest.raises(ValueError, match="budget"):
        budget_penalty(torch.tensor(1.0), 0.0, 1.0)


def test_fixed_budget_holds_the_cost_exactly_while_shares_move():
    d = design(budget=3000.0)
    assert float(d.cost().detach()) == pytest.approx(3000.0, rel=1e-5)
    spans0 = d.span.detach().clone()
    # Shares follow the starting spans' costs: the spans keep their ratios, scaled to the budget.
    assert torch.allclose(spans0 / spans0[0], torch.tensor([1.0, 0.8, 1.0, 0.6]), rtol=1e-5)
    opt = torch.optim.Adam(d.parameter_groups()["size"], lr=0.3)
    for _ in range(5):
        opt.zero_grad()
        (-d.span[0]).backward()  # grow panel 0
        opt.step()
    assert float(d.span[0].detach()) > float(spans0[0])
    assert float(d.cost().detach()) == pytest.approx(3000.0, rel=1e-5)  # the others shrank to pay for it
    soft = design(budget=None)
    assert torch.allclose(soft.span, torch.tensor([1.0, 0.8, 1.0, 0.6]))


def test_projection_keeps_panels_in_their_region_and_sides():
    d = design()
    with torch.no_grad():
        d.z += torch.tensor([5.0, -5.0, 5.0, -5.0])
        d.xy += 10.0
    d.project_()
    assert d.z.tolist() == pytest.approx([2.5, 1.5, 0.3, -0.5])
    assert d.xy.max().item() == pytest.approx(2.0)
    d.check_bounds()
    frozen = design(trainable=("z",))
    assert not frozen.xy.requires_grad and frozen.z.requires_grad


def test_bad_designs_are_refused_naming_the_panel():
    with pytest.raises(ValueError, match=r"panel 2 \(below\): z = 0.5"):
        DetectorDesign([[0.5, 0.5]] * 4, [2.0, 1.8, 0.5, 0.0], 2, 1.0, 1e-4, 0.9, BOUNDS)
    with pytest.raises(ValueError, match="trainable"):
        design(trainable=("colour",))
    furnace = load_benchmark("ladle_furnace").scene.sample((0,)).volume
    with pytest.raises(ValueError, match="inside the volume"):
        DesignBounds(x=(0, 1), y=(0, 1), z_above=(1.0, 2.0), z_below=(-1, 0.3)).check_volume(furnace)


def test_config_errors_name_the_field(tmp_path):
    ladle = {"extends": "ladle_furnace"}
    with pytest.raises(ConfigError, match=r"training\.epochs: .*greater than or equal to 1"):
        parse_config({**ladle, "training": {"epochs": 0}})
    with pytest.raises(ConfigError, match=r"training\.epoch: Extra inputs are not permitted"):
        parse_config({**ladle, "training": {"epoch": 3}})
    with pytest.raises(ConfigError, match=r"training\.muons_per_volume: .*valid integer"):
        parse_config({**ladle, "training": {"muons_per_volume": "many"}})
    with pytest.raises(ConfigError, match=r"training\.volumes_per_epoch: .*even"):
        parse_config({**ladle, "training": {"volumes_per_epoch": 7}})
    with pytest.raises(ConfigError, match=r"training\.final_lr_fraction"):
        parse_config({**ladle, "training": {"final_lr_fraction": 0}})
    with pytest.raises(ConfigError, match=r"task\.kind"):
        parse_config({**ladle, "task": {"kind": "volcano"}})
    with pytest.raises(ConfigError, match=r"cost\.per_panel"):
        parse_config({**ladle, "cost": {"per_panel": -1}})
    inside = [
        {"side": "above", "x": 0.5, "y": 0.5, "z": 1.6, "span": 1.0},
        {"side": "above", "x": 0.5, "y": 0.5, "z": 1.0, "span": 1.0},  # inside the furnace
        {"side": "below", "x": 0.5, "y": 0.5, "z": 0.2, "span": 1.0},
        {"side": "below", "x": 0.5, "y": 0.5, "z": 0.1, "span": 1.0},
    ]
    config = parse_config({**ladle, "designs": {"mine": {"panels": inside}}, "design": {"start": "mine"}})
    with pytest.raises(ConfigError, match=r"design\.start 'mine' \(designs\.mine\): panel 1 \(above\): z = 1 m"):
        build_design(config, build_problem(config))
    toml = tmp_path / "c.toml"
    toml.write_text('extends = "ladle_furnace"\n[training]\nepochs = 3\n[output]\ndirectory = "x"\n')
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("extends: ladle_furnace\ntraining:\n  epochs: 3\n")
    assert load_config(toml).training.epochs == 3 == load_config(yaml_file).training.epochs
    assert load_config(toml).scene == load_config("ladle_furnace").scene
    bad = tmp_path / "bad.toml"
    bad.write_text("[training\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_budget_and_fixed_panel_cost_from_the_configuration():
    config = parse_config({"extends": "ladle_furnace", "cost": {"per_panel": 250.0}, "design": {"budget": 9000.0}})
    problem = build_problem(config)
    design = build_design(config, problem)
    assert float(design.cost().detach()) == pytest.approx(9000.0, rel=1e-5)
    spans = design.span.detach()
    # 8 panels pay 2000 of fixed cost; the rest buys area at 1000 per m^2, shared as the start's (equal) panels.
    assert spans == pytest.approx(torch.full((8,), math.sqrt(7000.0 / 8 / 1000.0)), rel=1e-5)
    with pytest.raises(ConfigError, match="fixed cost"):
        build_design(parse_config({**config.model_dump(), "design": {"start": "poor", "budget": 1500.0}}), problem)


SMALL = dict(volumes_per_epoch=4, muons_per_volume=200, validation_volumes=4, validate_every=2, warmup_epochs=1)


def test_resume_reaches_the_same_design_as_an_uninterrupted_run(tmp_path):
    task = load_benchmark("ladle_furnace")

    def poor():
        return task.design("poor", ("xy", "z", "size"), 6000.0)

    full = poor()
    optimise(full, task, TrainingSettings(epochs=4, **SMALL), run_dir=tmp_path / "a", progress=False)
    part = poor()

    def killed_after_two(history):  # the process dies once epoch 1's checkpoint is written
        return len(history.records) == 2

    optimise(
        part,
        task,
        TrainingSettings(epochs=4, **SMALL),
        run_dir=tmp_path / "b",
        stopping=killed_after_two,
        progress=False,
    )
    resumed = poor()
    history = optimise(
        resumed, task, TrainingSettings(epochs=4, **SMALL), run_dir=tmp_path / "b", resume=True, progress=False
    )
    assert [r.epoch for r in history.records] == [0, 1, 2, 3]
    for a, b in zip(full.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)
    saved = json.loads(history.to_json())
    assert saved[-1]["design"]["z"] == pytest.approx(full.describe()["z"])


def test_resume_past_a_corrupted_checkpoint_loses_one_epoch_and_reaches_the_same_design(tmp_path, capsys):
    from mutomo.optimise.checkpoint import KEPT, checkpoints

    task = load_benchmark("ladle_furnace")
    settings = TrainingSettings(epochs=5, **SMALL)

    def poor():
        return task.design("poor", ("xy", "z", "size"), 6000.0)

    full = poor()
    optimise(full, task, settings, run_dir=tmp_path / "a", progress=False)
    assert len(checkpoints(tmp_path / "a")) == KEPT  # only the newest few are kept

    def killed_after_four(history):
        return len(history.records) == 4

    optimise(poor(), task, settings, run_dir=tmp_path / "b", stopping=killed_after_four, progress=False)
    newest = checkpoints(tmp_path / "b")[0]
    assert newest.name == "epoch_00003.pt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # truncated, as by a full disk
    capsys.readouterr()
    resumed = poor()
    history = optimise(resumed, task, settings, run_dir=tmp_path / "b", resume=True, progress=False)
    err = capsys.readouterr().err
    assert "epoch_00003.pt: checksum mismatch" in err and "trying an older checkpoint" in err
    assert (tmp_path / "b" / "checkpoints" / "epoch_00003.pt.corrupt").exists()
    assert [r.epoch for r in history.records] == [0, 1, 2, 3, 4]  # epoch 3 redone, nothing else
    for a, b in zip(full.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)
    # Every checkpoint damaged: the run starts again and still reaches the same design.
    for path in checkpoints(tmp_path / "b"):
        path.write_bytes(b"garbage")
    again = poor()
    history = optimise(again, task, settings, run_dir=tmp_path / "b", resume=True, progress=False)
    assert len(history.records) == 5
    for a, b in zip(full.parameters(), again.parameters(), strict=True):
        assert torch.equal(a, b)


def test_progress_writes_plain_lines_when_not_on_a_terminal():
    import io

    from mutomo.optimise.progress import Progress

    stream = io.StringIO()  # not a TTY, as a log file or CI
    progress = Progress("ladle", start=0, total=40, stream=stream)
    for epoch in range(40):
        progress.epoch(epoch, {"task": 0.5, "budget": 0.0, "cost": 6000.0}, 0.4 if epoch % 10 == 9 else None)
    progress.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 20 and "\r" not in stream.getvalue()
    assert lines[0].startswith("ladle: epoch 2/40 task 0.5") and lines[-1].startswith("ladle: epoch 40/40")
    assert "validation 0.4" in lines[4] and "s left" in lines[-1]
