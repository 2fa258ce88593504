"""Figures of analyses: each takes a result and returns a matplotlib Figure (or a plotly one for
3D), without writing anything: saving is the store's (losslab.core.files.save_figure)."""

from __future__ import annotations

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from losslab.core.plotting import subplots


def double_descent_figure(result: dict) -> Figure:
    """Test and train risk against the number of random features, the threshold N = n marked."""
    fig, ax = subplots(figsize=(6.5, 4.2), constrained_layout=True)
    ax.plot(result["features"], result["test_risk"], "o-", label="test risk")
    ax.plot(result["features"], result["train_risk"], "s-", ms=3, label="train risk")
    ax.axvline(result["threshold"], color="k", ls="--", lw=1, label=f"interpolation threshold N = n = "
                                                                      f"{result['threshold']}")
    ax.set(xscale="log", yscale="symlog", xlabel="random features N", ylabel="mean squared error",
           title="model-wise double descent (min-norm random-features regression)")
    ax.legend()
    return fig


def width_double_descent_figure(result: dict) -> Figure:
    """Test cross-entropy, and train and test error, against the width of the MLP; the smallest
    width that fits the noisy training set marked."""
    fig, (loss_ax, error_ax) = subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    loss_ax.plot(result["widths"], result["test_loss"], "o-", color="tab:red", label="test cross-entropy")
    error_ax.plot(result["widths"], result["test_error"], "o-", label="test error")
    error_ax.plot(result["widths"], result["train_error"], "s-", ms=3, label="train error (noisy labels)")
    for ax in (loss_ax, error_ax):
        if result["threshold"] is not None:
            ax.axvline(result["threshold"], color="k", ls="--", lw=1,
                       label=f"interpolation threshold: width {result['threshold']}")
        ax.set(xscale="log", xlabel="hidden units")
        ax.legend()
    loss_ax.set(ylabel="test cross-entropy")
    error_ax.set(ylabel="error")
    fig.suptitle(f"model-wise double descent: MLPs on digits, n = {result['n_train']}, "
                 f"{result['label_noise']:.0%} of labels flipped")
    return fig


def epochwise_figure(steps, values, found: dict | None, title: str) -> Figure:
    fig, ax = subplots(figsize=(6.5, 4.2), constrained_layout=True)
    ax.plot([max(s, 1) for s in steps], values, color="tab:red", label="validation loss")
    for key, style in (("first_minimum", "tab:green"), ("peak", "tab:orange"), ("second_descent", "tab:blue")):
        if found:
            ax.axvline(max(found[key], 1), color=style, ls=":", label=key.replace("_", " "))
    ax.set(xscale="log", xlabel="step", ylabel="validation loss", title=title)
    ax.legend()
    return fig


def tsne_panels(axes, result: dict) -> None:
    """Each t-SNE panel of `representations` on its axis, colored (with its separation, if scored)."""
    colors = np.array(result["colors"])
    for ax, panel in zip(axes, result["panels"]):
        e = np.array(panel["embedding"])
        ax.scatter(e[:, 0], e[:, 1], c=colors, cmap="tab10", s=6)
        shown = f" ({panel['separation']:.0%} by 5-NN)" if "separation" in panel else ""
        ax.set(title=f"step {panel['step']}{shown}", xticks=[], yticks=[])


def output_weight_densities(ax, result: dict) -> None:
    """The density (KDE) of the output layer's weights at each shown step."""
    from scipy.stats import gaussian_kde  # startup

    cmap = matplotlib.colormaps["viridis"]
    for i, (step, values) in enumerate(result["output_weights"].items()):
        values = np.array(values)
        grid = np.linspace(values.min(), values.max(), 300)
        density = gaussian_kde(values)(grid) if np.ptp(values) > 0 else np.zeros_like(grid)
        ax.plot(grid, density, color=cmap(i / max(len(result["output_weights"]) - 1, 1)), label=f"step {step}")
    ax.set(xlabel=f"{result['layer']}.weight values", ylabel="density", title="output-layer weights (KDE)")
    ax.legend(fontsize=7)


def weight_norms(axes, result: dict) -> None:
    """Every weight matrix's Frobenius (first axis) and spectral norm (second) against the step."""
    for name, rows in result["norms"].items():
        steps, fro, spec = zip(*rows)
        steps = [max(s, 1) for s in steps]
        axes[0].plot(steps, fro, marker=".", label=name)
        axes[1].plot(steps, spec, marker=".", label=name)
    for ax, title in zip(axes, ("Frobenius norm", "spectral norm")):
        ax.set(xscale="log", xlabel="step", title=title)
        for event, color in (("t2", "tab:blue"), ("t4", "tab:red")):
            if result["events"].get(event) is not None:
                ax.axvline(max(result["events"][event], 1), color=color, ls=":", label=event)
        ax.legend(fontsize=7)


def representation_figures(result: dict) -> dict[str, Figure]:
    """t-SNE panels, the density of the output-layer weights per step, and the weight norms, by
    the name of their file."""
    tsne, axes = subplots(1, len(result["panels"]), figsize=(3.2 * len(result["panels"]), 3.4),
                              constrained_layout=True, squeeze=False)
    tsne_panels(axes[0], result)
    tsne.suptitle(f"t-SNE of the input of {result['layer']}, colored by {result['colored_by']}")
    kde, ax = subplots(figsize=(6.5, 4.2), constrained_layout=True)
    output_weight_densities(ax, result)
    norms, axes = subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    weight_norms(axes, result)
    return {"representations.png": tsne, "output_weights_kde.png": kde, "layer_norms.png": norms}
