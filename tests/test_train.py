import json
import math
import os
import signal
import subprocess
import sys

import pytest
import torch

from losslab.config import load_config
from losslab.store import RunStore
from losslab.train.loop import Trainer, resume, train
from tests.helpers import losslab_here


def measured(run):
    """A run's metric rows but the training time, the one measurement a clock makes."""
    return [r for r in run.metric_rows() if r[2] != "train_s"]


def test_a_run_is_reproducible_bit_for_bit(store, tiny_cfg):
    a, b = train(tiny_cfg(), store), train(tiny_cfg(), store)
    rows = [measured(store.find(s["run_id"])) for s in (a, b)]
    assert rows[0] == rows[1] and len(rows[0]) > 20
    c = train(tiny_cfg("seed=1"), store)
    assert measured(store.find(c["run_id"])) != rows[0]


@pytest.mark.parametrize("optim,per_step", [([], 1.0), (["optim.name=sam"], 2.0)])
def test_cost_rows_count_gradients_and_training_time(store, tiny_cfg, optim, per_step):
    s = train(tiny_cfg(*optim), store)
    rows = store.find(s["run_id"]).metric_rows()
    grads = {step: v for step, split, name, v in rows if name == "grad_evals"}
    assert grads and all(v == per_step * step for step, v in grads.items())
    times = [v for step, split, name, v in sorted(rows) if name == "train_s"]
    assert len(times) == len(grads) and times == sorted(times) and times[-1] < s["wall_s"]


MINIBATCH_SGD = ["train.max_steps=80", "train.stop_after_t4=0", "optim.momentum=0.9",
                 "optim.schedule.name=cosine", "optim.clip_grad_norm=1.0"]


@pytest.mark.parametrize("preset,optim", [
    ("grokking", []),
    ("parity", []),
    ("grokking", ["optim.name=sam", "optim.base=adamw", "optim.rho=0.1"]),
    ("grokking", ["optim.name=shampoo", "optim.precondition_every=3", "optim.graft=adam", "optim.momentum=0.5"]),
    ("grokking", ["optim.name=muon", "optim.lr=0.02"]),
    ("grokking", ["optim.name=schedulefree_adamw", "optim.warmup_steps=5"]),
    ("parity", ["optim.name=svrg", "optim.snapshot_every=7", "optim.lr=0.05", "optim.momentum=0.5"]),
    ("grokking", ["optim.name=grokfast_ma", "optim.window=5"]),
], ids=["adamw", "sgd-minibatch", "sam", "shampoo", "muon", "schedulefree", "svrg-minibatch", "grokfast-ma"])
def test_resume_after_interrupt_equals_uninterrupted(store, tiny_cfg, preset, optim):
    """Full-batch AdamW, minibatch SGD with momentum, a cosine schedule and clipping, and
    losslab's own optimizers, whose state (roots, snapshots, momenta) must survive a restart."""
    cfg = tiny_cfg(*optim) if preset == "grokking" else load_config("parity", MINIBATCH_SGD + optim)
    whole = train(cfg, store)

    run = store.create(cfg)
    trainer = Trainer(cfg, run, store)
    stop_at = 23

    def interrupt(step, metrics, events):
        if step >= stop_at:
            trainer.request_stop(signal.SIGINT)
    trainer.on_eval = interrupt
    first = trainer.run()
    assert first["status"] == "interrupted" and first["steps"] < cfg.train.max_steps
    second = resume(store.find(run.path), store)
    assert second["status"] == "completed" and second["steps"] == whole["steps"]
    assert measured(store.find(run.path)) == measured(store.find(whole["run_id"]))
    assert second["events"] == whole["events"]


def test_the_training_device_is_chosen_checked_and_left_out_of_checkpoints(store, tiny_cfg):
    """auto trains where torch sees a GPU (here: the CPU, bit for bit as cpu); a CUDA device that is
    not there is refused before a run folder is made; checkpoints hold CPU tensors only."""
    from losslab.core.errors import LossLabError
    from losslab.train.loop import training_device

    auto, cpu = train(tiny_cfg(), store), train(tiny_cfg("train.device=cpu"), store)
    assert torch.cuda.is_available() or measured(store.find(auto["run_id"])) == measured(store.find(cpu["run_id"]))
    checkpoint = store.find(cpu["run_id"]).load_checkpoint(store.find(cpu["run_id"]).checkpoints()[-1])
    assert {t.device.type for t in checkpoint["model"].values()} == {"cpu"}
    with pytest.raises(LossLabError, match="train.device"):
        load_config("grokking", ["train.device=gpu"])
    missing = f"cuda:{torch.cuda.device_count()}"
    with pytest.raises(LossLabError, match=f"train.device = {missing}, but torch sees"):
        training_device(missing)


