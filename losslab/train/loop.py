"""The run driver: one run from its config to a finished run folder, around its training step
(losslab.train.step, what is computed): the evaluation cadence, events and stop rules, probes,
checkpoints, signals and the store.

The driver makes no host sync between evaluations: losses are read (`.item()`) only at the
evaluation cadence. In full-batch training the train metrics at step t come from the very
forward pass that computes the step's gradient (the parameters are theta_t either way). A run
resumed from any checkpoint continues bit for bit as if it had never stopped. The batched
trainer drives K runs with the same driver (`training`, `poll`, `end`), only their gradients
computed jointly.
"""

from __future__ import annotations

import fcntl
import math
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

import torch

from losslab.config import ProbesConfig, RunConfig
from losslab.core.errors import LossLabError
from losslab.core.files import StoreWriteError
from losslab.monitor.events import EventDetector, outcome
from losslab.monitor.measures import MEASURES, Measurements
from losslab.monitor.record import Recorded, RunRecord, now
from losslab.store import RunDir, RunStore
from losslab.store.records import MetricRow
from losslab.train import stop
from losslab.train.cadence import eval_steps, log_spaced
from losslab.train.footprint import check_run_fits
from losslab.train.step import TrainingStep

# on_eval(step, metrics {train_loss, train_acc, val_loss, val_acc}, events {t1..t4})
EvalCallback = Callable[[int, dict, dict], None]
Ended = tuple[str, str | None]  # a run's final status and its reason


