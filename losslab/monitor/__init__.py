"""A training-dynamics monitor for any PyTorch training loop, written as an ordinary losslab run.

    mon = losslab.Monitor(model, optimizer, probe=(x, y), loss=F.cross_entropy, store="runs",
                          name="my-run", every=100, measures=["step_grad_norm", "sharpness", "gradient_noise"])
    for x, y in loader:
        loss = F.cross_entropy(model(x), y); loss.backward(); optimizer.step(); optimizer.zero_grad()
        mon.step(loss)      # nothing is read from the device here; the host reads at the cadence
    mon.close()             # `losslab show`, `report`, `serve`, `export`, `signature` read the run

Two kinds of measures:

- Every step, from the loop's own step, kept on the device (a buffer of `every` rows the host reads
  at the cadence: no host sync in between): the training loss (always), and
  - step_grad_norm: the norm of the gradient the optimizer stepped with (the batch's, after any
    clipping),
  - weight_norms: the Frobenius norm of every weight matrix (and convolution kernel) after the step,
  - update_ratio: ||w_t+1 - w_t|| / ||w_t|| of every weight matrix over the step.
  They are read from the optimizer's step hooks (torch.optim's register_step_pre_hook and
  register_step_post_hook: a foreach copy of what a step keeps into a ring, whose norms are taken
  a window at a time; see losslab.monitor.series); a `mon.step` without an optimizer step between
  (a skipped step) records NaN.
- Every `every` steps, on the probe (a fixed batch, or re-iterable of batches, the loss is
  evaluated on), with the weights as they are after that step: the measures of
  losslab.monitor.measures (the engine losslab's own Trainer measures with), each with its cost:
  grad_norm (of the probe loss's gradient: the full-data gradient where the probe is the data),
  spectral_norms, cosines, sharpness, preconditioned_sharpness, gradient_noise, trace, ggn_trace,
  dimension (of every Linear layer's input, or of the modules named in `layers`); the top eigenvalues to a
  Lanczos residual of `tolerance` (1e-2: right to ~1e-4; 1e-3: ~1e-6, for a third more products).
  They see the network without dropout, leave its buffers (BatchNorm's running statistics) as
  they were and draw nothing from the loop's random number generators. Where the probe loss is
  not finite (a diverged training) they measure nothing, and the loop goes on. The learning rate
  is read from the optimizer's param groups at each (schedules apply).

A probe of dict batches (a Hugging Face model's), or a loss that is not loss(outputs, targets): give
`forward=f` as to an Objective, f(model, params, batch) -> (mean loss, examples) instead of `loss`,
or -> (outputs, targets) beside `loss`; the probe may then be one dict batch.

`log_to=SummaryWriter(...)` (torch.utils.tensorboard's, or anything with add_scalar(tag, value,
step)): every row is also written there at the cadence, tagged `instrument/name/split`
(losslab.monitor.instruments: the instruments are TensorBoard's groups), for a dashboard that is
already TensorBoard (W&B syncs it); the run in the store is written as without it.

With `validation` data (a batch or a re-iterable of batches): at the cadence, the loss and accuracy
on the probe (split "train") and on the validation data ("val"), the model in eval mode, and the
grokking events t1..t4 (losslab.monitor.events, thresholds from `events`), as a run of losslab's
own records them: `losslab predict SWEEP --run RUN` reads them.

At close: the spectral signature of the first `signature_steps` losses, and with weight_norms
the slingshots (Thilak et al. 2022: a loss spike between two readings with a jump of the last
weight matrix's norm). The run on disk is brought up to date at the cadence, at most every
`write_every_s` seconds (10; `losslab serve` shows it live), and whole at close. A measure the
optimizer cannot give, a probe the model cannot take, a probe loss with randomness the measures
cannot turn off, gradient noise of a model without per-example gradients (BatchNorm in training
mode), or a store that cannot be written is refused at construction, before the loop starts.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from losslab.analysis.objective import DataMismatch, NonFiniteLoss, Objective
from losslab.config import EventsConfig
from losslab.core.errors import LossLabError
from losslab.monitor.events import EventDetector, outcome
from losslab.monitor.instruments import scalar_tag
from losslab.monitor.measures import MEASURES, TRACKING_TOL, Measure, Measurements, Probe, deterministic, register
from losslab.monitor.record import Recorded, RunRecord
from losslab.monitor.series import StepSeries
from losslab.store import RunStore
from losslab.store.records import MetricRow

__all__ = ["MEASURES", "Measure", "Monitor", "Probe", "register"]

STEP_MEASURES = tuple(name for name, m in MEASURES.items() if m.when == "step")


class Monitor(Recorded):
    """Measures any PyTorch training loop and writes it as an ordinary losslab run.

    Every step, from the loop's own optimizer step and kept on the device until the cadence (no host
    sync in between): the loss and the cheap measures (`step_grad_norm`, `weight_norms`,
    `update_ratio`). Every `every` steps, on the probe, with the weights after that step: the probe
    measures (`sharpness`, `lambda_min`, `preconditioned_sharpness`, `trace`, `ggn_trace`, `gradient_noise`,
    `cosines`, `spectral_norms`, `dimension`, ...; `losslab.monitor.MEASURES` lists them with their
    cost). The probe measures see the network without dropout, leave its buffers as they were and
    draw nothing from the loop's random generators: a measured training goes through the same
    weights as an unmeasured one. `losslab report RUN` and `losslab serve` (live) show the run.

    Args:
        model: the network being trained.
        optimizer: its torch optimizer (the learning rate is read from its param groups).
        probe: a batch `(inputs, targets)`, or a re-iterable of batches, the probe measures use.
        loss: `loss(outputs, targets)`, a mean over the batch.
        store: the run store's folder.
        name: the run's name.
        every: the cadence of the probe measures and of the host's reads, in steps.
        measures: the measures' names.
        signature_steps: the first steps whose loss gives the spectral signature.
        validation: data the loss and accuracy are also measured on (and grokking's events).
        events: the events' thresholds.
        layers: the modules whose inputs `dimension` measures (default: every Linear).
        tolerance: Lanczos's residual for the tracked eigenvalues (1e-2: right to about 1e-4).
        description: a line stored with the run.
        forward: as an `Objective`'s, for dict batches or a loss that is not loss(outputs, targets).
        log_to: a TensorBoard `SummaryWriter` (or anything with `add_scalar`) written at the cadence.
        write_every_s: how often the run on disk catches up (its live page follows).

    Raises:
        LossLabError: at construction, before the loop runs and with nothing written: an unknown
            measure, a probe the model cannot take, a store that is a file, a measure the
            optimizer or model cannot give.

    Examples:
        >>> import tempfile
        >>> net = torch.nn.Linear(4, 3).double()
        >>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
        >>> with ll.Monitor(net, opt, probe=(x, y), loss=F.cross_entropy, store=tempfile.mkdtemp(),
        ...                 every=5, measures=["step_grad_norm", "sharpness"]) as mon:
        ...     for _ in range(10):
        ...         opt.zero_grad(); loss = F.cross_entropy(net(x), y); loss.backward(); opt.step()
        ...         mon.step(loss)
        >>> mon.summary["steps"]
        10
    """
    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, probe, loss=None, *,
                 store: str | Path = "runs", name: str = "monitor", every: int = 100,
                 measures: list[str] | tuple[str, ...] = STEP_MEASURES, signature_steps: int = 400,
                 validation=None, events: EventsConfig | None = None, layers: list[str] | None = None,
                 tolerance: float = TRACKING_TOL, description: str = "", forward=None, log_to=None,
                 write_every_s: float = 10.0):

        if not isinstance(model, torch.nn.Module):
            raise LossLabError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise LossLabError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        for arg, value, low in (("every", every, 1), ("signature_steps", signature_steps, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise LossLabError(f"{arg} must be an integer >= {low}, got {value!r}")
        if isinstance(write_every_s, bool) or not isinstance(write_every_s, int | float) or not write_every_s >= 0:
            raise LossLabError(f"write_every_s must be a number of seconds >= 0, got {write_every_s!r}")
        if not isinstance(measures, list | tuple) or not all(isinstance(m, str) for m in measures):
            raise LossLabError(f"measures must be a list of measure names (known: {', '.join(MEASURES)}), "
                               f"got {measures!r}")
        if probe is None:
            raise LossLabError("probe must be data the loss is evaluated on: a pair (inputs, targets) or a "
                               "re-iterable of batches")
        if log_to is not None and not callable(getattr(log_to, "add_scalar", None)):
            raise LossLabError(f"log_to must be a TensorBoard SummaryWriter (anything with add_scalar(tag, value, "
                               f"step)), got {type(log_to).__name__}")
        RunStore(store).check_writable()
        unknown = sorted(set(measures) - set(MEASURES))
        if unknown:
            raise LossLabError(f"unknown measures {unknown} (known: {', '.join(MEASURES)})")
        pair = isinstance(probe, tuple | list) and len(probe) == 2 and isinstance(probe[0], torch.Tensor)
        probe_measures = Measurements(model, loss, probe, optimizer,
                                      [m for m in measures if MEASURES[m].when == "probe"],
                                      inputs=probe[0] if pair else None, layers=layers, tolerance=tolerance,
                                      forward=forward)
        checked = {}
        with deterministic(model):  # these forwards take nothing from the loop's random numbers
            for what, data in (("probe", probe), ("validation set", validation)):
                try:  # the data must fit the model now, not at step 10,000
                    # the probe in the mode its measures take it (the model's own), the validation set in eval mode
                    mode = "train" if what == "probe" and model.training else "eval"
                    checked[what] = Objective(model, loss, data, forward=forward, mode=mode) if data is not None \
                        else None
                except DataMismatch as e:
                    raise DataMismatch(str(e).replace("the data", f"the {what}", 1)) from None
            self.events = _event_detector(checked["validation set"], events or EventsConfig())
            again = checked["probe"].loss() if probe_measures.measures else checked["probe"].value
            probe_measures.check(checked["probe"])
        if not math.isclose(again, checked["probe"].value, rel_tol=1e-5):
            raise LossLabError(f"the probe loss is {checked['probe'].value:.6g}, then {again:.6g} at the same weights: "
                               "the probe measures need a loss without randomness (nn.Dropout is turned off for "
                               "them; other random draws in the forward are not)")
        self.model, self.optimizer, self.every, self.signature_steps = model, optimizer, every, signature_steps
        self.write_every_s = write_every_s
        self.loss, self.forward, self.probe, self.validation = loss, forward, probe, validation
        self.measures = probe_measures
        n_params = sum(p.numel() for p in model.parameters())
        info = {"name": name, "description": description or (
                    f"{type(model).__name__} ({n_params:,} parameters) trained by {type(optimizer).__name__} in "
                    "your own loop"),
                "model": type(model).__name__, "n_params": n_params, "optimizer": type(optimizer).__name__,
                "hyperparameters": {k: v for k, v in optimizer.param_groups[0].items() if k != "params"
                                    and isinstance(v, int | float | str | bool | tuple | type(None))},
                "measures": list(measures), "every": every, "tolerance": tolerance,
                "validation": validation is not None}
        self.store = RunStore(store)
        run = self.store.create(None, monitor=info)
        self.record = RunRecord(run, self.store, {**run.summary(), "n_params": n_params,
                                                  **({"events": dict(self.events.events),
                                                      "event_thresholds": self.events.thresholds}
                                                     if self.events else {})})
        self.steps = 0
        self.log_to, self._logged = log_to, 0  # rows already sent to log_to
        self._evaluations: dict[str, Objective] = {}  # the probe's and the validation set's, in eval mode
        self._series = StepSeries(model, optimizer, [m for m in measures if m in STEP_MEASURES], every)
        self._write()

    def step(self, loss) -> None:
        """After the optimizer's step: `loss` is that step's training loss (a tensor or a number)."""
        self._series.keep_loss(loss)
        self.steps += 1
        if self.steps % self.every == 0:
            self._measure()

    def close(self, status: str = "completed") -> dict:
        """The last measurement, the signature and the figures; the run is then complete."""
        if self._series.kept:
            self._measure()
        self._series.remove_hooks()
        self.record.record_signature(self.signature_steps)
        if self._series.weight_norms:
            self.record.record_slingshots(self._series.last_matrix)
        if self.events:
            self.summary["outcome"] = outcome(self.events.events, self.rows, None)
        self.summary.update(status=status, stop_reason=None)  # before the figures: their titles show it
        self._log()
        self.record.draw_figures()
        self._write(status)
        return self.summary

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, kind, error, trace) -> None:
        self.close("completed" if kind is None else "failed")

    def _measure(self) -> None:
        rows, last_loss = self._series.read(first_step=self.steps - self._series.kept)  # the cadence's host sync
        self.rows.extend(rows)
        if self.validation is None:
            self.rows.append(MetricRow(self.steps, "train", "loss", last_loss))
            self.summary["final"] = {"train_loss": last_loss}
        else:
            self._evaluate()
        self.rows.append(MetricRow(self.steps, "probe", "lr", float(self.optimizer.param_groups[0]["lr"])))
        self.rows.extend(self.measures.measure(self.steps))
        self._log()
        if time.perf_counter() - self._written >= self.write_every_s:
            self._write()

    def _evaluate(self) -> None:
        """Loss and accuracy on the probe (train) and the validation data (val) in eval mode (each
        objective's copy of the model: yours is not switched); the grokking events where there are
        accuracies. Each objective is built once (its data read and checked once), then refreshed."""
        final = {}
        for split, data in (("train", self.probe), ("val", self.validation)):
            try:
                known = self._evaluations.get(split)
                obj = self._evaluations[split] = known.refreshed() if known else Objective(
                    self.model, self.loss, data, forward=self.forward)
            except NonFiniteLoss:  # diverged: recorded as such, the loop left to go on
                final[f"{split}_loss"], final[f"{split}_acc"] = math.nan, math.nan if self.events else None
                continue
            final[f"{split}_loss"], final[f"{split}_acc"] = obj.value, obj.accuracy()
        final = {k: v for k, v in final.items() if v is not None}
        self.rows.extend(MetricRow(self.steps, *key.split("_"), v) for key, v in final.items())
        self.summary["final"] = final
        if self.events:
            self.events.update(self.steps, {"train": final["train_acc"], "val": final["val_acc"]})
            self.summary["events"] = dict(self.events.events)

    def _log(self) -> None:
        """The rows recorded since the last reading, to `log_to` as scalars tagged by instrument."""
        if self.log_to is None:
            return
        for step, split, name, value in self.rows[self._logged:]:
            self.log_to.add_scalar(scalar_tag(split, name), value, step)
        self._logged = len(self.rows)
        if callable(getattr(self.log_to, "flush", None)):
            self.log_to.flush()

    def _write(self, status: str = "running") -> None:
        self._written = time.perf_counter()
        self.record.write_metrics()
        self.record.write_summary(status, self.summary.get("stop_reason"), steps=self.steps)


def _event_detector(obj: Objective | None, cfg: EventsConfig) -> EventDetector | None:
    """The grokking events' detector where the validation data (`obj`) are classes (chance = 1 / outputs)."""
    if obj is None or obj.accuracy() is None:
        return None
    with torch.no_grad():
        outputs, _ = obj.output_target(obj.params, next(iter(obj.batches())))
    return EventDetector(cfg, 1 / outputs.shape[-1])
