"""Judging forecasts on groups never seen: leave one task (p, optimizer) out, fit on the rest, predict
the held-out group; ROC AUC with a bootstrap interval over runs, the Brier score, a calibration
curve, and the stopping rule "stop at T when p(grok) < threshold" with the threshold chosen on the
training groups alone, for a stated recall of their grokking runs, then measured on the held-out one.

Which runs a forecast at T decides on: those that have not grokked by T (t4 > T or never; a run that
generalized by T shows it in its validation accuracy) and whose first T steps are whole. The compute
of the stopping rule is counted in training steps: a stopped run saves the steps it ran past T.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import rankdata
from sklearn.base import clone
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss
from sklearn.model_selection import LeaveOneGroupOut, StratifiedKFold

from losslab.core import progress
from losslab.core.errors import LossLabError
from losslab.forecast.features import FEATURES, HYPERPARAMETERS, features_at
from losslab.forecast.predictors import Predictor

HORIZONS = (100, 200, 400, 800)
GROUPINGS = {"task": "family", "p": "p", "optimizer": "optimizer"}


@dataclass
class Dataset:
    """The runs a forecast at step `t` decides on: features x, labels y (grokked), their groups, the
    steps each ran; and the runs left apart (grokked by t, or without whole features)."""

    t: int
    x: np.ndarray
    y: np.ndarray
    rows: list[dict]
    apart: dict[str, list[str]] = field(default_factory=dict)

    def groups(self, by: str) -> np.ndarray:
        return np.array([str(r[GROUPINGS.get(by, by)]) for r in self.rows])

    def subset(self, keep: np.ndarray) -> Dataset:
        return Dataset(self.t, self.x[keep], self.y[keep], [r for r, k in zip(self.rows, keep) if k], self.apart)

    @property
    def steps(self) -> np.ndarray:
        return np.array([r["steps"] for r in self.rows], dtype=np.float64)


def dataset(rows: list[dict], t: int) -> Dataset:
    """The benchmark table's runs as a forecast at step t sees them."""
    x, y, kept, apart = [], [], [], {"grokked_by_T": [], "no_features": []}
    for row in rows:
        if row["t4"] is not None and row["t4"] <= t:
            apart["grokked_by_T"].append(row["run_id"])
            continue
        try:
            f = features_at(row, t, {k: row[k] for k in HYPERPARAMETERS})
        except ValueError:
            apart["no_features"].append(row["run_id"])
            continue
        x.append([f[k] for k in FEATURES])
        y.append(bool(row["grokked"]))
        kept.append(row)
    return Dataset(t, np.array(x, dtype=np.float64).reshape(-1, len(FEATURES)), np.array(y, dtype=bool), kept, apart)


# ---------------------------------------------------------------- scores


