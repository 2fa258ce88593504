"""An analysis added from outside losslab, as a user adds one: this file, a function of an Objective
whose result draws itself, and its interactive twin's @interactive registration."""

from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go

from losslab.analysis.objective import Objective
from losslab.core.plotting import axes_for
from losslab.report.plots import interactive


@dataclass
class StepSizeCurve:
    """The loss after one gradient step of each size: L(theta - eta g)."""

    etas: np.ndarray
    losses: np.ndarray

    def plot(self, ax=None):
        fig, ax = axes_for(ax, (5, 4))
        ax.plot(self.etas, self.losses, "o-")
        ax.set(xlabel="step size eta", ylabel="loss after the step")
        return fig

    def to_dict(self) -> dict:
        return {"etas": self.etas.tolist(), "losses": self.losses.tolist()}


def step_size_curve(obj: Objective, etas) -> StepSizeCurve:
    _, g = obj.value_and_grad()
    theta = obj.flatten(obj.params)
    return StepSizeCurve(np.asarray(etas, dtype=float), np.array([obj.loss(obj.unflatten(theta - eta * g))
                                                                  for eta in etas]))


@interactive("step_size_curve")
def step_size_figure(result: dict) -> go.Figure:
    return go.Figure(go.Scatter(x=result["etas"], y=result["losses"], mode="lines+markers"))
