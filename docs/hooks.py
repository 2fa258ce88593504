"""The docs build's own checks and additions (an MkDocs hook): every public name of losslab,
losslab.optim and losslab.monitor has a Google-style docstring with its Args, Returns and an Example,
is on a reference page, and its example runs (a problem is a warning, which `mkdocs build --strict`
turns into a failure); under each tutorial block run at build, what it printed and drew."""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import logging
import re
from pathlib import Path

import griffe

DOCS = Path(__file__).parent
PUBLIC = ("losslab", "losslab.optim", "losslab.monitor")  # the modules whose __all__ is the public API
SETUP = DOCS / "reference" / "examples.py"  # what every example starts from (shown on the reference pages)
log = logging.getLogger("mkdocs.plugins.losslab")


def public_paths(modules=PUBLIC) -> dict[str, str]:
    """{public name: the path of the object it is} (`ll.Objective` -> losslab.analysis.objective.Objective)."""
    found = {}
    for module_name in modules:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            defined = getattr(obj, "__module__", None)
            own = f"{defined}.{obj.__qualname__}" if defined and hasattr(obj, "__qualname__") else None
            found[f"{module_name}.{name}"] = own or f"{module_name}.{name}"
    return found


def _parameters(obj: griffe.Object) -> list[str]:
    function = obj.members.get("__init__") if obj.is_class else obj
    if function is None or not function.is_function:
        return []
    return [p.name for p in function.parameters if p.name not in ("self", "cls")]


def docstring_problems(obj: griffe.Object) -> list[str]:
    """What the object's docstring lacks: the Args of every parameter, Returns, an Example."""
    if obj.docstring is None:
        return ["no docstring"]
    sections = {s.kind.value: s for s in obj.docstring.parse("google", warn_missing_types=False)}
    problems = []
    if obj.is_function or obj.is_class:
        documented = {p.name.lstrip("*") for kind in ("parameters", "attributes") if kind in sections
                      for p in sections[kind].value}  # a dataclass's fields are its Attributes
        missing = [p for p in _parameters(obj) if p not in documented]
        if missing:
            problems.append(f"no Args entry for {', '.join(missing)}")
        if "examples" not in sections:
            problems.append("no Example")
    returns_nothing = obj.is_function and obj.returns is not None and str(obj.returns) == "None"  # `-> None`
    if obj.is_function and not returns_nothing and "returns" not in sections:
        problems.append("no Returns")
    return problems


def documented(modules=PUBLIC) -> dict[str, griffe.Object | None]:
    """{public name: the object griffe reads from its source (None: not found)}, aliases followed."""
    packages: dict[str, griffe.Object] = {}
    found = {}
    for public, path in public_paths(modules).items():
        top, inside = path.split(".", 1)
        if top not in packages:
            packages[top] = griffe.load(top, docstring_parser=griffe.Parser.google, resolve_aliases=True)
        try:
            obj = packages[top][inside]
            found[public] = obj.final_target if obj.is_alias else obj
        except (KeyError, griffe.AliasResolutionError):
            found[public] = None
    return found


def undocumented(modules=PUBLIC, pages: Path = DOCS / "reference") -> list[str]:
    """One line per public name whose docstring lacks a section, or which no reference page shows."""
    shown = set(re.findall(r"^::: ([\w.]+)", "\n".join(p.read_text() for p in pages.glob("*.md")), re.M))
    problems = []
    for public, obj in documented(modules).items():
        if obj is None:
            problems.append(f"{public}: its source is not found")
            continue
        problems += [f"{public}: {p}" for p in docstring_problems(obj)]
        if obj.path not in shown:
            problems.append(f"{public}: on no reference page (add `::: {obj.path}` to docs/reference/)")
    return problems


def failing_examples(modules=PUBLIC) -> list[str]:
    """One line per public name whose Example does not give what it shows (each from SETUP anew)."""
    setup = compile(SETUP.read_text(), str(SETUP), "exec")
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    problems = []
    for public in public_paths(modules):
        module, name = public.rsplit(".", 1)
        obj = getattr(importlib.import_module(module), name)
        text = getattr(obj, "__doc__", None) if callable(obj) else None
        if not text or ">>>" not in text:
            continue
        namespace = dict(vars(importlib.import_module(obj.__module__)))  # as doctest: the module's names
        exec(setup, namespace)  # noqa: S102 - the docs' own setup
        test = doctest.DocTestParser().get_doctest(text, namespace, public, None, 0)
        report: list[str] = []
        result = runner.run(test, out=report.append, clear_globs=True)
        if result.failed:
            problems.append(f"{public}: its example fails\n{''.join(report)}")
    return problems


def on_pre_build(config, **kwargs) -> None:
    for problem in undocumented() + failing_examples():
        log.warning(problem)


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, DOCS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TUTORIAL_RUNS = _load("tutorial_runs")  # once, not for every page


def on_page_markdown(markdown: str, page, **kwargs) -> str:
    """Under each tutorial block run at build, what its commands printed and drew (docs/tutorial_runs.py)."""
    runs = TUTORIAL_RUNS
    if not page.file.src_uri.startswith("tutorials/") or runs.MARK not in markdown:
        return markdown
    pieces = markdown.split(runs.MARK)
    kept = runs.kept_output(Path(page.file.src_uri).stem, markdown)
    shown = [text if text is not None else
             "*`make docs` runs these commands (`python docs/tutorial_runs.py`) and shows here what they print "
             "and draw.*" for text in kept]
    return pieces[0] + "".join(f"\n{text}\n" + piece for text, piece in zip(shown, pieces[1:]))
