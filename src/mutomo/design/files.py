"""Design files: the JSON a design's :meth:`~mutomo.design.base.Design.describe` writes, read
back and checked, and rebuilt as a design in a problem's region and cost model.

A design file is the design package's own format (``design_final.json`` of a run, or one written
by hand): free panels (:data:`DESIGN_FILE_KEYS`) or hodoscope modules (``"kind": "hodoscopes"``).
Everything read from one is checked here, where it enters, with errors naming the file and key.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from typing import Any, Protocol

from mutomo.design.base import Design, DesignBounds
from mutomo.design.hodoscopes import Box, HodoscopeDesign
from mutomo.design.panels import DetectorDesign
from mutomo.detector.cost import CostModel
from mutomo.errors import DesignFileError, MutomoWarning
from mutomo.io.files import PathLike, as_path


class NamedDesign(Protocol):
    """A named design of a problem: builds the design with the trainable parameter groups and,
    for free panels, a fixed budget (``None``: the design's own)."""

    def __call__(self, trainable: Sequence[str], budget: float | None) -> Design: ...


DESIGN_FILE_KEYS = ("n_above", "xy", "z", "span", "resolution", "efficiency")
"""The keys a design file must have (as written by :meth:`DetectorDesign.describe`)."""
DESIGN_FILE_OPTIONAL = ("budget", "cost", "bounds", "cost_model", "trainable", "smoothness", "made_for")
"""Keys a design file may have besides: written by mutomo, not read back (the problem's region,
cost model and budget apply); ``made_for`` names the problem the design was made for (see
:meth:`mutomo.optimise.Problem.design_json`)."""

HODOSCOPE_FILE_KEYS = ("kind", "module", "centres", "rotated", "keep_out", "free", "span_xy")
"""Further keys of a hodoscope design file (``"kind": "hodoscopes"``; see
:meth:`mutomo.design.hodoscopes.HodoscopeDesign.describe`)."""


def _refuse_constant(name: str) -> float:
    raise DesignFileError(f"{name} is not a number a design may hold")


def read_design_file(path: PathLike) -> dict[str, Any]:
    """The design JSON file ``path`` as a dictionary, checked: valid JSON (no NaN or Infinity),
    an object with every key of :data:`DESIGN_FILE_KEYS`, no key outside those and
    :data:`DESIGN_FILE_OPTIONAL`, ``n_above`` an integer and the others lists of numbers.
    Raises :class:`DesignFileError` naming the file and the key."""
    path = as_path(path, "design file")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise DesignFileError(f"design file {path}: cannot be read ({exc})") from None
    try:
        d = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise DesignFileError(f"design file {path}: not valid JSON ({exc})") from None
    except DesignFileError as exc:
        raise DesignFileError(f"design file {path}: {exc}") from None
    if not isinstance(d, dict):
        raise DesignFileError(f"design file {path}: must hold a JSON object with keys {list(DESIGN_FILE_KEYS)}")
    missing = [k for k in DESIGN_FILE_KEYS if k not in d]
    if missing:
        raise DesignFileError(f"design file {path}: lacks {missing}")
    allowed = set(DESIGN_FILE_KEYS) | set(DESIGN_FILE_OPTIONAL)
    if d.get("kind") == "hodoscopes":
        allowed |= set(HODOSCOPE_FILE_KEYS)
        for key in ("module", "centres"):
            if key not in d:
                raise DesignFileError(f"design file {path}: a hodoscope design lacks {key!r}")
    extra = sorted(set(d) - allowed)
    if extra:
        raise DesignFileError(f"design file {path}: unknown key(s) {extra}; allowed {sorted(allowed)}")
    if not isinstance(d["n_above"], int) or isinstance(d["n_above"], bool):
        raise DesignFileError(f"design file {path}: n_above must be an integer; got {d['n_above']!r}")
    for key in DESIGN_FILE_KEYS[1:]:
        if not _numbers(d[key]):
            raise DesignFileError(f"design file {path}: {key} must be a number or a list of numbers; got {d[key]!r}")
    return d


def _numbers(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    return isinstance(value, list) and len(value) > 0 and all(_numbers(v) for v in value)


def panels_from_file(
    d: dict[str, Any],
    bounds: DesignBounds,
    cost_model: CostModel,
    trainable: Sequence[str],
    budget: float | None,
) -> DetectorDesign:
    """The free panels of a checked design file's dictionary ``d``. A design written under a fixed
    budget (its ``budget``) keeps it when ``budget`` is ``None``: its spans were shares of that
    budget, which span bounds do not limit."""
    if budget is None and isinstance(d.get("budget"), (int, float)) and not isinstance(d["budget"], bool):
        budget = float(d["budget"])
    return DetectorDesign(
        xy=d["xy"],
        z=d["z"],
        n_above=d["n_above"],
        span=d["span"],
        resolution=d["resolution"],
        efficiency=d["efficiency"],
        bounds=bounds,
        budget=budget,
        cost_model=cost_model,
        trainable=trainable,
    )


def hodoscopes_from_file(
    d: dict[str, Any],
    bounds: DesignBounds,
    cost_model: CostModel,
    trainable: Sequence[str],
    keep_out: Sequence[Box] = (),
) -> HodoscopeDesign:
    """The modules (and free panels beside them, which have no budget: modules are bought as
    built) of a checked hodoscope design file's dictionary ``d``."""
    module = HodoscopeDesign.from_description(d).module
    free = None
    if d.get("free"):
        f = d["free"]
        free = DetectorDesign(
            f["xy"],
            f["z"],
            f["n_above"],
            f["span"],
            f["resolution"],
            f["efficiency"],
            bounds,
            cost_model=cost_model,
            trainable=[g for g in trainable if g not in ("xy", "z")] or (),
        )
    return placed_modules(module, d["centres"], d.get("rotated"), free, bounds, cost_model, trainable, keep_out)


def placed_modules(
    module: Any,
    centres: Any,
    rotated: Any,
    free: DetectorDesign | None,
    bounds: DesignBounds,
    cost_model: CostModel,
    trainable: Sequence[str],
    keep_out: Sequence[Box] = (),
) -> HodoscopeDesign:
    """Modules at ``centres`` with the free panels ``free`` beside them; of ``trainable``, the
    module centres (``xy``, ``z``) and the free panels' own groups train."""
    allowed = {"xy", "z", *(free.trainable if free is not None else ())}
    return HodoscopeDesign(
        module,
        centres,
        bounds,
        keep_out=tuple(keep_out),
        rotated=rotated,
        free=free,
        cost_model=cost_model,
        trainable=[g for g in trainable if g in allowed],
    )


def widened(bounds: DesignBounds, d: dict[str, Any]) -> DesignBounds:
    """``bounds`` grown to hold the region a design file records (its ``bounds``), so that a
    design made for another scene can be evaluated where it stands; ``bounds`` if it records none."""
    own = d.get("bounds")
    if not isinstance(own, dict):
        return bounds
    try:
        other = DesignBounds(**{k: tuple(v) for k, v in own.items()})
    except (TypeError, ValueError):
        return bounds
    span = lambda a, b: (min(a[0], b[0]), max(a[1], b[1]))  # noqa: E731
    z_above, z_below = span(bounds.z_above, other.z_above), span(bounds.z_below, other.z_below)
    if not z_below[1] < z_above[0]:  # the two regions' heights interleave: keep the problem's
        z_above, z_below = bounds.z_above, bounds.z_below
    return DesignBounds(
        x=span(bounds.x, other.x),
        y=span(bounds.y, other.y),
        z_above=z_above,
        z_below=z_below,
        span=span(bounds.span, other.span),
        resolution=span(bounds.resolution, other.resolution),
        efficiency=span(bounds.efficiency, other.efficiency),
    )


def design_from_file(
    path: PathLike,
    bounds: DesignBounds,
    cost_model: CostModel,
    trainable: Sequence[str],
    budget: float | None,
    keep_out: Sequence[Box] = (),
    made_for: dict[str, str] | None = None,
) -> Design:
    """The design of file ``path`` (free panels or hodoscope modules), checked by
    :func:`read_design_file`, in the region ``bounds`` with ``cost_model``. With ``made_for``
    (the problem it is used on), a file made for another problem (its ``made_for`` differs) is
    warned of by name (:class:`~mutomo.errors.MutomoWarning`) and built in ``bounds`` widened to
    hold its own region: evaluating a design on another scene is allowed."""
    d = read_design_file(path)
    recorded = d.get("made_for")
    if made_for is not None and isinstance(recorded, dict) and recorded.get("fingerprint") != made_for["fingerprint"]:
        same = recorded.get("problem") == made_for["problem"]
        warnings.warn(
            MutomoWarning(
                f"design file {path}: design made for {recorded.get('problem')} ({recorded.get('task')}, scene "
                f"{recorded.get('fingerprint')}), evaluated on {made_for['problem']} ({made_for['task']}, scene "
                f"{made_for['fingerprint']})" + ("; the same name, but the scene or task differs" if same else "")
            ),
            stacklevel=2,
        )
        bounds = widened(bounds, d)
    if d.get("kind") == "hodoscopes":
        return hodoscopes_from_file(d, bounds, cost_model, trainable, keep_out)
    return panels_from_file(d, bounds, cost_model, trainable, budget)
