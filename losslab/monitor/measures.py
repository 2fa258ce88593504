"""Measurements of theta_t taken during training, by name, written as metric rows (split "probe").
One engine for every loop: losslab's Trainer and the Monitor of a user's loop both measure here.

- grad_norm: the norm of the probe loss's gradient.                           1 gradient
- weight_norms: the Frobenius norm of every weight matrix.                   free
- spectral_norms: the spectral norm of every weight matrix.                  an SVD a matrix
- cosines: cos(theta_t, theta_0) and cos(theta_t, theta at the previous measurement).   free
- sharpness: lambda_max of the probe loss's Hessian (Lanczos warm-started from the previous
  measurement's eigenvector, to a relative residual of `tolerance`, 1e-2 by default: lambda_max
  right to ~1e-4, see TRACKING_TOL; the first from a fixed random start) and the edge of
  stability 2 / lr (Cohen et al.).                                            ~2-10 Hessian-vector products
- lambda_min: the smallest Hessian eigenvalue (warm-started too), to 1e-4 of lambda_max (which it
  measures too), and the condition number where the Hessian is positive definite.  ~60-200 products
- preconditioned_sharpness (Adam, AdamW: lambda_max(P^-1 H) against the adaptive edge of
  stability (2 + 2 beta1) / ((1 - beta1) lr), Cohen et al. 2022; Shampoo: with its roots,
  against 2 / lr; param groups of several rates as analysis.sharpness states), warm-started
  like lambda_max.                                                             ~2-10 products
- gradient_noise: from the probe's per-example gradients (torch.func.vmap), the simple gradient
  noise scale B = tr(Sigma) / |G|^2 (McCandlish et al. 2018; |G|^2 estimated without bias as
  |mean g|^2 - tr(Sigma) / n, NaN where the noise swamps it) and the probe gradient's
  signal-to-noise ratio |mean g|^2 / (tr(Sigma) / n).                          n per-example gradients
- trace: the trace of the probe loss's Hessian by Hutch++ (99 products).
- dimension: the intrinsic dimension (TwoNN and the Levina-Bickel MLE) of the inputs of every
  Linear layer (the representation before it), or of the modules named in `layers`, on up to 1000
  probe examples.
The learning rate is read from the optimizer's first param group at each measurement, so
schedules apply. The measures see the network without dropout (a random loss has no Hessian;
BatchNorm stays in the model's mode), leave its buffers as they were (a forward in training mode
updates BatchNorm's running statistics) and draw nothing from the loop's random number generators,
so a training measured follows the same trajectory as one that is not.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch.func import functional_call, grad, vmap

from losslab.analysis.curvature import HessianOperator, extreme_eigenpairs, hessian_trace, random_start
from losslab.analysis.objective import NonFiniteLoss, Objective
from losslab.analysis.sharpness import preconditioned_sharpness, preconditioner_refusal
from losslab.core.errors import LossLabError
from losslab.core.memory import check_fits
from losslab.store.records import MetricRow

MEASURES = ("grad_norm", "weight_norms", "spectral_norms", "cosines", "sharpness", "lambda_min",
            "preconditioned_sharpness", "gradient_noise", "trace", "dimension")
DIMENSION_EXAMPLES = 1000
# per-example gradients held at once: up to 256, in at most 64 MB (measured: a grokking transformer's
# 223k parameters take 343 ms for 256 examples in chunks of 64, 557 ms in one of 256; the digits
# CNN's 1.9k, 5 ms in one chunk, 11 ms in chunks of 64)
NOISE_CHUNK, NOISE_CHUNK_BYTES = 256, 2**26
# Lanczos's relative residual for the tracked top eigenvalues (the default `tolerance`): a Ritz
# value's error is about the square of its residual over the spectral gap (and never more than the
# residual), so 1e-2 leaves lambda_max and the preconditioned lambda_max right to ~1e-4, far finer
# than their step-to-step motion (measured against eigsh at 1e-10, every 100 steps: at worst 1.5e-4
# over 2,000 steps of the digits CNN, 1.8e-4 over 600 of the grokking transformer). Warm-started,
# Lanczos stops there after 3.6 products on average on the CNN (64 probe examples), 4.7 at 1e-3
# (which gives ~1e-6).
TRACKING_TOL = 1e-2


@contextmanager
def deterministic(model: torch.nn.Module) -> Iterator[None]:
    """The model's dropout layers off and the random number generators (the CPU's, and the
    model's CUDA device's) restored after, whatever the measures drew. (Its buffers need no
    restoring: every forward of the measures runs on copies of them.)"""
    dropouts = [m for m in model.modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.training]
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else [], device_type=device.type):
        for m in dropouts:
            m.eval()
        try:
            yield
        finally:
            for m in dropouts:
                m.train()


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()).clamp_min(1e-30))


def per_example_gradients(obj: Objective):
    """(params, x, y) -> the gradient of each example's loss (torch.func: vmap of grad)."""
    if obj.forward_fn is not None:
        raise LossLabError("gradient noise takes per-example losses: give (inputs, targets) batches and loss=, "
                           "not forward=")

    def one(p, x, y):
        out = functional_call(obj.model, {**obj.buffers, **p}, (x[None],))
        return obj.loss_fn(out, y[None])
    return vmap(grad(one), in_dims=(None, 0, 0))


