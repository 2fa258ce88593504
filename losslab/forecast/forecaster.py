"""The forecaster `losslab predict`, `sweep --stop-unpromising` and `tune --pruner will-not-grok`
use: the benchmark's best predictor at T (the highest pooled leave-one-task-out AUC), its threshold
chosen on the benchmark's held-out-task predictions for a stated recall of the grokking runs, then
refitted on the whole benchmark (and a user's finished sweep, where given). It carries what it was
measured to do on tasks it had not seen, and which task families it has seen."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.base import clone

from losslab.core.errors import LossLabError
from losslab.forecast.evaluation import Dataset, auc, dataset, held_out, out_of_group, scored, threshold_for_recall
from losslab.forecast.features import (
    FEATURES,
    config_hyperparameters,
    early_series,
    features_at,
    hyperparameter_features,
    task_family,
)
from losslab.forecast.predictors import PREDICTORS, Predictor


def family_key(family: str, model: str) -> str:
    """What a forecast is trusted on: a task family trained with a kind of model."""
    return f"{family} ({model})"


def config_key(config) -> str:
    """The family_key of a run's config (a RunConfig)."""
    return family_key(task_family(config), config.model.name)


@dataclass
class Forecaster:
    name: str  # the predictor's name in PREDICTORS
    t: int  # the steps it reads
    model: Predictor  # fitted
    threshold: float  # stop a run when p(grok) < threshold
    recall: float  # the share of held-out tasks' grokking runs the threshold was chosen to keep
    held_out: dict  # measured on the benchmark, each task predicted by a fit on the others
    seen: set[str]  # family_key of the runs it was fitted on
    fitted_on: int  # runs

    def p_grok(self, rows, config=None) -> float:
        """p(grok) of a run from its metric rows (and its RunConfig, for the hyperparameters; a
        monitored loop has none). ValueError if its first T steps are not whole."""
        hyper = (config_hyperparameters(config) if config is not None
                 else hyperparameter_features(None, None, None, None))
        f = features_at(early_series(rows, self.t), self.t, hyper)
        return float(self.model.predict_proba(np.array([[f[k] for k in FEATURES]]))[0, 1])

    def record(self) -> dict:
        """What it is and what it was measured to do, as plain data (for --json and the logs)."""
        return {"predictor": self.name, "steps": self.t, "threshold": self.threshold, "recall": self.recall,
                "held_out": self.held_out, "seen": sorted(self.seen), "fitted_on": self.fitted_on}

    def unseen(self, keys: set[str]) -> list[str]:
        return sorted(keys - self.seen)

    def describe(self) -> str:
        h = self.held_out
        low, high = h["auc_interval"]
        return (f"predictor {self.name} at T = {self.t}, fitted on {self.fitted_on} runs. On the benchmark's tasks, "
                f"each held out in turn: ROC AUC {h['auc']:.2f} [{low:.2f}, {high:.2f}] (95% bootstrap); a threshold "
                f"chosen on the other tasks to keep {self.recall:.0%} of their grokking runs kept {h['recall']:.0%} of "
                f"the held-out task's and saved {h['compute_saved']:.0%} of its compute. It stops a run when p(grok) < "
                f"{self.threshold:.3g} (chosen so on all the tasks)")


def seen_keys(rows: list[dict]) -> set[str]:
    """The family_key of every row of a benchmark table (or of a user's runs)."""
    return {family_key(r["family"], r["model"]) for r in rows}


def forecaster(benchmark: list[dict], t: int = 400, recall: float = 0.95, name: str | None = None,
               extra: list[dict] = ()) -> Forecaster:
    """The benchmark's best predictor at T (or the one named), measured leave-one-task-out, its
    threshold chosen on those held-out predictions for `recall`, fitted on the benchmark plus
    `extra` (rows of a user's finished runs, as losslab.forecast.table.run_row gives them)."""
    if name is not None and name not in PREDICTORS:
        raise LossLabError(f"unknown predictor {name!r} (known: {', '.join(PREDICTORS)})")
    data = dataset(benchmark, t)
    if len(set(data.y.tolist())) < 2:
        kept = max((len(r["step_loss"]) for r in benchmark), default=0)
        raise LossLabError(f"at T = {t} the benchmark has {int(data.y.sum())} runs that grok later and "
                           f"{int((~data.y).sum())} that do not (its runs kept their first {kept} steps): "
                           "nothing to fit")
    groups = data.groups("task")
    candidates = {name: PREDICTORS[name]()} if name else {n: c() for n, c in PREDICTORS.items()}
    held = {n: out_of_group(p, data, groups) for n, p in candidates.items()}
    chosen = max(held, key=lambda n: auc(data.y[~np.isnan(held[n])], held[n][~np.isnan(held[n])])[0])
    # measured as `losslab forecast report` measures it: each task's threshold chosen on the others alone
    result = held_out(candidates[chosen], data, "task", recall, held[chosen])
    # the threshold it stops runs at: chosen the same way, on every task's held-out predictions
    threshold = threshold_for_recall(result["predictions"]["grokked"], result["predictions"]["p"], recall)
    fitted = _with(data, dataset(list(extra), t)) if extra else data
    model = clone(candidates[chosen]).fit(fitted.x, fitted.y)
    return Forecaster(chosen, t, model, threshold, recall, result["pooled"], seen_keys(fitted.rows), len(fitted.y))


def _with(a: Dataset, b: Dataset) -> Dataset:
    return Dataset(a.t, np.vstack([a.x, b.x]), np.concatenate([a.y, b.y]), a.rows + b.rows)


def evaluate_on(fc: Forecaster, rows: list[dict]) -> dict:
    """The forecaster on runs it was not fitted on (a user's finished sweep): its AUC with its
    interval, and its stopping rule at its threshold; in held_out's form, for the figures."""
    data = dataset(rows, fc.t)
    if len(set(data.y.tolist())) < 2:
        raise LossLabError(f"scoring a forecast needs runs that grokked after step {fc.t} and runs that did not; "
                           f"these have {int(data.y.sum())} and {int((~data.y).sum())} "
                           f"({len(data.apart['grokked_by_T'])} grokked by step {fc.t}, "
                           f"{len(data.apart['no_features'])} without whole first {fc.t} steps)")
    return {"t": fc.t, "apart": data.apart, **scored(data, fc.model.predict_proba(data.x)[:, 1], fc.threshold)}
