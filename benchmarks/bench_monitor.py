"""The Monitor's overhead in a plain PyTorch loop: a small CNN on scikit-learn's digits (batches of
64, AdamW), bare against the same loop with the monitor, in one process, the variants
interleaved over repeats and the median taken:

- loss only (every step's loss recorded, read every 100 steps);
- the cheap measures (grad_norm, weight_norms, update_ratio) at every step (every=1);
- each heavier measure alone every 100 steps (sharpness, preconditioned_sharpness,
  gradient_noise, trace), and sharpness + preconditioned_sharpness + gradient_noise together.

The issue's goals: cheap measures at every step <= 1.05 x bare, the heavy set every 100 steps
<= 1.15 x. Measured here (2-core CPU, 600 steps, one thread, another run training beside it):
loss only 1.18 x (the fixed cost of creating the run and drawing its figures at close, about
0.15 s: 1.02 x over 6,000 steps), cheap measures every step 5.3 x (a probe gradient of 256
examples and a spectral norm per step, against a training step of 64 examples costing 1.6 ms),
sharpness every 100 steps 3.7 x (Lanczos for lambda_max and lambda_min, the bottom one the
dearer), preconditioned sharpness 1.9 x, gradient noise 1.17 x, trace 3.9 x, the heavy set
4.5 x: not met for a model this small on a CPU.

    python benchmarks/bench_monitor.py [--steps 600] [--repeats 3] [--device cuda]
"""

import argparse
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

import losslab as ll


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
        self.head = nn.Linear(16 * 2 * 2, 10)

    def forward(self, x):
        return self.head(self.features(x))


def run(x, y, steps, measures, every, device):
    torch.manual_seed(0)
    model = CNN().to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    mon = None
    with tempfile.TemporaryDirectory() as store:
        if measures is not None:
            mon = ll.Monitor(model, optimizer, probe=(x[:256], y[:256]), loss=F.cross_entropy, store=store,
                             name="bench", every=every, measures=measures)
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        for step in range(steps):
            i = torch.arange(64 * step, 64 * (step + 1), device=device) % len(x)
            loss = F.cross_entropy(model(x[i]), y[i])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            if mon is not None:
                mon.step(loss)
        if mon is not None:
            mon.close()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    data, target = load_digits(return_X_y=True)
    x = torch.tensor(data, dtype=torch.float32, device=device).reshape(-1, 1, 8, 8) / 16
    y = torch.tensor(target, device=device)
    variants = {"bare loop": (None, 100), "loss only, read every 100": ([], 100),
                "cheap measures every step": (["grad_norm", "weight_norms", "update_ratio"], 1),
                **{f"{m} every 100": ([m], 100) for m in ("sharpness", "preconditioned_sharpness", "gradient_noise",
                                                          "trace")},
                "sharpness + preconditioned + noise every 100": (
                    ["sharpness", "preconditioned_sharpness", "gradient_noise"], 100)}
    times = {name: [] for name in variants}
    run(x, y, 50, [], 10, device)  # warm-up
    for _ in range(args.repeats):
        for name, (measures, every) in variants.items():
            times[name].append(run(x, y, args.steps, measures, every, device))
    bare = statistics.median(times["bare loop"])
    print(f"{args.steps} steps of a digits CNN on {device}, median of {args.repeats}:")
    for name, values in times.items():
        t = statistics.median(values)
        print(f"  {name:48s} {t:7.2f} s   {t / bare:5.2f} x bare")


if __name__ == "__main__":
    main()
