"""Figures of a forecast evaluation (losslab.forecast.evaluation): ROC curves of the held-out
predictions, the stopping rule's trade-off, the calibration of the best predictor, and the held-out
AUC against T with its bootstrap interval."""

from __future__ import annotations

import numpy as np
from matplotlib.ticker import NullFormatter
from sklearn.metrics import roc_curve

from losslab.core.plotting import axes_for, subplots


def roc_figure(held: dict[str, dict], title: str, ax=None):
    """Each predictor's ROC curve from its pooled held-out predictions, its AUC and interval in the legend."""
    fig, ax = axes_for(ax, (6.2, 5.4))
    for name, result in sorted(held.items(), key=lambda kv: -kv[1]["pooled"]["auc"]):
        fpr, tpr, _ = roc_curve(result["predictions"]["grokked"], result["predictions"]["p"])
        low, high = result["pooled"]["auc_interval"]
        ax.plot(fpr, tpr, label=f"{name}: {result['pooled']['auc']:.2f} [{low:.2f}, {high:.2f}]")
    ax.plot([0, 1], [0, 1], color="0.6", linestyle=":", label="chance")
    ax.set(xlabel="false positive rate (non-grokking runs kept)", ylabel="true positive rate (grokking runs kept)",
           title=title)
    ax.legend(fontsize=7, loc="lower right", title="AUC [95% bootstrap]", title_fontsize=7)
    return fig


def trade_off_figure(held: dict[str, dict], title: str, ax=None):
    """Compute saved against grokking runs lost, at every threshold; a dot at each predictor's threshold
    chosen on the training tasks."""
    fig, ax = axes_for(ax, (6.2, 5.4))
    for name, result in sorted(held.items(), key=lambda kv: -kv[1]["pooled"]["auc"]):
        curve = result["trade_off"]
        line, = ax.step(curve["lost"], curve["compute_saved"], where="post", label=name)
        pooled = result["pooled"]
        ax.plot(1 - pooled["recall"], pooled["compute_saved"], "o", color=line.get_color())
    ax.axvline(0.05, color="0.6", linestyle=":", label="5% of grokking runs lost")
    ax.axhline(0.5, color="0.6", linestyle="--", label="half the compute saved")
    ax.set(xlabel="fraction of the grokking runs stopped (lost)", ylabel="fraction of the compute saved",
           xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), title=title)
    ax.legend(fontsize=7, loc="lower right")
    return fig


def calibration_figure(result: dict, name: str):
    """Observed fraction of grokking runs against the predicted p(grok), in deciles of the predictions."""
    fig, ax = subplots(figsize=(5, 4.6), constrained_layout=True)
    curve = result["calibration"]
    ax.plot([0, 1], [0, 1], color="0.6", linestyle=":", label="calibrated")
    ax.plot(curve["predicted"], curve["observed"], "o-", label=f"{name} (Brier {result['pooled']['brier']:.3f})")
    ax.set(xlabel="predicted p(grok)", ylabel="observed fraction that grokked", xlim=(0, 1), ylim=(0, 1),
           title=f"calibration on held-out tasks, T = {result['t']}")
    ax.legend(fontsize=8)
    return fig


def horizon_figure(results: dict, by: str = "task"):
    """The pooled held-out AUC of each predictor against T, with its 95% bootstrap interval."""
    fig, ax = subplots(figsize=(6.4, 4.6), constrained_layout=True)
    horizons = sorted(results)
    names = list(results[horizons[0]]["held_out"][by])
    for k, name in enumerate(names):
        values = [results[t]["held_out"][by][name]["pooled"] for t in horizons]
        x = np.array(horizons) * (1 + 0.025 * (k - len(names) / 2))  # spread the bars apart
        mid = np.array([v["auc"] for v in values])
        low, high = np.array([v["auc_interval"] for v in values]).T
        ax.errorbar(x, mid, yerr=[mid - low, high - mid], marker="o", capsize=2, label=name)
    ax.axhline(0.5, color="0.6", linestyle=":")
    ax.axhline(0.9, color="0.6", linestyle="--")
    ax.set_xscale("log")
    ax.set_xticks(horizons, [str(t) for t in horizons])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set(xlabel="T (steps seen)", ylabel=f"ROC AUC, leave one {by} out", ylim=(0, 1.02),
           title="how early: held-out AUC against T")
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    return fig
