"""A task: its data (Task), and its [task] section (TaskSpec), which builds the data and says what
the task is from the settings alone. `@register` puts a TaskSpec in TASKS, where the config's
[task] union, `--set task.name=...` and the error messages find it."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from losslab.core.schema import Strict


@dataclass(frozen=True)
class Task:
    """A classification data set. Token tasks have integer x of shape (N, seq_len) over
    `vocab_size` tokens; vector tasks have float x of shape (N, input_dim)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    n_classes: int
    vocab_size: int | None = None
    class_groups: torch.Tensor | None = None  # group id of each class: losses are also logged per group

    @property
    def is_tokens(self) -> bool:
        return self.vocab_size is not None

    @property
    def input_dim(self) -> int:
        return self.x_train.shape[1]

    @property
    def chance(self) -> float:
        """Accuracy of guessing: 1 / number of classes."""
        return 1.0 / self.n_classes

    def to(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> Task:
        """The task on `device`, its float inputs in `dtype` (token inputs stay integers)."""
        moved = {name: getattr(self, name).to(device) for name in ("x_train", "y_train", "x_val", "y_val",
                                                                   "class_groups") if getattr(self, name) is not None}
        if dtype is not None and not self.is_tokens:
            moved["x_train"], moved["x_val"] = moved["x_train"].to(dtype), moved["x_val"].to(dtype)
        return replace(self, **moved)


class TaskSpec(Strict):
    """A task's [task] section. A subclass declares `name: Literal["its name"] = "its name"` and its
    settings, and builds its data from them."""

    def build(self, seed: int) -> Task:
        """The train and validation splits, generated deterministically from `seed`."""
        raise NotImplementedError

    def shape(self) -> tuple[int, int, int | None, int]:
        """(examples in both splits, values per example, vocabulary size of token tasks or None,
        classes), known from the settings alone: what the task will allocate, before it does."""
        raise NotImplementedError

    def describe(self) -> str:
        """One line: what the task is, with its settings."""
        raise NotImplementedError


TASKS: dict[str, type[TaskSpec]] = {}


def register(spec: type[TaskSpec]) -> type[TaskSpec]:
    name = spec.model_fields["name"].default
    if name in TASKS:
        raise ValueError(f"a task named {name!r} is registered already")
    TASKS[name] = spec
    return spec
