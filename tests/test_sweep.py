"""Sweeps: expansion, resumability, failures, refusals, and the command."""

import json
import subprocess
import sys
import textwrap

import pytest

from losslab.core.errors import LossLabError
from losslab.store import RunStore
from losslab.store.records import Job
from losslab.sweep.executors import LocalExecutor
from losslab.sweep.jobs import run_point
from losslab.sweep.run import Sweep
from losslab.sweep.spec import expand, grid_values, load_spec
from tests.helpers import losslab_here, sweep_file


def test_grid_is_the_product_and_random_draws_are_seeded(tmp_path):
    spec = load_spec(sweep_file(tmp_path, """
        [grid]
        "optim.lr" = [1e-3, 3e-3]
        seed = [0, 1, 2]
        [random]
        samples = 4
        seed = 7
        [random.axes]
        "optim.weight_decay" = {low = 0.01, high = 10.0, log = true}
        "model.d_mlp" = {low = 16, high = 64, integer = true}
        "optim.name" = {choices = ["adamw", "adam"]}
    """))
    values = grid_values(spec)
    assert len(values) == 2 * 3 * 4
    assert {(v["optim.lr"], v["seed"]) for v in values} == {(a, b) for a in (1e-3, 3e-3) for b in (0, 1, 2)}
    assert all(0.01 <= v["optim.weight_decay"] <= 10 and isinstance(v["model.d_mlp"], int) for v in values)
    assert {v["optim.name"] for v in values} == {"adamw", "adam"}
    assert grid_values(spec) == values  # the same seed draws the same points
    points = expand(spec)
    assert points[5].config.optim.lr == points[5].values["optim.lr"]
    assert points[5].config.model.d_mlp == points[5].values["model.d_mlp"]
    assert len({p.run_id for p in points}) == len(points)


@pytest.mark.parametrize("body,message", [
    ('[grid]\n"optim.lrr" = [1e-3]\n', "optim.lrr=0.001"),
    ('[grid]\n"optim.lr" = []\n', "grid axis 'optim.lr' is empty"),
    ('[grid]\n"task.p" = [11, 12]\n"task.op" = ["div"]\n', "p=12 is not prime"),
    ('', "no axes"),
    ('seed = 3\n', "seed: unknown key"),
    ('[random]\nsamples = 2\n[random.axes]\n"optim.lr" = {low = 1.0, high = 0.1}\n', "low <= high"),
])
def test_bad_sweep_files_are_refused_before_anything_runs(tmp_path, body, message):
    store = RunStore(tmp_path / "runs")
    with pytest.raises(LossLabError, match=message.replace("(", r"\(")):
        Sweep.from_file(sweep_file(tmp_path, body), store)
    assert not store.root.exists()


def test_a_failed_run_is_recorded_and_the_others_finish_then_a_rerun_skips_them(tmp_path):
    """Muon needs hidden matrices; a one-hidden-layer MLP has none (input layer and head): those
    runs fail when their optimizer is built, the two-hidden-layer ones train."""
    store = RunStore(tmp_path / "runs")
    body = """
        [grid]
        "model" = [{name = "mlp", depth = 2, width = 16}, {name = "mlp", depth = 1, width = 16}]
        "optim.name" = ["muon"]
        "optim.lr" = [0.01, 0.02]
    """
    path = sweep_file(tmp_path, body)
    result = Sweep.from_file(path, store).run(LocalExecutor(1))
    by_depth = {}
    for row in result["rows"]:
        by_depth.setdefault(json.loads(row["axis:model"])["depth"], []).append(row)
    assert [r["status"] for r in by_depth[2]] == ["completed", "completed"]
    assert all(r["status"] == "failed" and "hidden matrices" in r["error"] for r in by_depth[1])
    assert result["failed"] == 2
    again = Sweep.from_file(path, store).run(LocalExecutor(1))
    assert again["skipped"] == 2 and again["ran"] == 2 and again["failed"] == 2


def test_an_interrupted_run_resumes_and_the_table_equals_an_uninterrupted_sweep(tmp_path):
    body = '[grid]\n"optim.weight_decay" = [0.1, 1.0]\n'
    whole = Sweep.from_file(sweep_file(tmp_path, body), RunStore(tmp_path / "a")).run(LocalExecutor(1))

    store = RunStore(tmp_path / "b")
    sweep = Sweep.from_file(sweep_file(tmp_path, body), store)
    first = sweep.points[0]
    # a run stopped half way, as a killed sweep leaves it (interrupted at a checkpoint)
    from losslab.train.loop import prepare
    trainer = prepare(first.config, store, first.run_id)
    trainer.on_eval = lambda step, m, e: trainer.request_stop() if step >= 10 else None
    assert trainer.run()["status"] == "interrupted"
    resumed = sweep.run(LocalExecutor(1))
    assert resumed["ran"] == 2
    keep = ("index", "status", "steps", "t1", "t2", "train_loss", "val_acc", "signature_energy")
    assert [{k: r[k] for k in keep} for r in resumed["rows"]] == [{k: r[k] for k in keep} for r in whole["rows"]]


