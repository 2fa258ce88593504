"""Figures of a sweep: phase diagrams over two axes (the paper's Figure 2: weight decay on x,
learning rate on y, with the early spectral energy beside the outcomes) and t4 against the
train fraction with its fitted power law (the paper's Figure 5)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from losslab.core.plotting import subplots
from losslab.sweep.phase import OUTCOMES, cell_means

TITLES = {"val_acc": "final validation accuracy", "grokked": "fraction grokked (t4 reached)",
          "t4": "t4 (grokked runs)", "signature_energy": "spectral energy of the early train loss"}


def _label(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def phase_figure(rows: list[dict], x: str, y: str, outcomes=OUTCOMES):
    """The outcomes' cell means over (x, y), a heatmap each, the values written in small grids."""
    fig, axes = subplots(1, len(outcomes), figsize=(4.6 * len(outcomes), 4.2), constrained_layout=True)
    for ax, outcome in zip(np.atleast_1d(axes), outcomes):
        xs, ys, matrix = cell_means(rows, x, y, outcome)
        shown = np.log10(matrix) if outcome == "signature_energy" else matrix
        image = ax.imshow(shown, origin="lower", aspect="auto", cmap="viridis")
        fig.colorbar(image, ax=ax, shrink=0.85, label="log10" if outcome == "signature_energy" else None)
        ax.set_xticks(range(len(xs)), [_label(v) for v in xs], rotation=45)
        ax.set_yticks(range(len(ys)), [_label(v) for v in ys])
        ax.set(xlabel=x, ylabel=y, title=TITLES.get(outcome, outcome))
        if matrix.size <= 100:
            for (i, j), value in np.ndenumerate(matrix):
                if not math.isnan(value):  # dark text on the bright end of viridis
                    bright = image.norm(shown[i, j]) > 0.6
                    ax.text(j, i, f"{value:.2g}", ha="center", va="center", fontsize=7,
                            color="black" if bright else "white")
    return fig


def save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    return path


def power_law_figure(result: dict, axis: str, ax=None):
    """The grokked runs' t4 against the train fraction, with the fitted law (on `ax` where given)."""
    fit = result["fit"]
    if ax is None:
        _, ax = subplots(figsize=(5.5, 4), constrained_layout=True)
    ax.scatter(result["r"], result["t4"], s=18, label="grokked runs")
    r = np.linspace(min(result["r"]), max(result["r"]), 200)
    ax.plot(r, fit["a"] * r ** (-fit["gamma"]) + fit["b"], color="tab:red",
            label=f"{fit['a']:.3g} r^{-fit['gamma']:.3g} + {fit['b']:.3g}  (R² {fit['r2']:.3f})")
    ax.set(xlabel=axis, ylabel="t4 (steps to generalize)", title="generalization step against train fraction")
    ax.legend()
    return ax.figure


def default_axes(rows: list[dict]) -> tuple[str, str] | None:
    """The two axes a phase diagram shows by default: weight decay (x) and learning rate (y) as in
    the paper where the sweep has both, else the first two axes with more than one value."""
    varied = [k.removeprefix("axis:") for k in (rows[0] if rows else {})
              if k.startswith("axis:") and len({r[k] for r in rows}) > 1]
    if {"optim.weight_decay", "optim.lr"} <= set(varied):
        return "optim.weight_decay", "optim.lr"
    return (varied[0], varied[1]) if len(varied) >= 2 else None
