"""The code the documentation shows runs, and gives what the text beside it claims: the README's
configuration is a valid one, and the Python examples of docs/getting-started.md run with the
shapes their comments state. (The tutorials run while ``make docs`` builds the site.)"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

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
