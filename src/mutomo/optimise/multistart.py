"""Many starts in one pass, and the grouping of finished designs into distinct solutions.

:class:`StackedDesign` holds K member designs of one layout and trains them as one design: its
detector is :meth:`~mutomo.detector.Detector.stack` of the members' detectors, so one
simulation serves all K, and its loss (:func:`~mutomo.optimise.loop.batch_loss`) is the *sum*
of the members' losses, each computed from the member's own outputs, so that every member's
gradient is the gradient of its own loss. The members of a batch share its volumes and its
muons (the same generated muons and scattering draws, read out by each member's panels);
they differ in their panels only. With ``training.hits = "sampled"`` each member's hits are
kept or lost by its own Bernoulli draws. Members may be designs of free panels or of hodoscope
modules (:class:`~mutomo.optimise.hodoscopes.HodoscopeDesign`: their panel groups are
flattened into panels by the stack, each module's panels in one block, so that the gradient
still reaches each member's module centres).

Starts come from :func:`random_starts` (every trainable group drawn uniformly within the
region, with a seeded generator; hodoscope modules each within its own allowed centre range,
on its own side, then separated) or :func:`jittered_starts` (around a given design).

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
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mutomo.detector import Detector
from mutomo.errors import MutomoError
from mutomo.optimise.design import Design, DesignBounds, DetectorDesign
from mutomo.optimise.hodoscopes import HodoscopeDesign, module_sides

SIDES = ("above", "below")
PANEL_FIELDS = ("x", "y", "z", "span")
MODULE_FIELDS = ("x", "y", "z")
MAX_DRAWS = 100
"""Draws of a hodoscope start before :func:`random_starts` gives up on separating its modules."""


class StackedDesign(Design):
    """K designs of one layout trained together as one (see the module docstring).

    Args:
        members: the designs (at least one), each with the same number of panels above and
            below, all with a fixed budget or all without. They are held, not copied: training
            the stack trains them. The stack's ``trainable`` is every group some member trains;
            a member's frozen groups stay frozen.
    """

    members: nn.ModuleList

    def __init__(self, members: Sequence[Design]) -> None:
        super().__init__()
        if len(members) < 1:
            raise MutomoError("StackedDesign.members needs at least one design")
        layouts = {(d.detector().n_panels("above"), d.detector().n_panels("below")) for d in members}
        if len(layouts) != 1:
            raise MutomoError(f"StackedDesign.members must share one panel layout; got {sorted(layouts)}")
        budgets = {d.budget is None for d in members}
        if len(budgets) != 1:
            raise MutomoError("StackedDesign.members must all have a fixed budget or all none")
        self.members = nn.ModuleList(members)
        self.trainable = tuple(dict.fromkeys(g for d in members for g in d.trainable))

    def __len__(self) -> int:
        return len(self.members)

    def __iter__(self) -> Iterator[Design]:
        return iter(self._designs())

    def _designs(self) -> list[Design]:
        return [m for m in self.members if isinstance(m, Design)]

    @property
    def bounds(self) -> DesignBounds:  # type: ignore[override]
        return self._designs()[0].bounds

    @property
    def budget(self) -> float | None:  # type: ignore[override]
        """``None`` for soft-budget members; else the largest member budget (each member keeps its own)."""
        budgets = [d.budget for d in self._designs()]
        return None if budgets[0] is None else max(b for b in budgets if b is not None)

    @property
    def smoothness(self) -> float:
        return self._designs()[0].smoothness

    @smoothness.setter
    def smoothness(self, value: float) -> None:
        for d in self._designs():
            d.smoothness = value

    def detector(self) -> Detector:
        """The members' detectors stacked: a detector with the design axis ``(K,)``."""
        return Detector.stack([d.detector() for d in self._designs()])

    def cost(self) -> Tensor:
        """``(K,)`` cost of every member."""
        return torch.stack([d.cost() for d in self._designs()])

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        groups: dict[str, list[nn.Parameter]] = {}
        for d in self._designs():
            for name, params in d.parameter_groups().items():
                groups.setdefault(name, []).extend(params)
        return groups

    def project_(self) -> None:
        for d in self._designs():
            d.project_()

    def describe(self) -> dict[str, Any]:
        return {"kind": "stacked", "members": [d.describe() for d in self._designs()]}

    @classmethod
    def from_description(cls, d: dict[str, Any], cost_model: Any = None) -> StackedDesign:
        from mutomo.optimise.design import design_from_description

        return cls([design_from_description(m, cost_model) for m in d["members"]])


