"""Export of a detector and a passive volume as GDML for Geant4, and the reader that checks it.

:func:`write_gdml` writes, through the ``pyg4ometry`` library (an optional dependency:
``pip install "mutomo[export]"``):

* a world box of Geant4's air (``G4_AIR``) centred on the origin, so that every position in the
  file is mutomo's own coordinate (z up), enclosing panels and volume with a margin;
* every panel as a thin box (its span in x and y, ``panel_thickness`` in z) at its centre, of
  :data:`PANEL_MATERIAL`, named ``panel_above_0``, ``panel_above_1``, ..., ``panel_below_0``, ...
  (logical and physical volume alike; the physical volume's copy number counts the panels above
  then below from 0), with the auxiliary ``SensDet`` that Geant4's GDML reader hands to the user
  code which attaches sensitive detectors, and the auxiliaries ``Resolution`` (the panel's
  position resolution, one standard deviation per axis, in mm: ``auxunit="mm"``) and
  ``Efficiency`` (the probability that it records a muon crossing it) that a Geant4 user's
  digitisation needs to treat the hits as mutomo does;
* the passive volume as boxes of its materials: voxels of one material are merged greedily into
  larger boxes (along x, then y, then z), boxes of one size and material share a logical volume,
  and voxels of air are left out (the world is air);
* every material of the volume by composition (elements with mass fractions, and the density),
  named after the mutomo material, so a user-defined material exports as well as a built-in one.

Units: mutomo works in metres and kg/m^3; the file holds lengths in mm and densities in g/cm^3
(GDML's defaults), element molar masses in g/mol.

mutomo's simulation treats panels as massless; in Geant4 a 1 mm scintillator panel is
2.4e-3 radiation lengths, a scattering angle well below the panels' resolution at muon momenta
above a few hundred MeV.

:func:`read_gdml` reads a file back with pyg4ometry's GDML reader and :func:`compare_gdml` lists
every difference between it and the detector and volume it should hold.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mutomo.detector import Detector
from mutomo.errors import MutomoError
from mutomo.io.files import PathLike, writable_file
from mutomo.materials import ELEMENTS, MATERIALS, Material
from mutomo.volume.grid import PassiveVolume

PANEL_MATERIAL = "G4_PLASTIC_SC_VINYLTOLUENE"
"""Default panel material: large-area muon trackers (square metres) are plastic scintillator
(strips or fibres) far more often than silicon, which is too costly at that size; it is Geant4's
NIST polyvinyltoluene (BC-408 and alike), 1.032 g/cm^3, X0 = 42.5 cm."""
SENSITIVE_DETECTOR = "PanelSD"
"""Default value of every panel's ``SensDet`` auxiliary: the name of the sensitive detector that
the Geant4 application attaches (one for all panels; the hit's volume name or copy number tells
which panel it is)."""
WORLD_MATERIAL = "G4_AIR"
MM = 1000.0  # mm per m
G_CM3 = 1000.0  # kg/m^3 per g/cm^3
INSTALL = 'pip install "mutomo[export]"  (or: pip install pyg4ometry)'


def require_pyg4ometry() -> ModuleType:
    """The ``pyg4ometry`` module; raises :class:`MutomoError` with the install command if absent."""
    try:
        import pyg4ometry
    except ImportError as exc:
        raise MutomoError(
            f"GDML export needs the package pyg4ometry, which is not installed ({exc}); {INSTALL}"
        ) from None
    return pyg4ometry


@contextmanager
def _no_meshing(pyg4: ModuleType) -> Iterator[None]:
    """Turn pyg4ometry's meshing of every logical volume (for its viewer) off while building."""
    previous = pyg4.config.doMeshing
    pyg4.config.doMeshing = False
    try:
        yield
    finally:
        pyg4.config.doMeshing = previous


def _mm(value: float) -> float:
    """Metres to millimetres, rounded to 1e-9 mm so that 0.1 m is written as 100, not 100.00000000000001."""
    return round(value * MM, 9)


