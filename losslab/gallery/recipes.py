"""The gallery's entries, each a recipe of the library a user can copy to start a study of their
own: what it computes, its figure, and the test of its claim on what it measured."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from losslab.gallery import entry  # noqa: E402
from losslab.gallery.runs import trained_each  # noqa: E402


def _digits(train: int, dtype=torch.float32):
    """scikit-learn's digits, scaled to [0, 1]: the first `train` images to train on, the rest to test."""
    from sklearn.datasets import load_digits

    data, target = load_digits(return_X_y=True)
    x, y = torch.tensor(data, dtype=dtype) / 16, torch.tensor(target)
    return (x[:train], y[:train]), (x[train:], y[train:])


@entry("double-descent", title="Model-wise double descent",
       claim="The test risk of min-norm random-features regression peaks where the features just fit the n "
             "training points (N = n), and falls again as N grows past them.",
       source="Belkin et al. 2019 (PNAS), Fig. 1; the course's lecture on double descent",
       settings={"n_train": 100, "noise": 0.5, "seeds": 10,
                 "features": [10, 20, 40, 60, 80, 90, 100, 110, 120, 150, 200, 300, 500, 1000]},
       quick={"n_train": 100, "noise": 0.5, "seeds": 3, "features": [10, 40, 80, 100, 120, 200, 500, 1000]},
       seconds=(1, 1))
def double_descent(s: dict, folder: Path):
    from losslab.analysis.double_descent import random_features_risk
    from losslab.analysis.figures import double_descent_figure

    r = random_features_risk(s["features"], n_train=s["n_train"], noise=s["noise"], seeds=s["seeds"])
    peak, n, risk = r["peak_at"], s["n_train"], dict(zip(r["features"], r["test_risk"]))
    last = r["features"][-1]
    held = peak is not None and 0.7 * n <= peak <= 1.5 * n and risk[last] < risk[peak] / 2
    outcome = (f"the test risk peaks at N = {peak} (n = {n}): {risk[peak]:.3g}, against {risk[last]:.3g} at "
               f"N = {last}" if peak else "the test risk has no peak: it only falls")
    return {"held": held, "outcome": outcome, "peak_at": peak, "test_risk": r["test_risk"],
            "features": r["features"]}, double_descent_figure(r)


