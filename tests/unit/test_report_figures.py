"""Figures fit for a paper: every axis names a quantity and a unit, every line is named in a
legend, text is at least 9 pt, figures fit a browser window, each is written as PNG and SVG,
unmeasured voxels are keyed, and the HTML report captions and links every figure."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.text import Text

from mutomo.plotting import figures, style
from mutomo.plotting.demo import demo_figure
from mutomo.plotting.report import ReportFigure, write_report
from mutomo.plotting.x0 import x0_slices

pytestmark = pytest.mark.filterwarnings("error:constrained_layout not applied:UserWarning")  # collapsed plots
UNIT = re.compile(r"\S.*\(([^()]+)\)\s*$")  # "quantity (unit)"; "(dimensionless)" or "(count)" for pure numbers
BOX = (0.0, 1.0, 0.0, 1.0, 0.4, 1.4)
N_ABOVE, N_PANELS = 2, 4


# ----------------------------------------------------------------------------- checks
def _labelled_axes(ax: Axes) -> list:
    """The axes of a plot that need a label: both if visible; a colorbar's long one."""
    colorbar = getattr(ax, "_colorbar", None)
    if colorbar is not None:
        return [ax.yaxis if colorbar.orientation == "vertical" else ax.xaxis]
    return [a for a in (ax.xaxis, ax.yaxis) if a.get_visible()]


def axis_label_problems(fig: Figure) -> list[str]:
    """Every visible axis without a ``quantity (unit)`` label."""
    return [
        f"{ax.get_title()!r}: {a.axis_name} label {a.get_label_text()!r}"
        for ax in fig.axes
        if ax.get_visible() and ax.axison
        for a in _labelled_axes(ax)
        if not UNIT.match(a.get_label_text())
    ]


def _style(artist: Line2D) -> tuple:
    return to_rgba(artist.get_color()), artist.get_linestyle(), artist.get_marker()


def unnamed_lines(fig: Figure) -> list[str]:
    """Lines of a plot with several lines whose look (colour, line style, marker) no legend of
    the plot or the figure shows with a name."""
    problems = []
    for ax in fig.axes:
        lines = [line for line in ax.lines if line.get_visible() and len(line.get_xdata()) > 0]
        if not ax.get_visible() or len(lines) < 2:
            continue
        legends = [leg for leg in [ax.get_legend(), *fig.legends] if leg is not None]
        named = {
            _style(h)
            for leg in legends
            for h, t in zip(leg.legend_handles, leg.get_texts(), strict=True)
            if isinstance(h, Line2D) and t.get_text().strip()
        }
        problems += [f"{ax.get_title()!r}: a line {_style(line)}" for line in lines if _style(line) not in named]
    return problems


def small_text(fig: Figure) -> list[str]:
    """Visible text below 9 pt."""
    return [
        f"{t.get_text()!r} {t.get_fontsize()} pt"
        for t in fig.findobj(Text)
        if t.get_visible() and t.get_text().strip() and t.get_fontsize() < 9
    ]


def assert_fit_for_a_paper(fig: Figure, png: Path) -> None:
    assert not axis_label_problems(fig), axis_label_problems(fig)
    assert not unnamed_lines(fig), unnamed_lines(fig)
    assert not small_text(fig), small_text(fig)
    assert fig.get_figwidth() <= 11.5, "wider than a browser window at ~100 px an inch"
    assert png.exists()
    assert ET.parse(png.with_suffix(".svg")).getroot().tag.endswith("svg")


@pytest.fixture
def drawn(monkeypatch) -> list[Figure]:
    """The figures the plotting functions close, kept open for inspection."""
    kept: list[Figure] = []
    monkeypatch.setattr(style.plt, "close", kept.append)
    return kept


# ----------------------------------------------------------------------------- synthetic run
def design(shift: float) -> dict:
    return {
        "n_above": N_ABOVE,
        "xy": [[0.5 + shift, 0.5]] * N_PANELS,
        "z": [1.6 + shift, 1.5, 0.3, 0.2 - shift],
        "span": [0.9] * N_PANELS,
        "resolution": [1e-4] * N_PANELS,
        "efficiency": [0.9] * N_PANELS,
        "budget": 3240.0,
        "cost": 3240.0,
    }


