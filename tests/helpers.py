"""What several test modules share: the command run as a user runs it, small configs and sweeps, fake runs,
snapshots of folders, pages in a browser."""

import contextlib
import io
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from losslab.config import load_config
from losslab.store import RunStore

TINY = ["--set", "task.p=11", "--set", "model.d_model=32", "--set", "model.d_mlp=64",
        "--set", "train.max_steps=40", "--set", "train.eval_every=10", "--set", "optim.lr=3e-3"]


def losslab(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "losslab.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd)


def losslab_here(*args) -> subprocess.CompletedProcess:
    """The command's entry point run in this process: the same main() as `losslab` on the command
    line, without a new interpreter's start and imports (3 to 4 s a call). For every check where the
    process boundary itself is not what is tested (`losslab` is for those)."""
    from losslab.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    argv, sys.argv = sys.argv, ["losslab", *map(str, args)]
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    finally:
        sys.argv = argv
    return subprocess.CompletedProcess(args, code, stdout.getvalue(), stderr.getvalue())


def open_page(browser, url):
    """The page at url, and the console errors and uncaught exceptions it gave while loading."""
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    problems = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(url)
    page.wait_for_load_state("load")
    return page, problems


def drawn(page, selector) -> bool:
    """The element's screenshot is not one flat color: something is drawn in it."""
    from PIL import Image

    image = Image.open(io.BytesIO(page.locator(selector).screenshot())).convert("L")
    low, high = image.getextrema()
    return high - low > 100 and len(image.getcolors(maxcolors=1 << 16) or []) > 20


TINY_SET = '["task.p=11", "model.d_model=32", "model.d_mlp=64", "train.max_steps=30", "train.eval_every=10", ' \
           '"optim.lr=3e-3"]'


def sweep_file(tmp_path, body: str, name: str = "s") -> str:
    path = tmp_path / f"{name}.toml"
    figures = "" if "run_figures" in body else "run_figures = false\n"  # the runs' own figures: where tested
    path.write_text(f'name = "{name}"\nbase = "grokking"\nset = {TINY_SET}\n{figures}' + textwrap.dedent(body))
    return path


T = 100


def fake_run(store: RunStore, i: int, oscillates: bool, rng, op: str = "add", settings: tuple = ()) -> dict:
    """A finished run (of a + b mod 97, or another `op`, with other `settings`) whose early loss decays
    smoothly, or with oscillations (the grokking signature), and that grokked exactly when it oscillated."""
    t = np.arange(T)
    loss = 4.6 * np.exp(-t / 30) + 0.05 + rng.normal(scale=1e-3, size=T)
    if oscillates:
        loss += 0.3 * np.abs(np.sin(2 * np.pi * t / rng.uniform(8, 20)))
    rows = [(int(s), "train", "step_loss", float(v)) for s, v in zip(t, loss)]
    rows += [(s, split, name, v) for s in (0, 50, 100) for split, name, v in
             [("train", "loss", float(loss[min(s, T - 1)])), ("train", "acc", 0.5), ("val", "loss", 4.0),
              ("val", "acc", 0.01)]]
    run = store.create(load_config("grokking", ["name=fake", f"task.op={op}", *settings]), f"fake-{i}")
    run.write_metrics(rows)
    summary = {"run_id": run.path.name, "status": "completed", "steps": 1000 if oscillates else 3000,
               "stop_reason": "max_steps", "events": {"t4": 900 if oscillates else None}, "final": {}, "wall_s": 1.0}
    run.write_summary(summary)
    return {"run_id": run.path.name, "status": "completed", "steps": summary["steps"], "grokked": oscillates,
            "stop_reason": "max_steps"}


class ConstantForecaster:
    """A forecaster (as a sweep's stop rule and the pruner read one) that gives every run p(grok) = p at T = 20."""

    t, threshold = 20, 0.5

    def __init__(self, p: float):
        self.p = p

    def p_grok(self, rows, config=None) -> float:
        return self.p


def fake_benchmark(store: RunStore, path: Path, runs: int = 24, ops=("add", "sub", "mul")) -> Path:
    """A forecast benchmark's table of fake runs (fake_run's), half of them grokking, over `ops`, two
    moduli and two optimizers (each with both outcomes)."""
    from losslab.forecast.table import run_row, write_table

    rng = np.random.default_rng(0)
    made = [fake_run(store, i, oscillates=i % 2 == 0, rng=rng, op=ops[i // 2 % len(ops)],
                     settings=(f"task.p={(97, 89)[i // 6 % 2]}", f"optim.name={('adamw', 'grokfast_ema')[i // 12 % 2]}"))
            for i in range(runs)]
    return write_table([run_row(store.find(r["run_id"])) for r in made], path)


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")
            if p.is_file()}


def in_one_process(*commands) -> str:
    """A shell command running `losslab` with each argument list in turn in one new interpreter (its
    main(), as losslab_here): each command's stdout, then `exit=CODE`, on stdout; its stderr on
    stderr. One interpreter's start instead of one a command (read the outputs with `outputs`)."""
    listed = [list(map(str, c)) for c in commands]
    code = (f"import sys\nfrom tests.helpers import losslab_here\nfor args in {listed!r}:\n"
            "    done = losslab_here(*args)\n"
            "    sys.stdout.write(done.stdout)\n    sys.stderr.write(done.stderr)\n"
            "    print(f'\\nexit={done.returncode}', flush=True)\n")
    return f"{sys.executable} -c {shlex.quote(code)}"


def outputs(stdout: str) -> list[tuple[str, int]]:
    """(stdout, exit code) of each command of an `in_one_process` run."""
    parts = re.split(r"\n?exit=(\d+)\n", stdout)
    return [(parts[i], int(parts[i + 1])) for i in range(0, len(parts) - 1, 2)]


def in_mount_namespace(script: str) -> subprocess.CompletedProcess:
    """`script` in a private mount namespace (root: unshare -m; otherwise a user namespace)."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1) to mount a read-only or a small file system")
    for prefix in (["unshare", "-m"], ["unshare", "-rm"]):
        probe = subprocess.run([*prefix, "sh", "-c", "mount -t tmpfs tmpfs /mnt"], capture_output=True)
        if probe.returncode == 0:
            return subprocess.run([*prefix, "sh", "-c", script], capture_output=True, text=True, timeout=300)
    pytest.skip("cannot mount in a private namespace here (needs root or user namespaces)")


# minibatch SGD with every probe that keeps state across steps, a weight-decay switch at t2 and
# a stop 7 steps after t4 (off the evaluation grid): what a resume must restore
FAULT_RUN = ["task.n=10", "model.width=50", "task.n_train=100", "train.max_steps=400", "train.eval_every=10",
             "train.stop_after_t4=7", "probes.every=30", "probes.hessian=true", "train.checkpoint_every_s=1e9",
             "optim.weight_decay_after_t2=0.02", "train.record_loss_steps=50"]


def outcome(store: RunStore, run_id: str) -> dict:
    """What a resumed run must reproduce: every metric row but the clock's, events, final, signature."""
    run = store.find(run_id)
    summary = run.summary()
    return {"rows": [r for r in run.metric_rows() if r[2] != "train_s"], "status": summary["status"],
            "steps": summary["steps"], "events": summary["events"], "final": summary["final"],
            "signature": summary.get("signature")}


# four parity runs of about a second each: two workers' points overlap in training for most of a second
# (at 600 steps they took 0.3 s, and a CI machine once ran the whole sweep without two training at once)
# a sweep of four short points, stopped at a given step by LOSSLAB_SIGNAL_AT (losslab.train.stop)
BODY = """name = "stop"
base = "parity"
set = ["task.n=20", "model.width=100", "train.max_steps=300", "train.stop_after_t4=1000000"]
run_figures = false
[grid]
seed = [0, 1, 2, 3]
"""


KEEP = ("index", "run_id", "status", "steps", "t1", "t2", "t3", "t4", "train_acc", "val_acc", "train_loss",
        "val_loss", "signature_energy")


def table(rows):
    return [{k: r[k] for k in KEEP} for r in rows]