def _fit_exactly(width: int, x: torch.Tensor, y: torch.Tensor, seed: int) -> nn.Module:
    """A ReLU MLP d -> width -> 1 fitted to (x, y) by L-BFGS as far as it goes (float64)."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(x.shape[1], width), nn.ReLU(), nn.Linear(width, 1)).double()
    lbfgs = torch.optim.LBFGS(model.parameters(), lr=1, max_iter=3000, tolerance_grad=1e-15,
                              tolerance_change=1e-20, line_search_fn="strong_wolfe")

    def closure():
        lbfgs.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss
    lbfgs.step(closure)
    return model


@entry("hessian-rank", title="Hessian rank at MSE minima against overparameterization",
       claim="At a global minimum of the MSE the Hessian's rank equals that of the behavioral gradients (the "
             "output Jacobian over the examples), at most the number of examples n. The narrower the net, the more "
             "of the solutions it trains to lose the information that tells some examples apart (rank of the "
             "behavioral gradients below n): the fraction of such rank-deficient solutions falls as "
             "the width grows, to under a quarter of the narrowest width's.",
       source="the post \"Information loss --> basin flatness\" (behavioral gradients), with its update on "
              "ultra-small data sets",
       settings={"examples": 10, "widths": [2, 3, 4, 6, 8, 16, 32, 64], "seeds": 20},
       quick={"examples": 10, "widths": [2, 4, 8, 16, 32], "seeds": 8}, seconds=(4, 14))
def hessian_rank(s: dict, folder: Path):
    from scipy.stats import spearmanr

    from losslab.analysis.basin import basin
    from losslab.analysis.objective import Objective

    n = s["examples"]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 2, generator=g, dtype=torch.float64)
    y = torch.randn(n, 1, generator=g, dtype=torch.float64)
    solutions = {w: [] for w in s["widths"]}  # width -> one (rank G, rank H or None, global?) per seed
    params = {}
    for width in s["widths"]:
        for seed in range(s["seeds"]):
            obj = Objective(_fit_exactly(width, x, y, seed), nn.functional.mse_loss, (x, y))
            params[width] = obj.size
            # a minimum reached to a loss of 1e-20 leaves residuals of 1e-10, and terms of that relative
            # size in H: its rank is counted at 1e-8 of the largest eigenvalue (G's at 1e-4)
            reached = obj.value <= 1e-20
            found = basin(obj, relative_tol=1e-4, hessian_rank=reached)
            solutions[width].append((found.rank_G, found.rank_H if reached else None, reached))
    minima = [(rg, rh) for runs in solutions.values() for rg, rh, reached in runs if reached]
    equal = all(rh == rg <= n for rg, rh in minima)
    deficient = [float(np.mean([rg < n for rg, _, _ in solutions[w]])) for w in s["widths"]]
    falls = spearmanr(s["widths"], deficient).statistic < 0 if len(set(deficient)) > 1 else False
    held = bool(minima) and equal and bool(falls) and deficient[-1] < deficient[0] / 4
    outcome = (f"rank(H) {'=' if equal else '!='} rank(G) <= {n} at all {len(minima)} global minima reached; "
               "solutions with rank(G) < n: " + ", ".join(f"width {w}: {f:.0%}" for w, f in zip(s["widths"], deficient))
               + f" ({min(params.values())}-{max(params.values())} parameters)")
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    left.plot(s["widths"], deficient, "o-", label="rank(G) < n (information lost)")
    left.plot(s["widths"], [np.mean([r for _, _, r in solutions[w]]) for w in s["widths"]], "s--",
              label="a global minimum reached")
    left.set(ylabel=f"fraction of the {s['seeds']} seeds", ylim=(-0.05, 1.05), title=f"ReLU nets fitted to {n} examples")
    left.legend()
    for reached, style in ((False, dict(marker="x", color="tab:red", label="other solution")),
                           (True, dict(marker="o", facecolors="none", edgecolors="tab:blue", label="global minimum: rank(H)"))):
        points = [(w, rh if reached else rg) for w in s["widths"] for rg, rh, r in solutions[w] if r is reached]
        if points:
            right.scatter(*zip(*points), **style)
    right.axhline(n, color="gray", ls=":", label="n")
    right.set(ylabel="rank of the behavioral gradients", title="rank at each solution")
    right.legend()
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.minorticks_off()
        ax.set_xticks(s["widths"], [str(w) for w in s["widths"]])
        ax.set_xlabel("hidden width")
    fig.tight_layout()
    return {"held": held, "outcome": outcome, "deficient": dict(zip(map(str, s["widths"]), deficient)),
            "solutions": {str(w): r for w, r in solutions.items()},
            "parameters": {str(w): p for w, p in params.items()}}, fig


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
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
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
    fig, ax = plt.subplots(figsize=(6, 3.6))
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


@entry("mode-connectivity", title="Mode connectivity: a Bezier curve against the straight line",
       claim="Two nets trained from different seeds are joined by a trained Bezier curve along which the loss "
             "stays low, while the straight line between them crosses a loss barrier.",
       source="Garipov et al. 2018, Fig. 1; the course's lecture on mode connectivity",
       settings={"width": 32, "train_steps": 1500, "curve_steps": 600}, quick={"width": 32, "train_steps": 600,
                                                                                "curve_steps": 300},
       seconds=(2, 4))
def mode_connectivity(s: dict, folder: Path):
    from losslab.analysis.connect import connect
    from losslab.analysis.figures import connectivity_figure
    from losslab.analysis.objective import Objective

    (x, y), val = _digits(1000)
    ends = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(64, s["width"]), nn.ReLU(), nn.Linear(s["width"], 10))
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(s["train_steps"]):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        ends.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    found = connect(Objective(model, nn.functional.cross_entropy, (x, y)), ends[0], ends[1], "bezier",
                    steps=s["curve_steps"], val=Objective(model, nn.functional.cross_entropy, val))
    line, curve = found.barriers["line"], found.barriers["bezier"]
    held = line > 0.1 and curve < 0.25 * line
    outcome = f"loss barrier {line:.3f} along the line, {curve:.3f} along the Bezier curve"
    return ({"held": held, "outcome": outcome, "barriers": found.barriers},
            connectivity_figure(found.paths, "Two digits MLPs: the line and the Bezier curve"))


@entry("log-rosenbrock", title="Optimizer trajectories on log-Rosenbrock",
       claim="On log-Rosenbrock, from the classic start (-1.2, 1), Adam reaches the minimum while plain SGD, even at "
             "its best learning rate, crawls along the ravine.",
       source="Predicting grokking long before it happens, appendix I; the course's lecture on optimizers",
       settings={"steps": 2000, "optimizers": ["sgd", "momentum", "adam"]},
       quick={"steps": 1000, "optimizers": ["sgd", "momentum", "adam"]}, seconds=(3, 4))
def log_rosenbrock(s: dict, folder: Path):
    """Each optimizer at its best learning rate of a grid (losslab.optimize.run)."""
    from losslab.optimize.figures import trajectory_figure
    from losslab.optimize.functions import problem
    from losslab.optimize.run import run

    task = problem("log-rosenbrock")
    runs = {t.optimizer: t for t in run(task, s["optimizers"], s["steps"])}
    final = {name: float(t.distances[-1]) for name, t in runs.items()}
    held = final["adam"] < 1e-2 and final["sgd"] > 10 * final["adam"]
    outcome = "final distance to the minimum: " + ", ".join(f"{name} {d:.2g} (lr {runs[name].lr:.2g})"
                                                            for name, d in final.items())
    return {"held": held, "outcome": outcome, "final_distance": final}, trajectory_figure(task, list(runs.values()))


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
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
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


@entry("sam-flatness", title="SAM against SGD: sharpness and test error",
       claim="From the same initialization and batches, SAM ends in a flatter minimum than SGD (a smaller largest "
             "Hessian eigenvalue of the training loss) and generalizes at least as well.",
       source="Foret et al. 2021, Fig. 1-2; the course's seminar on SAM",
       settings={"width": 64, "steps": 2000, "rho": 0.05, "lr": 0.1}, quick={"width": 64, "steps": 600, "rho": 0.05,
                                                                           "lr": 0.1},
       seconds=(2, 3))
def sam_flatness(s: dict, folder: Path):
    from losslab.analysis.curvature import HessianOperator, extreme_eigenpairs
    from losslab.analysis.objective import Objective
    from losslab.optim import SAM

    (x, y), (x_test, y_test) = _digits(500)
    found, curves = {}, {}
    for name in ("SGD", "SAM"):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(64, s["width"]), nn.ReLU(), nn.Linear(s["width"], 10))
        opt = (SAM(model.parameters(), torch.optim.SGD, rho=s["rho"], lr=s["lr"], momentum=0.9) if name == "SAM"
               else torch.optim.SGD(model.parameters(), lr=s["lr"], momentum=0.9))
        order, curve = torch.Generator().manual_seed(1), []
        for step in range(s["steps"]):
            batch = torch.randint(len(x), (32,), generator=order)

            def closure():
                opt.zero_grad()
                loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
                loss.backward()
                return loss
            loss = closure()
            opt.step(closure) if name == "SAM" else opt.step()
            curve.append(loss.item())
        with torch.no_grad():
            error = float((model(x_test).argmax(-1) != y_test).float().mean())
        top = float(extreme_eigenpairs(HessianOperator(Objective(model, nn.functional.cross_entropy, (x, y))), 1)[0][0])
        found[name], curves[name] = {"lambda_max": top, "test_error": error}, curve
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, curve in curves.items():
        left.plot(np.convolve(curve, np.ones(50) / 50, "valid"), label=name)
    left.set(yscale="log", xlabel="step", ylabel="training loss (50-step mean)", title="Training")
    left.legend()
    names = list(found)
    right.bar([f"{n}\nlambda_max" for n in names], [found[n]["lambda_max"] for n in names], color=["C0", "C1"])
    twin = right.twinx()
    twin.plot([f"{n}\nlambda_max" for n in names], [100 * found[n]["test_error"] for n in names], "ko--")
    right.set(ylabel="largest Hessian eigenvalue (train)", title="Sharpness and test error (dashed, %)")
    twin.set_ylabel("test error (%)")
    fig.tight_layout()
    held = found["SAM"]["lambda_max"] < found["SGD"]["lambda_max"] and \
        found["SAM"]["test_error"] <= found["SGD"]["test_error"] + 0.005
    outcome = "; ".join(f"{n}: lambda_max {f['lambda_max']:.3g}, test error {f['test_error']:.1%}"
                        for n, f in found.items())
    return {"held": held, "outcome": outcome, **{n.lower(): f for n, f in found.items()}}, fig


@entry("muon-logistic", title="Muon against AdamW on logistic regression",
       claim="Muon orthogonalizes its update: held as a 10 x 10 matrix, the 100 weights of a logistic regression "
             "move by steps whose singular values are all near the rate (the ratio of the largest to the smallest, "
             "median over the steps, under 2, within the Newton-Schulz band), where AdamW's steps spread over more "
             "than ten times; at the seminar's rate both reach the same test loss (within 0.01), near the teacher's.",
       source="the course's seminar on Muon (logistic regression on N = 5000, D = 100, W as 10 x 10, batch 128)",
       settings={"epochs": 30, "lr": 0.02, "weight_decay": 0.01}, quick={"epochs": 10, "lr": 0.02, "weight_decay": 0.01},
       seconds=(2, 4))
def muon_logistic(s: dict, folder: Path):
    from losslab.optim.muon import Muon

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
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
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
    from losslab.bench.run import profile_figure, run_benchmark
    from losslab.store import RunStore

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


# ---------------------------------------------------------------- one grokking run, six figures

# a + b mod p, half the pairs to train on, the demo's transformer and AdamW (weight decay 1), probed
# every `probe_every` steps (Hessian extremes, geometry, intrinsic dimension); the six entries below
# share the run (its id is fixed by its config) and read what it recorded
GROKKING = {"p": 97, "train_fraction": 0.5, "d_model": 128, "d_mlp": 512, "lr": 1e-3, "stop_after_t4": 500,
            "probe_every": 500}
GROKKING_QUICK = {"p": 47, "train_fraction": 0.5, "d_model": 64, "d_mlp": 256, "lr": 3e-3, "stop_after_t4": 200,
                  "probe_every": 100}
GROKKING_SOURCE = "Predicting grokking long before it happens (Notsawo et al. 2023)"


def grokking_size(s: dict) -> list[str]:
    """The grokking preset's overrides for an entry's size: p, the model's widths, the rate."""
    return [f"task.p={s['p']}", f"model.d_model={s['d_model']}", f"model.d_mlp={s['d_mlp']}", f"optim.lr={s['lr']}"]


def grokking_run(s: dict) -> tuple[str, list[list[str]]]:
    """The shared grokking run: probed, a checkpoint at every log-spaced evaluation."""
    return "grokking", [[
        *grokking_size(s), f"task.train_fraction={s['train_fraction']}", f"train.stop_after_t4={s['stop_after_t4']}",
        f"probes.every={s['probe_every']}", "probes.hessian=true", "probes.dimension=true",
        "train.checkpoint_per_decade=20"]]


def _grokking(folder: Path, s: dict):
    """The shared grokking run: its summary, metric rows and folder."""
    return trained_each(folder, *grokking_run(s))[0]