# ----------------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class PanelBox:
    """A panel as a box.

    Attributes:
        name: ``panel_above_I`` or ``panel_below_I``.
        copy_number: index among all panels, those above first.
        centre: (x, y, z) of the centre (m).
        size: full widths (x, y, z) (m); z is the panel thickness.
        resolution: position resolution (m), one standard deviation per axis.
        efficiency: probability that the panel records a muon crossing it.
    """

    name: str
    copy_number: int
    centre: tuple[float, float, float]
    size: tuple[float, float, float]
    resolution: float = 1e-4
    efficiency: float = 0.9


def _decimal(values: Tensor) -> list[list[float]]:
    """``(n, k)`` values as floats; single precision ones as the shortest decimals that round to
    them (0.4 rather than 0.4000000059604645), so that the file reads as the design was written."""
    rows = values.detach().cpu().tolist()
    if values.dtype != torch.float32:
        return rows
    return [[float(str(np.float32(v))) for v in row] for row in rows]


def panel_boxes(detector: Detector, thickness: float) -> list[PanelBox]:
    """The panels of ``detector`` (one detector, no design axes) as boxes ``thickness`` (m) thick."""
    if detector.design_shape:
        raise MutomoError(f"GDML export takes one detector; this one has design axes {detector.design_shape}")
    boxes: list[PanelBox] = []
    for side in ("above", "below"):
        p = detector.panel_parameters(side)
        centres, spans = _decimal(p["centre"]), _decimal(p["span"])
        (res,), (eff,) = _decimal(p["resolution"][None]), _decimal(p["efficiency"][None])
        for i, (c, s) in enumerate(zip(centres, spans, strict=True)):
            boxes.append(
                PanelBox(f"panel_{side}_{i}", len(boxes), (c[0], c[1], c[2]), (s[0], s[1], thickness), res[i], eff[i])
            )
    return boxes


@dataclass(frozen=True)
class VoxelBox:
    """Voxels of one material merged into a box: ``material_index[low[0]:low[0]+count[0], ...]``."""

    material: int
    low: tuple[int, int, int]
    count: tuple[int, int, int]


def merge_voxels(material_index: np.ndarray, skip: Sequence[int] = ()) -> list[VoxelBox]:
    """Cover the voxels of ``material_index`` ``(nx, ny, nz)`` by boxes of one material each.

    Greedy: from the first voxel not yet covered (x fastest, then y, then z), grow a run along x,
    then grow the run into a rectangle along y, then the rectangle into a box along z, as far as
    the voxels are of the same material and not yet covered. Voxels of a material in ``skip`` are
    left out. Every other voxel is in exactly one box.
    """
    index = np.asarray(material_index)
    nx, ny, nz = index.shape
    done = np.isin(index, list(skip)) if skip else np.zeros(index.shape, dtype=bool)
    boxes: list[VoxelBox] = []
    for k in range(nz):
        for j in range(ny):
            for i in range(nx):
                if done[i, j, k]:
                    continue
                m = index[i, j, k]

                def free(block: np.ndarray, taken: np.ndarray, m: Any = m) -> bool:
                    return bool(np.all(block == m) and not np.any(taken))

                i1 = i + 1
                while i1 < nx and free(index[i1, j, k], done[i1, j, k]):
                    i1 += 1
                j1 = j + 1
                while j1 < ny and free(index[i:i1, j1, k], done[i:i1, j1, k]):
                    j1 += 1
                k1 = k + 1
                while k1 < nz and free(index[i:i1, j:j1, k1], done[i:i1, j:j1, k1]):
                    k1 += 1
                done[i:i1, j:j1, k:k1] = True
                boxes.append(VoxelBox(int(m), (i, j, k), (i1 - i, j1 - j, k1 - k)))
    return boxes


def _is_air(material: Material) -> bool:
    return material == MATERIALS["air"]


