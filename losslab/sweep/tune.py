"""Search with Optuna (an optional extra): TPE over a sweep file's axes, with Optuna's pruners or
a "will not grok" pruner built on the forecaster (losslab.forecast), and Optuna's storage.

The search space is the sweep file's axes: a grid axis is a categorical choice, a random axis
a float (log-uniform with log = true), an integer or a categorical. Every trial is an ordinary
run of the store (its id is the trial's user attribute `run_id`).

Objectives: `t4` (minimize the steps to generalize; a run that does not grok within its
max_steps counts 2 x max_steps) and `val_acc` (maximize the final validation accuracy). The
run reports to the trial every `report_every` steps (validation loss for t4, validation
accuracy for val_acc): a report costs a storage write (about 20 ms on SQLite), so not every
step. Beware Optuna's median pruner on grokking: a run that will grok looks worst on validation
metrics until late; the will-not-grok pruner judges the first T steps' signature instead.
"""

from __future__ import annotations

import signal
from pathlib import Path

from losslab.core.errors import LossLabError
from losslab.store import RunStore
from losslab.sweep.run import sweep_dir
from losslab.sweep.spec import SweepSpec, base_config, load_spec, point_config
from losslab.train import stop

OBJECTIVES = {"t4": "minimize", "val_acc": "maximize"}
PRUNERS = ("will-not-grok", "median", "none")


class _Stopped(Exception):
    """A trial cut short by SIGINT or SIGTERM: Optuna marks it failed and the search ends."""


def _optuna():
    try:
        import optuna  # optional
    except ImportError:
        raise LossLabError("losslab tune needs Optuna: pip install 'losslab[optuna]'") from None
    return optuna


def _suggest(trial, key: str, spec: SweepSpec):
    if key in spec.grid:
        return trial.suggest_categorical(key, spec.grid[key])
    axis = spec.random.axes[key]
    if axis.choices is not None:
        return trial.suggest_categorical(key, axis.choices)
    if axis.integer:
        return trial.suggest_int(key, int(axis.low), int(axis.high), log=axis.log)
    return trial.suggest_float(key, axis.low, axis.high, log=axis.log)


def will_not_grok_pruner(threshold: float):
    """An Optuna pruner: prune a trial once the run has recorded p(grok) < threshold (the early
    predictor's verdict at step T, a user attribute the run sets)."""
    optuna = _optuna()

    class WillNotGrok(optuna.pruners.BasePruner):
        def prune(self, study, trial) -> bool:
            p = trial.user_attrs.get("p_grok")
            return p is not None and p < threshold
    return WillNotGrok()


def storage_for(storage: str | None, store: RunStore, name: str):
    """A journal file (the default: beside the sweep's results) or an RDB URL (postgresql://...,
    sqlite:///...) for studies shared across machines."""
    optuna = _optuna()
    if storage and "://" in storage:
        from sqlalchemy.engine import make_url  # optional

        try:  # a scheme SQLAlchemy has no dialect for is refused here, not deep inside Optuna
            make_url(storage).get_dialect()
        except Exception as e:  # noqa: BLE001 - ArgumentError, NoSuchModuleError, a missing driver's ImportError
            raise LossLabError(f"storage {storage!r}: not a database URL this machine can open "
                               f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
        return storage
    path = Path(storage) if storage else sweep_dir(store, name) / "optuna.journal"
    path.parent.mkdir(parents=True, exist_ok=True)
    from optuna.storages.journal import JournalFileBackend  # optional
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def tune(spec_path: Path, store: RunStore, trials: int, objective: str = "t4", pruner: str = "will-not-grok",
         forecaster=None, storage: str | None = None,
         report_every: int = 100, on_trial=None) -> dict:
    from losslab.train.loop import prepare, run_to_end  # startup

    optuna = _optuna()
    if objective not in OBJECTIVES:
        raise LossLabError(f"--objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if pruner not in PRUNERS:
        raise LossLabError(f"--pruner must be one of {', '.join(PRUNERS)}, got {pruner!r}")
    if pruner == "will-not-grok" and forecaster is None:
        raise LossLabError("the will-not-grok pruner needs a forecaster (losslab.forecast.forecaster)")
    spec = load_spec(spec_path)
    base = base_config(spec)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=spec.name, storage=storage_for(storage, store, spec.name), direction=OBJECTIVES[objective],
        sampler=optuna.samplers.TPESampler(seed=spec.random.seed if spec.random else 0),
        pruner={"will-not-grok": lambda: will_not_grok_pruner(forecaster.threshold), "median": optuna.pruners.MedianPruner,
                "none": optuna.pruners.NopPruner}[pruner](), load_if_exists=True)

    def run_trial(trial) -> float:
        cfg = point_config(spec, base, {key: _suggest(trial, key, spec) for key in spec.axes})
        trainer = prepare(cfg, store)
        trial.set_user_attr("run_id", trainer.run_dir.path.name)
        last_report = [-report_every]

        def should_stop(t) -> str | None:
            if forecaster and "p_grok" not in trial.user_attrs and t.step >= forecaster.t:
                try:
                    trial.set_user_attr("p_grok", forecaster.p_grok(t.rows, t.cfg))
                except ValueError:
                    pass
            if t.step - last_report[0] < report_every:
                return None
            last_report[0] = t.step
            trial.report(t.final["val_loss" if objective == "t4" else "val_acc"], t.step)
            return "pruned" if trial.should_prune() else None
        trainer.should_stop = should_stop
        summary = run_to_end(trainer)
        if summary["status"] == "interrupted":  # cut short by a signal: not a result (Optuna marks it failed)
            raise _Stopped
        if summary["stop_reason"] == "pruned":
            raise optuna.TrialPruned()
        if objective == "val_acc":
            return summary["final"]["val_acc"]
        t4 = summary["events"]["t4"]
        return float(t4) if t4 is not None else 2.0 * cfg.train.max_steps

    callbacks = [lambda study, frozen: on_trial(frozen)] if on_trial else []
    with stop.stop_on_signals():
        try:
            study.optimize(run_trial, n_trials=trials, catch=(LossLabError,), callbacks=callbacks)
        except _Stopped:
            pass
    interrupted = None if stop.requested is None else signal.Signals(stop.requested).name
    done = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED", "FAIL")]
    rows = [{"number": t.number, "state": t.state.name, "value": t.value, "run_id": t.user_attrs.get("run_id"),
             "p_grok": t.user_attrs.get("p_grok"), **{f"axis:{k}": v for k, v in t.params.items()}} for t in done]
    best = study.best_trial if any(t.state.name == "COMPLETE" for t in done) else None
    return {"name": spec.name, "interrupted": interrupted, "objective": objective, "direction": OBJECTIVES[objective], "trials": rows,
            "pruned": sum(r["state"] == "PRUNED" for r in rows), "failed": sum(r["state"] == "FAIL" for r in rows),
            "best": None if best is None else {"value": best.value, "params": best.params,
                                               "run_id": best.user_attrs.get("run_id")}}
