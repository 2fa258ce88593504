"""The command as a user runs it: JSON outputs, and bad input as one line with exit 2."""

import json
import subprocess
import sys

import pytest

from tests.helpers import TINY, losslab, losslab_here


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    out = losslab_here("run", "grokking", *TINY, "--out", root, "--json")
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
    listed = json.loads(losslab_here("runs", "--out", root, "--json").stdout)
    assert [r["run_id"] for r in listed] == [s["run_id"]]
    shown = json.loads(losslab_here("show", s["run_id"], "--out", root, "--json").stdout)
    assert shown["config"]["task"]["p"] == 11 and shown["files"]["figures"][0].endswith("grokking.png")
    assert shown["files"]["checkpoints"]
    text = losslab_here("show", s["run_dir"]).stdout
    assert s["run_id"] in text and "[task]" in text


def test_presets_json():
    presets = json.loads(losslab_here("presets", "--json").stdout)
    assert {"grokking", "parity", "grokking-paper"} <= {p["name"] for p in presets if p["kind"] == "run"}
    assert {"phase-diagram", "weight-decay-switch"} <= {p["name"] for p in presets if p["kind"] == "sweep"}
    assert all(p["description"] for p in presets)


def test_a_built_in_sweep_runs_by_name_and_presets_need_no_torch(tmp_path):
    """Every built-in sweep expands (its points validate) from outside a clone; listing the presets
    imports no torch (it is the command a newcomer runs first)."""
    from losslab.presets import sweep_names
    from losslab.sweep.spec import expand, load_spec

    for name in sweep_names():
        assert expand(load_spec(name))
    done = subprocess.run([sys.executable, "-c", "import sys; from losslab.cli import main; sys.argv = ['losslab', "
                           "'presets']; import losslab.cli.runs as r; r.presets(); print('torch' in sys.modules)"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip().endswith("False"), done.stderr
    version = losslab_here("--version")
    assert version.returncode == 0 and version.stdout.startswith("losslab ")


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
    (["run", "parity", "--set", "optim.name=muon"], "the model has no hidden matrices or filters for Muon"),
])
def test_bad_input_is_one_line_and_exit_2(finished_run, args, message):
    root, _ = finished_run
    before = sorted(p.name for p in root.rglob("*"))
    out = losslab_here(*args, "--out", root)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and message in out.stderr and "Traceback" not in out.stderr
    assert sorted(p.name for p in root.rglob("*")) == before  # nothing in the store changed


def test_bad_input_from_the_shell_is_one_line_and_exit_2(tmp_path):
    """The same as a user sees it, through a new interpreter (the cases above run main() here)."""
    out = losslab("run", "nosuchpreset", "--out", tmp_path)
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert out.stderr.startswith("losslab: error: unknown preset 'nosuchpreset' (known: ")
    assert ", grokking, grokking-paper, " in out.stderr  # the presets, by name
    assert not tmp_path.joinpath("index.sqlite").exists()


def test_corrupt_run_folder(finished_run, tmp_path):
    root, s = finished_run
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "run.json").write_text("{")
    (broken / "config.toml").write_text("")
    for command in ("show", "resume"):
        out = losslab_here(command, broken)
        assert out.returncode == 2 and "corrupt run.json" in out.stderr and out.stderr.count("\n") == 1
    out = losslab_here("resume", s["run_dir"])
    assert out.returncode == 2 and "nothing to resume" in out.stderr


def test_off_a_terminal_a_long_stage_says_where_it_is_even_while_nothing_is_counted(monkeypatch, capsys):
    """A stage whose units are long (a gallery's run in a pool) still writes a line every
    PROGRESS_LINE_S seconds to a log, with its count so far, and one as it ends."""
    import time

    from losslab.cli import common as cli
    from losslab.core import progress

    monkeypatch.setattr(cli, "PROGRESS_LINE_S", 0.1)
    with cli.stages("gallery") as stage:
        with stage("training 2 runs", total=2):
            time.sleep(0.35)
            progress.advance()
            time.sleep(0.25)
            progress.advance()
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1].startswith("losslab: gallery: training 2 runs: 2/2 in ") and lines[-1].endswith(", done")
    assert len(lines) >= 4 and lines[0].startswith("losslab: gallery: training 2 runs: 0/2 in ")
    assert any(": 1/2 in " in line and ", ETA " in line for line in lines)
