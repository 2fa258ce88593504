"""SIGINT and SIGTERM stop a whole sweep, whatever its executor: the running points end
`interrupted`, no new point starts, the command exits 128 + the signal, and a rerun finishes
the sweep to the table an uninterrupted sweep gives."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from losslab.store import RunStore
from losslab.sweep.executors import BatchedExecutor, LocalExecutor
from losslab.sweep.run import Sweep, read_results
from tests.helpers import BODY, losslab_here, table

EXECUTORS = {"local-1": ["--workers", "1"], "local-2": ["--workers", "2"],
             "batched": ["--executor", "batched", "--workers", "1"]}


def rerun_executor(executor: str):
    return BatchedExecutor(1) if executor == "batched" else LocalExecutor(1)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The table of the sweep run whole, trained alone and trained batched (vmap's sums differ in
    the last bits from a lone run's)."""
    tables = {}
    for kind in ("local-1", "batched"):
        folder = tmp_path_factory.mktemp("whole")
        (folder / "stop.toml").write_text(BODY)
        tables[kind] = table(Sweep(folder / "stop.toml", RunStore(folder / "runs")).run(rerun_executor(kind))["rows"])
    return tables


def begun(store: Path) -> list[str]:
    """The sweep's points that have started: their run folders (made whole, by a rename)."""
    return [path.name for path in store.glob("stop-*") if path.is_dir()]


def training(store: Path) -> list[str]:
    """The points past their first step, not finished: no point can start before one of them ends."""
    return [name for name in begun(store) if (store / name / "checkpoints" / "step_00000001.pt").is_file()
            and '"completed"' not in (store / name / "run.json").read_text()]


# each executor with one signal in the default suite, the other in the slow suite (one handler takes both):
# SIGINT on one worker and on a batched group, SIGTERM on two workers (passed on by the parent's forwarding)
DEFAULT = {("local-1", signal.SIGINT), ("batched", signal.SIGINT), ("local-2", signal.SIGTERM)}
CASES = [pytest.param(e, s, id=f"{e}-{s.name}", marks=[] if (e, s) in DEFAULT else [pytest.mark.slow])
         for e in EXECUTORS for s in (signal.SIGINT, signal.SIGTERM)]


@pytest.mark.parametrize("executor,sig", CASES)
def test_a_signal_stops_the_whole_sweep_and_a_rerun_finishes_it(tmp_path, uninterrupted, executor, sig):
    (tmp_path / "stop.toml").write_text(BODY)
    store = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "losslab.cli", "sweep", tmp_path / "stop.toml", "--out", store,
                             *EXECUTORS[executor]], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    # the second point (and with two workers or a group, every point that runs at once) mid-training:
    # none has ended, so none would start another before the signal
    at_once = 1 if executor == "local-1" else 2
    while time.time() < deadline and (len(begun(store)) < 2 or len(training(store)) < at_once) \
            and proc.poll() is None:
        time.sleep(0.05)
    started = set(begun(store))
    assert len(started) >= 2 and proc.poll() is None, "the sweep ended before its points trained at once"
    proc.send_signal(sig)  # to the sweep's process alone, as a scheduler sends it
    sent = time.time()
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, stderr
    assert time.time() - sent < 10
    assert f"stopped by {sig.name}" in stderr and "losslab sweep" in stderr and "Traceback" not in stderr
    assert set(begun(store)) == started  # no point started after the signal
    rows = read_results(RunStore(store), "stop")
    assert {r["status"] for r in rows} <= {"completed", "interrupted", "pending"}
    assert any(r["status"] == "interrupted" for r in rows)
    interrupted = [RunStore(store).find(r["run_id"]).summary() for r in rows if r["status"] == "interrupted"]
    assert all(s["stop_reason"] == sig.name for s in interrupted)

    again = table(Sweep(tmp_path / "stop.toml", RunStore(store)).run(rerun_executor(executor))["rows"])
    if executor != "batched":
        assert again == uninterrupted["local-1"]
    else:  # a group resumed beside fresh runs is vmapped in other shapes: the early losses' last bits differ
        whole = uninterrupted["batched"]
        assert [{k: v for k, v in r.items() if not isinstance(v, float)} for r in again] == \
               [{k: v for k, v in r.items() if not isinstance(v, float)} for r in whole]
        assert [v for r in again for v in r.values() if isinstance(v, float)] == \
               pytest.approx([v for r in whole for v in r.values() if isinstance(v, float)], rel=1e-6)


@pytest.mark.parametrize("command,at_once", [
    (["bench-optim", "quick", "--optimizers", "adam,sgd", "--workloads", "digits-mlp", "--trials", "3"], 1),
    (["noise-threshold", "--n", "20,30", "--weight-decay", "0.01", "--iterations", "3", "--set", "model.width=100"],
     1),
    (["noise-threshold", "--n", "20,30", "--weight-decay", "0.01", "--iterations", "3", "--set", "model.width=100",
      "--workers", "2"], 2),
], ids=["bench-optim", "noise-threshold", "noise-threshold-2-workers"])
def test_commands_that_train_many_runs_stop_on_a_signal(tmp_path, command, at_once):
    store = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "losslab.cli", *command, "--out", store],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    runs = lambda: {p.name for p in store.glob("[!.]*") if (p / "run.json").is_file()}  # noqa: E731 - not drafts
    while time.time() < deadline and len(runs()) < at_once and proc.poll() is None:
        time.sleep(0.05)
    started = runs()
    assert started and proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "stopped by SIGTERM" in stderr and "Traceback" not in stderr, stderr
    assert runs() == started  # no run started after the signal
    statuses = {RunStore(store).find(r).summary()["status"] for r in started}
    assert "running" not in statuses and "interrupted" in statuses


def test_a_stopped_gallery_keeps_no_figure_of_runs_cut_short_and_a_rerun_finishes_it(tmp_path):

    args = ["gallery", "--only", "double-descent,weight-decay-switch", "--quick", "--out", tmp_path]
    proc = subprocess.Popen([sys.executable, "-m", "losslab.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    store, deadline = tmp_path / "runs", time.time() + 120
    runs = lambda: {p.name for p in store.glob("[!.]*") if (p / "run.json").is_file()}  # noqa: E731 - not drafts
    while time.time() < deadline and not runs() and proc.poll() is None:
        time.sleep(0.05)
    assert runs() and proc.poll() is None
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "stopped by SIGINT" in stderr and "0 of 2 entries made" in stderr, stderr
    assert "Traceback" not in stderr
    # the runs of every entry train before any is made: none kept, the runs cut short resume
    assert not list((tmp_path / "studies").glob("*_*"))
    assert "interrupted" in {RunStore(store).find(r).summary()["status"] for r in runs()}
    again = json.loads(losslab_here(*args, "--json").stdout)
    assert [(r["cached"], r["held"]) for r in again["entries"]] == [(False, True), (False, True)]
