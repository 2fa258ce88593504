"""What a measure is, the registry of them, and what one measurement sees.

A measure declares its name, when the Monitor reads it (every step, from the loop's own step, or at
the cadence on the probe), the `[probes]` key that turns it on in losslab's own runs, the instrument
its rows are read on, the rows it writes, and how it measures; what it carries from one measurement
to the next is its state, checkpointed with the run. `@register` puts it in MEASURES, where the
Monitor, the Trainer, the report's instruments and the refusals of unknown names find it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar, Literal

import numpy as np
import torch

from losslab.analysis.curvature import HessianOperator, extreme_eigenpairs, random_start
from losslab.analysis.objective import Objective

# Lanczos's relative residual for the tracked top eigenvalues (the default `tolerance`): a Ritz
# value's error is about the square of its residual over the spectral gap (and never more than the
# residual), so 1e-2 leaves lambda_max and the preconditioned lambda_max right to ~1e-4, far finer
# than their step-to-step motion (measured against eigsh at 1e-10, every 100 steps: at worst 1.5e-4
# over 2,000 steps of the digits CNN, 1.8e-4 over 600 of the grokking transformer).
TRACKING_TOL = 1e-2

# the instruments a run is read on, in the order a reader learns once (after Cockpit, Schneider et
# al. 2021); numbered, so that TensorBoard's sorted tag groups keep the order
LOSS, STABILITY, GRADIENTS, WEIGHTS = "1 loss and accuracy", "2 step size and stability", "3 gradients", "4 weights"
REPRESENTATIONS, SIGNATURE, COST = "5 representations", "6 signature", "7 cost"


@dataclass(frozen=True)
class Setup:
    """What the measures are built from, before training: the model, its optimizer, the probe's
    inputs where it has them as one tensor, the modules named for the dimension, Lanczos's tolerance."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    inputs: torch.Tensor | None = None
    layers: list[str] | None = None
    tolerance: float = TRACKING_TOL


class Measure:
    """A measure the Monitor (and losslab's own runs) take during training: subclass it and `register` it.

    A subclass sets the class attributes and, for a measure taken on the probe, `measure`. A refusal
    (an optimizer without what the measure reads, a model it cannot take) is a `LossLabError` from
    `refusal`, the constructor or `check`, before training starts.

    Attributes:
        name: the name `measures=[...]` asks for.
        when: `"probe"` (every `every` steps, on the probe) or `"step"` (from every optimizer step).
        switch: the `[probes]` key that turns it on in losslab's runs (None: never).
        instrument: the run page's panel group it is drawn in (`losslab.monitor.instruments`).
        writes: the names of its rows; one ending in "/" is followed by a layer's name.
        uses_hessian: it reads `probe.hessian` (one operator is then shared by all measures).

    Args:
        setup: what the measure is taken on (the model, the optimizer, the probe's inputs, the layers).

    Examples:
        >>> from losslab.monitor import MEASURES, Measure, register
        >>> @register
        ... class GradientCurvature(Measure):
        ...     # g^T H g / |g|^2: the curvature a gradient step feels (1 product)
        ...     name, instrument, writes = "gradient_curvature_doc", "2 step size and stability", ("gc",)
        ...     uses_hessian = True
        ...     def measure(self, probe):
        ...         g = probe.gradient
        ...         yield "gc", float(g @ (probe.hessian @ g) / (g @ g))
        >>> "gradient_curvature_doc" in MEASURES
        True
        >>> del MEASURES["gradient_curvature_doc"]
    """

    name: ClassVar[str]
    # "step": the Monitor reads it from every optimizer step (losslab.monitor.series); "probe": at the
    # cadence, on the probe. losslab's Trainer takes every measure its [probes] turn on at the probe.
    when: ClassVar[Literal["step", "probe"]] = "probe"
    switch: ClassVar[str | None] = None  # the [probes] key that turns it on in losslab's runs (None: never)
    instrument: ClassVar[str]
    writes: ClassVar[tuple[str, ...]]  # its rows' names; one ending in "/" is followed by a layer's name
    uses_hessian: ClassVar[bool] = False  # the measurement then builds one Hessian operator for all

    def __init__(self, setup: Setup):
        self.setup = setup

    @staticmethod
    def refusal(optimizer: torch.optim.Optimizer) -> str | None:
        """Why this measure cannot read `optimizer` (None: it can). losslab's Trainer leaves such a
        measure out of a run (a sweep over optimizers keeps one [probes] section); the Monitor refuses."""
        return None

    def check(self, probe: Objective) -> None:
        """Refuse, now, a probe this measure cannot take (the Monitor calls it before the loop)."""

    def measure(self, probe: Probe) -> Iterable[tuple[str, float]]:
        """(row name, value) pairs at `probe`'s step."""
        raise NotImplementedError(f"{self.name} is read from the optimizer's steps (losslab.monitor.series)")

    def state(self) -> dict[str, torch.Tensor]:
        """What the next measurement starts from (checkpointed with the run)."""
        return {}

    def restore(self, state: dict[str, torch.Tensor]) -> None:
        pass


