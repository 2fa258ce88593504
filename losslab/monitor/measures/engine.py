"""Measurements of theta_t taken during training, written as metric rows (split "probe"). One engine
for every loop: losslab's Trainer and the Monitor of a user's loop both measure here.

The measures see the network without dropout (a random loss has no Hessian; BatchNorm stays in the
model's mode), leave its buffers as they were (a forward in training mode updates BatchNorm's running
statistics) and draw nothing from the loop's random number generators, so a training measured
follows the same trajectory as one that is not.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from losslab.analysis.objective import NonFiniteLoss, Objective
from losslab.core.errors import LossLabError
from losslab.monitor.measures.base import MEASURES, TRACKING_TOL, Probe, Setup
from losslab.store.records import MetricRow


@contextmanager
def deterministic(model: torch.nn.Module) -> Iterator[None]:
    """The model's dropout layers off and the random number generators (the CPU's, and the
    model's CUDA device's) restored after, whatever the measures drew. (Its buffers need no
    restoring: every forward of the measures runs on copies of them.)"""
    dropouts = [m for m in model.modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.training]
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else [], device_type=device.type):
        for m in dropouts:
            m.eval()
        try:
            yield
        finally:
            for m in dropouts:
                m.train()


class Measurements:
    """The chosen measures of a model on its probe data, in the registry's order, with what they
    carry from one measurement to the next (their states, the Lanczos warm starts)."""

    def __init__(self, model: torch.nn.Module, loss_fn, data, optimizer: torch.optim.Optimizer,
                 measures: set[str] | list[str], inputs: torch.Tensor | None = None, layers: list[str] | None = None,
                 tolerance: float = TRACKING_TOL, forward=None):
        """The probe's objective is `loss_fn` on `data` (or `forward`, for dict batches and other
        losses), in the mode the model trains in: batch statistics while it trains, dropout off."""
        unknown = sorted(set(measures) - set(MEASURES))
        if unknown:
            raise LossLabError(f"unknown measures {unknown} (known: {', '.join(MEASURES)})")
        if layers is not None and "dimension" not in measures:
            raise LossLabError("layers chooses where the dimension measure looks: add 'dimension' to the measures")
        if not 0 < tolerance < 1:
            raise LossLabError(f"tolerance is Lanczos's relative residual, between 0 and 1; got {tolerance!r}")
        setup = Setup(model, optimizer, inputs, layers, tolerance)
        self.measures = [kind(setup) for name, kind in MEASURES.items() if name in measures]
        self.uses_hessian = any(m.uses_hessian for m in self.measures)
        self.model, self.loss_fn, self.data, self.optimizer = model, loss_fn, data, optimizer
        self.forward, self.tolerance = forward, tolerance
        self.objective: Objective | None = None  # the probe's: built at the first measurement, then refreshed
        self.warm: dict[str, np.ndarray] = {}
        self._before_step, self._before = None, self._state()  # the state before the last measurement, and its step

    def check(self, probe: Objective) -> None:
        """Each measure's refusal of this probe, now, before the loop."""
        for m in self.measures:
            m.check(probe)

    def _state(self) -> dict:
        return {"warm": {k: torch.from_numpy(v) for k, v in self.warm.items()},
                "measures": {m.name: state for m in self.measures if (state := m.state())}}

    def state(self, step: int) -> dict:
        """What the measurement at `step` starts from: in the checkpoint of `step`, so that a resumed
        run, which measures `step` again, measures what the uninterrupted one did."""
        return self._before if self._before_step == step else self._state()

    def restore(self, state: dict) -> None:
        self.warm = {k: v.numpy() for k, v in state.get("warm", {}).items()}
        for m in self.measures:
            m.restore(state.get("measures", {}).get(m.name, {}))

    def measure(self, step: int) -> list[MetricRow]:
        if not self.measures:  # no probe to build at every reading of a loop that only keeps its loss
            return []
        with deterministic(self.model):
            self._before_step, self._before = step, self._state()
            try:  # the probe data are read and checked once: a loader's two passes, not two a measurement
                self.objective = obj = Objective(self.model, self.loss_fn, self.data, forward=self.forward,
                                                 mode="train" if self.model.training else "eval") \
                    if self.objective is None else self.objective.refreshed()
            except NonFiniteLoss:  # diverged: nothing to measure (the Trainer stops at its evaluation; a loop goes on)
                return []
            probe = Probe(step, obj, self.optimizer, self.warm, self.tolerance, self.uses_hessian)
            return [MetricRow(step, "probe", name, float(value)) for m in self.measures
                    for name, value in m.measure(probe)]
