"""Sweep throughput: the batched executor (runs of the same shapes in one vmapped pass) against
the local executor (a pool of processes, a run each), the same cores, side by side in one run.
The batched executor twice: its groups shared out between as many processes as the local one
has (the default), and in this one process (`--workers 1`: no process start-up to pay).

Throughput is the training steps of all runs divided by the sweep's wall time (evaluations and
checkpoints included; per-run figures off, a fixed cost of about 0.7 s a run that batching does
not touch). Two workloads:
  - 32 sparse (50, 2)-parity runs (MLP 500, batch 32): small models, where per-step overhead is
    what batching removes (on a 2-core CPU a width-500 MLP is already mostly compute).
  - 8 grokking transformers (a + b mod 97, full batch): compute-bound on a CPU.

On a GPU (`--device cuda`: every run's train.device) the grokking workload is 16 runs (seeds
0-3), and both executors run as many processes as `--workers` (default: the CPU's cores), all
on the one GPU: the batched executor's win there is the kernel launches it shares.

    python benchmarks/bench_sweep.py [--parity-steps 600] [--grokking-steps 300] [--device cuda] [--workers N]
"""

import argparse
import os
import tempfile
import textwrap
import time
from pathlib import Path

from losslab.store import RunStore
from losslab.sweep.executors import BatchedExecutor, LocalExecutor
from losslab.sweep.run import Sweep

WORKLOADS = {
    "parity x32": ("parity", '"optim.lr" = [0.05, 0.1, 0.2, 0.4]\nseed = [0, 1, 2, 3, 4, 5, 6, 7]',
                   ["train.stop_after_t4=1000000"]),
    "grokking x8": ("grokking", '"optim.lr" = [1e-3, 3e-3]\n"optim.weight_decay" = [0.3, 1.0]\nseed = [0, 1]',
                    ["train.stop_after_t4=1000000"]),
}


def timed(base: str, axes: str, extra: list[str], steps: int, executor) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.toml"
        settings = [f"train.max_steps={steps}", *extra]
        path.write_text(f'name = "s"\nbase = "{base}"\nrun_figures = false\nset = {settings!r}\n'.replace("'", '"')
                        + textwrap.dedent(f"[grid]\n{axes}\n"))
        start = time.perf_counter()
        result = Sweep(path, RunStore(Path(tmp) / "runs")).run(executor)
        wall = time.perf_counter() - start
        assert all(r["status"] == "completed" for r in result["rows"]), result["rows"]
        return wall, sum(r["steps"] for r in result["rows"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parity-steps", type=int, default=600)
    parser.add_argument("--grokking-steps", type=int, default=300)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    cores = args.workers
    executors = {"local": LocalExecutor(cores), f"batched x{cores}": BatchedExecutor(cores),
                 "batched x1": BatchedExecutor(1)}
    print(f"{cores} cores. local: {cores} processes x 1 thread, a run each; batched x{cores}: {cores} processes "
          f"x 1 thread, a share of each group each; batched x1: this process, {cores} threads")
    for name, (base, axes, extra) in WORKLOADS.items():
        steps = args.parity_steps if base == "parity" else args.grokking_steps
        extra = [*extra, f"train.device={args.device}"]
        if args.device != "cpu" and base == "grokking":
            name, axes = "grokking x16", axes.replace("seed = [0, 1]", "seed = [0, 1, 2, 3]")
        rates = {}
        for label, executor in executors.items():
            wall, total = timed(base, axes, extra, steps, executor)
            rates[label] = total / wall
            print(f"{name:12s} {label:11s} {rates[label]:8.1f} steps/s ({wall:6.1f} s)", flush=True)
        print(f"{name:12s} batched / local: "
              + ", ".join(f"{label} {rate / rates['local']:.2f}x" for label, rate in rates.items() if label != "local"))


if __name__ == "__main__":
    main()