def _check_placement(panels: list[PanelBox], volume: PassiveVolume) -> None:
    """Refuse panel boxes that overlap each other or the volume's box."""
    vol_low = (volume.x_range[0], volume.y_range[0], volume.z_low)
    vol_high = (volume.x_range[1], volume.y_range[1], volume.z_high)

    def overlap(c: PanelBox, low: Sequence[float], high: Sequence[float]) -> bool:
        return all(c.centre[a] - c.size[a] / 2 < high[a] and c.centre[a] + c.size[a] / 2 > low[a] for a in range(3))

    for p in panels:
        inside = vol_low[2] <= p.centre[2] <= vol_high[2] and overlap(p, vol_low, vol_high)
        if inside:
            raise MutomoError(
                f"{p.name} (z = {p.centre[2]:.6g} m) lies inside the scanned volume (z in [{volume.z_low:.6g}, "
                f"{volume.z_high:.6g}] m): the panel overlaps the volume whatever its thickness; this design was "
                "not made for this scene (export a design of the run, or a volume of the design's own scene)"
            )
        if overlap(p, vol_low, vol_high):
            raise MutomoError(
                f"{p.name} (z = {p.centre[2]:.6g} m, {p.size[2]:.3g} m thick) overlaps the volume "
                f"(z in [{volume.z_low:.6g}, {volume.z_high:.6g}] m); give a thinner panel_thickness"
            )
    for n, p in enumerate(panels):
        for q in panels[:n]:
            low = [q.centre[a] - q.size[a] / 2 for a in range(3)]
            high = [q.centre[a] + q.size[a] / 2 for a in range(3)]
            if overlap(p, low, high):
                raise MutomoError(f"{p.name} and {q.name} overlap as boxes {p.size[2]:.3g} m thick; give a thinner one")


def _world_half_size(panels: list[PanelBox], volume: PassiveVolume, margin: float) -> tuple[float, float, float]:
    """Half widths (m) of a world box centred on the origin that holds everything with ``margin``."""
    extent = [
        max(abs(volume.x_range[0]), abs(volume.x_range[1])),
        max(abs(volume.y_range[0]), abs(volume.y_range[1])),
        max(abs(volume.z_low), abs(volume.z_high)),
    ]
    for p in panels:
        for a in range(3):
            extent[a] = max(extent[a], abs(p.centre[a]) + p.size[a] / 2)
    return (extent[0] + margin, extent[1] + margin, extent[2] + margin)


# ----------------------------------------------------------------------------------- writing


def _g4_material(pyg4: ModuleType, material: Material, registry: Any, elements: dict[str, Any]) -> Any:
    """``material`` as a pyg4ometry compound of its elements by mass fraction (normalised to sum
    to 1, as Geant4 requires), density in g/cm^3; its elements are made once in ``elements``."""
    g4 = pyg4.geant4
    if material.name in g4.getNistMaterialList() or material.name.startswith("element_"):
        raise MutomoError(
            f"material {material.name!r}: its name is reserved in the GDML file (a Geant4 NIST name or "
            "an element's); rename the material"
        )
    total = sum(material.composition.values())
    compound = g4.MaterialCompound(material.name, material.density / G_CM3, len(material.composition), registry)
    for symbol, fraction in sorted(material.composition.items()):
        if symbol not in elements:
            z, a = ELEMENTS[symbol]
            elements[symbol] = g4.ElementSimple(f"element_{symbol}", symbol, z, a, registry)
        compound.add_element_massfraction(elements[symbol], fraction / total)
    return compound


def _box_volume(pyg4: ModuleType, name: str, size: Sequence[float], material: Any, registry: Any) -> Any:
    """A logical volume ``name`` of a box of full widths ``size`` (m) and ``material``."""
    g4 = pyg4.geant4
    solid = g4.solid.Box(f"{name}_box", *(_mm(s) for s in size), registry, lunit="mm")
    return g4.LogicalVolume(solid, material, name, registry)


def _place(pyg4: ModuleType, lv: Any, name: str, centre: Sequence[float], mother: Any, registry: Any, copy: int) -> Any:
    """Place ``lv`` at ``centre`` (m) in ``mother``, unrotated."""
    position = [_mm(c) for c in centre]
    return pyg4.geant4.PhysicalVolume([0, 0, 0], position, lv, name, mother, registry, copyNumber=copy)


