"""The spectral signature of a metric series (Tikeng Notsawo et al., "Predicting grokking long
before it happens"): the oscillations of the early training loss, once its trend is removed.

The trend is removed first (the loss falls by orders of magnitude; its slow descent is not the
oscillation): `linear` subtracts a least-squares line, `exponential` subtracts a fitted
a + b * exp(c * t) (a linear fit where that fails), `none` only the mean.

From the detrended series y_t (t = 0..T-1) and its one-sided periodogram P_k at the angular
frequencies w_k = 2 pi k / T (rad per step), normalized so that sum_k P_k = var(y) (Parseval):

    spectral moments  m_n = sum_k w_k^n P_k
    energy            sum_t y_t^2             (what the paper thresholds)
    activity          m_0 = var(y)            (Hjorth 1970)
    mobility          sqrt(m_2 / m_0)         (the mean angular frequency, rad/step)
    complexity        sqrt(m_4 / m_2) / mobility   (1 for a pure tone; bandwidth above it)

The moments come from the spectrum, not from finite differences, so a sine at a Fourier
frequency w has mobility exactly w (a difference quotient would give 2 sin(w / 2)).
"""

from __future__ import annotations

import math
import warnings
from typing import Literal

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit
from scipy.signal import detrend as linear_detrend

Trend = Literal["none", "linear", "exponential"]
TRENDS = ("none", "linear", "exponential")
SIGNATURE_KEYS = ("energy", "activity", "mobility", "complexity")
# A residual whose RMS is below this fraction of the series' magnitude is not an oscillation: it is
# the trend fit's tolerance (scipy's least squares stops at sqrt(eps) ~ 1.5e-8) and roundoff; a float32
# loss cannot resolve it either (6e-8).
RESOLVED = math.sqrt(np.finfo(np.float64).eps)


def _exponential(t, a, b, c):
    return a + b * np.exp(c * t)


def remove_trend(x: np.ndarray, trend: Trend = "exponential") -> np.ndarray:
    """x minus its trend (and its mean)."""
    x = np.asarray(x, dtype=np.float64)
    if trend == "none":
        return x - x.mean()
    if trend == "linear" or len(x) < 4:
        return linear_detrend(x, type="linear")
    t = np.arange(len(x), dtype=np.float64) / len(x)  # time in units of the window: c of order 1
    span = x[-1] - x[0]
    try:
        with warnings.catch_warnings():  # exp overflows where the search tries steep rates: checked below
            warnings.simplefilter("ignore", OptimizeWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            p, _ = curve_fit(_exponential, t, x, p0=(x[-1], span if span else 1.0, -3.0), maxfev=5000)
        fitted = _exponential(t, *p)
        if not np.all(np.isfinite(fitted)):
            raise RuntimeError("non-finite fit")
    except (RuntimeError, ValueError):
        return linear_detrend(x, type="linear")
    y = x - fitted
    return y - y.mean()


def hjorth(y: np.ndarray) -> dict[str, float]:
    """Energy and Hjorth parameters of a zero-mean series, from its spectral moments."""
    y = np.asarray(y, dtype=np.float64)
    n = len(y)
    power = np.abs(np.fft.rfft(y)) ** 2 / n**2
    power[1:(n + 1) // 2] *= 2  # one-sided: fold the negative frequencies (not DC nor Nyquist)
    w = 2 * math.pi * np.arange(len(power)) / n
    m0, m2, m4 = (float(np.sum(w**k * power)) for k in (0, 2, 4))
    mobility = math.sqrt(m2 / m0) if m0 > 0 else 0.0
    complexity = math.sqrt(m4 / m2) / mobility if m2 > 0 else 0.0
    return {"energy": float(np.sum(y**2)), "activity": m0, "mobility": mobility, "complexity": complexity}


def spectral_signature(x, trend: Trend = "exponential") -> dict[str, float]:
    """Energy, activity, mobility and complexity of the series x after removing its trend."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) < 8:
        raise ValueError(f"a signature needs at least 8 points, got {len(x)}")
    if not np.all(np.isfinite(x)):
        raise ValueError("the series has non-finite values (a diverged run?)")
    y = remove_trend(x, trend)
    if np.ptp(x) == 0 or math.sqrt(np.mean(y**2)) <= RESOLVED * np.abs(x).max():  # roundoff: no oscillation
        return dict.fromkeys(SIGNATURE_KEYS, 0.0)
    return hjorth(y)


def metric_series(rows, metric: str = "train_loss", steps: int = 400) -> tuple[np.ndarray, float]:
    """The values of `metric` at the steps below `steps` from a run's metric rows, on an even
    grid, and the grid's spacing in steps. `train_loss` is the loss of every step where the
    run recorded it (train.record_loss_steps); other names: train_acc, val_loss, val_acc or a
    probe (grad_norm, ...), at the evaluation cadence, resampled linearly onto an even grid."""
    wanted = [("train", "step_loss")] if metric == "train_loss" else []
    split, _, name = metric.partition("_")
    wanted += [(split, name)] if split in ("train", "val") else [("probe", metric)]
    for split, name in wanted:
        points = sorted({s: v for s, sp, n, v in rows if sp == split and n == name and s < steps}.items())
        if len(points) >= 8:
            break
    else:
        raise ValueError(f"metric {metric!r} has fewer than 8 values in the first {steps} steps")
    s, v = np.array(points, dtype=np.float64).T
    spacing = float(np.median(np.diff(s)))
    grid = np.arange(s[0], s[-1] + spacing / 2, spacing)
    return np.interp(grid, s, v), spacing


def run_signature(rows, metric: str = "train_loss", steps: int = 400, trend: Trend = "exponential") -> dict:
    """The spectral signature of a run's metric over its first `steps` steps (frequencies per step)."""
    series, spacing = metric_series(rows, metric, steps)
    sig = spectral_signature(series, trend)
    sig["mobility"] /= spacing  # rad per sample -> rad per step
    # the energy is a sum over the window: a run that stopped inside it (at t4, say) has a shorter
    # series and a smaller sum, not comparable with a whole window's (see full_window)
    window = "full" if len(series) * spacing >= steps else "partial"
    return {"metric": metric, "steps": steps, "trend": trend, "points": len(series), "window": window, **sig}


def full_window(signature: dict | None) -> bool:
    """Whether a signature covers its whole window of steps: only those are compared (a phase
    diagram's energy, the predictor's features). Signatures from before `window` was recorded
    are judged by their points, one a step."""
    if not signature:
        return False
    return signature.get("window", "full" if signature.get("points", 0) >= signature.get("steps", 0) else
                         "partial") == "full"
