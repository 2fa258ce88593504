"""Figures of analyses: Hessian spectral density, loss surfaces."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from losslab.analysis.hessian import Density  # noqa: E402


def density_figure(density: Density, extremes: list[float], title: str, path: Path) -> Path:
    """The SLQ density on a log scale, the computed extreme eigenvalues marked."""
    lo, hi = float(density.nodes.min()), float(density.nodes.max())
    pad = 0.05 * (hi - lo or 1.0)
    grid = np.linspace(lo - pad, hi + pad, 2000)
    sigma = max((hi - lo) / 200, 1e-8)
    fig, ax = plt.subplots(figsize=(6.5, 4), constrained_layout=True)
    ax.semilogy(grid, np.maximum(density.smoothed(grid, sigma), 1e-12))
    for value in extremes:
        ax.axvline(value, color="tab:red", lw=0.8, ls="--")
    ax.set(xlabel="eigenvalue", ylabel="density", title=title, ylim=(1e-8, None))
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
