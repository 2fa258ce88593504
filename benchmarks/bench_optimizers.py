"""Cost of a training step with losslab's optimizers, as ratios against a baseline and a peer.

The workload of the optimizer issue: an MLP with four 1024 x 1024 hidden layers, batch 128,
one plain train step (forward, backward, optimizer step). Every candidate is timed in the
same process, round-robin over `--repeats` rounds so that all see the same machine state;
the median over rounds of each one's mean step time is reported.

    pip install -e '.[bench]'   # pytorch-optimizer, the peer
    python benchmarks/bench_optimizers.py [--steps 20] [--repeats 3]

Goals: SAM <= 2.2 x an SGD step; the Muon hybrid's optimizer step no slower than
torch.optim.Muon alone and its train step <= 1.5 x AdamW's; Shampoo (roots every 10 steps,
amortized) >= 2 x faster than pytorch-optimizer's Shampoo at the same settings.
"""

import argparse
import statistics
import time

import torch
from torch import nn

from losslab.optim.muon import HybridMuon
from losslab.optim.sam import SAM
from losslab.optim.shampoo import Shampoo

WIDTH, DEPTH, BATCH, CLASSES = 1024, 4, 128, 10


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    layers = [nn.Linear(WIDTH, WIDTH), nn.ReLU()]
    for _ in range(DEPTH - 1):
        layers += [nn.Linear(WIDTH, WIDTH), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(WIDTH, CLASSES))


def candidates():
    """name -> (model -> optimizer)."""
    def torch_muon(model):  # torch's Muon takes 2D matrices only: every weight but nothing else
        return torch.optim.Muon([p for p in model.parameters() if p.ndim == 2], lr=0.02)
    out = {
        "sgd": lambda m: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9),
        "sam (losslab)": lambda m: SAM(m.parameters(), torch.optim.SGD, rho=0.05, lr=0.01, momentum=0.9),
        "adamw": lambda m: torch.optim.AdamW(m.parameters(), lr=1e-3),
        "muon hybrid (losslab)": lambda m: HybridMuon.for_model(m, lr=0.02),
        "torch.optim.Muon alone": torch_muon,
        "shampoo (losslab)": lambda m: Shampoo(m.parameters(), lr=1e-3, precondition_every=10, graft="none",
                                               eps=1e-6),
    }
    try:
        import pytorch_optimizer as po
        out["sam (pytorch-optimizer)"] = lambda m: po.SAM(m.parameters(), torch.optim.SGD, rho=0.05, lr=0.01,
                                                          momentum=0.9)
        out["shampoo (pytorch-optimizer)"] = lambda m: po.Shampoo(m.parameters(), lr=1e-3,
                                                                  preconditioning_compute_steps=10, matrix_eps=1e-6)
    except ImportError:
        print("pytorch-optimizer not installed: peers skipped (pip install -e '.[bench]')")
    return out


def time_steps(make_opt, steps: int) -> tuple[float, float]:
    """Mean seconds of (the whole train step, the optimizer step alone) over `steps` steps: the
    mean, so that Shampoo's root computations every 10 steps are amortized."""
    model = mlp()
    opt = make_opt(model)
    x, y = torch.randn(BATCH, WIDTH), torch.randint(0, CLASSES, (BATCH,))
    loss_fn = nn.CrossEntropyLoss()

    def closure():
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        return loss
    two_pass = getattr(opt, "needs_closure", False) or type(opt).__name__ == "SAM"
    whole, step_only = [], []
    for i in range(steps + 2):  # two warm-up steps (the first Shampoo step computes its roots)
        t0 = time.perf_counter()
        closure()
        t1 = time.perf_counter()
        opt.step(closure) if two_pass else opt.step()
        t2 = time.perf_counter()
        if i >= 2:
            whole.append(t2 - t0)
            step_only.append(t2 - t1)
    return statistics.fmean(whole), statistics.fmean(step_only)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20, help="timed steps (a multiple of 10 amortizes Shampoo)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float]]] = {}
    for _ in range(args.repeats):
        for name, make in candidates().items():
            results.setdefault(name, []).append(time_steps(make, args.steps))
    ms = {n: (1e3 * statistics.median(r[0] for r in rs), 1e3 * statistics.median(r[1] for r in rs))
          for n, rs in results.items()}
    print(f"MLP {DEPTH} x {WIDTH}x{WIDTH}, batch {BATCH}, {torch.get_num_threads()} threads, "
          f"median over {args.repeats} rounds of the mean of {args.steps} steps")
    print(f"{'optimizer':30s} {'train step ms':>14s} {'optimizer step ms':>18s}")
    for name, (whole, step) in ms.items():
        print(f"{name:30s} {whole:14.1f} {step:18.1f}")

    def ratio(a, b, i=0):
        return ms[a][i] / ms[b][i] if a in ms and b in ms else float("nan")
    print()
    print(f"SAM / SGD train step (goal <= 2.2):                 {ratio('sam (losslab)', 'sgd'):.2f}"
          f"   peer pytorch-optimizer: {ratio('sam (pytorch-optimizer)', 'sgd'):.2f}")
    print(f"Muon hybrid / torch Muon optimizer step (goal <= 1): "
          f"{ratio('muon hybrid (losslab)', 'torch.optim.Muon alone', 1):.2f}")
    print(f"Muon hybrid / AdamW train step (goal <= 1.5):       {ratio('muon hybrid (losslab)', 'adamw'):.2f}")
    print(f"pytorch-optimizer Shampoo / losslab Shampoo, train step, amortized (goal >= 2): "
          f"{ratio('shampoo (pytorch-optimizer)', 'shampoo (losslab)'):.2f}")


if __name__ == "__main__":
    main()
