"""Scenes: a validated description of what may be inside the volume, and a seeded generator of
volumes from it (:class:`Scene`)."""

from mutomo.scenes.scene import PlacedObject, Scene, VolumeSample
from mutomo.scenes.spec import Background, Layer, MaterialSpec, ObjectSpec, SceneSpec

__all__ = ["Background", "Layer", "MaterialSpec", "ObjectSpec", "PlacedObject", "Scene", "SceneSpec", "VolumeSample"]
