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


class GrokfastEMA(WrappedOptimizer):
    """`GrokfastEMA(params, torch.optim.AdamW, alpha=0.98, lamb=2.0, lr=1e-3)`."""

    needs_closure = False

    def __init__(self, params, base_optimizer_cls: type[torch.optim.Optimizer] = torch.optim.AdamW,
                 alpha: float = 0.98, lamb: float = 2.0, **base_kwargs):
        if not 0 <= alpha < 1:
            raise ValueError(f"alpha must be in [0, 1), got {alpha}")
        if not lamb >= 0:
            raise ValueError(f"lamb must be >= 0, got {lamb}")
        super().__init__(params, base_optimizer_cls, {"alpha": alpha, "lamb": lamb}, **base_kwargs)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "ema" not in state:
                    state["ema"] = p.grad.clone()
                else:
                    state["ema"].lerp_(p.grad, 1 - group["alpha"])
                p.grad.add_(state["ema"], alpha=group["lamb"])
        return self.base_optimizer.step(closure)


class GrokfastMA(WrappedOptimizer):
    """`GrokfastMA(params, torch.optim.AdamW, window=100, lamb=5.0, lr=1e-3)`: the moving average of
    the last `window` gradients (kept in a ring buffer: `window` copies of the parameters)."""

    needs_closure = False

    def __init__(self, params, base_optimizer_cls: type[torch.optim.Optimizer] = torch.optim.AdamW,
                 window: int = 100, lamb: float = 5.0, **base_kwargs):
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if not lamb >= 0:
            raise ValueError(f"lamb must be >= 0, got {lamb}")
        super().__init__(params, base_optimizer_cls, {"window": window, "lamb": lamb}, **base_kwargs)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            window = group["window"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "history" not in state:
                    state["history"] = torch.zeros(window, *p.shape, dtype=p.dtype, device=p.device)
                    state["seen"] = 0
                state["history"][state["seen"] % window] = p.grad
                state["seen"] += 1
                if state["seen"] >= window:  # no filter until the window is full, as in the reference
                    p.grad.add_(state["history"].mean(dim=0), alpha=group["lamb"])
        return self.base_optimizer.step(closure)
