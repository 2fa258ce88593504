"""The geometry of a training trajectory (a list of state_dicts): the fraction of its variance in
its principal directions (the grokking paper's Appendix G.3 reports > 98% in two), cosines to the
start and between consecutive states, the norms of every weight matrix, and its projection on
the first two principal directions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from losslab.core.errors import LossLabError
from losslab.core.plotting import axes_for


@dataclass
class TrajectoryGeometry:
    explained_variance: list[float]  # the first five principal directions' shares of the variance
    explained_by_two: float
    cos_theta0: list[float]  # cos(theta_t, theta_0) of each state
    cos_consecutive: list[float]  # cos(theta_t, theta_t-1) from the second state on
    norms: dict[str, list[float]]  # fro/NAME and spec/NAME of every weight matrix, by state
    projected: list[list[float]]  # each state's coordinates on the first two principal directions

    def plot(self, ax=None, steps: Sequence[int] | None = None, title: str | None = None):
        """The states on the first two principal directions, joined in order and colored by log10
        step (by index without `steps`); on `ax`, or a new figure. Returns the Figure."""
        fig, ax = axes_for(ax, (6, 5))
        xy = np.asarray(self.projected)
        order = np.log10(np.maximum(steps, 1)) if steps is not None else np.arange(len(xy))
        ax.plot(xy[:, 0], xy[:, 1], "-", color="0.6", lw=1)
        points = ax.scatter(xy[:, 0], xy[:, 1], c=order, cmap="viridis", s=14, zorder=3)
        fig.colorbar(points, ax=ax, label="log10 step" if steps is not None else "state")
        ax.set(xlabel=f"PC1 ({self.explained_variance[0]:.1%} of the variance)",
               ylabel=f"PC2 ({self.explained_variance[1]:.1%})", title=title)
        ax.grid(alpha=0.3)
        return fig

    def to_dict(self) -> dict:
        return asdict(self)


def trajectory_geometry(states: Sequence[Mapping[str, torch.Tensor]]) -> TrajectoryGeometry:
    """The geometry of a training trajectory: how flat it is, how it turns, how its weights grow.

    The variance the principal directions of the centered states explain (a trajectory in a plane
    has nearly all of it in two), cos(theta_t, theta_0), the cosine between consecutive steps, and
    every weight matrix's norm.

    Args:
        states: three or more state_dicts in training order.

    Returns:
        TrajectoryGeometry: `explained_variance`, `explained_by_two`, `cos_theta0`,
            `cos_consecutive`, `norms`, `projected` (each state on the first two directions); `plot()`.

    Raises:
        LossLabError: fewer than three states.

    Examples:
        >>> states = [{n: p * (1 + 0.1 * i) for n, p in model.state_dict().items()} for i in range(4)]
        >>> round(ll.trajectory_geometry(states).explained_by_two, 6)
        1.0
    """
    if len(states) < 3:
        raise LossLabError(f"a trajectory needs 3 states, got {len(states)}")
    names = [n for n, w in states[0].items() if w.is_floating_point()]
    rows = torch.stack([torch.cat([s[n].detach().flatten().double().cpu() for n in names]) for s in states])
    centered = rows - rows.mean(0)
    _, s, vh = torch.linalg.svd(centered, full_matrices=False)
    explained = (s**2 / (s**2).sum()).tolist()
    norms: dict[str, list[float]] = {}
    for state in states:
        for name in names:
            w = state[name]
            if w.ndim == 2:
                norms.setdefault(f"fro/{name}", []).append(float(torch.linalg.matrix_norm(w.double())))
                norms.setdefault(f"spec/{name}", []).append(float(torch.linalg.matrix_norm(w.double(), ord=2)))
    cos = torch.nn.functional.cosine_similarity
    return TrajectoryGeometry(explained[:5], sum(explained[:2]), cos(rows, rows[:1]).tolist(),
                              cos(rows[1:], rows[:-1]).tolist(), norms, (centered @ vh[:2].T).tolist())
