"""A run folder is crash-consistent: a kill at any write boundary resumes to the same run.

Each write of the store passes write boundaries (a file written, a file in place, an index
row). These tests stop a run at them in process (an exception nothing catches, which leaves
the disk exactly as a kill would): the first and the last boundary of each kind in the default
suite, every one in the slow suite; and with a real SIGKILL through LOSSLAB_KILL_AT_WRITE, once
and then at every boundary in the slow suite. Then they resume it and compare every metric row,
the events, the signature and the final metrics with an uninterrupted run.
"""

import json
import os
import re
import subprocess
import sys

import pytest

import losslab.core.files as files
from losslab.config import load_config
from losslab.core.errors import LossLabError
from losslab.store import RunStore
from losslab.train.loop import prepare, prepare_resume, run_to_end
from tests.helpers import FAULT_RUN, outcome


class Killed(BaseException):
    """Raised at a write boundary: nothing in losslab catches it, so the disk stays as a kill leaves it."""


def boundaries(hook, monkeypatch, work):
    monkeypatch.setattr(files, "boundary_hook", hook)
    try:
        work()
    finally:
        monkeypatch.setattr(files, "boundary_hook", None)


def restart(store: RunStore, run_id: str, cfg) -> None:
    """What a user does after a kill: resume the run if it had not ended, run it again if it has
    no folder yet."""
    if (store.root / run_id).exists():
        if store.find(run_id).summary()["status"] not in ("completed", "diverged"):
            run_to_end(prepare_resume(store.find(run_id), store), figures=False)
    else:
        run_to_end(prepare(cfg, store, run_id), figures=False)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run and the labels of its write boundaries."""
    cfg = load_config("parity", FAULT_RUN)
    store = RunStore(tmp_path_factory.mktemp("whole"))
    labels = []
    mp = pytest.MonkeyPatch()
    boundaries(labels.append, mp, lambda: run_to_end(prepare(cfg, store, "r"), figures=False))
    whole = outcome(store, "r")
    assert whole["events"]["t2"] and whole["events"]["t4"] and whole["signature"]  # the run exercises them
    assert whole["steps"] == whole["events"]["t4"] + 7
    return cfg, labels, whole


def kill_and_resume(cfg, boundary: int, store: RunStore, monkeypatch) -> None:
    """The run stopped at its `boundary`-th write boundary, then resumed (or run again)."""
    seen = 0

    def kill_here(at):
        nonlocal seen
        seen += 1
        if seen == boundary:
            raise Killed(at)
    with pytest.raises(Killed):
        boundaries(kill_here, monkeypatch, lambda: run_to_end(prepare(cfg, store, "r"), figures=False))
    restart(store, "r", cfg)


def first_and_last_of_each_kind(labels: list[str]) -> list[int]:
    """The boundaries (counted from 1) that open and close each kind (a label, its steps and
    numbers aside: every checkpoint's "in place" is one kind)."""
    kinds: dict[str, list[int]] = {}
    for k, label in enumerate(labels, 1):
        kinds.setdefault(re.sub(r"\d+", "N", label), []).append(k)
    return sorted({k for ks in kinds.values() for k in (ks[0], ks[-1])})


def test_a_kill_at_the_first_and_last_write_boundary_of_each_kind_resumes_to_the_same_run(reference, tmp_path,
                                                                                           monkeypatch):
    cfg, labels, whole = reference
    assert len(labels) > 40 and {"metrics.parquet in place", "index row"} <= set(labels)
    chosen = first_and_last_of_each_kind(labels)
    assert 1 in chosen and len(labels) in chosen and len(chosen) < len(labels)
    for k in chosen:
        kill_and_resume(cfg, k, RunStore(tmp_path / str(k)), monkeypatch)
        assert outcome(RunStore(tmp_path / str(k)), "r") == whole, f"killed at boundary {k} ({labels[k - 1]})"


@pytest.mark.slow
def test_a_kill_at_every_write_boundary_resumes_to_the_same_run(reference, tmp_path, monkeypatch):
    cfg, labels, whole = reference
    for k, label in enumerate(labels, 1):
        kill_and_resume(cfg, k, RunStore(tmp_path / str(k)), monkeypatch)
        assert outcome(RunStore(tmp_path / str(k)), "r") == whole, f"killed at boundary {k} ({label})"


def sigkill_then_resume(store, k: int, whole: dict) -> None:
    """`losslab run` killed with SIGKILL at its k-th write boundary, then `losslab resume` (or a
    new run where the kill came before the run folder existed)."""
    cli = [sys.executable, "-m", "losslab.cli"]
    args = ["parity", *(a for s in FAULT_RUN for a in ("--set", s)), "--out", store]
    killed = subprocess.run([*cli, "run", *args], env={**os.environ, files.KILL_AT_WRITE: str(k)},
                            capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr
    folders = [p.name for p in store.iterdir() if p.is_dir() and not p.name.startswith(".")] if store.exists() else []
    if not folders:
        again = subprocess.run([*cli, "run", *args, "--json"], capture_output=True, text=True)
        assert again.returncode == 0, again.stderr
        folders = [json.loads(again.stdout)["run_id"]]
    [run_id] = folders
    if RunStore(store).find(run_id).summary()["status"] != "completed":
        resumed = subprocess.run([*cli, "resume", run_id, "--out", store, "--json"], capture_output=True, text=True)
        assert resumed.returncode == 0, resumed.stderr
        assert json.loads(resumed.stdout)["events"] == whole["events"]
    assert outcome(RunStore(store), run_id) == whole, f"SIGKILL at boundary {k}"


def test_a_real_sigkill_right_after_a_checkpoint_resumes_bit_for_bit(reference, tmp_path):
    """The issue's case, through the command: SIGKILL just after a checkpoint is in place."""
    _, labels, whole = reference
    after_checkpoint = [k for k, label in enumerate(labels, 1) if label.startswith("step_") and "in place" in label]
    sigkill_then_resume(tmp_path / "killed", after_checkpoint[3], whole)


@pytest.mark.slow
def test_a_real_sigkill_at_every_write_boundary_resumes_bit_for_bit(reference, tmp_path):
    _, labels, whole = reference
    for k in range(1, len(labels) + 1):
        sigkill_then_resume(tmp_path / str(k), k, whole)


def test_a_run_folder_appears_whole_or_not_at_all(tmp_path, monkeypatch):
    cfg = load_config("parity", FAULT_RUN)
    store = RunStore(tmp_path)

    def kill_before_rename(label):
        if label == "run.json in place":
            raise Killed(label)
    with pytest.raises(Killed):
        boundaries(kill_before_rename, monkeypatch, lambda: store.create(cfg, "r"))
    assert not (tmp_path / "r").exists() and store.summaries() == []
    store.create(cfg, "r")  # the draft left behind does not stand in the way
    with pytest.raises(LossLabError, match="exists already"):
        store.create(cfg, "r")
