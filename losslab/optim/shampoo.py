"""Shampoo (Gupta, Koren & Singer 2018) with learning-rate grafting (Anil et al. 2020).

For a matrix parameter with gradient G (m x n) Shampoo keeps the statistics

    L <- beta2 * L + G G^T,   R <- beta2 * R + G^T G      (beta2 = 1: the paper's sums)

(with (1 - beta2) weights when beta2 < 1, an EMA) and steps along L^(-1/4) G R^(-1/4), the
inverse fourth roots taken by eigh with eps added to the eigenvalues and recomputed every
`precondition_every` steps (reused in between). Tensors of rank > 2 are reshaped to
(dim 0, rest); vectors and scalars get the diagonal (AdaGrad) preconditioner; a side longer
than `max_preconditioner_dim` is left unpreconditioned (the other side then takes the
root -1/2, as one Kronecker factor of an order-1 Shampoo).

Grafting, as in the Distributed Shampoo that won AlgoPerf: the Shampoo direction is
rescaled per parameter to the norm of the AdaGrad ("adagrad") or Adam ("adam") step, so
the learning rate of the grafted method carries over. graft="none" is the paper's method.
Faithful to the paper: p.grad is never modified, and momentum (heavy ball on the
preconditioned step, 0 by default) and decoupled weight decay are explicit options.
"""

from __future__ import annotations

import torch

GRAFTS = ("none", "adagrad", "adam")


def inverse_root(stat: torch.Tensor, root: int, eps: float) -> torch.Tensor:
    """(stat + eps I)^(-1/root) of a symmetric PSD matrix, by eigh in its own dtype."""
    eigenvalues, vectors = torch.linalg.eigh(stat)
    return (vectors * (eigenvalues.clamp_min(0) + eps) ** (-1.0 / root)) @ vectors.T