# ----------------------------------------------------------------------------- starts


def copy_design(template: Design, budget: float | None = None) -> Design:
    """A new design equal to ``template`` (rebuilt from its description, in its dtype); a design
    of free panels gets the fixed ``budget`` (``None``: none)."""
    d = template.describe()
    copy: Design
    if isinstance(template, DetectorDesign):
        copy = DetectorDesign.from_description({**d, "budget": budget}, template.cost_model)
    elif isinstance(template, HodoscopeDesign):
        copy = HodoscopeDesign.from_description(d, template.cost_model)
    else:
        raise MutomoError(f"copy_design needs a DetectorDesign or a HodoscopeDesign; got {type(template).__name__}")
    return copy.to(next(template.parameters()).dtype)


def _check_count(k: int, name: str = "starts") -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise MutomoError(f"{name} must be an integer >= 1; got {k!r}")


def _draw_panels_(d: DetectorDesign, g: torch.Generator) -> None:
    """Every trainable group of free panels drawn uniformly within the region (see
    :func:`random_starts`)."""
    b = d.bounds
    n, n_above = d.z.shape[0], d.n_above
    dtype = d.z.dtype

    def uniform(lo: float, hi: float, size: int) -> Tensor:
        return lo + (hi - lo) * torch.rand(size, generator=g, dtype=dtype)

    if "xy" in d.trainable:
        d.xy[:, 0] = uniform(*b.x, n)
        d.xy[:, 1] = uniform(*b.y, n)
    if "z" in d.trainable:
        d.z[:n_above] = uniform(*b.z_above, n_above)
        d.z[n_above:] = uniform(*b.z_below, n - n_above)
    if "size" in d.trainable:
        if d.budget is None:
            d.log_span.copy_(uniform(math.log(b.span[0]), math.log(b.span[1]), n))
        else:  # uniform on the simplex: normalised exponential draws
            e = -torch.log(torch.rand(n, generator=g, dtype=dtype).clamp_min(1e-12))
            d.share_logit.copy_(torch.log(e / e.sum()))
    if "resolution" in d.trainable:
        d.log_resolution.copy_(uniform(math.log(b.resolution[0]), math.log(b.resolution[1]), n))
    if "efficiency" in d.trainable:
        eff = uniform(*b.efficiency, n)
        d.logit_efficiency.copy_(torch.log(eff) - torch.log1p(-eff))


def _draw_modules_(d: HodoscopeDesign, g: torch.Generator) -> None:
    """Each module's centre drawn uniformly within its own allowed range (its side and rotation
    kept; only the trainable axes: ``xy``, ``z``), separated; the free panels, if any, as
    :func:`_draw_panels_`. Redraws when the modules cannot be separated, or only by moving
    them along a frozen axis, at most :data:`MAX_DRAWS` times."""
    if d.free is not None:
        _draw_panels_(d.free, g)
    axes = [a for a, group in enumerate(("xy", "xy", "z")) if group in d.trainable]
    if not axes:
        return
    frozen = [a for a in range(3) if a not in axes]
    before = d.centres.detach().clone()
    ranges = torch.tensor(d.centre_ranges(), dtype=torch.float64)  # (module, axis, [lo, hi])
    lo, hi = ranges[..., 0], ranges[..., 1]
    for _ in range(MAX_DRAWS):
        drawn = lo + (hi - lo) * torch.rand(lo.shape, generator=g, dtype=torch.float64)
        centres = before.double()
        centres[:, axes] = drawn[:, axes]
        if d.place_(centres) and torch.equal(d.centres.detach()[:, frozen], before[:, frozen]):
            return
    raise MutomoError(
        f"random_starts: {d.n_modules} modules could not be placed apart within the region in {MAX_DRAWS} draws "
        "(the region is too small for them): widen region.x, region.y, z_above or z_below, or place fewer modules"
    )


