"""The Monitor's overhead in a plain PyTorch loop, bare against the same loop with the monitor, in
one process, on two workloads: the Objective issue's CNN on scikit-learn's digits (bench_curvature's
DigitsCNN, 994 parameters; batches of 64, AdamW) and the grokking transformer (a + b mod 97, full
batch of 4,704 examples, AdamW), each probed on 256 of its training examples (`--probe N`; Cockpit's
convention, the curvature of the training batch, is `--probe 64` for the CNN). The variants:

- loss only (every step's loss kept on the device, read every 100 steps);
- the every-step measures (grad_norm, weight_norms, update_ratio), read every 100 steps;
- each probe measure alone every 100 steps (spectral_norms, sharpness, preconditioned_sharpness,
  gradient_noise, trace), and sharpness + preconditioned_sharpness + gradient_noise together.

Each variant is timed right after a bare loop of its own and divided by it; the median of these
ratios over the repeats is given, with their range: this 2-core machine's speed drifts by 20% over
tens of seconds, more than the overheads measured. The loop is timed apart from `close` (the last
read and the run's figures, a few tenths of a second once a run, whatever its length), which is
printed beside it.

The issue's goals: the every-step measures <= 1.05 x bare, the heavy set every 100 steps
<= 1.15 x. The numbers measured are in the issue's closing note, with the machine's load.

    python benchmarks/bench_monitor.py [--steps N] [--repeats 5] [--device cuda] [--only cnn] [--probe N]
"""

import argparse
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F
from bench_curvature import DigitsCNN
from sklearn.datasets import load_digits

import losslab as ll


def digits(device):
    data, target = load_digits(return_X_y=True)
    x = torch.tensor(data, dtype=torch.float32, device=device).reshape(-1, 1, 8, 8) / 16
    return DigitsCNN, x, torch.tensor(target, device=device), 64


def grokking(device):
    from losslab.config import load_config
    from losslab.train.step import build_run_model

    cfg = load_config("grokking")
    _, task, _ = build_run_model(cfg, device)
    return (lambda: build_run_model(cfg, device)[0]), task.x_train, task.y_train, len(task.x_train)


WORKLOADS = {"cnn": (digits, 2000), "transformer": (grokking, 100)}


def run(workload, steps, measures, every, device, probe):
    build, x, y, batch = workload
    torch.manual_seed(0)
    model = build().to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    mon = None
    with tempfile.TemporaryDirectory() as store:
        if measures is not None:
            mon = ll.Monitor(model, optimizer, probe=(x[:probe], y[:probe]), loss=F.cross_entropy, store=store,
                             name="bench", every=every, measures=measures)
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        for step in range(steps):
            i = torch.arange(batch * step, batch * (step + 1), device=device) % len(x)
            loss = F.cross_entropy(model(x[i]), y[i])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            if mon is not None:
                mon.step(loss)
        if device.type == "cuda":
            torch.cuda.synchronize()
        looped = time.perf_counter() - started
        if mon is not None:  # once a run, whatever its length: the last read, the figures (~0.7 s)
            mon.close()
        return looped, time.perf_counter() - started - looped


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, help="steps a variant (default: 2000 for the CNN, 100 for the transformer)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", choices=list(WORKLOADS))
    parser.add_argument("--probe", type=int, default=256, help="probe examples (default 256)")
    args = parser.parse_args()
    device = torch.device(args.device)
    variants = {"loss only, read every 100": [],
                "every-step measures, read every 100": ["grad_norm", "weight_norms", "update_ratio"],
                **{f"{m} every 100": [m] for m in ("spectral_norms", "sharpness", "preconditioned_sharpness",
                                                   "gradient_noise", "trace")},
                "sharpness + preconditioned + noise every 100": ["sharpness", "preconditioned_sharpness",
                                                                 "gradient_noise"]}
    for name, (make, default_steps) in WORKLOADS.items():
        if args.only not in (None, name):
            continue
        workload, steps = make(device), args.steps or default_steps
        bare, times, ratios = [], {variant: [] for variant in variants}, {variant: [] for variant in variants}
        run(workload, 20, [], 10, device, args.probe)  # warm-up
        for _ in range(args.repeats):
            for variant, measures in variants.items():
                # each variant against a bare loop run just before it: this machine's speed drifts by
                # 20% over tens of seconds, so the ratio is taken between neighbours in time
                bare.append(run(workload, steps, None, 100, device, args.probe)[0])
                times[variant].append(run(workload, steps, measures, 100, device, args.probe))
                ratios[variant].append(times[variant][-1][0] / bare[-1])
        print(f"{steps} steps of the {name} on {device}, probed on {args.probe} examples, median of {args.repeats} "
              f"(bare loop: {statistics.median(bare):.2f} s; each variant against the bare loop run just before it, "
              "the range of the ratios in brackets; close: once a run):", flush=True)
        for variant, values in times.items():
            looped, closed = (statistics.median(v) for v in zip(*values))
            print(f"  {variant:48s} {looped:7.2f} s   {statistics.median(ratios[variant]):5.2f} x bare "
                  f"({min(ratios[variant]):.2f}-{max(ratios[variant]):.2f})   close {closed:5.2f} s", flush=True)


if __name__ == "__main__":
    main()
