"""A training-dynamics monitor for any PyTorch training loop, written as an ordinary losslab run.

    mon = losslab.Monitor(model, optimizer, probe=(x, y), loss=F.cross_entropy, store="runs",
                          name="my-run", every=100, measures=["grad_norm", "sharpness", "gradient_noise"])
    for x, y in loader:
        loss = F.cross_entropy(model(x), y); loss.backward(); optimizer.step(); optimizer.zero_grad()
        mon.step(loss)      # the loss stays on the device; the host reads it at the cadence
    mon.close()             # `losslab show`, `report`, `serve`, `export`, `signature` read the run

Every step's training loss is kept (in a buffer on its device, read every `every` steps, so
`mon.step` does not wait for the device; the run on disk is brought up to date at most every
WRITE_EVERY_S seconds and whole at close) with its spectral signature over the first
`signature_steps`; every `every` steps the chosen measures (losslab.monitor.measures: the same
engine losslab's own Trainer uses) are taken on the probe, a fixed batch (or re-iterable of
batches) the loss is evaluated on, with the weights as they are after that step. The update
measure, `update_ratio`, is ||w_t+1 - w_t|| / ||w_t|| for every weight matrix over the step
that ends at the cadence (its weights copied one step before: one copy of the weights per
`every` steps). A measure the optimizer cannot give, a probe the model cannot take or a store
that cannot be written is refused at construction, before the loop starts.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from losslab.analysis.signature import SIGNATURE_KEYS, run_signature
from losslab.errors import LossLabError
from losslab.monitor.measures import MEASURES, Measurements

ALL_MEASURES = ("update_ratio", *MEASURES)
WRITE_EVERY_S = 10.0  # the run on disk trails the loop by at most this (and is whole at close)
CHEAP = ("grad_norm", "weight_norms", "update_ratio")


class Monitor:
    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, probe, loss, *,
                 store: str | Path = "runs", name: str = "monitor", every: int = 100,
                 measures: list[str] | tuple[str, ...] = CHEAP, signature_steps: int = 400, description: str = ""):
        from losslab.analysis.objective import Objective
        from losslab.store import RunStore

        if not isinstance(model, torch.nn.Module):
            raise LossLabError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise LossLabError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        if not isinstance(every, int) or every < 1:
            raise LossLabError(f"every must be an integer >= 1, got {every!r}")
        unknown = sorted(set(measures) - set(ALL_MEASURES))
        if unknown:
            raise LossLabError(f"unknown measures {unknown} (known: {', '.join(ALL_MEASURES)})")
        try:  # the probe must fit the model now, not at step 10,000
            Objective(model, loss, probe)
        except (RuntimeError, ValueError, TypeError, IndexError) as e:
            raise LossLabError(f"the probe does not fit the model: {str(e).splitlines()[0]}") from None
        self.model, self.optimizer, self.every, self.signature_steps = model, optimizer, every, signature_steps
        pair = isinstance(probe, tuple | list) and len(probe) == 2 and isinstance(probe[0], torch.Tensor)
        if "dimension" in measures and not pair:
            raise LossLabError("the dimension measure embeds the probe's inputs: give the probe as (inputs, targets)")
        self.measures = Measurements(model, loss, probe, optimizer, [m for m in measures if m != "update_ratio"],
                                     inputs=probe[0] if pair else None)
        self.update_ratio = "update_ratio" in measures
        n_params = sum(p.numel() for p in model.parameters())
        info = {"name": name, "description": description or (
                    f"{type(model).__name__} ({n_params:,} parameters) trained by {type(optimizer).__name__} in "
                    "your own loop"),
                "model": type(model).__name__, "n_params": n_params, "optimizer": type(optimizer).__name__,
                "hyperparameters": {k: v for k, v in optimizer.param_groups[0].items() if k != "params"
                                    and isinstance(v, int | float | str | bool | tuple | type(None))},
                "measures": list(measures), "every": every}
        self.store = RunStore(store)
        self.run = self.store.create(None, monitor=info)
        self.summary = {**self.run.summary(), "status": "running", "n_params": n_params,
                        "run_dir": str(self.run.path)}
        self.rows: list[tuple[int, str, str, float]] = []
        device = next(model.parameters()).device
        self._losses = torch.empty(every, dtype=torch.float64, device=device)
        self._kept = 0  # losses in the buffer
        self.steps = 0
        self._before: dict[str, torch.Tensor] | None = None
        self._started = self._written = time.perf_counter()
        self._keep_weights_before_a_measured_step()
        self._write()

    def step(self, loss) -> None:
        """After the optimizer's step: `loss` is that step's training loss (a tensor or a number)."""
        self._losses[self._kept] = loss.detach() if isinstance(loss, torch.Tensor) else float(loss)
        self._kept += 1
        self.steps += 1
        if self.steps % self.every == 0:
            self._measure()
        self._keep_weights_before_a_measured_step()

    def _keep_weights_before_a_measured_step(self) -> None:
        if self.update_ratio and (self.steps + 1) % self.every == 0:
            self._before = {n: p.detach().clone() for n, p in self.model.named_parameters() if p.ndim >= 2}

    def close(self, status: str = "completed") -> dict:
        """The last measurement, the signature and the figures; the run is then complete."""
        if self._kept:
            self._measure()
        try:
            sig = run_signature(self.rows, "train_loss", self.signature_steps)
            self.summary["signature"] = sig
            self.rows += [(self.signature_steps, "signature", k, sig[k]) for k in SIGNATURE_KEYS]
        except ValueError:  # fewer than 8 steps recorded
            pass
        from losslab.report.figures import write_run_figures

        self.summary["status"], self.summary["stop_reason"] = status, None
        self.summary["figures"] = [str(p) for p in write_run_figures(self.run, self.rows, self.summary)]
        self._write()
        return self.summary

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, kind, error, trace) -> None:
        self.close("completed" if kind is None else "failed")

    def _measure(self) -> None:
        first = self.steps - self._kept
        losses = self._losses[: self._kept].tolist()  # the one host sync of the cadence
        self.rows += [(first + i, "train", "step_loss", v) for i, v in enumerate(losses)]
        self.rows.append((self.steps, "train", "loss", losses[-1]))
        self._kept = 0
        self.rows.append((self.steps, "probe", "lr", float(self.optimizer.param_groups[0]["lr"])))
        self.rows += self.measures.measure(self.steps)
        if self._before is not None:
            for name, p in self.model.named_parameters():
                if name in self._before:
                    before = self._before[name]
                    ratio = (p.detach() - before).norm() / before.norm().clamp_min(1e-30)
                    self.rows.append((self.steps, "probe", f"update_ratio/{name}", float(ratio)))
            self._before = None
        self.summary["final"] = {"train_loss": losses[-1]}
        if time.perf_counter() - self._written >= WRITE_EVERY_S:
            self._write()

    def _write(self) -> None:
        self._written = time.perf_counter()
        self.summary.update(steps=self.steps, wall_s=round(self._written - self._started, 3))
        self.run.write_metrics(self.rows)
        self.run.write_summary(self.summary)
        self.store.record(self.summary)
