"""scikit-learn's digits: a small real data set that ships inside the package (no download)."""

import torch

from losslab.config import DigitsTask
from losslab.tasks.base import Task


def digits_task(cfg: DigitsTask, seed: int) -> Task:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(x / 16.0, y, test_size=cfg.val_fraction, stratify=y,
                                                      random_state=seed)
    as_x, as_y = (lambda a: torch.tensor(a, dtype=torch.float32)), (lambda a: torch.tensor(a, dtype=torch.long))
    return Task(as_x(x_train), as_y(y_train), as_x(x_val), as_y(y_val), n_classes=10)
