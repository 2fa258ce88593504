"""A task added from outside losslab, as a user adds one: this file and its @register."""

from typing import Literal

import torch
from pydantic import Field, model_validator

from losslab.core.schema import Examples
from losslab.tasks import Task, TaskSpec, register


@register
class MajorityTask(TaskSpec):
    """Majority of n bits in {-1, +1}: the label is whether most are +1 (n odd: never a tie)."""

    name: Literal["majority"] = "majority"
    n: int = Field(9, ge=1, le=999)
    n_train: Examples = 200
    n_test: Examples = 100

    @model_validator(mode="after")
    def _odd(self):
        if self.n % 2 == 0:
            raise ValueError(f"n={self.n} is even: a majority of an even number of bits can tie")
        return self

    def shape(self) -> tuple[int, int, int | None, int]:
        return self.n_train + self.n_test, self.n, None, 2

    def describe(self) -> str:
        return f"majority of {self.n} bits, {self.n_train} examples"

    def build(self, seed: int) -> Task:
        g = torch.Generator().manual_seed(seed)
        x = torch.randint(0, 2, (self.n_train + self.n_test, self.n), generator=g).float() * 2 - 1
        y = (x.sum(1) > 0).long()
        return Task(x[: self.n_train], y[: self.n_train], x[self.n_train:], y[self.n_train:], n_classes=2)
