"""Sparse (n, k)-parity (Barak et al. 2022): x uniform on {-1,+1}^n, label prod(x[:k])."""

import torch

from losslab.config import ParityTask
from losslab.tasks.base import Task


def parity_labels(x: torch.Tensor, k: int) -> torch.Tensor:
    """Class 1 where the product of the first k coordinates is +1, class 0 where it is -1."""
    return (x[:, :k].prod(1) > 0).long()


def parity_task(cfg: ParityTask, seed: int) -> Task:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 2, (cfg.n_train + cfg.n_test, cfg.n), generator=g).float() * 2 - 1
    y = parity_labels(x, cfg.k)
    flipped = torch.randperm(cfg.n_train, generator=g)[: round(cfg.noise * cfg.n_train)]
    y[flipped] = 1 - y[flipped]  # label noise on the training split only
    return Task(x[: cfg.n_train], y[: cfg.n_train], x[cfg.n_train:], y[cfg.n_train:], n_classes=2)
