"""Figure for the simulation demo."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mutomo.plotting.style import paper_style, save_figure  # noqa: E402


@paper_style
def demo_figure(
    path: Path,
    tracks: dict[str, np.ndarray],
    angles: dict[str, np.ndarray],
    volume_z: tuple[float, float],
    panels_z: list[float],
    panel_x: list[tuple[float, float]],
    material: str = "lead",
) -> Path:
    """Side view of a few muon tracks through the set-up, and the scattering-angle spectra;
    written as PNG and SVG.

    Args:
        path: output PNG (the SVG goes beside it).
        tracks: ``"x"`` and ``"z"`` arrays ``(points, muons)`` of track polylines (m); may be
            empty.
        angles: material -> projected scattering angles (rad) of the muons that crossed it.
        volume_z: (z_low, z_high) of the volume (m).
        panels_z, panel_x: heights and (x_min, x_max) of the panels (m).
        material: what the volume of the tracks is made of.
    """
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4.8))
    ax0.axhspan(*volume_z, color="tab:gray", alpha=0.25, label=f"passive volume ({material})")
    for i, (z, (x0, x1)) in enumerate(zip(panels_z, panel_x, strict=True)):
        ax0.plot([x0, x1], [z, z], color="tab:blue", lw=3, label="detector panels" if i == 0 else None)
    if tracks.get("x") is not None and np.size(tracks["x"]):
        ax0.plot(tracks["x"], tracks["z"], color="tab:red", lw=0.6, alpha=0.6)
        ax0.plot([], [], color="tab:red", lw=0.6, label="muon tracks")
    ax0.set(xlabel="x (m)", ylabel="z (m)", title=f"Muon tracks through {material} (side view)")
    ax0.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3)  # below: the tracks fill the plot
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
        xlabel="projected scattering angle (mrad)",
        ylabel="probability density (1/mrad)",
        title="Scattering in 20 cm slabs",
    )
    ax1.legend(title="slab material")
    return save_figure(fig, path)