def _probed(rows, name: str) -> tuple[np.ndarray, np.ndarray]:
    steps, values = zip(*sorted((step, v) for step, split, n, v in rows if (split, n) == ("probe", name)))
    return np.array(steps), np.array(values)


def _phases(steps: np.ndarray, events: dict, every: int) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the probes while the net has memorized and not yet generalized (t2 to halfway to t4),
    and of those as it generalizes (halfway to one probe past t4); empty where it never did."""
    if events.get("t2") is None or events.get("t4") is None:
        return np.zeros(len(steps), bool), np.zeros(len(steps), bool)
    halfway = (events["t2"] + events["t4"]) / 2
    return (steps > events["t2"]) & (steps <= halfway), (steps > halfway) & (steps <= events["t4"] + every)


def mark_events(ax, events: dict) -> None:
    for event, color in (("t2", "tab:blue"), ("t3", "tab:orange"), ("t4", "tab:red")):
        if events.get(event) is not None:
            ax.axvline(max(events[event], 1), color=color, ls="--", lw=1, label=f"{event} = {events[event]}")


@entry("grokking", title="Grokking: memorization first, generalization long after",
       claim="On a + b mod p with half of the pairs to train on, a 1-layer transformer trained by AdamW (weight decay "
             "1) fits its training set (t2) long before it generalizes (t4, at least 5 times later).",
       source=f"Power et al. 2022; {GROKKING_SOURCE}, Fig. 1; the course's lecture on grokking",
       settings=GROKKING, quick=GROKKING_QUICK, seconds=(75, 630), runs=grokking_run)
def grokking(s: dict, folder: Path):
    summary, rows, _ = _grokking(folder, s)
    return delayed_generalization(summary, rows, f"a + b mod {s['p']}, r = {s['train_fraction']:g}")


def delayed_generalization(summary: dict, rows, task: str) -> tuple[dict, object]:
    """Whether a run generalized (t4) at least 5 times later than it memorized (t2), and its curves
    with t1..t4 marked."""
    from losslab.report.figures import grokking_figure

    ev = summary["events"]
    held = ev.get("t4") is not None and ev.get("t2") is not None and ev["t4"] >= 5 * ev["t2"]
    outcome = ", ".join(f"{k} = {ev.get(k)}" for k in ("t1", "t2", "t3", "t4")) + (
        f": generalization {ev['t4'] / ev['t2']:.0f} times later than memorization" if held else
        f" ({summary['outcome']})")
    figure = grokking_figure([r for r in rows if r[1] in ("train", "val")], ev, f"{task}: {summary['outcome']}")
    return {"held": held, "outcome": outcome, "events": ev, "steps": summary["steps"]}, figure


@entry("grokking-curvature", title="The Hessian's extreme eigenvalues over a grokking run",
       claim="The training loss's Hessian stays indefinite (lambda_min < 0: a perturbed landscape, never a convex "
             "basin); its top curvature rises while the net memorizes, collapses on the plateau that follows, and "
             "spikes again on the way to generalization (t4): the slingshot that accompanies delayed generalization.",
       source=f"{GROKKING_SOURCE}, Fig. 11 and Sec. 5 (slingshots, Thilak et al. 2022)",
       settings=GROKKING, quick=GROKKING_QUICK, seconds=(1, 1),  # after `grokking`, whose run it reads
       runs=grokking_run)
def grokking_curvature(s: dict, folder: Path):
    summary, rows, _ = _grokking(folder, s)
    ev = summary["events"]
    steps, top = _probed(rows, "lambda_max")
    _, bottom = _probed(rows, "lambda_min")
    indefinite = float(np.mean(bottom < 0))
    memorized, generalizing = _phases(steps, ev, s["probe_every"])
    measured = memorized.any() and generalizing.any()
    collapse = float(top[memorized].min() / top[~generalizing & (steps <= ev["t4"])].max()) if measured else \
        float("nan")
    rise = float(top[generalizing].max() / top[memorized].min()) if measured else float("nan")
    held = indefinite >= 0.9 and collapse <= 0.1 and rise >= 10
    outcome = (f"lambda_min < 0 at {indefinite:.0%} of {len(steps)} probes; lambda_max peaks at {top.max():.3g} "
               f"(step {steps[top.argmax()]}); "
               + (f"on the plateau after t2 it falls to {collapse:.1e} of that peak, then rises {rise:.3g} "
                  f"times as the net generalizes" if measured else f"the phases were not seen ({summary['outcome']})"))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    shown = np.maximum(steps, 1)
    left.plot(shown, top, "o-", ms=3, label="lambda_max")
    left.plot(shown, -bottom, "s-", ms=3, label="-lambda_min")
    left.set(xscale="log", yscale="log", xlabel="step", ylabel="eigenvalue of the training loss's Hessian")
    right.plot(shown, -bottom / top, "o-", ms=3, color="tab:purple")
    right.set(xscale="log", yscale="log", xlabel="step", ylabel="|lambda_min| / lambda_max",
              title="how far from convex (Li et al.'s ratio)")
    for ax in (left, right):
        mark_events(ax, ev)
    left.legend(fontsize=7)
    fig.tight_layout()
    return {"held": held, "outcome": outcome, "indefinite": indefinite, "collapse": collapse, "slingshot_rise": rise,
            "lambda_max": top.tolist(), "lambda_min": bottom.tolist(), "steps": steps.tolist()}, fig


@entry("grokking-trajectory", title="The geometry of a grokking trajectory",
       claim="A grokking run's trajectory in weight space lies almost in a plane: its first two principal "
             "directions hold more than 98% of its variance, while it moves steadily away from its start "
             "(cos(theta_t, theta_0) falls) along nearly parallel steps (cos(theta_t, theta_t+1) near 1).",
       source=f"{GROKKING_SOURCE}, appendix G.3 and Fig. 14",
       settings=GROKKING, quick=GROKKING_QUICK, seconds=(2, 5), runs=grokking_run)
def grokking_trajectory(s: dict, folder: Path):
    from losslab.analysis.trajectory import trajectory_geometry
    from losslab.train.checkpoints import checkpoint_paths

    summary, rows, run = _grokking(folder, s)
    ev = summary["events"]
    # the log-spaced checkpoints (not last.pt, whose step is set by the clock: the figure would vary)
    paths = {step: path for step, path in checkpoint_paths(run).items() if path.name != "last.pt"}
    checkpoint_steps = list(paths)
    geometry = trajectory_geometry([run.load_checkpoint(path)["model"] for path in paths.values()])
    steps, to_start = _probed(rows, "cos_theta0")
    previous_steps, consecutive = _probed(rows, "cos_previous")
    two = geometry["explained_by_two"]
    held = bool(two > 0.98 and to_start[-1] < 0.5 * to_start[1] and np.median(consecutive) > 0.95)
    outcome = (f"{two:.1%} of the variance of {len(paths)} checkpoints in two principal directions "
               f"({', '.join(f'{v:.1%}' for v in geometry['explained_variance'][:3])}); cos(theta_t, theta_0) "
               f"{to_start[1]:.2f} at step {steps[1]} -> {to_start[-1]:.2f} at {steps[-1]}; consecutive probes' "
               f"cosine {np.median(consecutive):.3f} (median), {consecutive.min():.3f} at least")
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    xy = np.array(geometry["projected"])
    dots = left.scatter(xy[:, 0], xy[:, 1], c=np.log10(np.maximum(checkpoint_steps, 1)), cmap="viridis", s=14)
    left.plot(xy[:, 0], xy[:, 1], color="gray", lw=0.6)
    fig.colorbar(dots, ax=left, label="log10 step")
    left.set(xlabel=f"PC 1 ({geometry['explained_variance'][0]:.1%})",
             ylabel=f"PC 2 ({geometry['explained_variance'][1]:.1%})", title="the checkpoints on two principal axes")
    right.plot(np.maximum(steps, 1), to_start, "o-", ms=3, label="cos(theta_t, theta_0)")
    right.plot(previous_steps, consecutive, "s-", ms=3, label=f"cos(theta_t, theta_t-{s['probe_every']})")
    mark_events(right, ev)
    right.set(xscale="log", xlabel="step", ylabel="cosine", title="cosines of the weights")
    right.legend(fontsize=7)
    fig.tight_layout()
    return {"held": held, "outcome": outcome, "explained_by_two": two,
            "explained_variance": geometry["explained_variance"], "cos_theta0": to_start.tolist(),
            "cos_previous": consecutive.tolist()}, fig


@entry("grokking-landscape", title="The line from each checkpoint of a grokking run to its final weights",
       claim="The memorizing solutions are separated from the generalizing one: from every checkpoint between t2 "
             "and t3 the training loss along the straight line to the final weights rises above both ends: a "
             "barrier, highest once the net has memorized, worn down over the plateau; from the checkpoints before "
             "t1 and from t4 on the line barely rises (less than a tenth of the barrier's height).",
       source=f"{GROKKING_SOURCE}, Fig. 4 and its summary (the memorization phase is separated from comprehension)",
       settings={**GROKKING, "points": 21}, quick={**GROKKING_QUICK, "points": 11}, seconds=(9, 67),
       runs=grokking_run)
def grokking_landscape(s: dict, folder: Path):
    from losslab.analysis.directions import direction_to
    from losslab.analysis.figures import checkpoint_heatmap
    from losslab.analysis.surface import loss_line
    from losslab.train.checkpoints import checkpoint_paths, load_checkpoint

    summary, _, run = _grokking(folder, s)
    ev = summary["events"]
    paths = {step: path for step, path in checkpoint_paths(run).items() if path.name != "last.pt"}
    last = max(paths)
    final = run.load_checkpoint(paths[last])["model"]
    lines = {}
    for step in paths:
        at = load_checkpoint(run, step)
        lines[step] = [loss_line(obj, direction_to(obj, final), (0.0, 1.0), s["points"])
                       for obj in (at.objective("train"), at.objective("val"))]
    steps = np.array(list(lines))
    rise = np.array([train.loss.max() - max(train.loss[0], train.loss[-1]) for train, _ in lines.values()])
    t1, t2, t3, t4 = (np.inf if ev.get(e) is None else ev[e] for e in ("t1", "t2", "t3", "t4"))
    memorized, flat = (t2 <= steps) & (steps <= t3), (steps < t1) | ((t4 <= steps) & (steps < last))
    measured = memorized.any() and flat.any()
    held = bool(measured and memorized[rise.argmax()] and rise[memorized].min() > 0.1
                and rise[flat].max() < 0.1 * rise.max())
    dip = min(train.acc.min() for (train, _), m in zip(lines.values(), memorized) if m) if measured else None
    outcome = (f"the training loss rises {rise[memorized].min():.2f}..{rise[memorized].max():.2f} above both ends "
               f"from the {memorized.sum()} checkpoints between t2 = {ev['t2']} and t3 = {ev['t3']} (training "
               f"accuracy down to {dip:.0%} on the way), at most {rise[flat].max():.2g} from the {flat.sum()} before "
               f"t1 = {ev['t1']} or from t4 = {ev['t4']} on" if measured else
               f"the phases were not seen ({summary['outcome']})")
    figure = checkpoint_heatmap(steps.tolist(), lines[last][0].alphas,
                                np.array([train.loss for train, _ in lines.values()]),
                                np.array([val.acc for _, val in lines.values()]),
                                f"a + b mod {s['p']}: from each checkpoint (alpha = 0) to the final weights (alpha = 1); "
                                "left: training loss, right: validation accuracy")
    return {"held": held, "outcome": outcome, "events": ev, "steps": steps.tolist(), "rise": rise.tolist()}, figure


@entry("grokking-dimension", title="Intrinsic dimension of the representations over a grokking run",
       claim="The intrinsic dimension of what the unembedding reads collapses when the net generalizes: after t4 it "
             "is less than half of what it was while the net memorized.",
       source=f"{GROKKING_SOURCE}, appendix H (TwoNN, Facco et al. 2017)",
       settings=GROKKING, quick=GROKKING_QUICK, seconds=(1, 1),  # after `grokking`, whose run it reads
       runs=grokking_run)
def grokking_dimension(s: dict, folder: Path):
    summary, rows, _ = _grokking(folder, s)
    ev = summary["events"]
    layers = sorted({n.removeprefix("dim_twonn/") for _, split, n, _ in rows if n.startswith("dim_twonn/")})
    series = {layer: _probed(rows, f"dim_twonn/{layer}") for layer in layers}
    steps, unembed = series["unembed"]
    memorizing = unembed[_phases(steps, ev, s["probe_every"])[0]]
    after = unembed[steps >= (ev.get("t4") or np.inf)]
    held = bool(len(memorizing) and len(after) and after.mean() < 0.5 * memorizing.max())
    outcome = (f"TwoNN dimension of the unembedding's input: up to {memorizing.max():.1f} after t2 (halfway to t4), "
               f"{after.mean():.1f} on average after t4" if len(memorizing) and len(after)
               else f"not measured: no probe between t2 and t3 or after t4 ({summary['outcome']})")
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for layer, (layer_steps, dims) in series.items():
        ax.plot(np.maximum(layer_steps, 1), dims, "o-" if layer == "unembed" else "-", ms=3, label=layer,
                lw=2 if layer == "unembed" else 1)
    mark_events(ax, ev)
    ax.set(xscale="log", xlabel="step", ylabel="TwoNN intrinsic dimension", title="what each Linear layer reads")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return {"held": held, "outcome": outcome, "unembed": unembed.tolist(), "steps": steps.tolist()}, fig


@entry("epochwise-double-descent", title="Epoch-wise double descent in a grokking run",
       claim="The validation loss of a grokking run descends, rises again while the net memorizes (after t2), and "
             "descends a second time as it generalizes: epoch-wise double descent.",
       source=f"Nakkiran et al. 2019 (Deep double descent), Fig. 2; Davies et al. 2023 (Unifying grokking and double "
              f"descent); {GROKKING_SOURCE}",
       settings=GROKKING, quick=GROKKING_QUICK, seconds=(1, 1), runs=grokking_run)
def epochwise_double_descent(s: dict, folder: Path):
    from losslab.analysis.double_descent import epochwise
    from losslab.analysis.figures import epochwise_figure

    summary, rows, _ = _grokking(folder, s)
    ev = summary["events"]
    steps, values = zip(*sorted((step, v) for step, split, n, v in rows if (split, n) == ("val", "loss")))
    found = epochwise(steps, values)
    held = bool(found and ev.get("t2") is not None and ev["t2"] <= found["peak"] and
                (ev.get("t4") is None or found["peak"] < ev["t4"]))
    outcome = (f"the validation loss is lowest first at step {found['first_minimum']}, peaks at {found['peak']} "
               f"(t2 = {ev.get('t2')}), and is below its first minimum again from {found['second_descent']} "
               f"(t4 = {ev.get('t4')})" if found else "the validation loss does not descend twice")
    figure = epochwise_figure(steps, values, found, f"a + b mod {s['p']}: the validation loss")
    mark_events(figure.axes[0], ev)
    figure.axes[0].legend(fontsize=7)
    return {"held": held, "outcome": outcome, "found": found, "events": ev}, figure


def division_run(s: dict) -> tuple[str, list[list[str]]]:
    return "division", [[*grokking_size(s), f"task.train_fraction={s['train_fraction']}",
                         f"train.stop_after_t4={s['stop_after_t4']}"]]


@entry("modular-division", title="Grokking of modular division with a 2-layer transformer",
       claim="On a / b mod p with half of the pairs (b != 0) to train on, the lecture's 2-layer transformer (width "
             "128, 4 heads) trained by AdamW (weight decay 1) fits its training set (t2) long before it generalizes "
             "(t4, at least 5 times later).",
       source="Power et al. 2022, Fig. 1 (a / b mod 97); the course's lecture on grokking",
       # full: the division preset at a rate of 3e-3, 0.4 s a step to t4 = 1,200 and 500 steps on (at
       # its own 1e-3, t4 = 5,200: 38.5 minutes); quick: smaller and on 70% of the pairs (at r = 0.5 it
       # memorizes and stays at chance for 6,000 steps at this size)
       settings={"p": 97, "train_fraction": 0.5, "d_model": 128, "d_mlp": 512, "lr": 3e-3, "stop_after_t4": 500},
       quick={"p": 47, "train_fraction": 0.7, "d_model": 64, "d_mlp": 256, "lr": 3e-3, "stop_after_t4": 200},
       seconds=(67, 700), runs=division_run)
def modular_division(s: dict, folder: Path):
    summary, rows, _ = trained_each(folder, *division_run(s))[0]
    return delayed_generalization(summary, rows, f"a / b mod {s['p']}, r = {s['train_fraction']:g}, 2 layers")


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
    (x, y), (x_test, y_test) = _digits(1000, torch.float64)
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
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
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


class _Residual(nn.Module):
    """x + relu(W x) with the skip, relu(W x) without: Li et al.'s comparison on a deep MLP."""

    def __init__(self, width: int, skip: bool):
        super().__init__()
        self.linear, self.skip = nn.Linear(width, width), skip

    def forward(self, x):
        out = torch.relu(self.linear(x))
        return x + out if self.skip else out


