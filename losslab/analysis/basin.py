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

import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

from losslab.errors import LossLabError
from losslab.models.transformer import ACTIVATIONS

MAX_ENTRIES = 200_000_000  # 1.6 GB of float64: beyond it G is not built densely


def behavioral_gradients(model: nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor,
                         chunk: int = 64) -> torch.Tensor:
    """G: (examples * outputs) x parameters, rows ordered example by example, in float64."""
    params = {n: p.double() for n, p in params.items()}
    model = _double_copy(model)
    x = x.double() if x.is_floating_point() else x
    n_out = functional_call(model, params, (x[:1],)).shape[-1]
    n_params = sum(p.numel() for p in params.values())
    if len(x) * n_out * n_params > MAX_ENTRIES:
        raise LossLabError(f"G would hold {len(x)} x {n_out} x {n_params} entries: too many to build densely "
                           f"(limit {MAX_ENTRIES:.0e}); use --max-examples")

    def outputs(p, example):
        return functional_call(model, p, (example[None],))[0]
    per_example = vmap(jacrev(outputs), in_dims=(None, 0))
    blocks = []
    for start in range(0, len(x), chunk):
        jac = per_example(params, x[start: start + chunk])  # name -> (chunk, outputs, *shape)
        blocks.append(torch.cat([j.flatten(2) for j in jac.values()], dim=2).flatten(0, 1))
    return torch.cat(blocks)


def _double_copy(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).double()


def numerical_rank(singular_values: torch.Tensor, relative_tol: float) -> int:
    return int((singular_values > relative_tol * singular_values.max()).sum()) if len(singular_values) else 0


def shared_activation_patterns(model: nn.Module, x: torch.Tensor) -> dict[str, int]:
    """Per activation layer: how many inputs share their on/off pattern with another input."""
    patterns: dict[str, torch.Tensor] = {}
    kinds = tuple(ACTIVATIONS.values())
    hooks = [module.register_forward_hook(lambda m, i, out, name=name: patterns.__setitem__(name, out > 0))
             for name, module in model.named_modules() if isinstance(module, kinds)]
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
