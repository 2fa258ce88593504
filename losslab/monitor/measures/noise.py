"""The gradient's noise, from the probe's per-example gradients (torch.func.vmap): the simple
gradient noise scale B = tr(Sigma) / |G|^2 (McCandlish et al. 2018; |G|^2 estimated without bias as
|mean g|^2 - tr(Sigma) / n, NaN where the noise swamps it) and the probe gradient's signal-to-noise
ratio |mean g|^2 / (tr(Sigma) / n). n per-example gradients"""

from __future__ import annotations

import math

import torch
from torch.func import functional_call, grad, vmap

from losslab.analysis.objective import Objective
from losslab.core.errors import LossLabError
from losslab.core.memory import check_fits
from losslab.monitor.measures.base import GRADIENTS, Measure, Probe, register

# per-example gradients held at once: up to 256, in at most 64 MB (measured: a grokking transformer's
# 223k parameters take 343 ms for 256 examples in chunks of 64, 557 ms in one of 256; the digits
# CNN's 1.9k, 5 ms in one chunk, 11 ms in chunks of 64)
NOISE_CHUNK, NOISE_CHUNK_BYTES = 256, 2**26


def per_example_gradients(obj: Objective):
    """(params, x, y) -> the gradient of each example's loss (torch.func: vmap of grad)."""
    if obj.forward_fn is not None:
        raise LossLabError("gradient noise takes per-example losses: give (inputs, targets) batches and loss=, "
                           "not forward=")

    def one(p, x, y):
        out = functional_call(obj.model, {**obj.buffers, **p}, (x[None],))
        return obj.loss_fn(out, y[None])
    return vmap(grad(one), in_dims=(None, 0, 0))


def gradient_noise(obj: Objective) -> tuple[float, float]:
    """The gradient's noise on the objective's data: the simple noise scale and the signal-to-noise ratio.

    From the per-example gradients g_i (torch.func.vmap of grad): the simple gradient noise scale
    B_simple = tr(Sigma) / |G|^2 (McCandlish et al. 2018), the batch size beyond which larger batches
    stop paying, with |G|^2 estimated without bias as |mean g|^2 - tr(Sigma) / n (NaN where the noise
    swamps it), and the mean gradient's signal-to-noise ratio |mean g|^2 / (tr(Sigma) / n).

    Args:
        obj: an objective of (inputs, targets) batches and a loss; every example's loss its own
            (BatchNorm in training mode is refused).

    Returns:
        `(B_simple, SNR)`.

    Raises:
        LossLabError: a `forward=` objective, or a model without per-example gradients.

    Cost: one gradient per example, up to 256 at a time.

    Examples:
        >>> b_simple, snr = ll.gradient_noise(obj)
        >>> b_simple > 0 and snr > 0
        True
    """
    params = obj.params
    per_example = per_example_gradients(obj)
    one_gradient = sum(p.numel() * p.element_size() for p in params.values())
    check_fits(one_gradient, f"a per-example gradient of {obj.size:,} parameters")
    chunk = max(1, min(NOISE_CHUNK, NOISE_CHUNK_BYTES // one_gradient))
    total, squares, n = 0.0, 0.0, 0  # the sum of the gradients and of their squared norms, in float64
    for x, y, *_ in obj.batches():
        for start in range(0, len(x), chunk):
            g = list(per_example(params, x[start: start + chunk], y[start: start + chunk]).values())
            total = total + torch.cat([piece.sum(0, dtype=torch.float64).flatten() for piece in g])
            # one foreach norm for every tensor: no flat copy of the chunk (a large model's is tens of MB)
            squares = squares + torch.stack(torch._foreach_norm(g, 2, torch.float64)).square().sum()
            n += len(g[0])
    if n < 2:
        raise LossLabError("gradient noise needs at least 2 probe examples")
    mean = total / n
    mean_square, squares = torch.stack([mean @ mean, squares]).tolist()  # one wait for the device
    trace = (squares - n * mean_square) / (n - 1)  # tr(Sigma), unbiased
    signal = mean_square - trace / n  # |G|^2, unbiased
    scale = trace / signal if signal > 0 else math.nan
    return scale, mean_square / (trace / n) if trace > 0 else math.inf


@register
class GradientNoise(Measure):
    name, instrument, writes = "gradient_noise", GRADIENTS, ("gradient_noise_scale", "gradient_snr")

    def check(self, probe: Objective) -> None:
        """The per-example gradients of the first two examples, now: a forward that has none
        (BatchNorm in training mode normalizes an example by its batch, and updates its statistics
        in place, which vmap refuses) is one line before training, not a crash at the first measurement."""
        x, y, *_ = next(iter(probe.batches()))
        try:
            per_example_gradients(probe)(probe.params, x[:2], y[:2])
        except (RuntimeError, ValueError) as e:
            normalized = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training
                             for m in probe.model.modules())
            why = ("BatchNorm in training mode normalizes each example by its batch (use GroupNorm or LayerNorm, "
                   "or leave gradient_noise out)" if normalized else str(e).splitlines()[0])
            raise LossLabError(f"gradient_noise takes per-example gradients (torch.func.vmap), which this model "
                               f"has not: {why}") from None

    def measure(self, probe: Probe):
        scale, snr = gradient_noise(probe.objective)
        yield "gradient_noise_scale", scale
        yield "gradient_snr", snr
