"""The physical readout of a detector: what a real tracker records, for honest evaluation.

Training uses a smooth relaxation (:meth:`mutomo.detector.Detector.hits`): sigmoid panel
edges and hit *probabilities* as weights. :func:`physical_readout` turns the same simulated
crossings into what a real detector would record:

* hard edges: a hit needs the true crossing inside the panel's rectangle;
* Bernoulli hits: each hit is recorded with probability efficiency x (muon alive), by a draw
  from the caller's generator, so the weights are exactly 0 or 1;
* a trigger: a side's track needs at least ``min_hits`` recorded hits (``None``: every panel
  of the side), otherwise all its hits are dropped;
* Gaussian resolution is already in the measured positions.

:func:`sampled_readout` is the training-side bridge: smooth edges, but each hit recorded or
lost by a Bernoulli draw, so that the loss sees the tracks a real tracker would fit (a side
whose recorded hits sit at one height has no lever arm) instead of every panel's expected
contribution. The draw carries the efficiency's gradient straight through (its value is the
draw, its derivative that of the probability), a biased but standard estimator.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from mutomo.detector.detector import Detector
from mutomo.detector.panel import Hits
from mutomo.errors import MutomoError


def physical_readout(
    hits: Hits,
    detector: Detector,
    side: str,
    muon_weight: Tensor,
    generator: torch.Generator | None,
    min_hits: int | None = 2,
) -> Hits:
    """Hits as a real tracker records them (see the module docstring).

    Args:
        hits: smooth hits of ``side`` from :meth:`Detector.hits` (they must carry ``true_xy``).
        detector: the detector that made them.
        side: ``"above"`` or ``"below"``.
        muon_weight: ``(mu,)`` weight of each muon on that side (0 for a muon that stopped).
        generator: for the Bernoulli draws.
        min_hits: hits a side needs for its track (``None``: all of the side's panels).

    Returns:
        The hits with 0/1 weights; positions, heights and resolutions unchanged.
    """
    if hits.true_xy is None:
        raise MutomoError("physical_readout needs hits with their true crossing points (simulated hits)")
    p = detector.panel_parameters(side)
    n_panels = p["centre"].shape[-2]
    need = n_panels if min_hits is None else min_hits
    if not 1 <= need <= n_panels:
        raise MutomoError(f"min_hits must be in [1, {n_panels}] for the {side} side; got {min_hits}")
    with torch.no_grad():
        offset = hits.true_xy - p["centre"][..., None, :2]
        inside = (offset.abs() <= 0.5 * p["span"][..., None, :]).all(-1)
        probability = p["efficiency"][..., None] * inside * muon_weight
        u = torch.rand(probability.shape, generator=generator, dtype=probability.dtype, device=probability.device)
        recorded = (u < probability).to(probability.dtype)
        recorded = recorded * (recorded.sum(-2, keepdim=True) >= need)
    return replace(hits, weight=recorded)


def sampled_readout(hits: Hits, detector: Detector, side: str, generator: torch.Generator | None) -> Hits:
    """Smooth hits with each hit kept or lost by a Bernoulli draw of the panel's efficiency
    (straight-through gradient for the efficiency; see the module docstring)."""
    efficiency = detector.panel_parameters(side)["efficiency"][..., None]
    with torch.no_grad():
        u = torch.rand(hits.weight.shape, generator=generator, dtype=hits.weight.dtype, device=hits.weight.device)
        drawn = (u < efficiency).to(hits.weight.dtype)
    straight_through = drawn + efficiency - efficiency.detach()
    return replace(hits, weight=hits.weight / efficiency * straight_through)
