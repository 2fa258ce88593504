"""The training loop: one run from its config to a finished run folder.

The loop makes no host sync between evaluations: losses are read (`.item()`) only at the
evaluation cadence. In full-batch training the train metrics at step t come from the very
forward pass that computes the step's gradient (the parameters are theta_t either way).
A run is a pure function of its config: the minibatch order of each epoch is drawn from
(seed, epoch), and the schedule is a function of the step, so a run resumed from any
checkpoint continues bit for bit as if it had never stopped.
"""

from __future__ import annotations

import fcntl
import math
import resource
import shutil
import signal
import time
from collections.abc import Callable
from contextlib import contextmanager
from datetime import datetime
from functools import partial

import torch

from losslab.analysis.sharpness import reads_preconditioner
from losslab.analysis.signature import SIGNATURE_KEYS, run_signature
from losslab.config import ProbesConfig, RunConfig
from losslab.errors import LossLabError
from losslab.losses import build_loss
from losslab.models import build_model
from losslab.monitor.measures import Measurements
from losslab.optim.factory import build_optimizer, build_scheduler
from losslab.optim.svrg import SVRG, gradient_variance
from losslab.report.figures import write_run_figures
from losslab.store import RunDir, RunStore
from losslab.store.files import StoreWriteError
from losslab.tasks import build_task
from losslab.train.cadence import eval_steps, log_spaced
from losslab.train.events import EventDetector, outcome, slingshots
from losslab.train import stop
from losslab.train.footprint import check_run_fits

# on_eval(step, metrics {train_loss, train_acc, val_loss, val_acc}, events {t1..t4})
EvalCallback = Callable[[int, dict, dict], None]


def _now() -> str:
    return datetime.now().isoformat(timespec="seconds")