@entry("skip-connections", title="Loss surfaces with and without skip connections",
       claim="A deep net without skip connections has a chaotic, strongly non-convex loss surface around its minimum; "
             "the same net with skips is nearly convex there: the ratio |lambda_min| / lambda_max of the Hessian over "
             "the plane is several times larger without skips.",
       source="Li et al. 2018 (Visualizing the loss landscape of neural nets), Fig. 5 and 7 (ResNet-56 with and "
              "without skips, here a deep residual MLP on digits); the course's lecture on loss landscapes",
       settings={"depth": 12, "width": 32, "steps": 1500, "surface": 21, "curvature": 5},
       quick={"depth": 12, "width": 32, "steps": 1500, "surface": 15, "curvature": 3}, seconds=(45, 110))
def skip_connections(s: dict, folder: Path):
    """Both nets from the same seed, trained by Adam on 1000 digits; the plane spanned by two
    filter-normalized random directions (the same seeds) around each minimum, over [-1, 1]^2; the
    Hessian's extreme eigenvalues at a curvature x curvature grid of its points. 12 layers: at 20,
    the net without skips does not train (loss 1.1 after 800 steps, against 6e-5 with them)."""
    import copy

    from losslab.analysis.curvature import HessianOperator, extreme_eigenpairs
    from losslab.analysis.directions import random_direction
    from losslab.analysis.objective import Objective
    from losslab.analysis.surface import axis, loss_plane

    (x, y), _ = _digits(1000)
    found = {}
    for name, skip in (("without skips", False), ("with skips", True)):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(64, s["width"]), *[_Residual(s["width"], skip) for _ in range(s["depth"])],
                              nn.Linear(s["width"], 10))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        for _ in range(s["steps"]):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        obj = Objective(model, nn.functional.cross_entropy, (x, y))
        d1, d2 = random_direction(obj, seed=1), random_direction(obj, seed=2)
        surface = loss_plane(obj, d1, d2, points=s["surface"])
        ratios = np.zeros((s["curvature"], s["curvature"]))
        for i, a in enumerate(axis(-1, 1, s["curvature"])):
            for j, b in enumerate(axis(-1, 1, s["curvature"])):
                at = copy.deepcopy(model)
                at.load_state_dict(obj.shifted(a * d1 + b * d2))
                h = HessianOperator(Objective(at, nn.functional.cross_entropy, (x, y)))
                top = float(extreme_eigenpairs(h, 1, "top")[0][0])
                bottom = float(extreme_eigenpairs(h, 1, "bottom", tol=1e-4, scale=top)[0][0])
                ratios[i, j] = abs(min(bottom, 0.0)) / top
        found[name] = {"surface": surface, "ratios": ratios, "loss": obj.value}
    ratio = {name: float(f["ratios"].mean()) for name, f in found.items()}
    held = ratio["without skips"] > 3 * ratio["with skips"]
    outcome = ("mean |lambda_min| / lambda_max over the plane: " + ", ".join(f"{r:.3f} {n}" for n, r in ratio.items())
               + "; training loss " + ", ".join(f"{f['loss']:.2g} {n}" for n, f in found.items()))
    fig, axes = plt.subplots(2, 2, figsize=(9.5, 8))
    for column, (name, f) in enumerate(found.items()):
        surface = f["surface"]
        shown = axes[0, column].contour(surface.alphas, surface.betas, np.log10(surface.loss.T), levels=20)
        fig.colorbar(shown, ax=axes[0, column], label="log10 training loss")
        axes[0, column].set(title=f"{s['depth']} layers {name}", xlabel="direction 1", ylabel="direction 2")
        grid = axis(-1, 1, s["curvature"])
        image = axes[1, column].imshow(f["ratios"].T, origin="lower", extent=(-1.25, 1.25, -1.25, 1.25),
                                       vmin=0, vmax=max(f2["ratios"].max() for f2 in found.values()), cmap="viridis")
        axes[1, column].set(xticks=grid, yticks=grid, title=f"|lambda_min| / lambda_max (mean {ratio[name]:.3f})")
        fig.colorbar(image, ax=axes[1, column])
    fig.tight_layout()
    return {"held": held, "outcome": outcome, "mean_ratio": ratio, "training_loss": {n: f["loss"] for n, f in found.items()},
            "ratios": {n: f["ratios"].tolist() for n, f in found.items()}}, fig


