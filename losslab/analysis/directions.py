"""Directions in weight space from a checkpoint theta, for loss surfaces theta + a d1 + b d2.

Names, as the `landscape` command takes them:

- random: zero-mean Gaussian, normalized filter by filter (Li et al. 2018: each filter --
  a row of a weight matrix -- rescaled to the norm of the same filter of theta), or per
  layer, or not at all; 1D parameters (biases, norm gains) are zero unless included.
  Drawn from a seed, so a surface can be repeated over seeds.
- init: theta_0 - theta;  final: theta_last - theta;  checkpoint:STEP: theta_STEP - theta;
  run:RUN[@STEP]: the other run's weights - theta (the straight path between two minima).
- step: theta_{t+1} - theta_t, the training step the run takes from this checkpoint.
- pca1, pca2, ...: principal directions of the stored trajectory (its checkpoints).
- hessian1, hessian2, ...: eigenvectors of the top Hessian eigenvalues.
"""

from __future__ import annotations

import re

import torch

from losslab.analysis.hessian import Hessian, extreme_eigenpairs
from losslab.analysis.point import Point, checkpoint_paths, flatten, load_point, unflatten
from losslab.errors import LossLabError
from losslab.store import RunStore

Direction = dict[str, torch.Tensor]
NORMALIZATIONS = ("filter", "layer", "none")


def random_direction(params: Direction, seed: int, normalization: str = "filter",
                     include_biases: bool = False) -> Direction:
    if normalization not in NORMALIZATIONS:
        raise LossLabError(f"unknown normalization {normalization!r} (known: {', '.join(NORMALIZATIONS)})")
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, w in params.items():
        d = torch.randn(w.shape, generator=g, dtype=w.dtype)
        if w.ndim < 2 and not include_biases:
            d.zero_()
        elif normalization == "filter" and w.ndim >= 2:  # each filter (row) to the norm of theta's
            rows, d_rows = w.flatten(1), d.flatten(1)
            d = (d_rows * (rows.norm(dim=1, keepdim=True) / d_rows.norm(dim=1, keepdim=True).clamp_min(1e-30))
                 ).view(w.shape)
        elif normalization != "none":  # a layer (or a 1D parameter) as a whole
            d = d * (w.norm() / d.norm().clamp_min(1e-30))
        out[name] = d
    return out


def difference(target: Direction, params: Direction) -> Direction:
    return {n: target[n] - params[n] for n in params}


def _weights(point: Point, step: int) -> Direction:
    return load_point(point.run, step).params


def trajectory_matrix(point: Point) -> tuple[list[int], torch.Tensor]:
    """The stored checkpoints as rows (steps, flattened weights)."""
    steps = list(checkpoint_paths(point.run))
    rows = [flatten(_weights(point, s)) for s in steps]
    return steps, torch.stack(rows)


def principal_directions(point: Point, k: int) -> tuple[list[Direction], list[float]]:
    """The top-k principal directions of the trajectory and the fraction of its variance each explains."""
    steps, rows = trajectory_matrix(point)
    if len(steps) < k + 1:
        raise LossLabError(f"run {point.run.path.name} stored {len(steps)} checkpoints: too few for {k} "
                           f"principal directions")
    centered = rows.double() - rows.double().mean(0)
    _, s, vh = torch.linalg.svd(centered, full_matrices=False)
    explained = (s**2 / (s**2).sum()).tolist()
    return [unflatten(vh[i].to(rows.dtype), point.params) for i in range(k)], explained[:k]


def training_step(point: Point) -> Direction:
    """theta_{t+1} - theta_t: the run's next step from this checkpoint, its optimizer state restored."""
    from losslab.train.loop import Trainer

    trainer = Trainer(point.cfg, point.run, RunStore(point.run.path.parent))
    state = point.run.load_checkpoint(checkpoint_paths(point.run)[point.step])
    trainer.restore(state, [], {})
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.take_step()
    return {n: p.detach() - before[n] for n, p in trainer.model.named_parameters()}


def resolve_direction(point: Point, spec: str, seed: int = 0, normalization: str = "filter",
                      include_biases: bool = False, split: str = "train") -> Direction:
    """The direction named `spec` (see the module's docstring) at `point`."""
    params = point.params
    steps = checkpoint_paths(point.run)
    if spec == "random":
        return random_direction(params, seed, normalization, include_biases)
    if spec in ("init", "final"):
        step = 0 if spec == "init" else max(steps)
        if step not in steps:
            raise LossLabError(f"direction {spec}: run {point.run.path.name} stored no checkpoint at step {step}")
        return difference(_weights(point, step), params)
    if m := re.fullmatch(r"checkpoint:(\d+)", spec):
        return difference(_weights(point, int(m.group(1))), params)
    if m := re.fullmatch(r"run:([^@]+)(?:@(\d+))?", spec):
        other = load_point(RunStore(point.run.path.parent).find(m.group(1)), int(m.group(2)) if m.group(2) else None)
        if {n: p.shape for n, p in other.params.items()} != {n: p.shape for n, p in params.items()}:
            raise LossLabError(f"direction {spec}: run {other.run.path.name} has another architecture")
        return difference(other.params, params)
    if spec == "step":
        return training_step(point)
    if m := re.fullmatch(r"pca(\d+)", spec):
        i = int(m.group(1))
        return principal_directions(point, max(i, 1))[0][i - 1]
    if m := re.fullmatch(r"hessian(\d+)", spec):
        i = int(m.group(1))
        eig = extreme_eigenpairs(Hessian(lambda p: point.loss(p, split), params), k=max(i, 1), which="top")
        return unflatten(torch.from_numpy(eig.vectors[:, -i]), params)
    raise LossLabError(f"unknown direction {spec!r} (random, init, final, checkpoint:STEP, run:RUN[@STEP], "
                       f"step, pcaN, hessianN)")
