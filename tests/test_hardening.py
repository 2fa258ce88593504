"""The second round of hostile input: values that overflow or nest, store files that parse but
are not what they should be, links planted in the store, a full disk met by torch.save, types
that were coerced, work done before a refusal, the Python API, exit codes after a signal, and
the odd URL or host name. Each case: exit 2, one line, no traceback, the store unchanged, nothing
written outside it, no hang."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import losslab as ll
from losslab.core.errors import LossLabError
from losslab.core.files import StoreWriteError, atomic_write
from losslab.store import RunStore
from tests.helpers import TINY, in_mount_namespace, in_one_process, losslab_here, outputs, snapshot


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A store with one finished tiny run (its folder copied, then damaged, by each test)."""
    root = tmp_path_factory.mktemp("hardening")
    done = losslab_here("run", "grokking", *TINY, "--out", root / "runs", "--json")
    assert done.returncode == 0, done.stderr
    return root / "runs", json.loads(done.stdout)["run_id"]


@pytest.fixture
def store(finished, tmp_path):
    """A private copy of the finished store, beside an `outside` folder that must stay empty."""
    source, run_id = finished
    shutil.copytree(source, tmp_path / "runs")
    (tmp_path / "outside").mkdir()
    return tmp_path / "runs", run_id


def refused(store: Path, *args, message: str) -> None:
    """The command refuses in one line with `message`, exit 2, and changes nothing in the store or
    beside it."""
    before = snapshot(store.parent)
    done = losslab_here(*args, "--out", store)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert message in done.stderr, done.stderr
    assert snapshot(store.parent) == before


def damage_summary(run: Path, change) -> None:
    summary = json.loads((run / "run.json").read_text())
    change(summary)
    (run / "run.json").write_text(json.dumps(summary))


# ---------------------------------------------------------------- 1. values that overflow or nest


@pytest.mark.parametrize("args,message", [
    (["run", "grokking", "--set", "optim.lr=1e308"], "optim.lr"),
    (["run", "grokking", "--set", "optim.lr=1e20", "--set", "optim.weight_decay=1e20"], "lr x weight_decay"),
    (["run", "grokking", "--set", "optim.name=sgd", "--set", "optim.momentum=1e300"], "momentum must be finite"),
    (["run", "parity", "--set", "task.name=zipf", "--set", "task.offset=1e300"], "offset"),
    (["landscape", "RUN", "--range", "-1e308:1e308"], "--range lies within"),
    (["optimize", "rosenbrock", "--optimizers", ",".join(["sgd"] * 2000)], "at most 64"),
    (["optimize", "rosenbrock", "--optimizers", "sgd,adam,sgd"], "sgd more than once"),
    (["run", "grokking", "--set", "x=" + "[" * 2000 + "]" * 2000], "nested too deep"),
])
def test_values_that_overflow_or_nest_are_refused(store, args, message):
    root, run_id = store
    refused(root, *[run_id if a == "RUN" else a for a in args], message=message)


def test_a_config_nested_2000_deep_is_refused(store, tmp_path):
    deep = tmp_path / "deep.toml"
    deep.write_text("a = " + "[" * 2000 + "]" * 2000 + "\n")
    refused(store[0], "run", deep, message="nested too deep")


# ---------------------------------------------------------------- 2. store files that parse but are wrong


def test_a_summary_of_the_wrong_shape_is_one_line_and_the_other_runs_are_listed(store):
    root, run_id = store
    second = losslab_here("run", "grokking", *TINY, "--out", root, "--json")
    other = json.loads(second.stdout)["run_id"]
    (root / "index.sqlite").unlink()  # the folders are read: no index row hides the damage
    for change, what in ((lambda s: s.pop("final"), "final"), (lambda s: s.pop("wall_s"), "wall_s"),
                         (lambda s: s.update(final="y"), "final"), (lambda s: s.update(wall_s="x"), "wall_s")):
        shutil.copy(root / other / "run.json", root / "saved.json")
        damage_summary(root / other, change)
        refused(root, "show", other, message=f"corrupt run.json ({what}")
        listed = losslab_here("runs", "--out", root)
        assert listed.returncode == 0 and run_id in listed.stdout and other not in listed.stdout
        assert f"warning: run {other}: corrupt run.json" in listed.stderr
        shutil.move(root / "saved.json", root / other / "run.json")


