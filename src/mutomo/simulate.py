"""One call from the sky to the hits below the volume."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mutomo.detector.detector import Detector
from mutomo.detector.panel import Hits
from mutomo.muons.batch import MuonBatch
from mutomo.muons.generation import GenerationPlane, MuonSource
from mutomo.volume.grid import PassiveVolume
from mutomo.volume.propagation import propagate_straight, propagate_volume
from mutomo.volume.scattering import DEFAULT_SCATTER, ScatterParameters


@dataclass(frozen=True)
class SimulationResult:
    """Everything one simulated exposure produced.

    Attributes:
        muons_in: batch at the top of the volume (``z_high``), before scattering.
        muons_out: batch at the bottom of the volume (``z_low``).
        hits_above, hits_below: hits on each side's panels.
        n_generated: muons drawn from the source.
    """

    muons_in: MuonBatch
    muons_out: MuonBatch
    hits_above: Hits
    hits_below: Hits
    n_generated: int


def acceptance_plane(
    detector: Detector, theta_max: float = math.radians(85.0), margin: float | None = None
) -> GenerationPlane:
    """The generation plane for a detector: at the top panel's height, covering every upper
    panel widened by how far a muon up to ``theta_max`` drifts sideways before reaching it.

    Args:
        detector: the detector.
        theta_max: largest zenith angle generated (rad).
        margin: extra width on every side (m); default three panel-edge widths.
    """
    p = detector.panel_parameters("above")
    # Every panel of every design of a batch counts.
    centre, span = p["centre"].detach().reshape(-1, 3), p["span"].detach().reshape(-1, 2)
    z_top = float(centre[:, 2].max())
    drift = math.tan(theta_max) * (z_top - centre[:, 2])
    extra = 3 * float(detector.smoothness) if margin is None else margin
    lo = centre[:, :2] - 0.5 * span - drift[:, None] - extra
    hi = centre[:, :2] + 0.5 * span + drift[:, None] + extra
    return GenerationPlane(
        z=z_top + 1e-3,
        x_range=(float(lo[:, 0].min()), float(hi[:, 0].max())),
        y_range=(float(lo[:, 1].min()), float(hi[:, 1].max())),
    )


def simulate(
    detector: Detector,
    volume: PassiveVolume,
    source: MuonSource,
    n_muons: int,
    generator: torch.Generator | None = None,
    step_length: float = 0.01,
    scatter_params: ScatterParameters = DEFAULT_SCATTER,
) -> SimulationResult:
    """Generate muons, record them above, propagate through the volume, record them below.

    The panels' parameters enter only through the hits, so gradients of anything computed
    from the hits flow to every panel parameter; the propagation itself records no graph
    unless the volume's ``x0`` is a parameter. A detector with design axes
    (:meth:`~mutomo.detector.Detector.stack`) gives hits with those axes leading, all from the
    same muons: K designs cost one propagation. A batch of volumes
    (:meth:`~mutomo.volume.PassiveVolume.stack`) sends the same muons through each: the
    muon axis of the result holds ``batch * n_muons`` muons, volume after volume.
    """
    detector.check_outside(volume)
    ref = volume.x0
    muons = source.sample(n_muons, generator, dtype=ref.dtype, device=ref.device)
    muons_in = propagate_straight(muons, volume.z_high)
    muons_out = propagate_volume(muons_in, volume, step_length, generator, params=scatter_params)
    draw = {"generator": generator, "dtype": ref.dtype, "device": ref.device}
    noise_above = torch.randn(detector.n_panels("above"), n_muons, 2, **draw)  # type: ignore[arg-type]
    noise_below = torch.randn(detector.n_panels("below"), n_muons, 2, **draw)  # type: ignore[arg-type]
    # With a batch of designs (Detector.stack) the muons and the draws are shared: the hits
    # get the design axes, the propagation above runs once. With a batch of volumes
    # (PassiveVolume.stack) the same muons and draws serve every volume, volume after volume.
    if volume.batch_shape:
        muons_in = muons_in.repeat(volume.batch_size)
        noise_above, noise_below = (
            noise_above.repeat(1, volume.batch_size, 1),
            noise_below.repeat(1, volume.batch_size, 1),
        )
    return SimulationResult(
        muons_in=muons_in,
        muons_out=muons_out,
        hits_above=detector.hits(muons_in, "above", noise_above),
        hits_below=detector.hits(muons_out, "below", noise_below),
        n_generated=n_muons,
    )
