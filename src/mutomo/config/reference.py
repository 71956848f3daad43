"""The configuration reference, read from the schema itself (what ``make docs`` renders).

:func:`config_fields` walks :class:`~mutomo.config.schema.RunConfig` and every table below it and
returns one :class:`FieldRow` per key, with its dotted path as written in a file
(``training.epochs``, ``scene.objects[].size``, ``designs.NAME.xy``), its type, default, allowed
range and the description the model gives it. Nothing here is written by hand, so the reference
cannot drift from what :func:`~mutomo.config.schema.load_config` accepts; a test fails when a field
has no description.

Example:
    >>> rows = {row.key: row for row in config_fields()}
    >>> rows["training.epochs"].default, rows["training.epochs"].allowed
    ('200', '>= 1, <= 100000')
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from mutomo.config.schema import RunConfig
from mutomo.scenes.spec import Choice, Uniform, UniformVec

VALUE_FORMS: dict[type[BaseModel], str] = {
    Uniform: "{min, max}",
    Choice: "{values}",
    UniformVec: "{min = [x, y, z], max = [x, y, z]}",
}
"""Models that are a way of writing one (drawn) value rather than a table of their own."""

_BOUNDS = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))


@dataclass(frozen=True)
class FieldRow:
    """One key of the configuration file.

    Attributes:
        key: dotted path as written in a file; ``[]`` marks an array of tables, ``NAME`` a key the
            user chooses.
        section: the top-level table the key belongs to (``task``, ``scene``, ...).
        value_type: the value's type in words (``float``, ``list of float``, ``"a" | "b"``, ``table``).
        default: the default as written in a file, or ``required``.
        allowed: the range the schema enforces on the value (``> 0, <= 1``), empty if none.
        description: the model's own description of the field (``None`` if it has none).
        model: the pydantic model that declares the field, and ``name`` its attribute there.
    """

    key: str
    section: str
    value_type: str
    default: str
    allowed: str
    description: str | None
    model: type[BaseModel]
    name: str


def _models_in(annotation: Any) -> Iterator[tuple[type[BaseModel], str]]:
    """Sub-tables of an annotation, each with the suffix its keys take (``""``, ``[]``, ``.NAME``)."""
    origin = get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if annotation not in VALUE_FORMS:
            yield annotation, ""
    elif origin is list:
        for model, suffix in _models_in(get_args(annotation)[0]):
            yield model, "[]" + suffix
    elif origin is dict:
        for model, suffix in _models_in(get_args(annotation)[1]):
            yield model, ".NAME" + suffix
    elif origin in (typing.Union, types.UnionType, typing.Annotated):
        for arg in get_args(annotation)[: 1 if origin is typing.Annotated else None]:
            yield from _models_in(arg)


def _bounds(metadata: list[Any]) -> list[str]:
    words = []
    for item in metadata:
        for name, symbol in _BOUNDS:
            value = getattr(item, name, None)
            if value is not None:
                words.append(f"{symbol} {value:g}" if isinstance(value, float) else f"{symbol} {value}")
        if getattr(item, "min_length", None) is not None:
            words.append(f"length >= {item.min_length}")
        if getattr(item, "max_length", None) is not None:
            words.append(f"length <= {item.max_length}")
        if isinstance(item, FieldInfo):
            words.extend(_bounds(item.metadata))
    return words


def _item_bounds(annotation: Any) -> list[str]:
    """Bounds on the items of a list, tuple or table annotation, or on the arms of a union."""
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        args = get_args(annotation)
        return _bounds(list(args[1:])) + _item_bounds(args[0])
    if origin in (typing.Union, types.UnionType, list, tuple, dict):
        words = [w for arg in get_args(annotation) for w in _item_bounds(arg)]
        if origin in (list, tuple, dict):
            words = [w if w.startswith("each ") else f"each {w}" for w in words]
        return list(dict.fromkeys(words))
    return []


def type_name(annotation: Any) -> str:
    """An annotation in words, as a configuration's author meets it."""
    origin = get_origin(annotation)
    args = get_args(annotation)
    if annotation is type(None):
        return "none"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return VALUE_FORMS.get(annotation, "table")
    if isinstance(annotation, type):
        return annotation.__name__
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is Literal:
        return " | ".join(f'"{a}"' if isinstance(a, str) else str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in args if a is not type(None))
    if origin is list:
        return f"list of {type_name(args[0])}"
    if origin is tuple:
        return "[" + ", ".join(type_name(a) for a in args) + "]"
    if origin is dict:
        return f"table of {type_name(args[0])} -> {type_name(args[1])}"
    return str(annotation)


def _value(value: Any) -> str:
    if isinstance(value, BaseModel):
        return "(its own defaults)"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    if info.default_factory is not None:
        return _value(info.default_factory())  # type: ignore[call-arg]
    if info.default is None:
        return "none"
    return _value(info.default) if info.default is not PydanticUndefined else ""


def config_fields(model: type[BaseModel] = RunConfig, prefix: str = "") -> list[FieldRow]:
    """Every key of a configuration table and of the tables below it, in declaration order.

    Args:
        model: the table's pydantic model (default: the whole file, :class:`RunConfig`).
        prefix: dotted path of the table in the file (``""`` for the top level).

    Returns:
        one row per key; a key holding a table comes before that table's own keys.
    """
    rows = []
    for name, info in model.model_fields.items():
        key = f"{prefix}{name}"
        allowed = _bounds(info.metadata) + _item_bounds(info.annotation)
        rows.append(
            FieldRow(
                key=key,
                section=key.split(".")[0].split("[")[0],
                value_type=type_name(info.annotation),
                default=_default(info),
                allowed=", ".join(dict.fromkeys(allowed)),
                description=info.description,
                model=model,
                name=name,
            )
        )
        for sub, suffix in _models_in(info.annotation):
            rows.extend(config_fields(sub, f"{key}{suffix}."))
    return rows


def value_forms() -> dict[str, list[FieldRow]]:
    """The keys of each form a drawn value takes (``{min, max}``, ``{values}``), by form."""
    return {written: config_fields(form) for form, written in VALUE_FORMS.items()}
