"""The documentation site builds with every warning an error, and the build fails on what it must
refuse: a broken link, a code block of a page that raises, a public name without its docstring's
sections or its reference entry, an example that does not give what it shows."""

import importlib.util
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main
import yaml

from losslab.cli import app
from tests.helpers import losslab_here

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
hooks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(hooks)


def build(config: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})


def test_the_site_builds_strict_with_the_tutorial_run_and_every_name_and_command_on_its_page(tmp_path):
    done = build(ROOT / "mkdocs.yml", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    tutorial = (tmp_path / "tutorials" / "your-model.html").read_text()
    # what the tutorial's code printed and drew, run at this build
    assert "condition number: None" in tutorial and "SGD:" in tutorial and "SAM:" in tutorial
    assert re.search(r"<svg[^>]*>.*CNN on digits, SGD", tutorial, re.S)
    reference = "".join((tmp_path / "reference" / f"{p}.html").read_text() for p in ("analyses", "optim", "monitor"))
    for public, obj in hooks.documented().items():
        assert f'id="{obj.path}"' in reference, public
    cli = (tmp_path / "reference" / "cli.html").read_text()
    reference = runpy.run_path(str(ROOT / "docs" / "cli_reference.py"))
    group = typer.main.get_command(app)
    listed = reference["commands"](group, typer.Context(group, info_name="losslab"))
    assert {"forecast build", "forecast report", "predict"} <= set(listed)  # a group's commands in its place
    for name in listed:
        assert f'id="{reference["anchor"](name)}"' in cli, name
    assert "--trace-method" in cli and "[default: hutch++]" in cli  # the options' own help


def test_the_gallery_page_shows_each_made_entry_with_its_figure_and_verdict(tmp_path):
    from losslab.gallery import select

    done = losslab_here("gallery", "--only", "double-descent", "--quick", "--out", tmp_path)
    assert done.returncode == 0, done.stderr
    page = runpy.run_path(str(ROOT / "docs" / "gallery_page.py"))["markdown"](tmp_path)
    sections = dict(re.findall(r"\n## (.+?)\n(.*?)(?=\n## |\Z)", page, re.S))
    assert len(sections) == len(select(None))
    made = sections["Model-wise double descent"]
    assert "data:image/png;base64," in made and "**claim held** (the quick instance" in made
    assert all("*Not made for this build.*" in text for title, text in sections.items() if text != made)
    assert page.startswith("**1 of 1 claims held**")


def small_site(tmp_path: Path, page: str) -> Path:
    """A one-page site with the real site's theme, validation, extensions and executed blocks."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text().replace("!!python", "#"))
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text(page)
    config.update(docs_dir=str(tmp_path / "docs"), nav=["index.md"], hooks=[],
                  plugins=[p for p in config["plugins"] if p != "mkdocstrings" and not isinstance(p, dict)])
    path = tmp_path / "mkdocs.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("page, says", [
    ("# A page\n\nSee [the guide](guide/nowhere.md).\n", "guide/nowhere.md"),
    ('# A page\n\n```python exec="on"\nraise ValueError("a tutorial block that raises")\n```\n', "exited with errors"),
], ids=["broken link", "raising block"])
def test_the_build_fails_on_a_broken_link_and_on_a_block_that_raises(tmp_path, page, says):
    done = build(small_site(tmp_path, page), tmp_path / "site")
    assert done.returncode != 0 and says in done.stderr


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A package `fresh` on sys.path whose one public function is documented as `doc` says."""
    def make(doc: str, shown: bool = True):
        (tmp_path / "fresh").mkdir(exist_ok=True)
        source = f'__all__ = ["scale"]\n\n\ndef scale(x, by=2):\n{doc}    return x * by\n'
        (tmp_path / "fresh" / "__init__.py").write_text(source)
        (tmp_path / "pages").mkdir(exist_ok=True)
        (tmp_path / "pages" / "api.md").write_text("::: fresh.scale\n" if shown else "nothing\n")
        monkeypatch.syspath_prepend(str(tmp_path))
        sys.modules.pop("fresh", None)
        return hooks.undocumented(("fresh",), tmp_path / "pages"), hooks.failing_examples(("fresh",))
    return make


FULL = '''    """Multiply.

    Args:
        x: a number.
        by: the factor.

    Returns:
        x times by.

    Examples:
        >>> scale(3)
        6
    """
'''


def test_a_documented_name_passes_and_each_missing_part_fails(package):
    assert package(FULL) == ([], [])
    assert package("") == (["fresh.scale: no docstring"], [])
    assert package(FULL.replace("        by: the factor.\n", ""))[0] == ["fresh.scale: no Args entry for by"]
    assert package(FULL.replace("    Returns:\n        x times by.\n\n", ""))[0] == ["fresh.scale: no Returns"]
    assert package(FULL, shown=False)[0] == [
        "fresh.scale: on no reference page (add `::: fresh.scale` to docs/reference/)"]
    problems, failing = package(FULL.replace("        6\n", "        7\n"))
    assert problems == [] and len(failing) == 1 and "Expected:\n    7\nGot:\n    6" in failing[0]


def test_the_readme_is_a_first_screen_with_the_two_commands_and_links_that_resolve():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    assert "make demo" in readme and "make test" in readme
    for target in re.findall(r"\]\(((?:docs/)[^)#]+)", readme):
        assert (ROOT / target).is_file(), target
    for picture in re.findall(r"\]\((docs/[^)]+\.png)\)", readme):
        assert (ROOT / picture).read_bytes()[:4] == b"\x89PNG", picture


@pytest.fixture
def runs(tmp_path, monkeypatch):
    """docs/tutorial_runs.py over the tutorials in tmp_path/tutorials, building into tmp_path/build."""
    spec = importlib.util.spec_from_file_location("tutorial_runs", ROOT / "docs" / "tutorial_runs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (tmp_path / "tutorials").mkdir()
    monkeypatch.setattr(module, "TUTORIALS", tmp_path / "tutorials")
    monkeypatch.setattr(module, "BUILD", tmp_path / "build")
    return module


PNG = "import base64, pathlib; pathlib.Path('runs/a').mkdir(parents=True); pathlib.Path('runs/a/f.png').write_bytes(" \
      "base64.b64decode('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=='))"


def test_a_tutorials_marked_blocks_run_once_each_with_what_they_print_and_draw(runs):
    tutorial = runs.TUTORIALS / "demo.md"
    tutorial.write_text(f'# Demo\n\n```sh\necho never\n```\n\n```sh\necho made   # a comment\npython -c "{PNG}"\n```\n'
                        f"{runs.MARK}\n\n```sh\necho never\n```\n")  # only the marked block, not those around it
    runs.run_tutorial("demo")
    [kept] = runs.kept_output("demo", tutorial.read_text())
    assert "$ echo made\nmade" in kept and "never" not in kept
    assert "<figcaption>runs/a/f.png</figcaption>" in kept and "data:image/png;base64,iVBOR" in kept
    runs.run_tutorial("demo")  # kept: not run again (the figure's folder would exist: mkdir would fail)
    tutorial.write_text(tutorial.read_text().replace("echo made", "echo changed"))
    assert runs.kept_output("demo", tutorial.read_text()) == [None]  # another command: not kept for it


def test_a_failing_tutorial_command_stops_the_run_saying_which(runs):
    (runs.TUTORIALS / "broken.md").write_text(f"```sh\necho first\nlosslab-nonexistent --x\necho after\n```\n{runs.MARK}\n")
    with pytest.raises(SystemExit, match="broken: `losslab-nonexistent --x` failed"):
        runs.run_tutorial("broken")
    assert runs.kept_output("broken", (runs.TUTORIALS / "broken.md").read_text()) == [None]


def test_the_build_shows_a_blocks_kept_output_under_it_and_else_how_to_make_it(runs, monkeypatch):
    monkeypatch.setattr(hooks, "TUTORIAL_RUNS", runs)
    text = f"```sh\necho one\n```\n{runs.MARK}\n\n```sh\necho two\n```\n{runs.MARK}\n"
    (runs.TUTORIALS / "two.md").write_text(text)
    blocks = runs.marked_blocks(text)
    kept = runs.kept_path("two", blocks, 0)
    kept.parent.mkdir(parents=True)
    kept.write_text("OUTPUT OF ONE")

    class Page:
        class file:
            src_uri = "tutorials/two.md"
    shown = hooks.on_page_markdown(text, Page)
    assert shown.index("echo one") < shown.index("OUTPUT OF ONE") < shown.index("echo two")
    assert shown.index("echo two") < shown.index("`make docs` runs these commands")
