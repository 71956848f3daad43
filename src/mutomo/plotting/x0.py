"""Figure of inferred radiation lengths, slice by slice."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402
from matplotlib.image import AxesImage  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from mutomo.plotting.style import paper_style, save_figure  # noqa: E402

UNMEASURED_FACE, UNMEASURED_HATCH_COLOUR, UNMEASURED_HATCH = "0.88", "0.55", "///"
MAX_LAYERS, MAX_COLUMNS = 10, 5


def unmeasured_label(min_muons: float | None) -> str:
    """Legend text of unmeasured voxels.

    Example:
        >>> unmeasured_label(1.0)
        'unmeasured (< 1 muon)'
    """
    if min_muons is None:
        return "unmeasured (no estimate)"
    return f"unmeasured (< {min_muons:g} muon{'' if min_muons == 1 else 's'})"


def _unmeasured_patch(x0: float = 0.0, y0: float = 0.0, width: float = 1.0, height: float = 1.0) -> Rectangle:
    """Grey hatching: the background of a slice, seen where a voxel has no estimate."""
    return Rectangle(
        (x0, y0),
        width,
        height,
        facecolor=UNMEASURED_FACE,
        edgecolor=UNMEASURED_HATCH_COLOUR,
        hatch=UNMEASURED_HATCH,
        lw=0,
        zorder=0,
    )


def _norm(x0: np.ndarray, measured: np.ndarray, truth: np.ndarray | None) -> LogNorm:
    """Colour range from the truth when known (outliers saturate), else the central 98 % of estimates."""
    if truth is not None:
        return LogNorm(vmin=float(truth.min()) / 3, vmax=float(truth.max()) * 3)
    lo, hi = np.quantile(x0[measured], [0.01, 0.99]) if measured.any() else (1e-3, 1.0)
    return LogNorm(vmin=float(lo), vmax=float(hi))


def _slice(
    ax: Axes, data: np.ndarray, extent: tuple[float, float, float, float], norm: LogNorm, title: str
) -> AxesImage:
    """One ``(nx, ny)`` layer (NaN: unmeasured, drawn as grey hatching underneath)."""
    x0, x1, y0, y1 = extent
    ax.add_patch(_unmeasured_patch(x0, y0, x1 - x0, y1 - y0))
    image = ax.imshow(data.T, origin="lower", extent=extent, norm=norm, cmap="viridis", zorder=1)
    ax.set_title(title, fontsize=9.5)
    ax.set(xlabel="x (m)", ylabel="y (m)", xlim=(x0, x1), ylim=(y0, y1))
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(MaxNLocator(3))
    return image


@paper_style
def x0_slices(
    path: Path,
    x0: np.ndarray,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    z_edges: np.ndarray,
    truth: np.ndarray | None = None,
    measured: np.ndarray | None = None,
    min_muons: float | None = None,
) -> Path:
    """One panel per z layer (bottom first, at most 10 evenly spaced, five a row) of an ``(nx, ny, nz)`` X0 map
    in metres, log colour scale; writes PNG and SVG.

    Unmeasured voxels (``~measured``; by default those with x0 <= 0 or not finite) are grey
    hatching, keyed in the legend as fewer than ``min_muons`` muons. With ``truth`` each row of
    inferred layers is followed by the true X0 of the same layers.
    """
    measured = (np.isfinite(x0) & (x0 > 0)) if measured is None else measured.astype(bool) & (x0 > 0)
    nz = x0.shape[2]
    layers = np.linspace(0, nz - 1, min(nz, MAX_LAYERS)).round().astype(int)
    cols = min(len(layers), MAX_COLUMNS)
    per_block = 1 if truth is None else 2
    rows = per_block * math.ceil(len(layers) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.0 * cols + 1.3, 2.25 * rows + 0.5), squeeze=False)
    norm = _norm(x0, measured, truth)
    extent = (x_range[0], x_range[1], y_range[0], y_range[1])
    image = None
    for k, iz in enumerate(layers):
        row, col = per_block * (k // cols), k % cols
        z_text = f"z {z_edges[iz]:.2f}–{z_edges[iz + 1]:.2f} m"
        data = np.where(measured[:, :, iz], x0[:, :, iz], np.nan)
        image = _slice(axes[row, col], data, extent, norm, f"inferred, {z_text}")
        if truth is not None:
            _slice(axes[row + 1, col], truth[:, :, iz], extent, norm, f"true, {z_text}")
    for ax in axes.flat:
        ax.set_visible(ax.has_data())
    assert image is not None
    fig.colorbar(image, ax=axes, label="radiation length X0 (m)", shrink=0.8)
    key = _unmeasured_patch()
    key.set_label(unmeasured_label(min_muons))
    fig.legend(handles=[key], loc="outside lower center")
    return save_figure(fig, path)