def test_markup_in_a_stored_status_is_printed_as_it_is(store):
    root, run_id = store
    damage_summary(root / run_id, lambda s: s.update(status="[/bold]x"))
    (root / "index.sqlite").unlink()
    for args in (["runs"], ["show", run_id]):
        done = losslab_here(*args, "--out", root)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
        assert "[/bold]x" in done.stdout


def test_an_empty_config_is_corrupt_not_the_default(store):
    root, run_id = store
    (root / run_id / "config.toml").write_text("")
    refused(root, "show", run_id, message="corrupt config.toml (no name, seed, task")


def test_checkpoints_as_a_file_is_one_line(store):
    root, run_id = store
    shutil.rmtree(root / run_id / "checkpoints")
    (root / run_id / "checkpoints").write_text("x")
    refused(root, "hessian", run_id, message="checkpoints/ is a file, not a folder")


@pytest.mark.parametrize("index", ["a folder", "a link to /dev/zero", "a link out of the store"])
def test_an_index_that_is_no_file_hides_no_run(store, index, tmp_path):
    root, run_id = store
    (root / "index.sqlite").unlink()
    if index == "a folder":
        (root / "index.sqlite").mkdir()
    else:
        target = "/dev/zero" if "zero" in index else tmp_path / "outside" / "index.sqlite"
        (root / "index.sqlite").symlink_to(target)
    done = losslab_here("runs", "--out", root)
    assert done.returncode == 0 and run_id in done.stdout, done.stderr
    assert "unreadable index" in done.stderr and "no runs" not in done.stdout