@entry("rastrigin", title="Optimizer trajectories on Rastrigin",
       claim="On Rastrigin, from (3.3, -2.1), no gradient method reaches the global minimum, even at its best "
             "learning rate: each settles in a local minimum, the landscape's many basins trap local search.",
       source="the course's lecture on optimizers (trajectories on test functions)",
       settings={"steps": 2000, "optimizers": ["sgd", "momentum", "adam"]},
       quick={"steps": 1000, "optimizers": ["sgd", "momentum", "adam"]}, seconds=(3, 5))
def rastrigin(s: dict, folder: Path):
    """Each optimizer at its best learning rate of a grid (losslab.optimize.run): the one that ends
    nearest the global minimum."""
    from losslab.optimize.figures import trajectory_figure
    from losslab.optimize.functions import problem
    from losslab.optimize.run import run

    task = problem("rastrigin")
    runs = {t.optimizer: t for t in run(task, s["optimizers"], s["steps"])}
    final = {name: (float(t.distances[-1]), float(t.values[-1])) for name, t in runs.items()}
    held = all(distance > 0.5 and value > 0.5 for distance, value in final.values())
    outcome = "final distance to the global minimum and value there: " + ", ".join(
        f"{name} {d:.2f} and {v:.2f} (lr {runs[name].lr:.2g})" for name, (d, v) in final.items())
    return {"held": held, "outcome": outcome, "final": final}, trajectory_figure(task, list(runs.values()))


