from dataclasses import dataclass, replace

import torch


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

    def to(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> "Task":
        """The task on `device`, its float inputs in `dtype` (token inputs stay integers)."""
        moved = {name: getattr(self, name).to(device) for name in ("x_train", "y_train", "x_val", "y_val",
                                                                   "class_groups") if getattr(self, name) is not None}
        if dtype is not None and not self.is_tokens:
            moved["x_train"], moved["x_val"] = moved["x_train"].to(dtype), moved["x_val"].to(dtype)
        return replace(self, **moved)
