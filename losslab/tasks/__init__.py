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


__all__ = ["Task", "build_task", "digits_task", "modular_task", "parity_task", "zipf_task"]