def training_device(name: str) -> torch.device:
    """train.device: auto is CUDA where torch sees a GPU, else the CPU; a CUDA device asked for
    where there is none is refused."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise LossLabError(f"train.device = {name}, but torch sees {torch.cuda.device_count()} CUDA devices")
    return device


def _probe_measures(cfg: ProbesConfig, optimizer: torch.optim.Optimizer) -> set[str]:
    """The measures a run's [probes] section turns on (each measure declares its switch), less those
    this optimizer cannot give (a sweep over optimizers keeps one probes section)."""
    return {name for name, m in MEASURES.items()
            if m.switch and getattr(cfg, m.switch) and m.refusal(optimizer) is None}


class Trainer(Recorded):
    def __init__(self, cfg: RunConfig, run: RunDir, store: RunStore, on_eval: EvalCallback | None = None):
        self.cfg, self.run_dir, self.store, self.on_eval = cfg, run, store, on_eval
        check_run_fits(cfg)
        self.stepper = TrainingStep(cfg, training_device(cfg.train.device))
        s = self.stepper
        self.probes = Measurements(s.model, s.loss_fn, (s.task.x_train, s.task.y_train), s.optimizer,
                                   _probe_measures(cfg.probes, s.optimizer), inputs=s.task.x_train)
        self.events = EventDetector(cfg.events, s.task.chance)
        train = cfg.train
        self.eval_at = eval_steps(train.max_steps, train.eval_every, train.eval_per_decade)
        # at their log-spaced steps whether or not an evaluation falls there (the weights at T
        # must be readable back), without adding evaluations (which would move the events)
        self.checkpoint_at = log_spaced(train.max_steps, train.checkpoint_per_decade)

        self.final: dict[str, float] = {}
        self.overhead_s = 0.0  # of the wall time, the part spent evaluating and checkpointing
        self.ended = False
        self._stop_signal: int | None = None  # request_stop: this run alone (stop.requested: the process)
        # an extra stop rule, asked at each evaluation (after self.final is set to its metrics):
        # a reason to end the run here, or None
        self.should_stop: Callable[[Trainer], str | None] | None = None
        self.record = RunRecord(run, store, {"name": cfg.name, "events": dict(self.events.events), "seed": cfg.seed,
                                             "event_thresholds": self.events.thresholds,
                                             "n_params": sum(p.numel() for p in s.model.parameters())})

    @property
    def step(self) -> int:
        return self.stepper.step

    # ------------------------------------------------------------ state

    def state(self) -> dict:
        return {**self.stepper.state(), "wall_s": self.record.wall(), "overhead_s": self.overhead_s,
                "probes": self.probes.state(self.step)}

    def restore(self, state: dict, rows: list, summary: dict) -> None:
        """Continue from a checkpoint; metric rows from its step on are measured again (and the
        signature, which a run that ended but was killed before saying so may have written)."""
        try:
            self.stepper.load_state(state)
            self.probes.restore(state.get("probes", {}))
        except (RuntimeError, ValueError, KeyError, TypeError) as e:
            raise LossLabError(f"run {self.run_dir.path.name}: checkpoint does not fit its config "
                               f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
        self.record.wall_before, self.overhead_s = state["wall_s"], state["overhead_s"]
        self.record.rows = [r for r in rows if r[0] < self.step and r[1] != "signature"]
        self.events.replay(self.rows)
        if self.events.events["t4"] is not None and self.cfg.train.stop_after_t4 is not None:
            self.eval_at.add(self.events.events["t4"] + self.cfg.train.stop_after_t4)
        self.summary.update(created=summary.get("created", now()), events=dict(self.events.events))

    # ------------------------------------------------------------ writing

    def _checkpoint(self, name: str) -> None:
        """The metric rows first, then the checkpoint that needs them, then the summary: a kill
        between any two writes resumes to the same run (tests/test_faults.py kills at each)."""
        self.rows.extend(self.stepper.recorded_losses())
        self.record.write_metrics()
        self.run_dir.save_checkpoint(self.state(), name)
        self._write_summary()
        self._last_checkpoint = time.perf_counter()

    def _write_summary(self, status: str = "running", stop_reason: str | None = None) -> None:
        self.record.write_summary(status, stop_reason, steps=self.step, events=dict(self.events.events),
                                  final=self.final)

    def _stop_reason(self, step: int, m: dict) -> str | None:
        train = self.cfg.train
        t4 = self.events.events["t4"]
        if not math.isfinite(m["train_loss"]) or m["train_loss"] > train.diverge_loss:
            return "diverged"
        if step >= train.max_steps:
            return "max_steps"
        if train.stop_after_t4 is not None and t4 is not None and step >= t4 + train.stop_after_t4:
            return "after_t4"
        if train.budget_s is not None and self.record.wall() >= train.budget_s:
            return "budget"
        return self.should_stop(self) if self.should_stop else None

    # ------------------------------------------------------------ the run

    def run(self) -> dict:
        """Train to the end (or to a stop signal); returns the run's summary. A run that cannot go
        on (a full disk, an error) is not left `running`: see `fail`."""
        s = self.stepper
        with training([self]):
            while True:
                x, y = s.batch(s.step)
                out = s.forward(x)
                if ended := self.poll(out):
                    self.end(*ended)
                    break
                s.update(x, y, out)
        return self.summary

    def begin(self) -> None:
        self.number = stop.run_begun()
        self.record.start_clock()
        self._last_checkpoint = time.perf_counter()
        if self.stepper.switches_weights:
            self.stepper.optimizer.train()
        self._write_summary()

    def poll(self, out: torch.Tensor | None = None) -> Ended | None:
        """Before the current step's update: a stop signal, the probes and the evaluation where they
        are due; (status, reason) if the run ends here. `out` is this step's forward pass on the
        training batch, if made."""
        stop.reached(self.number, self.step)
        if self.stop_signal is not None:
            return "interrupted", signal.Signals(self.stop_signal).name
        if self.cfg.probes.every and self.step % self.cfg.probes.every == 0:
            started = time.perf_counter()
            self.rows.extend(self.probes.measure(self.step))
            self.overhead_s += time.perf_counter() - started
        if self.step in self.eval_at:
            return self._evaluate(out)
        if self.step in self.checkpoint_at:
            started = time.perf_counter()
            self._checkpoint(f"step_{self.step:08d}")
            self.overhead_s += time.perf_counter() - started
        return None

    def _evaluate(self, out: torch.Tensor | None) -> Ended | None:
        """Evaluate at the current step (its events, stop rules, checkpoints)."""
        train, step, s = self.cfg.train, self.step, self.stepper
        started = time.perf_counter()
        self.rows.extend(s.recorded_losses())
        # the cost of reaching theta_step: training time (AlgoPerf's clock) and gradients
        self.rows.extend([MetricRow(step, "cost", "train_s", self.record.wall() - self.overhead_s),
                          MetricRow(step, "cost", "grad_evals", s.grad_evals)])
        m, rows = s.evaluate(out)
        self.rows.extend(rows)
        fired = self.events.update(step, {"train": m["train_acc"], "val": m["val_acc"]})
        if "t4" in fired and train.stop_after_t4 is not None:
            self.eval_at.add(step + train.stop_after_t4)
        if "t2" in fired and self.cfg.optim.weight_decay_after_t2 is not None:
            s.switch_weight_decay(self.cfg.optim.weight_decay_after_t2)
            self.rows.append(MetricRow(step, "optim", "weight_decay", self.cfg.optim.weight_decay_after_t2))
        self.final = m  # what a stop rule reads
        reason = self._stop_reason(step, m)
        if reason == "diverged":
            return "diverged", "non-finite or exploding train loss"
        if reason or step in self.checkpoint_at or {"t2", "t4"} & set(fired):
            self._checkpoint(f"step_{step:08d}")
        elif time.perf_counter() - self._last_checkpoint >= train.checkpoint_every_s:
            self._checkpoint("last")
        if self.on_eval:
            self.on_eval(step, m, self.events.events)
        self.overhead_s += time.perf_counter() - started
        return ("completed", reason) if reason else None

    def end(self, status: str, reason: str | None) -> None:
        self.ended = True
        if status == "interrupted":
            self._checkpoint("last")
        self.rows.extend(self.stepper.recorded_losses())
        if status != "interrupted":
            self.record.record_signature(self.cfg.train.record_loss_steps)
            if self.cfg.probes.every and self.cfg.probes.geometry:
                matrices = [n for n, p in self.stepper.model.named_parameters() if p.ndim == 2]
                self.record.record_slingshots(matrices[-1] if matrices else None)
            stop = "diverged" if status == "diverged" else reason  # a divergence's reason is its description
            self.summary["outcome"] = outcome(self.events.events, self.rows, stop)
        self.record.write_metrics()
        self._write_summary(status, reason)

    def fail(self, error: Exception) -> None:
        """Mark a run that stopped on `error`: `interrupted` when the disk refused a write (resume
        it once there is room), `failed` otherwise; its checkpoints stay as they were."""
        self.ended = True
        if isinstance(error, StoreWriteError):
            status, reason = "interrupted", f"{error.why} (writing {error.path.name})"
        else:
            status, reason = "failed", str(error).splitlines()[0] if str(error) else type(error).__name__
        try:
            try:
                self._write_summary(status, reason)
            except StoreWriteError as e:
                if not e.full:
                    raise
                # not even a small new file fits: the summary in its own blocks (the index catches up on resume)
                self.run_dir.overwrite_summary(self.summary)
        except Exception:  # noqa: BLE001 - the disk refuses this too: the error itself is what to report
            pass

    def request_stop(self, sig: int = signal.SIGINT) -> None:
        """End this run at its next step as if `sig` had been received (checkpoint, `interrupted`)."""
        self._stop_signal = sig

    @property
    def stop_signal(self) -> int | None:
        """The signal this run stops on at its next step, if any."""
        return self._stop_signal if self._stop_signal is not None else stop.requested

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold an exclusive lock on the run folder while training (freed by the OS on kill -9)."""
        with open(self.run_dir.path / ".lock", "w") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LossLabError(f"run {self.run_dir.path.name} is being trained by another process") from None
            yield


