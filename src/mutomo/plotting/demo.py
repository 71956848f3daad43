"""Figure for the simulation demo."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def demo_figure(
    path: Path,
    tracks: dict[str, np.ndarray],
    angles: dict[str, np.ndarray],
    volume_z: tuple[float, float],
    panels_z: list[float],
    panel_x: list[tuple[float, float]],
) -> Path:
    """Side view of a few muon tracks through the set-up, and the scattering-angle spectra.

    Args:
        path: output PNG.
        tracks: ``"x"`` and ``"z"`` arrays ``(points, muons)`` of track polylines.
        angles: material -> projected scattering angles (rad) of the muons that crossed it.
        volume_z: (z_low, z_high) of the volume.
        panels_z, panel_x: heights and (x_min, x_max) of the panels.
    """
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 5))
    ax0.axhspan(*volume_z, color="tab:gray", alpha=0.25, label="passive volume")
    for z, (x0, x1) in zip(panels_z, panel_x, strict=True):
        ax0.plot([x0, x1], [z, z], color="tab:blue", lw=3)
    ax0.plot(tracks["x"], tracks["z"], color="tab:red", lw=0.6, alpha=0.6)
    ax0.set(xlabel="x [m]", ylabel="z [m]", title="Muon tracks (side view)")
    ax0.legend(loc="upper right")
    for name, a in angles.items():
        mrad = 1e3 * a
        ax1.hist(
            mrad,
            bins=np.linspace(-60, 60, 121),
            histtype="step",
            density=True,
            log=True,
            label=f"{name} (RMS {np.sqrt(np.mean(mrad**2)):.1f} mrad)",
        )
    ax1.set(
        xlabel="projected scattering angle [mrad]",
        ylabel="density",
        title="Scattering in 20 cm slabs",
    )
    ax1.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
