"""The grokking plot: train/validation accuracy and loss against step on a log x-axis."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from losslab.store import RunDir  # noqa: E402

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
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for ax, name, label in ((axes[0], "acc", "accuracy"), (axes[1], "loss", "loss")):
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
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle(title)
    return fig


def write_run_figures(run: RunDir, rows, summary: dict) -> list[Path]:
    path = run.figure_dir / "grokking.png"
    fig = grokking_figure(rows, summary["events"], f"{summary['run_id']} ({summary['status']})")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]