@contextmanager
def training(trainers: list[Trainer]) -> Iterator[None]:
    """Runs being trained, alone or together: each run's folder locked, SIGINT and SIGTERM turned
    into a stop at the next step, each run begun; a run not ended when an error escapes is marked
    by `fail` (not left `running`)."""
    with ExitStack() as held, stop.stop_on_signals():
        for t in trainers:
            held.enter_context(t.lock())
        try:
            for t in trainers:
                t.begin()
            yield
        except Exception as e:
            for t in trainers:
                if not t.ended:
                    t.fail(e)
            raise


def run_to_end(trainer: Trainer, on_eval: EvalCallback | None = None, figures: bool = True) -> dict:
    """Train a prepared run to its end (or its stop), then save its outcome; returns its summary."""
    trainer.on_eval = on_eval or trainer.on_eval
    trainer.run()
    return save_outcome(trainer, figures)


def save_outcome(trainer: Trainer, figures: bool = True) -> dict:
    """After training: the run's figures (unless told not to: drawing them costs as much as a short
    run's training), and its final summary (returned)."""
    record = trainer.record
    if figures:
        record.draw_figures()
    else:
        record.summary["figures"] = []
    record.save_summary()
    return record.summary


def prepare(cfg: RunConfig, store: RunStore, run_id: str | None = None) -> Trainer:
    """A new run of `cfg` in `store`, ready to train (everything that can refuse has been built)."""
    run = store.create(cfg, run_id)
    try:
        return Trainer(cfg, run, store)
    except Exception:  # e.g. a Muon config on a model without hidden matrices: leave no empty run
        shutil.rmtree(run.path)
        raise


def prepare_resume(run: RunDir, store: RunStore) -> Trainer:
    """An interrupted (or killed) run restored from its latest checkpoint, ready to train on."""
    run.check_writable()
    summary = run.summary()
    if summary.get("status") in ("completed", "diverged"):
        raise LossLabError(f"run {run.path.name} has {summary['status']}; nothing to resume")
    trainer = Trainer(run.config(), run, store)
    state = run.latest_checkpoint()
    if state is not None:
        trainer.restore(state, run.metric_rows(), summary)
    return trainer


def train(cfg: RunConfig, store: RunStore, on_eval: EvalCallback | None = None) -> dict:
    """Train a new run of `cfg` in `store`, with its figures; returns its summary."""
    return run_to_end(prepare(cfg, store), on_eval)


def resume(run: RunDir, store: RunStore, on_eval: EvalCallback | None = None) -> dict:
    """Continue an interrupted (or killed) run from its latest checkpoint."""
    return run_to_end(prepare_resume(run, store), on_eval)