@entry("dropout-surfaces", title="Loss along random directions with and without dropout",
       claim="A net trained with dropout (p = 0.2) ends in a flatter minimum than the same net without it: along "
             "random filter-normalized directions its training loss rises less; at the start both look alike.",
       source="the course's lecture on loss landscapes (line projections around the start and the end)",
       settings={"width": 256, "steps": 3000, "directions": 8, "points": 41},
       quick={"width": 256, "steps": 1500, "directions": 4, "points": 25}, seconds=(25, 60))
def dropout_surfaces(s: dict, folder: Path):
    """An MLP 64 -> width -> width -> 10 on 500 digits by Adam, from one seed; the lines are evaluated
    in eval mode (no dropout) over [-1, 1] of each direction; the rise is the mean loss at |a| = 0.5
    over the directions, less the loss at a = 0."""
    from losslab.analysis.directions import random_direction
    from losslab.analysis.objective import Objective
    from losslab.analysis.surface import loss_line

    (x, y), _ = _digits(500)
    lines, rises = {}, {}
    for name, p in (("no dropout", 0.0), ("dropout 0.2", 0.2)):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(64, s["width"]), nn.ReLU(), nn.Dropout(p), nn.Linear(s["width"], s["width"]),
                              nn.ReLU(), nn.Dropout(p), nn.Linear(s["width"], 10))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        for moment in ("start", "end"):
            if moment == "end":
                model.train()
                for _ in range(s["steps"]):
                    opt.zero_grad()
                    nn.functional.cross_entropy(model(x), y).backward()
                    opt.step()
            model.eval()
            obj = Objective(model, nn.functional.cross_entropy, (x, y))
            found = [loss_line(obj, random_direction(obj, seed=d), points=s["points"]) for d in range(s["directions"])]
            alphas = found[0].alphas
            mean = np.mean([f.loss for f in found], axis=0)
            lines[(name, moment)] = (alphas, mean)
            at_half = np.isclose(np.abs(alphas), 0.5)
            rises[f"{name}, {moment}"] = float(mean[at_half].mean() - mean[np.isclose(alphas, 0)][0])
    end_ratio = rises["no dropout, end"] / rises["dropout 0.2, end"]
    start_ratio = rises["no dropout, start"] / rises["dropout 0.2, start"]
    held = end_ratio > 1.5 and 0.67 < start_ratio < 1.5
    outcome = ("mean loss rise at |a| = 0.5: " + ", ".join(f"{k} {v:.3g}" for k, v in rises.items())
               + f"; at the end {end_ratio:.2g} times more without dropout, at the start {start_ratio:.2g}")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=False)
    for ax, moment in zip(axes, ("start", "end")):
        for name in ("no dropout", "dropout 0.2"):
            ax.plot(*lines[(name, moment)], label=name)
        ax.set(xlabel="a (along a filter-normalized random direction)", ylabel="training loss (mean of the lines)",
               title=f"around the {moment}", yscale="log")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return {"held": held, "outcome": outcome, "rise": rises}, fig


def ring(size: int) -> list[list[int]]:
    """The built-in pattern of Multi-Point Optimization: a ring (1: low loss) with a dot in its middle."""
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    radius = np.hypot(xx, yy) / (size / 2)
    return ((np.abs(radius - 0.65) < 0.18) | (radius < 0.15)).astype(int).tolist()


@entry("multi-point", title="Multi-Point Optimization: a picture drawn in the loss surface",
       claim="A plane in weight space can be trained so that the loss over it takes a prescribed shape: the nets at "
             "the pixels of a picture fit the data where it is light and a relabelling of it (every class to the next) where it is dark, and the "
             "picture comes back in the training accuracy over the plane.",
       source="Skorokhodov and Burtsev 2019 (Loss landscape sightseeing with multi-point optimization)",
       settings={"pattern": ring(12), "width": 64, "examples": 300, "steps": 3000, "spacing": 1.0},
       quick={"pattern": ring(10), "width": 64, "examples": 200, "steps": 1500, "spacing": 1.0}, seconds=(70, 200))
def multi_point(s: dict, folder: Path):
    """The plane theta(a, b) = w0 + a u + b v (w0, u, v trained together by Adam), a pixel (i, j) at
    (a, b) = (i, j); an MLP 64 -> width -> 10 on `examples` digits; all the pixels' nets at once
    (torch.func.vmap over their weights). `pattern`: rows of 0 (dark) and 1 (light); `--image`
    gives one from a picture."""
    from torch.func import functional_call, vmap

    (x, y), _ = _digits(s["examples"])
    pattern = torch.tensor(s["pattern"], dtype=torch.bool)
    rows, cols = pattern.shape
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, s["width"]), nn.ReLU(), nn.Linear(s["width"], 10))
    shapes = {name: p.shape for name, p in model.named_parameters()}
    sizes = [p.numel() for p in model.parameters()]
    w0 = nn.Parameter(torch.cat([p.detach().flatten() for p in model.parameters()]))
    # neighbouring pixels' nets `spacing` times the weights' scale apart at the start
    u, v = (nn.Parameter(torch.randn(len(w0)) * s["spacing"] * w0.detach().std()) for _ in range(2))

    def outputs(w):
        params = {name: piece.view(shape) for (name, shape), piece in zip(shapes.items(), w.split(sizes))}
        return functional_call(model, params, (x,))
    every = vmap(outputs)
    a, b = (torch.arange(n, dtype=torch.float32) for n in (rows, cols))
    grid_a, grid_b = torch.meshgrid(a, b, indexing="ij")

    def weights(ga, gb):
        return w0 + ga.reshape(-1, 1) * u + gb.reshape(-1, 1) * v
    targets = torch.where(pattern.reshape(-1, 1), y, (y + 1) % 10)  # (pixels, examples); dark: every label moved
    opt = torch.optim.Adam([w0, u, v], lr=1e-2)
    for _ in range(s["steps"]):
        out = every(weights(grid_a, grid_b))  # (pixels, examples, 10)
        loss = nn.functional.cross_entropy(out.reshape(-1, 10), targets.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        at_pixels = (every(weights(grid_a, grid_b)).argmax(-1) == y).float().mean(-1).reshape(rows, cols)
        fine = 4 * max(rows, cols)
        fa, fb = torch.meshgrid(torch.linspace(-1, rows, fine), torch.linspace(-1, cols, fine), indexing="ij")
        surface = torch.cat([(every(weights(ca, cb)).argmax(-1) == y).float().mean(-1)
                             for ca, cb in zip(fa.split(16), fb.split(16))]).reshape(fine, fine)
    recovered = at_pixels > 0.5
    agreement = float((recovered == pattern).float().mean())
    light, dark = at_pixels[pattern], at_pixels[~pattern]
    held = agreement >= 0.95
    outcome = (f"{agreement:.1%} of the {rows * cols} pixels recovered (training accuracy above 50% exactly where the "
               f"picture is light): {float(light.mean()):.1%} on average at light pixels, {float(dark.mean()):.1%} "
               f"at dark ones")
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.4))
    left.imshow(pattern.numpy(), cmap="gray", origin="lower")
    left.set(title="the picture asked for", xticks=[], yticks=[])
    extent = (-1.5, cols + 0.5, -1.5, rows + 0.5)
    shown = right.imshow(surface.numpy(), cmap="gray", origin="lower", extent=extent, vmin=0, vmax=1)
    fig.colorbar(shown, ax=right, label="training accuracy")
    right.set(title="the training accuracy over the trained plane", xlabel="b", ylabel="a")
    fig.tight_layout()
    return {"held": held, "outcome": outcome, "agreement": agreement,
            "accuracy_at_pixels": at_pixels.tolist()}, fig


# ---------------------------------------------------------------- grokking runs against a setting

def phase_grid(s: dict) -> list[tuple[float, float]]:
    return [(lr, wd) for lr in s["rates"] for wd in s["weight_decays"]]


