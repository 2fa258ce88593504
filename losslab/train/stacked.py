"""The optimizer step of K runs at once, over their stacked parameters (losslab.train.batched).

torch.optim steps one model at a time, so K small models pay its per-call cost K times a step.
For the common optimizers (SGD with or without momentum, Adam, AdamW, with torch's defaults for
the other flags) the same arithmetic is written here on stacks: each hyperparameter is a column
of K values, read from the runs' own param groups at every step (so their schedules and a
weight-decay switch apply). Each run's torch optimizer holds views of its row of the stacked
state, so its state_dict (checkpoints, resume) is torch's own.
"""

from __future__ import annotations

import torch

# flags of torch's SGD and Adam(W) that must be off (their defaults) to step here
_OFF = {"sgd": ("dampening", "maximize", "differentiable", "fused"),
        "adam": ("amsgrad", "maximize", "capturable", "differentiable", "fused")}
# flags the runs must share; the other hyperparameters may differ from run to run
_SHARED = {"sgd": ("nesterov",), "adam": ("decoupled_weight_decay",)}
_STATE = {"sgd": ("momentum_buffer",), "adam": ("step", "exp_avg", "exp_avg_sq")}
_HYPER = {"sgd": ("lr", "weight_decay", "momentum"), "adam": ("lr", "weight_decay", "betas", "eps")}


def _kind(optimizer: torch.optim.Optimizer) -> str | None:
    return {torch.optim.SGD: "sgd", torch.optim.Adam: "adam", torch.optim.AdamW: "adam"}.get(type(optimizer))


def stackable(optimizers: list[torch.optim.Optimizer]) -> str | None:
    """'sgd' or 'adam' if these optimizers can be stepped together here, else None."""
    kinds = {_kind(o) for o in optimizers}
    if len(kinds) != 1 or None in kinds or any(len(o.param_groups) != 1 for o in optimizers):
        return None
    kind = kinds.pop()
    groups = [o.param_groups[0] for o in optimizers]
    if any(g[flag] for g in groups for flag in _OFF[kind]):
        return None
    if any(g[flag] != groups[0][flag] for g in groups for flag in _SHARED[kind]):
        return None
    return kind


def _column(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """K values (computed in float64, as torch computes its scalars in Python) shaped to broadcast
    over a stacked tensor like `like` ([K, ...]) and of its dtype."""
    return values.to(like.device, like.dtype).view(-1, *[1] * (like.ndim - 1))


class StackedOptimizer:
    def __init__(self, optimizers: list[torch.optim.Optimizer], stack: dict[str, torch.Tensor],
                 params: list[list[torch.nn.Parameter]]):
        """`optimizers` (stackable) of K runs whose parameters `params[k]` are the rows k of
        `stack` (by name, in the same order)."""
        self.kind = stackable(optimizers)
        self.optimizers, self.params = optimizers, params
        self.groups = [o.param_groups[0] for o in optimizers]
        self.stack = stack
        self.state = {name: {key: torch.zeros(len(s)) if key == "step" else torch.zeros_like(s.data)
                             for key in _STATE[self.kind]} for name, s in stack.items()}
        self._adopted: set[int] = set()
        for k, o in enumerate(optimizers):
            if o.state:  # a resumed run's moments and step counts
                self._adopt(k)

    def _adopt(self, k: int) -> None:
        """Run k's optimizer state becomes views of row k of the stacked state (its values copied
        in first, for a resumed run). Done at a fresh run's first step, where torch creates it."""
        self._adopted.add(k)
        if self.kind == "sgd" and not self.groups[k]["momentum"]:
            return  # torch keeps no state for SGD without momentum
        for i, name in enumerate(self.stack):
            state = self.optimizers[k].state[self.params[k][i]]
            for key, stacked in self.state[name].items():
                if state.get(key) is not None:
                    stacked[k] = state[key]
                state[key] = stacked[k]

    @torch.no_grad()
    def step(self, rows: list[int]) -> None:
        """One step of the runs `rows` (indices into the stack) from the gradients in stack[...].grad."""
        for k in set(rows) - self._adopted:
            self._adopt(k)
        index = None if len(rows) == len(self.groups) else torch.tensor(rows)  # None: every run, in place
        hyper = {key: torch.tensor([self.groups[k][key] for k in rows], dtype=torch.float64)
                 for key in _HYPER[self.kind]}
        shared = self.groups[rows[0]]
        for name, s in self.stack.items():
            p, g, state = s.data, s.grad, self.state[name]
            if index is not None:
                p, g, state = p[index], g[index], {key: v[index] for key, v in state.items()}
            (self._sgd if self.kind == "sgd" else self._adam)(p, g, state, hyper, shared)
            if index is not None:
                s.data[index] = p
                for key, v in state.items():
                    self.state[name][key][index] = v

    @staticmethod
    def _sgd(p: torch.Tensor, g: torch.Tensor, state: dict, hyper: dict, shared: dict) -> None:
        g = g + _column(hyper["weight_decay"], p) * p
        if hyper["momentum"].any():
            momentum = _column(hyper["momentum"], p)
            buf = state["momentum_buffer"].mul_(momentum).add_(g)  # zero at first: buf = g, as torch
            g = g + momentum * buf if shared["nesterov"] else buf
        p.addcmul_(_column(hyper["lr"], p), g, value=-1)

    @staticmethod
    def _adam(p: torch.Tensor, g: torch.Tensor, state: dict, hyper: dict, shared: dict) -> None:
        lr, weight_decay, eps = hyper["lr"], hyper["weight_decay"], hyper["eps"]
        beta1, beta2 = hyper["betas"].T
        step = state["step"].add_(1).double()
        if shared["decoupled_weight_decay"]:
            p.mul_(_column(1 - lr * weight_decay, p))
        else:
            g = g + _column(weight_decay, p) * p
        state["exp_avg"].lerp_(g, _column(1 - beta1, p))
        state["exp_avg_sq"].mul_(_column(beta2, p)).add_(_column(1 - beta2, p) * g * g)
        step_size = _column(lr / (1 - beta1 ** step), p)
        denom = (state["exp_avg_sq"].sqrt() / _column((1 - beta2 ** step).sqrt(), p))
        denom.add_(_column(eps, p))
        p.sub_(step_size * (state["exp_avg"] / denom))
