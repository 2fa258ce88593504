"""The phenomenon tutorials' commands, run for the site: every ```sh block of a tutorial followed by the
line `<!-- run at build -->` runs, command by command, in build/tutorials/NAME/ (its own run store,
runs/), and what the commands print and the figures they write are kept in
build/tutorials/NAME/block-K-DIGEST.md, DIGEST that of the block's text and of every block before it
(a changed command runs again, and so does what follows it). The docs build shows the kept output
under its block (docs/hooks.py); `make docs` runs this first:

    python docs/tutorial_runs.py [TUTORIAL ...]

A command that fails stops it, saying which, with exit status 1: nothing after it is kept."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from losslab.report.pages import image

TUTORIALS = Path(__file__).parent / "tutorials"
BUILD = Path("build") / "tutorials"
MARK = "<!-- run at build -->"
BLOCK = re.compile(r"```sh\n((?:(?!```).)*)```\n" + re.escape(MARK), re.S)  # one block: no fence inside


def marked_blocks(text: str) -> list[str]:
    """The text of each ```sh block followed by the mark, in order."""
    return BLOCK.findall(text)


def kept_path(tutorial: str, blocks: list[str], index: int) -> Path:
    digest = hashlib.sha256("\n".join(blocks[: index + 1]).encode()).hexdigest()[:12]
    return BUILD / tutorial / f"block-{index}-{digest}.md"


def commands(block: str) -> list[str]:
    """The block's command lines, continuations joined, comments and blank lines left out."""
    lines = [line.split("  #")[0].rstrip() for line in block.replace("\\\n", " ").splitlines()]
    return [line for line in lines if line and not line.lstrip().startswith("#")]


def shown(outputs: list[tuple[str, str]], figures: list[Path], folder: Path) -> str:
    """Markdown: each command with what it printed, then each figure it wrote."""
    text = "\n\n".join(f"$ {command}\n{output.rstrip()}" for command, output in outputs)
    parts = ["What these commands printed when this site was built:", "", "```text", text, "```"]
    for figure in figures:
        parts += ["", image(figure, str(figure.relative_to(folder)))]
    return "\n".join(parts)


def run_tutorial(name: str) -> None:
    folder = BUILD / name
    folder.mkdir(parents=True, exist_ok=True)
    blocks = marked_blocks((TUTORIALS / f"{name}.md").read_text())
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for index, block in enumerate(blocks):
        kept = kept_path(name, blocks, index)
        if kept.exists():
            continue
        before = set(folder.rglob("*.png"))
        outputs = []
        for command in commands(block):
            started = time.perf_counter()
            print(f"{name}: {command}", flush=True)
            done = subprocess.run(command, shell=True, cwd=folder, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"{name}: `{command}` failed (exit {done.returncode}): "
                         f"{(done.stderr or done.stdout).strip().splitlines()[-1:]}")
            outputs.append((command, done.stdout))
            print(f"{name}: done in {time.perf_counter() - started:.0f} s", flush=True)
        figures, names = [], set()
        for figure in sorted(set(folder.rglob("*.png")) - before):
            if figure.name not in names:  # each kind once (a benchmark's trial runs each draw a grokking.png)
                names.add(figure.name)
                figures.append(figure)
        kept.write_text(shown(outputs, figures, folder))


def kept_output(name: str, text: str) -> list[str | None]:
    """The kept output of each marked block of the tutorial `name` (None: not run for these commands)."""
    blocks = marked_blocks(text)
    return [path.read_text() if (path := kept_path(name, blocks, i)).exists() else None for i in range(len(blocks))]


if __name__ == "__main__":
    for tutorial in sys.argv[1:] or sorted(p.stem for p in TUTORIALS.glob("*.md") if MARK in p.read_text()):
        run_tutorial(tutorial)
