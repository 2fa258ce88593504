"""Figures of a run: the grokking plot (accuracy and loss against step on a log x-axis), and
the gradient-variance ratio of SVRG runs, the loss per class-frequency group of heavy-tailed
tasks, and the curvature probes against the edge of stability."""

from __future__ import annotations

from pathlib import Path

import matplotlib

from losslab.core.files import save_figure
from losslab.core.plotting import subplots
from losslab.store import RunDir

COLORS = {"train": "tab:blue", "val": "tab:red"}
EVENT_STYLE = {"t2": ("memorization t2", "tab:blue"), "t4": ("generalization t4", "tab:red")}


def curves(rows) -> dict[tuple[str, str], tuple[list[int], list[float]]]:
    """(split, name) -> (steps, values) from metric rows (step, split, name, value)."""
    series: dict[tuple[str, str], tuple[list[int], list[float]]] = {}
    for step, split, name, value in sorted(rows):
        steps, values = series.setdefault((split, name), ([], []))
        steps.append(step)
        values.append(value)
    return series


def grokking_figure(rows, events: dict, title: str):
    series = curves(rows)
    # a loop monitored without accuracies (a Monitor in the user's loop) has the loss panel only
    panels = [(name, label) for name, label in (("acc", "accuracy"), ("loss", "loss"))
              if name == "loss" or any((split, name) in series for split in ("train", "val"))]
    fig, axes = subplots(1, len(panels), figsize=(5.5 * len(panels), 4), constrained_layout=True,
                             squeeze=False)
    axes = axes[0]
    for ax, (name, label) in zip(axes, panels):
        for split in ("train", "val"):
            if (split, name) in series:
                steps, values = series[(split, name)]
                # step 0 cannot sit on a log axis: draw it at 1
                ax.plot([max(s, 1) for s in steps], values, color=COLORS[split], label=split)
        for event, (text, color) in EVENT_STYLE.items():
            if events.get(event) is not None:
                ax.axvline(max(events[event], 1), color=color, ls="--", lw=1, label=f"{text} = {events[event]}")
        ax.set_xscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if name == "loss":
            ax.set_yscale("log")
        else:
            ax.set_ylim(-0.02, 1.02)
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(loc="lower right" if len(panels) == 2 else "upper right", fontsize=8)
    fig.suptitle(title)
    return fig


def variance_ratio_figure(rows, title: str):
    """Defazio & Bottou's plot: var(SGD gradient) / var(SVRG gradient) per layer over training."""
    fig, ax = subplots(figsize=(6.5, 4), constrained_layout=True)
    for (split, name), (steps, values) in sorted(curves(rows).items()):
        if split == "probe" and name.startswith("grad_var_ratio/"):
            ax.plot([max(s, 1) for s in steps], values, marker=".", label=name.split("/", 1)[1])
    ax.axhline(1, color="k", lw=1, ls=":", label="no reduction")
    ax.set(xscale="log", yscale="log", xlabel="step", ylabel="var(SGD) / var(SVRG)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def class_group_figure(rows, title: str):
    """Kunstner et al.'s plot: the training loss of each class-frequency group over training."""
    groups = sorted(((int(name.removeprefix("loss_group")), series) for (split, name), series in curves(rows).items()
                     if split == "train" and name.startswith("loss_group")))
    fig, ax = subplots(figsize=(6.5, 4), constrained_layout=True)
    colors = matplotlib.colormaps["viridis"]([i / max(len(groups) - 1, 1) for i in range(len(groups))])
    for (g, (steps, values)), color in zip(groups, colors):
        label = "most frequent" if g == 0 else "rarest" if g == len(groups) - 1 else None
        ax.plot(steps, values, color=color, label=f"group {g}" + (f" ({label})" if label else ""))
    ax.set(xlabel="step", ylabel="training loss", yscale="log", title="training loss per class-frequency group")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.suptitle(title, fontsize=9)
    return fig


def curvature_figure(rows, title: str):
    """lambda_max with the edge of stability 2 / lr (Cohen et al. 2021), and for Adam runs the
    preconditioned lambda_max(P^-1 H) with (2 + 2 beta1) / ((1 - beta1) lr) (Cohen et al. 2022)."""
    series = curves(rows)
    pairs = [("lambda_max", "edge_of_stability", "2 / lr"),
             ("preconditioned_lambda_max", "adaptive_edge_of_stability", "(2 + 2 b1) / ((1 - b1) lr)")]
    pairs = [p for p in pairs if ("probe", p[0]) in series]
    fig, axes = subplots(1, len(pairs), figsize=(6 * len(pairs), 4), constrained_layout=True, squeeze=False)
    for ax, (value, threshold, label) in zip(axes[0], pairs):
        steps, values = series[("probe", value)]
        ax.plot([max(s, 1) for s in steps], values, marker=".", label=value)
        if ("probe", threshold) in series:
            t_steps, t_values = series[("probe", threshold)]
            ax.plot([max(s, 1) for s in t_steps], t_values, "k--", lw=1, label=label)
        ax.set(xscale="log", yscale="log", xlabel="step", ylabel="eigenvalue")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def write_run_figures(run: RunDir, rows, summary: dict) -> list[Path]:
    title = f"{summary['run_id']} ({summary['status']})"
    figures = {"grokking.png": grokking_figure(rows, summary["events"], title)}
    if any(split == "probe" and name.startswith("grad_var_ratio/") for _, split, name, _ in rows):
        figures["svrg_variance.png"] = variance_ratio_figure(rows, title)
    if any(name in ("lambda_max", "preconditioned_lambda_max") for _, _, name, _ in rows):
        figures["curvature.png"] = curvature_figure(rows, title)
    if any(name.startswith("loss_group") for _, _, name, _ in rows):
        figures["class_groups.png"] = class_group_figure(rows, title)
    return [save_figure(fig, run.figure_path(name)) for name, fig in figures.items()]
