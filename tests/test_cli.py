"""The command as a user runs it: JSON outputs, and bad input as one line with exit 2."""

import json
import subprocess
import sys

import pytest

TINY = ["--set", "task.p=11", "--set", "model.d_model=32", "--set", "model.d_mlp=64",
        "--set", "train.max_steps=40", "--set", "train.eval_every=10", "--set", "optim.lr=3e-3"]


def losslab(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "losslab.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    out = losslab("run", "grokking", *TINY, "--out", root, "--json")
    assert out.returncode == 0, out.stderr
    return root, json.loads(out.stdout)


def test_run_json_has_the_promised_fields(finished_run):
    _, s = finished_run
    assert {"run_id", "run_dir", "status", "steps", "events", "final", "wall_s"} <= set(s)
    assert s["status"] == "completed" and s["steps"] == 40
    assert set(s["events"]) == {"t1", "t2", "t3", "t4"}
    assert set(s["final"]) == {"train_acc", "val_acc", "train_loss", "val_loss"}


def test_runs_and_show(finished_run):
    root, s = finished_run
    listed = json.loads(losslab("runs", "--out", root, "--json").stdout)
    assert [r["run_id"] for r in listed] == [s["run_id"]]
    shown = json.loads(losslab("show", s["run_id"], "--out", root, "--json").stdout)
    assert shown["config"]["task"]["p"] == 11 and shown["files"]["figures"][0].endswith("grokking.png")
    assert shown["files"]["checkpoints"]
    text = losslab("show", s["run_dir"]).stdout
    assert s["run_id"] in text and "[task]" in text


def test_presets_json():
    presets = json.loads(losslab("presets", "--json").stdout)
    assert {"grokking", "parity", "grokking-paper"} <= {p["name"] for p in presets}
    assert all(p["description"] for p in presets)


@pytest.mark.parametrize("args,message", [
    (["run", "nosuchpreset"], "unknown preset 'nosuchpreset'"),
    (["run", "grokking", "--set", "optim.lrr=1"], "'lrr' is not an argument of adamw"),
    (["run", "grokking", "--set", "task.train_fraction=1.5"], "task.train_fraction"),
    (["run", "grokking", "--set", "task.op=div", "--set", "task.p=100"], "p=100 is not prime"),
    (["run", "grokking", "--set", "optim.lr=-1"], "optim.lr"),
    (["show", "nosuchrun"], "no run 'nosuchrun'"),
    (["resume", "nosuchrun"], "no run 'nosuchrun'"),
    (["run", "grokking", "--bogus"], "No such option"),
    (["run", "grokking", "--set", "optim.name=lion"], "unknown optimizer 'lion'"),
    (["run", "grokking", "--set", "optim.name=sam", "--set", "optim.rho=0"], "rho must be > 0"),
    (["run", "grokking", "--set", "optim.name=sam", "--set", "optim.p=0.5"], "p must be in [1, inf]"),
    (["run", "parity", "--set", "optim.name=muon"], "the model has no 2D hidden matrices for Muon"),
])
def test_bad_input_is_one_line_and_exit_2(finished_run, args, message):
    root, _ = finished_run
    before = sorted(p.name for p in root.rglob("*"))
    out = losslab(*args, "--out", root)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and message in out.stderr and "Traceback" not in out.stderr
    assert sorted(p.name for p in root.rglob("*")) == before  # nothing in the store changed


def test_corrupt_run_folder(finished_run, tmp_path):
    root, s = finished_run
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "run.json").write_text("{")
    (broken / "config.toml").write_text("")
    for command in ("show", "resume"):
        out = losslab(command, broken)
        assert out.returncode == 2 and "corrupt run.json" in out.stderr and out.stderr.count("\n") == 1
    out = losslab("resume", s["run_dir"])
    assert out.returncode == 2 and "nothing to resume" in out.stderr