def write_gdml(
    path: PathLike,
    detector: Detector,
    volume: PassiveVolume,
    panel_thickness: float = 1e-3,
    panel_material: str = PANEL_MATERIAL,
    sensitive_detector: str = SENSITIVE_DETECTOR,
    margin: float = 0.1,
) -> Path:
    """Write ``detector`` and ``volume`` as the GDML file ``path`` (see the module docstring).

    Args:
        path: The file to write (its folder is created).
        detector: One detector (no design axes); positions and spans in m.
        volume: One passive volume (no batch axis).
        panel_thickness: Thickness (m) of the panel boxes, > 0.
        panel_material: Geant4 NIST material of the panels (e.g. ``"G4_Si"``).
        sensitive_detector: Value of every panel's ``SensDet`` auxiliary.
        margin: Air (m) between the outermost panel or voxel and the world's faces, > 0.

    Returns:
        The path written.

    Raises:
        MutomoError: pyg4ometry missing (with the install command), an unwritable path, a
            batch of detectors or volumes, a non-positive thickness or margin, an unknown panel
            material, panels overlapping each other or the volume.
    """
    path = writable_file(path, "GDML file")
    if not (math.isfinite(panel_thickness) and panel_thickness > 0):
        raise MutomoError(f"panel_thickness must be a finite number > 0 (m); got {panel_thickness!r}")
    if not (math.isfinite(margin) and margin > 0):
        raise MutomoError(f"margin must be a finite number > 0 (m); got {margin!r}")
    if volume.batch_shape:
        raise MutomoError(f"GDML export takes one volume; this one has a batch axis {volume.batch_shape}")
    pyg4 = require_pyg4ometry()
    g4 = pyg4.geant4
    if panel_material not in g4.getNistMaterialList():
        raise MutomoError(f"panel material {panel_material!r} is not a Geant4 NIST material (e.g. G4_Si, G4_AIR)")
    panels = panel_boxes(detector, panel_thickness)
    _check_placement(panels, volume)
    with _no_meshing(pyg4):
        registry = g4.Registry()
        half = _world_half_size(panels, volume, margin)
        world = _box_volume(pyg4, "world", [2 * h for h in half], WORLD_MATERIAL, registry)
        registry.setWorld(world.name)
        panel_mat = g4.MaterialPredefined(panel_material, registry)
        for p in panels:
            lv = _box_volume(pyg4, p.name, p.size, panel_mat, registry)
            aux = pyg4.gdml.Defines.Auxiliary
            lv.addAuxiliaryInfo(aux("SensDet", sensitive_detector, registry, addRegistry=False))
            lv.addAuxiliaryInfo(aux("Resolution", repr(p.resolution * 1e3), registry, unit="mm", addRegistry=False))
            lv.addAuxiliaryInfo(aux("Efficiency", repr(p.efficiency), registry, addRegistry=False))
            _place(pyg4, lv, p.name, p.centre, world, registry, p.copy_number)
        _write_volume(pyg4, volume, world, registry)
        writer = pyg4.gdml.Writer()
        writer.addDetector(registry)
        writer.write(str(path))
    return path


def _write_volume(pyg4: ModuleType, volume: PassiveVolume, world: Any, registry: Any) -> None:
    """Place the volume's voxels, merged into boxes, in ``world``; air voxels are left out."""
    index = volume.material_index.detach().cpu().numpy()
    skip = [i for i, m in enumerate(volume.materials) if _is_air(m)]
    boxes = merge_voxels(index, skip)
    elements: dict[str, Any] = {}
    materials: dict[int, Any] = {}
    volumes: dict[tuple[int, int, int, int], Any] = {}
    d = volume.voxel_size
    for n, box in enumerate(boxes):
        material = volume.materials[box.material]
        if box.material not in materials:
            materials[box.material] = _g4_material(pyg4, material, registry, elements)
        key = (box.material, *box.count)
        if key not in volumes:
            size = [box.count[a] * d[a] for a in range(3)]
            name = f"{material.name}_block_{box.count[0]}_{box.count[1]}_{box.count[2]}"
            volumes[key] = _box_volume(pyg4, name, size, materials[box.material], registry)
        centre = [volume.origin[a] + (box.low[a] + box.count[a] / 2) * d[a] for a in range(3)]
        _place(pyg4, volumes[key], f"{material.name}_{n}", centre, world, registry, n)


