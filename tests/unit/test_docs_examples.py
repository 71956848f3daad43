"""The code the documentation shows runs, and gives what the text beside it claims: the README's
configuration is a valid one, and the Python examples of docs/getting-started.md run with the
shapes their comments state, and the shell commands the tutorials show are real ones. (The tutorials
run while ``make docs`` builds the site.)"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from mutomo.app.cli import build_parser
from mutomo.config.schema import parse_config, tomllib  # tomli on Python 3.10

ROOT = Path(__file__).resolve().parents[2]


def _blocks(path: Path, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", path.read_text(), re.S)


@pytest.mark.parametrize("page", ["README.md", "docs/getting-started.md"])
def test_the_shown_configuration_is_valid(page: str) -> None:
    (block,) = _blocks(ROOT / page, "toml")
    config = parse_config(tomllib.loads(block), page)
    assert (config.name, config.task.inference, config.task.momentum) == ("my_block", "asr", "posterior")
    assert config.training.epochs == 40 and config.task.kind == "presence"  # the rest comes from waste_block


def test_the_readme_names_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    assert "make test" in text and "make demo" in text
    assert len(text.splitlines()) <= 200


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_getting_started_python_examples_run_as_stated() -> None:
    blocks = _blocks(ROOT / "docs" / "getting-started.md", "python")
    quickstart, stacked, reconstruction = blocks[:3]
    namespace: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for block in (quickstart, stacked, reconstruction):
            exec(compile(block, "getting-started.md", "exec"), namespace)
    lines = out.getvalue().splitlines()
    # "(panels, muons, 2)": two panels below, 100,000 muons
    assert tuple(namespace["result"].hits_below.xy.shape) == (2, 100_000, 2)
    assert lines[0].endswith("s of sky; torch.Size([2, 100000, 2])")
    # "(4, 2): one value per (design, volume)"
    assert lines[1] == "torch.Size([4, 2])"
    # "~0.4 without a block": this volume holds a lead block, so its score is far above that
    assert float(lines[2]) > 10 * 0.4


TUTORIALS = ROOT / "docs" / "tutorials_src"


def _shell_commands(path: Path) -> list[list[str]]:
    """The commands of a tutorial's ``.. code-block:: bash`` blocks (in its text cells), one per
    line, without comments."""
    commands, in_block = [], False
    for line in path.read_text().splitlines():
        text = line[2:] if line.startswith("# ") else "" if line == "#" else None
        if text is None:
            in_block = False
            continue
        if text.startswith(".. code-block:: bash"):
            in_block = True
        elif in_block and text.startswith("    ") and text.strip():
            commands.append(shlex.split(text.split("  #")[0]))
        elif in_block and text.strip() and not text.startswith("    "):
            in_block = False
    return commands


def test_the_tutorials_have_their_shell_commands_from_the_real_command_lines() -> None:
    """Every ``mutomo ...`` and ``ray ...`` command a tutorial shows for a terminal (e.g. a sweep on
    a cluster, which the build cannot run) parses with mutomo's parser and Ray's, and the
    configuration files it names exist."""
    from ray.scripts.scripts import cli as ray_cli

    commands = [c for path in sorted(TUTORIALS.glob("tutorial_*.py")) for c in _shell_commands(path)]
    programs = {c[0] for c in commands}
    assert {"mutomo", "ray"} <= programs and programs <= {"mutomo", "ray"}, programs
    parser = build_parser()
    for command in commands:
        if command[0] == "mutomo":
            args = parser.parse_args(command[1:])  # argparse exits (SystemExit) on an unknown option
            config = getattr(args, "config", "")
            assert not str(config).startswith("configs/") or (ROOT / config).exists(), command
        else:
            ray_cli.commands[command[1]].make_context(command[1], command[2:])  # click: raises on a bad option
