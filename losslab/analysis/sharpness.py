"""Sharpness of a minimum: the worst loss increase in a neighbourhood of the weights.

- SAM sharpness (Foret et al.): max over ||eps||_2 <= rho of L(w + eps) - L(w), by projected
  gradient ascent (normalized steps of rho / 4, projection onto the ball) from several starts:
  the SAM perturbation rho g / ||g|| and random points of the sphere. On a quadratic at its
  minimum it is rho^2 lambda_max / 2.
- Keskar et al. (2017): 100 * (max over the box |eps_i| <= eps (|w_i| + 1) of L(w + eps) - L(w))
  / (1 + L(w)), by projected ascent with sign steps (the box's geometry).
- Preconditioned sharpness (Cohen et al. 2022): lambda_max(P^-1 H) for Adam's
  preconditioner P = diag(sqrt(v_hat) + eps), with the stability threshold
  (2 + 2 beta1) / ((1 - beta1) lr) it is compared to; and for Shampoo's
  P^-1 = L^-1/4 (x) R^-1/4 (its stored roots; AdaGrad's diagonal on vectors), without the
  per-layer rescaling of grafting, against 2 / lr.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator, eigsh
from threadpoolctl import threadpool_limits

from losslab.analysis.hessian import Hessian
from losslab.analysis.point import flatten, unflatten

Params = dict[str, torch.Tensor]


def _value_and_grad(loss_of: Callable[[Params], torch.Tensor], params: Params, eps: torch.Tensor):
    e = eps.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        value = loss_of({n: p + d for (n, p), d in zip(params.items(), unflatten(e, params).values())})
        (g,) = torch.autograd.grad(value, e)
    return float(value.detach()), g


def sam_sharpness(loss_of: Callable[[Params], torch.Tensor], params: Params, rho: float = 0.05, steps: int = 20,
                  restarts: int = 3, seed: int = 0) -> dict:
    w = flatten(params)
    base, g0 = _value_and_grad(loss_of, params, torch.zeros_like(w))
    gen = torch.Generator().manual_seed(seed)
    starts = [rho * g0 / g0.norm()] if g0.norm() > 0 else []  # at an exact minimum g = 0: random starts only
    starts += [rho * (r := torch.randn(w.shape, generator=gen, dtype=w.dtype)) / r.norm() for _ in range(restarts)]
    best = 0.0
    for eps in starts:
        for _ in range(steps):
            value, g = _value_and_grad(loss_of, params, eps)
            best = max(best, value - base)
            eps = eps + (rho / 4) * g / g.norm().clamp_min(1e-30)
            eps = eps * min(1.0, rho / max(float(eps.norm()), 1e-30))
        best = max(best, _value_and_grad(loss_of, params, eps)[0] - base)
    return {"rho": rho, "sharpness": best, "loss": base, "steps": steps, "starts": len(starts)}


def keskar_sharpness(loss_of: Callable[[Params], torch.Tensor], params: Params, eps: float = 1e-3,
                     steps: int = 20, seed: int = 0) -> dict:
    w = flatten(params)
    box = eps * (w.abs() + 1)
    base, _ = _value_and_grad(loss_of, params, torch.zeros_like(w))
    gen = torch.Generator().manual_seed(seed)
    delta = box * (2 * torch.rand(w.shape, generator=gen, dtype=w.dtype) - 1)  # at a minimum the gradient is 0
    best, g = _value_and_grad(loss_of, params, delta)
    for _ in range(steps):
        delta = torch.clamp(delta + (box / 4) * g.sign(), -box, box)
        value, g = _value_and_grad(loss_of, params, delta)
        best = max(best, value)
    return {"eps": eps, "sharpness": 100 * (best - base) / (1 + base), "loss": base, "steps": steps}


def adam_preconditioned_sharpness(h: Hessian, optimizer_state: dict) -> dict:
    """lambda_max(P^-1 H) = lambda_max(P^-1/2 H P^-1/2), P from Adam's bias-corrected second
    moments in a torch.optim Adam/AdamW state dict (one group, parameters in model order)."""
    state, group = optimizer_state["state"], optimizer_state["param_groups"][0]
    if len(group["params"]) != len(h.sizes) or not state or "exp_avg_sq" not in state[group["params"][0]]:
        raise ValueError("the optimizer state holds no Adam second moments for these parameters")
    beta1, beta2 = group["betas"]
    lr, eps = float(group["lr"]), group["eps"]
    step = float(state[group["params"][0]]["step"])
    p = torch.cat([(state[i]["exp_avg_sq"].flatten() / (1 - beta2**step)).sqrt() + eps for i in group["params"]])
    scale = p.double().rsqrt()
    value = _symmetrized_max(h, lambda v: scale * v)
    return {"preconditioned_lambda_max": value, "threshold": (2 + 2 * beta1) / ((1 - beta1) * lr),
            "adam_step": int(step)}


def _symmetrized_max(h: Hessian, apply_inverse_sqrt) -> float:
    """lambda_max(P^-1/2 H P^-1/2) given v -> P^-1/2 v on flat float64 vectors."""
    def matvec(x):
        v = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64).ravel())
        return apply_inverse_sqrt(h @ apply_inverse_sqrt(v)).numpy()
    op = LinearOperator((h.size, h.size), matvec=matvec, rmatvec=matvec, dtype=np.float64)
    with threadpool_limits(1, user_api="blas"):
        return float(eigsh(op, k=1, which="LA", tol=1e-6, v0=np.random.default_rng(0).standard_normal(h.size))[0][0])


def _sqrt_spd(m: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(m.double())
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T


def shampoo_preconditioned_sharpness(h: Hessian, optimizer_state: dict) -> dict:
    """lambda_max(P^-1 H) for Shampoo's preconditioner as stored in its state dict."""
    state, group = optimizer_state["state"], optimizer_state["param_groups"][0]
    if len(group["params"]) != len(h.sizes) or not state:
        raise ValueError("the optimizer state holds no Shampoo statistics for these parameters")
    factors = []  # per parameter: (left, right) square roots of the roots, or the diagonal scale
    for i, shape in zip(group["params"], h.shapes):
        s = state[i]
        if "L_root" in s or "R_root" in s:
            left = _sqrt_spd(s["L_root"]) if "L_root" in s else None
            right = _sqrt_spd(s["R_root"]) if "R_root" in s else None
            factors.append((left, right, shape))
        else:
            factors.append(((s["diagonal"].double().sqrt() + group["graft_eps"]).rsqrt().flatten(), None, None))

    def apply(v: torch.Tensor) -> torch.Tensor:
        out = []
        for (a, b, shape), piece in zip(factors, v.split(h.sizes)):
            if shape is None:
                out.append(a * piece)
                continue
            m = piece.view(shape[0], -1)
            m = a @ m if a is not None else m
            m = m @ b if b is not None else m
            out.append(m.flatten())
        return torch.cat(out)
    lr = float(group["lr"])
    return {"preconditioned_lambda_max": _symmetrized_max(h, apply), "threshold": 2 / lr}


# optimizer name (as in configs) -> lambda_max(P^-1 H) from its state dict
PRECONDITIONED = {"adam": adam_preconditioned_sharpness, "adamw": adam_preconditioned_sharpness,
                  "shampoo": shampoo_preconditioned_sharpness}