# ----------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class GdmlPanel:
    """A panel read back: ``centre`` and ``size`` in m, its material's name, ``SensDet`` value,
    and its ``Resolution`` (m) and ``Efficiency`` auxiliaries (``None`` when absent)."""

    centre: tuple[float, float, float]
    size: tuple[float, float, float]
    material: str
    sensitive_detector: str | None
    copy_number: int
    resolution: float | None = None
    efficiency: float | None = None


@dataclass(frozen=True)
class GdmlMaterial:
    """A material read back: ``density`` in kg/m^3, ``composition`` element symbol -> mass fraction."""

    density: float
    composition: dict[str, float]


@dataclass(frozen=True)
class GdmlContents:
    """What :func:`read_gdml` finds.

    Attributes:
        world_material: the world's material name.
        world_size: the world box's full widths (m).
        panels: panel name -> :class:`GdmlPanel` (every volume named ``panel_...``).
        materials: name -> :class:`GdmlMaterial` of every material defined by composition.
        material_volumes: material name -> summed volume (m^3) of the other boxes placed in the world.
        n_boxes: how many such boxes.
    """

    world_material: str
    world_size: tuple[float, float, float]
    panels: dict[str, GdmlPanel]
    materials: dict[str, GdmlMaterial]
    material_volumes: dict[str, float]
    n_boxes: int


def _box_size_m(solid: Any) -> tuple[float, float, float]:
    """Full widths (m) of a pyg4ometry box (its values are in its ``lunit``)."""
    scale = {"mm": 1e-3, "cm": 1e-2, "m": 1.0}[solid.lunit]
    return (float(solid.pX.eval()) * scale, float(solid.pY.eval()) * scale, float(solid.pZ.eval()) * scale)


def _position_m(pv: Any) -> tuple[float, float, float]:
    """Position (m) of a physical volume in its mother."""
    scale = {"mm": 1e-3, "cm": 1e-2, "m": 1.0}[pv.position.unit or "mm"]
    x, y, z = (float(v) * scale for v in pv.position.eval())
    return (x, y, z)


def read_gdml(path: PathLike) -> GdmlContents:
    """Read a file written by :func:`write_gdml` with pyg4ometry's GDML reader (units as there)."""
    pyg4 = require_pyg4ometry()
    with _no_meshing(pyg4):
        registry = pyg4.gdml.Reader(str(path)).getRegistry()
    world = registry.getWorldVolume()
    materials: dict[str, GdmlMaterial] = {}
    for name, mat in registry.materialDict.items():
        if getattr(mat, "type", None) == "composite":
            fractions = {el.symbol: float(f) for el, f, kind in mat.components if kind == "massfraction"}
            materials[name] = GdmlMaterial(float(mat.density) * G_CM3, fractions)
    panels: dict[str, GdmlPanel] = {}
    volumes: dict[str, float] = {}
    n_boxes = 0
    for pv in world.daughterVolumes:
        lv = pv.logicalVolume
        size = _box_size_m(lv.solid)
        if lv.name.startswith("panel_"):
            aux = {a.auxtype: a for a in lv.auxiliary}
            res, eff = aux.get("Resolution"), aux.get("Efficiency")
            panels[pv.name] = GdmlPanel(
                _position_m(pv),
                size,
                lv.material.name,
                aux["SensDet"].auxvalue if "SensDet" in aux else None,
                int(pv.copyNumber),
                None if res is None else float(res.auxvalue) * {"mm": 1e-3, "cm": 1e-2, "m": 1.0}[res.auxunit or "mm"],
                None if eff is None else float(eff.auxvalue),
            )
        else:
            volumes[lv.material.name] = volumes.get(lv.material.name, 0.0) + math.prod(size)
            n_boxes += 1
    return GdmlContents(world.material.name, _box_size_m(world.solid), panels, materials, volumes, n_boxes)


