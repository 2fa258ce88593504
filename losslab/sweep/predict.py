"""Predicting grokking from the first T steps of a run, and stopping the runs that will not grok.

Features of a run at step T: its spectral signature (log energy, log activity, mobility,
complexity of the detrended training loss) and its metrics at the last evaluation before T
(train/val loss and accuracy). The predictor is a standardized logistic regression
(scikit-learn), evaluated by stratified cross-validation on a sweep's finished runs: every
score below is out of fold, as it would be for runs the predictor has not seen.

The policy "stop a run at T when p(grok) < threshold" saves the steps those runs would have
run on; it loses the runs among them that would have grokked. Both are counted out of fold.

No leakage: a run that grokked by T (t4 <= T) already shows its outcome in its validation accuracy
at T; it is neither fitted nor scored (it is reported apart), and neither is a run whose window of
early losses is not whole (it stopped inside it: its energy is a sum over fewer steps). The paper's
claim (the signature) and this predictor (signature and metrics) are scored apart, beside the
metrics alone and the sweep's hyperparameters alone.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from losslab.analysis.signature import full_window, run_signature
from losslab.core.errors import LossLabError
from losslab.store import RunStore

SIGNATURE = ("log_energy", "log_activity", "mobility", "complexity")
METRICS = ("log_train_loss", "train_acc", "log_val_loss", "val_acc")
FEATURES = SIGNATURE + METRICS


def early_features(rows, steps: int = 400) -> dict[str, float]:
    """The features of a run from its metric rows up to step `steps` (ValueError if it has too few)."""
    sig = run_signature(rows, "train_loss", steps)
    if not full_window(sig):
        raise ValueError(f"its early losses cover {sig['points']} of the first {steps} steps (it stopped inside "
                         "the window, or train.record_loss_steps is shorter)")
    evaluated = {}
    for step, split, name, value in rows:
        if step <= steps and split in ("train", "val") and name in ("loss", "acc"):
            if step >= evaluated.get((split, name), (-1, 0))[0]:
                evaluated[(split, name)] = (step, value)
    if len(evaluated) < 4:
        raise ValueError(f"no evaluation before step {steps}")
    floor = 1e-12  # log of an exact zero loss
    features = {"log_energy": math.log10(max(sig["energy"], floor)),
                "log_activity": math.log10(max(sig["activity"], floor)),
                "mobility": sig["mobility"], "complexity": sig["complexity"],
                "log_train_loss": math.log10(max(evaluated[("train", "loss")][1], floor)),
                "train_acc": evaluated[("train", "acc")][1],
                "log_val_loss": math.log10(max(evaluated[("val", "loss")][1], floor)),
                "val_acc": evaluated[("val", "acc")][1]}
    if not all(math.isfinite(v) for v in features.values()):
        raise ValueError("non-finite early metrics (a diverged run?)")
    return features


def sweep_dataset(store: RunStore, rows: list[dict], steps: int) -> tuple[np.ndarray, np.ndarray, list[dict], dict]:
    """Features X, labels y (grokked), the table rows of the sweep's finished runs that have
    features at `steps`, and the runs left apart: those that grokked by then (`grokked_by_T`:
    their outcome is known at T) and those without whole early features (`no_features`: too
    short, diverged, or stopped inside the window). Failed and stopped runs are not counted."""
    x, y, kept, apart = [], [], [], {"grokked_by_T": [], "no_features": []}
    for row in rows:
        if row["status"] != "completed" or row.get("stop_reason") == "unpromising":
            continue
        if row.get("t4") is not None and row["t4"] <= steps:
            apart["grokked_by_T"].append(row["run_id"])
            continue
        try:
            features = early_features(store.find(row["run_id"]).metric_rows(), steps)
        except (ValueError, LossLabError):
            apart["no_features"].append(row["run_id"])
            continue
        x.append([features[k] for k in FEATURES])
        y.append(bool(row["grokked"]))
        kept.append(row)
    return np.array(x), np.array(y), kept, apart


def hyperparameters(kept: list[dict]) -> np.ndarray | None:
    """The sweep's numeric axes that vary (log10 where all positive), one column each; None if none."""
    axes = [k for k in (kept[0] if kept else {}) if k.startswith("axis:")
            and all(isinstance(r[k], int | float) and not isinstance(r[k], bool) for r in kept)
            and len({r[k] for r in kept}) > 1]
    if not axes:
        return None
    columns = np.array([[float(r[k]) for k in axes] for r in kept])
    positive = (columns > 0).all(0)
    columns[:, positive] = np.log10(columns[:, positive])
    return columns


def _model():
    return make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=1000))