def _draw_(d: Design, g: torch.Generator) -> None:
    if isinstance(d, HodoscopeDesign):
        _draw_modules_(d, g)
    else:
        assert isinstance(d, DetectorDesign)
        _draw_panels_(d, g)


@torch.no_grad()
def random_starts(template: Design, k: int, seed: int = 0, budget: float | None | str = "template") -> list[Design]:
    """``k`` designs with the template's layout, every trainable group drawn uniformly within the
    region, then projected; frozen groups keep the template's values. The draws are the same
    for a given seed.

    Free panels (:class:`DetectorDesign`): centres in x, y and each side's z range; spans
    log-uniform within the span bounds, or budget shares uniform on the simplex under a fixed
    budget; resolutions log-uniform and efficiencies uniform within their bounds.
    Hodoscope modules (:class:`~mutomo.optimise.hodoscopes.HodoscopeDesign`): each module's
    centre uniform within its own allowed range (the region shrunk by its box, on its own side:
    a module above stays above; its rotation kept), then separated
    (:meth:`~mutomo.optimise.hodoscopes.HodoscopeDesign.place_`; a draw that cannot be separated,
    or only by moving a module along a frozen axis, is drawn again with the same generator, at
    most :data:`MAX_DRAWS` times, then :class:`MutomoError`); free panels beside the modules as
    above.

    Args:
        template: the layout, bounds, cost model and trainable groups.
        k: number of designs (>= 1).
        seed: seeds the draws (``torch.Generator``).
        budget: the members' fixed budget (``"template"``: the template's; free panels only).
    """
    _check_count(k)
    g = torch.Generator().manual_seed(int(seed))
    out = []
    for _ in range(k):
        d = copy_design(template, template.budget if budget == "template" else budget)  # type: ignore[arg-type]
        _draw_(d, g)
        d.project_()
        out.append(d)
    return out


@torch.no_grad()
def jittered_starts(
    template: Design,
    k: int,
    seed: int = 0,
    jitter: float = 0.1,
    log_jitter: float = 0.3,
    include_template: bool = True,
) -> list[Design]:
    """``k`` designs around ``template``: every trainable centre (of a panel or a hodoscope
    module) moved by a normal draw of standard deviation ``jitter`` (m); log-spans, budget-share
    logits, log-resolutions and efficiency logits by ``log_jitter`` (e-folds); then projected
    into the region (modules separated, or sent back to the template's placement where that
    fails). The first is the template itself unless ``include_template`` is false."""
    _check_count(k)
    if not (jitter > 0 and log_jitter >= 0):
        raise MutomoError(f"jitter must be > 0 m and log_jitter >= 0; got {jitter}, {log_jitter}")
    g = torch.Generator().manual_seed(int(seed))
    out = []
    for i in range(k):
        d = copy_design(template, template.budget)
        if i > 0 or not include_template:
            for group, params in d.parameter_groups().items():
                if group not in d.trainable:
                    continue
                scale = jitter if group in ("xy", "z") else log_jitter
                for p in params:
                    p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
            d.project_()
        out.append(d)
    return out


# ----------------------------------------------------------------------------- grouping


def panel_table(design: Design | dict[str, Any]) -> dict[str, np.ndarray]:
    """Each side's table of what grouping compares, in metres, from a design or its
    :meth:`~mutomo.optimise.design.Design.describe` output: ``(panel, 4)`` rows of (x, y, z,
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
