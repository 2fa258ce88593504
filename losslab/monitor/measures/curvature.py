"""The probe loss's curvature: the extreme Hessian eigenvalues against the edges of stability, and
the trace. The top eigenvectors are tracked: each Lanczos starts from the previous measurement's."""

from __future__ import annotations

from losslab.analysis.curvature import hessian_trace
from losslab.analysis.objective import Objective
from losslab.analysis.sharpness import preconditioned_sharpness, preconditioner_refusal
from losslab.core.errors import LossLabError
from losslab.monitor.measures.base import STABILITY, Measure, Probe, register


@register
class Sharpness(Measure):
    """lambda_max of the probe loss's Hessian (Lanczos to a relative residual of `tolerance`) and the
    edge of stability 2 / lr (Cohen et al. 2021). ~2-10 Hessian-vector products"""

    name, switch, instrument, writes = "sharpness", "hessian", STABILITY, ("lambda_max", "edge_of_stability")
    uses_hessian = True

    def measure(self, probe: Probe):
        yield "lambda_max", probe.lambda_max
        yield "edge_of_stability", 2 / probe.lr


@register
class LambdaMin(Measure):
    """The smallest Hessian eigenvalue, to 1e-4 of lambda_max (which it measures too), and the
    condition number where the Hessian is positive definite. ~60-200 products"""

    name, switch, instrument, writes = "lambda_min", "hessian", STABILITY, ("lambda_min", "condition_number")
    uses_hessian = True

    def measure(self, probe: Probe):
        # to 1e-4 of lambda_max: near a cluster at 0, a tolerance relative to itself costs 30x the products
        top = probe.lambda_max
        yield "lambda_min", (bottom := probe.extreme("bottom", tol=1e-4, scale=top))
        if bottom > 0:  # positive definite: otherwise there is no condition number
            yield "condition_number", top / bottom


@register
class PreconditionedSharpness(Measure):
    """Adam, AdamW: lambda_max(P^-1 H) against the adaptive edge of stability (2 + 2 beta1) /
    ((1 - beta1) lr) (Cohen et al. 2022); Shampoo: with its roots, against 2 / lr; param groups of
    several rates as losslab.analysis.sharpness states. From the optimizer's first step on. ~2-10 products"""

    name, switch, instrument = "preconditioned_sharpness", "preconditioned", STABILITY
    writes = ("preconditioned_lambda_max", "adaptive_edge_of_stability")
    uses_hessian = True

    def __init__(self, setup):
        super().__init__(setup)
        refusal = self.refusal(setup.optimizer)
        if refusal:
            raise LossLabError(refusal)

    refusal = staticmethod(preconditioner_refusal)

    def measure(self, probe: Probe):
        if not probe.optimizer.state:  # before the first step there is no preconditioner
            return
        pre = preconditioned_sharpness(probe.objective, probe.optimizer, operator=probe.hessian,
                                       v0=probe.start("preconditioned"), tol=probe.tolerance)
        probe.warm["preconditioned"] = pre.vector
        yield "preconditioned_lambda_max", pre.lambda_max
        yield "adaptive_edge_of_stability", pre.threshold


@register
class Trace(Measure):
    """The trace of the probe loss's Hessian by Hutch++. 99 products"""

    name, instrument, writes = "trace", STABILITY, ("hessian_trace",)
    uses_hessian = True

    def measure(self, probe: Probe):
        yield "hessian_trace", hessian_trace(probe.hessian).estimate


@register
class GGNTrace(Measure):
    """The trace of the probe loss's Gauss-Newton matrix, exactly, from each example's output Jacobian;
    for a network linear in each parameter (linear and convolution layers, ReLU, max-pooling) it is
    the Hessian's trace, as Cockpit's HessTrace computes it there. One backward pass per output per example"""

    name, instrument, writes = "ggn_trace", STABILITY, ("ggn_trace",)

    def check(self, probe: Objective) -> None:
        """Refuse, before the loop, a probe whose examples cannot be taken alone."""
        probe.examples("the exact Gauss-Newton trace", 1)

    def measure(self, probe: Probe):
        yield "ggn_trace", hessian_trace(probe.objective, method="exact", curvature="ggn").estimate
