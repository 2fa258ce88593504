"""Mode connectivity (Garipov et al. 2018): a low-loss curve between two minima w_A and w_B.

A curve phi_theta(t), t in [0, 1], with phi(0) = w_A and phi(1) = w_B, is trained by minimizing
E_{t ~ U(0, 1)} L(phi_theta(t)) over its free control points theta (the bends):
  bezier     the Bezier curve (Bernstein polynomials) with control points w_A, theta_1..n, w_B
  polychain  the broken line through w_A, theta_1..n, w_B at equal steps of t
Any model works: the weights at t are a flat vector cut into its parameters and evaluated
through torch.func.functional_call, so no layer is rewritten as a "curve layer".

The barrier of a path is max_t [L(t) - ((1 - t) L(0) + t L(1))]: how far the loss rises above
the straight interpolation of its ends. Before comparing the straight line, the hidden units of
B can be permuted to match A's (weight matching, Ainsworth et al. 2023: Git Re-Basin), which
leaves B's function unchanged and often removes most of the straight line's barrier.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from losslab.analysis.point import Point, flatten, unflatten
from losslab.errors import LossLabError

CURVES = ("bezier", "polychain")


def curve_weights(t: torch.Tensor, ends: tuple[torch.Tensor, torch.Tensor], bends: torch.Tensor,
                  curve: str) -> torch.Tensor:
    """phi(t) for a scalar t: the flat weights on the curve."""
    points = torch.cat([ends[0][None], bends, ends[1][None]])
    n = len(points) - 1
    if curve == "bezier":
        coefficients = torch.stack([math.comb(n, i) * t**i * (1 - t) ** (n - i) for i in range(n + 1)])
        return coefficients @ points
    segment = torch.clamp((t * n).floor().long(), max=n - 1)
    local = t * n - segment
    return (1 - local) * points[segment] + local * points[segment + 1]


def barrier(losses: np.ndarray, ts: np.ndarray) -> float:
    return float(np.max(losses - ((1 - ts) * losses[0] + ts * losses[-1])))


class Connection:
    """Two points of the same architecture (B evaluated on A's model, data and loss)."""

    def __init__(self, a: Point, b: Point):
        shapes = {n: tuple(p.shape) for n, p in a.params.items()}
        if shapes != {n: tuple(p.shape) for n, p in b.params.items()} or a.cfg.model != b.cfg.model:
            raise LossLabError(f"runs {a.run.path.name} and {b.run.path.name} have different architectures: "
                               "a curve joins two weights of one model")
        if a.cfg.task != b.cfg.task or a.cfg.task_seed != b.cfg.task_seed:
            # B would be evaluated on A's split, whose validation examples B may have trained on
            raise LossLabError(f"runs {a.run.path.name} and {b.run.path.name} were trained on different data "
                               "(task or data seed): train both with the same --set data_seed=N")
        self.a, self.like = a, a.params
        self.w_a, self.w_b = flatten(a.params), flatten(b.params)

    def metrics(self, flat: torch.Tensor, split: str) -> tuple[float, float]:
        params = unflatten(flat, self.like)
        x, y = self.a.data(split)
        with torch.no_grad():
            out = torch.func.functional_call(self.a.model, params, (x,))
            return float(self.a.loss_fn(out, y)), float(self.a.loss_fn.accuracy(out, y))

    def along(self, path, points: int = 41) -> dict:
        """Train loss, val loss and val accuracy at `points` values of t along path(t)."""
        ts = np.linspace(0, 1, points)
        train = [self.metrics(path(torch.tensor(t, dtype=self.w_a.dtype)), "train") for t in ts]
        val = [self.metrics(path(torch.tensor(t, dtype=self.w_a.dtype)), "val") for t in ts]
        train_loss = np.array([m[0] for m in train])
        return {"t": ts.tolist(), "train_loss": train_loss.tolist(), "train_acc": [m[1] for m in train],
                "val_loss": [m[0] for m in val], "val_acc": [m[1] for m in val],
                "barrier": barrier(train_loss, ts), "max_train_loss": float(train_loss.max())}

    def line(self, w_b: torch.Tensor | None = None):
        w_b = self.w_b if w_b is None else w_b
        return lambda t: (1 - t) * self.w_a + t * w_b

    def fit_curve(self, curve: str = "bezier", bends: int = 1, steps: int = 500, lr: float = 1e-2,
                  batch_size: int | None = 1024, seed: int = 0) -> torch.Tensor:
        """The bends minimizing E_t L(phi(t)), from points on the straight line (Adam, one t a step)."""
        g = torch.Generator().manual_seed(seed)
        start = torch.linspace(0, 1, bends + 2, dtype=self.w_a.dtype)[1:-1, None]
        theta = ((1 - start) * self.w_a + start * self.w_b).clone().requires_grad_(True)
        optimizer = torch.optim.Adam([theta], lr=lr)
        x, y = self.a.data("train")
        for _ in range(steps):
            t = torch.rand((), generator=g, dtype=self.w_a.dtype)
            if batch_size and batch_size < len(x):
                idx = torch.randperm(len(x), generator=g)[:batch_size]
                xb, yb = x[idx], y[idx]
            else:
                xb, yb = x, y
            params = unflatten(curve_weights(t, (self.w_a, self.w_b), theta, curve), self.like)
            loss = self.a.loss_fn(torch.func.functional_call(self.a.model, params, (xb,)), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return theta.detach()


# ---------------------------------------------------------------- weight matching


def _linear_chain(model: nn.Module) -> list[str]:
    """The Linear layers of an MLP in order (the hidden units between consecutive ones permute)."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    others = [m for m in model.modules() if len(list(m.children())) == 0
              and not isinstance(m, (nn.Linear, nn.ReLU, nn.GELU, nn.Tanh, nn.SiLU, nn.Identity))]
    if others or len(names) < 2:
        raise LossLabError("weight matching permutes the hidden units of MLPs (a chain of Linear layers)")
    return names


def match_weights(model: nn.Module, a: dict[str, torch.Tensor], b: dict[str, torch.Tensor],
                  rounds: int = 20) -> dict[str, torch.Tensor]:
    """B's weights with its hidden units permuted to best match A's (the same function as B)."""
    layers = _linear_chain(model)
    b = {n: w.clone() for n, w in b.items()}
    for _ in range(rounds):
        changed = False
        for i in range(len(layers) - 1):
            inner, outer = layers[i], layers[i + 1]
            # similarity of A's unit j and B's unit k: their incoming and outgoing weights
            sim = a[f"{inner}.weight"] @ b[f"{inner}.weight"].T + a[f"{outer}.weight"].T @ b[f"{outer}.weight"]
            if f"{inner}.bias" in a:
                sim = sim + torch.outer(a[f"{inner}.bias"], b[f"{inner}.bias"])
            _, perm = linear_sum_assignment(sim.double().numpy(), maximize=True)
            if np.any(perm != np.arange(len(perm))):
                changed = True
                perm = torch.from_numpy(perm)
                b[f"{inner}.weight"] = b[f"{inner}.weight"][perm]
                if f"{inner}.bias" in b:
                    b[f"{inner}.bias"] = b[f"{inner}.bias"][perm]
                b[f"{outer}.weight"] = b[f"{outer}.weight"][:, perm]
        if not changed:
            break
    return b


def connect_report(a: Point, b: Point, curve: str = "bezier", bends: int = 1, steps: int = 500, lr: float = 1e-2,
                   align: bool = False, points: int = 41, seed: int = 0) -> dict:
    """Loss and accuracy along the straight line, the trained curve and (with `align`) the line to
    B permuted onto A, their barriers, and the figure; saved with run A."""
    from losslab.analysis.figures import connectivity_figure
    from losslab.analysis.reports import _save

    if curve not in CURVES:
        raise LossLabError(f"--curve must be one of {', '.join(CURVES)}, got {curve!r}")
    if bends < 1 or steps < 1:
        raise LossLabError("--bends and --steps must be at least 1")
    c = Connection(a, b)
    paths = {"line": c.along(c.line(), points)}
    if align:
        aligned = flatten(match_weights(a.model, a.params, unflatten(c.w_b, c.like)))
        paths["aligned line"] = c.along(c.line(aligned), points)
    theta = c.fit_curve(curve, bends, steps, lr, seed=seed)
    paths[curve] = c.along(lambda t: curve_weights(t, (c.w_a, c.w_b), theta, curve), points)
    name = f"connect_{b.run.path.name}_{curve}{bends}"  # one file per kind of curve: none replaces another
    figure = connectivity_figure(paths, f"{a.run.path.name} (t=0) to {b.run.path.name} (t=1)",
                                 a.run.figure_dir / f"{name}.png")
    return _save(a, name, {"run_a": a.run.path.name, "run_b": b.run.path.name, "step_a": a.step, "step_b": b.step,
                           "curve": curve, "bends": bends, "steps": steps, "lr": lr,
                           "barriers": {k: p["barrier"] for k, p in paths.items()}, "paths": paths,
                           "figure": str(figure)})
