"""Loss and accuracy over a line theta + a d1 or a plane theta + a d1 + b d2.

Every grid point is a functional call on the checkpoint's weights plus the offset: the
model itself is never moved. The grid always holds the point itself (a = b = 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.func import functional_call

from losslab.analysis.directions import Direction
from losslab.analysis.point import Point
from losslab.errors import LossLabError


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


@torch.no_grad()
def evaluate(point: Point, d1: Direction, alphas: np.ndarray, d2: Direction | None = None,
             betas: np.ndarray | None = None, split: str = "train") -> Surface:
    x, y = point.data(split)
    theta = point.params
    grid_b = betas if d2 is not None else np.array([0.0])
    loss = np.zeros((len(alphas), len(grid_b)))
    acc = np.zeros_like(loss)
    for i, a in enumerate(alphas):
        for j, b in enumerate(grid_b):
            params = {n: theta[n] + float(a) * d1[n] + (float(b) * d2[n] if d2 is not None else 0) for n in theta}
            out = functional_call(point.model, params, (x,))
            loss[i, j] = point.loss_fn(out, y).item()
            acc[i, j] = point.loss_fn.accuracy(out, y).item()
    if d2 is None:
        return Surface(alphas, None, loss[:, 0], acc[:, 0])
    return Surface(alphas, betas, loss, acc)