class Shampoo(torch.optim.Optimizer):
    """Shampoo (Gupta, Koren & Singer 2018) with learning-rate grafting (Anil et al. 2020).

    A matrix's step is L^(-1/4) G R^(-1/4) from the statistics L = sum G G^T, R = sum G^T G (an EMA for
    beta2 < 1), the roots by eigh every `precondition_every` steps; tensors of higher rank are
    reshaped to (dim 0, rest), vectors get AdaGrad's diagonal. Grafted onto AdaGrad's or Adam's step
    norm, as in the Distributed Shampoo that won AlgoPerf, so their learning rates carry over. `p.grad`
    is never modified.

    Args:
        params: the parameters, or param groups.
        lr: the learning rate.
        beta2: the statistics' decay (1: the paper's sums).
        eps: added to the statistics' eigenvalues.
        precondition_every: steps between recomputed roots.
        graft: `"none"`, `"adagrad"` or `"adam"`.
        graft_beta2: the Adam graft's second-moment decay.
        graft_eps: the graft's epsilon.
        momentum: heavy ball on the preconditioned step.
        weight_decay: decoupled weight decay.
        max_preconditioner_dim: a side longer than this is not preconditioned.

    Examples:
        >>> from losslab.optim import Shampoo
        >>> opt = Shampoo(model.parameters(), lr=1e-2)
        >>> F.cross_entropy(model(x), y).backward(); opt.step()
    """
    def __init__(self, params, lr: float = 1e-3, beta2: float = 1.0, eps: float = 1e-6,
                 precondition_every: int = 1, graft: str = "adagrad", graft_beta2: float = 0.999,
                 graft_eps: float = 1e-8, momentum: float = 0.0, weight_decay: float = 0.0,
                 max_preconditioner_dim: int = 4096):
        if graft not in GRAFTS:
            raise ValueError(f"unknown graft {graft!r} (known: {', '.join(GRAFTS)})")
        if not 0 < beta2 <= 1:
            raise ValueError(f"beta2 must be in (0, 1], got {beta2}")
        if precondition_every < 1:
            raise ValueError(f"precondition_every must be >= 1, got {precondition_every}")
        super().__init__(params, {
            "lr": lr, "beta2": beta2, "eps": eps, "precondition_every": precondition_every, "graft": graft,
            "graft_beta2": graft_beta2, "graft_eps": graft_eps, "momentum": momentum,
            "weight_decay": weight_decay, "max_preconditioner_dim": max_preconditioner_dim})

    @staticmethod
    def _sides(p: torch.Tensor, max_dim: int) -> tuple[bool, bool]:
        """Which sides (rows, columns) of the matrix view of p get a Kronecker factor."""
        if p.ndim < 2:
            return False, False
        m, n = p.shape[0], p[0].numel()
        return m <= max_dim, n <= max_dim

    def _init_state(self, p: torch.Tensor, group: dict) -> dict:
        state = self.state[p]
        left, right = self._sides(p, group["max_preconditioner_dim"])
        m, n = (p.shape[0], p[0].numel()) if p.ndim >= 2 else (1, p.numel())
        state["step"] = torch.zeros((), dtype=torch.int64)
        if left:
            state["L"] = torch.zeros(m, m, dtype=p.dtype)
            state["L_root"] = torch.eye(m, dtype=p.dtype)
        if right:
            state["R"] = torch.zeros(n, n, dtype=p.dtype)
            state["R_root"] = torch.eye(n, dtype=p.dtype)
        if not (left or right) or group["graft"] != "none":
            state["diagonal"] = torch.zeros_like(p)  # AdaGrad/Adam second moments (the graft or the vector case)
        if group["momentum"]:
            state["momentum"] = torch.zeros_like(p)
        return state

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, group)
        return loss

    @staticmethod
    def _diagonal_step(g: torch.Tensor, state: dict, group: dict, step: int) -> torch.Tensor:
        """The AdaGrad (sum of g^2) or, when grafting Adam, the Adam (EMA of g^2, bias corrected) direction."""
        second = state["diagonal"]
        if group["graft"] == "adam":
            beta = group["graft_beta2"]
            second.mul_(beta).addcmul_(g, g, value=1 - beta)
            denominator = (second / (1 - beta**step)).sqrt_()
        else:
            second.addcmul_(g, g)
            denominator = second.sqrt()
        return g / denominator.add_(group["graft_eps"])

    def _update(self, p: torch.Tensor, group: dict) -> None:
        state = self.state[p] or self._init_state(p, group)
        state["step"] += 1
        step = int(state["step"])
        g = p.grad
        if "L" not in state and "R" not in state:  # diagonal Shampoo = AdaGrad (or Adam when grafted so)
            direction = self._diagonal_step(g, state, group, step)
        else:
            matrix = g.reshape(g.shape[0], -1)
            beta2, weight = group["beta2"], (1.0 if group["beta2"] == 1 else 1 - group["beta2"])
            refresh = (step - 1) % group["precondition_every"] == 0
            root = 2 * (("L" in state) + ("R" in state))  # -1/4 for two factors, -1/2 for one
            precond = matrix
            if "L" in state:
                state["L"].addmm_(matrix, matrix.T, beta=beta2, alpha=weight)
                if refresh:
                    state["L_root"] = inverse_root(state["L"], root, group["eps"])
                precond = state["L_root"] @ precond
            if "R" in state:
                state["R"].addmm_(matrix.T, matrix, beta=beta2, alpha=weight)
                if refresh:
                    state["R_root"] = inverse_root(state["R"], root, group["eps"])
                precond = precond @ state["R_root"]
            direction = precond.reshape(g.shape)
            if group["graft"] != "none":
                graft = self._diagonal_step(g, state, group, step)
                direction = direction * (graft.norm() / direction.norm().clamp_min(1e-30))
        if group["momentum"]:
            direction = state["momentum"].mul_(group["momentum"]).add_(direction)
        if group["weight_decay"]:
            p.mul_(1 - group["lr"] * group["weight_decay"])
        p.add_(direction, alpha=-group["lr"])
