"""Figures of optimizer trajectories: paths over the contour plot, distances to the minimum,
and the paths animated (a GIF through Pillow, which matplotlib already depends on)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.animation import FuncAnimation, PillowWriter

from losslab.core.plotting import subplots
from losslab.optimize.functions import Problem
from losslab.optimize.run import Trajectory


def _contour(ax, problem: Problem, resolution: int = 300) -> None:
    x0, x1, y0, y1 = problem.box
    xs, ys = torch.linspace(x0, x1, resolution, dtype=torch.float64), torch.linspace(y0, y1, resolution,
                                                                                      dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1)[..., None, :]  # (res, res, 1, 2)
    with torch.no_grad():
        z = (problem.f(grid) - problem.minimum).clamp_min(0).numpy()
    levels = np.quantile(z, np.linspace(0, 1, 30) ** 2)  # dense near the minimum, where it matters
    ax.contourf(xs.numpy(), ys.numpy(), z, levels=np.unique(levels), cmap="Greys_r", alpha=0.7)
    ax.contour(xs.numpy(), ys.numpy(), z, levels=np.unique(levels), colors="k", linewidths=0.3, alpha=0.5)
    m = problem.minimizer.flatten()
    ax.plot(m[0], m[1], "*", color="gold", ms=14, mec="k", zorder=5)
    s = problem.start.flatten()
    ax.plot(s[0], s[1], "o", color="w", mec="k", ms=7, zorder=5)
    ax.set(xlim=(x0, x1), ylim=(y0, y1), xlabel="x", ylabel="y")


def _label(t: Trajectory) -> str:
    return f"{t.optimizer} (lr {t.lr:.3g})"


def _xy(t: Trajectory, upto: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    p = t.points[:upto].flatten(1).numpy()
    return p[:, 0], p[:, 1]


def trajectory_figure(problem: Problem, runs: list[Trajectory]):
    """A panel per optimizer (small multiples: paths of several optimizers from one start overplot),
    each path over the same contours, its final distance to the minimizer in its title."""
    cols = min(len(runs), 4)
    rows = -(-len(runs) // cols)
    fig, axes = subplots(rows, cols, figsize=(3.6 * cols, 3.3 * rows + 0.4), constrained_layout=True,
                             squeeze=False, sharex=True, sharey=True)
    for ax, t in zip(axes.flat, runs):
        _contour(ax, problem, resolution=200)
        ax.plot(*_xy(t), ".-", lw=1.3, ms=2, color="tab:red")
        ax.set_title(f"{_label(t)}\nfinal distance {float(t.distances[-1]):.2g}", fontsize=9)
        ax.label_outer()
    for ax in axes.flat[len(runs):]:
        ax.set_axis_off()
    fig.suptitle(f"{problem.name}: {len(runs[0].points) - 1} steps from the same start (o); the minimum: *",
                 wrap=True)
    return fig


def distance_figure(problem: Problem, runs: list[Trajectory]):
    fig, axes = subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for t in runs:
        steps = np.arange(len(t.distances))
        axes[0].plot(steps, t.distances.numpy(), label=_label(t))
        axes[1].plot(steps, (t.values - problem.minimum).clamp_min(1e-300).numpy(), label=_label(t))
    axes[0].set(yscale="log", xlabel="step", ylabel="||x_t - x*||", title="distance to the minimizer")
    axes[1].set(yscale="log", xlabel="step", ylabel="f(x_t) - f*", title="suboptimality")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(problem.name)
    return fig


def animate(problem: Problem, runs: list[Trajectory], path: Path, frames: int = 60, fps: int = 15) -> None:
    fig, ax = subplots(figsize=(6, 5), dpi=80, constrained_layout=True)
    _contour(ax, problem, resolution=150)
    lines = [ax.plot([], [], ".-", lw=1.2, ms=2, label=_label(t))[0] for t in runs]
    heads = [ax.plot([], [], "o", color=line.get_color(), mec="k", ms=6)[0] for line in lines]
    ax.legend(fontsize=6, loc="lower right")
    steps = len(runs[0].points)
    # the first steps matter most: frame k shows step ~ steps^(k / frames)
    shown = np.unique(np.round(np.logspace(0, np.log10(steps), frames)).astype(int))
    title = ax.set_title("")

    def draw(k):
        upto = shown[k]
        for t, line, head in zip(runs, lines, heads):
            x, y = _xy(t, upto)
            line.set_data(x, y)
            head.set_data(x[-1:], y[-1:])
        title.set_text(f"{problem.name}: step {upto - 1}")
        return [*lines, *heads, title]
    FuncAnimation(fig, draw, frames=len(shown), blit=False).save(path, writer=PillowWriter(fps=fps))


def write_figures(problem: Problem, runs: list[Trajectory], out: Path) -> list[Path]:
    """distance.png always; trajectories.png and trajectories.gif for 2D problems."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    figures = {"distance.png": distance_figure(problem, runs)}
    if problem.box is not None:
        figures["trajectories.png"] = trajectory_figure(problem, runs)
    for name, fig in figures.items():
        fig.savefig(out / name, dpi=120)
        written.append(out / name)
    if problem.box is not None:
        animate(problem, runs, out / "trajectories.gif")
        written.append(out / "trajectories.gif")
    return written
