"""Sharpness of a minimum: the worst loss increase in a neighbourhood of the weights.

- SAM sharpness (Foret et al.): max over ||eps||_2 <= rho of L(w + eps) - L(w), by projected
  gradient ascent (normalized steps of rho / 4, projection onto the ball) from several starts:
  the SAM perturbation rho g / ||g|| and random points of the sphere, each ascending until its
  best rise grew by less than `tol` (relative) over PATIENCE steps, or `steps` at most. On a
  quadratic at its minimum it is rho^2 lambda_max / 2.
- Keskar et al. (2017): 100 * (max over the box |eps_i| <= eps (|w_i| + 1) of L(w + eps) - L(w))
  / (1 + L(w)), by projected ascent with sign steps (the box's geometry).
- Preconditioned sharpness (Cohen et al. 2022): lambda_max(P^-1 H) for the preconditioner of a
  torch optimizer, read from its own state: Adam and AdamW, P = diag(sqrt(v_hat) + eps), against
  the stability threshold (2 + 2 beta1) / ((1 - beta1) lr); losslab's Shampoo,
  P^-1 = L^-1/4 (x) R^-1/4 (its stored roots; AdaGrad's diagonal on vectors), without grafting's
  per-layer rescaling, against 2 / lr.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from losslab.analysis.curvature import CurvatureOperator, HessianOperator, extreme_eigenpairs
from losslab.analysis.objective import Objective
from losslab.core import progress
from losslab.core.errors import LossLabError
from losslab.optim.shampoo import Shampoo


@dataclass
class Sharpness:
    measure: str  # "sam" or "keskar"
    radius: float  # rho, or Keskar's eps
    sharpness: float
    loss: float
    steps: int
    starts: int
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def _shifted_value_and_grad(obj: Objective, eps: torch.Tensor) -> tuple[float, torch.Tensor]:
    progress.advance()  # the ascents' unit of work: one gradient
    return obj.value_and_grad(obj.shifted(eps))


def _unit(v: torch.Tensor) -> torch.Tensor:
    """v / ||v||, or 0 for a zero (or underflowing) v: no 1e-12 added to the norm, which would
    shrink the step of a float32 gradient of norm ~1e-15 to a fraction of its length."""
    norm = v.norm()
    return v / norm if float(norm) > 0 else torch.zeros_like(v)


PATIENCE = 5  # steps without a relative rise of `tol` that end an ascent


def sam_sharpness(obj: Objective, rho: float = 0.05, steps: int = 1000, restarts: int = 3, seed: int = 0,
                  tol: float = 1e-4) -> Sharpness:
    """SAM's sharpness: the largest rise of the loss within a ball of radius rho around the point.

    max over ||e|| <= rho of L(theta + e) - L(theta) (Foret et al. 2021), by projected gradient
    ascent from the gradient (as SAM's own step) and `restarts` random starts, each ascent
    stopping where its best rise no longer grows by `tol` of itself.

    Args:
        obj: the objective.
        rho: the ball's radius.
        steps: the most gradient steps an ascent takes.
        restarts: random starts besides the gradient's; the largest rise counts.
        seed: the random starts' seed.
        tol: an ascent stops where its best rise grows by less than this fraction.

    Returns:
        Sharpness: `sharpness` (the rise), the loss at the point, the gradients taken (`steps`) and
            the starts.

    Cost: `steps` gradients at most per start (each a pass over the data).

    Examples:
        >>> s = ll.sam_sharpness(obj, rho=0.05)
        >>> s.sharpness > 0
        True
    """
    if not rho > 0:
        raise LossLabError(f"rho must be > 0, got {rho}")
    if not tol >= 0:
        raise LossLabError(f"tol must be >= 0, got {tol}")
    started = time.perf_counter()
    w = obj.flatten(obj.params)
    base, g0 = _shifted_value_and_grad(obj, torch.zeros_like(w))
    gen = torch.Generator(device=w.device).manual_seed(seed)
    starts = [rho * _unit(g0)] if float(g0.norm()) > 0 else []  # at an exact minimum g = 0: random starts only
    starts += [rho * _unit(torch.randn(w.shape, generator=gen, device=w.device, dtype=w.dtype))
               for _ in range(restarts)]
    best, taken = 0.0, 0
    for eps in starts:
        rise, still = -math.inf, 0
        for _ in range(steps):
            value, g = _shifted_value_and_grad(obj, eps)
            taken += 1
            still = still + 1 if value - base <= rise + tol * abs(rise) else 0
            rise = max(rise, value - base)
            if still >= PATIENCE:
                break
            eps = eps + (rho / 4) * _unit(g)
            eps = eps * min(1.0, rho / max(float(eps.norm()), 1e-300))
        best = max(best, rise, obj.loss(obj.shifted(eps)) - base)
    return Sharpness("sam", rho, best, base, taken, len(starts), round(time.perf_counter() - started, 3))


def keskar_sharpness(obj: Objective, eps: float = 1e-3, steps: int = 20, seed: int = 0) -> Sharpness:
    """Keskar et al.'s (2017) sharpness: the largest relative rise of the loss within a box around the point.

    max over |e_i| <= eps (|theta_i| + 1) of (L(theta + e) - L(theta)) / (1 + L(theta)) * 100, by
    projected gradient ascent.

    Args:
        obj: the objective.
        eps: the box's relative half-width.
        steps: the gradient steps of the ascent.
        seed: the random start's seed.

    Returns:
        Sharpness: the rise in percent, the loss at the point, the gradients taken.

    Cost: `steps` gradients (each a pass over the data).

    Examples:
        >>> ll.keskar_sharpness(obj, eps=1e-3).measure
        'keskar'
    """
    if not eps > 0:
        raise LossLabError(f"eps must be > 0, got {eps}")
    started = time.perf_counter()
    w = obj.flatten(obj.params)
    box = eps * (w.abs() + 1)
    base = obj.value
    gen = torch.Generator(device=w.device).manual_seed(seed)
    delta = box * (2 * torch.rand(w.shape, generator=gen, device=w.device, dtype=w.dtype) - 1)  # at a minimum g = 0
    best, g = _shifted_value_and_grad(obj, delta)
    for _ in range(steps):
        delta = torch.clamp(delta + (box / 4) * g.sign(), -box, box)
        value, g = _shifted_value_and_grad(obj, delta)
        best = max(best, value)
    return Sharpness("keskar", eps, 100 * (best - base) / (1 + base), base, steps, 1,
                     round(time.perf_counter() - started, 3))


# ---------------------------------------------------------------- preconditioned


@dataclass
class Preconditioned:
    optimizer: str
    lambda_max: float  # of P^-1 H
    threshold: float  # where it is compared: the adaptive edge of stability
    products: int
    seconds: float = 0.0
    vector: np.ndarray | None = field(default=None, repr=False)  # of P^-1/2 H P^-1/2, flat, on the CPU

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "vector"}


class _Symmetrized(CurvatureOperator):
    """P^-1/2 H P^-1/2 (its eigenvalues are those of P^-1 H), given v -> P^-1/2 v on flat vectors."""

    def __init__(self, h: HessianOperator, apply_inverse_sqrt: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__(h.obj)
        self.h, self.apply = h, apply_inverse_sqrt

    def _product(self, v: torch.Tensor) -> torch.Tensor:
        return self.apply(self.h._product(self.apply(v).to(self.dtype)))


def _states(obj: Objective, optimizer: torch.optim.Optimizer) -> tuple[list[dict], list[dict]]:
    """The optimizer's state of each of the objective's parameters (in its order), and the param
    group that holds each."""
    names = {id(p): n for n, p in obj.model.named_parameters()}
    groups = {names.get(id(p)): g for g in optimizer.param_groups for p in g["params"]}
    if not set(obj.params) <= set(groups):
        raise LossLabError("the optimizer does not hold every parameter of the objective")
    by_name = {names[id(p)]: optimizer.state.get(p, {}) for g in optimizer.param_groups for p in g["params"]}
    states = [by_name[n] for n in obj.params]
    if not all(states):
        raise LossLabError("the optimizer has no state yet (its preconditioner exists after its first step)")
    return states, [groups[n] for n in obj.params]


def _adam(h: HessianOperator, states: list[dict], groups: list[dict]) -> tuple[Callable, float]:
    if "exp_avg_sq" not in states[0]:
        raise LossLabError("the optimizer's state holds no Adam second moments")
    p = torch.cat([(s["exp_avg_sq"].flatten() / (1 - g["betas"][1] ** float(s["step"]))).sqrt() + g["eps"]
                   for s, g in zip(states, groups)])
    scale = p.to(h.device, torch.float64).rsqrt()
    beta1 = groups[0]["betas"][0]  # one for every group (preconditioner_refusal)
    return (lambda v: scale * v), (2 + 2 * beta1) / ((1 - beta1) * float(groups[0]["lr"]))


def _sqrt_spd(m: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(m.double())
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T


def _shampoo(h: HessianOperator, states: list[dict], groups: list[dict]) -> tuple[Callable, float]:
    factors = []  # per parameter: (left, right) square roots of the roots, or the diagonal scale
    for s, p, group in zip(states, h.obj.params.values(), groups):
        if "L_root" in s or "R_root" in s:
            left = _sqrt_spd(s["L_root"]).to(h.device) if "L_root" in s else None
            right = _sqrt_spd(s["R_root"]).to(h.device) if "R_root" in s else None
            factors.append((left, right, p.shape))
        else:
            factors.append(((s["diagonal"].double().sqrt() + group["graft_eps"]).rsqrt().flatten().to(h.device),
                            None, None))
    sizes = [p.numel() for p in h.obj.params.values()]

    def apply(v: torch.Tensor) -> torch.Tensor:
        out = []
        for (a, b, shape), piece in zip(factors, v.split(sizes)):
            if shape is None:
                out.append(a * piece)
                continue
            m = piece.view(shape[0], -1)
            m = a @ m if a is not None else m
            m = m @ b if b is not None else m
            out.append(m.flatten())
        return torch.cat(out)
    return apply, 2 / float(groups[0]["lr"])


def _preconditioners() -> dict[type, tuple[str, Callable]]:
    return {torch.optim.Adam: ("adam", _adam), torch.optim.AdamW: ("adamw", _adam), Shampoo: ("shampoo", _shampoo)}


def preconditioner_refusal(optimizer: torch.optim.Optimizer) -> str | None:
    """Why preconditioned_sharpness cannot read this optimizer, or None: it reads Adam's, AdamW's
    and losslab's Shampoo's state, with one beta1 over the param groups (Adam's threshold has it)."""
    if type(optimizer) not in _preconditioners():
        return f"preconditioned_sharpness reads the state of Adam, AdamW or Shampoo, not {type(optimizer).__name__}"
    beta1 = sorted({g["betas"][0] for g in optimizer.param_groups if "betas" in g})
    if len(beta1) > 1:
        return (f"preconditioned_sharpness compares with (2 + 2 beta1) / ((1 - beta1) lr), and the param groups' "
                f"beta1 differ ({', '.join(map(str, beta1))})")
    return None


def preconditioned_sharpness(obj: Objective, optimizer: torch.optim.Optimizer,
                             operator: HessianOperator | None = None, v0: np.ndarray | None = None,
                             tol: float = 1e-6) -> Preconditioned:
    """lambda_max(P^-1 H): the sharpness an adaptive optimizer sees, against its stability threshold.

    P is the preconditioner in the optimizer's own state (Adam's and AdamW's sqrt(v_hat) + eps, or
    losslab's Shampoo's Kronecker factors). Adam is stable while lambda_max(P^-1 H) stays below
    (2 + 2 beta1) / ((1 - beta1) lr) (Cohen et al. 2022, adaptive edge of stability). With param groups
    of several rates the threshold is at the first group's rate and a parameter of rate lr_g is
    preconditioned by P lr / lr_g: the step the optimizer takes is the same.

    Args:
        obj: the objective, over the optimizer's model.
        optimizer: an Adam, AdamW or losslab Shampoo optimizer that has taken a step.
        operator: a Hessian operator of this objective already built, to reuse.
        v0: a warm start (the previous measurement's `vector`).
        tol: Lanczos's relative residual (see `extreme_eigenpairs`).

    Returns:
        Preconditioned: `lambda_max`, `threshold`, the products taken and the top `vector`.

    Raises:
        LossLabError: another optimizer, no state yet, param groups of different beta1, or an
            optimizer over parameters the objective does not hold.

    Cost: 5 to 10 Hessian-vector products warm; more from a random start.

    Examples:
        >>> adam = torch.optim.Adam(model.parameters(), lr=1e-2)
        >>> F.cross_entropy(model(x), y).backward(); adam.step()
        >>> p = ll.preconditioned_sharpness(ll.Objective(model, F.cross_entropy, (x, y)), adam)
        >>> round(p.threshold, 6)  # (2 + 2 * 0.9) / (0.1 * 0.01)
        3800.0
    """
    refusal = preconditioner_refusal(optimizer)
    if refusal:
        raise LossLabError(refusal)
    started = time.perf_counter()
    states, groups = _states(obj, optimizer)
    h = operator or HessianOperator(obj)
    kind, precondition = _preconditioners()[type(optimizer)]
    apply, threshold = precondition(h, states, groups)
    rates = [float(g["lr"]) / float(groups[0]["lr"]) for g in groups]
    if any(rate != 1 for rate in rates):  # one number per parameter: it commutes with its block of P^-1/2
        spread = torch.cat([torch.full((p.numel(),), math.sqrt(rate), dtype=torch.float64, device=h.device)
                            for rate, p in zip(rates, obj.params.values())])
        op = _Symmetrized(h, lambda v: spread * apply(v))
    else:
        op = _Symmetrized(h, apply)
    values, vectors = extreme_eigenpairs(op, 1, "top", tol=tol, v0=v0)
    return Preconditioned(kind, float(values[0]), threshold, op.products, round(time.perf_counter() - started, 3),
                          vectors[:, 0])