def _cloned(tree):
    """A state dict with each tensor copied out of the storage it may view, onto the CPU (a
    checkpoint is device-free: a run resumes on another device)."""
    if isinstance(tree, torch.Tensor):
        return tree.clone() if tree.device.type == "cpu" else tree.cpu()
    if isinstance(tree, dict):
        return {k: _cloned(v) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return type(tree)(_cloned(v) for v in tree)
    return tree


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
    """The measures a run's [probes] section asks for; the preconditioned one only where the
    optimizer has a preconditioner to read (a sweep over optimizers keeps one probes section)."""
    chosen = {"grad_norm", "cosines", "weight_norms"} if cfg.geometry else set()
    chosen |= {"sharpness"} if cfg.hessian else set()
    chosen |= {"dimension"} if cfg.dimension else set()
    chosen |= {"preconditioned_sharpness"} if cfg.preconditioned and reads_preconditioner(optimizer) else set()
    return chosen


class Trainer:
    def __init__(self, cfg: RunConfig, run: RunDir, store: RunStore, on_eval: EvalCallback | None = None):
        self.cfg, self.run_dir, self.store, self.on_eval = cfg, run, store, on_eval
        check_run_fits(cfg)
        self.device = training_device(cfg.train.device)
        self.task = build_task(cfg.task, cfg.task_seed)
        self.loss_fn = build_loss(cfg.loss, self.task.n_classes)
        torch.manual_seed(cfg.seed)
        self.model = build_model(cfg.model, self.task, self.loss_fn.n_outputs).to(self.device)
        if cfg.optim.reference:  # float64 reference mode: the model, its inputs and the optimizer state
            self.model.double()
        self.task = self.task.to(torch.float64 if cfg.optim.reference else None, self.device)
        self.optimizer = build_optimizer(cfg.optim, self.model)
        self.probes = Measurements(self.model, self.loss_fn, (self.task.x_train, self.task.y_train), self.optimizer,
                                   _probe_measures(cfg.probes, self.optimizer), inputs=self.task.x_train)
        # schedule-free optimizers evaluate at other weights than they differentiate at
        self.switches_weights = callable(getattr(self.optimizer, "eval", None))
        self.scheduler = build_scheduler(cfg.optim, self.optimizer, cfg.train.max_steps)
        self.events = EventDetector(cfg.events, self.task.chance)

        train = cfg.train
        self.batch_size = min(train.batch_size or len(self.task.x_train), len(self.task.x_train))
        self.full_batch = self.batch_size == len(self.task.x_train)
        self.batches_per_epoch = math.ceil(len(self.task.x_train) / self.batch_size)
        self.eval_at = eval_steps(train.max_steps, train.eval_every, train.eval_per_decade)
        self.checkpoint_at = log_spaced(train.max_steps, train.checkpoint_per_decade) & self.eval_at
        self.eval_at |= self.checkpoint_at

        self.step = 0
        self.rows: list[tuple[int, str, str, float]] = []
        self.final: dict[str, float] = {}
        self.wall_before = 0.0  # wall time of earlier sessions of a resumed run
        self.overhead_s = 0.0  # of the wall time, the part spent evaluating and checkpointing
        self.grad_evals = 0.0  # gradient computations, in full passes over the training set
        self._epoch_order: tuple[int, torch.Tensor] | None = None
        self._step_losses: list[tuple[int, torch.Tensor]] = []  # read at the next evaluation, not each step
        self._stop_signal: int | None = None  # request_stop: this run alone (stop.requested: the process)
        # an extra stop rule, asked at each evaluation (after self.final is set to its metrics):
        # a reason to end the run here, or None
        self.should_stop: Callable[[Trainer], str | None] | None = None
        self.summary = {
            "run_id": run.path.name, "name": cfg.name, "run_dir": str(run.path.resolve()),
            "status": "running", "stop_reason": None, "steps": 0, "events": dict(self.events.events),
            "final": {}, "wall_s": 0.0, "created": _now(), "updated": _now(), "seed": cfg.seed,
            "n_params": sum(p.numel() for p in self.model.parameters()), "peak_rss_mb": None,
        }

    # ------------------------------------------------------------ state

    def state(self) -> dict:
        # cloned: a batched run's parameters and optimizer state are views into its group's
        # stacks, which torch.save would write whole
        return {"step": self.step, "model": _cloned(self.model.state_dict()),
                "optimizer": _cloned(self.optimizer.state_dict()), "scheduler": self.scheduler.state_dict(),
                "wall_s": self._wall(), "overhead_s": self.overhead_s, "grad_evals": self.grad_evals,
                "probes": self.probes.state(self.step)}

    def restore(self, state: dict, rows: list, summary: dict) -> None:
        """Continue from a checkpoint; metric rows from its step on are measured again (and the
        signature, which a run that ended but was killed before saying so may have written)."""
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.probes.restore(state.get("probes", {}))
        except (RuntimeError, ValueError, KeyError, TypeError) as e:
            raise LossLabError(f"run {self.run_dir.path.name}: checkpoint does not fit its config "
                               f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
        self.step, self.wall_before = state["step"], state["wall_s"]
        self.overhead_s, self.grad_evals = state["overhead_s"], state["grad_evals"]
        self.rows = [r for r in rows if r[0] < self.step and r[1] != "signature"]
        self.events.replay(self.rows)
        if self.events.events["t4"] is not None and self.cfg.train.stop_after_t4 is not None:
            self.eval_at.add(self.events.events["t4"] + self.cfg.train.stop_after_t4)
        self.summary.update(created=summary.get("created", _now()), events=dict(self.events.events))

    # ------------------------------------------------------------ pieces of a step

    def _batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.task.x_train, self.task.y_train
        if self.full_batch:
            return x, y
        epoch, i = divmod(step, self.batches_per_epoch)
        if self._epoch_order is None or self._epoch_order[0] != epoch:
            g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch)
            self._epoch_order = (epoch, torch.randperm(len(x), generator=g).to(self.device))
        idx = self._epoch_order[1][i * self.batch_size: (i + 1) * self.batch_size]
        return x[idx], y[idx]

    @torch.no_grad()
    def _measure(self, x, y, out=None) -> tuple[float, float]:
        out = self.model(x) if out is None else out.detach()
        return self.loss_fn(out, y).item(), self.loss_fn.accuracy(out, y).item()

    @torch.no_grad()
    def _group_losses(self, step: int, out: torch.Tensor | None) -> None:
        """Training loss of each class-frequency group (heavy-tailed tasks)."""
        t = self.task
        out = self.model(t.x_train) if out is None else out.detach()
        group_of = t.class_groups[t.y_train]
        for g in range(int(t.class_groups.max()) + 1):
            mask = group_of == g
            if mask.any():
                self.rows.append((step, "train", f"loss_group{g}", self.loss_fn(out[mask], t.y_train[mask]).item()))

    def _evaluate(self, step: int, out: torch.Tensor | None) -> dict[str, float]:
        """Metrics at theta_step; `out`, the step's forward pass, is reused in full-batch training."""
        t = self.task
        if self.switches_weights:
            self.optimizer.eval()
        train_loss, train_acc = self._measure(t.x_train, t.y_train, out if self.full_batch else None)
        val_loss, val_acc = self._measure(t.x_val, t.y_val)
        if t.class_groups is not None:
            self._group_losses(step, out if self.full_batch else None)
        if self.switches_weights:
            self.optimizer.train()
        m = {"train_loss": train_loss, "train_acc": train_acc, "val_loss": val_loss, "val_acc": val_acc}
        self.rows += [(step, "train", "loss", train_loss), (step, "train", "acc", train_acc),
                      (step, "val", "loss", val_loss), (step, "val", "acc", val_acc)]
        if isinstance(self.optimizer, SVRG) and not self.full_batch:
            self._probe_gradient_variance(step)
        return m

    def _switch_weight_decay(self, step: int, value: float) -> None:
        """From this step on, weight decay `value` (the state dict carries it across a resume)."""
        for group in self.optimizer.param_groups:  # wrappers and the Muon hybrid share their parts' groups
            if "weight_decay" in group:
                group["weight_decay"] = value
        self.rows.append((step, "optim", "weight_decay", value))

    def _probe_gradient_variance(self, step: int) -> None:
        """Defazio & Bottou's measure at theta_step: var(SGD gradient), var(SVRG gradient), their ratio."""
        names = {p: n for n, p in self.model.named_parameters()}
        snapshot = {names[p]: w for p, w in self.optimizer.snapshot().items()}
        if len(snapshot) < len(names):
            return  # no snapshot before the first step
        t = self.task
        for name, (sgd, svrg) in gradient_variance(self.model, self.loss_fn, t.x_train, t.y_train,
                                                   self.batch_size, snapshot, seed=step).items():
            self.rows += [(step, "probe", f"grad_var_sgd/{name}", sgd), (step, "probe", f"grad_var_svrg/{name}", svrg),
                          (step, "probe", f"grad_var_ratio/{name}", sgd / svrg if svrg > 0 else math.inf)]

    def _backward(self, loss: torch.Tensor) -> None:
        """The gradient of the training objective: the loss, plus the L1 penalty if any."""
        if self.cfg.optim.l1:
            loss = loss + self.cfg.optim.l1 * sum(p.abs().sum() for p in self.model.parameters() if p.ndim >= 2)
        loss.backward()
        self.clip_gradient()

    def clip_gradient(self) -> None:
        if self.cfg.optim.clip_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.clip_grad_norm)

    def _gradient(self, x: torch.Tensor, y: torch.Tensor, full: bool = False) -> torch.Tensor:
        """The closure of wrapped optimizers: the gradient at the current weights, of this
        minibatch or (full=True) of the whole training set, left in p.grad."""
        if full:
            x, y = self.task.x_train, self.task.y_train
        self.grad_evals += len(x) / len(self.task.x_train)
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.model(x), y)
        self._backward(loss)
        return loss

    def _wall(self) -> float:
        return self.wall_before + time.perf_counter() - self._t0

    def _flush_step_losses(self) -> None:
        if self._step_losses:
            steps, losses = zip(*self._step_losses)
            self.rows += [(s, "train", "step_loss", v) for s, v in zip(steps, torch.stack(losses).tolist())]
            self._step_losses = []

    def _checkpoint(self, name: str) -> None:
        """The metric rows first, then the checkpoint that needs them, then the summary: a kill
        between any two writes resumes to the same run (tests/test_faults.py kills at each)."""
        self._flush_step_losses()
        self.run_dir.write_metrics(self.rows)
        self.run_dir.save_checkpoint(self.state(), name)
        self._write_summary()
        self._last_checkpoint = time.perf_counter()

    def _write_summary(self, status: str = "running", stop_reason: str | None = None) -> None:
        self.summary.update(
            status=status, stop_reason=stop_reason, steps=self.step, events=dict(self.events.events),
            final=self.final, wall_s=round(self._wall(), 3), updated=_now(),
            peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))
        self.run_dir.write_summary(self.summary)
        self.store.record(self.summary)

    def _stop_reason(self, step: int, m: dict) -> str | None:
        train = self.cfg.train
        t4 = self.events.events["t4"]
        if not math.isfinite(m["train_loss"]) or m["train_loss"] > train.diverge_loss:
            return "diverged"
        if step >= train.max_steps:
            return "max_steps"
        if train.stop_after_t4 is not None and t4 is not None and step >= t4 + train.stop_after_t4:
            return "after_t4"
        if train.budget_s is not None and self._wall() >= train.budget_s:
            return "budget"
        return self.should_stop(self) if self.should_stop else None

    # ------------------------------------------------------------ the loop

    def run(self) -> dict:
        """Train to the end (or to a stop signal); returns the run's summary. A run that cannot go
        on (a full disk, an error) is not left `running`: see `fail`."""
        with self._lock(), stop.stop_on_signals():
            try:
                self.begin()
                self.end(*self._loop())
            except Exception as e:
                self.fail(e)
                raise
        return self.summary

    def fail(self, error: Exception) -> None:
        """Mark a run that stopped on `error`: `interrupted` when the disk refused a write (resume
        it once there is room), `failed` otherwise; its checkpoints stay as they were."""
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

    def begin(self) -> None:
        self._t0 = self._last_checkpoint = time.perf_counter()
        if self.switches_weights:
            self.optimizer.train()
        self._write_summary()

    def end(self, status: str, reason: str | None) -> None:
        if status == "interrupted":
            self._checkpoint("last")
        self._flush_step_losses()
        if status != "interrupted":
            self._record_signature()
            if self.cfg.probes.every and self.cfg.probes.geometry:
                matrices = [n for n, p in self.model.named_parameters() if p.ndim == 2]
                self.summary["slingshots"] = slingshots(self.rows, matrices[-1]) if matrices else []
        if status != "interrupted":
            self.summary["outcome"] = outcome(self.events.events, self.rows, reason)
        self.run_dir.write_metrics(self.rows)
        self._write_summary(status, reason)

    def _record_signature(self) -> None:
        """The spectral signature of the recorded training loss, as metric rows and in the summary."""
        steps = self.cfg.train.record_loss_steps
        try:
            sig = run_signature(self.rows, "train_loss", steps)
        except ValueError:  # too short a record, or a diverged run's non-finite losses
            return
        self.summary["signature"] = sig
        self.rows += [(steps, "signature", k, sig[k]) for k in SIGNATURE_KEYS]

    def request_stop(self, sig: int = signal.SIGINT) -> None:
        """End this run at its next step as if `sig` had been received (checkpoint, `interrupted`)."""
        self._stop_signal = sig

    @property
    def stop_signal(self) -> int | None:
        """The signal this run stops on at its next step, if any."""
        return self._stop_signal if self._stop_signal is not None else stop.requested

    def _loop(self) -> tuple[str, str | None]:
        while True:
            if self.stop_signal is not None:
                return "interrupted", signal.Signals(self.stop_signal).name
            step = self.step
            if self.cfg.probes.every and step % self.cfg.probes.every == 0:
                started = time.perf_counter()
                self.rows += self.probes.measure(step)
                self.overhead_s += time.perf_counter() - started
            x, y = self._batch(step)
            # schedule-free optimizers move the weights to evaluate: do it before this step's forward
            out = None if self.switches_weights else self.model(x)
            if step in self.eval_at and (ended := self.evaluate_step(out)):
                return ended
            self._update(x, y, out)

    def evaluate_step(self, out: torch.Tensor | None = None) -> tuple[str, str | None] | None:
        """Evaluate at the current step (its events, stop rules, checkpoints); (status, reason) if the
        run ends here. `out` is this step's forward pass on the training batch, if made."""
        train, step = self.cfg.train, self.step
        started = time.perf_counter()
        self._flush_step_losses()
        # the cost of reaching theta_step: training time (AlgoPerf's clock) and gradients
        self.rows += [(step, "cost", "train_s", self._wall() - self.overhead_s),
                      (step, "cost", "grad_evals", self.grad_evals)]
        m = self._evaluate(step, out)
        fired = self.events.update(step, {"train": m["train_acc"], "val": m["val_acc"]})
        if "t4" in fired and train.stop_after_t4 is not None:
            self.eval_at.add(step + train.stop_after_t4)
        if "t2" in fired and self.cfg.optim.weight_decay_after_t2 is not None:
            self._switch_weight_decay(step, self.cfg.optim.weight_decay_after_t2)
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

    def _update(self, x: torch.Tensor, y: torch.Tensor, out: torch.Tensor | None) -> None:
        """theta_step -> theta_step+1 on the batch (x, y); `out` is the forward pass if made already."""
        loss = self.loss_fn(self.model(x) if out is None else out, y)
        self.optimizer.zero_grad(set_to_none=True)
        self._backward(loss)
        self.apply_gradient(loss, x, y)

    def apply_gradient(self, loss: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> None:
        """The step from the (clipped) gradient of `loss` on the batch (x, y), now in p.grad: the
        optimizer (given a closure where it needs more gradients), the schedule, the counters."""
        self.count(loss, x)
        if getattr(self.optimizer, "needs_closure", False):  # SAM, SVRG: more gradients per step
            self.optimizer.step(partial(self._gradient, x, y))
        else:
            self.optimizer.step()
        self.advance()

    def count(self, loss: torch.Tensor, x: torch.Tensor) -> None:
        """Before a step on the batch x: its loss (early steps) and its gradient evaluations."""
        if self.step < self.cfg.train.record_loss_steps:
            self._step_losses.append((self.step, loss.detach()))
        self.grad_evals += len(x) / len(self.task.x_train)

    def advance(self) -> None:
        """After the optimizer's step: the schedule's."""
        self.scheduler.step()
        self.step += 1

    def take_step(self) -> None:
        """One training step from the current state, exactly as the loop takes it (no evaluation)."""
        if self.switches_weights:
            self.optimizer.train()
        self._update(*self._batch(self.step), None)

    # ------------------------------------------------------------ process plumbing

    @contextmanager
    def _lock(self):
        """Hold an exclusive lock on the run folder while training (freed by the OS on kill -9)."""
        with open(self.run_dir.path / ".lock", "w") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LossLabError(f"run {self.run_dir.path.name} is being trained by another process") from None
            yield


def finish(trainer: Trainer, on_eval: EvalCallback | None = None, figures: bool = True) -> dict:
    """Train a prepared run, then draw its figures into its folder; returns its summary."""
    trainer.on_eval = on_eval or trainer.on_eval
    trainer.run()
    return conclude(trainer, figures)


def conclude(trainer: Trainer, figures: bool = True) -> dict:
    """After training: the run's figures (unless told not to: they cost about 0.7 s a run, as
    much as a short run's training), the final summary (returned)."""
    summary = trainer.summary
    summary["figures"] = ([str(p) for p in write_run_figures(trainer.run_dir, trainer.rows, summary)]
                          if figures else [])
    trainer.run_dir.write_summary(summary)
    trainer.store.record(summary)
    return summary


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
    return finish(prepare(cfg, store), on_eval)


def resume(run: RunDir, store: RunStore, on_eval: EvalCallback | None = None) -> dict:
    """Continue an interrupted (or killed) run from its latest checkpoint."""
    return finish(prepare_resume(run, store), on_eval)
