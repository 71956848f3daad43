"""The reference the docs generate from the code: every configuration field, command-line option
and public name must describe itself, so the generated reference has no blank entries."""

from __future__ import annotations

import argparse
import inspect

import pytest
from pydantic import BaseModel, Field

import mutomo
from mutomo.app.cli import build_parser
from mutomo.config.reference import config_fields, value_forms


def test_every_configuration_field_has_a_description() -> None:
    rows = config_fields() + [row for rows in value_forms().values() for row in rows]
    missing = [f"{row.key} ({row.model.__name__}.{row.name})" for row in rows if not (row.description or "").strip()]
    assert not missing, f"configuration fields without a description (add Field(description=...)): {missing}"
    assert len(rows) > 100  # the walk reached the nested tables (scene.objects[], designs.NAME, ...)


def test_the_check_fails_on_a_field_without_description() -> None:
    class Inner(BaseModel):
        documented: int = Field(1, ge=0, description="a number")
        bare: float = 0.5

    class Outer(BaseModel):
        inner: Inner = Field(Inner(), description="a table")
        items: list[Inner] = Field([], description="tables")

    rows = {row.key: row for row in config_fields(Outer)}
    assert rows["inner.documented"].allowed == ">= 0" and rows["inner.documented"].default == "1"
    assert rows["inner.bare"].description is None and rows["items[].bare"].description is None


def test_reference_rows_read_the_schema() -> None:
    rows = {row.key: row for row in config_fields()}
    assert rows["training.epochs"].allowed == ">= 1, <= 100000"
    assert rows["task.kind"].default == "required"
    assert rows["designs.NAME.panels[].span"].allowed == "> 0"
    assert rows["scene.objects[].role"].value_type == '"target" | "other"'


def _actions(parser: argparse.ArgumentParser, path: str = "mutomo") -> list[tuple[str, argparse.Action]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.extend(_actions(sub, f"{path} {name}"))
        elif not isinstance(action, argparse._HelpAction):
            found.append((path, action))
    return found


def test_every_command_line_option_has_help() -> None:
    parser = build_parser()
    actions = _actions(parser)
    missing = [f"{path} {a.option_strings or a.dest}" for path, a in actions if not (a.help or "").strip()]
    assert not missing, f"command-line options without help text: {missing}"
    assert len(actions) > 30
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {c.dest: c.help for c in subparsers._choices_actions}
    assert set(helps) == set(subparsers.choices) and all(helps.values()), "every command needs a help line"


def test_the_help_check_fails_on_an_option_without_help() -> None:
    parser = argparse.ArgumentParser(prog="p")
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="runs")
    run.add_argument("--documented", help="a documented option")
    run.add_argument("--bare")
    missing = [a.dest for _, a in _actions(parser) if not (a.help or "").strip()]
    assert missing == ["bare"]


def _own_docstring(obj: object) -> str:
    """An object's own docstring: not inherited, and not the signature a dataclass writes in."""
    doc = (obj.__dict__.get("__doc__") if inspect.isclass(obj) else getattr(obj, "__doc__", None)) or ""
    name = getattr(obj, "__name__", "")
    return "" if inspect.isclass(obj) and doc.startswith(f"{name}(") else doc.strip()


@pytest.mark.parametrize("name", mutomo.__all__)
def test_every_public_name_has_a_docstring(name: str) -> None:
    obj = getattr(mutomo, name)
    if inspect.isclass(obj) or inspect.isfunction(obj):
        assert _own_docstring(obj), f"mutomo.{name} has no docstring of its own"
    else:  # a registry of the choices a configuration names: each entry describes itself
        assert isinstance(obj, dict) and obj, f"mutomo.{name}: not a class, function or registry"
        for key, entry in obj.items():
            text = _own_docstring(entry) if inspect.isclass(entry) else getattr(entry, "summary", "")
            assert text, f"mutomo.{name}[{key!r}] has no description"


def test_the_docstring_check_fails_without_one() -> None:
    from dataclasses import dataclass

    @dataclass
    class Bare:
        x: int = 0

    def bare() -> None:
        pass

    assert not _own_docstring(Bare) and not _own_docstring(bare)
    assert _own_docstring(mutomo.simulate)