def check_per_example(obj: Objective) -> None:
    """The per-example gradients of the first two examples, now: a forward that has none (BatchNorm
    in training mode normalizes an example by its batch, and updates its statistics in place, which
    vmap refuses) is one line before training, not a crash at the first measurement."""
    x, y, *_ = next(iter(obj.batches()))
    try:
        per_example_gradients(obj)(obj.params, x[:2], y[:2])
    except (RuntimeError, ValueError) as e:
        normalized = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training
                         for m in obj.model.modules())
        why = ("BatchNorm in training mode normalizes each example by its batch (use GroupNorm or LayerNorm, or "
               "leave gradient_noise out)" if normalized else str(e).splitlines()[0])
        raise LossLabError(f"gradient_noise takes per-example gradients (torch.func.vmap), which this model has "
                           f"not: {why}") from None


def gradient_noise(obj: Objective) -> tuple[float, float]:
    """(B_simple, SNR) of the objective's data from its per-example gradients (see the module);
    every batch of the objective is a set of examples, each example's loss its own."""
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


class Measurements:
    """The chosen measures of a model on its probe data, with what they carry from one
    measurement to the next (the previous weights, the Lanczos warm starts)."""

    def __init__(self, model: torch.nn.Module, loss_fn, data, optimizer: torch.optim.Optimizer,
                 measures: set[str] | list[str], inputs: torch.Tensor | None = None, layers: list[str] | None = None,
                 tolerance: float = TRACKING_TOL, forward=None):
        """The probe's objective is `loss_fn` on `data` (or `forward`, for dict batches and other
        losses), in the mode the model trains in: batch statistics while it trains, dropout off."""
        unknown = sorted(set(measures) - set(MEASURES))
        if unknown:
            raise LossLabError(f"unknown measures {unknown} (known: {', '.join(MEASURES)})")
        if layers is not None:
            if "dimension" not in measures:
                raise LossLabError("layers chooses where the dimension measure looks: add 'dimension' to the measures")
            modules = dict(model.named_modules())
            missing = [n for n in layers if n not in modules or n == ""]
            if missing or not layers:
                raise LossLabError(f"layers {missing} are not modules of the model (its modules: "
                                   f"{', '.join(list(n for n in modules if n)[:8])}, ...)")
        if not 0 < tolerance < 1:
            raise LossLabError(f"tolerance is Lanczos's relative residual, between 0 and 1; got {tolerance!r}")
        refusal = preconditioner_refusal(optimizer) if "preconditioned_sharpness" in measures else None
        if refusal:
            raise LossLabError(refusal)
        self.model, self.loss_fn, self.data, self.optimizer = model, loss_fn, data, optimizer
        self.forward = forward
        self.measures, self.tolerance = set(measures), tolerance
        self.inputs = None if inputs is None else inputs[:DIMENSION_EXAMPLES]
        self.layers = layers
        self.theta0 = torch.cat([p.detach().flatten().clone() for p in model.parameters()]) \
            if "cosines" in measures else None
        self.previous: torch.Tensor | None = None
        self.objective: Objective | None = None  # the probe's: built at the first measurement, then refreshed
        self.warm: dict[str, np.ndarray] = {}
        self._before_step, self._before = None, (None, {})  # the state before the last measurement, and its step

    def state(self, step: int) -> dict:
        """What the measurement at `step` starts from (the previous weights, the warm starts): in
        the checkpoint of `step`, so that a resumed run, which measures `step` again, measures what
        the uninterrupted one did."""
        previous, warm = self._before if self._before_step == step else (self.previous, self.warm)
        return {"previous": previous, "warm": {k: torch.from_numpy(v) for k, v in warm.items()}}

    def restore(self, state: dict) -> None:
        self.previous = state.get("previous")
        self.warm = {k: v.numpy() for k, v in state.get("warm", {}).items()}

    def measure(self, step: int) -> list[MetricRow]:
        if not self.measures:  # no probe to build at every reading of a loop that only keeps its loss
            return []
        with deterministic(self.model):
            return self._measure(step)

    def _measure(self, step: int) -> list[MetricRow]:
        self._before_step, self._before = step, (self.previous, dict(self.warm))
        try:  # the probe data are read and checked once: a loader's two passes, not two a measurement
            self.objective = obj = Objective(self.model, self.loss_fn, self.data, forward=self.forward,
                                             mode="train" if self.model.training else "eval") \
                if self.objective is None else self.objective.refreshed()
        except NonFiniteLoss:  # diverged: nothing to measure (the Trainer stops at its evaluation; a loop goes on)
            return []
        rows: list[MetricRow] = []

        def add(name: str, value) -> None:
            rows.append(MetricRow(step, "probe", name, float(value)))
        m = self.measures
        lr = self.optimizer.param_groups[0]["lr"]
        h = HessianOperator(obj) if m & {"sharpness", "lambda_min", "preconditioned_sharpness", "trace"} else None
        if "grad_norm" in m:
            add("grad_norm", (h.grad if h is not None else obj.value_and_grad()[1]).norm())
        if "cosines" in m:
            flat = obj.flatten(obj.params)
            add("cos_theta0", _cos(flat, self.theta0))
            if self.previous is not None:
                add("cos_previous", _cos(flat, self.previous))
            self.previous = flat.clone()
        for name, w in obj.params.items():
            if w.ndim == 2 and "weight_norms" in m:
                add(f"norm_fro/{name}", torch.linalg.matrix_norm(w))
            if w.ndim == 2 and "spectral_norms" in m:
                add(f"norm_spec/{name}", torch.linalg.matrix_norm(w, ord=2))
        if "dimension" in m and self.inputs is not None:
            from losslab.analysis.dimension import layer_inputs, levina_bickel, two_nn  # scikit-learn: only here

            for layer, acts in layer_inputs(self.model, self.inputs, self.layers).items():
                try:
                    add(f"dim_twonn/{layer}", two_nn(acts))
                    add(f"dim_mle/{layer}", levina_bickel(acts))
                except ValueError:  # collapsed: too few distinct representations
                    continue
        if m & {"sharpness", "lambda_min"}:
            top = self._extreme(h, "top", tol=self.tolerance)
        if "sharpness" in m:
            add("lambda_max", top)
            add("edge_of_stability", 2 / lr)
        if "lambda_min" in m:
            # to 1e-4 of lambda_max: near a cluster at 0, a tolerance relative to itself costs 30x the products
            add("lambda_min", bottom := self._extreme(h, "bottom", tol=1e-4, scale=top))
            if "sharpness" in m and bottom > 0:  # positive definite: otherwise there is no condition number
                add("condition_number", top / bottom)
        if "preconditioned_sharpness" in m and self.optimizer.state:  # from the first step on
            pre = preconditioned_sharpness(obj, self.optimizer, operator=h, v0=self._start("preconditioned", h.size),
                                           tol=self.tolerance)
            self.warm["preconditioned"] = pre.vector
            add("preconditioned_lambda_max", pre.lambda_max)
            add("adaptive_edge_of_stability", pre.threshold)
        if "trace" in m:
            add("hessian_trace", hessian_trace(h).estimate)
        if "gradient_noise" in m:
            scale, snr = gradient_noise(obj)
            add("gradient_noise_scale", scale)
            add("gradient_snr", snr)
        return rows

    def _extreme(self, h: HessianOperator, side: str, **tolerance) -> float:
        v0 = self._start(side, h.size) if side == "top" else self.warm.get(side)
        values, vectors = extreme_eigenpairs(h, 1, side, v0=v0, **tolerance)
        self.warm[side] = vectors[:, 0]  # the next measurement starts from here
        return float(values[0])

    def _start(self, name: str, size: int) -> np.ndarray:
        """Where a tracked top eigenvector's Lanczos starts: the previous measurement's vector, or at
        the first a fixed random one. Even cold, losslab's Lanczos, which checks its residual after
        every product, stops at the tolerance in a few products where the top is apart from the rest
        (5-9 on the digits CNN), where ARPACK would first fill a basis of 20."""
        return self.warm[name] if name in self.warm else random_start(size)
