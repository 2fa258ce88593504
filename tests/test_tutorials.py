"""The tutorials' commands are real: every `losslab` line in their shell blocks names a command and
options that exist, with values they accept; every run's config (preset and --set) validates and
every sweep file it names exists and loads. (Running them all takes hours; this takes seconds.)"""

import re
import shlex
from pathlib import Path

import pytest
import typer

from losslab.cli import app
from losslab.config import load_config
from losslab.presets import sweep_names
from losslab.sweep.spec import load_spec

ROOT = Path(__file__).resolve().parent.parent
TUTORIALS = sorted((ROOT / "docs" / "tutorials").glob("*.md"))
PHENOMENA = {"grokking", "sam-sharpness", "hessian", "surfaces", "connectivity", "double-descent", "parity",
             "optimizers"}
LIBRARY = {"your-model"}  # Python, not commands: its code blocks run at the docs build (tests/test_docs.py)
INDEX = {"index"}


def commands(path: Path) -> list[list[str]]:
    """The losslab command lines of the file's ```sh blocks (continuations joined, comments and
    `&&` chains split)."""
    found = []
    for block in re.findall(r"```sh\n(.*?)```", path.read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("&&"):
                words = shlex.split(part, comments=True)
                if words and words[0] == "losslab":
                    found.append(words[1:])
    return found


def test_there_is_a_tutorial_per_phenomenon():
    assert {p.stem for p in TUTORIALS} == PHENOMENA | LIBRARY | INDEX


@pytest.mark.parametrize("path", [p for p in TUTORIALS if p.stem in PHENOMENA], ids=lambda p: p.stem)
def test_every_command_parses_and_its_configs_validate(path):
    group = typer.main.get_command(app)
    lines = commands(path)
    assert len(lines) >= 3
    for args in lines:
        command = group.get_command(None, args[0])
        assert command is not None, f"{path.name}: no command {args[0]!r}"
        context = command.make_context(args[0], list(args[1:]))  # raises on an unknown option or a bad value
        if args[0] == "run":
            load_config(context.params["source"], context.params["overrides"] or [], context.params["seed"])
        if args[0] == "sweep":  # a built-in sweep by name, or a file beside the tutorials' commands
            given = context.params["file"]
            load_spec(given if str(given) in sweep_names() else ROOT / given)
