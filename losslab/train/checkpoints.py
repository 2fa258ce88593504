"""A run's stored checkpoints as models, optimizers and objectives: the one bridge from run
folders to the analysis layer (`objective_at`, public as `ll.objective_at`): the analyses know
nothing of runs.

The model is rebuilt from the run's config and the checkpoint's weights (loaded with
weights_only=True, onto the CPU); analyses work on this copy, so nothing they do touches the run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from losslab.analysis import directions
from losslab.analysis.objective import Objective
from losslab.config import RunConfig
from losslab.core.errors import LossLabError
from losslab.losses import Loss
from losslab.optim.factory import build_optimizer
from losslab.store import RunDir, RunStore
from losslab.tasks import Task
from losslab.train.step import TrainingStep, build_run_model

_STEP_NAME = re.compile(r"step_(\d+)\.pt$")
SPLITS = ("train", "val")


def checkpoint_paths(run: RunDir) -> dict[int, Path]:
    """Stored checkpoints by step (named step_*.pt; a rolling last.pt counts at its own step)."""
    found = {int(m.group(1)): p for p in run.checkpoints() if (m := _STEP_NAME.search(p.name))}
    last = run.checkpoint_dir / "last.pt"
    if last.exists():
        found.setdefault(run.load_checkpoint(last)["step"], last)
    return dict(sorted(found.items()))


@dataclass
class Checkpoint:
    """A run's model at one stored step, with its data, loss and the checkpoint's state."""

    run: RunDir
    cfg: RunConfig
    step: int
    model: nn.Module
    task: Task
    loss_fn: Loss
    state: dict

    def data(self, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
        if split not in SPLITS:
            raise LossLabError(f"unknown split {split!r} (train or val)")
        t = self.task
        return (t.x_train, t.y_train) if split == "train" else (t.x_val, t.y_val)

    def objective(self, split: str = "train") -> Objective:
        """The mean loss of the run's model on its training or validation data (full batch)."""
        return Objective(self.model, self.loss_fn, self.data(split), accuracy=self.loss_fn.accuracy)

    def weights(self) -> dict[str, torch.Tensor]:
        return {n: p.detach() for n, p in self.model.named_parameters()}

    def optimizer(self) -> torch.optim.Optimizer:
        """The run's optimizer over this model, with the checkpoint's state (its preconditioner)."""
        optimizer = build_optimizer(self.cfg.optim, self.model)
        optimizer.load_state_dict(self.state["optimizer"])
        return optimizer


def load_checkpoint(run: RunDir, step: int | None = None) -> Checkpoint:
    """The run at checkpoint `step` (default: its last one)."""
    paths = checkpoint_paths(run)
    if not paths:
        raise LossLabError(f"run {run.path.name} has no checkpoint")
    if step is None:
        step = max(paths)
    if step not in paths:
        raise LossLabError(f"run {run.path.name} has no checkpoint at step {step} "
                           f"(it has: {', '.join(map(str, paths))})")
    cfg = run.config()
    model, task, loss_fn = build_run_model(cfg)
    state = run.load_checkpoint(paths[step])
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError) as e:
        raise LossLabError(f"run {run.path.name}: checkpoint {paths[step].name} does not fit its config "
                           f"({str(e).splitlines()[0]})") from None
    model.eval()
    return Checkpoint(run, cfg, step, model, task, loss_fn, state)


def objective_at(run: RunDir | str | Path, step: int | None = None, split: str = "train") -> Objective:
    """The objective of a losslab run at one of its stored checkpoints.

    The run's model rebuilt from its config with the checkpoint's weights and its loss, on its
    training or validation data as one batch, on the CPU.

    Args:
        run: the run's folder, or a `RunDir`.
        step: the checkpoint's step (default: the last).
        split: `"train"` or `"val"`.

    Returns:
        Objective: ready for every analysis.

    Raises:
        LossLabError: no such run, checkpoint or split; a run the Monitor wrote (no config to
            rebuild its model from).

    Examples:
        >>> import tempfile
        >>> from losslab.config import load_config
        >>> from losslab.store import RunStore
        >>> from losslab.train.loop import train
        >>> store = RunStore(tempfile.mkdtemp())
        >>> run = train(load_config("parity", ["train.max_steps=20"]), store)
        >>> ll.objective_at(run["run_dir"]).n_examples
        300
    """
    return load_checkpoint(run if isinstance(run, RunDir) else RunDir.open(Path(run)), step).objective(split)


