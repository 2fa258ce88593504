"""A run's early series (what it recorded in its first steps) and the features a forecast reads from
them at a step T.

The series are kept as they were recorded, so that a new feature or predictor needs no training:
the training loss of every step (train.record_loss_steps), the evaluations (train and validation
loss and accuracy) and the geometry probes (gradient norm, the weight matrices' Frobenius norms,
cos(theta_t, theta_0), cos(theta_t, theta at the previous probe)). A run that recorded no probes
(a user's loop without them) has those features missing (NaN); the predictors impute them or, as
gradient boosting does, route them.

No leakage: a feature at T reads only what was recorded at steps up to T.
"""

from __future__ import annotations

import math

import numpy as np

from losslab.analysis.signature import spectral_signature

EVALUATED = ("train_loss", "train_acc", "val_loss", "val_acc")
PROBED = ("grad_norm", "weight_norm", "cos_theta0", "cos_previous")
SERIES = ("step_loss", "eval_step", *EVALUATED, "probe_step", *PROBED)  # what early_series keeps
FLOOR = 1e-12  # the log of an exact zero

SIGNATURE = ("log_energy", "log_activity", "mobility", "complexity")
METRICS = ("log_train_loss", "train_acc", "log_val_loss", "val_acc")
LITERATURE = ("loss_gap", "val_loss_slope", "val_acc_slope")
WEIGHTS = ("log_weight_norm", "weight_norm_ratio", "weight_norm_slope", "log_grad_norm", "cos_theta0")
HYPERPARAMETERS = ("log_lr", "log_weight_decay", "fraction", "log_train_examples")
FEATURES = SIGNATURE + METRICS + LITERATURE + WEIGHTS + HYPERPARAMETERS


def early_series(rows, t_max: int) -> dict[str, list[float]]:
    """The series of a run's metric rows (step, split, name, value) up to step t_max: `step_loss`
    (steps 0..t_max-1), the evaluations (`eval_step` and EVALUATED) and the probes (`probe_step`
    and PROBED; empty where the run recorded none)."""
    step_loss: dict[int, float] = {}
    evals: dict[int, dict[str, float]] = {}
    probes: dict[int, dict[str, float]] = {}
    for step, split, name, value in rows:
        if step > t_max:
            continue
        if split == "train" and name == "step_loss":
            if step < t_max:
                step_loss[step] = value
        elif split in ("train", "val") and name in ("loss", "acc"):
            evals.setdefault(step, {})[f"{split}_{name}"] = value
        elif split == "probe" and name in ("grad_norm", "cos_theta0", "cos_previous"):
            probes.setdefault(step, {})[name] = value
        elif split == "probe" and name.startswith("norm_fro/"):
            probes.setdefault(step, {}).setdefault("weight_sq", 0.0)
            probes[step]["weight_sq"] += value**2
    series = {"step_loss": [step_loss[s] for s in sorted(step_loss)]}
    evaluated = sorted(s for s, m in evals.items() if len(m) == len(EVALUATED))
    series["eval_step"] = [float(s) for s in evaluated]
    series.update({k: [evals[s][k] for s in evaluated] for k in EVALUATED})
    probed = sorted(s for s, m in probes.items() if "grad_norm" in m and "weight_sq" in m)
    series["probe_step"] = [float(s) for s in probed]
    series["weight_norm"] = [math.sqrt(probes[s]["weight_sq"]) for s in probed]
    series.update({k: [probes[s].get(k, math.nan) for s in probed] for k in PROBED if k != "weight_norm"})
    return series


def _log(value: float) -> float:
    return math.log10(max(value, FLOOR))


def _slope(steps: np.ndarray, values: np.ndarray, t: int) -> float:
    """Least-squares slope of values over the second half of the window, per window (t steps)."""
    late = steps >= t / 2
    if late.sum() < 2 or np.ptp(steps[late]) == 0:
        return math.nan
    return float(np.polyfit(steps[late] / t, values[late], 1)[0])


