"""SVRG (Johnson & Zhang 2013) and the gradient-variance probe of Defazio & Bottou (2019).

Every `snapshot_every` steps SVRG stores a snapshot w~ of the weights and the full
gradient mu = grad L(w~). Each step the base optimizer then sees

    v = g_B(w) - g_B(w~) + mu,

an unbiased estimate of grad L(w) whose variance vanishes as w and w~ approach a minimum.
`gradient_variance` measures, per parameter, E||g_B(w) - grad L(w)||^2 for SGD's estimate
and for SVRG's over a partition of the training set into minibatches: the ratio of the two
is Defazio & Bottou's measure of how much variance SVRG removes during training.
"""

from __future__ import annotations

import torch
from torch.func import functional_call, grad

from losslab.optim.wrapper import WrappedOptimizer


class SVRG(WrappedOptimizer):
    """Stochastic variance-reduced gradient (Johnson & Zhang 2013) around a base optimizer.

    Every `snapshot_every` steps the full-batch gradient mu at a snapshot w~ is taken; each step
    then uses g_i(w) - g_i(w~) + mu, the minibatch gradient with its noise at the snapshot removed.
    `step(closure)` needs the closure of losslab's trainer: `closure()` the minibatch gradient,
    `closure(full=True)` the full-batch one.

    Args:
        params: the parameters, or param groups.
        base_optimizer_cls: the optimizer that takes the step (plain SGD by default).
        snapshot_every: steps between snapshots.
        **base_kwargs: the base optimizer's arguments.

    Examples:
        >>> from losslab.optim import SVRG
        >>> opt = SVRG(model.parameters(), lr=0.1, snapshot_every=10)
        >>> def closure(full=False):
        ...     opt.zero_grad(); loss = F.cross_entropy(model(x), y); loss.backward(); return loss
        >>> loss = opt.step(closure)
    """

    def __init__(self, params, base_optimizer_cls: type[torch.optim.Optimizer] = torch.optim.SGD,
                 snapshot_every: int = 100, **base_kwargs):
        if snapshot_every < 1:
            raise ValueError(f"snapshot_every must be >= 1, got {snapshot_every}")
        super().__init__(params, base_optimizer_cls, {"snapshot_every": snapshot_every, "steps": 0}, **base_kwargs)

    def snapshot(self) -> dict[torch.Tensor, torch.Tensor]:
        """w~ of every parameter (empty before the first step)."""
        return {p: s["snapshot"] for p, s in self.state.items() if "snapshot" in s}

    @torch.no_grad()
    def step(self, closure=None):
        if closure is None:
            raise ValueError("SVRG.step needs the closure(full=False) of losslab's trainer")
        params = [p for p in self._params() if p.grad is not None]
        at_w = [p.grad.clone() for p in params]  # g_B(w)
        group = self.param_groups[0]
        if group["steps"] % group["snapshot_every"] == 0:
            with torch.enable_grad():
                closure(full=True)
            for p in params:
                self.state[p]["snapshot"] = p.detach().clone()
                self.state[p]["full_grad"] = p.grad.clone()
            corrected = [self.state[p]["full_grad"] for p in params]  # w = w~, so v = mu
        else:
            weights = [p.detach().clone() for p in params]
            torch._foreach_copy_(params, [self.state[p]["snapshot"] for p in params])
            with torch.enable_grad():
                closure()  # g_B(w~)
            torch._foreach_copy_(params, weights)
            corrected = torch._foreach_add(torch._foreach_sub(at_w, [p.grad for p in params]),
                                           [self.state[p]["full_grad"] for p in params])
        for p, v in zip(params, corrected):
            p.grad = v.clone()
        for g in self.param_groups:
            g["steps"] += 1
        self.base_optimizer.step()


def gradient_variance(model: torch.nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                      snapshot: dict[str, torch.Tensor], seed: int = 0) -> dict[str, tuple[float, float]]:
    """Per parameter name: (variance of SGD's gradient estimate, variance of SVRG's) at the model's weights.

    The training set is split into minibatches of `batch_size` (a random partition drawn from
    `seed`, the remainder dropped); the full gradients are the means over that partition, so
    both estimates are unbiased for it exactly.
    """
    weights = {n: p.detach() for n, p in model.named_parameters()}
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    batches = perm[: len(x) // batch_size * batch_size].view(-1, batch_size)
    gradient = grad(lambda w, xb, yb: loss_fn(functional_call(model, w, (xb,)), yb))
    at_w = [gradient(weights, x[b], y[b]) for b in batches]
    at_snapshot = [gradient(snapshot, x[b], y[b]) for b in batches]
    result = {}
    for name in weights:
        g = torch.stack([a[name] for a in at_w])
        g_snap = torch.stack([a[name] for a in at_snapshot])
        svrg = g - g_snap + g_snap.mean(0)
        full = g.mean(0)
        result[name] = (float(((g - full) ** 2).sum() / len(g)), float(((svrg - full) ** 2).sum() / len(g)))
    return result
