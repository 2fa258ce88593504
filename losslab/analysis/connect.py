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
import time
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from losslab.analysis.directions import flat_state
from losslab.analysis.objective import Objective, has_running_statistics
from losslab.core import progress
from losslab.core.errors import LossLabError
from losslab.core.plotting import subplots

CURVES = ("bezier", "polychain")
CURVE_BATCH = 1024  # examples a curve step sees at most (a random subset of a larger batch)


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


def along(obj: Objective, path, points: int = 41, val: Objective | None = None) -> dict:
    """Loss and accuracy at `points` values of t along path(t) (flat weights), on the objective
    and (`val`) on a second one, and the path's barrier."""
    ts = np.linspace(0, 1, points)
    at = [obj.unflatten(path(torch.tensor(t, dtype=obj.dtype, device=obj.device))) for t in ts]
    train = [obj.metrics(p) for p in at]
    loss = np.array([m[0] for m in train])
    result = {"t": ts.tolist(), "train_loss": loss.tolist(), "train_acc": [m[1] for m in train],
              "barrier": barrier(loss, ts), "max_train_loss": float(loss.max())}
    if val is not None:
        measured = [val.metrics(p) for p in at]
        result.update(val_loss=[m[0] for m in measured], val_acc=[m[1] for m in measured])
    return result


def _forever(obj: Objective):
    """The objective's batches, round and round."""
    while True:
        yield from obj.batches()


