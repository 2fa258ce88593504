"""Sweep throughput: the batched executor (runs of the same shapes in one vmapped pass) against
the local executor (a pool of processes, the cores split between them), side by side in one run.

Throughput is the training steps of all runs divided by the sweep's wall time (evaluations and
checkpoints included; per-run figures off, a fixed cost of about 0.7 s a run that batching does
not touch). Two workloads:
  - 32 sparse (50, 2)-parity runs (MLP 500, batch 32): per-step overhead dominates; batching
    removes it.
  - 8 grokking transformers (a + b mod 97, full batch): compute-bound on a CPU.

    python benchmarks/bench_sweep.py [--parity-steps 600] [--grokking-steps 300]
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
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    print(f"{cores} cores; local: {cores} worker processes x 1 thread; batched: 1 process x {cores} threads")
    for name, (base, axes, extra) in WORKLOADS.items():
        steps = args.parity_steps if base == "parity" else args.grokking_steps
        local_wall, local_steps = timed(base, axes, extra, steps, LocalExecutor(cores))
        batched_wall, batched_steps = timed(base, axes, extra, steps, BatchedExecutor())
        local, batched = local_steps / local_wall, batched_steps / batched_wall
        print(f"{name:12s} local {local:8.1f} steps/s ({local_wall:6.1f} s)   batched {batched:8.1f} steps/s "
              f"({batched_wall:6.1f} s)   batched / local = {batched / local:.2f}x")


if __name__ == "__main__":
    main()
