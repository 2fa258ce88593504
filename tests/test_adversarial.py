"""losslab under hostile input: every bad input is one line and exit 2, and changes nothing in
the store; names cannot escape it; corrupt files, a read-only store and a full disk are said,
not tracebacks. (Kills at every write boundary: test_faults.py; signals: test_stop.py.)"""

import json
import os
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from losslab.report.serve import make_server
from losslab.store import RunStore
from tests.helpers import (
    BODY,
    FAULT_RUN,
    TINY,
    in_mount_namespace,
    in_one_process,
    losslab_here,
    outcome,
    outputs,
    snapshot,
    table,
)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A store with one finished run, and files to feed the commands."""
    root = tmp_path_factory.mktemp("store")
    out = losslab_here("run", "grokking", *TINY, "--out", root / "runs", "--json")
    assert out.returncode == 0, out.stderr
    files = root / "files"
    files.mkdir()
    (files / "latin1.toml").write_bytes('name = "café"\n'.encode("latin-1"))
    (files / "binary.toml").write_bytes(bytes(range(256)))
    (files / "afile").write_text("not a folder")
    sweeps = {"dots": 'name = ".."\nbase = "parity"\n[grid]\nseed = [0]\n',
              "slash": 'name = "a/b"\nbase = "parity"\n[grid]\nseed = [0]\n',
              "huge": 'name = "huge"\nbase = "parity"\n[random]\nsamples = 1000000000\n'
                      '[random.axes]\n"optim.lr" = {low = 0.01, high = 0.1}\n',
              "product": 'name = "product"\nbase = "parity"\n[grid]\nseed = ' + str(list(range(1000))) +
                         '\n"optim.lr" = ' + str([0.01 * (i + 1) for i in range(1000)]) + '\n',
              "latin": None}
    for name, text in sweeps.items():
        path = files / f"sweep-{name}.toml"
        path.write_bytes(text.encode() if text else 'name = "é"\n'.encode("latin-1"))
    return root, json.loads(out.stdout)["run_id"]


BAD = [
    # sizes with no bound: refused before allocating, the size asked and the size possible said
    (["run", "grokking", "--set", "model.d_model=1000000"], "needs"),
    (["run", "parity", "--set", "model.width=100000000"], "of memory; this machine has"),
    (["run", "parity", "--set", "task.n=10000", "--set", "task.n_train=100000000"], "of memory"),
    (["run", "parity", "--set", "model.depth=1000000"], "model.depth"),
    (["hessian", "RUN", "--k", "10000000"], "10000000 is not in [1, 10000]"),
    (["hessian", "RUN", "--k", "100000"], "is not in [1, 10000]"),
    (["landscape", "RUN", "--points", "1000000000"], "is not in [2, 1001]"),
    (["optimize", "rosenbrock-nd", "--dim", "1e9"], "is not in [2, 4096]"),
    # seeds and counts beyond their bounds: refused, not a hang
    (["run", "parity", "--seed", str(2**70)], "is not in [0, 4294967295]"),
    (["run", "parity", "--set", "seed=-1"], "config seed"),
    (["run", "parity", "--set", f"seed={2**64}"], "config seed"),
    (["run", "parity", "--set", "train.max_steps=1e30"], "train.max_steps"),
    (["run", "parity", "--set", "train.max_steps=1000000000", "--set", "train.eval_every=1"], "evaluations"),
    (["run", "parity", "--set", "train.eval_every=1e21"], "train.eval_every"),
    (["sweep", "FILES/sweep-huge.toml"], "samples"),
    (["sweep", "FILES/sweep-product.toml"], "1,000,000 points"),
    # files that are not UTF-8
    (["run", "FILES/latin1.toml"], "not UTF-8"),
    (["run", "FILES/binary.toml"], "not UTF-8"),
    (["sweep", "FILES/sweep-latin.toml"], "not UTF-8"),
    # output paths that are files, folders, or in missing folders
    (["run", "parity", "--out", "FILES/afile"], "is a file, not a folder"),
    (["runs", "--out", "FILES/afile"], "is a file, not a folder"),
    (["show", "RUN", "--out", "FILES/afile"], "is a file, not a folder"),
    (["optimize", "rosenbrock", "--out", "FILES/afile"], "is a file, not a folder"),
    (["report", "RUN", "--html", "/no/dir/x.html"], "no folder /no/dir"),
    (["report", "RUN", "--html", "FILES"], "must end in .html"),
    (["export", "RUN", "--table", "/no/dir/x.csv"], "no folder /no/dir"),
    (["export", "RUN", "--table", "FILES/afile"], "must end in .csv or .parquet"),
    # numbers out of range, and values an optimizer refuses
    (["serve", "--port", "70000"], "70000 is not in [0, 65535]"),
    (["serve", "--port", "-1"], "-1 is not in [0, 65535]"),
    (["run", "grokking", "--set", "optim.betas=[0.9]"], "adamw refused its arguments"),
    (["run", "grokking", "--set", 'optim.betas=["a", "b"]'], "adamw refused its arguments"),
    (["optimize", "rosenbrock", "--optimizers", ","], "names no optimizer"),
    # accepted before, refused now: infinities and NaNs where a finite number belongs
    (["run", "grokking", "--set", "optim.lr=inf"], "optim.lr"),
    (["run", "grokking", "--set", "optim.lr=1e309"], "optim.lr"),
    (["run", "grokking", "--set", "optim.lr=nan"], "optim.lr"),
    (["run", "grokking", "--set", "optim.weight_decay=nan"], "optim.weight_decay"),
    (["run", "grokking", "--set", "task.train_fraction=nan"], "task.train_fraction"),
    (["run", "grokking", "--set", "train.checkpoint_every_s=inf"], "train.checkpoint_every_s"),
    (["run", "grokking", "--set", "optim.name=sam", "--set", "optim.rho=inf"], "rho must be finite"),
    (["landscape", "RUN", "--range", "-inf:inf"], "--range must be finite"),
    (["landscape", "RUN", "--range", "nan:1"], "--range must be finite"),
    (["sharpness", "RUN", "--rho", "inf"], "inf is not finite"),
    (["sharpness", "RUN", "--rho", "nan"], "nan is not finite"),
    (["sharpness", "RUN", "--keskar-eps", "0"], "0 is not in (0, inf]"),
    (["basin", "RUN", "--relative-tol", "-1"], "-1 is not in (0, 1]"),
    (["circuit", "--relative", "nan"], "nan is not finite"),
    (["double-descent", "--noise", "nan"], "nan is not finite"),
    (["double-descent", "--label-noise", "-0.1"], "is not in [0, 0.9]"),
    (["signature", "RUN", "--steps", "1e12"], "is not in [8, 1000000]"),
    (["connect", "RUN", "RUN", "--lr", "inf"], "inf is not finite"),
    (["noise-threshold", "--weight-decay", "inf"], "finite numbers"),
    (["speedup", "x", "--treatment", "a", "--baseline", "b", "--lr-factor", "-1"], "is not in (0, inf]"),
    # names that would escape the store, nest, read as an option or break the file system
    (["run", "parity", "--set", 'name="../../escaped"'], "config name"),
    (["run", "parity", "--set", 'name="a/b"'], "config name"),
    (["run", "parity", "--set", 'name=""'], "a name cannot be empty"),
    (["run", "parity", "--set", 'name="-rf"'], "cannot start with '-'"),
    (["run", "parity", "--set", 'name=".hidden"'], "cannot start with '.'"),
    (["run", "parity", "--set", 'name="a\\u0000b"'], "config name"),
    (["run", "parity", "--set", 'name="tab\\there"'], "config name"),
    (["run", "parity", "--set", f'name="{"x" * 300}"'], "at most 120 characters"),
    (["sweep", "FILES/sweep-dots.toml"], "name"),
    (["sweep", "FILES/sweep-slash.toml"], "name"),
    (["show", "a\x00b"], "no run"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[" ".join(a)[:60] for a, _ in BAD])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(hostile, args, message):
    root, run_id = hostile
    args = [run_id if a == "RUN" else a.replace("FILES", str(root / "files")) for a in args]
    if "--out" not in args:
        args += ["--out", root / "runs"]
    before = snapshot(root)
    done = losslab_here(*args)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert message in done.stderr, done.stderr
    assert snapshot(root) == before  # nothing written, nothing removed
    assert not (root.parent / "escaped").exists()


# ---------------------------------------------------------------- corrupt run folders


def corrupt_copy(hostile, tmp_path, damage) -> tuple[Path, str]:
    """A copy of the store whose run was interrupted (so that resume reads on), then damaged."""
    root, run_id = hostile
    store = tmp_path / "runs"
    shutil.copytree(root / "runs", store)
    summary = json.loads((store / run_id / "run.json").read_text())
    (store / run_id / "run.json").write_text(json.dumps({**summary, "status": "interrupted"}))
    damage(store / run_id)
    return store, run_id


def last_checkpoint(run: Path) -> Path:
    return sorted((run / "checkpoints").glob("*.pt"))[-1]


def _keep_only(state_of):
    def damage(run: Path):
        for path in sorted((run / "checkpoints").glob("*.pt"))[:-1]:
            path.unlink()
        path = last_checkpoint(run)
        torch.save(state_of(torch.load(path, weights_only=True)), path)
    return damage


# which commands read which file: those must refuse its damage in one line; the others work
READS = {"run.json": {"show", "resume", "report", "hessian", "export"}, "config.toml": {"show", "resume", "report",
                                                                                        "hessian"},
         "checkpoint": {"resume", "hessian"}, "metrics": {"resume", "report", "export"}}
CORRUPT = {
    "run.json is a list": (lambda r: (r / "run.json").write_text("[]"), "corrupt run.json"),
    "run.json is {}": (lambda r: (r / "run.json").write_text("{}"), "corrupt run.json"),
    "run.json is null": (lambda r: (r / "run.json").write_text("null"), "corrupt run.json"),
    "run.json steps a string": (lambda r: (r / "run.json").write_text(json.dumps(
        {**json.loads((r / "run.json").read_text()), "steps": "many"})), "corrupt run.json"),
    "run.json binary": (lambda r: (r / "run.json").write_bytes(b"\xff\xfe\x00"), "not UTF-8"),
    "config.toml binary": (lambda r: (r / "config.toml").write_bytes(bytes(range(256))), "not UTF-8"),
    "config.toml latin-1": (lambda r: (r / "config.toml").write_bytes('name = "é"'.encode("latin-1")), "not UTF-8"),
    "checkpoint a bare tensor": (_keep_only(lambda s: torch.zeros(3)), "not a losslab checkpoint"),
    "checkpoint without its step": (_keep_only(lambda s: {k: v for k, v in s.items() if k != "step"}),
                                    "not a losslab checkpoint"),
    "checkpoint step a string": (_keep_only(lambda s: {**s, "step": "ten"}), "not a losslab checkpoint"),
    "checkpoint garbage": (lambda r: last_checkpoint(r).write_bytes(os.urandom(500)), "unreadable checkpoint"),
    "checkpoint truncated": (lambda r: last_checkpoint(r).write_bytes(last_checkpoint(r).read_bytes()[:300]),
                             "unreadable checkpoint"),
    "metrics of another schema": (lambda r: pq.write_table(pa.table({"a": [1, 2]}), r / "metrics.parquet"),
                                  "metrics.parquet has columns"),
    "metrics truncated": (lambda r: (r / "metrics.parquet").write_bytes((r / "metrics.parquet").read_bytes()[:100]),
                          "corrupt metrics.parquet"),
}


@pytest.mark.parametrize("damage", list(CORRUPT))
@pytest.mark.parametrize("command", ["show", "resume", "report", "hessian", "export"])
def test_a_corrupt_run_folder_is_one_line_naming_what_is_wrong(hostile, tmp_path, damage, command):
    make_damage, message = CORRUPT[damage]
    store, run_id = corrupt_copy(hostile, tmp_path, make_damage)
    before = snapshot(store)
    extra = {"report": ["--out", store, "--html", tmp_path / "r.html"], "export": ["--table", tmp_path / "m.csv",
                                                                                    "--out", store]}
    done = losslab_here(command, run_id, *extra.get(command, ["--out", store]))
    damaged = next(f for f in READS if f in damage)
    if command not in READS[damaged]:  # it does not read the damaged file: it works
        assert done.returncode == 0, done.stderr
        return
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert message in done.stderr, done.stderr
    assert "no run, sweep or benchmark" not in done.stderr  # the run exists: what is wrong with it is said
    assert snapshot(store) == before


def test_a_refused_resume_leaves_the_run_as_it_was(hostile, tmp_path):
    """A run whose run.json says `{}` is not resumed and trained on."""
    store, run_id = corrupt_copy(hostile, tmp_path, lambda r: (r / "run.json").write_text("{}"))
    done = losslab_here("resume", run_id, "--out", store)
    assert done.returncode == 2 and "corrupt run.json" in done.stderr
    assert (store / run_id / "run.json").read_text() == "{}"


def test_a_broken_benchmark_is_one_line(tmp_path):
    folder = tmp_path / "runs" / "bench" / "quick-20260101-000000"
    folder.mkdir(parents=True)
    for results, trials in (("{broken", "[]"), ("[]", "[]"), ('{"clocks": 3}', "[]"), ("{}", "{}")):
        (folder / "results.json").write_text(results)
        (folder / "trials.json").write_text(trials)
        done = losslab_here("report", "quick", "--store", tmp_path / "runs")
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and "benchmark quick-" in done.stderr, \
            done.stderr


# ---------------------------------------------------------------- the index


@pytest.mark.parametrize("damage", ["garbage", "another schema", "a row not JSON"])
def test_runs_lists_the_folders_it_can_read_whatever_the_index(hostile, tmp_path, damage):
    root, run_id = hostile
    store = tmp_path / "runs"
    shutil.copytree(root / "runs", store)
    (store / "broken").mkdir()
    (store / "broken" / "run.json").write_text("[]")
    index = store / "index.sqlite"
    if damage != "a row not JSON":
        for suffix in ("", "-wal", "-shm"):
            Path(str(index) + suffix).unlink(missing_ok=True)
    if damage == "garbage":
        index.write_bytes(os.urandom(4096))
    elif damage == "another schema":
        with sqlite3.connect(index) as con:
            con.execute("CREATE TABLE other (x)")
    else:
        with sqlite3.connect(index) as con:
            con.execute("INSERT INTO runs (run_id, summary) VALUES ('ghost', '{not json')")
            con.execute("UPDATE runs SET summary = 'garbage' WHERE run_id = ?", (run_id,))
    done = losslab_here("runs", "--out", store, "--json")
    assert done.returncode == 0, done.stderr
    assert [s["run_id"] for s in json.loads(done.stdout)] == [run_id]  # read from its folder
    assert "Traceback" not in done.stderr and "warning" in done.stderr
    assert ("broken" in done.stderr) == (damage != "a row not JSON") and ("ghost" in done.stderr) == (
        damage == "a row not JSON")


# ---------------------------------------------------------------- read-only and full disks


@pytest.mark.slow  # a read-only store refused before any work stays in the default suite (test_hardening)
def test_a_read_only_store_is_read(hostile, tmp_path):
    root, run_id = hostile
    shutil.copytree(root / "runs", tmp_path / "src")
    (tmp_path / "ro").mkdir()
    ro = tmp_path / "ro"
    done = in_mount_namespace(
        f"mount --bind -o ro {tmp_path / 'src'} {ro} && cd {Path.cwd()} && "
        f"{sys.executable} -c 'import sys; from losslab.report.serve import index_page; from losslab.store import "
        f"RunStore; sys.stdout.write(index_page(RunStore(sys.argv[1])))' {ro} > {tmp_path / 'index.html'} && "
        + in_one_process(["runs", "--out", ro, "--json"],
                         ["report", run_id, "--out", ro, "--html", tmp_path / "page.html"],
                         ["report", run_id, "--store", ro]))
    assert "Traceback" not in done.stderr, done.stderr
    (listed, listed_code), (_, page_code), (_, default_code) = outputs(done.stdout)
    assert listed_code == page_code == 0 and [s["run_id"] for s in json.loads(listed)] == [run_id]
    assert (tmp_path / "page.html").is_file() and run_id in (tmp_path / "index.html").read_text()
    # the report's default place is in the read-only store: one line, exit 2
    assert default_code == 2 and "Read-only file system" in done.stderr
    assert done.stderr.count("losslab: error") == 1


@pytest.mark.slow  # 10 s on a real small file system; a checkpoint meeting a full disk stays in the default suite
def test_a_full_disk_interrupts_the_run_which_resumes_bit_for_bit_once_there_is_room(tmp_path):

    sets = " ".join(f"--set {s}" for s in FAULT_RUN)
    cli = f"{sys.executable} -m losslab.cli"
    disk = tmp_path / "disk"
    disk.mkdir()
    whole_run = losslab_here("run", "parity", *[a for s in FAULT_RUN for a in ("--set", s)], "--set", 'name="whole"',
                             "--out", tmp_path / "whole")  # the disk is what is tested, not this run's process
    assert whole_run.returncode == 0, whole_run.stderr
    done = in_mount_namespace(
        f"cd {Path.cwd()} && mount -t tmpfs -o size=100k tmpfs {disk} && {cli} run parity {sets} "
        f"--set 'name=\"full\"' --out {disk};"
        f" echo exit=$?; cp -r {disk} {tmp_path / 'kept'} && mount -o remount,size=20m {disk} && "
        f"{cli} resume full --out {disk} --json > /dev/null; echo resumed=$?; cp -r {disk} {tmp_path / 'after'}")
    assert "exit=2" in done.stdout and "the disk is full" in done.stderr and "Traceback" not in done.stderr, \
        done.stderr
    full = RunStore(tmp_path / "kept").find("full").summary()
    assert full["status"] == "interrupted" and "the disk is full" in full["stop_reason"]
    assert "resumed=0" in done.stdout, done.stderr
    [whole] = RunStore(tmp_path / "whole").summaries()
    assert outcome(RunStore(tmp_path / "after"), full["run_id"]) == outcome(RunStore(tmp_path / "whole"),
                                                                            whole["run_id"])


# ---------------------------------------------------------------- sweeps under faults


def test_a_killed_sweep_takes_its_workers_with_it_and_a_rerun_finishes_it(tmp_path):

    (tmp_path / "stop.toml").write_text(BODY)
    store = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "losslab.cli", "sweep", tmp_path / "stop.toml", "--out", store,
                             "--workers", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # once both workers train (each has begun a run: a worker that has not yet started cannot be seen
    # to die), the sweep is killed with -9: no handler runs
    deadline = time.time() + 120
    workers = []
    while time.time() < deadline and proc.poll() is None and (len(workers) < 2 or len(list(store.glob("stop-*"))) < 2):
        workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        time.sleep(0.02)
    proc.kill()
    assert proc.wait() == -signal.SIGKILL and len(workers) >= 2
    deadline = time.time() + 20
    while time.time() < deadline and any(Path(f"/proc/{w}").exists() for w in workers):
        time.sleep(0.1)
    assert not [w for w in workers if Path(f"/proc/{w}").exists()], "workers outlived their sweep"
    from losslab.sweep.executors import LocalExecutor
    from losslab.sweep.run import Sweep

    again = Sweep.from_file(tmp_path / "stop.toml", RunStore(store)).run(LocalExecutor(1))
    whole_store = tmp_path / "whole"
    whole = Sweep.from_file(tmp_path / "stop.toml", RunStore(whole_store)).run(LocalExecutor(1))
    assert table(again["rows"]) == table(whole["rows"])


def test_a_second_copy_of_a_running_sweep_is_refused_and_stale_failures_go(tmp_path):

    # runs long enough (a second each) that the first copy is still at its first point when the second asks
    (tmp_path / "stop.toml").write_text(BODY.replace("seed = [0, 1, 2, 3]", "seed = [0, 1]").replace(
        "train.max_steps=300", "train.max_steps=3000"))
    store = tmp_path / "runs"
    first = subprocess.Popen([sys.executable, "-m", "losslab.cli", "sweep", tmp_path / "stop.toml", "--out", store,
                              "--workers", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not list(store.glob("stop-*")):
        time.sleep(0.05)
    second = losslab_here("sweep", tmp_path / "stop.toml", "--out", store, "--workers", "1")
    assert second.returncode == 2 and "being run by another process" in second.stderr
    assert first.wait(120) == 0, first.stderr.read()
    # a failure recorded before (another process had the run) is gone once the run has finished
    manifest = store / "sweeps" / "stop" / "sweep.json"
    data = json.loads(manifest.read_text())
    data["failures"] = {"0": "LossLabError: run stop-x is being trained by another process"}
    manifest.write_text(json.dumps(data))
    from losslab.sweep.executors import LocalExecutor
    from losslab.sweep.run import Sweep

    rows = Sweep.from_file(tmp_path / "stop.toml", RunStore(store)).run(LocalExecutor(1))["rows"]
    assert rows[0]["status"] == "completed" and rows[0]["error"] is None


# ---------------------------------------------------------------- the web view under load


def test_serve_answers_200_concurrent_clients_and_refuses_bad_paths(hostile, capfd):
    root, run_id = hostile
    server = make_server(root / "runs", port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"

    def get(path: str) -> int:
        try:
            with urllib.request.urlopen(base + path, timeout=30) as response:
                response.read()
                return response.status
        except urllib.error.HTTPError as e:
            return e.code
    try:
        paths = ["/", f"/runs/{run_id}", "/runs/nope", "/plotly.min.js"] * 50
        started = time.time()
        with ThreadPoolExecutor(200) as pool:
            codes = list(pool.map(get, paths))
        assert time.time() - started < 30
        assert codes == [200, 200, 404, 200] * 50
        assert get("/runs/" + "x" * 5000) == 414
        assert get("/runs/" + "y" * 300) == 404
        assert get("/runs/%ff%fe") == 404
        assert get("/runs/..%2F..%2Fetc%2Fpasswd") == 404
    finally:
        server.shutdown()
        server.server_close()
    logged = capfd.readouterr().err
    assert "Traceback" not in logged and logged.count("404") >= 50


@pytest.mark.slow  # a warning's wording; serve's refusals stay in the default suite
def test_serve_warns_when_listening_beyond_the_loopback(hostile):
    root, _ = hostile
    proc = subprocess.Popen([sys.executable, "-m", "losslab.cli", "serve", "--host", "0.0.0.0", "--port", "0",
                             "--store", root / "runs"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    said = []
    try:  # its first lines, as it starts (however long its imports take on a loaded machine)
        deadline = time.time() + 60
        while time.time() < deadline and not any("listening" in line for line in said):
            if select.select([proc.stderr], [], [], 1)[0]:
                said.append(proc.stderr.readline())
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    assert any("warning: listening on 0.0.0.0" in line for line in said), said
