"""The scene preview of ``mutomo check``: drawn volumes of the scene (with and without the
target, or two fill heights) in side view, and every named design's panels around them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.lines import Line2D

from mutomo.plotting.figures import _common_limits, _panel_extents
from mutomo.plotting.style import paper_style, save_figure


def contrast_slice(volumes: list[np.ndarray]) -> int:
    """The y index of the x-z slice where the volumes' X0 differ most (summed |ln X0| differences
    from the first volume): where the target is, or the fill differs; the middle if none differ."""
    logs = [np.log(np.clip(v, 1e-9, None)) for v in volumes]
    difference = sum(np.abs(v - logs[0]).sum(axis=(0, 2)) for v in logs[1:])
    if not np.any(difference):
        return int(logs[0].shape[1] // 2)
    return int(np.argmax(difference))


@paper_style
def scene_preview(
    path: Path,
    volumes: dict[str, np.ndarray],
    box: tuple[float, float, float, float, float, float],
    designs: dict[str, dict[str, Any]],
) -> Path:
    """Side views (x-z) of the drawn volumes ``volumes`` (title -> X0 per voxel, m, shape
    ``(nx, ny, nz)``), each the slice of :func:`contrast_slice` (where they differ most), with
    the panels of every design of ``designs`` (descriptions, as
    :meth:`~mutomo.design.base.Design.describe` writes them) drawn over it: solid above the
    volume, dashed below, one colour a design."""
    n = len(volumes)
    fig, axes = plt.subplots(1, n, figsize=(min(5.0 * n, 11.0), 4.8), squeeze=False, sharey=True)
    xlim, _, zlim = _common_limits(designs, box) if designs else _common_limits({}, box)
    x0, x1, _, _, z0, z1 = box
    finite = np.concatenate([v[np.isfinite(v)].ravel() for v in volumes.values()])
    norm = LogNorm(vmin=float(finite.min()), vmax=float(max(finite.max(), finite.min() * 1.01)))
    colours = plt.get_cmap("tab10")
    image = None
    iy = contrast_slice(list(volumes.values()))
    ny = next(iter(volumes.values())).shape[1]
    y_at = box[2] + (iy + 0.5) * (box[3] - box[2]) / ny
    for ax, (title, x0_map) in zip(axes[0], volumes.items(), strict=True):
        side = x0_map[:, iy, :].T  # (nz, nx)
        image = ax.imshow(side, origin="lower", extent=(x0, x1, z0, z1), norm=norm, cmap="viridis_r", aspect="auto")
        for k, design in enumerate(designs.values()):
            for i, (px0, px1, _, _, z, _) in enumerate(_panel_extents(design)):
                style = "-" if i < design["n_above"] else "--"
                ax.plot([px0, px1], [z, z], color=colours(k % 10), ls=style, lw=2)
        ax.set(xlim=xlim, ylim=zlim, xlabel="x (m)", title=f"{title}; slice at y = {y_at:.3g} m")
    axes[0, 0].set_ylabel("z (m)")
    if image is not None:
        fig.colorbar(image, ax=axes[0, -1], label="radiation length X0 (m)")
    handles = [Line2D([], [], color=colours(k % 10), lw=2, label=name) for k, name in enumerate(designs)]
    handles += [
        Line2D([], [], color="black", lw=2, label="panels above the volume"),
        Line2D([], [], color="black", lw=2, ls="--", label="panels below"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4), title="designs")
    return save_figure(fig, path)