def phase_runs(s: dict) -> tuple[str, list[list[str]]]:
    """One run per (rate, weight decay), for at most `max_steps`; every step's loss of the first
    `early_steps` kept (each run lasts that long)."""
    early = s["early_steps"]
    return "grokking", [[*grokking_size({**s, "lr": lr}), f"optim.weight_decay={wd}", f"train.max_steps={s['max_steps']}",
                         f"train.record_loss_steps={early}", f"train.stop_after_t4={early}"] for lr, wd in phase_grid(s)]


@entry("grokking-phase-diagram", title="The phase diagram of grokking, beside the early spectral energy",
       claim="Over weight decay x learning rate, grokking within a budget of steps takes a region of the plane: at "
             "every rate the least weight decay memorizes without generalizing and the most generalizes. Which runs "
             "will grok shows in their first T steps, long before: their training loss oscillates, so its spectral "
             "energy ranks them above the runs that will not (ROC AUC > 0.8).",
       source=f"{GROKKING_SOURCE}, Fig. 2 and Sec. 3",
       settings={"p": 47, "d_model": 64, "d_mlp": 256, "rates": [1e-3, 2e-3, 3e-3, 5e-3, 1e-2],
                 "weight_decays": [0.1, 0.3, 0.6, 1.0, 2.0], "max_steps": 3000, "early_steps": 200},
       quick={"p": 47, "d_model": 64, "d_mlp": 256, "rates": [1e-3, 3e-3, 1e-2], "weight_decays": [0.1, 1.0, 2.0],
              "max_steps": 2000, "early_steps": 200},
       seconds=(71, 504), runs=phase_runs)
def grokking_phase_diagram(s: dict, folder: Path):
    """One run per (rate, weight decay), from one seed (phase_runs), its spectral signature taken
    from its first `early_steps` losses."""
    from sklearn.metrics import roc_auc_score

    from losslab.sweep.figures import phase_figure

    rows, early = [], s["early_steps"]
    for (lr, wd), (summary, _, _) in zip(phase_grid(s), trained_each(folder, *phase_runs(s), parallel=True)):
        t4 = summary["events"].get("t4")
        rows.append({"axis:optim.weight_decay": wd, "axis:optim.lr": lr, "status": summary["status"],
                     "val_acc": summary["final"]["val_acc"], "grokked": t4 is not None, "t4": t4,
                     "signature_energy": summary["signature"]["energy"]})
    by_rate = [[r["grokked"] for r in rows if r["axis:optim.lr"] == lr] for lr in s["rates"]]
    region = all(not grokked[0] and grokked[-1] for grokked in by_rate)  # weight decays ascending
    grokked = [r["grokked"] for r in rows]
    energy = [r["signature_energy"] for r in rows]
    auc = float(roc_auc_score(grokked, energy)) if 0 < sum(grokked) < len(rows) else None
    held = bool(region and auc is not None and auc > 0.8)
    t4s = [r["t4"] for r in rows if r["grokked"]]
    outcome = (f"{sum(grokked)} of {len(rows)} runs grokked within {s['max_steps']:,} steps"
               + (f" (t4 {min(t4s)} to {max(t4s)})" if t4s else "")
               + ("; at every rate the least weight decay did not and the most did" if region else
                  "; not at every rate did the least weight decay fail and the most grok")
               + (f"; the spectral energy of the first {early} steps ranks the grokking runs with ROC AUC {auc:.2f}"
                  if auc is not None else "; the runs do not fall in two classes: no AUC"))
    figure = phase_figure(rows, "optim.weight_decay", "optim.lr", ("val_acc", "t4", "signature_energy"))
    figure.suptitle(f"a + b mod {s['p']}, r = 0.5, {s['max_steps']:,} steps at most; energy of the first {early}")
    return {"held": held, "outcome": outcome, "auc_energy": auc, "runs": rows}, figure


def by_fraction(preset: str, overrides: list[str], fractions: list, seeds: list) -> tuple[str, list[list[str]]]:
    """One run of `preset` per training fraction and seed (the seed draws both the split and the
    initialization), each stopped at t4."""
    return preset, [[*overrides, f"task.train_fraction={r}", "train.stop_after_t4=0", f"seed={seed}"]
                    for r in fractions for seed in seeds]


def t4_by_fraction(folder: Path, runs: tuple[str, list[list[str]]], fractions: list, seeds: list) -> dict:
    """The runs of by_fraction: {(r, seed): (summary, metric rows)}."""
    runs = trained_each(folder, *runs, parallel=True)
    return {key: run[:2] for key, run in zip([(r, seed) for r in fractions for seed in seeds], runs)}


def t4_law(runs: dict, fractions: list, seeds: list) -> dict:
    """Each run's t4 (of t4_by_fraction's runs), the mean over seeds of each fraction where every seed
    grokked, t4(r) = a r^-gamma + b fitted to them where there are 4 or more, whether t4 falls as r
    grows; the means and the fit in words."""
    from losslab.sweep.phase import fit_power_law

    t4 = {key: summary["events"].get("t4") for key, (summary, _) in runs.items()}
    mean = {r: float(np.mean([t4[r, seed] for seed in seeds])) for r in fractions
            if all(t4[r, seed] is not None for seed in seeds)}
    fit = fit_power_law(list(mean), list(mean.values())) if len(mean) >= 4 else None
    falling = len(mean) > 1 and [mean[r] for r in sorted(mean)] == sorted(mean.values(), reverse=True)
    means = "mean t4: " + ", ".join(
        f"{r:g}: {mean[r]:.0f} ({'/'.join(str(t4[r, seed]) for seed in seeds)})" if r in mean
        else f"{r:g}: not every seed grokked" for r in fractions)
    fitted = (f"t4(r) = {fit['a']:.3g} r^{-fit['gamma']:.2f} + {fit['b']:.3g}, R^2 {fit['r2']:.3f}" if fit
              else f"{len(mean)} grokked fractions: too few for a fit (4 needed)")
    return {"t4": t4, "mean": mean, "fit": fit, "falling": falling, "means": means, "fitted": fitted}


def draw_t4(ax, law: dict) -> None:
    """Each run's t4 against its fraction, their means and the law fitted to them (t4_law's)."""
    from losslab.sweep.figures import power_law_figure

    t4, mean, fit = law["t4"], law["mean"], law["fit"]
    if fit:
        power_law_figure({"r": list(mean), "t4": list(mean.values()), "fit": fit}, "training fraction r", ax=ax)
    else:
        ax.scatter(list(mean), list(mean.values()), s=18, label="mean t4")
        ax.set(xlabel="training fraction r", ylabel="t4 (steps to generalize)",
               title="too few grokked fractions for a fit")
    grokked = [(r, t) for (r, _), t in t4.items() if t is not None]
    if grokked:
        ax.plot(*zip(*grokked), "x", color="gray", label="each run")
    ax.legend(fontsize=7)


def every_step_loss() -> str:
    """The override that keeps the training loss of every step of a grokking run."""
    from losslab.config import load_config

    return f"train.record_loss_steps={load_config('grokking').train.max_steps}"


def power_law_runs(s: dict) -> tuple[str, list[list[str]]]:
    """The grokking preset at the gallery's size, one run per fraction and seed, every step's loss
    kept: at r = 0.5, seed 0 the run is gradient-clipping's unclipped one (the same config), trained
    once for both."""
    return by_fraction("grokking", [*grokking_size(s), every_step_loss()], s["fractions"], s["seeds"])


@entry("grokking-power-law", title="t4 against the training fraction: a power law",
       claim="The fewer pairs a grokking run trains on, the later it generalizes, as a power law of the training "
             "fraction r: t4(r) = a r^-gamma + b fits the mean t4 over seeds with R^2 > 0.95, t4 falling as r grows.",
       source=f"{GROKKING_SOURCE}, Fig. 5 and Sec. 3",
       settings={"p": 97, "d_model": 128, "d_mlp": 512, "lr": 1e-3, "fractions": [0.5, 0.6, 0.7, 0.8],
                 "seeds": [0, 1]},
       quick={"p": 47, "d_model": 64, "d_mlp": 256, "lr": 3e-3, "fractions": [0.6, 0.7, 0.8, 0.9], "seeds": [0]},
       seconds=(26, 1194), runs=power_law_runs)
