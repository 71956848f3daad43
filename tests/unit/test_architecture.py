"""The package's shape, pinned so that it cannot rot (DESIGN.md: imports run downwards only).

Read from the source with :mod:`ast`, nothing imported: every ``mutomo`` import of every module
(at module level or inside a function) is an edge of the import graph.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "mutomo"

#: Floors from the bottom up: a module may import its own floor and the floors below it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("units", "errors", "runtime", "benchrecord"),
    ("materials",),
    ("muons",),
    ("volume",),
    ("detector",),
    ("simulate",),
    ("scenes",),
    ("reco",),
    ("tasks",),
    ("io",),
    ("design",),
    ("optimise",),
    ("studies",),
    ("config",),
    ("sweep",),
    ("plotting",),
    ("app", "__main__"),
)
RANK = {name: i for i, floor in enumerate(LAYERS) for name in floor}
#: No package may hold more than this share of the library's lines.
MAX_SHARE = 0.16


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _imports(name: str) -> list[tuple[str, bool]]:
    """``(imported module, inside a function)`` for every mutomo import of module ``name``; an
    import of a package's names counts as an import of its ``__init__``, ``from P import m`` of a
    submodule ``m`` as an import of ``P.m`` alone."""
    path = MODULES[name]
    tree = ast.parse(path.read_text())
    inner = {
        id(n)
        for f in ast.walk(tree)
        if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
        for n in ast.walk(f)
        if isinstance(n, (ast.Import, ast.ImportFrom))
    }
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "mutomo":
            submodules = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in MODULES]
            # names of the package itself, unless every name imported is a submodule of it
            targets = submodules if len(submodules) == len(node.names) else [node.module, *submodules]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names if a.name.split(".")[0] == "mutomo"]
        else:
            continue
        out += [(t, id(node) in inner) for t in targets if t in MODULES]
    return out


def _floor(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "<root>"


def test_every_package_has_a_floor():
    floors = {_floor(m) for m in MODULES} - {"<root>"}
    assert floors <= set(RANK), f"packages without a floor in LAYERS: {sorted(floors - set(RANK))}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "mutomo"))
def test_imports_run_downwards(module):
    """Nothing imports a floor above its own (the physics knows nothing of designs, studies,
    configuration, the app or plotting; only config/ knows the file format), and only the
    application imports the public facade ``mutomo`` itself."""
    here = RANK[_floor(module)]
    for target, _ in _imports(module):
        if target == "mutomo":
            assert _floor(module) == "app", f"{module} imports the facade `mutomo`"
            continue
        assert RANK[_floor(target)] <= here, f"{module} imports {target}, a floor above it"


def test_no_import_inside_a_function():
    """Imports of mutomo modules sit at the top of their module: none hides inside a function
    (where it used to break an import circle)."""
    hidden = [(m, t) for m in MODULES for t, inner in _imports(m) if inner]
    assert hidden == []


def test_no_import_circles():
    """The module import graph has no cycle (Tarjan's strongly connected components)."""
    graph = {m: sorted({t for t, _ in _imports(m)}) for m in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert circles == []


def test_no_package_holds_too_much_of_the_library():
    """Lines per package (a folder with an ``__init__.py``; ``reco.mlem`` is its own), the
    top-level modules together as one."""
    lines: dict[str, int] = {}
    for module, path in MODULES.items():
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        lines[package] = lines.get(package, 0) + len(path.read_text().splitlines())
    total = sum(lines.values())
    big = {k: round(v / total, 3) for k, v in lines.items() if v / total > MAX_SHARE}
    assert big == {}, f"packages over {MAX_SHARE:.0%} of {total} lines: {big}"


def test_the_facade_names_every_public_name_and_loads_none_until_asked():
    """``import mutomo`` (and so ``import mutomo.units``) loads no stage: each public name's module
    is imported on first use (PEP 562), and every name of ``__all__`` resolves to an object."""
    import subprocess
    import sys

    code = (
        "import sys, mutomo; "
        "print(sorted(m for m in sys.modules if m.startswith('mutomo.'))); "
        "import torch; print(type(mutomo.PassiveVolume).__name__, 'mutomo.volume' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "[]", out[0]
    assert out[1] == "type True"
    import mutomo

    assert set(mutomo.__all__) == set(mutomo._EXPORTS)
    assert all(getattr(mutomo, name) is not None for name in mutomo.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        _ = mutomo.nonsense