def auc(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """ROC AUC of scores p (the last axis: one row per bootstrap draw) against labels y, as the
    Mann-Whitney statistic with ties counted half: the probability that a random grokking run
    scores above a random other one."""
    y = np.asarray(y, dtype=bool)
    p = np.atleast_2d(p)
    ranks = rankdata(p, axis=-1)
    n1 = y.sum(-1)
    n0 = y.shape[-1] - n1
    with np.errstate(invalid="ignore", divide="ignore"):
        return (np.where(y, ranks, 0).sum(-1) - n1 * (n1 + 1) / 2) / (n1 * n0)


def bootstrap_auc(y: np.ndarray, p: np.ndarray, draws: int = 2000, level: float = 0.95,
                  seed: int = 0) -> tuple[float, float]:
    """A percentile bootstrap interval of the ROC AUC over runs, resampled within each class (so
    every draw has both)."""
    y, p = np.asarray(y, dtype=bool), np.asarray(p, dtype=np.float64)
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    picks = np.concatenate([rng.choice(pos, (draws, len(pos))), rng.choice(neg, (draws, len(neg)))], axis=1)
    labels = np.concatenate([np.ones(len(pos), bool), np.zeros(len(neg), bool)])
    values = auc(np.broadcast_to(labels, picks.shape), p[picks])
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def threshold_for_recall(y: np.ndarray, p: np.ndarray, recall: float) -> float:
    """The highest threshold that keeps (p >= threshold) at least `recall` of the grokking runs."""
    kept = np.sort(np.asarray(p)[np.asarray(y, dtype=bool)])
    if len(kept) == 0:
        return 0.0
    return float(kept[int(math.floor(len(kept) * (1 - recall) + 1e-9))])


def stopping(y: np.ndarray, p: np.ndarray, steps: np.ndarray, t: int, threshold: float | np.ndarray) -> dict:
    """What stopping at step t the runs with p < threshold (one, or one per run) saves and loses."""
    stopped = np.asarray(p) < threshold
    saved = float(np.maximum(steps[stopped] - t, 0).sum())
    total = float(steps.sum())
    return {"stopped": int(stopped.sum()), "grokking_runs": int(y.sum()),
            "grokking_runs_lost": int((stopped & y).sum()), "compute_saved": saved / total if total else 0.0,
            "recall": float(1 - (stopped & y).sum() / y.sum()) if y.sum() else math.nan}


def trade_off(y: np.ndarray, p: np.ndarray, steps: np.ndarray, t: int) -> dict[str, list[float]]:
    """The stopping rule at every threshold: compute saved against the fraction of grokking runs lost."""
    thresholds = np.unique(np.concatenate([[0.0], p, [np.nextafter(1.0, 2.0)]]))
    rules = [stopping(y, p, steps, t, float(h)) for h in thresholds]
    return {"threshold": thresholds.tolist(), "compute_saved": [r["compute_saved"] for r in rules],
            "lost": [r["grokking_runs_lost"] / max(r["grokking_runs"], 1) for r in rules]}


# ---------------------------------------------------------------- held out


def _out_of_fold(predictor: Predictor, x: np.ndarray, y: np.ndarray, splits) -> np.ndarray:
    """Each fold's p(grok) from the predictor fitted on the rest (NaN where the rest has one outcome)."""
    p = np.full(len(y), np.nan)
    for train, test in splits:
        if len(set(y[train].tolist())) == 2:
            p[test] = clone(predictor).fit(x[train], y[train]).predict_proba(x[test])[:, 1]
    return p


def out_of_group(predictor: Predictor, data: Dataset, groups: np.ndarray) -> np.ndarray:
    """Each group's p(grok) from the predictor fitted on the other groups (NaN for a group whose
    others have one outcome only)."""
    return _out_of_fold(predictor, data.x, data.y, LeaveOneGroupOut().split(data.x, data.y, groups))


def scored(data: Dataset, p: np.ndarray, threshold: float | np.ndarray) -> dict:
    """Predictions p of the runs of `data` scored: the pooled numbers (AUC with its bootstrap interval,
    Brier, the stopping rule at `threshold`, one or one per run), the trade-off curve, the predictions."""
    y = data.y
    return {"pooled": {"runs": len(y), "grokked": int(y.sum()), "auc": float(auc(y, p)[0]),
                       "auc_interval": bootstrap_auc(y, p), "brier": float(brier_score_loss(y, p)),
                       **stopping(y, p, data.steps, data.t, threshold)},
            "trade_off": trade_off(y, p, data.steps, data.t),
            "predictions": {"run_id": [r["run_id"] for r in data.rows], "grokked": y.tolist(), "p": p.tolist()}}


def held_out(predictor: Predictor, data: Dataset, by: str, recall: float = 0.95,
             p: np.ndarray | None = None) -> dict:
    """Leave one group out: for each group, the predictor fitted on the others predicts it, and the
    threshold for `recall` is chosen on the others' own held-out predictions (an inner leave-one-
    group-out), never on the held-out group. Returns the pooled out-of-group predictions, each
    held-out group's AUC and stopping rule, and the pooled scores. `p`: the out-of-group predictions,
    where already made (out_of_group's)."""
    groups = data.groups(by)
    names = sorted(set(groups))
    if len(names) < 2:
        raise LossLabError(f"leave-one-{by}-out needs runs of at least 2 {by}s; these runs have {len(names)}")
    p = out_of_group(predictor, data, groups) if p is None else p
    thresholds = np.full(len(data.y), np.nan)
    per_group = {}
    for name in names:
        test = np.flatnonzero(groups == name)
        train = np.flatnonzero(groups != name)
        if np.isnan(p[test]).any():
            per_group[name] = {"runs": len(test), "skipped": "its training groups have one outcome"}
            continue
        inner = _inner_predictions(predictor, data.x[train], data.y[train], groups[train])
        kept = ~np.isnan(inner)
        threshold = threshold_for_recall(data.y[train][kept], inner[kept], recall)
        thresholds[test] = threshold
        y = data.y[test]
        per_group[name] = {"runs": len(test), "grokked": int(y.sum()),
                           "auc": float(auc(y, p[test])[0]) if 0 < y.sum() < len(y) else None,
                           "threshold": threshold, **stopping(y, p[test], data.steps[test], data.t, threshold)}
    kept = ~np.isnan(p)
    frac, mean = calibration_curve(data.y[kept], p[kept], n_bins=10, strategy="quantile")
    return {"by": by, "t": data.t, "target_recall": recall, "groups": per_group,
            "calibration": {"predicted": mean.tolist(), "observed": frac.tolist()},
            **scored(data.subset(kept), p[kept], thresholds[kept])}


def _inner_predictions(predictor: Predictor, x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Out-of-group predictions within the training groups (NaN where a fold has one outcome); with
    one training group, out of fold (stratified 5-fold) within it."""
    if len(set(groups.tolist())) >= 2:
        splits = LeaveOneGroupOut().split(x, y, groups)
    else:
        folds = max(2, min(5, int(y.sum()), int((~y).sum())))
        splits = StratifiedKFold(folds, shuffle=True, random_state=0).split(x, y)
    return _out_of_fold(predictor, x, y, splits)


def evaluate_benchmark(rows: list[dict], predictors: dict[str, Predictor], horizons=HORIZONS,
                       groupings=tuple(GROUPINGS), recall: float = 0.95) -> dict:
    """Every predictor held out by every grouping at every horizon: {t: {"held_out": {by: {name:
    held_out's result}}, the runs decided and left apart}}. Leave-one-p-out reads the runs that have a
    modulus; a grouping with fewer than two groups at t is left out (`skipped`, with why).
    Progress: one count per predictor and grouping and horizon (losslab.core.progress)."""
    progress.expect(len(horizons) * len(groupings) * len(predictors))
    results = {}
    for t in horizons:
        data = dataset(rows, t)
        results[t] = {"runs": len(data.y), "grokked": int(data.y.sum()),
                      "grokked_by_T": len(data.apart["grokked_by_T"]), "no_features": len(data.apart["no_features"]),
                      "held_out": {}, "skipped": {}}
        for by in groupings:
            subset = data.subset(np.array([r[GROUPINGS[by]] is not None for r in data.rows], dtype=bool))
            if len(set(subset.groups(by).tolist())) < 2 or len(set(subset.y.tolist())) < 2:
                results[t]["skipped"][by] = (f"{len(set(subset.groups(by).tolist()))} {by}s, "
                                             f"{int(subset.y.sum())} of {len(subset.y)} runs grokking after T")
                progress.advance(len(predictors))
                continue
            results[t]["held_out"][by] = {}
            for name, predictor in predictors.items():
                results[t]["held_out"][by][name] = held_out(predictor, subset, by, recall)
                progress.advance()
    return results