def grokking_power_law(s: dict, folder: Path):
    runs = t4_by_fraction(folder, power_law_runs(s), s["fractions"], s["seeds"])
    law = t4_law(runs, s["fractions"], s["seeds"])
    t4, fit = law["t4"], law["fit"]
    held = bool(fit and len(law["mean"]) == len(s["fractions"]) and fit["r2"] > 0.95 and law["falling"])
    figure, ax = plt.subplots(figsize=(5.5, 4), constrained_layout=True)
    draw_t4(ax, law)
    return {"held": held, "outcome": f"{law['means']}; {law['fitted']}",
            "t4": {f"{r:g}/{seed}": t for (r, seed), t in t4.items()},
            "mean_t4": {f"{r:g}": t for r, t in law["mean"].items()}, "fit": fit}, figure


def s5_runs(s: dict) -> tuple[str, list[list[str]]]:
    """The s5 preset (the demo's transformer and AdamW, full batch) at a rate of `lr` (3e-3: at 1e-3 t4
    comes 1.8 times later, at 6e-3 S5 generalizes as it memorizes), evaluated every 100 steps, for at
    most `max_steps`, one run per fraction from one seed."""
    return by_fraction("s5", [f"optim.lr={s['lr']}", "train.eval_every=100", f"train.max_steps={s['max_steps']}"],
                       s["fractions"], [0])


@entry("s5", title="Grokking of composition in S5, and its t4(r)",
       claim="Composition in the permutation group S5 (120 x 120 products) groks as addition mod p does: at every "
             "training fraction r the transformer fits its training pairs (t2) long before it generalizes (t4 >= 3 "
             "t2); over several fractions t4 falls as r grows, and over 4 or more t4(r) = a r^-gamma + b fits with "
             "R^2 > 0.95 (the paper fits gamma = 1.18 for S5).",
       source=f"{GROKKING_SOURCE}, Sec. 3 and Fig. 5 (its second task); Power et al. 2022",
       settings={"lr": 3e-3, "fractions": [0.8, 0.85, 0.9, 0.95], "max_steps": 4000},
       quick={"lr": 3e-3, "fractions": [0.9], "max_steps": 4000},  # one of the full instance's runs
       seconds=(230, 1300), runs=s5_runs)
def s5(s: dict, folder: Path):
    runs = t4_by_fraction(folder, s5_runs(s), s["fractions"], [0])
    events = {r: summary["events"] for (r, _), (summary, _) in runs.items()}
    law, several = t4_law(runs, s["fractions"], [0]), len(runs) > 1
    delayed = all(ev.get("t2") is not None and ev.get("t4") is not None and ev["t4"] >= 3 * ev["t2"]
                  for ev in events.values())
    held = bool(delayed and (law["falling"] or not several)
                and (law["fit"] is None or law["fit"]["r2"] > 0.95))
    outcome = "; ".join([*(f"r = {r:g}: t2 = {ev.get('t2')}, t4 = {ev.get('t4')}" for r, ev in events.items()),
                         *([("t4 falls as r grows" if law["falling"] else "t4 does not fall steadily with r"),
                            law["fitted"]] if several else [])])
    fig, axes = plt.subplots(1, 1 + several, figsize=(5.5 * (1 + several), 4), squeeze=False, constrained_layout=True)
    left = axes[0, 0]
    for color, ((r, _), (_, rows)) in zip(plt.cm.viridis(np.linspace(0, 0.85, len(runs))), runs.items()):
        for split, ls in (("train", ":"), ("val", "-")):
            steps, acc = zip(*sorted((step, v) for step, sp, n, v in rows if (sp, n) == (split, "acc")))
            left.plot(np.maximum(steps, 1), acc, ls=ls, color=color, label=f"r = {r:g}, {split}")
    if not several:
        mark_events(left, events[s["fractions"][0]])
    left.set(xscale="log", xlabel="step", ylabel="accuracy", title=f"S5, AdamW lr {s['lr']:g}, full batch")
    left.legend(fontsize=7)
    if several:  # t4 against r beside the curves
        draw_t4(axes[0, 1], law)
    return {"held": held, "outcome": outcome, "events": {f"{r:g}": ev for r, ev in events.items()},
            "mean_t4": {f"{r:g}": t for r, t in law["mean"].items()}, "fit": law["fit"]}, fig


def clipping_runs(s: dict) -> tuple[str, list[list[str]]]:
    """One run per threshold (None: unclipped), from one seed, stopped at t4, every step's loss kept."""
    return "grokking", [[*grokking_size(s), "train.stop_after_t4=0", every_step_loss(),
                         *([f"optim.clip_grad_norm={clip}"] if clip else [])] for clip in s["clips"]]


@entry("gradient-clipping", title="Gradient clipping and grokking",
       claim="Clipping the gradient norm slows grokking but does not prevent it: every clipped run still "
             "generalizes, the later the tighter the clip, and the spikes of its training loss after memorization "
             "are smaller.",
       source=f"{GROKKING_SOURCE}, appendix G.4",
       settings={"p": 97, "d_model": 128, "d_mlp": 512, "lr": 1e-3, "clips": [None, 1.0, 0.01]},
       quick={"p": 47, "d_model": 64, "d_mlp": 256, "lr": 3e-3, "clips": [None, 1.0, 0.01]},
       seconds=(37, 1100), runs=clipping_runs)
def gradient_clipping(s: dict, folder: Path):
    """A spike: the training loss's largest rise after t2 above its lowest value so far, in decades."""
    t4, spike, curves = {}, {}, {}
    for clip, (summary, rows, _) in zip(s["clips"], trained_each(folder, *clipping_runs(s), parallel=True)):
        ev = summary["events"]
        steps, losses = map(np.array, zip(*sorted((st, v) for st, split, n, v in rows
                                                  if (split, n) == ("train", "step_loss"))))
        after = np.log10(np.maximum(losses[steps > (ev.get("t2") or np.inf)], 1e-12))
        spike[clip] = float((after - np.minimum.accumulate(after)).max()) if len(after) else float("nan")
        t4[clip], curves[clip] = ev.get("t4"), (steps, losses)
    ordered = [t4[clip] for clip in s["clips"]]  # from unclipped to the tightest
    grokked = all(t is not None for t in ordered)
    slower = grokked and ordered == sorted(ordered) and ordered[-1] > ordered[0]
    held = bool(slower and spike[s["clips"][-1]] < spike[s["clips"][0]])
    name = {clip: f"clip {clip:g}" if clip else "unclipped" for clip in s["clips"]}
    outcome = "; ".join(f"{name[clip]}: t4 = {t4[clip]}, largest spike after t2 {spike[clip]:.2f} decades"
                        for clip in s["clips"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    for clip, (steps, losses) in curves.items():
        left.plot(np.maximum(steps, 1), losses, lw=0.6, label=name[clip])
    left.set(xscale="log", yscale="log", xlabel="step", ylabel="training loss (every step)")
    left.legend(fontsize=7)
    shown = [name[clip] for clip in s["clips"]]
    right.bar(shown, [t4[clip] or 0 for clip in s["clips"]], color="tab:red", alpha=0.7)
    right.set(ylabel="t4 (0: never)", title=f"a + b mod {s['p']}, one seed")
    fig.tight_layout()
    return {"held": held, "outcome": outcome, "t4": {name[c]: t for c, t in t4.items()},
            "spike": {name[c]: v for c, v in spike.items()}}, fig
