"""Sparse (n, k)-parity (Barak et al. 2022): x uniform on {-1,+1}^n, label prod(x[:k])."""

from typing import Literal

import torch
from pydantic import Field, model_validator

from losslab.core.schema import Examples
from losslab.tasks.base import Task, TaskSpec, register


def parity_labels(x: torch.Tensor, k: int) -> torch.Tensor:
    """Class 1 where the product of the first k coordinates is +1, class 0 where it is -1."""
    return (x[:, :k].prod(1) > 0).long()


@register
class ParityTask(TaskSpec):
    """Sparse (n, k)-parity on {-1,+1}^n: the label is the product of the first k bits."""

    name: Literal["parity"] = "parity"
    n: int = Field(50, ge=1, le=10_000)
    k: int = Field(2, ge=1)
    n_train: Examples = 300
    n_test: Examples = 100
    noise: float = Field(0.0, ge=0, lt=0.5, description="fraction of training labels flipped")

    @model_validator(mode="after")
    def _k_at_most_n(self):
        if self.k > self.n:
            raise ValueError(f"k={self.k} must be at most n={self.n}")
        return self

    def shape(self) -> tuple[int, int, int | None, int]:
        return self.n_train + self.n_test, self.n, None, 2

    def describe(self) -> str:
        return (f"sparse ({self.n}, {self.k})-parity, {self.n_train} examples"
                + (f", {self.noise:.0%} labels flipped" if self.noise else ""))

    def build(self, seed: int) -> Task:
        g = torch.Generator().manual_seed(seed)
        x = torch.randint(0, 2, (self.n_train + self.n_test, self.n), generator=g).float() * 2 - 1
        y = parity_labels(x, self.k)
        flipped = torch.randperm(self.n_train, generator=g)[: round(self.noise * self.n_train)]
        y[flipped] = 1 - y[flipped]  # label noise on the training split only
        return Task(x[: self.n_train], y[: self.n_train], x[self.n_train:], y[self.n_train:], n_classes=2)
