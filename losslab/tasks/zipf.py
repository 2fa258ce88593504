"""Heavy-tailed class frequencies (Kunstner et al. 2024, "Heavy-tailed class imbalance and why
Adam outperforms gradient descent on language models").

Class k (1-based) is drawn with probability proportional to 1 / k^exponent. The classes are
split into frequency groups holding equal shares of the training samples: group 0 the few
most frequent classes, the last group the many rare ones. The trainer logs the training loss
of each group, where gradient descent's stall on the rare classes shows.
"""

import torch

from losslab.config import ZipfTask
from losslab.tasks.base import Task


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


def zipf_task(cfg: ZipfTask, seed: int) -> Task:
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(cfg.n_classes, cfg.dim, generator=g)
    y = torch.multinomial(zipf_probabilities(cfg.n_classes, cfg.exponent).float(), cfg.n_train + cfg.n_test,
                          replacement=True, generator=g)
    x = cfg.offset + means[y] + cfg.noise * torch.randn(len(y), cfg.dim, generator=g)
    n = cfg.n_train
    return Task(x[:n], y[:n], x[n:], y[n:], n_classes=cfg.n_classes,
                class_groups=frequency_groups(y[:n], cfg.n_classes, cfg.groups))
