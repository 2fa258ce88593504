"""Figures of analyses: each takes a result and returns a matplotlib Figure (or a plotly one for
3D), without writing anything: saving is the store's (losslab.core.files.save_figure)."""

from __future__ import annotations

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from losslab.analysis.curvature import Density
from losslab.core.plotting import subplots


def density_figure(density: Density, extremes: list[float], title: str) -> Figure:
    """The SLQ density on a log scale, the computed extreme eigenvalues marked."""
    grid, values = density.curve()
    fig, ax = subplots(figsize=(6.5, 4.2), constrained_layout=True)
    ax.semilogy(grid, np.maximum(values, 1e-12), label="SLQ density (Gaussian width: 1/200 of the span)")
    for i, value in enumerate(extremes):
        ax.axvline(value, color="tab:red", lw=0.8, ls="--", label="extreme eigenvalues (Lanczos)" if i == 0 else None)
    ax.set(xlabel="eigenvalue", ylabel="density", ylim=(1e-8, None))
    fig.suptitle(title, fontsize=9, wrap=True)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def line_figure(alphas: np.ndarray, lines: list[tuple[str, np.ndarray, np.ndarray | None]], title: str,
                xlabel: str) -> Figure:
    """Loss (and accuracy, where measured) along a line, one curve per (label, loss, acc)."""
    with_acc = all(acc is not None for _, _, acc in lines)
    fig, axes = subplots(1, 2 if with_acc else 1, figsize=(11 if with_acc else 6, 4), constrained_layout=True,
                             squeeze=False)
    axes = axes[0]
    for label, loss, acc in lines:
        axes[0].plot(alphas, loss, label=label)
        if with_acc:
            axes[1].plot(alphas, acc, label=label)
    axes[0].set(xlabel=xlabel, ylabel="loss", yscale="log", title="loss")
    if with_acc:
        axes[1].set(xlabel=xlabel, ylabel="accuracy", ylim=(-0.02, 1.02), title="accuracy")
    for ax in axes:
        ax.axvline(0, color="k", lw=0.8, ls=":")
        ax.grid(alpha=0.3)
    if len(lines) > 1:
        axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return fig


def plane_figure(alphas: np.ndarray, betas: np.ndarray, loss: np.ndarray, acc: np.ndarray | None, title: str,
                 labels: tuple[str, str], path: tuple[np.ndarray, list[int]] | None = None) -> Figure:
    """Contours of log10 loss and (where measured) a heatmap of accuracy over the plane; the
    point itself marked, and a trajectory's (T, 2) coordinates with their steps, if given."""
    fig, axes = subplots(1, 1 if acc is None else 2, figsize=(6 if acc is None else 11, 4.5),
                             constrained_layout=True, squeeze=False)
    axes = axes[0]
    b, a = np.meshgrid(betas, alphas)
    filled = axes[0].contourf(a, b, np.log10(np.maximum(loss, 1e-12)), levels=30, cmap="viridis")
    axes[0].contour(a, b, np.log10(np.maximum(loss, 1e-12)), levels=15, colors="k", linewidths=0.3)
    fig.colorbar(filled, ax=axes[0], label="log10 loss")
    if acc is not None:
        mesh = axes[1].pcolormesh(a, b, acc, cmap="magma", vmin=0, vmax=1, shading="nearest")
        fig.colorbar(mesh, ax=axes[1], label="accuracy")
    for ax in axes:
        if path is not None:
            coords, steps = path
            ax.plot(coords[:, 0], coords[:, 1], "-", color="w", lw=1.2, zorder=3)
            ax.scatter(coords[:, 0], coords[:, 1], c=np.log10(np.maximum(steps, 1)), cmap="autumn", s=14, zorder=4,
                       edgecolors="k", linewidths=0.3, label="trajectory (color: log10 step)")
            ax.legend(fontsize=7, loc="lower right")
        ax.plot(0, 0, "r*", ms=10)
        ax.set(xlabel=labels[0], ylabel=labels[1])
    fig.suptitle(title, fontsize=10, wrap=True)
    return fig


