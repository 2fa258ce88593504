"""Tasks: tensors of a train and a validation split, generated deterministically from the seed."""

from losslab.config import DigitsTask, ModularTask, ParityTask, ZipfTask
from losslab.tasks.base import Task
from losslab.tasks.digits import digits_task
from losslab.tasks.modular import modular_task
from losslab.tasks.parity import parity_task
from losslab.tasks.zipf import zipf_task


def build_task(cfg: ModularTask | ParityTask | ZipfTask | DigitsTask, seed: int) -> Task:
    builders = {"modular": modular_task, "parity": parity_task, "zipf": zipf_task, "digits": digits_task}
    return builders[cfg.name](cfg, seed)


def task_shape(cfg: ModularTask | ParityTask | ZipfTask | DigitsTask) -> tuple[int, int, int | None, int]:
    """(examples in both splits, values per example, vocabulary size of token tasks or None,
    classes), known from the config alone: what a task will allocate, before it does."""
    if cfg.name == "modular":
        elements = 120 if cfg.op == "s5" else cfg.p
        return elements**2, 4, elements + 2, elements
    if cfg.name == "parity":
        return cfg.n_train + cfg.n_test, cfg.n, None, 2
    if cfg.name == "zipf":
        return cfg.n_train + cfg.n_test, cfg.dim, None, cfg.n_classes
    return 1797, 64, None, 10  # scikit-learn's digits: 1,797 images of 8 x 8


__all__ = ["Task", "build_task", "task_shape", "digits_task", "modular_task", "parity_task", "zipf_task"]
