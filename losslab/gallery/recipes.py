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
    """A tanh MLP 2 -> width -> 1 fitted to (x, y) by L-BFGS as far as it goes (float64)."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(x.shape[1], width), nn.Tanh(), nn.Linear(width, 1)).double()
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
             "output Jacobian over the examples): at most the number of targets, however many parameters the "
             "net has.",
       source="the post on behavioral gradients and the information loss of basins, with its update on "
              "ultra-small data sets",
       settings={"examples": 5, "widths": [2, 3, 4, 6, 8, 12, 16], "seeds": 8},
       quick={"examples": 5, "widths": [2, 4, 8, 16], "seeds": 3}, seconds=(2, 8))
def hessian_rank(s: dict, folder: Path):
    from losslab.analysis.basin import basin
    from losslab.analysis.objective import Objective

    g = torch.Generator().manual_seed(0)
    x = torch.randn(s["examples"], 2, generator=g, dtype=torch.float64)
    y = torch.randn(s["examples"], 1, generator=g, dtype=torch.float64)
    ranks = {w: [] for w in s["widths"]}  # width -> (rank H, rank G) of each seed that reached a global minimum
    params = {}
    for width in s["widths"]:
        for seed in range(s["seeds"]):
            obj = Objective(_fit_exactly(width, x, y, seed), nn.functional.mse_loss, (x, y))
            params[width] = obj.size
            if obj.value > 1e-20:  # not interpolated: not a global minimum
                continue
            # a minimum reached to a loss of 1e-20 leaves residuals of 1e-10, and terms of that relative
            # size in H: its rank is counted at 1e-8 of the largest eigenvalue (G's at 1e-4)
            found = basin(obj, relative_tol=1e-4, hessian_rank=True)
            ranks[width].append((found.rank_H, found.rank_G))
    minima = [r for found in ranks.values() for r in found]
    equal = all(h == g for h, g in minima)
    held = bool(minima) and equal and all(h <= s["examples"] for h, _ in minima)
    reached = ", ".join(f"width {w}: {len(r)}/{s['seeds']}" for w, r in ranks.items())
    outcome = (f"rank(H) {'=' if equal else '!='} rank(G) at all {len(minima)} minima reached ({reached}); "
               f"ranks {sorted({h for h, _ in minima})} against {min(params.values())}-{max(params.values())} parameters")
    fig, ax = plt.subplots(figsize=(6, 3.6))
    widths = [w for w in s["widths"] if ranks[w]]
    ax.plot(widths, [np.mean([h for h, _ in ranks[w]]) for w in widths], "o-", label="rank(H)")
    ax.plot(widths, [np.mean([g for _, g in ranks[w]]) for w in widths], "x--", label="rank(G)")
    ax.plot(s["widths"], [params[w] for w in s["widths"]], ":", color="gray", label="parameters")
    ax.set(xscale="log", yscale="log", xlabel="hidden width", ylabel="rank at the minimum",
           title=f"MSE minima on {s['examples']} targets")
    ax.legend()
    fig.tight_layout()
    return {"held": held, "outcome": outcome, "ranks": {str(w): r for w, r in ranks.items()},
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


def _trained(folder: Path, preset: str, overrides: list[str]) -> tuple[dict, list]:
    """A run of `preset` with `overrides` trained into the gallery's store: its summary and metric rows."""
    from losslab.config import load_config
    from losslab.store import RunStore
    from losslab.train.loop import finish, prepare

    store = RunStore(folder / "runs")
    summary = finish(prepare(load_config(preset, overrides), store), figures=False)
    return summary, store.find(summary["run_id"]).metric_rows()


@entry("deep-relu-init", title="A deep ReLU net from Kaiming's and from a naive initialization",
       claim="A 30-layer ReLU MLP learns digits from Kaiming's initialization; from N(0, 0.01^2) its signal and "
             "gradients vanish and it stays at chance.",
       source="He et al. 2015, Fig. 3; the course's lecture on initialization",
       settings={"steps": 1000}, quick={"steps": 300}, seconds=(5, 9))
def deep_relu_init(s: dict, folder: Path):
    finals = {}
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for init in ("kaiming", "normal"):
        summary, rows = _trained(folder, "deep-relu", [f"train.max_steps={s['steps']}", "train.eval_every=50",
                                                       f"model.init={init}"])
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
    from sklearn.datasets import load_digits

    from losslab.analysis.connect import connect
    from losslab.analysis.figures import connectivity_figure
    from losslab.analysis.objective import Objective

    data, target = load_digits(return_X_y=True)
    x, y = torch.tensor(data, dtype=torch.float32) / 16, torch.tensor(target)
    (x, y), val = (x[:1000], y[:1000]), (x[1000:], y[1000:])
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


@entry("heavy-tailed-classes", title="SGD and Adam on heavy-tailed classes",
       claim="With heavy-tailed class frequencies, gradient descent learns the frequent classes and leaves the rare "
             "ones near where they started, while Adam learns every frequency group.",
       source="Kunstner et al. 2024, Fig. 1; the course's lecture on Adam",
       settings={"steps": 300}, quick={"steps": 100}, seconds=(9, 22))
def heavy_tailed_classes(s: dict, folder: Path):
    rare = {}
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, (name, overrides) in zip(axes, {"gradient descent": ["optim.name=sgd", "optim.lr=1"],
                                            "Adam": []}.items()):
        _, rows = _trained(folder, "heavy-tail", [f"train.max_steps={s['steps']}", *overrides])
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
    from sklearn.datasets import load_digits

    from losslab.analysis.curvature import HessianOperator, extreme_eigenpairs
    from losslab.analysis.objective import Objective
    from losslab.optim import SAM

    data, target = load_digits(return_X_y=True)
    x, y = torch.tensor(data, dtype=torch.float32) / 16, torch.tensor(target)
    (x, y), (x_test, y_test) = (x[:500], y[:500]), (x[500:], y[500:])
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
