"""Milliseconds per training step: losslab's trainer against a minimal hand-written PyTorch loop.

Same model, data, optimizer, schedule and evaluation steps (train and validation loss and
accuracy), side by side in one process, alternating the two so that both see the same machine
state. The plain loop reads the loss every step (`loss.item()`, as a loop that logs does);
losslab reads it only at evaluations, and also detects events and writes its metrics,
checkpoints and index.

    python benchmarks/bench_trainer.py [--steps 300] [--repeats 3] [--device cuda]
"""

import argparse
import statistics
import tempfile
import time

import torch

from losslab.config import load_config
from losslab.losses import build_loss
from losslab.models import build_model
from losslab.optim.factory import build_optimizer, build_scheduler
from losslab.store import RunStore
from losslab.train.cadence import eval_steps
from losslab.train.loop import Trainer


def plain_loop(cfg, steps: int) -> float:
    """The loop a user writes by hand; returns seconds per step."""
    device = torch.device(cfg.train.device)
    task = cfg.task.build(cfg.seed).to(None, device)
    loss_fn = build_loss(cfg.loss, task.n_classes)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, task, loss_fn.n_outputs).to(device)
    opt = build_optimizer(cfg.optim, model)
    sched = build_scheduler(cfg.optim, opt, steps)
    bs = cfg.train.batch_size or len(task.x_train)
    evals = eval_steps(steps, cfg.train.eval_every, cfg.train.eval_per_decade)
    start = time.perf_counter()
    for step in range(steps):
        if bs < len(task.x_train):
            idx = torch.randint(len(task.x_train), (bs,), device=device)
            x, y = task.x_train[idx], task.y_train[idx]
        else:
            x, y = task.x_train, task.y_train
        out = model(x)
        loss = loss_fn(out, y)
        if step in evals:
            with torch.no_grad():
                for xs, ys in ((task.x_train, task.y_train), (task.x_val, task.y_val)):
                    o = model(xs)
                    loss_fn(o, ys).item(), loss_fn.accuracy(o, ys).item()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        loss.item()  # a host sync each step, as a loop that logs makes
    return (time.perf_counter() - start) / steps


def losslab_loop(cfg, steps: int) -> float:
    with tempfile.TemporaryDirectory() as root:
        store = RunStore(root)
        trainer = Trainer(cfg, store.create(cfg), store)
        start = time.perf_counter()
        summary = trainer.run()
        assert summary["steps"] == steps
        return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (train.device)")
    args = parser.parse_args()
    workloads = {
        "grokking (p=97, r=0.5, full batch)": ("grokking", args.steps),
        "parity (50,2), batch 32": ("parity", args.steps * 10),
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, on {args.device}")
    print(f"{'workload':40s} {'plain ms/step':>14s} {'losslab ms/step':>16s} {'ratio':>7s}")
    for label, (preset, steps) in workloads.items():
        cfg = load_config(preset, [f"train.max_steps={steps}", f"train.device={args.device}"])
        # run every step of the budget: no early stop after generalization
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"stop_after_t4": None})})
        plain_loop(cfg, min(steps, 20))  # warm up allocator and kernels
        plain, ours = [], []
        for _ in range(args.repeats):
            plain.append(plain_loop(cfg, steps))
            ours.append(losslab_loop(cfg, steps))
        p, o = statistics.median(plain) * 1e3, statistics.median(ours) * 1e3
        print(f"{label:40s} {p:14.3f} {o:16.3f} {o / p:7.3f}")


if __name__ == "__main__":
    main()
