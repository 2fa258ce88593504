"""A measure added from outside losslab, as a user adds one: this file and its @register."""

from losslab.monitor.measures import Measure, Probe, register
from losslab.monitor.measures.base import STABILITY


@register
class GradientCurvature(Measure):
    """The curvature along the probe gradient, g^T H g / |g|^2: the sharpness a gradient step feels. 1 product"""

    name, instrument, writes = "gradient_curvature", STABILITY, ("gradient_curvature",)
    uses_hessian = True

    def measure(self, probe: Probe):
        g = probe.gradient
        yield "gradient_curvature", float(g @ (probe.hessian @ g) / (g @ g))
