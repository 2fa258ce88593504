"""Loss and accuracy over a line theta + a d1 or a plane theta + a d1 + b d2.

Every grid point is a functional call on the checkpoint's weights plus the offset: the
model itself is never moved. The grid always holds the point itself (a = b = 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from losslab.analysis.directions import Direction
from losslab.analysis.point import Point
from losslab.errors import LossLabError
from losslab.models.mlp import MLP


def axis(start: float, stop: float, points: int) -> np.ndarray:
    """`points` evenly spaced values from start to stop, with 0 added when inside and missing."""
    if points < 2 or not start < stop:
        raise LossLabError(f"range {start}:{stop} with {points} points holds no grid (need start < stop, points >= 2)")
    values = np.linspace(start, stop, points)
    if start < 0 < stop and not np.isclose(values, 0, atol=1e-12).any():
        values = np.sort(np.append(values, 0.0))
    return values


def parse_range(text: str) -> tuple[float, float]:
    try:
        start, stop = (float(v) for v in text.split(":"))
    except ValueError:
        raise LossLabError(f"--range expects START:STOP, e.g. -1:1, got {text!r}") from None
    return start, stop


@dataclass
class Surface:
    alphas: np.ndarray
    betas: np.ndarray | None  # None for a line
    loss: np.ndarray  # (len(alphas),) or (len(alphas), len(betas))
    acc: np.ndarray


def _first_linear(model: nn.Module) -> tuple[str, nn.Sequential] | None:
    """(name prefix of the layers, the layers after the first) when the model's first operation on
    its input is a Linear layer: a plain Sequential, or losslab's MLP on vector inputs."""
    seq, prefix = model, ""
    if isinstance(model, MLP):
        if model.vocab_size:
            return None
        seq, prefix = model.net, "net."
    if not isinstance(seq, nn.Sequential) or not isinstance(seq[0], nn.Linear):
        return None
    return prefix, seq[1:]  # the slice keeps the original layer names


@torch.no_grad()
def evaluate(point: Point, d1: Direction, alphas: np.ndarray, d2: Direction | None = None,
             betas: np.ndarray | None = None, split: str = "train") -> Surface:
    """Loss and accuracy at theta + a d1 (+ b d2) for every grid point.

    When the model starts with a Linear layer, that layer is affine in (a, b):
    (W + a D1 + b D2) x = W x + a D1 x + b D2 x, so its three products are computed once
    and each grid point pays only for the layers after it.
    """
    x, y = point.data(split)
    theta = point.params
    grid_b = betas if d2 is not None else np.array([0.0])
    zero = {n: torch.zeros_like(t) for n, t in theta.items()}
    d2 = d2 if d2 is not None else zero
    split_model = _first_linear(point.model)
    if split_model is not None:
        prefix, rest = split_model
        first = f"{prefix}0."
        products = [F.linear(x, v[first + "weight"], v.get(first + "bias")) for v in (theta, d1, d2)]
        rest_names = [n for n in theta if not n.startswith(first)]
    loss = np.zeros((len(alphas), len(grid_b)))
    acc = np.zeros_like(loss)
    for i, a in enumerate(alphas):
        row = {n: torch.add(theta[n], d1[n], alpha=float(a)) for n in theta}  # theta + a d1, once a row
        if split_model is not None:
            row_hidden = torch.add(products[0], products[1], alpha=float(a))
        for j, b in enumerate(grid_b):
            b = float(b)
            if split_model is None:
                out = functional_call(point.model, {n: torch.add(row[n], d2[n], alpha=b) for n in theta}, (x,))
            else:
                params = {n.removeprefix(prefix): torch.add(row[n], d2[n], alpha=b) for n in rest_names}
                out = functional_call(rest, params, (torch.add(row_hidden, products[2], alpha=b),))
            loss[i, j] = point.loss_fn(out, y).item()
            acc[i, j] = point.loss_fn.accuracy(out, y).item()
    if betas is None:
        return Surface(alphas, None, loss[:, 0], acc[:, 0])
    return Surface(alphas, betas, loss, acc)
