"""One look for every figure: fonts readable at a browser window's width, PNG plus SVG output.

A figure is sized for about 100 pixels per inch on screen (a 11-inch figure fills a 1100-pixel
column), so a 10 pt font shows at ~14 px. Every figure is written twice: a PNG for the report
to embed and an SVG (vector) for a paper.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PNG_DPI = 150
STYLE: dict[str, Any] = {
    "font.size": 10,
    "axes.titlesize": 10.5,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "legend.title_fontsize": 9,
    "figure.titlesize": 12,
    "figure.constrained_layout.use": True,
    "svg.hashsalt": "mutomo",  # reproducible SVG ids
}

P = ParamSpec("P")
R = TypeVar("R")


def paper_style(function: Callable[P, R]) -> Callable[P, R]:
    """Run a figure function under :data:`STYLE` (and only it: global settings are untouched)."""

    @wraps(function)
    def styled(*args: P.args, **kwargs: P.kwargs) -> R:
        with plt.style.context(STYLE):
            return function(*args, **kwargs)

    return styled


def save_figure(fig: plt.Figure, path: Path) -> Path:
    """Write ``fig`` as ``path`` (PNG) and beside it as SVG (same stem), close it; returns the PNG path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=PNG_DPI)
    fig.savefig(path.with_suffix(".svg"))
    plt.close(fig)
    return path


def svg_path(png: Path) -> Path:
    """The vector twin of a figure written by :func:`save_figure`."""
    return Path(png).with_suffix(".svg")
