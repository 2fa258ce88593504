"""A run's loss landscape around one of its checkpoints (Li et al. 2018): a line or a plane along
directions named by losslab.train.checkpoints.named_direction, the line over several random seeds,
the same line from every checkpoint, or the plane of the trajectory's first principal directions
with the trajectory drawn on it (each axis spanning it, unless a span is given)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

import numpy as np

from losslab.analysis.directions import project_trajectory, trajectory_directions
from losslab.analysis.surface import CheckpointLines, Surface, axis, loss_line, loss_plane
from losslab.core import progress
from losslab.core.errors import LossLabError
from losslab.train.checkpoints import (
    Checkpoint,
    check_direction,
    checkpoint_paths,
    load_checkpoint,
    named_direction,
    trajectory,
)


@dataclass
class Landscape:
    """The surfaces found: one line per seed, one plane, or one line per checkpoint (`steps`)."""

    run_id: str
    step: int
    split: str
    direction: str
    direction2: str | None  # a plane's second direction
    span: tuple[float, float]
    span2: tuple[float, float] | None
    options: dict  # of random directions: normalization, include_biases
    seeds: list[int]
    surfaces: list[Surface]
    steps: list[int] | None = None  # the checkpoints of a line at every checkpoint
    path: tuple[np.ndarray, list[int]] | None = None  # the trajectory on a PCA plane, and its steps
    seconds: float = field(default=0.0)

    @property
    def dims(self) -> int:
        return 1 if self.direction2 is None else 2

    @property
    def title(self) -> str:
        if self.steps is not None:
            return f"{self.run_id}: {self.direction} line at every checkpoint ({self.split})"
        along = self.direction if self.dims == 1 else f"{self.direction} x {self.direction2}"
        return f"{self.run_id} step {self.step}: {along} ({self.split})"

    def plot(self):
        """The lines (one per seed) or the plane (the trajectory on it), or the heatmap of the line
        at every checkpoint; returns the Figure."""
        first = self.surfaces[0]
        if self.steps is not None:
            acc = None if first.acc is None else np.array([s.acc for s in self.surfaces])
            return CheckpointLines(self.steps, first.alphas, np.array([s.loss for s in self.surfaces]),
                                   acc).plot(self.title)
        if self.dims == 2:
            return first.plot(labels=(self.direction, self.direction2), path=self.path, title=self.title)
        several = len(self.surfaces) > 1
        fig = first.plot(label=f"seed {self.seeds[0]}" if several else None, title=self.title)
        for seed, line in zip(self.seeds[1:], self.surfaces[1:]):
            line.plot(axes=fig.axes[:2 if line.acc is not None else 1], label=f"seed {seed}")
        return fig

    def plot_3d(self):
        return self.surfaces[0].plot_3d((self.direction, self.direction2), self.title)

    def to_dict(self) -> dict:
        first = self.surfaces[0]
        result = {"run_id": self.run_id, "step": self.step, "split": self.split, "dims": self.dims,
                  "direction": self.direction, **self.options, "alphas": first.alphas.tolist()}
        listed = lambda values: None if values is None else values.tolist()  # noqa: E731
        if self.dims == 2:
            result.update(direction2=self.direction2, seeds=self.seeds, betas=first.betas.tolist(),
                          loss=first.loss.tolist(), acc=listed(first.acc))
            if self.path is not None:
                result["trajectory"] = {"steps": self.path[1], "coordinates": self.path[0].tolist()}
        else:
            result.update(**({"steps": self.steps} if self.steps is not None else {}), seeds=self.seeds,
                          loss=[s.loss.tolist() for s in self.surfaces], acc=[listed(s.acc) for s in self.surfaces])
        return {**result, "seconds": self.seconds}


def landscape(checkpoint: Checkpoint, split: str = "train", dims: int = 1, direction: str = "random",
              direction2: str = "random", span: tuple[float, float] | None = None, points: int = 51, seed: int = 0,
              seeds: int = 1, normalization: str = "filter", include_biases: bool = False,
              all_checkpoints: bool = False, chunk: int | None = None) -> Landscape:
    """The loss and accuracy on `split` around `checkpoint`: along `direction` (dims=1; random
    directions over `seeds` seeds from `seed`, or from every checkpoint with `all_checkpoints`), or
    over the plane of `direction` and `direction2` (dims=2). `span` is the coefficients' range
    ((-1, 1), and on a plane of two pcaN the trajectory's span with 10% margins); `points` per axis.
    Reports its grid points to losslab.core.progress."""
    if dims not in (1, 2):
        raise LossLabError(f"dims is 1 (a line) or 2 (a plane), got {dims!r}")
    if all_checkpoints and dims != 1:
        raise LossLabError("the line at every checkpoint is a line: it needs dims = 1")
    for d in (direction, direction2):
        check_direction(d)
    obj = checkpoint.objective(split)
    options = {"normalization": normalization, "include_biases": include_biases}
    start, stop = span or (-1.0, 1.0)
    span2, path = (start, stop), None
    on_pca_plane = dims == 2 and all(re.fullmatch(r"pca\d+", d) for d in (direction, direction2))
    if on_pca_plane:  # Li et al.: the trajectory drawn on its PCA plane, each axis spanning it
        visited, states = trajectory(checkpoint.run)  # every checkpoint read once, for the directions and the path
        first, second = (int(d.removeprefix("pca")) for d in (direction, direction2))
        found, _ = trajectory_directions(obj, states, max(first, second))
        d1, d2 = found[first - 1], found[second - 1]
        coordinates = project_trajectory(obj, states, [d1, d2])
        path = (coordinates, visited)
        if span is None:
            (start, stop), span2 = ((lo - 0.1 * (hi - lo or 1.0), hi + 0.1 * (hi - lo or 1.0))
                                    for lo, hi in zip(coordinates.min(0).tolist(), coordinates.max(0).tolist()))
    steps = list(checkpoint_paths(checkpoint.run)) if all_checkpoints else None
    chosen = [seed + i for i in range(seeds)] if dims == 1 and direction == "random" and not all_checkpoints \
        else [seed, seed + 1] if dims == 2 else [seed]
    lines = len(steps) if steps else 1 if dims == 2 else len(chosen)
    progress.expect(len(axis(start, stop, points)) * (len(axis(*span2, points)) if dims == 2 else 1) * lines
                    * sum(1 for _ in obj.evaluation_batches()))  # a grid point of a batch each
    started = time.perf_counter()
    if dims == 2:
        if not on_pca_plane:
            d1 = named_direction(checkpoint, obj, direction, seed, **options)
            d2 = named_direction(checkpoint, obj, direction2, seed + 1, **options)
        surfaces = [loss_plane(obj, d1, d2, (start, stop), points, chunk, span2)]
    elif steps:
        surfaces = []
        for step in steps:
            at = load_checkpoint(checkpoint.run, step)
            at_obj = at.objective(split)
            surfaces.append(loss_line(at_obj, named_direction(at, at_obj, direction, seed, **options), (start, stop),
                                      points, chunk))
    else:
        surfaces = [loss_line(obj, named_direction(checkpoint, obj, direction, s, **options), (start, stop), points,
                              chunk) for s in chosen]
    return Landscape(checkpoint.run.path.name, checkpoint.step, split, direction, direction2 if dims == 2 else None,
                     (start, stop), span2 if dims == 2 else None, options, chosen, surfaces, steps, path,
                     round(time.perf_counter() - started, 3))