def compare_gdml(
    contents: GdmlContents,
    detector: Detector,
    volume: PassiveVolume,
    panel_thickness: float = 1e-3,
    panel_material: str = PANEL_MATERIAL,
    sensitive_detector: str = SENSITIVE_DETECTOR,
    rtol: float = 1e-9,
) -> list[str]:
    """Every difference between ``contents`` (from :func:`read_gdml`) and what :func:`write_gdml`
    should have written for ``detector`` and ``volume``; an empty list when the file is right.

    Checked: each panel's name, centre, size, material, ``SensDet``, ``Resolution`` and
    ``Efficiency`` values and that there are no
    others; each voxel material's density and element mass fractions; that each material's
    boxes add up to its voxel count times the voxel volume (air excepted); the world's material.
    """
    problems: list[str] = []

    def close(a: float, b: float, scale: float = 1.0) -> bool:
        return abs(a - b) <= rtol * max(abs(a), abs(b), scale)

    if contents.world_material != WORLD_MATERIAL:
        problems.append(f"world material {contents.world_material}, expected {WORLD_MATERIAL}")
    expected = {p.name: p for p in panel_boxes(detector, panel_thickness)}
    for name in sorted(set(contents.panels) ^ set(expected)):
        problems.append(f"panel {name}: {'missing' if name in expected else 'not in the detector'}")
    for name in sorted(set(contents.panels) & set(expected)):
        got, want = contents.panels[name], expected[name]
        if not all(close(g, w) for g, w in zip(got.centre, want.centre, strict=True)):
            problems.append(f"panel {name}: centre {got.centre} m, expected {want.centre} m")
        if not all(close(g, w) for g, w in zip(got.size, want.size, strict=True)):
            problems.append(f"panel {name}: size {got.size} m, expected {want.size} m")
        if got.material != panel_material:
            problems.append(f"panel {name}: material {got.material}, expected {panel_material}")
        if got.sensitive_detector != sensitive_detector:
            problems.append(f"panel {name}: SensDet {got.sensitive_detector!r}, expected {sensitive_detector!r}")
        if got.resolution is None or not close(got.resolution, want.resolution):
            problems.append(f"panel {name}: Resolution {got.resolution} m, expected {want.resolution} m")
        if got.efficiency is None or not close(got.efficiency, want.efficiency):
            problems.append(f"panel {name}: Efficiency {got.efficiency}, expected {want.efficiency}")
        if got.copy_number != want.copy_number:
            problems.append(f"panel {name}: copy number {got.copy_number}, expected {want.copy_number}")
    index = volume.material_index.detach().cpu().numpy()
    voxel = math.prod(volume.voxel_size)
    for i, m in enumerate(volume.materials):
        if _is_air(m):
            if m.name in contents.material_volumes:
                problems.append(f"material {m.name}: air voxels exported ({contents.material_volumes[m.name]} m^3)")
            continue
        want_volume = int((index == i).sum()) * voxel
        got_volume = contents.material_volumes.get(m.name, 0.0)
        if not close(got_volume, want_volume, voxel):
            problems.append(f"material {m.name}: boxes of {got_volume:.9g} m^3, expected {want_volume:.9g} m^3")
        if want_volume == 0:
            continue
        read = contents.materials.get(m.name)
        if read is None:
            problems.append(f"material {m.name}: not defined by composition")
            continue
        if not close(read.density, m.density):
            problems.append(f"material {m.name}: density {read.density} kg/m^3, expected {m.density}")
        total = sum(m.composition.values())
        fractions = {s: f / total for s, f in m.composition.items()}
        if set(read.composition) != set(fractions) or not all(
            close(read.composition[s], f) for s, f in fractions.items()
        ):
            problems.append(f"material {m.name}: mass fractions {read.composition}, expected {fractions}")
    extra = set(contents.material_volumes) - {m.name for m in volume.materials}
    problems += [f"material {name}: boxes placed but not in the volume" for name in sorted(extra)]
    return problems
