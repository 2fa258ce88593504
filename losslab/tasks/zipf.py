"""Heavy-tailed class frequencies (Kunstner et al. 2024, "Heavy-tailed class imbalance and why
Adam outperforms gradient descent on language models").

Class k (1-based) is drawn with probability proportional to 1 / k^exponent. The classes are
split into frequency groups holding equal shares of the training samples: group 0 the few
most frequent classes, the last group the many rare ones. The trainer logs the training loss
of each group, where gradient descent's stall on the rare classes shows.
"""

from typing import Literal

import torch
from pydantic import Field, model_validator

from losslab.core.schema import Examples
from losslab.tasks.base import Task, TaskSpec, register


def zipf_probabilities(n_classes: int, exponent: float) -> torch.Tensor:
    weights = torch.arange(1, n_classes + 1, dtype=torch.float64) ** -exponent
    return weights / weights.sum()


def frequency_groups(labels: torch.Tensor, n_classes: int, groups: int) -> torch.Tensor:
    """Group id per class: classes sorted by count (most frequent first) and cut where the
    cumulative share of samples crosses g / groups."""
    counts = torch.bincount(labels, minlength=n_classes).double()
    order = torch.argsort(counts, descending=True, stable=True)
    before = (counts[order].cumsum(0) - counts[order]) / counts.sum()  # share of samples before each class
    group_sorted = (before * groups).floor().long().clamp(max=groups - 1)
    out = torch.empty(n_classes, dtype=torch.long)
    out[order] = group_sorted
    return out


@register
class ZipfTask(TaskSpec):
    """Heavy-tailed classes (Kunstner et al. 2024): class k (k = 1..n_classes) has frequency
    proportional to 1 / k^exponent; inputs are a Gaussian mixture, x = offset + mean_y + noise * N(0, I)."""

    name: Literal["zipf"] = "zipf"
    n_classes: int = Field(200, ge=2, le=100_000)
    exponent: float = Field(1.0, ge=0, description="Zipf exponent; 0 gives balanced classes")
    dim: int = Field(64, ge=1, le=100_000)
    noise: float = Field(1.0, ge=0, description="std of the noise around the class means (which are N(0, I))")
    offset: float = Field(0.0, description="a common shift of every input along (1, ..., 1): uncentered "
                                           "inputs, which make the frequent classes set the stable step size")
    n_train: Examples = 4000
    n_test: Examples = 1000
    groups: int = Field(8, ge=1, description="frequency groups (equal shares of samples) for per-group losses")

    @model_validator(mode="after")
    def _groups_at_most_classes(self):
        if self.groups > self.n_classes:
            raise ValueError(f"groups={self.groups} must be at most n_classes={self.n_classes}")
        return self

    def shape(self) -> tuple[int, int, int | None, int]:
        return self.n_train + self.n_test, self.dim, None, self.n_classes

    def describe(self) -> str:
        return f"{self.n_classes} Zipf classes (exponent {self.exponent:g}), {self.n_train} examples"

    def build(self, seed: int) -> Task:
        g = torch.Generator().manual_seed(seed)
        means = torch.randn(self.n_classes, self.dim, generator=g)
        y = torch.multinomial(zipf_probabilities(self.n_classes, self.exponent).float(), self.n_train + self.n_test,
                              replacement=True, generator=g)
        x = self.offset + means[y] + self.noise * torch.randn(len(y), self.dim, generator=g)
        n = self.n_train
        return Task(x[:n], y[:n], x[n:], y[n:], n_classes=self.n_classes,
                    class_groups=frequency_groups(y[:n], self.n_classes, self.groups))
