"""Behavioral gradients and the flatness of a basin ("information loss -> basin flatness").

G is the Jacobian of every output on every training input with respect to every parameter
((examples x outputs) x parameters), built with torch.func (jacrev over a functional call,
vmapped over chunks of examples) in float64. Directions in its null space change no output
on the training set: the behavior manifold through the weights has dimension
N_params - rank(G). For MSE at a global minimum (zero residuals) the Hessian is the
Gauss-Newton matrix 2/m G^T G, so rank(H) = rank(G).

Information loss: for each activation layer, the number of training inputs whose pattern of
active units (output > 0) is shared with another input: from that layer on the network can
no longer tell them apart by which units fire.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

from losslab.analysis.curvature import hessian_matrix
from losslab.analysis.objective import Objective
from losslab.core.errors import LossLabError

MAX_ENTRIES = 200_000_000  # 1.6 GB of float64: beyond it G is not built densely
DENSE_LIMIT = 3000  # parameters: rank(H) from the dense Hessian up to here
ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh)  # a unit is "on" where its output > 0


def behavioral_gradients(obj: Objective, max_examples: int | None = None, chunk: int = 64) -> torch.Tensor:
    """The behavioral gradients G: the Jacobian of every output on every example in the parameters.

    Rows ordered example by example ((examples x outputs) rows), float64: the map whose rank is the
    dimension of the manifold of functions the parameters reach near the point.

    Args:
        obj: the objective (its inputs are read; (inputs, targets) batches).
        max_examples: the first examples taken (default: all).
        chunk: examples whose Jacobians are taken at once (torch.func.vmap of jacrev).

    Returns:
        G, an (examples * outputs, parameters) float64 tensor.

    Cost: one Jacobian per example, `chunk` at a time.

    Examples:
        >>> ll.behavioral_gradients(obj, max_examples=10).shape
        torch.Size([30, 131])
    """
    x, _ = obj.examples("behavioral gradients", max_examples)
    params = {n: p.double() for n, p in obj.params.items()}
    model = copy.deepcopy(obj.model).double()
    buffers = {n: b.double() if b.is_floating_point() else b for n, b in obj.buffers.items()}
    x = x.double() if x.is_floating_point() else x
    n_out = functional_call(model, {**buffers, **params}, (x[:1],)).shape[-1]
    if len(x) * n_out * obj.size > MAX_ENTRIES:
        raise LossLabError(f"G would hold {len(x)} x {n_out} x {obj.size} entries: too many to build densely "
                           f"(limit {MAX_ENTRIES:.0e}); use fewer examples")

    def outputs(p, example):
        return functional_call(model, {**buffers, **p}, (example[None],))[0]
    per_example = vmap(jacrev(outputs), in_dims=(None, 0))
    blocks = []
    for start in range(0, len(x), chunk):
        jac = per_example(params, x[start: start + chunk])  # name -> (chunk, outputs, *shape)
        blocks.append(torch.cat([j.flatten(2) for j in jac.values()], dim=2).flatten(0, 1))
    return torch.cat(blocks)


@dataclass
class Basin:
    examples: int
    outputs: int
    n_params: int
    rank_G: int
    behavior_manifold_dim: int
    relative_tol: float
    singular_values: list[float]
    shared_activation_patterns: dict[str, int]
    loss: float | None = None  # with rank_H: the MSE loss where it was measured
    rank_H: int | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def basin(obj: Objective, max_examples: int | None = None, relative_tol: float = 1e-6,
          hessian_rank: bool = False) -> Basin:
    """The geometry of the basin at the point through its behavioral gradients.

    rank(G), the behavior manifold's dimension, the inputs whose ReLU activation patterns another
    input shares (information lost per layer), and with `hessian_rank` rank(H) of the dense float64
    Hessian: for MSE at a global minimum rank(H) = rank(G) <= examples x outputs.

    Args:
        obj: the objective.
        max_examples: the first examples taken.
        relative_tol: singular values below this fraction of the largest count as zero.
        hessian_rank: also build the dense Hessian and its rank (small models).

    Returns:
        Basin: the ranks, G's singular values, the shared activation patterns, the loss.

    Cost: `behavioral_gradients`, its SVD, and with `hessian_rank` the dense Hessian.

    Examples:
        >>> b = ll.basin(obj, max_examples=10)
        >>> b.rank_G <= 30
        True
    """
    started = time.perf_counter()
    x, y = obj.examples("behavioral gradients", max_examples)
    g = behavioral_gradients(obj, max_examples)
    sv = torch.linalg.svdvals(g)
    rank = numerical_rank(sv, relative_tol)
    result = Basin(len(x), g.shape[0] // len(x), obj.size, rank, obj.size - rank, relative_tol, sv.tolist(),
                   shared_activation_patterns(obj.model, x))
    if hessian_rank:
        if obj.size > DENSE_LIMIT:
            raise LossLabError(f"rank(H) needs the dense Hessian: models of at most {DENSE_LIMIT} parameters, "
                               f"this one has {obj.size:,}")
        exact = Objective(copy.deepcopy(obj.model).double(), obj.loss_fn, (x.double() if x.is_floating_point() else x, y))
        result.loss = exact.value
        result.rank_H = numerical_rank(torch.linalg.eigvalsh(hessian_matrix(exact)).abs(), relative_tol**2)
    result.seconds = round(time.perf_counter() - started, 3)
    return result


def numerical_rank(singular_values: torch.Tensor, relative_tol: float) -> int:
    return int((singular_values > relative_tol * singular_values.max()).sum()) if len(singular_values) else 0


def shared_activation_patterns(model: nn.Module, x: torch.Tensor) -> dict[str, int]:
    """Per activation layer: how many inputs share their on/off pattern with another input."""
    patterns: dict[str, torch.Tensor] = {}
    hooks = [module.register_forward_hook(lambda m, i, out, name=name: patterns.__setitem__(name, out > 0))
             for name, module in model.named_modules() if isinstance(module, ACTIVATIONS)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    shared = {}
    for name, on in patterns.items():
        _, inverse, counts = torch.unique(on.flatten(1), dim=0, return_inverse=True, return_counts=True)
        shared[name] = int((counts[inverse] > 1).sum())
    return shared
