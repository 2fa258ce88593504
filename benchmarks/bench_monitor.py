"""The Monitor's overhead in a plain PyTorch loop, bare against the same loop with the monitor, in
one process, on two workloads: the Objective issue's CNN on scikit-learn's digits (bench_curvature's
DigitsCNN, 994 parameters; batches of 64, AdamW) and the grokking transformer (a + b mod 97, full
batch of 4,704 examples, AdamW), each probed on 256 of its training examples (`--probe N`; Cockpit's
convention, the curvature of the training batch, is `--probe 64` for the CNN). The variants:

- loss only (every step's loss kept on the device, read every 100 steps);
- the every-step measures (step_grad_norm, weight_norms, update_ratio), read every 100 steps;
- each probe measure alone every 100 steps (spectral_norms, sharpness, preconditioned_sharpness,
  gradient_noise, trace), and sharpness + preconditioned_sharpness + gradient_noise together.

Each variant runs beside a bare copy of its loop (the same model, seed and batches), the two in
turns of 100 steps, the monitored turn ending with its measurement; the ratio is that of their
total times, its median over the repeats given with the range. This 2-core machine's speed drifts
by 20% over tens of seconds, more than the overheads measured: turns of a tenth of a second put the
drift on both alike. The loop is timed apart from `close` (the last read and the run's figures, a
few tenths of a second once a run, whatever its length), which is printed beside it.

The issue's goals: the every-step measures <= 1.05 x bare, the heavy set every 100 steps
<= 1.15 x. The numbers measured are in the issue's closing note, with the machine's load.

Beside Cockpit (Schneider et al. 2021, `cockpit-for-pytorch`, `.[bench]`), `--cockpit`: the CNN as
modules in a row (the same layers and parameters: BackPACK, under Cockpit, extends modules, not the
functional calls of DigitsCNN.forward), its configuration closest to the Monitor's: GradNorm, Alpha,
Distance, HessMaxEV and HessTrace every 100 steps, on the training batch; the Monitor: step_grad_norm
every step, cosines (the distance travelled), sharpness and the trace every 100 steps on a batch of as
many examples (Cockpit's Alpha, the step's position in the local parabola, has no Monitor twin). The
trace two ways: `trace` (Hutch++, 99 Hessian-vector products: any model) and `ggn_trace` (the
Gauss-Newton matrix's, exactly, from per-example Jacobians: on this network, linear in each parameter,
the Hessian's trace, which HessTrace computes exactly from BackPACK's diagonal).
Each against a bare copy of its loop, in turns of 100 steps, as above. The goal: the Monitor's
overhead at most half of Cockpit's.

    python benchmarks/bench_monitor.py [--steps N] [--repeats 5] [--device cuda] [--only cnn] [--probe N]
    python benchmarks/bench_monitor.py --cockpit [--steps 2000] [--repeats 5]
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


def loop(workload, device):
    """A model, its optimizer and its plain training loop: block(first, n, mon) trains steps first to
    first + n - 1 (with `mon.step` after each where a monitor is given) and returns its seconds."""
    build, x, y, batch = workload
    torch.manual_seed(0)
    model = build().to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)

    def block(first, steps, mon=None):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        for step in range(first, first + steps):
            i = torch.arange(batch * step, batch * (step + 1), device=device) % len(x)
            loss = F.cross_entropy(model(x[i]), y[i])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            if mon is not None:
                mon.step(loss)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - started
    return model, optimizer, block


def run(workload, steps, measures, every, device, probe, repeat=0):
    """(bare seconds, monitored seconds, close seconds): the same loop twice, bare and with the
    monitor, in turns of `every` steps (the monitored turn ends with its measurement), the first of
    each turn alternating (from turn to turn, and from repeat to repeat): the machine's drift falls on
    both alike."""
    bare = loop(workload, device)[2]
    model, optimizer, monitored = loop(workload, device)
    _, x, y, _ = workload
    with tempfile.TemporaryDirectory() as store:
        mon = ll.Monitor(model, optimizer, probe=(x[:probe], y[:probe]), loss=F.cross_entropy, store=store,
                         name="bench", every=every, measures=measures)
        times = [0.0, 0.0]
        for turn, first in enumerate(range(0, steps, every)):
            n = min(every, steps - first)
            if (turn + repeat) % 2:
                times[1] += monitored(first, n, mon)
                times[0] += bare(first, n)
            else:
                times[0] += bare(first, n)
                times[1] += monitored(first, n, mon)
        started = time.perf_counter()
        mon.close()  # once a run, whatever its length: the last read, the figures
        return *times, time.perf_counter() - started


def modules_cnn():
    """DigitsCNN's layers as modules in a row."""
    return torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                               torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                               torch.nn.Flatten(), torch.nn.Linear(8 * 2 * 2, 10))


