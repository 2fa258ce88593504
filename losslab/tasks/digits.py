"""scikit-learn's digits: a small real data set that ships inside the package (no download)."""

from typing import Literal

import torch
from pydantic import Field

from losslab.tasks.base import Task, TaskSpec, register


@register
class DigitsTask(TaskSpec):
    """scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes, shipped inside the package):
    pixels scaled to [0, 1], a stratified split drawn from the seed."""

    name: Literal["digits"] = "digits"
    val_fraction: float = Field(0.25, gt=0, lt=1)

    def shape(self) -> tuple[int, int, int | None, int]:
        return 1797, 64, None, 10

    def describe(self) -> str:
        return "digits (8 x 8)"

    def build(self, seed: int) -> Task:
        from sklearn.datasets import load_digits  # startup
        from sklearn.model_selection import train_test_split  # startup

        x, y = load_digits(return_X_y=True)
        x_train, x_val, y_train, y_val = train_test_split(x / 16.0, y, test_size=self.val_fraction, stratify=y,
                                                          random_state=seed)
        as_x, as_y = (lambda a: torch.tensor(a, dtype=torch.float32)), (lambda a: torch.tensor(a, dtype=torch.long))
        return Task(as_x(x_train), as_y(y_train), as_x(x_val), as_y(y_val), n_classes=10)