def test_a_fifo_among_the_checkpoints_is_refused_not_waited_on(store):
    root, run_id = store
    os.mkfifo(root / run_id / "checkpoints" / "step_00099999.pt")
    done = subprocess.run([sys.executable, "-m", "losslab.cli", "hessian", run_id, "--out", root],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "is a FIFO, not a file" in done.stderr


# ---------------------------------------------------------------- 3. links planted in the store


@pytest.mark.parametrize("linked,args", [
    ("analyses", ["hessian", "RUN", "--k", "1"]),
    ("figures", ["landscape", "RUN", "--points", "3"]),
    ("figures", ["double-descent", "--run", "RUN"]),
    ("analyses", ["sharpness", "RUN", "--steps", "1", "--restarts", "0"]),
])
def test_a_linked_folder_of_a_run_is_refused_before_any_work(store, linked, args):
    root, run_id = store
    outside = root.parent / "outside"
    shutil.rmtree(root / run_id / linked, ignore_errors=True)
    (root / run_id / linked).symlink_to(outside, target_is_directory=True)
    refused(root, *[run_id if a == "RUN" else a for a in args], message="leads out of")
    assert not any(outside.iterdir())


def test_a_linked_checkpoints_folder_takes_no_checkpoint_on_resume(store):
    root, run_id = store
    outside = root.parent / "outside"
    damage_summary(root / run_id, lambda s: s.update(status="interrupted"))
    for path in (root / run_id / "checkpoints").iterdir():
        shutil.copy(path, outside / path.name)
    shutil.rmtree(root / run_id / "checkpoints")
    (root / run_id / "checkpoints").symlink_to(outside, target_is_directory=True)
    before = snapshot(outside)
    refused(root, "resume", run_id, message="leads out of")
    assert snapshot(outside) == before


def test_a_run_folder_that_is_a_link_is_neither_analysed_nor_served(store):
    from losslab.report.serve import StoreHandler

    root, run_id = store
    outside = root.parent / "outside"
    shutil.move(root / run_id, outside / run_id)
    (root / run_id).symlink_to(outside / run_id, target_is_directory=True)
    before = snapshot(outside)
    refused(root, "hessian", run_id, message="is a link")
    assert snapshot(outside) == before
    handler = type("H", (StoreHandler,), {"store": RunStore(root), "plotly_js": b""})
    with pytest.raises(LossLabError, match="is a link"):
        handler._page(handler, f"/runs/{run_id}")


def test_a_link_planted_at_the_temporary_name_is_not_written_through(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("untouched")
    (tmp_path / "run.json.tmp").symlink_to(outside)
    atomic_write(tmp_path / "run.json", lambda p: p.write_text("{}"))
    assert outside.read_text() == "untouched" and (tmp_path / "run.json").read_text() == "{}"


# ---------------------------------------------------------------- 4. a full disk met by torch.save


def test_a_failed_torch_save_leaves_no_temporary_and_reads_as_a_full_disk(tmp_path, monkeypatch):
    def half_then_fail(path):
        Path(path).write_bytes(b"half")
        raise RuntimeError("[enforce fail at inline_container.cc:595] . PytorchStreamWriter failed writing file")
    with pytest.raises(StoreWriteError) as caught:
        atomic_write(tmp_path / "step.pt", half_then_fail)
    assert not caught.value.full and "PytorchStreamWriter" in str(caught.value)
    monkeypatch.setattr("losslab.core.files.almost_full", lambda folder: True)
    with pytest.raises(StoreWriteError) as caught:
        atomic_write(tmp_path / "step.pt", half_then_fail)
    assert caught.value.full and "the disk is full" in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_a_run_whose_checkpoint_meets_a_full_disk_ends_interrupted_and_resumes(tmp_path, monkeypatch):
    real_save, calls = torch.save, []

    def save_until_full(obj, f, *args, **kwargs):
        calls.append(f)
        if len(calls) == 3:
            Path(f).write_bytes(b"half")
            raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")
        return real_save(obj, f, *args, **kwargs)
    monkeypatch.setattr(torch, "save", save_until_full)
    monkeypatch.setattr("losslab.core.files.almost_full", lambda folder: True)
    root = tmp_path / "runs"
    done = losslab_here("run", "grokking", *TINY, "--out", root)
    assert done.returncode == 2 and "the disk is full" in done.stderr, done.stderr
    [summary] = RunStore(root).summaries()
    assert summary["status"] == "interrupted" and not list(root.rglob("*.tmp"))
    monkeypatch.setattr(torch, "save", real_save)
    assert losslab_here("resume", summary["run_id"], "--out", root).returncode == 0


# ---------------------------------------------------------------- 5. types that were coerced, arguments run anyway


@pytest.mark.parametrize("args,message", [
    (["run", "grokking", "--set", "train.max_steps=true"], "train.max_steps: Input should be a valid integer"),
    (["run", "grokking", "--set", 'seed="0"'], "seed: Input should be a valid integer"),
    (["run", "grokking", "--set", "train.max_steps=2\noptim.lr=5"], "one key=value"),
    (["landscape", "RUN", "--direction", "pca0"], "unknown direction 'pca0'"),
    (["landscape", "RUN", "--direction", "hessian0"], "unknown direction 'hessian0'"),
    (["landscape", "RUN", "--dims", "2", "--direction2", "pca0"], "unknown direction 'pca0'"),
    (["landscape", "RUN", "--range", ""], "--range expects START:STOP"),
    (["gallery", "--only", ""], "--only names no entry"),
    (["gallery", "--only", " , "], "--only names no entry"),
    (["phase", "any", "--x", "optim.lr", "--y", "optim.lr"], "two different axes"),
    (["double-descent", "--run", "RUN", "--model", "transformer"], "--model: settings of the model-wise curve"),
    (["double-descent", "--run", "RUN", "--seeds", "3"], "--seeds: settings of the model-wise curve"),
])
def test_coerced_types_and_arguments_that_ran_anyway_are_refused(store, args, message):
    root, run_id = store
    args = [run_id if a == "RUN" else a for a in args]
    if args[0] == "gallery":
        args += ["--list"]  # --only is read before anything is listed or made
        done = losslab_here(*args)
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
        return
    refused(root, *args, message=message)


# ---------------------------------------------------------------- 6. every argument checked before any work


def test_an_unknown_trace_method_is_refused_before_the_eigenvalues(store):
    root, run_id = store
    refused(root, "hessian", run_id, "--trace", "--trace-method", "magic", message="--trace-method must be one of")


def test_a_read_only_store_is_refused_before_any_work(store, tmp_path):
    root, run_id = store
    damage_summary(root / run_id, lambda s: s.update(status="interrupted"))
    sweep = tmp_path / "sweep.toml"
    sweep.write_text('name = "ro"\nbase = "parity"\nset = ["train.max_steps=20"]\n[grid]\nseed = [0]\n')
    (tmp_path / "ro").mkdir()
    commands = [["hessian", run_id], ["resume", run_id], ["sweep", sweep], ["landscape", run_id, "--points", 3]]
    done = in_mount_namespace(f"mount --bind -o ro {root} {tmp_path / 'ro'} && cd {Path.cwd()} && "
                              + in_one_process(*[[*c, "--out", tmp_path / "ro"] for c in commands]))
    lines = done.stderr.splitlines()
    assert [code for _, code in outputs(done.stdout)] == [2] * 4, (done.stdout, lines)
    assert len(lines) == 4 and all(line.startswith("losslab: error:") for line in lines), lines
    assert all("writable" in line for line in lines), lines


# ---------------------------------------------------------------- 7. the Python API


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(5, 3)

    def forward(self, x):
        return self.fc(x)


@pytest.mark.parametrize("data,what", [
    ((torch.randn(8, 4), torch.zeros(8, dtype=torch.long)), "wrong width"),
    ((torch.randn(8, 5), torch.zeros(6, dtype=torch.long)), "wrong target length"),
    ((torch.randn(8, 5), torch.full((8,), 7)), "class out of range"),
    ((torch.randn(8, 5), torch.zeros(8)), "float targets"),
    ((torch.ones(8, 5, dtype=torch.long), torch.zeros(8, dtype=torch.long)), "integer inputs"),
])
def test_an_objective_whose_data_does_not_fit_is_one_line(data, what):
    with pytest.raises(LossLabError, match="the data does not fit the model and loss") as caught:
        ll.Objective(Net(), F.cross_entropy, data)
    assert "\n" not in str(caught.value), what


def test_the_analyses_refuse_bad_arguments_before_any_product():
    torch.manual_seed(0)
    obj = ll.Objective(Net(), F.cross_entropy, (torch.randn(16, 5), torch.randint(0, 3, (16,))))
    with pytest.raises(LossLabError, match="SLQ needs steps >= 1"):
        ll.hessian_density(obj, steps=0)
    with pytest.raises(LossLabError, match="NaN or infinite"):
        ll.loss_line(obj, torch.full((obj.size,), float("nan")))
    with pytest.raises(LossLabError, match="unknown trace method"):
        ll.hessian_trace(obj, method="magic")


@pytest.mark.parametrize("change,message", [
    ({"probe": None}, "probe must be data"),
    ({"measures": None}, "measures must be a list"),
    ({"every": True}, "every must be an integer >= 1"),
    ({"signature_steps": -1}, "signature_steps must be an integer >= 0"),
    ({"store": "FILE/runs"}, "is a file, not a folder"),
])
def test_the_monitors_arguments_are_checked_before_anything_is_written(tmp_path, change, message):
    (tmp_path / "afile").write_text("x")
    model = Net()
    args = {"probe": (torch.randn(8, 5), torch.zeros(8, dtype=torch.long)), "loss": F.cross_entropy,
            "store": tmp_path / "runs", **change}
    if args["store"] == "FILE/runs":
        args["store"] = tmp_path / "afile" / "runs"
    with pytest.raises(LossLabError, match=message):
        ll.Monitor(model, torch.optim.SGD(model.parameters(), lr=0.1), **args)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


# ---------------------------------------------------------------- 8. a signal after the last piece of work


def test_a_signal_after_the_sweeps_last_point_exits_130(tmp_path, monkeypatch):
    import losslab.cli.sweeps as sweeps

    sweep = tmp_path / "sweep.toml"
    sweep.write_text('name = "late"\nbase = "parity"\nset = ["train.max_steps=20", "task.n=10", "model.width=8"]\n'
                     '[grid]\nseed = [0, 1]\n')
    printed = sweeps._print_sweep

    def print_then_signalled(rows):  # the points are done and written: the signal comes as the table prints
        printed(rows)
        os.kill(os.getpid(), signal.SIGINT)
    monkeypatch.setattr(sweeps, "_print_sweep", print_then_signalled)
    done = losslab_here("sweep", sweep, "--workers", "1", "--out", tmp_path / "runs")
    assert done.returncode == 130, done.stderr
    assert len(RunStore(tmp_path / "runs").summaries()) == 2


# ---------------------------------------------------------------- 9. other


def test_an_unknown_storage_scheme_and_a_non_ascii_host_are_one_line(store):
    root, _ = store
    pytest.importorskip("optuna")
    refused(root, "tune", "phase-diagram", "--storage", "foo://x", "--trials", "1",
            message="not a database URL this machine can open")
    refused(root, "serve", "--host", "hôst", "--port", "0", message="--host 'hôst'")


def test_a_linked_sweep_folder_is_not_served(store, tmp_path):
    from losslab.report.serve import StoreHandler

    root, _ = store
    (tmp_path / "outside" / "results.parquet").write_text("x")
    (root / "sweeps").mkdir()
    (root / "sweeps" / "planted").symlink_to(tmp_path / "outside", target_is_directory=True)
    handler = type("H", (StoreHandler,), {"store": RunStore(root), "plotly_js": b""})
    with pytest.raises(LossLabError, match="leads out of"):
        handler._page(handler, "/sweeps/planted")