def cockpit_loop(workload, device):
    """The loop of `loop`, instrumented by Cockpit: block(first, n) returns its seconds."""
    from backpack import extend
    from cockpit import Cockpit, quantities
    from cockpit.utils.schedules import linear

    build, x, y, batch = workload
    torch.manual_seed(0)
    model = extend(build().to(device))
    loss_fn, individual = extend(torch.nn.CrossEntropyLoss()), torch.nn.CrossEntropyLoss(reduction="none")
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    every = linear(100)
    cockpit = Cockpit(model.parameters(), quantities=[quantities.GradNorm(every), quantities.Alpha(every),
                                                      quantities.Distance(every), quantities.HessMaxEV(every),
                                                      quantities.HessTrace(every)])

    def block(first, steps):
        started = time.perf_counter()
        for step in range(first, first + steps):
            i = torch.arange(batch * step, batch * (step + 1), device=device) % len(x)
            out = model(x[i])
            loss = loss_fn(out, y[i])
            info = {"batch_size": batch, "individual_losses": individual(out, y[i]), "loss": loss,
                    "optimizer": optimizer}
            with cockpit(step, info=info):
                loss.backward(create_graph=cockpit.create_graph(step))
            optimizer.step()
            optimizer.zero_grad()
        return time.perf_counter() - started
    return block


def against_cockpit(steps: int, repeats: int, device) -> None:
    _, x, y, batch = digits(device)
    workload = (modules_cnn, x, y, batch)
    # the trace two ways: Hutch++'s estimate (any model), and the Gauss-Newton matrix's exactly (ggn_trace),
    # which on this network (linear in each parameter: convolutions, ReLU, max-pooling) is the Hessian's
    # trace, the quantity HessTrace computes from BackPACK's exact diagonal
    monitors = {"Monitor, trace by Hutch++": ["step_grad_norm", "cosines", "sharpness", "trace"],
                "Monitor, exact trace": ["step_grad_norm", "cosines", "sharpness", "ggn_trace"]}
    ratios = {"Cockpit": [], **{name: [] for name in monitors}}
    for repeat in range(repeats + 1):  # the first: a warm-up, not counted
        bare, instrumented = loop(workload, device)[2], cockpit_loop(workload, device)
        times = [0.0, 0.0]
        for turn, first in enumerate(range(0, steps, 100)):
            n = min(100, steps - first)
            order = (0, 1) if (turn + repeat) % 2 else (1, 0)
            for k in order:
                times[k] += bare(first, n) if k == 0 else instrumented(first, n)
        monitored = {name: run(workload, steps, measures, 100, device, batch, repeat)
                     for name, measures in monitors.items()}
        if repeat:
            ratios["Cockpit"].append(times[1] / times[0])
            for name, (bare_s, monitored_s, _) in monitored.items():
                ratios[name].append(monitored_s / bare_s)
    print(f"{steps} steps of the CNN (as modules in a row) on {device}, batches of {batch}, every 100 steps; "
          f"median of {repeats} (range), each against a bare copy of its loop:")
    for name, values in ratios.items():
        print(f"  {name:26s} {statistics.median(values):5.2f} x bare ({min(values):.2f}-{max(values):.2f}): "
              f"overhead {statistics.median(values) - 1:+.1%}")
    cockpit = statistics.median(ratios["Cockpit"]) - 1
    for name in monitors:
        print(f"  {name}: overhead / Cockpit's {(statistics.median(ratios[name]) - 1) / cockpit:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, help="steps a variant (default: 2000 for the CNN, 100 for the transformer)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", choices=list(WORKLOADS))
    parser.add_argument("--probe", type=int, default=256, help="probe examples (default 256)")
    parser.add_argument("--cockpit", action="store_true", help="the CNN beside Cockpit's closest configuration")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.cockpit:
        return against_cockpit(args.steps or 2000, args.repeats, device)
    variants = {"loss only, read every 100": [],
                "every-step measures, read every 100": ["step_grad_norm", "weight_norms", "update_ratio"],
                **{f"{m} every 100": [m] for m in ("spectral_norms", "sharpness", "preconditioned_sharpness",
                                                   "gradient_noise", "trace")},
                "sharpness + preconditioned + noise every 100": ["sharpness", "preconditioned_sharpness",
                                                                 "gradient_noise"]}
    for name, (make, default_steps) in WORKLOADS.items():
        if args.only not in (None, name):
            continue
        workload, steps = make(device), args.steps or default_steps
        times, ratios = {variant: [] for variant in variants}, {variant: [] for variant in variants}
        run(workload, 20, [], 10, device, args.probe)  # warm-up
        for repeat in range(args.repeats):
            for variant, measures in variants.items():
                times[variant].append(run(workload, steps, measures, 100, device, args.probe, repeat))
                ratios[variant].append(times[variant][-1][1] / times[variant][-1][0])
        print(f"{steps} steps of the {name} on {device}, probed on {args.probe} examples, median of {args.repeats} "
              "(each variant against a bare copy of the loop, in turns of 100 steps; the range of the ratios in "
              "brackets; close: once a run):", flush=True)
        for variant, values in times.items():
            bare, looped, closed = (statistics.median(v) for v in zip(*values))
            print(f"  {variant:48s} {looped:7.2f} s against {bare:6.2f} s   {statistics.median(ratios[variant]):5.2f} x "
                  f"bare ({min(ratios[variant]):.2f}-{max(ratios[variant]):.2f})   close {closed:5.2f} s", flush=True)


if __name__ == "__main__":
    main()
