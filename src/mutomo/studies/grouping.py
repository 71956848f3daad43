"""Finished designs grouped into distinct solutions.

:func:`design_distance` compares two designs on their panels, ignoring the panels' order
within a side (the optimal assignment of :func:`scipy.optimize.linear_sum_assignment` on the
panels' (x, y, z, span)), and :func:`group_designs` clusters finished designs with complete
linkage (:mod:`scipy.cluster.hierarchy`): two designs of one group differ by at most
``threshold`` metres on every matched panel coordinate pair distance. Hodoscope designs are
compared on their module centres (x, y, z) instead, matched within each side the same way (so
the modules' order does not matter; designs of different module counts are infinitely far
apart); the free panels of a design mixing modules and free panels are ignored there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from mutomo.design.base import SIDES, Design, DesignBounds
from mutomo.design.hodoscopes import module_sides
from mutomo.errors import MutomoError

PANEL_FIELDS = ("x", "y", "z", "span")


MODULE_FIELDS = ("x", "y", "z")


def panel_table(design: Design | dict[str, Any]) -> dict[str, np.ndarray]:
    """Each side's table of what grouping compares, in metres, from a design or its
    :meth:`~mutomo.design.base.Design.describe` output: ``(panel, 4)`` rows of (x, y, z,
    span) for free panels; ``(module, 3)`` rows of module centres (x, y, z) for a hodoscope
    design (its free panels, if any, are ignored)."""
    d = design.describe() if isinstance(design, Design) else design
    if d.get("kind") == "hodoscopes":
        return _module_table(d)
    try:
        xy, z, span, n_above = np.asarray(d["xy"], float), np.asarray(d["z"], float), d["span"], int(d["n_above"])
    except KeyError as exc:
        raise MutomoError(f"a design to group needs free panels (xy, z, span, n_above); missing {exc}") from None
    span_a = np.broadcast_to(np.asarray(span, float).reshape(-1), z.shape)
    table = np.column_stack([xy.reshape(-1, 2), z, span_a])
    return {"above": table[:n_above], "below": table[n_above:]}


def _module_table(d: dict[str, Any]) -> dict[str, np.ndarray]:
    try:
        centres = np.asarray(d["centres"], float).reshape(-1, 3)
        bounds = DesignBounds(**{k: tuple(v) for k, v in d["bounds"].items()})
    except KeyError as exc:
        raise MutomoError(f"a hodoscope design to group needs its centres and bounds; missing {exc}") from None
    above = np.array(module_sides(centres, bounds), dtype=bool)
    return {"above": centres[above], "below": centres[~above]}


def _fields(table: dict[str, np.ndarray]) -> tuple[str, ...]:
    return PANEL_FIELDS if table["above"].shape[1] == len(PANEL_FIELDS) else MODULE_FIELDS


def match_panels(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The assignment of ``b``'s panels to ``a``'s (rows of (x, y, z, span), or module centres)
    minimising the sum of distances; returns ``(order of b matching a's rows, the matched
    distances)``."""
    from scipy.optimize import linear_sum_assignment

    cost = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1)
    rows, cols = linear_sum_assignment(cost)
    order = np.empty(len(rows), dtype=int)
    order[rows] = cols
    return order, cost[rows, cols][np.argsort(rows)]


def design_distance(a: Design | dict[str, Any], b: Design | dict[str, Any]) -> float:
    """The largest distance (m) between matched panels of two designs, in (x, y, z, span),
    over both sides; panels are matched within each side by the optimal assignment, so the
    distance ignores their order. Hodoscope designs: the same on their module centres (x, y, z),
    free panels ignored (:func:`panel_table`). Designs of different layouts (numbers of panels
    or modules a side, or kinds) are infinitely far apart."""
    return _table_distance(panel_table(a), panel_table(b))


def _table_distance(ta: dict[str, np.ndarray], tb: dict[str, np.ndarray]) -> float:
    if any(ta[s].shape != tb[s].shape for s in SIDES):
        return math.inf
    return max((float(match_panels(ta[s], tb[s])[1].max()) for s in SIDES if len(ta[s])), default=0.0)


def group_designs(designs: Sequence[Design | dict[str, Any]], threshold: float = 0.05) -> np.ndarray:
    """Cluster labels ``(design,)`` (0, 1, ... in order of first appearance): complete-linkage
    clusters of :func:`design_distance`, so that two designs of one cluster are within
    ``threshold`` metres of each other (> 0)."""
    if not threshold > 0 or not math.isfinite(threshold):
        raise MutomoError(f"threshold must be a finite distance > 0 m; got {threshold}")
    n = len(designs)
    if n == 0:
        return np.zeros(0, dtype=int)
    if n == 1:
        return np.zeros(1, dtype=int)
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    tables = [panel_table(d) for d in designs]
    dist = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            dist[i, j] = dist[j, i] = min(_table_distance(tables[i], tables[j]), 1e6)
    labels = fcluster(linkage(squareform(dist, checks=False), method="complete"), t=threshold, criterion="distance")
    relabel: dict[int, int] = {}
    return np.array([relabel.setdefault(int(lab), len(relabel)) for lab in labels], dtype=int)


def aligned_parameters(
    designs: Sequence[Design | dict[str, Any]], reference: Design | dict[str, Any]
) -> tuple[list[str], np.ndarray]:
    """Every design's panels put in the order of ``reference``'s (each side sorted by height,
    the highest first, ties by x then y, then matched by :func:`match_panels`): parameter names
    (``"above1.z"`` is the highest panel's height; for hodoscope designs the modules' centres,
    ``"above1.x"``, ``"above1.y"``, ``"above1.z"``, ...) and a ``(design, parameter)`` array in
    metres."""
    ref = panel_table(reference)
    ref = {s: ref[s][np.lexsort((ref[s][:, 1], ref[s][:, 0], -ref[s][:, 2]))] for s in SIDES}
    names = [f"{s}{i + 1}.{f}" for s in SIDES for i in range(len(ref[s])) for f in _fields(ref)]
    rows = []
    for d in designs:
        t = panel_table(d)
        parts = []
        for s in SIDES:
            if t[s].shape != ref[s].shape:
                raise MutomoError("aligned_parameters needs designs of one layout (panels or modules a side)")
            order, _ = match_panels(ref[s], t[s])
            parts.append(t[s][order].reshape(-1))
        rows.append(np.concatenate(parts))
    return names, np.array(rows)
