"""The layers of losslab, declared once in pyproject.toml ([tool.importlinter]): every import points
down them and no package's modules import one another in a cycle, function-local imports included.
The contracts are checked on the code as it is, and shown to break on an import added upward."""

from pathlib import Path

import grimp
import pytest
import tomllib
from importlinter.application.use_cases import lint_imports
from importlinter.configuration import configure
from importlinter.contracts.acyclic_siblings import AcyclicSiblingsContract
from importlinter.contracts.layers import LayersContract

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
SETTINGS = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]
configure()  # import-linter's settings, as its command line sets them
KINDS = {"layers": LayersContract, "acyclic_siblings": AcyclicSiblingsContract}


def test_the_code_keeps_every_contract(capsys):
    kept = lint_imports(config_filename=str(PYPROJECT), cache_dir=None, no_logo=True)
    report = capsys.readouterr().out
    assert kept, report
    assert "Contracts: 2 kept, 0 broken." in report


def contract(kind: str):
    options = next(c for c in SETTINGS["contracts"] if c["type"] == kind)
    session = {"root_packages": [SETTINGS["root_package"]],
               "exclude_type_checking_imports": SETTINGS["exclude_type_checking_imports"]}
    return KINDS[kind](name=options["name"], session_options=session,
                       contract_options={k: v for k, v in options.items() if k not in ("name", "type")})


def graph():
    return grimp.build_graph("losslab", exclude_type_checking_imports=True)


@pytest.mark.parametrize("kind, importer, imported", [
    ("layers", "losslab.core.errors", "losslab.cli"),  # the bottom layer reaching the top
    ("layers", "losslab.analysis.objective", "losslab.train.checkpoints"),  # the cycle that was
    ("acyclic_siblings", "losslab.sweep.jobs", "losslab.sweep.run"),  # run -> executors -> jobs -> run
])
def test_an_import_added_against_a_contract_breaks_it(kind, importer, imported):
    assert contract(kind).check(graph(), verbose=False).kept
    changed = graph()
    changed.add_import(importer=importer, imported=imported, line_number=1, line_contents="import")
    assert not contract(kind).check(changed, verbose=False).kept


def test_drawing_leaves_the_backend_and_pyplot_alone(tmp_path):
    """A notebook's backend stays its own: no figure module chooses one at import, and the figures
    are drawn on their own canvases, outside pyplot (nothing to close)."""
    import subprocess
    import sys

    script = f"""
import matplotlib
matplotlib.use("svg")
import losslab.analysis.figures, losslab.monitor.figures, losslab.sweep.figures, losslab.optimize.figures
import losslab.bench.run, losslab.gallery.grokking, losslab.gallery.landscapes, losslab.gallery.optimizers
import losslab.gallery.parity
from losslab.monitor.figures import grokking_figure
from losslab.core.files import save_figure
rows = [(s, split, name, 1 / (s + 1)) for s in range(1, 50) for split in ("train", "val") for name in ("loss", "acc")]
save_figure(grokking_figure(rows, {{}}, "title"), __import__("pathlib").Path(r"{tmp_path}") / "g.png")
import matplotlib.pyplot as plt
print(matplotlib.get_backend(), plt.get_fignums())
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["svg", "[]"]
    assert (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"


REASONS = {"startup": "keeps `losslab --help` and `import losslab` light: a heavy library, or the layers a command "
                      "uses, imported when it runs",
           "optional": "an optional dependency (pyproject's extras), imported where it is used"}


def test_a_function_local_import_says_why_in_one_word():
    """Imports inside functions only to keep the start light or for an optional dependency, each
    saying which (an import inside a function to dodge a cycle is what the contracts forbid)."""
    import ast

    unexplained = []
    for path in sorted((PYPROJECT.parent / "losslab").rglob("*.py")):
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for inner in ast.walk(node):
                    if isinstance(inner, ast.Import | ast.ImportFrom):
                        said = lines[inner.lineno - 1].rpartition("#")[2].split()
                        if not said or said[-1] not in REASONS:
                            unexplained.append(f"{path.name}:{inner.lineno}")
    assert not unexplained, unexplained
