"""Tasks: tensors of a train and a validation split, generated deterministically from the seed. A
new task is a TaskSpec subclass with @register in a module of this package, and that module's name
in the import below."""

# the registry keeps this order; the first is the task of a [task] section without a name
# isort: off
from losslab.tasks import modular, parity, zipf, digits  # noqa: F401  (each registers its task)
# isort: on
from losslab.tasks.base import TASKS, Task, TaskSpec, register
from losslab.tasks.digits import DigitsTask
from losslab.tasks.modular import ModularTask
from losslab.tasks.parity import ParityTask
from losslab.tasks.zipf import ZipfTask

__all__ = ["TASKS", "DigitsTask", "ModularTask", "ParityTask", "Task", "TaskSpec", "ZipfTask", "register"]