@pytest.mark.parametrize("dtype", ["float64", "bfloat16"])
def test_train_dtype_is_the_parameters_and_inputs_and_the_checkpoints(store, tiny_cfg, dtype):
    """The run's parameters, float inputs and checkpoints are in train.dtype; it trains and its
    checkpoint loads for the analyses in that dtype. float32 stays out of the written config."""
    from losslab.config import to_toml
    from losslab.core.errors import LossLabError
    from losslab.train.checkpoints import load_checkpoint

    cfg = load_config("parity", ["train.max_steps=60", "train.eval_every=10", f"train.dtype={dtype}"])
    run = store.create(cfg)
    trainer = Trainer(cfg, run, store)
    assert {p.dtype for p in trainer.stepper.model.parameters()} == {getattr(torch, dtype)}
    assert trainer.stepper.task.x_train.dtype == getattr(torch, dtype)
    summary = trainer.run()
    assert summary["status"] == "completed" and math.isfinite(summary["final"]["train_loss"])
    ck = load_checkpoint(store.find(run.path))
    assert {p.dtype for p in ck.model.parameters()} == {getattr(torch, dtype)}
    assert f'dtype = "{dtype}"' in to_toml(cfg) and "dtype" not in to_toml(tiny_cfg())
    with pytest.raises(LossLabError, match="optim.reference trains in float64"):
        tiny_cfg("train.dtype=bfloat16", "optim.reference=true")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here: the CPU path is tested above")
def test_a_run_trained_on_cuda_loads_on_the_cpu_and_resumes(store, tiny_cfg):
    from losslab.train.checkpoints import load_checkpoint

    cfg = tiny_cfg("train.device=cuda")
    run = store.create(cfg)
    trainer = Trainer(cfg, run, store)
    trainer.on_eval = lambda step, m, e: trainer.request_stop(signal.SIGINT) if step >= 23 else None
    assert trainer.run()["status"] == "interrupted"
    ck = load_checkpoint(store.find(run.path))  # the analyses' path: a model on the CPU
    on_gpu = dict(trainer.stepper.model.named_parameters())
    assert all(torch.equal(p, on_gpu[n].cpu()) for n, p in ck.model.named_parameters())
    assert resume(store.find(run.path), store)["status"] == "completed"


def test_divergence_ends_the_run_and_keeps_what_was_written(store, tiny_cfg):
    cfg = tiny_cfg("train.diverge_loss=3.0", "optim.lr=0.5")
    s = train(cfg, store)
    assert s["status"] == "diverged" and s["outcome"] == "diverged"
    run = store.find(s["run_id"])
    assert run.metric_rows() and run.summary()["status"] == "diverged"
    assert (run.figure_dir / "grokking.png").exists()


def test_weights_gone_nan_between_evaluations_end_the_run_diverged_not_failed(store, tiny_cfg):
    """The probes, due before the evaluation, find a loss that is not finite: they measure nothing
    there, and the evaluation ends the run as diverged."""
    s = train(tiny_cfg("optim.lr=1e30", "probes.every=5", "probes.hessian=true", "train.eval_every=20",
                       "train.eval_per_decade=0"), store)
    assert s["status"] == "diverged" and s["outcome"] == "diverged"
    rows = store.find(s["run_id"]).metric_rows()
    assert {step for step, _, name, _ in rows if name == "lambda_max"} == {0}  # finite at the start only


def test_budget_and_stop_after_t4(store, tiny_cfg):
    s = train(tiny_cfg("train.budget_s=0.01", "train.max_steps=100000"), store)
    assert s["status"] == "completed" and s["stop_reason"] == "budget" and s["steps"] < 100000


def appeared(root, pattern: str) -> bool:
    """Whether a file matching `pattern` is under `root` yet. A run's folder is renamed from its
    .creating name once made: a walk that meets the old name gone has not seen the file yet."""
    try:
        return any(root.rglob(pattern))
    except FileNotFoundError:
        return False