def history(epochs: int = 12) -> list[dict]:
    return [
        {
            "epoch": e,
            "loss": {"task": 1.0 / (e + 1), "budget": 0.0, "cost": 3240.0},
            "validation": 0.5 / (e + 1) if e % 4 == 3 else None,
            "design": design(0.01 * e),
        }
        for e in range(epochs)
    ]


def synthetic_run(run_dir: Path, designs: tuple[str, ...] = ("initial", "human", "optimised")) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    config = {
        "training": {"volumes_per_epoch": 4, "validation_volumes": 4},
        "evaluation": {"n_volumes": 40, "calibration_volumes": 8},
        "task": {"loss": "soft_auc"},
    }
    metric = {"physical": {"efficiency": [0.8, 0.05]}}
    evaluations = {
        "task": {"kind": "presence", "inference": "asr", "momentum": "flux_mean", "muons_per_volume": 1000},
        "readouts": ["physical"],
        "designs": {name: {**metric, "design": design(0.1 * i)} for i, name in enumerate(designs)},
        "paired": {f"optimised - {name}": metric for name in designs[:-1]},
    }
    evaluations["task"]["exposure_s"] = 10.0
    for name, content in (("config", config), ("history", history()), ("evaluations", evaluations)):
        (run_dir / f"{name}.json").write_text(json.dumps(content))
    return run_dir


def presence_scores(n_designs: int = 2, n: int = 40) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 2 == 0
    return {f"design {k}": (labels, rng.normal(size=n) + (1.0 + k) * labels) for k in range(n_designs)}


# ----------------------------------------------------------------------------- figures
@pytest.mark.parametrize("n_designs", [1, 4, 5])
def test_detector_views_name_above_below_and_volume_in_every_column(tmp_path, drawn, n_designs):
    designs = {f"d{i}": design(0.05 * i) for i in range(n_designs)}
    png = figures.detector_views(tmp_path / "detector.png", designs, BOX)
    (fig,) = drawn
    assert_fit_for_a_paper(fig, png)
    side_views = [ax for ax in fig.axes if ax.get_visible() and ax.get_title().endswith("side view")]
    assert len(side_views) == n_designs
    for ax in side_views:
        texts = [t.get_text() for t in ax.get_legend().get_texts()]
        assert texts == ["scanned volume", "panels above", "panels below"]
    assert max(figures.grid_columns(n_designs), 1) <= 3


def test_detector_views_draw_rectangular_panels(tmp_path, drawn):
    """A hodoscope's panels have two side lengths (``span_xy``); the top view draws them as such."""
    d = {**design(0.0), "span_xy": [[0.9, 0.4]] * N_PANELS}
    figures.detector_views(tmp_path / "detector.png", {"hodoscopes": d}, BOX)
    (fig,) = drawn
    top = next(ax for ax in fig.axes if ax.get_title().endswith("top view"))
    sizes = {(round(p.get_width(), 6), round(p.get_height(), 6)) for p in top.patches if not p.get_fill()}
    assert sizes == {(0.9, 0.4)}


def test_loss_curves(tmp_path, drawn):
    png = figures.loss_curves(tmp_path / "loss.png", history())
    (fig,) = drawn
    assert_fit_for_a_paper(fig, png)


def test_parameter_trajectories_name_every_panel(tmp_path, drawn):
    png = figures.parameter_trajectories(tmp_path / "parameters.png", history())
    (fig,) = drawn
    assert_fit_for_a_paper(fig, png)
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["above 1", "above 2", "below 1", "below 2"]
    assert {ax.get_ylabel() for ax in fig.axes if ax.get_visible()} == {
        "z (m)",
        "x (m)",
        "y (m)",
        "side length (m)",
    }


def test_predicted_vs_true(tmp_path, drawn):
    truth = np.repeat([0.6, 0.9, 1.2], 5)
    answers = {"a": (truth, truth + 0.01), "b": (truth, truth - 0.02)}
    png = figures.predicted_vs_true(tmp_path / "predicted_vs_true.png", answers)
    (fig,) = drawn
    assert_fit_for_a_paper(fig, png)


