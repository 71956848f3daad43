"""Reading and writing hits, so that reconstruction runs on data mutomo did not make.

Three formats:

* **muograph-style CSV** (:func:`read_csv`, :func:`write_csv`): one row per muon, columns
  ``E, X0..X{n-1}, Y0..Y{n-1}, Z0..Z{n-1}`` for ``n`` planes. Units as muograph writes them:
  positions in mm and ``E`` the muon's *kinetic* energy in MeV (both changeable by argument).
  An empty or ``nan`` X/Y cell is a hit the plane did not record.
* **ROOT** through uproot (:func:`read_root`, :func:`write_root`): a TTree with one entry per
  hit and branches ``eventID, x, y, z, energy`` (Geant4 units by default: mm and MeV kinetic
  energy). Hits are grouped into muons by ``eventID`` and into planes by their ``z``; the
  muon's energy is that of its hit on the highest plane (where it entered). A muon that no
  plane recorded has no entry, so it is absent after a round trip.
* **mutomo HDF5** (:func:`read_hdf5`, :func:`write_hdf5`): the :class:`~mutomo.detector.Hits`
  of each side as they are (SI units), including hit probabilities, resolutions and, when
  known, the true crossing points and momenta. Lossless.

CSV and ROOT carry neither resolutions nor which planes sit above the volume: the reader takes
``resolution`` (m, one value or one per plane from the top down) and ``z_split`` (m; planes
above it measure the incoming track). Every malformed input raises :class:`HitsFileError`
naming the file and the row, column, branch or dataset at fault and what was expected.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch import Tensor

from mutomo.detector.panel import Hits
from mutomo.errors import HitsFileError, MutomoError
from mutomo.io.files import as_path
from mutomo.simulate import SimulationResult
from mutomo.units import MUON_MASS

LENGTH_UNITS = {"m": 1.0, "cm": 1e-2, "mm": 1e-3, "um": 1e-6}
ENERGY_UNITS = {"GeV": 1.0, "MeV": 1e-3, "keV": 1e-6}
ENERGY_KINDS = ("kinetic", "total")
HDF5_FORMAT = "mutomo-hits"
HDF5_VERSION = 1
MAX_COORDINATE = 1000.0
"""Largest |x|, |y| or |z| (m) a hit may have: a muon tomography detector is metres to tens of
metres across, so a coordinate beyond a kilometre is a unit or file error, not a hit."""
MAX_ENERGY = 1e7
"""Largest muon energy (GeV) read: 10 PeV, beyond which the sea-level muon flux is negligible
(the flux models of :mod:`mutomo.muons.flux` stop far below); larger is a unit error."""


def _where(template: str, row_offset: int = 0) -> Callable[[tuple[int, ...]], str]:
    """Names a cell: ``template`` formatted with its index (the first shifted by ``row_offset``)."""

    def name(index: tuple[int, ...]) -> str:
        return template.format(index[0] + row_offset, *index[1:])

    return name


def _check_range(values: np.ndarray, limit: float, where: Callable[[tuple[int, ...]], str]) -> None:
    """Refuse an infinite coordinate or one with ``|value| > limit`` (m); NaN marks a hit not
    recorded. ``where(index)`` names the offending cell."""
    bad = np.isinf(values) | (np.abs(np.nan_to_num(values)) > limit)
    if bad.any():
        index = _first(bad)
        raise HitsFileError(
            f"{where(index)}: {values[index]:.6g} m is not a plausible coordinate "
            f"(finite, |value| <= {limit:g} m); check the length unit"
        )


@dataclass(frozen=True)
class HitsData:
    """Hits of a set of muons on both sides of a volume.

    Attributes:
        above, below: hits on the planes above and below the volume, ``(panel, mu, ...)``.
        momentum: ``(mu,)`` momenta (GeV/c) when the source records them, else ``None``.
    """

    above: Hits
    below: Hits
    momentum: Tensor | None = None

    @property
    def n_muons(self) -> int:
        return int(self.above.xy.shape[1])


def _unit(table: dict[str, float], unit: str, what: str) -> float:
    if unit not in table:
        raise MutomoError(f"{what} must be one of {sorted(table)}; got {unit!r}")
    return table[unit]


def _momentum_from_energy(energy: np.ndarray, kind: str, where: str) -> np.ndarray:
    """Momentum (GeV/c) from energies in GeV, kinetic or total."""
    if kind not in ENERGY_KINDS:
        raise MutomoError(f"energy kind must be one of {ENERGY_KINDS}; got {kind!r}")
    total = energy + MUON_MASS if kind == "kinetic" else energy
    bad = ~np.isfinite(total) | (total < MUON_MASS) | (total > MAX_ENERGY)
    if bad.any():
        i = int(np.argmax(bad))
        raise HitsFileError(
            f"{where} {i}: {kind} energy {energy[i]:.6g} GeV is not a muon energy "
            f"(need a finite value{' >= 0' if kind == 'kinetic' else f' >= {MUON_MASS} GeV'}, "
            f"at most {MAX_ENERGY:g} GeV)"
        )
    return np.sqrt(total**2 - MUON_MASS**2)


def _energy_from_momentum(momentum: Tensor, kind: str) -> np.ndarray:
    if kind not in ENERGY_KINDS:
        raise MutomoError(f"energy kind must be one of {ENERGY_KINDS}; got {kind!r}")
    p = momentum.detach().double().cpu().numpy()
    total = np.sqrt(p**2 + MUON_MASS**2)
    return total - MUON_MASS if kind == "kinetic" else total


def _split_planes(
    x: np.ndarray,
    y: np.ndarray,
    plane_z: np.ndarray,
    resolution: float | Sequence[float],
    z_split: float,
    source: str,
    dtype: torch.dtype,
) -> tuple[Hits, Hits]:
    """Build both sides' :class:`Hits` from ``(mu, plane)`` arrays (nan = not recorded)."""
    order = np.argsort(-plane_z, kind="stable")
    x, y, plane_z = x[:, order], y[:, order], plane_z[order]
    res = np.broadcast_to(np.asarray(resolution, dtype=np.float64), plane_z.shape)
    if not np.all(res > 0):
        raise MutomoError(f"resolution must be > 0 m for every plane; got {res.tolist()}")
    recorded = np.isfinite(x) & np.isfinite(y)
    sides = []
    for name, mask in (("above", plane_z > z_split), ("below", plane_z < z_split)):
        if mask.sum() < 2:
            raise HitsFileError(
                f"{source}: {int(mask.sum())} plane(s) {name} z_split = {z_split} m (planes at "
                f"{np.round(plane_z, 6).tolist()} m); a track fit needs at least 2 on each side"
            )
        xy = np.stack([np.nan_to_num(x[:, mask]), np.nan_to_num(y[:, mask])], -1).transpose(1, 0, 2)
        sides.append(
            Hits(
                xy=torch.as_tensor(xy, dtype=dtype),
                z=torch.as_tensor(plane_z[mask], dtype=dtype),
                resolution=torch.as_tensor(res[mask], dtype=dtype),
                weight=torch.as_tensor(recorded[:, mask].T, dtype=dtype),
            )
        )
    return sides[0], sides[1]