@pytest.mark.slow  # a real SIGKILL and a bit-for-bit resume stay in the default suite (test_faults)
def test_kill_9_then_resume_from_the_cli(tmp_path, tiny_cfg):
    """A run killed with SIGKILL resumes from its last checkpoint and ends as the whole run does."""
    args = ["grokking", "--set", "task.p=11", "--set", "model.d_model=32", "--set", "model.d_mlp=64",
            "--set", "train.max_steps=800", "--set", "train.eval_every=50", "--set", "train.stop_after_t4=0",
            "--set", "train.checkpoint_every_s=0.001", "--set", "optim.lr=3e-3"]
    whole = losslab_here("run", *args, "--out", tmp_path / "a", "--json")  # the kill needs a process, not these
    # killed at step 120 (losslab.train.stop's LOSSLAB_SIGNAL_AT), its checkpoints a few steps apart
    subprocess.run([sys.executable, "-m", "losslab.cli", "run", *args, "--out", str(tmp_path / "b")],
                   env={**os.environ, "LOSSLAB_SIGNAL_AT": "1:120:SIGKILL"}, capture_output=True, timeout=120)
    store_b = RunStore(tmp_path / "b")
    [killed] = store_b.summaries()
    assert killed["status"] == "running" and 0 < store_b.find(killed["run_id"]).latest_checkpoint()["step"] <= 120
    out = losslab_here("resume", killed["run_dir"], "--json")
    assert out.returncode == 0, out.stderr
    a, b = json.loads(whole.stdout), json.loads(out.stdout)
    assert b["status"] == "completed" and b["steps"] == a["steps"] and b["events"] == a["events"]
    assert measured(RunStore(tmp_path / "a").find(a["run_id"])) == measured(store_b.find(b["run_id"]))


def test_sigterm_stops_cleanly_with_a_checkpoint(tmp_path):
    args = ["grokking", "--set", "task.p=11", "--set", "model.d_model=32", "--set", "train.max_steps=100000",
            "--set", "train.stop_after_t4=100000", "--set", "train.eval_every=50", "--out", str(tmp_path), "--json"]
    done = subprocess.run([sys.executable, "-m", "losslab.cli", "run", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "LOSSLAB_SIGNAL_AT": "1:130:SIGTERM"})
    assert done.returncode == 143 and "losslab resume" in done.stderr
    s = json.loads(done.stdout)
    assert s["status"] == "interrupted" and s["stop_reason"] == "SIGTERM" and s["steps"] == 130
    run = RunStore(tmp_path).find(s["run_id"])
    assert run.summary()["status"] == "interrupted" and max(r[0] for r in run.metric_rows()) <= s["steps"]
    assert run.latest_checkpoint()["step"] == s["steps"]


def test_small_modular_addition_really_groks(store):
    """a + b mod 31 from 70% of the pairs: memorized within ~100 steps, generalized hundreds later."""
    cfg = load_config("grokking", ["task.p=31", "task.train_fraction=0.7", "optim.lr=5e-3",
                                   "train.max_steps=3000", "train.eval_every=20", "train.stop_after_t4=0"])
    s = train(cfg, store)
    t = s["events"]
    assert s["status"] == "completed" and s["stop_reason"] == "after_t4"
    assert s["final"]["val_acc"] >= 0.99 and t["t2"] < t["t4"] and t["t4"] > 2 * t["t2"]


def test_weight_decay_switches_at_memorization_and_survives_a_resume(store):
    cfg = load_config("parity", ["train.max_steps=400", "optim.weight_decay_after_t2=0.5",
                                 "train.stop_after_t4=0", "events.generalized=1.0"])
    whole = train(cfg, store)
    t2 = whole["events"]["t2"]
    assert t2 is not None
    rows = store.find(whole["run_id"]).metric_rows()
    assert [(s, v) for s, split, name, v in rows if split == "optim"] == [(t2, 0.5)]
    assert torch.load(sorted(store.find(whole["run_id"]).checkpoints())[-1], weights_only=True)[
        "optimizer"]["param_groups"][0]["weight_decay"] == 0.5

    run = store.create(cfg)
    trainer = Trainer(cfg, run, store)
    trainer.on_eval = lambda step, m, e: trainer.request_stop(signal.SIGINT) if step > t2 + 20 else None
    assert trainer.run()["status"] == "interrupted"
    assert resume(store.find(run.path), store)["steps"] == whole["steps"]
    assert measured(store.find(run.path)) == measured(store.find(whole["run_id"]))


def test_deep_relu_preset_kaiming_converges_and_the_naive_init_does_not(store):
    """He et al. 2015: a 30-layer ReLU net learns from Kaiming's init; from N(0, 0.01^2) its signal
    and gradients vanish and it stays at chance (10 classes)."""
    short = ["train.max_steps=300", "train.eval_every=100"]
    kaiming = train(load_config("deep-relu", short), store)
    naive = train(load_config("deep-relu", [*short, "model.init=normal"]), store)
    assert kaiming["final"]["val_acc"] > 0.6 and kaiming["final"]["train_loss"] < 1.5
    assert naive["final"]["val_acc"] < 0.15 and naive["final"]["train_loss"] == pytest.approx(2.3026, abs=1e-3)
