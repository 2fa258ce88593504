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
    """Grokfast-EMA (Lee et al. 2024): the gradient's slow component amplified before the step.

    g <- g + lamb * EMA_alpha(g): the exponential moving average of the gradients, a low-pass filter,
    added back lamb times, around any base optimizer. Grokfast's own comparison gave its filtered
    runs weight decay and its baseline none: `losslab speedup` compares them at matched settings.

    Args:
        params: the parameters, or param groups.
        base_optimizer_cls: the optimizer that takes the step (AdamW by default).
        alpha: the moving average's decay.
        lamb: the amplification.
        **base_kwargs: the base optimizer's arguments.

    Examples:
        >>> from losslab.optim import GrokfastEMA
        >>> opt = GrokfastEMA(model.parameters(), torch.optim.AdamW, alpha=0.98, lamb=2.0, lr=1e-3)
        >>> F.cross_entropy(model(x), y).backward(); opt.step()
    """

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
    """Grokfast-MA (Lee et al. 2024): the mean of the last `window` gradients amplified before the step.

    g <- g + lamb * mean(last `window` gradients), around any base optimizer; the window is a ring
    buffer of `window` copies of the parameters.

    Args:
        params: the parameters, or param groups.
        base_optimizer_cls: the optimizer that takes the step (AdamW by default).
        window: the gradients averaged.
        lamb: the amplification.
        **base_kwargs: the base optimizer's arguments.

    Examples:
        >>> from losslab.optim import GrokfastMA
        >>> opt = GrokfastMA(model.parameters(), torch.optim.AdamW, window=10, lamb=5.0, lr=1e-3)
        >>> F.cross_entropy(model(x), y).backward(); opt.step()
    """

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