MEASURES: dict[str, type[Measure]] = {}
"""Every registered measure by its name (`register` adds one): what `Monitor(measures=[...])` takes."""


def register(cls: type[Measure]) -> type[Measure]:
    """Add a measure class to `MEASURES`, by its name: the Monitor and the run page find it there.

    Args:
        cls: a `Measure` subclass.

    Returns:
        The class, unchanged (a decorator).

    Raises:
        ValueError: a measure of that name is registered already.

    Examples:
        >>> from losslab.monitor import MEASURES, register
        >>> register(MEASURES["sharpness"])
        Traceback (most recent call last):
        ...
        ValueError: a measure named 'sharpness' is registered already
    """
    if cls.name in MEASURES:
        raise ValueError(f"a measure named {cls.name!r} is registered already")
    MEASURES[cls.name] = cls
    return cls


class Probe:
    """One measurement, as each measure's `measure(probe)` sees it.

    The step, the probe's objective at the weights after it, the optimizer, and what the measures
    share: one Hessian operator (whose gradient is the probe gradient) and the tracked extreme
    eigenvectors, each Lanczos starting from the previous measurement's vector.

    Args:
        step: the training step.
        objective: the probe's objective at the weights now.
        optimizer: the training's optimizer.
        warm: the tracked eigenvectors by side (`"top"`, `"bottom"`), updated in place.
        tolerance: Lanczos's residual for the tracked eigenvalues.
        uses_hessian: a measure builds the Hessian operator anyway (the gradient then comes from it).

    Examples:
        >>> from losslab.monitor import Probe
        >>> probe = Probe(0, obj, torch.optim.SGD(model.parameters(), lr=0.1), {}, 1e-6, True)
        >>> round(probe.lambda_max, 6) == round(ll.hessian_eigenvalues(obj, k=1).lambda_max, 6)
        True
    """

    def __init__(self, step: int, objective: Objective, optimizer: torch.optim.Optimizer,
                 warm: dict[str, np.ndarray], tolerance: float, uses_hessian: bool):
        self.step, self.objective, self.optimizer = step, objective, optimizer
        self.warm, self.tolerance, self.uses_hessian = warm, tolerance, uses_hessian

    @property
    def lr(self) -> float:
        """The learning rate now: the first param group's (schedules apply)."""
        return self.optimizer.param_groups[0]["lr"]

    @cached_property
    def hessian(self) -> HessianOperator:
        return HessianOperator(self.objective)

    @cached_property
    def gradient(self) -> torch.Tensor:
        """The probe loss's gradient: the Hessian operator's where a measure builds one anyway."""
        return self.hessian.grad if self.uses_hessian else self.objective.value_and_grad()[1]

    @cached_property
    def lambda_max(self) -> float:
        return self.extreme("top", tol=self.tolerance)

    def extreme(self, side: str, **tolerance) -> float:
        """The top or bottom Hessian eigenvalue, its vector kept for the next measurement."""
        v0 = self.start("top") if side == "top" else self.warm.get(side)
        values, vectors = extreme_eigenpairs(self.hessian, 1, side, v0=v0, **tolerance)
        self.warm[side] = vectors[:, 0]
        return float(values[0])

    def start(self, name: str) -> np.ndarray:
        """Where a tracked top eigenvector's Lanczos starts: the previous measurement's vector, or at
        the first a fixed random one. Even cold, losslab's Lanczos, which checks its residual after
        every product, stops at the tolerance in a few products where the top is apart from the rest."""
        return self.warm[name] if name in self.warm else random_start(self.hessian.size)
