"""Interactive (Plotly) figures for the HTML reports: a run's curves and its stored analyses.

Each builder takes plain data (a run's series, an analysis's JSON) and returns a Figure, or None
when the data holds nothing it can draw. Text that comes from a config goes through `label`: Plotly
reads a subset of HTML in titles.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from losslab.analysis.curvature import Density
from losslab.bench.scoring import profile
from losslab.monitor.instruments import instrument

Series = dict[tuple[str, str], tuple[list[int], list[float]]]  # (split, name) -> (steps, values)

SPLIT_COLORS = {"train": "#1f77b4", "val": "#d62728"}
EVENT_COLORS = {"t1": "#7f7f7f", "t2": "#1f77b4", "t3": "#2ca02c", "t4": "#d62728"}
PALETTE = qualitative.Plotly
COST = {"train_s", "grad_evals"}  # cost columns: drawn nowhere, they are the x of other figures


def label(text) -> str:
    return html.escape(str(text))


def _layout(fig: go.Figure, title: str, height: int = 380) -> go.Figure:
    fig.update_layout(title=label(title), height=height, template="plotly_white",
                      margin=dict(l=60, r=20, t=60, b=50), legend=dict(orientation="h", y=-0.2))
    return fig


def _step(s: int) -> int:
    return max(s, 1)  # step 0 cannot sit on a log axis


COLUMNS = 1200  # a panel's width in pixels, at most: a series with more points is drawn as its envelope


def envelope(steps: list[int], values: list[float], columns: int = COLUMNS) -> tuple[list[int], list[float]]:
    """The series as drawn on a log step axis `columns` pixels wide: all of it where it has at most
    two points a column, else the lowest and the highest point of each column, in step order, so
    that no spike is lost (NaN counts as neither)."""
    if len(steps) <= 2 * columns:
        return steps, values
    x, y = np.log10(np.maximum(np.asarray(steps, dtype=float), 1)), np.asarray(values, dtype=float)
    column = np.minimum(((x - x[0]) / ((x[-1] - x[0]) or 1) * columns).astype(int), columns - 1)
    finite = np.nonzero(np.isfinite(y))[0]
    ranked = finite[np.lexsort((y[finite], column[finite]))]  # by column, then by value
    first = np.r_[True, np.diff(column[ranked]) > 0]  # each column's lowest point, and (below) its highest
    order = np.union1d(ranked[first], ranked[np.r_[first[1:], True]])
    return [steps[i] for i in order], [values[i] for i in order]


def grokking_curves(series: Series, events: dict, title: str) -> go.Figure | None:
    """Accuracy and loss against the step on a log x-axis, train and val, with the events t1..t4
    (series: monitor.figures.curves of the run's metric rows)."""
    if not any((split, name) in series for split in SPLIT_COLORS for name in ("loss", "acc")):
        return None
    fig = make_subplots(rows=1, cols=2, subplot_titles=("accuracy", "loss"))
    for col, name in ((1, "acc"), (2, "loss")):
        for split, color in SPLIT_COLORS.items():
            if (split, name) in series:
                steps, values = envelope(*series[(split, name)])
                fig.add_trace(go.Scatter(x=[_step(s) for s in steps], y=values, name=f"{split} {name}",
                                         mode="lines", line=dict(color=color)), row=1, col=col)
        # A shape sits at its data x on a log axis, an annotation at log10 of it (plotly's rule);
        # the labels are stepped down the panel so that close events do not overlap.
        marked = sorted((step, event) for event, step in events.items() if step is not None)
        for i, (step, event) in enumerate(marked):
            color = EVENT_COLORS.get(event, "#000")
            fig.add_shape(type="line", x0=_step(step), x1=_step(step), y0=0, y1=1, yref="y domain",
                          line=dict(color=color, dash="dash", width=1), row=1, col=col)
            fig.add_annotation(x=math.log10(_step(step)), y=1 - 0.08 * i, yref="y domain", text=f"{event}={step}",
                               showarrow=False, xanchor="left", font=dict(color=color, size=11),
                               bgcolor="rgba(255,255,255,0.7)", row=1, col=col)
        fig.update_xaxes(type="log", title_text="step", row=1, col=col)
    fig.update_yaxes(range=[-0.02, 1.02], row=1, col=1)
    fig.update_yaxes(type="log", row=1, col=2)
    return _layout(fig, title, 420)


# reference lines drawn over the quantity they bound, in its panel (not panels of their own)
REFERENCES = {"edge_of_stability": "lambda_max", "adaptive_edge_of_stability": "preconditioned_lambda_max"}


def panel_of(name: str) -> str:
    """The panel a series is drawn in: its reference's quantity, or its family (norm_fro/fc1 and
    norm_fro/fc2 share `norm_fro`, one trace per layer), or its own name."""
    return REFERENCES.get(name, name.split("/", 1)[0])


def constant_series(series: Series) -> dict[str, float]:
    """The series that never changed (a learning rate without schedule, ...): a table, not panels
    (a reference line stays over its quantity, constant or not)."""
    return {f"{split} {name}": values[0] for (split, name), (_, values) in sorted(series.items())
            if split not in ("signature", "cost") and name not in ("loss", "acc", *REFERENCES)
            and len(values) > 1 and len(set(values)) == 1}


def other_series(series: Series) -> go.Figure | None:
    """Every other recorded series (probes, gradient norms, ...) by instrument (monitor.instruments):
    a panel per quantity, per-layer series one trace each in their family's panel, a reference line
    (2 / lr, the adaptive edge of stability) dashed over the quantity it bounds; series that never
    changed are left to `constant_series`."""
    constant = constant_series(series)
    series = {(split, name): v for (split, name), v in series.items()
              if name not in ("loss", "acc") and name not in COST and split != "signature"  # the latter: a table
              and f"{split} {name}" not in constant}
    shows = {panel_of(name): instrument(split, name) for split, name in series}  # panel -> its instrument
    panels = sorted(shows, key=lambda p: (shows[p], p))
    if not panels:
        return None
    cols = 2 if len(panels) > 1 else 1
    fig = make_subplots(rows=math.ceil(len(panels) / cols), cols=cols,
                        subplot_titles=[f"{label(p)} ({shows[p].split(' ', 1)[1]})" for p in panels])
    for i, panel in enumerate(panels):
        for (split, name), (steps, values) in sorted(series.items()):
            if panel_of(name) == panel:
                steps, values = envelope(steps, values)
                reference = name in REFERENCES
                fig.add_trace(go.Scatter(x=[_step(s) for s in steps], y=values, name=label(f"{split} {name}"),
                                         mode="lines" if reference else "lines+markers", marker=dict(size=3),
                                         line=dict(dash="dash", color="black", width=1) if reference else None),
                              row=i // cols + 1, col=i % cols + 1)
        positive = [v for (_, name), (_, vs) in series.items() if panel_of(name) == panel for v in vs
                    if v is not None and math.isfinite(v) and v > 0]
        if positive and max(positive) > 100 * min(positive):  # layers a few decades apart
            fig.update_yaxes(type="log", row=i // cols + 1, col=i % cols + 1)
    fig.update_xaxes(type="log", title_text="step")
    return _layout(fig, "probes and other series, by instrument", 300 * math.ceil(len(panels) / cols) + 80)


# ---------------------------------------------------------------- analyses, by kind

# the interactive figure of each kind of analysis saved with a run (store.RunDir.save_analysis),
# drawn from its stored result: None where a kind has only numbers
INTERACTIVE: dict[str, Callable[[dict], go.Figure | None]] = {}


def interactive(kind: str):
    """Register the function that draws a stored result of the analysis `kind` for the run page."""
    def register(draw: Callable[[dict], go.Figure | None]):
        if kind in INTERACTIVE:
            raise ValueError(f"an interactive figure of {kind!r} analyses is registered already")
        INTERACTIVE[kind] = draw
        return draw
    return register


def analysis_figure(result: dict) -> go.Figure | None:
    """The interactive figure of a stored analysis result, by the kind it was saved as."""
    draw = INTERACTIVE.get(result.get("analysis"))
    return draw(result) if draw else None


@interactive("hessian")
def hessian(result: dict) -> go.Figure | None:
    """The extreme eigenvalues found, and the spectral density (or every eigenvalue) if computed."""
    fig = go.Figure()
    for side in ("top", "bottom"):
        if side in result:
            fig.add_trace(go.Scatter(x=list(range(1, len(result[side]) + 1)), y=result[side], mode="markers",
                                     name=f"{side} eigenvalues", xaxis="x", yaxis="y"))
    if "density" in result:  # the stored nodes and weights, smoothed as in the analysis's own figure
        grid, values = Density.from_dict(result["density"]).curve(500)
        fig.add_trace(go.Scatter(x=grid, y=np.maximum(values, 1e-12), mode="lines", xaxis="x2", yaxis="y2",
                                 name="spectral density (SLQ, smoothed)"))
    elif "eigenvalues" in result:
        fig.add_trace(go.Histogram(x=result["eigenvalues"], nbinsx=80, xaxis="x2", yaxis="y2",
                                   name="every eigenvalue (dense)"))
    if not fig.data:
        return None
    fig.update_layout(xaxis=dict(domain=[0, 0.42], title="index"), yaxis=dict(title="eigenvalue"),
                      xaxis2=dict(domain=[0.55, 1], title="eigenvalue", anchor="y2", tickformat=".3~g"),
                      yaxis2=dict(anchor="x2", type="log", title="density", exponentformat="power"))
    return _layout(fig, f"Hessian at step {result.get('step')} ({result.get('split')})")


@interactive("landscape")
def landscape(result: dict) -> go.Figure | None:
    """A 2D plane as a contour and a 3D surface, a line at every checkpoint as a heatmap, or lines."""
    alphas = result["alphas"]
    title = f"loss landscape at step {result.get('step')}: {result.get('direction')}"
    if result.get("dims") == 2:
        fig = make_subplots(rows=1, cols=2, specs=[[{"type": "xy"}, {"type": "scene"}]],
                            subplot_titles=("contour", "surface"))
        # loss[i][j]: alpha_i along the first direction, beta_j along the second; a heatmap's rows are y
        z = np.log10(np.maximum(np.asarray(result["loss"]), 1e-12)).T
        fig.add_trace(go.Contour(x=alphas, y=result["betas"], z=z, colorscale="Viridis", ncontours=30,
                                 colorbar=dict(x=0.45, title="log10 loss")), row=1, col=1)
        fig.add_trace(go.Surface(x=alphas, y=result["betas"], z=z, colorscale="Viridis", showscale=False),
                      row=1, col=2)
        return _layout(fig, f"{title} x {result.get('direction2')}", 520)
    if "steps" in result:
        fig = go.Figure(go.Heatmap(x=alphas, y=[str(s) for s in result["steps"]], z=result["loss"],
                                   colorscale="Viridis", colorbar=dict(title="loss")))
        fig.update_layout(xaxis_title="alpha", yaxis_title="checkpoint step")
        return _layout(fig, f"{result.get('direction')} line at every checkpoint", 460)
    fig = go.Figure([go.Scatter(x=alphas, y=loss, mode="lines", name=f"seed {seed}")
                     for seed, loss in zip(result.get("seeds", []), result["loss"])])
    fig.update_layout(xaxis_title="alpha", yaxis_title="loss")
    return _layout(fig, title)


@interactive("connect")
def connect(result: dict) -> go.Figure:
    """Train loss and val accuracy along each path from A (t = 0) to B (t = 1)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("train loss", "val accuracy"))
    for i, (name, path) in enumerate(result["paths"].items()):
        color = f"hsl({(i * 97) % 360},60%,45%)"
        fig.add_trace(go.Scatter(x=path["t"], y=path["train_loss"], name=f"{name} (barrier {path['barrier']:.3g})",
                                 line=dict(color=color)), row=1, col=1)
        fig.add_trace(go.Scatter(x=path["t"], y=path["val_acc"], name=name, showlegend=False,
                                 line=dict(color=color)), row=1, col=2)
    fig.update_xaxes(title_text="t")
    return _layout(fig, f"mode connectivity: {result['run_a']} to {result['run_b']}")


@interactive("trajectory")
def trajectory(result: dict) -> go.Figure:
    """Cosines to the start and between checkpoints, and the norm of every weight matrix."""
    steps = [_step(s) for s in result["steps"]]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("cosine similarity", "weight norms"))
    fig.add_trace(go.Scatter(x=steps, y=result["cos_theta0"], name="cos(theta_t, theta_0)"), row=1, col=1)
    fig.add_trace(go.Scatter(x=steps[1:], y=result["cos_consecutive"], name="cos(theta_t, theta_t-1)"),
                  row=1, col=1)
    for name, values in result["norms"].items():
        fig.add_trace(go.Scatter(x=steps, y=values, name=label(name), mode="lines"), row=1, col=2)
    fig.update_xaxes(type="log", title_text="step")
    return _layout(fig, "trajectory", 460)


@interactive("representations")
def representations(result: dict) -> go.Figure:
    """The t-SNE panels side by side, every point colored by its class (or first k bits)."""
    panels = result["panels"]
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[f"step {p['step']}" for p in panels])
    for i, panel in enumerate(panels, start=1):
        x, y = zip(*panel["embedding"])
        fig.add_trace(go.Scatter(x=x, y=y, mode="markers", showlegend=False,
                                 marker=dict(size=4, color=result["colors"], colorscale="Turbo")),
                      row=1, col=i)
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    return _layout(fig, f"t-SNE of the input of {result['layer']}, colored by {result['colored_by']}", 360)


# ---------------------------------------------------------------- sweeps


def phase_heatmap(xs: list, ys: list, matrix, x: str, y: str, outcome: str) -> go.Figure:
    """One outcome over two axes; the cells' values written in them."""
    z = [[None if v != v else float(v) for v in row] for row in matrix]  # NaN: an empty cell
    text = [["" if v is None else f"{v:.3g}" for v in row] for row in z]
    bounds = {"zmin": 0, "zmax": 1} if outcome in ("val_acc", "grokked") else {}
    fig = go.Figure(go.Heatmap(x=[str(v) for v in xs], y=[str(v) for v in ys], z=z, text=text,
                               texttemplate="%{text}", colorscale="Viridis", colorbar=dict(title=label(outcome)),
                               **bounds))
    fig.update_layout(xaxis_title=label(x), yaxis_title=label(y))
    if all(v is None for row in z for v in row):
        fig.add_annotation(text="no value in any cell", showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
    return _layout(fig, outcome, 360)


# ---------------------------------------------------------------- benchmarks


def performance_profiles(result: dict, clocks: dict[str, str]) -> go.Figure:
    """rho(tau) of every optimizer, a panel per clock (result: read_benchmark's, missed = inf)."""
    r_max = result["r_max"]
    taus = np.linspace(1, r_max, 400)
    fig = make_subplots(rows=1, cols=len(clocks), subplot_titles=[label(t) for t in clocks.values()])
    for i, opt in enumerate(result["optimizers"]):
        for col, clock in enumerate(clocks, 1):
            block = result["clocks"][clock]
            fig.add_trace(go.Scatter(x=taus, y=profile(block["ratios"][opt], taus), mode="lines", line_shape="hv",
                                     name=label(opt), legendgroup=label(opt), showlegend=col == 1,
                                     line=dict(color=PALETTE[i % len(PALETTE)])), row=1, col=col)
    fig.update_xaxes(title_text="tau (time / best time)", range=[1, r_max])
    fig.update_yaxes(range=[-0.02, 1.02])
    fig.update_yaxes(title_text="fraction of workloads within tau", row=1, col=1)
    return _layout(fig, "performance profiles", 420)
