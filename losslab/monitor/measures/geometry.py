"""Where the weights are and how they move: the probe gradient's norm, the weight matrices' norms,
the angles to the start and to the previous measurement; and the two measures read only from the
loop's own steps (the gradient it stepped with, each matrix's update)."""

from __future__ import annotations

import torch

from losslab.monitor.measures.base import GRADIENTS, WEIGHTS, Measure, Probe, Setup, register


@register
class GradNorm(Measure):
    """The norm of the probe loss's gradient (the full-data gradient where the probe is the data). 1 gradient"""

    name, switch, instrument, writes = "grad_norm", "geometry", GRADIENTS, ("grad_norm",)

    def measure(self, probe: Probe):
        yield "grad_norm", probe.gradient.norm()


@register
class StepGradNorm(Measure):
    """The norm of the gradient the optimizer stepped with (the batch's, after any clipping)."""

    name, when, instrument, writes = "step_grad_norm", "step", GRADIENTS, ("step_grad_norm",)


@register
class WeightNorms(Measure):
    """The Frobenius norm of every weight matrix: after every step in the Monitor (convolution
    kernels too), at each probe in losslab's runs. free"""

    name, when, switch, instrument, writes = "weight_norms", "step", "geometry", WEIGHTS, ("norm_fro/",)

    def measure(self, probe: Probe):
        for name, w in probe.objective.params.items():
            if w.ndim == 2:
                yield f"norm_fro/{name}", torch.linalg.matrix_norm(w)


@register
class UpdateRatio(Measure):
    """||w_t+1 - w_t|| / ||w_t|| of every weight matrix over each step."""

    name, when, instrument, writes = "update_ratio", "step", WEIGHTS, ("update_ratio/",)


@register
class SpectralNorms(Measure):
    """The spectral norm of every weight matrix. an SVD a matrix"""

    name, switch, instrument, writes = "spectral_norms", "geometry", WEIGHTS, ("norm_spec/",)

    def measure(self, probe: Probe):
        for name, w in probe.objective.params.items():
            if w.ndim == 2:
                yield f"norm_spec/{name}", torch.linalg.matrix_norm(w, ord=2)


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()).clamp_min(1e-30))


@register
class Cosines(Measure):
    """cos(theta_t, theta_0) and cos(theta_t, theta at the previous measurement). free"""

    name, switch, instrument, writes = "cosines", "geometry", WEIGHTS, ("cos_theta0", "cos_previous")

    def __init__(self, setup: Setup):
        super().__init__(setup)
        self.theta0 = torch.cat([p.detach().flatten().clone() for p in setup.model.parameters()])
        self.previous: torch.Tensor | None = None

    def measure(self, probe: Probe):
        flat = probe.objective.flatten(probe.objective.params)
        yield "cos_theta0", _cos(flat, self.theta0)
        if self.previous is not None:
            yield "cos_previous", _cos(flat, self.previous)
        self.previous = flat.clone()

    def state(self) -> dict[str, torch.Tensor]:
        return {} if self.previous is None else {"previous": self.previous}

    def restore(self, state: dict[str, torch.Tensor]) -> None:
        self.previous = state.get("previous")