def test_a_changed_sweep_file_is_refused_unless_forced(tmp_path):
    store = RunStore(tmp_path / "runs")
    path = sweep_file(tmp_path, '[grid]\n"optim.weight_decay" = [0.1]\n')
    Sweep.from_file(path, store).run(LocalExecutor(1))
    path.write_text(path.read_text().replace("[0.1]", "[0.1, 0.5]"))
    with pytest.raises(LossLabError, match="changed since its first run"):
        Sweep.from_file(path, store)
    forced = Sweep.from_file(path, store, force=True).run(LocalExecutor(1))
    assert forced["ran"] == 1 and forced["skipped"] == 1


def test_run_point_never_raises():
    result = run_point(Job("x", {"task": {"p": "many"}}, "/nonexistent/place", threads=1))
    assert result["status"] == "failed" and result["error"]


@pytest.mark.slow  # 8 s; two workers stay in the default suite in test_stop and test_adversarial
def test_sweep_command_with_two_workers(tmp_path):
    path = sweep_file(tmp_path, '[grid]\n"optim.weight_decay" = [0.1, 1.0]\nseed = [0, 1]\n')
    out = losslab_here("sweep", path, "--workers", "2", "--out", tmp_path / "runs", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["ran"] == 4 and all(r["status"] == "completed" for r in result["rows"])
    # the same points run in this process, one after the other: the same results
    alone = Sweep.from_file(path, RunStore(tmp_path / "alone")).run(LocalExecutor(1))
    for a, b in zip(result["rows"], alone["rows"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5) and a["t1"] == b["t1"]
    shown = json.loads(losslab_here("sweep-show", "s", "--out", tmp_path / "runs", "--json").stdout)
    assert [r["run_id"] for r in shown] == [r["run_id"] for r in result["rows"]]
    assert [json.loads(r["config"])["optim"]["weight_decay"] for r in shown] == [0.1, 0.1, 1.0, 1.0]


def test_the_sweep_commands_refuse_bad_input_in_one_line(tmp_path):
    path = sweep_file(tmp_path, '[grid]\n"optim.weight_decay" = [0.1, 1.0]\n')
    for args, message in [(["sweep", path, "--executor", "spark"], "--executor must be one of"),
                          (["sweep", path, "--workers", "0"], "0 is not in [1, 1024]"),
                          (["sweep", tmp_path / "none.toml"], "sweep file not found"),
                          (["sweep-show", "nope", "--out", tmp_path / "runs"], "no sweep 'nope'")]:
        bad = losslab_here(*args)
        assert bad.returncode == 2 and message in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.slow  # a local Ray takes most of its 10 s to start; the address refusals stay in the default suite
def test_the_ray_executor_on_a_local_ray_gives_the_local_results(tmp_path):
    pytest.importorskip("ray")
    path = sweep_file(tmp_path, '[grid]\n"optim.weight_decay" = [0.1, 1.0]\n')
    out = losslab_here("sweep", path, "--executor", "ray", "--workers", "2", "--out", tmp_path / "ray", "--json")
    assert out.returncode == 0, out.stderr
    on_ray = json.loads(out.stdout)["rows"]
    alone = Sweep.from_file(path, RunStore(tmp_path / "alone")).run(LocalExecutor(1))["rows"]
    assert [r["status"] for r in on_ray] == ["completed", "completed"]
    for a, b in zip(on_ray, alone):
        assert a["run_id"] == b["run_id"] and a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)


def test_a_ray_cluster_that_cannot_be_reached_is_refused_before_anything_starts(tmp_path):
    pytest.importorskip("ray")
    path = sweep_file(tmp_path, '[grid]\n"optim.weight_decay" = [0.1, 1.0]\n')
    for address, message in [("127.0.0.1:1", "cannot reach the Ray cluster at 127.0.0.1:1"),
                             ("nonsense", "cannot reach the Ray cluster at nonsense")]:
        bad = losslab_here("sweep", path, "--executor", "ray", "--address", address, "--out", tmp_path / "bad")
        assert bad.returncode == 2 and message in bad.stderr
        assert not (tmp_path / "bad").exists()  # nothing started


PARITY_BODY = """
    [grid]
    seed = [0, 1]
    "optim.lr" = [0.05, 0.1]
    "optim.momentum" = [0.0, 0.9]
"""


def parity_sweep(tmp_path, body=PARITY_BODY):
    path = tmp_path / "p.toml"
    path.write_text('name = "p"\nbase = "parity"\nset = ["train.max_steps=40", "task.n=20", "model.width=64"]\n'
                    + textwrap.dedent(body))
    return path


KEEP = ("index", "status", "steps", "t1", "t2", "t3", "t4", "train_loss", "val_loss", "val_acc", "signature_energy")


@pytest.mark.slow  # the grokking group alone against runs alone stays in the default suite
def test_batched_training_gives_the_local_results(tmp_path):
    """Eight minibatch SGD runs (two seeds, so two data sets and minibatch orders; two learning
    rates; with and without momentum) trained in two vmapped groups of four, one per process."""
    from losslab.sweep.executors import BatchedExecutor
    body = "run_figures = false\n" + PARITY_BODY + '"optim.weight_decay" = [0.01]\n'
    batched = Sweep.from_file(parity_sweep(tmp_path, body), RunStore(tmp_path / "b")).run(BatchedExecutor(2))
    local = Sweep.from_file(parity_sweep(tmp_path, body), RunStore(tmp_path / "l")).run(LocalExecutor(1))
    assert all(r["status"] == "completed" for r in batched["rows"])
    assert not any((tmp_path / store / r["run_id"] / "figures" / "grokking.png").exists()
                   for store in ("b", "l") for r in batched["rows"])  # run_figures = false
    for a, b in zip(batched["rows"], local["rows"]):
        assert {k: a[k] for k in KEEP} == {k: b[k] for k in KEEP}  # bit for bit: each run steps with its own optimizer
        assert a["trained_with"] == 4 and b["trained_with"] is None
        # a checkpoint holds the run's own weights and optimizer state, not its group's stacks
        sizes = [{p.name: p.stat().st_size for p in (tmp_path / store / a["run_id"] / "checkpoints").iterdir()}
                 for store in ("b", "l")]
        assert sizes[0] == sizes[1]


@pytest.mark.slow  # a SAM run trained alone beside a batched group (4 s)
def test_a_sam_run_in_a_batched_sweep_trains_alone(tmp_path):
    from losslab.config import load_config
    from losslab.sweep.executors import BatchedExecutor
    from losslab.train.batched import batch_key
    assert batch_key(load_config("parity", ["optim.name=sam"])) is None
    assert batch_key(load_config("parity")) == batch_key(load_config("parity", ["seed=3", "optim.lr=0.3"]))
    assert batch_key(load_config("parity")) != batch_key(load_config("parity", ["model.width=10"]))
    body = '[grid]\n"optim.name" = ["sgd", "sam"]\nseed = [0, 1]\n'
    result = Sweep.from_file(parity_sweep(tmp_path, body), RunStore(tmp_path / "b")).run(BatchedExecutor(1))
    local = Sweep.from_file(parity_sweep(tmp_path, body), RunStore(tmp_path / "l")).run(LocalExecutor(1))
    assert [r["status"] for r in result["rows"]] == ["completed"] * 4
    assert all((tmp_path / "b" / r["run_id"] / "figures" / "grokking.png").exists() for r in result["rows"])  # run_figures
    assert [r["train_loss"] for r in result["rows"]] == pytest.approx([r["train_loss"] for r in local["rows"]],
                                                                      rel=1e-4)


def test_an_interrupted_batched_group_resumes_to_the_same_results(tmp_path):
    from losslab.sweep.executors import BatchedExecutor
    from losslab.sweep.jobs import prepare_point
    from losslab.train.batched import BatchedTrainers
    body = "run_figures = false\n" + PARITY_BODY  # in this process, without the runs' own figures
    whole = Sweep.from_file(parity_sweep(tmp_path, body), RunStore(tmp_path / "a")).run(BatchedExecutor(1))
    store = RunStore(tmp_path / "b")
    sweep = Sweep.from_file(parity_sweep(tmp_path, body), store)
    trainers = [prepare_point(Job(p.run_id, p.config.model_dump(mode="json"), str(store.root), threads=1,
                                  figures=False)) for p in sweep.points]

    def interrupt(step, m, e):
        if step >= 20:
            for t in trainers:
                t.request_stop()
    trainers[0].on_eval = interrupt
    BatchedTrainers(trainers).run()
    assert all(t.summary["status"] == "interrupted" for t in trainers)
    resumed = sweep.run(BatchedExecutor(1))
    assert [{k: r[k] for k in KEEP} for r in resumed["rows"]] == [{k: r[k] for k in KEEP} for r in whole["rows"]]


def test_grokking_runs_trained_in_a_group_are_the_runs_trained_alone(tmp_path):
    """AdamW on the grokking transformer, long enough for its events: the batched executor gives the
    local executor's runs bit for bit (a step on stacks rounded differently and moved t2), and each
    run's wall time is its share of the group's, so the runs' times add up to the group's."""
    from losslab.sweep.executors import BatchedExecutor

    body = 'run_figures = false\n[grid]\nseed = [0, 1]\n"optim.weight_decay" = [1.0]\n'
    path = tmp_path / "g.toml"
    path.write_text('name = "g"\nbase = "grokking"\nset = ["task.p=23", "model.d_model=32", "model.d_mlp=64", '
                    '"train.max_steps=300", "train.eval_every=10", "optim.lr=1e-2"]\n' + body)
    batched = Sweep.from_file(path, RunStore(tmp_path / "b")).run(BatchedExecutor(1))
    local = Sweep.from_file(path, RunStore(tmp_path / "l")).run(LocalExecutor(1))
    assert [r["t2"] for r in local["rows"]] != [None, None]  # the runs reach their events
    for a, b in zip(batched["rows"], local["rows"]):
        assert {k: a[k] for k in KEEP} == {k: b[k] for k in KEEP}
    summaries = [RunStore(tmp_path / "b").find(r["run_id"]).summary() for r in batched["rows"]]
    group = summaries[0]["group"]
    assert group["runs"] == 2 and summaries[1]["group"] == group
    assert 0.8 * group["wall_s"] <= sum(s["wall_s"] for s in summaries) <= 1.01 * group["wall_s"]


def test_a_run_that_stops_inside_its_window_has_no_comparable_energy(tmp_path):
    """The energy is a sum over the first record_loss_steps losses: a run that stopped before (after
    t4, or at max_steps) is marked partial and left out of the table's energy."""
    path = sweep_file(tmp_path, '[grid]\n"train.record_loss_steps" = [20, 400]\n')
    rows = Sweep.from_file(path, RunStore(tmp_path / "runs")).run(LocalExecutor(1))["rows"]
    whole, partial = rows  # 30 steps: a window of 20 is whole, one of 400 is not
    assert whole["signature_window"] == "full" and whole["signature_energy"] is not None
    assert partial["signature_window"] == "partial" and partial["signature_energy"] is None
    summary = RunStore(tmp_path / "runs").find(partial["run_id"]).summary()
    assert summary["signature"]["window"] == "partial" and summary["signature"]["points"] == 30


def test_checkpoints_fall_on_their_log_spaced_steps_without_an_evaluation_there(tmp_path):
    from losslab.train.cadence import log_spaced

    done = losslab_here("run", "grokking", "--set", "task.p=11", "--set", "model.d_model=16", "--set",
                        "model.d_mlp=32", "--set", "train.max_steps=1500", "--set", "train.eval_every=500", "--set",
                        "train.eval_per_decade=0", "--set", "train.checkpoint_per_decade=4", "--out", tmp_path,
                        "--json")
    summary = json.loads(done.stdout)
    stored = {int(p.stem.removeprefix("step_")) for p in (tmp_path / summary["run_id"] / "checkpoints").glob("step_*")}
    assert log_spaced(1500, 4) <= stored and {29, 51, 90, 158, 277, 487, 855} <= stored
    evaluated = {s for s, split, _, _ in RunStore(tmp_path).find(summary["run_id"]).metric_rows() if split == "val"}
    assert evaluated == {0, 500, 1000, 1500}  # the checkpoints added no evaluation


@pytest.mark.slow  # progress lines off a terminal
def test_a_piped_sweep_says_each_finished_run(tmp_path):
    path = sweep_file(tmp_path, '[grid]\nseed = [0, 1]\n')
    with open(tmp_path / "log", "w") as log:  # stderr a file, as a batch job's log
        done = subprocess.run([sys.executable, "-m", "losslab.cli", "sweep", str(path), "--workers", "1", "--out",
                               str(tmp_path / "runs")], stdout=subprocess.DEVNULL, stderr=log)
    assert done.returncode == 0
    lines = (tmp_path / "log").read_text().splitlines()
    assert any("sweep s (local): runs: 1/2" in line and "seed=0: completed" in line for line in lines), lines
    assert any("runs: 2/2" in line for line in lines), lines
