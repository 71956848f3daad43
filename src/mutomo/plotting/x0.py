"""Figure of inferred radiation lengths, slice by slice."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402


def x0_slices(
    path: Path,
    x0: np.ndarray,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    z_edges: np.ndarray,
    truth: np.ndarray | None = None,
) -> Path:
    """One panel per z layer (bottom first) of an ``(nx, ny, nz)`` X0 map in metres, log colour scale.

    Voxels without an estimate (x0 <= 0) are blank. With ``truth`` a second row shows the true X0.
    """
    nz = x0.shape[2]
    rows = 1 if truth is None else 2
    cols = min(nz, 8)
    layers = np.linspace(0, nz - 1, cols).round().astype(int)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.6 * rows + 0.6), squeeze=False)
    # Colour range from the truth when known (outliers saturate), else the central 98 % of estimates.
    if truth is not None:
        vmin, vmax = float(truth.min()) / 3, float(truth.max()) * 3
    else:
        vmin, vmax = (float(v) for v in np.quantile(x0[x0 > 0], [0.01, 0.99]))
    norm = LogNorm(vmin=vmin, vmax=vmax)
    extent = (*x_range, *y_range)
    image = None
    for col, iz in enumerate(layers):
        data = np.where(x0[:, :, iz] > 0, x0[:, :, iz], np.nan)
        image = axes[0, col].imshow(data.T, origin="lower", extent=extent, norm=norm, cmap="viridis")
        axes[0, col].set_title(f"inferred, z {z_edges[iz]:.2f}-{z_edges[iz + 1]:.2f} m", fontsize=8)
        if truth is not None:
            axes[1, col].imshow(truth[:, :, iz].T, origin="lower", extent=extent, norm=norm, cmap="viridis")
            axes[1, col].set_title("true", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    assert image is not None
    fig.colorbar(image, ax=axes, label="X0 [m]", shrink=0.8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
