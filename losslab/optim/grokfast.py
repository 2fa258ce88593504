"""Grokfast (Lee et al. 2024): amplify the slow component of the gradient, then let any base
optimizer step on it.

    EMA:  mu_t = alpha * mu_(t-1) + (1 - alpha) * g_t   (mu_0 = g_0),   g_hat = g + lamb * mu_t
    MA:   g_hat = g + lamb * mean(g_(t-window+1) .. g_t), once `window` gradients have been seen

Like the reference code, the base optimizer sees g_hat in p.grad. A slowly varying gradient is
multiplied by about (1 + lamb): the filter also raises the effective step size, which a fair
comparison must match (see the README's Grokfast section).
"""

from __future__ import annotations

import torch

from losslab.optim.wrapper import WrappedOptimizer


class GradientFilter(WrappedOptimizer):
    """p.grad += lamb * slow(p.grad), then the base optimizer's step; `slow` is the filter."""

    needs_closure = False

    def __init__(self, params, base_optimizer_cls, lamb: float, defaults: dict, **base_kwargs):
        if not lamb >= 0:
            raise ValueError(f"lamb must be >= 0, got {lamb}")
        super().__init__(params, base_optimizer_cls, {**defaults, "lamb": lamb}, **base_kwargs)

    def slow(self, state: dict, grad: torch.Tensor, group: dict) -> torch.Tensor | None:
        """The slow component of this parameter's gradient (None: not yet)."""
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None and (slow := self.slow(self.state[p], p.grad, group)) is not None:
                    p.grad.add_(slow, alpha=group["lamb"])
        return self.base_optimizer.step(closure)


class GrokfastEMA(GradientFilter):
    """`GrokfastEMA(params, torch.optim.AdamW, alpha=0.98, lamb=2.0, lr=1e-3)`."""

    def __init__(self, params, base_optimizer_cls: type[torch.optim.Optimizer] = torch.optim.AdamW,
                 alpha: float = 0.98, lamb: float = 2.0, **base_kwargs):
        if not 0 <= alpha < 1:
            raise ValueError(f"alpha must be in [0, 1), got {alpha}")
        super().__init__(params, base_optimizer_cls, lamb, {"alpha": alpha}, **base_kwargs)

    def slow(self, state, grad, group):
        if "ema" not in state:
            state["ema"] = grad.clone()
        else:
            state["ema"].lerp_(grad, 1 - group["alpha"])
        return state["ema"]


class GrokfastMA(GradientFilter):
    """`GrokfastMA(params, torch.optim.AdamW, window=100, lamb=5.0, lr=1e-3)`: the moving average of
    the last `window` gradients (kept in a ring buffer: `window` copies of the parameters)."""

    def __init__(self, params, base_optimizer_cls: type[torch.optim.Optimizer] = torch.optim.AdamW,
                 window: int = 100, lamb: float = 5.0, **base_kwargs):
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        super().__init__(params, base_optimizer_cls, lamb, {"window": window}, **base_kwargs)

    def slow(self, state, grad, group):
        window = group["window"]
        if "history" not in state:
            state["history"] = torch.zeros(window, *grad.shape, dtype=grad.dtype, device=grad.device)
            state["seen"] = 0
        state["history"][state["seen"] % window] = grad
        state["seen"] += 1
        # no filter until the window is full, as in the reference code
        return state["history"].mean(dim=0) if state["seen"] >= window else None