def _recorded_planes(data: HitsData, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x, y)`` as ``(mu, plane)`` with nan for hits below the recording threshold, and plane z."""
    xs, ys, zs = [], [], []
    for hits in (data.above, data.below):
        xy = hits.xy.detach().double().cpu().numpy()
        rec = hits.weight.detach().cpu().numpy() >= threshold
        xs.append(np.where(rec, xy[..., 0], np.nan).T)
        ys.append(np.where(rec, xy[..., 1], np.nan).T)
        zs.append(hits.z.detach().double().cpu().numpy())
    return np.concatenate(xs, 1), np.concatenate(ys, 1), np.concatenate(zs)


def _require_momentum(data: HitsData, fmt: str) -> Tensor:
    if data.momentum is None:
        raise MutomoError(f"the {fmt} format records each muon's energy; these hits carry no momentum")
    return data.momentum


# ----------------------------------------------------------------------------------------- CSV


def write_csv(
    path: str | Path,
    data: HitsData,
    length_unit: str = "mm",
    energy_unit: str = "MeV",
    energy: str = "kinetic",
    threshold: float = 0.5,
) -> Path:
    """Write muograph-style CSV; hits with probability below ``threshold`` are left empty."""
    path = Path(path)
    scale, e_scale = _unit(LENGTH_UNITS, length_unit, "length_unit"), _unit(ENERGY_UNITS, energy_unit, "energy_unit")
    x, y, plane_z = _recorded_planes(data, threshold)
    e = _energy_from_momentum(_require_momentum(data, "CSV"), energy) / e_scale
    n = plane_z.size
    header = ["E", *(f"X{i}" for i in range(n)), *(f"Y{i}" for i in range(n)), *(f"Z{i}" for i in range(n))]
    z = np.where(np.isfinite(x), plane_z[None, :], np.nan)
    table = np.concatenate([e[:, None], x / scale, y / scale, z / scale], 1)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for row in table:
            writer.writerow(["" if math.isnan(v) else repr(float(v)) for v in row])
    return path


def read_csv(
    path: str | Path,
    resolution: float | Sequence[float],
    z_split: float,
    length_unit: str = "mm",
    energy_unit: str = "MeV",
    energy: str = "kinetic",
    z_tolerance: float = 1e-4,
    dtype: torch.dtype = torch.float32,
) -> HitsData:
    """Read muograph-style CSV (see the module docstring).

    Args:
        path: the file.
        resolution: position resolution (m), one value or one per plane from the top down.
        z_split: height (m) between the planes above and below the volume.
        length_unit, energy_unit: units of the X/Y/Z and E columns.
        energy: whether ``E`` is the ``"kinetic"`` or ``"total"`` energy.
        z_tolerance: largest spread (m) of a plane's Z column before the file is refused
            (mutomo's planes are flat and horizontal).
        dtype: dtype of the returned tensors.
    """
    path = as_path(path, "hits file")
    scale, e_scale = _unit(LENGTH_UNITS, length_unit, "length_unit"), _unit(ENERGY_UNITS, energy_unit, "energy_unit")
    try:
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise HitsFileError(f"{path}: cannot be read as CSV ({exc})") from None
    if not rows:
        raise HitsFileError(f"{path}: empty file; expected a header row 'E, X0.., Y0.., Z0..'")
    header = [h.strip() for h in rows[0]]
    n = sum(1 for h in header if h.startswith("X") and h[1:].isdigit())
    expected = [f"{a}{i}" for a in "XYZ" for i in range(n)]
    missing = [c for c in ["E", *expected] if c not in header]
    if n == 0 or missing:
        raise HitsFileError(
            f"{path}: header lacks column(s) {missing or ['X0']}; expected E, X0..Xn-1, Y0..Yn-1, Z0..Zn-1"
        )
    columns = {name: header.index(name) for name in ["E", *expected]}
    body = rows[1:]
    if not body:
        raise HitsFileError(f"{path}: no data rows after the header")
    values = np.full((len(body), len(columns)), np.nan)
    for r, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise HitsFileError(f"{path}: row {r} has {len(row)} fields; the header has {len(header)}")
        for k, (name, c) in enumerate(columns.items()):
            cell = row[c].strip()
            if cell == "":
                continue
            try:
                values[r - 2, k] = float(cell)
            except ValueError:
                raise HitsFileError(f"{path}: row {r}, column {name}: {cell!r} is not a number") from None
    e, x, y, z = values[:, 0], values[:, 1 : n + 1], values[:, n + 1 : 2 * n + 1], values[:, 2 * n + 1 :]
    x, y, z = x * scale, y * scale, z * scale
    for axis, v in (("X", x), ("Y", y), ("Z", z)):
        _check_range(v, MAX_COORDINATE, _where(f"{path}: row {{}}, column {axis}{{}}", row_offset=2))
    recorded = np.isfinite(x) & np.isfinite(y)
    no_z = recorded & np.isnan(z)
    if no_z.any():
        r, i = _first(no_z)
        raise HitsFileError(
            f"{path}: row {r + 2}, column Z{i}: empty or nan, but X{i} and Y{i} record a hit; a recorded hit needs "
            "its Z (leave X, Y and Z all empty for a plane that did not record the muon)"
        )
    plane_z = np.array([np.median(z[recorded[:, i], i]) if recorded[:, i].any() else np.nan for i in range(n)])
    for i in range(n):
        if np.isnan(plane_z[i]):
            raise HitsFileError(f"{path}: column Z{i}: plane {i} has no recorded hit, so its height is unknown")
        off = np.abs(z[:, i] - plane_z[i])
        bad = recorded[:, i] & ~(off <= z_tolerance)
        if bad.any():
            r = int(np.argmax(bad))
            raise HitsFileError(
                f"{path}: row {r + 2}, column Z{i}: z = {z[r, i]:.6g} m is {off[r]:.3g} m from the plane's "
                f"z = {plane_z[i]:.6g} m (tolerance {z_tolerance} m); planes must be flat and horizontal"
            )
    p = _momentum_from_energy(e * e_scale, energy, f"{path}: column E, data row")
    above, below = _split_planes(x, y, plane_z, resolution, z_split, str(path), dtype)
    return HitsData(above=above, below=below, momentum=torch.as_tensor(p, dtype=dtype))


# ---------------------------------------------------------------------------------------- ROOT

ROOT_BRANCHES = ("eventID", "x", "y", "z", "energy")


def write_root(
    path: str | Path,
    data: HitsData,
    tree: str = "hits",
    length_unit: str = "mm",
    energy_unit: str = "MeV",
    energy: str = "kinetic",
    threshold: float = 0.5,
) -> Path:
    """Write a ROOT TTree with one entry per recorded hit (branches ``eventID, x, y, z, energy``;
    every hit of a muon carries the muon's energy)."""
    import uproot

    path = Path(path)
    scale, e_scale = _unit(LENGTH_UNITS, length_unit, "length_unit"), _unit(ENERGY_UNITS, energy_unit, "energy_unit")
    x, y, plane_z = _recorded_planes(data, threshold)
    e = _energy_from_momentum(_require_momentum(data, "ROOT"), energy) / e_scale
    event, plane = np.nonzero(np.isfinite(x))
    with uproot.recreate(path) as f:
        f[tree] = {
            "eventID": event.astype(np.int64),
            "x": x[event, plane] / scale,
            "y": y[event, plane] / scale,
            "z": plane_z[plane] / scale,
            "energy": e[event],
        }
    return path


def _cluster_planes(z: np.ndarray, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """Group hit heights into planes: ``(plane index per hit, plane heights)``."""
    order = np.argsort(z)
    zs = z[order]
    new_plane = np.concatenate([[True], np.diff(zs) > tolerance])
    label_sorted = np.cumsum(new_plane) - 1
    labels = np.empty_like(label_sorted)
    labels[order] = label_sorted
    heights = np.array([np.median(zs[label_sorted == k]) for k in range(int(label_sorted[-1]) + 1)])
    return labels, heights


def _root_arrays(f: Any, tree: str, path: Path) -> dict[str, np.ndarray]:
    """The branches of :data:`ROOT_BRANCHES` of ``tree`` in the open file ``f``, checked."""
    if tree not in f:
        raise HitsFileError(f"{path}: no tree {tree!r}; the file holds {list(f.keys())}")
    t = f[tree]
    names = set(t.keys())
    for branch in ROOT_BRANCHES:
        if branch not in names:
            raise HitsFileError(
                f"{path}: tree {tree!r} has no branch {branch!r}; expected {list(ROOT_BRANCHES)}, found {sorted(names)}"
            )
    arrays = {}
    for branch in ROOT_BRANCHES:
        a = np.asarray(t[branch].array(library="np"))
        if a.ndim != 1 or a.dtype == object:
            raise HitsFileError(f"{path}: branch {branch!r} must hold one number per entry (one entry per hit)")
        arrays[branch] = a
    return arrays


def read_root(
    path: str | Path,
    resolution: float | Sequence[float],
    z_split: float,
    tree: str = "hits",
    length_unit: str = "mm",
    energy_unit: str = "MeV",
    energy: str = "kinetic",
    z_tolerance: float = 1e-4,
    dtype: torch.dtype = torch.float32,
) -> HitsData:
    """Read a ROOT TTree of hits (see the module docstring); arguments as :func:`read_csv`,
    plus the ``tree`` name."""
    import uproot

    path = as_path(path, "hits file")
    scale, e_scale = _unit(LENGTH_UNITS, length_unit, "length_unit"), _unit(ENERGY_UNITS, energy_unit, "energy_unit")
    try:
        f = uproot.open(path)
    except Exception as exc:  # uproot raises several types for non-ROOT input
        raise HitsFileError(f"{path}: not a readable ROOT file ({exc})") from exc
    try:
        with f:
            arrays = _root_arrays(f, tree, path)
    except HitsFileError:
        raise
    except Exception as exc:  # uproot's errors for a truncated or damaged file
        raise HitsFileError(f"{path}: cannot be read; the file is truncated or damaged ({exc})") from None
    if arrays["x"].size == 0:
        raise HitsFileError(f"{path}: tree {tree!r} has no entries")
    for branch in ("x", "y", "z", "energy"):
        bad = ~np.isfinite(arrays[branch].astype(np.float64))
        if bad.any():
            raise HitsFileError(f"{path}: branch {branch!r}, entry {int(np.argmax(bad))}: value is not finite")
    for branch in ("x", "y", "z"):
        values = arrays[branch].astype(np.float64) * scale
        _check_range(values, MAX_COORDINATE, _where(f"{path}: branch {branch!r}, entry {{}}"))
    events, muon = np.unique(arrays["eventID"], return_inverse=True)
    plane, plane_z = _cluster_planes(arrays["z"].astype(np.float64) * scale, z_tolerance)
    n_mu, n_planes = events.size, plane_z.size
    slot = muon * n_planes + plane
    counts = np.bincount(slot, minlength=n_mu * n_planes)
    if counts.max() > 1:
        k = int(np.argmax(counts))
        raise HitsFileError(
            f"{path}: eventID {events[k // n_planes]} has {counts[k]} hits on the plane at "
            f"z = {plane_z[k % n_planes]:.6g} m; expected at most one hit per plane per muon"
        )
    x = np.full((n_mu, n_planes), np.nan)
    y = np.full((n_mu, n_planes), np.nan)
    x[muon, plane] = arrays["x"] * scale
    y[muon, plane] = arrays["y"] * scale
    # The muon's energy is that of its highest hit (where it entered the detector).
    top = np.full(n_mu, -1)
    height = plane_z[plane]
    order = np.argsort(height, kind="stable")  # later (higher) hits overwrite earlier ones
    top[muon[order]] = order
    p = _momentum_from_energy(arrays["energy"][top].astype(np.float64) * e_scale, energy, f"{path}: eventID index")
    above, below = _split_planes(x, y, plane_z, resolution, z_split, str(path), dtype)
    return HitsData(above=above, below=below, momentum=torch.as_tensor(p, dtype=dtype))


# ---------------------------------------------------------------------------------------- HDF5

_SIDE_FIELDS = {"xy": 3, "z": 1, "resolution": 1, "weight": 2}


def write_hdf5(path: str | Path, data: HitsData) -> Path:
    """Write hits losslessly: groups ``above``/``below`` with ``xy, z, resolution, weight`` and
    ``true_xy`` when known, and ``momentum`` when known (SI units: m, GeV/c)."""
    path = Path(path)
    with h5py.File(path, "w") as f:
        f.attrs["format"] = HDF5_FORMAT
        f.attrs["version"] = HDF5_VERSION
        f.attrs["length_unit"] = "m"
        f.attrs["momentum_unit"] = "GeV/c"
        for name, hits in (("above", data.above), ("below", data.below)):
            g = f.create_group(name)
            for field in (*_SIDE_FIELDS, "true_xy"):
                value = getattr(hits, field)
                if value is not None:
                    g.create_dataset(field, data=value.detach().cpu().numpy())
        if data.momentum is not None:
            f.create_dataset("momentum", data=data.momentum.detach().cpu().numpy())
    return path


def _dataset(f: h5py.File, key: str, ndim: int, path: Path, shape: str) -> np.ndarray:
    if key not in f:
        raise HitsFileError(f"{path}: missing dataset {key!r}; expected shape {shape}")
    value = np.asarray(f[key][()])
    if value.ndim != ndim or not np.issubdtype(value.dtype, np.number):
        raise HitsFileError(
            f"{path}: dataset {key!r} has shape {value.shape} ({value.dtype}); expected numbers, {shape}"
        )
    return value


def _check_side(fields: dict[str, np.ndarray], name: str, path: Path) -> None:
    """Refuse non-finite or implausible values in one side's datasets."""
    for key in ("xy", "z"):
        v = fields[key].astype(np.float64)
        where = _where(f"{path}: dataset '{name}/{key}' at index " + ", ".join(["{}"] * v.ndim))
        if np.isnan(v).any():
            raise HitsFileError(f"{where(_first(np.isnan(v)))} is NaN; hits need finite coordinates")
        _check_range(v, MAX_COORDINATE, where)
    for key, allowed in (("resolution", f"in (0, {MAX_COORDINATE:g}] m"), ("weight", "in [0, 1]")):
        v = fields[key].astype(np.float64)
        ok = (v > 0) & (v <= MAX_COORDINATE) if key == "resolution" else (v >= 0) & (v <= 1)
        if not ok.all():
            i = _first(~ok)
            raise HitsFileError(
                f"{path}: dataset '{name}/{key}' at index {i} = {v[i]:.6g}; must be finite and {allowed}"
            )


def _first(mask: np.ndarray) -> tuple[int, ...]:
    """Index of the first true element of ``mask``."""
    return tuple(int(k) for k in np.unravel_index(int(np.argmax(mask)), mask.shape))


def read_hdf5(path: str | Path, dtype: torch.dtype = torch.float32) -> HitsData:
    """Read hits written by :func:`write_hdf5`; refuses non-finite or implausible values
    (coordinates beyond :data:`MAX_COORDINATE`, resolutions <= 0, hit weights outside [0, 1],
    momenta <= 0), naming the dataset and the index."""
    path = as_path(path, "hits file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise HitsFileError(f"{path}: not a readable HDF5 file ({exc})") from exc
    shapes = {"xy": "(panel, mu, 2)", "z": "(panel,)", "resolution": "(panel,)", "weight": "(panel, mu)"}
    with f:
        if f.attrs.get("format") != HDF5_FORMAT:
            raise HitsFileError(f"{path}: attribute 'format' is {f.attrs.get('format')!r}; expected {HDF5_FORMAT!r}")
        sides = []
        n_mu = None
        for name in ("above", "below"):
            fields = {k: _dataset(f, f"{name}/{k}", nd, path, shapes[k]) for k, nd in _SIDE_FIELDS.items()}
            n_panel, mu = fields["xy"].shape[:2]
            expect = {"xy": (n_panel, mu, 2), "z": (n_panel,), "resolution": (n_panel,), "weight": (n_panel, mu)}
            for k, shape in expect.items():
                if fields[k].shape != shape:
                    raise HitsFileError(f"{path}: dataset '{name}/{k}' has shape {fields[k].shape}; expected {shape}")
            if n_mu is not None and mu != n_mu:
                raise HitsFileError(f"{path}: '{name}' holds {mu} muons, 'above' holds {n_mu}")
            n_mu = mu
            _check_side(fields, name, path)
            true_xy = None
            if f"{name}/true_xy" in f:
                true_xy = _dataset(f, f"{name}/true_xy", 3, path, "(panel, mu, 2)")
                if true_xy.shape != expect["xy"]:
                    raise HitsFileError(
                        f"{path}: dataset '{name}/true_xy' has shape {true_xy.shape}; expected {expect['xy']}"
                    )
                where = _where(f"{path}: dataset '{name}/true_xy' at index {{}}, {{}}, {{}}")
                if np.isnan(true_xy).any():
                    raise HitsFileError(
                        f"{where(_first(np.isnan(true_xy)))} is NaN; the true crossing points (optional: leave the "
                        "dataset out when unknown) need finite coordinates"
                    )
                _check_range(true_xy.astype(np.float64), MAX_COORDINATE, where)
            sides.append(
                Hits(
                    xy=torch.as_tensor(fields["xy"], dtype=dtype),
                    z=torch.as_tensor(fields["z"], dtype=dtype),
                    resolution=torch.as_tensor(fields["resolution"], dtype=dtype),
                    weight=torch.as_tensor(fields["weight"], dtype=dtype),
                    true_xy=None if true_xy is None else torch.as_tensor(true_xy, dtype=dtype),
                )
            )
        momentum = None
        if "momentum" in f:
            p = _dataset(f, "momentum", 1, path, "(mu,)")
            if p.shape != (n_mu,):
                raise HitsFileError(f"{path}: dataset 'momentum' has shape {p.shape}; expected ({n_mu},)")
            bad = ~np.isfinite(p) | (p <= 0) | (p > MAX_ENERGY)
            if bad.any():
                i = int(np.argmax(bad))
                raise HitsFileError(
                    f"{path}: dataset 'momentum'[{i}] = {p[i]:.6g} GeV/c; need a finite value in (0, {MAX_ENERGY:g}]"
                )
            momentum = torch.as_tensor(p, dtype=dtype)
    return HitsData(above=sides[0], below=sides[1], momentum=momentum)


def hits_from_simulation(result: SimulationResult) -> HitsData:
    """:class:`HitsData` of a simulation, with the muons' momentum at the top of the volume."""
    return HitsData(above=result.hits_above, below=result.hits_below, momentum=result.muons_in.momentum)
