"""SIGINT and SIGTERM stop a whole sweep, whatever its executor: the running points end
`interrupted`, no new point starts, the command exits 128 + the signal, and a rerun finishes
the sweep to the table an uninterrupted sweep gives."""

import json
import os
import signal
import subprocess
import sys
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
        tables[kind] = table(Sweep.from_file(folder / "stop.toml", RunStore(folder / "runs")).run(rerun_executor(kind))["rows"])
    return tables


def begun(store: Path) -> list[str]:
    """The sweep's points that have started: their run folders (made whole, by a rename)."""
    return [path.name for path in store.glob("stop-*") if path.is_dir()]


# one worker and a batched group with one signal each in the default suite, the rest in the slow suite (one handler
# takes both; two workers stopped by a signal: noise-threshold-2-workers, killed: test_adversarial)
DEFAULT = {("local-1", signal.SIGINT), ("batched", signal.SIGINT)}
CASES = [pytest.param(e, s, id=f"{e}-{s.name}", marks=[] if (e, s) in DEFAULT else [pytest.mark.slow])
         for e in EXECUTORS for s in (signal.SIGINT, signal.SIGTERM)]
# where the signal comes (losslab.train.stop's LOSSLAB_SIGNAL_AT): one worker, at step 100 of its second
# point (the first completed); a batched group, at step 100 of its runs; two workers, at step 100 of the
# first point of the first to get there, sent to the sweep, which passes it on to both
SIGNALLED_AT = {"local-1": "2:100", "batched": "1:100", "local-2": "1:100"}


def signalled(args: list, at: str, sig: signal.Signals) -> subprocess.CompletedProcess:
    """The losslab command, signalled at the point `at` (K:STEP) as a scheduler signals it."""
    return subprocess.run([sys.executable, "-m", "losslab.cli", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "LOSSLAB_SIGNAL_AT": f"{at}:{sig.name}"})


@pytest.mark.parametrize("executor,sig", CASES)
def test_a_signal_stops_the_whole_sweep_and_a_rerun_finishes_it(tmp_path, uninterrupted, executor, sig):
    (tmp_path / "stop.toml").write_text(BODY)
    store = tmp_path / "runs"
    done = signalled(["sweep", tmp_path / "stop.toml", "--out", store, *EXECUTORS[executor]], SIGNALLED_AT[executor],
                     sig)
    assert done.returncode == 128 + sig, done.stderr
    assert f"stopped by {sig.name}" in done.stderr and "losslab sweep" in done.stderr
    assert "Traceback" not in done.stderr
    rows = read_results(RunStore(store), "stop")
    statuses = [r["status"] for r in rows]
    assert set(statuses) <= {"completed", "interrupted", "pending"} and "interrupted" in statuses
    if executor == "local-1":  # the first point completed, the second stopped, the others never begun
        assert statuses == ["completed", "interrupted", "pending", "pending"] and len(begun(store)) == 2
    if executor == "batched":  # the group of four, each stopped at the same step
        assert statuses == ["interrupted"] * 4
    assert len(begun(store)) == sum(s != "pending" for s in statuses)  # no point begun after the signal
    interrupted = [RunStore(store).find(r["run_id"]).summary() for r in rows if r["status"] == "interrupted"]
    assert all(s["stop_reason"] == sig.name for s in interrupted)

    again = table(Sweep.from_file(tmp_path / "stop.toml", RunStore(store)).run(rerun_executor(executor))["rows"])
    if executor != "batched":
        assert again == uninterrupted["local-1"]
    else:  # a group resumed beside fresh runs is vmapped in other shapes: the early losses' last bits differ
        whole = uninterrupted["batched"]
        assert [{k: v for k, v in r.items() if not isinstance(v, float)} for r in again] == \
               [{k: v for k, v in r.items() if not isinstance(v, float)} for r in whole]
        assert [v for r in again for v in r.values() if isinstance(v, float)] == \
               pytest.approx([v for r in whole for v in r.values() if isinstance(v, float)], rel=1e-6)


# bench-optim and noise-threshold on one worker in the slow suite (5 s and 4 s): the same handler stops the
# two-worker noise-threshold in the default one
@pytest.mark.parametrize("command,at_once", [
    pytest.param(["bench-optim", "quick", "--optimizers", "adam,sgd", "--workloads", "digits-mlp", "--trials", "3"], 1,
                 marks=pytest.mark.slow),
    pytest.param(["noise-threshold", "--n", "20,30", "--weight-decay", "0.01", "--iterations", "3", "--set",
                  "model.width=100"], 1, marks=pytest.mark.slow),
    (["noise-threshold", "--n", "20,30", "--weight-decay", "0.01", "--iterations", "3", "--set", "model.width=100",
      "--workers", "2"], 2),
], ids=["bench-optim", "noise-threshold", "noise-threshold-2-workers"])
def test_commands_that_train_many_runs_stop_on_a_signal(tmp_path, command, at_once):
    store = tmp_path / "runs"
    done = signalled([*command, "--out", store], "1:5", signal.SIGTERM)  # the first run (of each worker), at step 5
    assert done.returncode == 143 and "stopped by SIGTERM" in done.stderr and "Traceback" not in done.stderr, \
        done.stderr
    runs = [p.name for p in store.glob("[!.]*") if (p / "run.json").is_file()]  # not drafts
    assert 1 <= len(runs) <= at_once  # no run begun after the signal
    statuses = {RunStore(store).find(r).summary()["status"] for r in runs}
    assert "running" not in statuses and "interrupted" in statuses


@pytest.mark.slow  # 16 s: the gallery trains its runs as a sweep does (the sweeps' stop tests stay in default)
def test_a_stopped_gallery_keeps_no_figure_of_runs_cut_short_and_a_rerun_finishes_it(tmp_path):

    args = ["gallery", "--only", "double-descent,deep-relu-init", "--quick", "--out", tmp_path]
    done = signalled(args, "1:5", signal.SIGINT)
    assert done.returncode == 130 and "stopped by SIGINT" in done.stderr, done.stderr
    assert "0 of 2 entries made" in done.stderr and "Traceback" not in done.stderr
    # the runs of every entry train before any is made: none kept, the runs cut short resume
    assert not list((tmp_path / "studies").glob("*_*"))
    runs = [p.name for p in (tmp_path / "runs").glob("[!.]*") if (p / "run.json").is_file()]
    assert "interrupted" in {RunStore(tmp_path / "runs").find(r).summary()["status"] for r in runs}
    again = json.loads(losslab_here(*args, "--json").stdout)
    assert [(r["cached"], r["held"]) for r in again["entries"]] == [(False, True), (False, True)]


def test_the_planned_signal_is_read_whole_or_refused():
    from losslab.train.stop import _signal_at

    assert _signal_at("2:100") == (2, 100, signal.SIGINT) and _signal_at("1:5:SIGTERM") == (1, 5, signal.SIGTERM)
    assert _signal_at(None) is None and _signal_at("") is None
    for bad in ("2", "a:1", "1:2:SIGFOO", "1:2:3:4"):
        with pytest.raises(ValueError, match="expected K:STEP"):
            _signal_at(bad)
