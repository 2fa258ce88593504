"""Losses by name. Each knows its output width and how outputs become class predictions.

Hinge and MSE on two classes use one score per example with labels -1/+1 (class 0/1), as in
the sparse-parity literature; on more classes they use one score per class.
"""

import torch
import torch.nn.functional as F


class Loss:
    def __init__(self, n_classes: int):
        self.n_classes = n_classes
        self.scalar = n_classes == 2 and type(self) is not CrossEntropy

    @property
    def n_outputs(self) -> int:
        return 1 if self.scalar else self.n_classes

    def predict(self, out: torch.Tensor) -> torch.Tensor:
        return (out[:, 0] > 0).long() if self.scalar else out.argmax(-1)

    def accuracy(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (self.predict(out) == y).float().mean()

    def __call__(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class CrossEntropy(Loss):
    def __call__(self, out, y):
        return F.cross_entropy(out, y)


class Hinge(Loss):
    def __call__(self, out, y):
        if self.scalar:
            return F.relu(1 - (2 * y - 1) * out[:, 0]).mean()
        return F.multi_margin_loss(out, y)


class MSE(Loss):
    def __call__(self, out, y):
        if self.scalar:
            return F.mse_loss(out[:, 0], (2 * y - 1).to(out.dtype))
        return F.mse_loss(out, F.one_hot(y, self.n_classes).to(out.dtype))


LOSSES = {"cross_entropy": CrossEntropy, "hinge": Hinge, "mse": MSE}


def build_loss(name: str, n_classes: int) -> Loss:
    return LOSSES[name](n_classes)
