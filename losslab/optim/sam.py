"""Sharpness-aware minimization (Foret et al. 2021) and adaptive SAM (Kwon et al. 2021).

The first step moves the weights to w + eps_hat, the maximizer of the first-order
expansion of L(w + eps) over the l_p ball of radius rho:

    eps_hat = rho * sign(g) * |g|^(q-1) / ||g||_q^(q-1),   1/p + 1/q = 1,

so p = 2 gives rho * g / ||g||_2, p = inf gives rho * sign(g), and p = 1 puts all of rho on
the largest coordinate(s) of |g|. The norm runs over all parameters together. ASAM
(adaptive=True) takes the ball in the coordinates scaled by T_w = |w|:
eps = T_w * eps_hat(T_w * g). The second step restores w and lets the base optimizer step
with the gradient taken at w + eps_hat (second-order terms dropped, as in the paper).
All per-parameter work is done with foreach kernels.
"""

from __future__ import annotations

import math

import torch

from losslab.optim.wrapper import WrappedOptimizer


def sam_perturbation(grads: list[torch.Tensor], rho: float, p: float) -> list[torch.Tensor]:
    """eps_hat for the gradient `grads` (one tensor per parameter) over the l_p ball of radius rho."""
    if p == 2:  # the common case: g / max|g| first, so that a gradient of norm 1e-15 (or 1e-30) is not
        # swamped by an epsilon on its norm; a zero gradient gives a zero step, with no host sync
        top = torch.stack(torch._foreach_norm(grads, math.inf)).max().clamp_min(torch.finfo(grads[0].dtype).tiny)
        scaled = torch._foreach_div(grads, top)
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(scaled)))
        return torch._foreach_mul(scaled, rho / norm.clamp_min(1.0))  # norm >= 1 unless g = 0
    signs = torch._foreach_sign(grads)
    if math.isinf(p):  # q = 1: every coordinate moves by rho
        return torch._foreach_mul(signs, rho)
    magnitudes = torch._foreach_abs(grads)
    top = torch.stack(torch._foreach_norm(magnitudes, math.inf)).max().clamp_min(1e-30)
    scaled = torch._foreach_div(magnitudes, top)  # |g| / max|g| in [0, 1]: no overflow of |g|^(q-1)
    if p == 1:  # q = inf: all of rho on the largest coordinates, split evenly among ties
        at_top = [(s == 1).to(s.dtype) for s in scaled]
        count = sum(a.sum() for a in at_top)
        return torch._foreach_mul(torch._foreach_mul(signs, at_top), rho / count)
    q = p / (p - 1)
    powered = torch._foreach_pow(scaled, q - 1)
    norm_q = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(scaled, q)), q)
    return torch._foreach_mul(torch._foreach_mul(signs, powered), rho / norm_q ** (q - 1))


class SAM(WrappedOptimizer):
    """Sharpness-aware minimization around any torch optimizer (Foret et al. 2021).

    Each step first ascends to w + eps with eps = rho sign(g) |g|^(q-1) / ||g||_q^(q-1) (the worst
    point of the p-norm ball of radius rho to first order, 1/p + 1/q = 1; p = 2: rho g / ||g||), takes
    the gradient there, returns to w and lets the base optimizer step with it. `adaptive=True` is
    ASAM (Kwon et al. 2021): the ball scaled by |w|. The reference code's API: `first_step`, a second
    forward and backward, `second_step`; or `step(closure)`.

    Args:
        params: the parameters, or param groups.
        base_optimizer_cls: the optimizer that takes the step (SGD by default).
        rho: the ball's radius.
        p: the ball's norm, in [1, inf].
        adaptive: ASAM's scale-invariant ball.
        **base_kwargs: the base optimizer's arguments (lr, momentum, ...).

    Examples:
        >>> from losslab.optim import SAM
        >>> opt = SAM(model.parameters(), torch.optim.SGD, rho=0.05, lr=0.1)
        >>> F.cross_entropy(model(x), y).backward()
        >>> opt.first_step(zero_grad=True)
        >>> F.cross_entropy(model(x), y).backward()
        >>> opt.second_step(zero_grad=True)
    """

    def __init__(self, params, base_optimizer_cls: type[torch.optim.Optimizer] = torch.optim.SGD,
                 rho: float = 0.05, p: float = 2.0, adaptive: bool = False, **base_kwargs):
        if not rho > 0:
            raise ValueError(f"rho must be > 0, got {rho}")
        if not p >= 1:
            raise ValueError(f"p must be in [1, inf], got {p}")
        super().__init__(params, base_optimizer_cls, {"rho": rho, "p": p, "adaptive": adaptive}, **base_kwargs)
        self._saved: list[tuple[list[torch.Tensor], list[torch.Tensor]]] = []
        self._buffers: dict[torch.Tensor, torch.Tensor] = {}  # w during the step, allocated once

    def _buffer(self, p: torch.Tensor) -> torch.Tensor:
        if p not in self._buffers:
            self._buffers[p] = torch.empty_like(p)
        return self._buffers[p]

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        self._saved = []
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            if group["adaptive"]:
                scale = torch._foreach_abs(params)
                eps = torch._foreach_mul(sam_perturbation(torch._foreach_mul(grads, scale), group["rho"], group["p"]),
                                         scale)
            else:
                eps = sam_perturbation(grads, group["rho"], group["p"])
            weights = [self._buffer(p) for p in params]
            torch._foreach_copy_(weights, params)
            self._saved.append((params, weights))
            torch._foreach_add_(params, eps)
        if zero_grad:
            self.zero_grad(set_to_none=True)

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        for params, weights in self._saved:
            torch._foreach_copy_(params, weights)  # back to w exactly, then step with the gradient at w + eps
        self._saved = []
        self.base_optimizer.step()
        if zero_grad:
            self.zero_grad(set_to_none=True)

    def step(self, closure=None):
        """One SAM step; p.grad must hold the gradient at w, `closure` recomputes it."""
        if closure is None:
            raise ValueError("SAM.step needs a closure that recomputes the loss and its gradient")
        self.first_step(zero_grad=True)
        with torch.enable_grad():
            loss = closure()
        self.second_step()
        return loss
