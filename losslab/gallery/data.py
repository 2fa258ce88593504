"""Data the gallery's entries share."""

from __future__ import annotations

import torch


def digits(train: int, dtype=torch.float32):
    """scikit-learn's digits, scaled to [0, 1]: the first `train` images to train on, the rest to test."""
    from sklearn.datasets import load_digits  # startup

    data, target = load_digits(return_X_y=True)
    x, y = torch.tensor(data, dtype=dtype) / 16, torch.tensor(target)
    return (x[:train], y[:train]), (x[train:], y[train:])