def evaluate(store: RunStore, rows: list[dict], steps: int = 400, threshold: float = 0.5, seed: int = 0) -> dict:
    """Out-of-fold ROC AUC and accuracy of the predictor on a sweep, and what stopping at `steps`
    the runs predicted not to grok would have saved and lost."""
    x, y, kept, apart = sweep_dataset(store, rows, steps)
    positives, negatives = int(y.sum()), int(len(y) - y.sum())
    if min(positives, negatives) < 2:
        raise LossLabError(f"the predictor needs at least 2 runs that grokked and 2 that did not among the "
                           f"finished runs with whole features at {steps} steps that had not grokked by then; this "
                           f"sweep has {positives} and {negatives} ({len(apart['grokked_by_T'])} grokked by step "
                           f"{steps}, {len(apart['no_features'])} without whole features)")
    folds = StratifiedKFold(n_splits=min(5, positives, negatives), shuffle=True, random_state=seed)

    def out_of_fold(columns: np.ndarray) -> np.ndarray:
        return cross_val_predict(_model(), columns, y, cv=folds, method="predict_proba")[:, 1]
    p = out_of_fold(x)
    energy = x[:, FEATURES.index("log_energy")]
    hyper = hyperparameters(kept)
    groups = {"signature": x[:, :len(SIGNATURE)], "metrics": x[:, len(SIGNATURE):],
              **({"hyperparameters": hyper, "all": np.hstack([x, hyper])} if hyper is not None else {})}
    scores = {"signature+metrics": p, **{name: out_of_fold(columns) for name, columns in groups.items()}}
    by_features = {name: float(roc_auc_score(y, q)) for name, q in scores.items()}
    stopped = p < threshold
    ran = np.array([r["steps"] for r in kept], dtype=np.float64)
    saved = float(np.sum(np.maximum(ran[stopped] - steps, 0)))
    return {"runs": len(y), "grokked": positives, "steps": steps, "threshold": threshold,
            "folds": folds.get_n_splits(), "roc_auc": by_features["signature+metrics"],
            # out of fold, each set of features fitted alone: the paper's claim is "signature"
            "roc_auc_by_features": by_features,
            "grokked_by_T": apart["grokked_by_T"], "no_features": apart["no_features"],
            "accuracy": float(accuracy_score(y, p >= threshold)),
            # the paper's single number, no fitting: how well the early spectral energy alone ranks runs
            "roc_auc_energy_alone": float(roc_auc_score(y, energy)),
            "stopped": int(stopped.sum()), "grokking_runs_lost": int(np.sum(stopped & y)),
            "steps_total": float(ran.sum()), "steps_saved": saved,
            "compute_saved": saved / float(ran.sum()),
            "predictions": [{"run_id": r["run_id"], "grokked": bool(t), "steps": int(n), "p_grok": float(q),
                             "by_features": {name: float(s[i]) for name, s in scores.items()}}
                            for i, (r, t, n, q) in enumerate(zip(kept, y, ran, p))]}


def trade_off(result: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The stopping rule at every threshold, from an evaluation's out-of-fold predictions: the
    thresholds, the fraction of the compute saved, and the grokking runs lost."""
    predictions, steps = result["predictions"], result["steps"]
    p = np.array([q["p_grok"] for q in predictions])
    grokked = np.array([q["grokked"] for q in predictions])
    ran = np.array([q["steps"] for q in predictions], dtype=np.float64)
    thresholds = np.unique(np.concatenate([[0.0], p, [np.nextafter(1.0, 2.0)]]))
    saved = np.array([np.maximum(ran[p < t] - steps, 0).sum() for t in thresholds]) / ran.sum()
    lost = np.array([int(np.sum((p < t) & grokked)) for t in thresholds])
    return thresholds, saved, lost


def fit(store: RunStore, rows: list[dict], steps: int = 400) -> dict:
    """The predictor fitted on all of a sweep's finished runs, as plain numbers (no pickle)."""
    x, y, _, _ = sweep_dataset(store, rows, steps)
    if len(set(y.tolist())) < 2:
        raise LossLabError("the predictor needs runs that grokked and runs that did not")
    model = _model().fit(x, y)
    scaler, logistic = model.named_steps["standardscaler"], model.named_steps["logisticregression"]
    return {"steps": steps, "features": list(FEATURES), "mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist(),
            "coef": logistic.coef_[0].tolist(), "intercept": float(logistic.intercept_[0])}


def p_grok(predictor: dict, features: dict[str, float]) -> float:
    """The fitted predictor's probability that a run with these early features groks."""
    z = (np.array([features[k] for k in predictor["features"]]) - predictor["mean"]) / predictor["scale"]
    return float(1 / (1 + np.exp(-(z @ np.array(predictor["coef"]) + predictor["intercept"]))))


def predict_run(predictor: dict, run) -> dict:
    """p(grok) of a run (a RunDir: of a sweep, a single run, a monitored loop with validation data)
    from its first T steps."""
    try:
        features = early_features(run.metric_rows(), predictor["steps"])
    except ValueError as e:
        raise LossLabError(f"run {run.path.name} cannot be predicted: {e} (a monitored run needs validation "
                           f"data for its accuracies)") from None
    return {"run_id": run.path.name, "steps": predictor["steps"], "p_grok": p_grok(predictor, features),
            "features": features}


def unpromising(predictor: dict, threshold: float = 0.5):
    """A trainer stop rule: at the first evaluation at or past the predictor's T, stop the run
    (reason "unpromising") if p(grok) < threshold; decided once."""
    decided = False

    def check(trainer) -> str | None:
        nonlocal decided
        if decided or trainer.step < predictor["steps"]:
            return None
        decided = True
        try:
            features = early_features(trainer.rows, predictor["steps"])
        except ValueError:  # diverging: the trainer stops it for that
            return None
        return "unpromising" if p_grok(predictor, features) < threshold else None
    return check
