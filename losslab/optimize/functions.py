"""Test problems for optimizers, each with its known minimum.

- rosenbrock: (1 - x)^2 + 100 (y - x^2)^2, the curved ravine; minimum 0 at (1, 1).
- rosenbrock-nd: the chain sum_i 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2; minimum 0 at (1, ..., 1).
- rastrigin: 10 n + sum_i x_i^2 - 10 cos(2 pi x_i), many local minima; global minimum 0 at 0.
- log-rosenbrock, log-rastrigin: log(1 + f), the variants of "Predicting grokking long before
  it happens" (appendix I): the same minimizers, the ravine's walls flattened to a log scale.
- least-squares: 0.5 ||A x - b||^2 / m with A of condition number 100; minimum by lstsq.
- logreg: multinomial logistic regression (4 classes, 10 features, 400 points, L2 1e-2) on a
  synthetic mixture; the parameter is the 4 x 10 weight matrix, so Muon orthogonalizes a real
  matrix; the minimum is found by L-BFGS to gradient norm < 1e-10 in float64.

Every problem's parameter is one (rows, cols) matrix: (1, n) for the vector problems. The
functions are batched: f maps (..., rows, cols) to (...), so many points cost one call.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

DTYPE = torch.float64  # trajectories are studied near the minimum: no float32 rounding floor


@dataclass(frozen=True)
class Problem:
    name: str
    f: Callable[[torch.Tensor], torch.Tensor]
    minimizer: torch.Tensor
    start: torch.Tensor
    box: tuple[float, float, float, float] | None = None  # (x0, x1, y0, y1) of the contour plot, 2D only

    @property
    def minimum(self) -> float:
        return float(self.f(self.minimizer))


def _rosenbrock(x: torch.Tensor) -> torch.Tensor:
    x = x.flatten(-2)
    return (100 * (x[..., 1:] - x[..., :-1] ** 2) ** 2 + (1 - x[..., :-1]) ** 2).sum(-1)


def _rastrigin(x: torch.Tensor) -> torch.Tensor:
    x = x.flatten(-2)
    return 10 * x.shape[-1] + (x**2 - 10 * torch.cos(2 * math.pi * x)).sum(-1)


def _log(f):
    return lambda x: torch.log1p(f(x))


def _least_squares(dim: int) -> Problem:
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=DTYPE))
    a = q * torch.logspace(0, -2, dim, dtype=DTYPE)  # singular values 1 .. 1e-2: condition number 100
    b = torch.randn(dim, generator=g, dtype=DTYPE)
    solution = torch.linalg.solve(a, b)
    return Problem("least-squares", lambda x: 0.5 * ((x.flatten(-2) @ a.T - b) ** 2).sum(-1), solution[None],
                   torch.zeros(1, dim, dtype=DTYPE),
                   box=_box_around(solution, torch.zeros(dim, dtype=DTYPE)) if dim == 2 else None)


def _box_around(*points: torch.Tensor, margin: float = 0.5) -> tuple[float, float, float, float]:
    p = torch.stack([q.flatten() for q in points])
    lo, hi = p.min(0).values, p.max(0).values
    pad = (hi - lo).clamp_min(1.0) * margin
    return (float(lo[0] - pad[0]), float(hi[0] + pad[0]), float(lo[1] - pad[1]), float(hi[1] + pad[1]))


def _logreg() -> Problem:
    g = torch.Generator().manual_seed(0)
    classes, features, n, l2 = 4, 10, 400, 1e-2
    centers = 1.5 * torch.randn(classes, features, generator=g, dtype=DTYPE)
    y = torch.arange(n) % classes
    x = centers[y] + torch.randn(n, features, generator=g, dtype=DTYPE)

    def f(w: torch.Tensor) -> torch.Tensor:
        log_p = torch.log_softmax(x @ w.mT, dim=-1)  # (..., n, classes)
        return -log_p[..., torch.arange(n), y].mean(-1) + 0.5 * l2 * (w**2).sum((-2, -1))
    w = torch.zeros(classes, features, dtype=DTYPE, requires_grad=True)
    lbfgs = torch.optim.LBFGS([w], lr=1, max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-15,
                              line_search_fn="strong_wolfe")

    def closure():
        lbfgs.zero_grad()
        loss = f(w)
        loss.backward()
        return loss
    lbfgs.step(closure)
    return Problem("logreg", f, w.detach(), torch.zeros(classes, features, dtype=DTYPE))


def problem(name: str, dim: int | None = None) -> Problem:
    """The test problem `name` (see PROBLEMS) in `dim` dimensions (default 10 for rosenbrock-nd, else 2)."""
    dim = dim or (10 if name == "rosenbrock-nd" else 2)
    if name in ("rosenbrock", "log-rosenbrock", "rosenbrock-nd"):
        f = _log(_rosenbrock) if name.startswith("log") else _rosenbrock
        start = torch.tensor([-1.2, 1.0], dtype=DTYPE).repeat(dim)[:dim][None]  # the classic start
        box = (-2.0, 2.0, -1.0, 3.0) if dim == 2 else None
        return Problem(name, f, torch.ones(1, dim, dtype=DTYPE), start, box)
    if name in ("rastrigin", "log-rastrigin"):
        f = _log(_rastrigin) if name.startswith("log") else _rastrigin
        # off the diagonal: from a symmetric start every coordinate-wise method walks the line x = -y
        start = torch.tensor([3.3, -2.1], dtype=DTYPE).repeat(dim)[:dim][None]
        box = (-5.12, 5.12, -5.12, 5.12) if dim == 2 else None
        return Problem(name, f, torch.zeros(1, dim, dtype=DTYPE), start, box)
    if name == "least-squares":
        return _least_squares(dim)
    if name == "logreg":
        return _logreg()
    raise ValueError(f"unknown function {name!r} (known: {', '.join(PROBLEMS)})")


PROBLEMS = ("rosenbrock", "log-rosenbrock", "rosenbrock-nd", "rastrigin", "log-rastrigin", "least-squares",
            "logreg")