def test_presence_figure_roc_and_score_distributions(tmp_path, drawn):
    scores = presence_scores()
    png = figures.roc_and_scores(tmp_path / "presence.png", scores)
    (fig,) = drawn
    assert_fit_for_a_paper(fig, png)
    roc, *hists = fig.axes
    assert len(hists) == len(scores)  # one panel a design, each with one filled histogram a class
    assert [t.get_text() for t in hists[0].get_legend().get_texts()] == ["without the object", "with the object"]
    assert all(len(h.containers) == 2 and h.containers[0].patches[0].get_fill() for h in hists)
    fpr, tpr = figures.roc_curve(*scores["design 1"])
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)


def test_x0_slices_key_unmeasured_voxels(tmp_path, drawn):
    rng = np.random.default_rng(1)
    truth = np.full((5, 5, 12), 0.018)
    x0 = truth * rng.uniform(0.8, 1.2, truth.shape)
    x0[0, :, :] = 0.0  # no estimate
    measured = x0 > 0
    measured[1, 1, :] = False  # an estimate from too few muons
    png = x0_slices(tmp_path / "x0.png", x0, (0, 1), (0, 1), np.linspace(0.4, 1.6, 13), truth, measured, 1.0)
    (fig,) = drawn
    assert_fit_for_a_paper(fig, png)
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["unmeasured (< 1 muon)"]
    inferred = [ax for ax in fig.axes if ax.get_title().startswith("inferred")]
    assert len(inferred) == 10 and all(ax.get_visible() for ax in inferred)
    image = inferred[0].get_images()[0].get_array()
    shown = ~np.ma.getmaskarray(np.ma.masked_invalid(image)).T  # (nx, ny)
    np.testing.assert_array_equal(shown, measured[:, :, 0])


def test_demo_figure(tmp_path, drawn):
    rng = np.random.default_rng(2)
    tracks = {"x": rng.uniform(0, 1, (4, 5)), "z": np.array([1.2, 0.6, 0.4, 0.1])[:, None].repeat(5, 1)}
    angles = {"iron": rng.normal(0, 0.01, 500), "lead": rng.normal(0, 0.02, 500)}
    png = demo_figure(tmp_path / "demo.png", tracks, angles, (0.4, 0.6), [1.15, 0.15], [(0.0, 1.0)] * 2)
    (fig,) = drawn
    assert_fit_for_a_paper(fig, png)


def test_checks_catch_an_unlabelled_axis_and_an_unnamed_line():
    fig = Figure()
    ax: Axes = fig.add_subplot()
    ax.plot([0, 1], [0, 1])
    ax.plot([0, 1], [1, 0])
    ax.set(xlabel="epoch", ylabel="z (m)")
    assert axis_label_problems(fig) == ["'': x label 'epoch'"]
    assert len(unnamed_lines(fig)) == 2
    ax.legend(["a", "b"])
    assert not unnamed_lines(fig)


# ----------------------------------------------------------------------------- report
def test_report_captions_every_figure_and_links_its_svg(tmp_path):
    run = synthetic_run(tmp_path / "run")
    presence = figures.roc_and_scores(run / "figures" / "presence.png", presence_scores())
    truth = np.full((4, 4, 3), 0.018)
    x0 = x0_slices(run / "figures" / "x0_slices.png", truth, (0, 1), (0, 1), np.linspace(0.4, 0.7, 4), truth)
    extra = [presence, ReportFigure(x0, "X0 slices", "Inferred X0 of one volume.")]
    page = write_report(run, BOX, extra).read_text()
    stems = ["detector", "loss", "parameters", "presence", "x0_slices"]
    found = re.findall(r'<figure id="([^"]+)">.*?<img [^>]*width="(\d+)".*?<figcaption>(.*?)</figcaption>', page)
    assert [stem for stem, _, _ in found] == stems
    for stem, width, caption in found:
        assert (run / "figures" / f"{stem}.svg").exists()
        assert f'href="figures/{stem}.svg"' in caption
        assert len(re.sub(r"<[^>]+>|\[.*\]", "", caption).split()) >= 6, caption
        assert 300 <= int(width) <= 1150
    assert "img{max-width:100%" in page
    assert "40 test volumes" in page  # the presence caption quotes the run
