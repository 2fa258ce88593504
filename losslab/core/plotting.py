"""Figures outside pyplot: each figure gets its own Agg canvas, so drawing one neither chooses a
backend for the process (a notebook keeps its own) nor registers it with pyplot (nothing to
close). In a notebook the returned Figure displays as usual."""

from __future__ import annotations

_GRID = ("sharex", "sharey", "squeeze", "width_ratios", "height_ratios", "subplot_kw", "gridspec_kw")


def figure(**kwargs):
    """A matplotlib Figure (keywords as Figure's) on its own Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # startup
    from matplotlib.figure import Figure  # startup

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def subplots(nrows: int = 1, ncols: int = 1, **kwargs):
    """(figure, axes) as matplotlib.pyplot.subplots returns them; the other keywords go to the Figure."""
    grid = {k: kwargs.pop(k) for k in _GRID if k in kwargs}
    fig = figure(**kwargs)
    return fig, fig.subplots(nrows, ncols, **grid)


def axes_for(ax, figsize: tuple[float, float]):
    """(figure, axes) for a result's `plot(ax=None)`: the caller's axes and their figure, or a new
    figure of `figsize` (as scikit-learn's Displays draw)."""
    if ax is not None:
        return ax.figure, ax
    return subplots(figsize=figsize, constrained_layout=True)
