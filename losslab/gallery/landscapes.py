"""The gallery's entries on loss landscapes and generalization: double descent, Hessian rank,
mode connectivity, SAM, skip connections, dropout and Multi-Point Optimization. Each is a recipe
of the library a user can copy to start a study of their own: what it computes, its figure, and
the test of its claim on what it measured."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from losslab.core.plotting import subplots
from losslab.gallery.data import digits
from losslab.gallery.registry import entry


@entry("double-descent", title="Model-wise double descent",
       claim="The test risk of min-norm random-features regression peaks where the features just fit the n "
             "training points (N = n), and falls again as N grows past them.",
       source="Belkin et al. 2019 (PNAS), Fig. 1; the course's lecture on double descent",
       settings={"n_train": 100, "noise": 0.5, "seeds": 10,
                 "features": [10, 20, 40, 60, 80, 90, 100, 110, 120, 150, 200, 300, 500, 1000]},
       quick={"n_train": 100, "noise": 0.5, "seeds": 3, "features": [10, 40, 80, 100, 120, 200, 500, 1000]},
       seconds=(1, 1))
def double_descent(s: dict, folder: Path):
    from losslab.analysis.double_descent import random_features_risk  # startup
    from losslab.analysis.figures import double_descent_figure  # startup

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
    from scipy.stats import spearmanr  # startup

    from losslab.analysis.basin import basin  # startup
    from losslab.analysis.objective import Objective  # startup

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
    fig, (left, right) = subplots(1, 2, figsize=(10, 3.8))
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


@entry("mode-connectivity", title="Mode connectivity: a Bezier curve against the straight line",
       claim="Two nets trained from different seeds are joined by a trained Bezier curve along which the loss "
             "stays low, while the straight line between them crosses a loss barrier.",
       source="Garipov et al. 2018, Fig. 1; the course's lecture on mode connectivity",
       settings={"width": 32, "train_steps": 1500, "curve_steps": 600}, quick={"width": 32, "train_steps": 600,
                                                                                "curve_steps": 300},
       seconds=(2, 4))
def mode_connectivity(s: dict, folder: Path):
    from losslab.analysis.connect import connect  # startup
    from losslab.analysis.objective import Objective  # startup

    (x, y), val = digits(1000)
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
            found.plot(title="Two digits MLPs: the line and the Bezier curve"))


@entry("sam-flatness", title="SAM against SGD: sharpness and test error",
       claim="From the same initialization and batches, SAM ends in a flatter minimum than SGD (a smaller largest "
             "Hessian eigenvalue of the training loss) and generalizes at least as well.",
       source="Foret et al. 2021, Fig. 1-2; the course's seminar on SAM",
       settings={"width": 64, "steps": 2000, "rho": 0.05, "lr": 0.1}, quick={"width": 64, "steps": 600, "rho": 0.05,
                                                                           "lr": 0.1},
       seconds=(2, 3))
def sam_flatness(s: dict, folder: Path):
    from losslab.analysis.curvature import HessianOperator, extreme_eigenpairs  # startup
    from losslab.analysis.objective import Objective  # startup
    from losslab.optim import SAM  # startup

    (x, y), (x_test, y_test) = digits(500)
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
    fig, (left, right) = subplots(1, 2, figsize=(10, 3.6))
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
    import copy  # startup

    from losslab.analysis.curvature import HessianOperator, extreme_eigenpairs  # startup
    from losslab.analysis.directions import random_direction  # startup
    from losslab.analysis.objective import Objective  # startup
    from losslab.analysis.surface import axis, loss_plane  # startup

    (x, y), _ = digits(1000)
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
    fig, axes = subplots(2, 2, figsize=(9.5, 8))
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
    from losslab.analysis.directions import random_direction  # startup
    from losslab.analysis.objective import Objective  # startup
    from losslab.analysis.surface import loss_line  # startup

    (x, y), _ = digits(500)
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
    fig, axes = subplots(1, 2, figsize=(10, 3.8), sharey=False)
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
    from torch.func import functional_call, vmap  # startup

    (x, y), _ = digits(s["examples"])
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
    fig, (left, right) = subplots(1, 2, figsize=(10, 4.4))
    left.imshow(pattern.numpy(), cmap="gray", origin="lower")
    left.set(title="the picture asked for", xticks=[], yticks=[])
    extent = (-1.5, cols + 0.5, -1.5, rows + 0.5)
    shown = right.imshow(surface.numpy(), cmap="gray", origin="lower", extent=extent, vmin=0, vmax=1)
    fig.colorbar(shown, ax=right, label="training accuracy")
    right.set(title="the training accuracy over the trained plane", xlabel="b", ylabel="a")
    fig.tight_layout()
    return {"held": held, "outcome": outcome, "agreement": agreement,
            "accuracy_at_pixels": at_pixels.tolist()}, fig
