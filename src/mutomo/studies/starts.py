"""Where a landscape's runs start: :func:`random_starts` (every trainable group drawn uniformly
within the region, with a seeded generator; hodoscope modules each within its own allowed centre
range, on its own side, then separated) or :func:`jittered_starts` (around a given design).
Starts of one layout train together as a :class:`~mutomo.design.stacked.StackedDesign`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mutomo.design.base import Design
from mutomo.design.hodoscopes import HodoscopeDesign, tiled_placement
from mutomo.design.panels import DetectorDesign
from mutomo.design.stacked import copy_design
from mutomo.errors import MutomoError
from mutomo.optimise.problem import Problem

MAX_DRAWS = 100
"""Draws of a hodoscope start before :func:`random_starts` gives up on separating its modules."""


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
    Hodoscope modules (:class:`~mutomo.design.hodoscopes.HodoscopeDesign`): each module's
    centre uniform within its own allowed range (the region shrunk by its box, on its own side:
    a module above stays above; its rotation kept), then separated
    (:meth:`~mutomo.design.hodoscopes.HodoscopeDesign.place_`; a draw that cannot be separated,
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


def tiled_for(problem: Problem, k: int) -> HodoscopeDesign:
    """The human tiling of ``k`` of the problem's hodoscope modules around its scene
    (:func:`~mutomo.design.hodoscopes.tiled_placement` in the problem's region, out of its
    keep-out boxes): the placement a module-count study compares against."""
    if problem.hodoscope is None:
        raise MutomoError(f"problem {problem.name!r} has no hodoscope module to tile ([hodoscope])")
    return tiled_placement(problem.bounds, problem.scene.box, problem.hodoscope, k, keep_out=problem.keep_out)