def fit_curve(obj: Objective, w_a: torch.Tensor, w_b: torch.Tensor, curve: str = "bezier", bends: int = 1,
              steps: int = 500, lr: float = 1e-2, seed: int = 0) -> torch.Tensor:
    """The bends minimizing E_t L(phi(t)), from points on the straight line (Adam; each step one t
    and the next batch, at most CURVE_BATCH of its examples)."""
    g = torch.Generator().manual_seed(seed)
    start = torch.linspace(0, 1, bends + 2, dtype=obj.dtype, device=obj.device)[1:-1, None]
    theta = ((1 - start) * w_a + start * w_b).clone().requires_grad_(True)
    optimizer = torch.optim.Adam([theta], lr=lr)
    stream = _forever(obj)
    for _ in range(steps):
        batch = next(stream)
        t = torch.rand((), generator=g, dtype=obj.dtype).to(obj.device)
        if obj.forward_fn is None and len(batch[0]) > CURVE_BATCH:  # (inputs, targets): a random subset
            idx = torch.randperm(len(batch[0]), generator=g)[:CURVE_BATCH].to(batch[0].device)
            batch = (batch[0][idx], batch[1][idx])
        params = obj.unflatten(curve_weights(t, (w_a, w_b), theta, curve))
        loss, _ = obj.batch_loss(params, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        progress.advance()
    return theta.detach()


@dataclass
class Connection:
    """The paths from A (t = 0) to B (t = 1): the straight line, the trained curve and, with
    alignment, the straight line to B with its hidden units permuted onto A's."""

    curve: str
    bends: int
    steps: int
    lr: float
    paths: dict[str, dict]
    seconds: float = 0.0

    @property
    def barriers(self) -> dict[str, float]:
        return {k: p["barrier"] for k, p in self.paths.items()}

    def plot(self, axes=None, title: str | None = None):
        """Train loss and accuracy (validation where measured, else training; none without targets
        that are classes) along each path from A (t = 0) to B (t = 1): on `axes` (one, or two with
        an accuracy), or a new figure. Returns the Figure."""
        from matplotlib.ticker import PercentFormatter  # startup

        first = next(iter(self.paths.values()))
        accuracy = next((k for k in ("val_acc", "train_acc")
                         if first.get(k) is not None and len(first[k]) and not any(v is None for v in first[k])), None)
        if axes is None:
            fig, axes = subplots(1, 2 if accuracy else 1, figsize=(11 if accuracy else 5.5, 4),
                                 constrained_layout=True, squeeze=False)
            axes = axes[0]
        fig = axes[0].figure
        for name, p in self.paths.items():
            axes[0].plot(p["t"], p["train_loss"], label=f"{name} (barrier {p['barrier']:.3g})")
        axes[0].set(xlabel="t", ylabel="train loss", yscale="log")
        axes[0].legend()
        if accuracy and len(axes) > 1:
            for name, p in self.paths.items():
                axes[1].plot(p["t"], p[accuracy], label=name)
            # the accuracy axis spans the data (the differences that matter are a few percent near the top)
            axes[1].set(xlabel="t", ylabel="validation accuracy" if accuracy == "val_acc" else "train accuracy")
            axes[1].yaxis.set_major_formatter(PercentFormatter(1.0))
            axes[1].legend()
        if title:
            fig.suptitle(title, fontsize=10, wrap=True)
        return fig

    def to_dict(self) -> dict:
        return {"curve": self.curve, "bends": self.bends, "steps": self.steps, "lr": self.lr,
                "barriers": self.barriers, "paths": self.paths, "seconds": self.seconds}


def connect(obj: Objective, state_a, state_b, curve: str = "bezier", bends: int = 1, steps: int = 500,
            lr: float = 1e-2, points: int = 41, align: bool = False, val: Objective | None = None,
            seed: int = 0) -> Connection:
    """Mode connectivity: a trained low-loss curve between two states of the objective's model.

    A Bezier curve or a polygonal chain from A (t = 0) to B (t = 1) with `bends` free control points,
    trained on E_t L(phi(t)) with t uniform (Garipov et al. 2018), beside the straight line. A path's
    barrier is max_t [L(t) - ((1 - t) L(0) + t L(1))]: how far its loss rises above the straight
    interpolation of its ends. Any model works (the weights at t are evaluated through
    `functional_call`).

    Args:
        obj: the objective: the model and the data the curve is trained on and measured over.
        state_a: the state_dict at t = 0.
        state_b: the state_dict at t = 1.
        curve: `"bezier"` or `"polychain"`.
        bends: the curve's free control points.
        steps: the curve's training steps (Adam).
        lr: its learning rate.
        points: the values of t each path is measured at.
        align: first permute B's hidden units onto A's (`match_weights`; MLPs) and add that line.
        val: a second objective (validation data) each path is measured on too.
        seed: the initial bends' and the sampled t's seed.

    Returns:
        Connection: each path's t, loss, accuracy and `barrier`, by name (`line`, the curve's name,
            `aligned`); `barriers` for all; `plot()`.

    Raises:
        LossLabError: states of another model, an unknown curve, or BatchNorm running statistics
            (they are A's alone: evaluate with `mode="train"`).

    Cost: `steps` gradients of the curve (a sampled batch each) and `points` evaluations a path.

    Examples:
        >>> a = {n: p.clone() for n, p in model.state_dict().items()}
        >>> b = {n: -p for n, p in a.items()}
        >>> c = ll.connect(obj, a, b, steps=20, points=5)
        >>> sorted(c.barriers)
        ['bezier', 'line']
    """
    if curve not in CURVES:
        raise LossLabError(f"curve must be one of {', '.join(CURVES)}, got {curve!r}")
    if bends < 1 or steps < 1:
        raise LossLabError("bends and steps must be at least 1")
    if any(o is not None and has_running_statistics(o.model) for o in (obj, val)):
        raise LossLabError("the model's BatchNorm running statistics are A's alone: every point of the curve, B's "
                           "end too, would be read with them; build the objectives with mode='train' (each batch's "
                           "own statistics)")
    started = time.perf_counter()
    w_a, w_b = flat_state(obj, state_a, "state A"), flat_state(obj, state_b, "state B")
    paths = {"line": along(obj, lambda t: (1 - t) * w_a + t * w_b, points, val)}
    if align:
        aligned = flat_state(obj, match_weights(obj.model, obj.unflatten(w_a), obj.unflatten(w_b)), "state B")
        paths["aligned line"] = along(obj, lambda t: (1 - t) * w_a + t * aligned, points, val)
    theta = fit_curve(obj, w_a, w_b, curve, bends, steps, lr, seed)
    paths[curve] = along(obj, lambda t: curve_weights(t, (w_a, w_b), theta, curve), points, val)
    return Connection(curve, bends, steps, lr, paths, round(time.perf_counter() - started, 3))


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
    """B's weights with its hidden units permuted to best match A's: the same function as B.

    Weight matching (Ainsworth et al. 2023, Git Re-Basin): for each hidden layer of a chain of
    Linear layers, the permutation that maximizes the inner product with A's weights (Hungarian
    algorithm, scipy), alternating over the layers for `rounds` rounds.

    Args:
        model: the MLP the states belong to.
        a: the state_dict to match.
        b: the state_dict to permute.
        rounds: passes over the layers.

    Returns:
        B's state_dict, permuted.

    Raises:
        LossLabError: the model is not a chain of Linear layers.

    Examples:
        >>> b = ll.match_weights(model, model.state_dict(), model.state_dict())
        >>> all(torch.equal(b[n], p) for n, p in model.state_dict().items())  # A matches itself unpermuted
        True
    """
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
            _, perm = linear_sum_assignment(sim.double().cpu().numpy(), maximize=True)
            if np.any(perm != np.arange(len(perm))):
                changed = True
                perm = torch.from_numpy(perm).to(sim.device)
                b[f"{inner}.weight"] = b[f"{inner}.weight"][perm]
                if f"{inner}.bias" in b:
                    b[f"{inner}.bias"] = b[f"{inner}.bias"][perm]
                b[f"{outer}.weight"] = b[f"{outer}.weight"][:, perm]
        if not changed:
            break
    return b
