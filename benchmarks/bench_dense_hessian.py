"""The dense Hessian of a small model: ll.hessian_matrix against torch.autograd.functional.hessian.

The model of the issue that asked for it: a residual MLP with BatchNorm1d and LayerNorm (30 -> 56
-> 2, 2,074 parameters, eval mode) on scikit-learn's breast-cancer data (569 examples, shipped
inside the package), as a DataLoader of batches of 128 (the last holds 57). torch's hessian takes
the same loss as a function of the flat parameters (functional_call, batch by batch), with and
without vectorize=True (vmap over the rows). losslab: batched Hessian-vector products over the
basis (is_grads_batched), the batches' gradient graphs kept. Each timed in turns, the median of
`--repeats`, and the largest difference of the matrices.

    python benchmarks/bench_dense_hessian.py [--repeats 3]
"""

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from sklearn.datasets import load_breast_cancer
from torch import nn
from torch.func import functional_call

import losslab as ll


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp, self.bn, self.ln, self.out = nn.Linear(30, 56), nn.BatchNorm1d(56), nn.LayerNorm(56), nn.Linear(56, 2)

    def forward(self, x):
        h = self.inp(x)
        return self.out(self.ln(h + F.relu(self.bn(h))))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    data = load_breast_cancer()
    x = torch.tensor(data.data, dtype=torch.float32)
    x, y = (x - x.mean(0)) / x.std(0), torch.tensor(data.target)
    batches = [(x[i:i + 128], y[i:i + 128]) for i in range(0, len(x), 128)]
    model = Residual().eval()
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat0 = torch.cat([p.detach().flatten() for p in model.parameters()])
    buffers = dict(model.named_buffers())
    print(f"{flat0.numel():,} parameters, {len(x)} examples in {len(batches)} batches; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")

    def loss(flat):
        params, at = {}, 0
        for n, s in zip(names, shapes):
            params[n] = flat[at: at + s.numel()].view(s)
            at += s.numel()
        return sum(F.cross_entropy(functional_call(model, {**buffers, **params}, (xb,)), yb) * len(xb)
                   for xb, yb in batches) / len(x)

    methods = {
        "losslab hessian_matrix": lambda: ll.hessian_matrix(ll.Objective(model, F.cross_entropy, batches)),
        "torch hessian": lambda: torch.autograd.functional.hessian(loss, flat0),
        "torch hessian, vectorize=True": lambda: torch.autograd.functional.hessian(loss, flat0, vectorize=True),
    }
    times, results = {name: [] for name in methods}, {}
    for _ in range(args.repeats):
        for name, method in methods.items():
            started = time.perf_counter()
            results[name] = method().double()
            times[name].append(time.perf_counter() - started)
    ours = statistics.median(times["losslab hessian_matrix"])
    for name, seconds in times.items():
        gap = (results[name] - results["losslab hessian_matrix"]).abs().max().item()
        print(f"{name:32s} {statistics.median(seconds):7.2f} s (range {min(seconds):.2f}-{max(seconds):.2f}); "
              f"{statistics.median(seconds) / ours:5.2f}x losslab's time; max |difference| {gap:.1e}")


if __name__ == "__main__":
    main()