def hyperparameter_features(lr: float | None, weight_decay: float | None, fraction: float | None,
                            train_examples: int | None) -> dict[str, float]:
    """The hyperparameter features of a run's settings (NaN where unknown)."""
    def known(v, f):
        return math.nan if v is None else f(v)
    return {"log_lr": known(lr, _log), "log_weight_decay": known(weight_decay, lambda v: math.log10(max(v, 1e-4))),
            "fraction": known(fraction, float), "log_train_examples": known(train_examples, _log)}


def features_at(series: dict, t: int, hyperparameters: dict[str, float]) -> dict[str, float]:
    """The features of a run at step t from its early series. ValueError if its step losses do
    not cover the first t steps (it stopped inside the window) or it was not evaluated by t."""
    losses = np.asarray(series["step_loss"][:t], dtype=np.float64)
    if len(losses) < t:
        raise ValueError(f"its step losses cover {len(losses)} of the first {t} steps (it stopped inside the "
                         "window, or train.record_loss_steps is shorter)")
    if not np.all(np.isfinite(losses)):
        raise ValueError("non-finite early losses (a diverged run?)")
    steps = np.asarray(series["eval_step"], dtype=np.float64)
    upto = steps <= t
    if not upto.any():
        raise ValueError(f"no evaluation by step {t}")
    at = {k: np.asarray(series[k], dtype=np.float64)[upto] for k in EVALUATED}
    steps = steps[upto]
    sig = spectral_signature(losses)
    f = {"log_energy": _log(sig["energy"]), "log_activity": _log(sig["activity"]),
         "mobility": sig["mobility"], "complexity": sig["complexity"],
         "log_train_loss": _log(at["train_loss"][-1]), "train_acc": float(at["train_acc"][-1]),
         "log_val_loss": _log(at["val_loss"][-1]), "val_acc": float(at["val_acc"][-1])}
    f["loss_gap"] = f["log_val_loss"] - f["log_train_loss"]
    f["val_loss_slope"] = _slope(steps, np.log10(np.maximum(at["val_loss"], FLOOR)), t)
    f["val_acc_slope"] = _slope(steps, at["val_acc"], t)
    probe_steps = np.asarray(series["probe_step"], dtype=np.float64)
    probed = probe_steps <= t
    if probed.any():
        norms = np.asarray(series["weight_norm"], dtype=np.float64)[probed]
        f.update(log_weight_norm=_log(norms[-1]), weight_norm_ratio=float(norms[-1] / max(norms.max(), FLOOR)),
                 weight_norm_slope=_slope(probe_steps[probed], np.log10(np.maximum(norms, FLOOR)), t),
                 log_grad_norm=_log(float(np.asarray(series["grad_norm"])[probed][-1])),
                 cos_theta0=float(np.asarray(series["cos_theta0"], dtype=np.float64)[probed][-1]))
    else:
        f.update(dict.fromkeys(WEIGHTS, math.nan))
    f.update(hyperparameters)
    if not all(math.isfinite(f[k]) for k in SIGNATURE + METRICS):
        raise ValueError("non-finite early metrics (a diverged run?)")
    return {k: f[k] for k in FEATURES}


def config_hyperparameters(config) -> dict[str, float]:
    """The hyperparameter features of a losslab run's config (a RunConfig)."""
    task = config.task
    if task.name == "modular":
        fraction, examples = task.train_fraction, round(task.train_fraction * task.shape()[0])
    elif hasattr(task, "n_train") and hasattr(task, "n_test"):
        fraction, examples = task.n_train / (task.n_train + task.n_test), task.n_train
    else:
        fraction, examples = None, None
    return hyperparameter_features(config.optim.lr, config.optim.weight_decay, fraction, examples)


def task_family(config) -> str:
    """What leave-one-task-out holds out: the operation of a modular task, else the task's name."""
    return config.task.op if config.task.name == "modular" else config.task.name
