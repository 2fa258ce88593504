"""The gallery's entries on optimizers and training: SGD on least squares, initialization,
trajectories on test functions, heavy-tailed classes, Muon, exponential learning rates and the
AlgoPerf profile. Each is a recipe of the library a user can copy (see landscapes.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from losslab.core.plotting import subplots
from losslab.gallery.data import digits
from losslab.gallery.registry import entry
from losslab.gallery.runs import trained_each


def _least_squares(n: int, d: int, noise: float, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64) / d ** 0.5
    y = x @ torch.randn(d, generator=g, dtype=torch.float64) + noise * torch.randn(n, generator=g, dtype=torch.float64)
    return x, y


@entry("sgd-least-squares", title="SGD against gradient descent on least squares",
       claim="With a constant learning rate, SGD does not converge on a least-squares problem that cannot be "
             "interpolated, whatever the rate: it stalls at a floor, while gradient descent converges; where the "
             "problem can be interpolated, SGD converges too.",
       source="the course's lecture on SGD (interpolation against not)",
       settings={"n": 200, "dims": {"not interpolating": 20, "interpolating": 400}, "noise": 0.5, "epochs": 200,
                 "rates": [1.0, 0.3, 0.1]},
       quick={"n": 100, "dims": {"not interpolating": 10, "interpolating": 200}, "noise": 0.5, "epochs": 100,
              "rates": [1.0, 0.1]}, seconds=(1, 3))
def sgd_least_squares(s: dict, folder: Path):
    """Rates are fractions of 1 / max |x_i|^2 (SGD on one example is stable below 2 / |x_i|^2) and, for
    gradient descent, of 1 / lambda_max(X^T X / n)."""
    fig, axes = subplots(1, 2, figsize=(10, 3.6), sharey=True)
    excess, n = {}, s["n"]
    for ax, (regime, d) in zip(axes, s["dims"].items()):
        x, y = _least_squares(n, d, s["noise"])
        best = torch.linalg.lstsq(x, y.unsqueeze(1)).solution.squeeze(1)

        def loss(w):
            return float(0.5 * ((x @ w - y) ** 2).mean())
        floor, order = loss(best), torch.Generator().manual_seed(1)
        curves = {}
        for rate in s["rates"]:
            w, lr, curve = torch.zeros(d, dtype=torch.float64), rate / float((x ** 2).sum(1).max()), []
            for _ in range(s["epochs"]):
                for i in torch.randperm(n, generator=order).tolist():
                    w -= lr * (x[i] @ w - y[i]) * x[i]
                curve.append(loss(w) - floor)
            curves[f"SGD, rate {rate:g}"] = curve
        w, lr, curve = torch.zeros(d, dtype=torch.float64), 1 / float(torch.linalg.eigvalsh(x.T @ x / n)[-1]), []
        for _ in range(s["epochs"]):
            w -= lr * x.T @ (x @ w - y) / n
            curve.append(loss(w) - floor)
        curves["gradient descent"] = curve
        for label, c in curves.items():
            ax.plot(np.arange(1, s["epochs"] + 1), np.maximum(c, 1e-32), "--" if label[0] == "g" else "-", label=label)
        ax.set(yscale="log", xlabel="epoch", title=f"{regime} (n = {n}, d = {d})")
        excess[regime] = {label: c[-1] for label, c in curves.items()}
    axes[0].set_ylabel("loss - least-squares minimum")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    # stalled: every rate ends above 1e-6 of the starting loss; converged: below 1e-10 of it
    start = 0.5 * float((_least_squares(n, s["dims"]["not interpolating"], s["noise"])[1] ** 2).mean())
    sgd = {regime: {k: v for k, v in found.items() if k.startswith("SGD")} for regime, found in excess.items()}
    stalled = all(v > 1e-6 * start for v in sgd["not interpolating"].values())
    gd = excess["not interpolating"]["gradient descent"] < 1e-10 * start
    interpolated = min(sgd["interpolating"].values()) < 1e-10 * start
    outcome = ("not interpolating: SGD ends " + ", ".join(f"{v:.1e}" for v in sgd["not interpolating"].values())
               + f" above the minimum, gradient descent {excess['not interpolating']['gradient descent']:.1e}; "
               "interpolating: SGD reaches " + ", ".join(f"{v:.1e}" for v in sgd["interpolating"].values()))
    return {"held": stalled and gd and interpolated, "outcome": outcome, "excess_loss": excess}, fig


INITS = ("kaiming", "normal")


def deep_relu_runs(s: dict) -> tuple[str, list[list[str]]]:
    return "deep-relu", [[f"train.max_steps={s['steps']}", "train.eval_every=50", f"model.init={init}"]
                         for init in INITS]


@entry("deep-relu-init", title="A deep ReLU net from Kaiming's and from a naive initialization",
       claim="A 30-layer ReLU MLP learns digits from Kaiming's initialization; from N(0, 0.01^2) its signal and "
             "gradients vanish and it stays at chance.",
       source="He et al. 2015, Fig. 3; the course's lecture on initialization",
       settings={"steps": 1000}, quick={"steps": 300}, seconds=(5, 9), runs=deep_relu_runs)
def deep_relu_init(s: dict, folder: Path):
    finals = {}
    fig, ax = subplots(figsize=(6, 3.6))
    for init, (summary, rows, _) in zip(INITS, trained_each(folder, *deep_relu_runs(s))):
        val = sorted((step, v) for step, split, name, v in rows if (split, name) == ("val", "acc"))
        ax.plot(*zip(*val), label=f"{init} init")
        finals[init] = summary["final"]["val_acc"]
    ax.axhline(0.1, color="gray", ls=":", label="chance")
    ax.set(xlabel="step", ylabel="validation accuracy", title="30-layer ReLU MLP on digits")
    ax.legend()
    fig.tight_layout()
    held = finals["kaiming"] > 0.6 and finals["normal"] < 0.15
    outcome = f"validation accuracy {finals['kaiming']:.1%} from Kaiming's init, {finals['normal']:.1%} from N(0, 0.01^2)"
    return {"held": held, "outcome": outcome, "val_acc": finals}, fig


@entry("log-rosenbrock", title="Optimizer trajectories on log-Rosenbrock",
       claim="On log-Rosenbrock, from the classic start (-1.2, 1), Adam reaches the minimum while plain SGD, even at "
             "its best learning rate, crawls along the ravine.",
       source="Predicting grokking long before it happens, appendix I; the course's lecture on optimizers",
       settings={"steps": 2000, "optimizers": ["sgd", "momentum", "adam"]},
       quick={"steps": 1000, "optimizers": ["sgd", "momentum", "adam"]}, seconds=(3, 4))
def log_rosenbrock(s: dict, folder: Path):
    """Each optimizer at its best learning rate of a grid (losslab.optimize.run)."""
    from losslab.optimize.figures import trajectory_figure  # startup
    from losslab.optimize.functions import problem  # startup
    from losslab.optimize.run import run  # startup

    task = problem("log-rosenbrock")
    runs = {t.optimizer: t for t in run(task, s["optimizers"], s["steps"])}
    final = {name: float(t.distances[-1]) for name, t in runs.items()}
    held = final["adam"] < 1e-2 and final["sgd"] > 10 * final["adam"]
    outcome = "final distance to the minimum: " + ", ".join(f"{name} {d:.2g} (lr {runs[name].lr:.2g})"
                                                            for name, d in final.items())
    return {"held": held, "outcome": outcome, "final_distance": final}, trajectory_figure(task, list(runs.values()))


@entry("rastrigin", title="Optimizer trajectories on Rastrigin",
       claim="On Rastrigin, from (3.3, -2.1), no gradient method reaches the global minimum, even at its best "
             "learning rate: each settles in a local minimum, the landscape's many basins trap local search.",
       source="the course's lecture on optimizers (trajectories on test functions)",
       settings={"steps": 2000, "optimizers": ["sgd", "momentum", "adam"]},
       quick={"steps": 1000, "optimizers": ["sgd", "momentum", "adam"]}, seconds=(3, 5))
def rastrigin(s: dict, folder: Path):
    """Each optimizer at its best learning rate of a grid (losslab.optimize.run): the one that ends
    nearest the global minimum."""
    from losslab.optimize.figures import trajectory_figure  # startup
    from losslab.optimize.functions import problem  # startup
    from losslab.optimize.run import run  # startup

    task = problem("rastrigin")
    runs = {t.optimizer: t for t in run(task, s["optimizers"], s["steps"])}
    final = {name: (float(t.distances[-1]), float(t.values[-1])) for name, t in runs.items()}
    held = all(distance > 0.5 and value > 0.5 for distance, value in final.values())
    outcome = "final distance to the global minimum and value there: " + ", ".join(
        f"{name} {d:.2f} and {v:.2f} (lr {runs[name].lr:.2g})" for name, (d, v) in final.items())
    return {"held": held, "outcome": outcome, "final": final}, trajectory_figure(task, list(runs.values()))


OPTIMIZERS = {"gradient descent": ["optim.name=sgd", "optim.lr=1"], "Adam": []}


def heavy_tail_runs(s: dict) -> tuple[str, list[list[str]]]:
    return "heavy-tail", [[f"train.max_steps={s['steps']}", *overrides] for overrides in OPTIMIZERS.values()]


@entry("heavy-tailed-classes", title="SGD and Adam on heavy-tailed classes",
       claim="With heavy-tailed class frequencies, gradient descent learns the frequent classes and leaves the rare "
             "ones near where they started, while Adam learns every frequency group.",
       source="Kunstner et al. 2024, Fig. 1; the course's lecture on Adam",
       settings={"steps": 300}, quick={"steps": 100}, seconds=(9, 22), runs=heavy_tail_runs)
def heavy_tailed_classes(s: dict, folder: Path):
    rare = {}
    fig, axes = subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, name, (_, rows, _) in zip(axes, OPTIMIZERS, trained_each(folder, *heavy_tail_runs(s))):
        groups = sorted({n for _, split, n, _ in rows if split == "train" and n.startswith("loss_group")},
                        key=lambda g: int(g.removeprefix("loss_group")))
        curves = {g: sorted((step, v) for step, split, n, v in rows if (split, n) == ("train", g)) for g in groups}
        for group, curve in curves.items():  # loss_group0: the most frequent classes
            ax.plot(*zip(*curve), label=group.removeprefix("loss_"))
        rare[name] = (curves[groups[-1]][0][1], curves[groups[-1]][-1][1])
        ax.set(xlabel="step", title=name)
    axes[0].set_ylabel("training loss of each frequency group")
    axes[1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    # learned: the rarest group's loss at most half what it started at; left: above 80% of it
    held = rare["gradient descent"][1] > 0.8 * rare["gradient descent"][0] and rare["Adam"][1] < 0.5 * rare["Adam"][0]
    outcome = "; ".join(f"{name}: rarest group's loss {a:.2f} -> {b:.2f}" for name, (a, b) in rare.items())
    return {"held": held, "outcome": outcome, "rarest_group_loss": rare}, fig


@entry("muon-logistic", title="Muon against AdamW on logistic regression",
       claim="Muon orthogonalizes its update: held as a 10 x 10 matrix, the 100 weights of a logistic regression "
             "move by steps whose singular values are all near the rate (the ratio of the largest to the smallest, "
             "median over the steps, under 2, within the Newton-Schulz band), where AdamW's steps spread over more "
             "than ten times; at the seminar's rate both reach the same test loss (within 0.01), near the teacher's.",
       source="the course's seminar on Muon (logistic regression on N = 5000, D = 100, W as 10 x 10, batch 128)",
       settings={"epochs": 30, "lr": 0.02, "weight_decay": 0.01}, quick={"epochs": 10, "lr": 0.02, "weight_decay": 0.01},
       seconds=(2, 4))
def muon_logistic(s: dict, folder: Path):
    from losslab.optim.muon import Muon  # startup

    g = torch.Generator().manual_seed(42)
    teacher = torch.randn(100, generator=g)
    x, x_test = torch.randn(5000, 100, generator=g), torch.randn(5000, 100, generator=g)
    y, y_test = (torch.bernoulli(torch.sigmoid(z @ teacher), generator=g) for z in (x, x_test))
    bce = nn.functional.binary_cross_entropy_with_logits
    bayes = bce(x_test @ teacher, y_test).item()
    lr, wd = s["lr"], s["weight_decay"]
    found = {}
    for name in ("Muon", "AdamW"):
        torch.manual_seed(0)
        w, b = nn.Parameter(torch.randn(10, 10) * 0.01), nn.Parameter(torch.zeros(()))
        # Muon takes the matrix; the bias, a scalar, goes to AdamW as Muon is meant to be used
        opts = ([Muon([w], lr=lr, momentum=0.95, weight_decay=wd), torch.optim.AdamW([b], lr=1e-3, weight_decay=0)]
                if name == "Muon" else [torch.optim.AdamW([w, b], lr=lr, weight_decay=wd)])
        order, spread, test = torch.Generator().manual_seed(0), [], []
        for _ in range(s["epochs"]):
            for batch in torch.randperm(len(x), generator=order).split(128):
                loss = bce(x[batch] @ w.reshape(-1) + b, y[batch])
                for opt in opts:
                    opt.zero_grad()
                loss.backward()
                before = w.detach().clone()
                for opt in opts:
                    opt.step()
                sv = torch.linalg.svdvals(w.detach() - before * (1 - lr * wd))  # the step, less the decay
                spread.append((sv.max() / sv.min()).item())
            with torch.no_grad():
                test.append(bce(x_test @ w.reshape(-1) + b, y_test).item())
        found[name] = {"test_loss": test, "spread": spread}
    median = {n: float(np.median(f["spread"])) for n, f in found.items()}
    final = {n: f["test_loss"][-1] for n, f in found.items()}
    held = median["Muon"] < 2 and median["AdamW"] > 10 and abs(final["Muon"] - final["AdamW"]) < 0.01
    outcome = (f"median ratio of a step's largest to smallest singular value: Muon {median['Muon']:.2f}, AdamW "
               f"{median['AdamW']:.1f}; test loss after {s['epochs']} epochs: Muon {final['Muon']:.3f}, AdamW "
               f"{final['AdamW']:.3f} (the teacher's {bayes:.3f})")
    fig, (left, right) = subplots(1, 2, figsize=(10, 3.6))
    for name, f in found.items():
        left.plot(range(1, s["epochs"] + 1), f["test_loss"], "o-", ms=3, label=name)
        right.plot(f["spread"], ".", ms=2, alpha=0.5, label=f"{name} (median {median[name]:.2f})")
    left.axhline(bayes, color="gray", ls=":", label="the teacher")
    left.set(xlabel="epoch", ylabel="test loss", title=f"Logistic regression, rate {lr}")
    right.set(yscale="log", xlabel="step", ylabel="largest / smallest singular value",
              title="The spread of each step's singular values")
    for ax in (left, right):
        ax.legend()
    fig.tight_layout()
    return {"held": held, "outcome": outcome, "median_spread": median, "test_loss": {n: f["test_loss"] for n, f in found.items()},
            "teacher_loss": bayes}, fig


@entry("exponential-lr", title="An exponentially increasing learning rate, with BatchNorm",
       claim="With BatchNorm after every layer the loss is scale-invariant in the weights, so SGD with weight decay "
             "lambda and rate eta trains exactly like SGD without weight decay whose rate grows as "
             "eta (1 - eta lambda)^(-2t-1): the same losses at every step, the same test accuracy.",
       source="Li and Arora 2020 (An exponential learning rate schedule for deep learning), Theorem 1.1; the "
              "course's lecture on normalization",
       settings={"steps": 1000, "lr": 0.1, "weight_decay": 0.02, "width": 64, "batch": 64},
       quick={"steps": 400, "lr": 0.1, "weight_decay": 0.05, "width": 64, "batch": 64}, seconds=(2, 4))
def exponential_lr(s: dict, folder: Path):
    """Hidden weights without biases, each followed by BatchNorm without affine parameters (batch
    statistics always: running averages of a growing scale would not be invariant; an eps of 1e-12,
    as the default 1e-5 breaks the invariance where a layer's variance is small), the last layer
    fixed: every trained weight is scale-invariant. float64, so that the runs agree to rounding."""
    (x, y), (x_test, y_test) = digits(1000, torch.float64)
    eta, lam, steps = s["lr"], s["weight_decay"], s["steps"]
    found = {}
    for name in ("weight decay, constant rate", "no weight decay, exponential rate"):
        torch.manual_seed(0)
        def normalized(inputs):
            return [nn.Linear(inputs, s["width"], bias=False),
                    nn.BatchNorm1d(s["width"], eps=1e-12, affine=False, track_running_stats=False), nn.ReLU()]
        model = nn.Sequential(*normalized(64), *normalized(s["width"]), nn.Linear(s["width"], 10)).double()
        model[-1].requires_grad_(False)
        invariant = [p for p in model.parameters() if p.requires_grad]
        exponential = name.startswith("no")
        opt = torch.optim.SGD(invariant, lr=eta, weight_decay=0 if exponential else lam)
        rate = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: (1 - eta * lam) ** (-2 * t - 1) if exponential else 1)
        order, losses, rates, norms = torch.Generator().manual_seed(1), [], [], []
        for _ in range(steps):
            batch = torch.randint(len(x), (s["batch"],), generator=order)
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            opt.zero_grad()
            loss.backward()
            rates.append(opt.param_groups[0]["lr"])
            opt.step()
            rate.step()
            losses.append(loss.item())
            norms.append(float(torch.cat([p.detach().flatten() for p in invariant]).norm()))
        with torch.no_grad():
            accuracy = float((model(x_test).argmax(-1) == y_test).double().mean())
        found[name] = {"losses": losses, "rates": rates, "norms": norms, "test_accuracy": accuracy}
    standard, grown = found.values()
    gap = max(abs(a - b) / a for a, b in zip(standard["losses"], grown["losses"]))
    growth = grown["rates"][-1] / grown["rates"][0]
    held = gap < 1e-6 and standard["test_accuracy"] == grown["test_accuracy"] and growth > 10
    outcome = (f"training losses agree to {gap:.1e} (relative, worst step) while the rate grows {growth:.3g} times; "
               f"test accuracy {standard['test_accuracy']:.2%} and {grown['test_accuracy']:.2%}")
    fig, (left, right) = subplots(1, 2, figsize=(11, 3.8))
    for (name, f), style in zip(found.items(), ("-", "--")):
        left.plot(np.convolve(f["losses"], np.ones(20) / 20, "valid"), style, label=name)
        right.plot(f["rates"], style, label=f"rate: {name}")
        right.plot(f["norms"], style, alpha=0.6, label=f"|w|: {name}")
    left.set(yscale="log", xlabel="step", ylabel="training loss (20-step mean)", title="the same training")
    right.set(yscale="log", xlabel="step", title="learning rate and weight norm")
    left.legend(fontsize=7)
    right.legend(fontsize=7)
    fig.tight_layout()
    return {"held": held, "outcome": outcome, "loss_gap": gap, "rate_growth": growth,
            "test_accuracy": {n: f["test_accuracy"] for n, f in found.items()}}, fig


@entry("algoperf-profile", title="Optimizers raced under AlgoPerf's rules: performance profiles",
       claim="No optimizer is the fastest on every workload: the fewest gradient evaluations to each workload's "
             "target come from different optimizers, and the performance profile's area (AlgoPerf's score) ranks "
             "them by how often they come near the best.",
       source="Dahl et al. 2023 (Benchmarking neural network training algorithms), the performance profiles; the "
              "course's lecture on AlgoPerf",
       settings={"workloads": ["rosenbrock", "logreg", "digits-mlp"],
                 "optimizers": ["sgd", "momentum", "adam", "sam", "muon", "shampoo"], "trials": 8},
       quick={"workloads": ["rosenbrock", "logreg", "digits-mlp"],
              "optimizers": ["sgd", "momentum", "adam", "sam", "muon", "shampoo"], "trials": 4}, seconds=(61, 120))
def algoperf_profile(s: dict, folder: Path):
    """Each optimizer's hyperparameters drawn quasi-randomly, `trials` per workload (external tuning):
    its fastest trial counts. Gradient evaluations are the clock the claim reads (seconds vary)."""
    from losslab.bench.run import profile_figure, run_benchmark  # startup
    from losslab.store import RunStore  # startup

    result = run_benchmark("quick", s["optimizers"], s["trials"], 1, RunStore(folder / "runs"), s["workloads"])
    times = result["clocks"]["grad_evals"]["times"]
    best = {w: min(s["optimizers"], key=lambda o: times[o][w]) for w in s["workloads"]}
    reached = {w: np.isfinite(times[best[w]][w]) for w in s["workloads"]}
    held = all(reached.values()) and len(set(best.values())) > 1
    score = result["clocks"]["grad_evals"]["scores"]
    outcome = ("fastest to the target: " + ", ".join(f"{w}: {best[w] if reached[w] else 'none'}"
                                                     for w in s["workloads"])
               + "; scores (gradient evaluations): " + ", ".join(f"{o} {score[o]:.2f}"
                                                                  for o in sorted(score, key=score.get, reverse=True)))
    return {"held": held, "outcome": outcome, "fastest": best, "scores": score,
            "times": {o: {w: t if np.isfinite(t) else None for w, t in per.items()} for o, per in times.items()}}, \
        profile_figure(result)