def trajectory(run: RunDir) -> tuple[list[int], list[dict[str, torch.Tensor]]]:
    """Every stored checkpoint's model weights, by step."""
    paths = checkpoint_paths(run)
    return list(paths), [run.load_checkpoint(p)["model"] for p in paths.values()]


def training_step(checkpoint: Checkpoint) -> torch.Tensor:
    """theta_{t+1} - theta_t, flat: the step the run takes from this checkpoint, its optimizer
    state restored (as the run's own loop takes it)."""
    stepper = TrainingStep(checkpoint.cfg, next(checkpoint.model.parameters()).device)
    stepper.load_state(checkpoint.state)
    before = [p.detach().clone() for p in stepper.model.parameters()]
    stepper.take()
    return torch.cat([(p.detach() - b).flatten() for p, b in zip(stepper.model.parameters(), before)])


DIRECTIONS = "random, init, final, checkpoint:STEP, run:RUN[@STEP], step, pcaN, hessianN"
_DIRECTION = re.compile(r"random|init|final|step|checkpoint:\d+|run:[^@]+(@\d+)?|(pca|hessian)[1-9]\d{0,3}")


def check_direction(spec: str) -> str:
    """`spec` if it names a direction (pcaN and hessianN count from 1), before any work is done."""
    if not _DIRECTION.fullmatch(spec):
        raise LossLabError(f"unknown direction {spec!r} ({DIRECTIONS}; N from 1)")
    return spec


def named_direction(checkpoint: Checkpoint, obj: Objective, spec: str, seed: int = 0, normalization: str = "filter",
                    include_biases: bool = False) -> torch.Tensor:
    """The direction named `spec` at the checkpoint (flat, over `obj`'s parameters): random; init,
    final or checkpoint:STEP (that checkpoint's weights - theta); run:RUN[@STEP] (another run's);
    step (the run's next step); pcaN (the trajectory's N-th principal direction); hessianN (the
    eigenvector of the N-th largest Hessian eigenvalue)."""
    check_direction(spec)
    run, steps = checkpoint.run, checkpoint_paths(checkpoint.run)
    if spec == "random":
        return directions.random_direction(obj, seed, normalization, include_biases)
    if spec in ("init", "final") or (m := re.fullmatch(r"checkpoint:(\d+)", spec)):
        step = {"init": 0, "final": max(steps)}.get(spec) if spec in ("init", "final") else int(m.group(1))
        if step not in steps:
            raise LossLabError(f"direction {spec}: run {run.path.name} has no checkpoint at step {step}")
        return directions.direction_to(obj, run.load_checkpoint(steps[step])["model"])
    if m := re.fullmatch(r"run:([^@]+)(?:@(\d+))?", spec):
        other = load_checkpoint(RunStore(run.path.parent).find(m.group(1)), int(m.group(2)) if m.group(2) else None)
        return directions.direction_to(obj, other.weights())
    if spec == "step":
        return training_step(checkpoint)
    if m := re.fullmatch(r"pca(\d+)", spec):
        i = int(m.group(1))
        return directions.trajectory_directions(obj, trajectory(run)[1], i)[0][i - 1]
    if m := re.fullmatch(r"hessian(\d+)", spec):
        i = int(m.group(1))
        return directions.hessian_directions(obj, i)[i - 1]
    raise LossLabError(f"unknown direction {spec!r} ({DIRECTIONS})")
