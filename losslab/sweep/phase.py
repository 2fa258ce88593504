"""Outcomes of a sweep over two axes (phase diagrams), and the law of t4 against the train fraction.

A cell of a phase diagram is the mean over the runs at that (x, y), so seeds and other axes are
averaged; t4 is averaged over the runs that grokked (NaN where none did), `grokked` is the
fraction that did.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit

from losslab.core.errors import LossLabError

OUTCOMES = ("val_acc", "grokked", "t4", "signature_energy")


def axis_values(rows: list[dict], axis: str) -> list:
    column = f"axis:{axis}"
    if not rows or column not in rows[0]:
        known = [k.removeprefix("axis:") for k in (rows[0] if rows else {}) if k.startswith("axis:")]
        raise LossLabError(f"the sweep has no axis {axis!r} (its axes: {', '.join(known) or 'none'})")
    return sorted({r[column] for r in rows if r[column] is not None})


def numeric(row: dict, outcome: str) -> float:
    value = row.get(outcome)
    if value is None or row["status"] in ("failed", "pending"):
        return math.nan
    return float(value)


def cell_means(rows: list[dict], x: str, y: str, outcome: str) -> tuple[list, list, np.ndarray]:
    """The mean of `outcome` at every (x, y): a matrix of shape (len(ys), len(xs))."""
    xs, ys = axis_values(rows, x), axis_values(rows, y)
    matrix = np.full((len(ys), len(xs)), np.nan)
    for i, yv in enumerate(ys):
        for j, xv in enumerate(xs):
            cell = [numeric(r, outcome) for r in rows if r[f"axis:{x}"] == xv and r[f"axis:{y}"] == yv]
            cell = [v for v in cell if not math.isnan(v)]
            if cell:
                matrix[i, j] = float(np.mean(cell))
    return xs, ys, matrix


def _law(r, a, gamma, b):
    return a * r ** (-gamma) + b


def fit_power_law(r, t4) -> dict:
    """Least-squares fit of t4(r) = a * r^(-gamma) + b, with R^2 of the fit."""
    r, t4 = np.asarray(r, dtype=np.float64), np.asarray(t4, dtype=np.float64)
    if len(np.unique(r)) < 4:
        raise LossLabError(f"a power law t4 = a r^-gamma + b needs grokked runs at 4 or more train "
                           f"fractions, got {len(np.unique(r))}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            (a, gamma, b), cov = curve_fit(_law, r, t4, p0=(t4.min(), 1.0, 0.0), maxfev=20_000)
    except RuntimeError as e:
        raise LossLabError(f"the power law did not fit ({e})") from None
    residual = t4 - _law(r, a, gamma, b)
    r2 = 1 - float(np.sum(residual**2) / np.sum((t4 - t4.mean()) ** 2)) if np.ptp(t4) > 0 else 1.0
    errors = np.sqrt(np.diag(cov)) if np.all(np.isfinite(cov)) else [math.nan] * 3
    return {"a": float(a), "gamma": float(gamma), "b": float(b), "r2": r2,
            "gamma_stderr": float(errors[1]), "points": len(r)}


def t4_against_fraction(rows: list[dict], axis: str = "task.train_fraction") -> dict:
    """The grokked runs' (r, t4) and the power law fitted to them."""
    values = axis_values(rows, axis)  # refuses a sweep without this axis
    points = [(float(row[f"axis:{axis}"]), float(row["t4"])) for row in rows
              if row["t4"] is not None and row["status"] not in ("failed", "pending")]
    if not points:
        raise LossLabError(f"no run grokked at any of the {len(values)} values of {axis}")
    r, t4 = map(list, zip(*points))
    return {"r": r, "t4": t4, "fit": fit_power_law(r, t4)}