def checkpoint_heatmap(steps: list[int], alphas: np.ndarray, loss: np.ndarray, acc: np.ndarray, title: str) -> Figure:
    """The same line at every checkpoint: alpha against step, colored by loss and accuracy."""
    fig, axes = subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)
    x = np.arange(len(steps))
    for ax, values, label, cmap, limits in ((axes[0], np.log10(np.maximum(loss, 1e-12)), "log10 loss", "viridis",
                                              (None, None)), (axes[1], acc, "accuracy", "magma", (0, 1))):
        mesh = ax.pcolormesh(x, alphas, values.T, cmap=cmap, vmin=limits[0], vmax=limits[1], shading="nearest")
        fig.colorbar(mesh, ax=ax, label=label)
        ticks = np.unique(np.linspace(0, len(steps) - 1, min(len(steps), 8)).astype(int))
        ax.set_xticks(ticks, [str(steps[t]) for t in ticks], rotation=45)
        ax.set(xlabel="checkpoint step", ylabel="alpha")
    fig.suptitle(title, fontsize=10)
    return fig


def trajectory_figure(steps: list[int], projected: np.ndarray, explained: list[float], title: str) -> Figure:
    """The checkpoints projected on the trajectory's first two principal directions."""
    fig, ax = subplots(figsize=(6, 5), constrained_layout=True)
    ax.plot(projected[:, 0], projected[:, 1], "-", color="0.6", lw=1)
    points = ax.scatter(projected[:, 0], projected[:, 1], c=np.log10(np.maximum(steps, 1)), cmap="viridis", zorder=3)
    fig.colorbar(points, ax=ax, label="log10 step")
    ax.set(xlabel=f"PC1 ({explained[0]:.1%} of the variance)", ylabel=f"PC2 ({explained[1]:.1%})",
           title=f"{title}: trajectory")
    ax.grid(alpha=0.3)
    return fig


def plane_3d(alphas: np.ndarray, betas: np.ndarray, loss: np.ndarray, title: str, labels: tuple[str, str]) -> Figure:
    """The plane's log10 loss as an interactive 3D surface: one self-contained HTML file
    (plotly.js inlined, so it opens without a network), the checkpoint marked."""
    import plotly.graph_objects as go

    z = np.log10(np.maximum(loss, 1e-12))
    i, j = int(np.argmin(np.abs(alphas))), int(np.argmin(np.abs(betas)))
    fig = go.Figure([go.Surface(x=betas, y=alphas, z=z, colorscale="Viridis", colorbar={"title": "log10 loss"}),
                     go.Scatter3d(x=[betas[j]], y=[alphas[i]], z=[z[i, j]], mode="markers",
                                  marker={"color": "red", "size": 5}, name="checkpoint")])
    fig.update_layout(title=title, scene={"xaxis_title": labels[1], "yaxis_title": labels[0],
                                          "zaxis_title": "log10 loss"})
    return fig


def connectivity_figure(paths: dict[str, dict], title: str) -> Figure:
    """Train loss and accuracy (validation where measured, else training; none without targets
    that are classes) along each path from A (t = 0) to B (t = 1)."""
    first = next(iter(paths.values()))
    accuracy = next((k for k in ("val_acc", "train_acc")
                     if first.get(k) is not None and len(first[k]) and not any(v is None for v in first[k])), None)
    fig, axes = subplots(1, 2 if accuracy else 1, figsize=(11 if accuracy else 5.5, 4), constrained_layout=True,
                             squeeze=False)
    ax_loss = axes[0, 0]
    for name, p in paths.items():
        ax_loss.plot(p["t"], p["train_loss"], label=f"{name} (barrier {p['barrier']:.3g})")
    ax_loss.set(xlabel="t", ylabel="train loss", yscale="log")
    ax_loss.legend()
    if accuracy:
        ax_acc = axes[0, 1]
        for name, p in paths.items():
            ax_acc.plot(p["t"], p[accuracy], label=name)
        # the accuracy axis spans the data (the differences that matter are a few percent near the top)
        ax_acc.set(xlabel="t", ylabel="validation accuracy" if accuracy == "val_acc" else "train accuracy")
        ax_acc.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax_acc.legend()
    fig.suptitle(title, fontsize=10, wrap=True)
    return fig


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
    from scipy.stats import gaussian_kde

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
