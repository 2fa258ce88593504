"""Minimal circuits for sparse parity: a hand-built two-neuron network, checked exactly on every
input, and the neurons a trained one-hidden-layer network keeps active.

The two-neuron network for (n, 2)-parity (label x1 * x2 on {-1, +1}^n) is

    f(x) = 2 relu(x1 + x2 - 1) + 2 relu(-x1 - x2 - 1) + c

which is 2 + c where x1 = x2 and c where they differ. With an output bias c = -1 its margins are
1 everywhere (hinge loss 0). The parity MLPs of losslab have no output bias (c = 0): the claim
"two neurons suffice" then holds only by the tie rule (a score of exactly 0 predicts -1) with
zero margin on half the inputs; `check_two_neuron` measures both.
"""

from __future__ import annotations

import itertools

import torch

from losslab.config import MLPConfig
from losslab.losses import build_loss
from losslab.models.mlp import MLP


def all_inputs(n: int) -> torch.Tensor:
    """Every x in {-1, +1}^n (2^n rows: n at most 20)."""
    if n > 20:
        raise ValueError(f"all 2^n inputs only for n <= 20, got n = {n}")
    return torch.tensor(list(itertools.product((-1.0, 1.0), repeat=n)))


def two_neuron_network(n: int, out_bias: bool) -> MLP:
    net = MLP(MLPConfig(depth=1, width=2, out_bias=out_bias), input_dim=n, n_outputs=1)
    with torch.no_grad():
        first, last = net.net[0], net.net[2]
        first.weight.zero_()
        first.weight[0, :2] = 1.0
        first.weight[1, :2] = -1.0
        first.bias.fill_(-1.0)
        last.weight.fill_(2.0)
        if out_bias:
            last.bias.fill_(-1.0)
    return net


def check_two_neuron(n: int, out_bias: bool) -> dict:
    """The hand-built network on all 2^n inputs: accuracy, hinge loss, smallest margin y * f(x)."""
    x = all_inputs(n)
    labels = (x[:, 0] * x[:, 1] > 0).long()  # class 1 is product +1
    hinge = build_loss("hinge", 2)
    with torch.no_grad():
        out = two_neuron_network(n, out_bias)(x)
    margin = (2 * labels - 1) * out[:, 0]
    return {"n": n, "inputs": len(x), "out_bias": out_bias, "accuracy": float(hinge.accuracy(out, labels)),
            "hinge_loss": float(hinge(out, labels)), "min_margin": float(margin.min()) + 0.0,  # no -0
            "zero_margin_inputs": int((margin == 0).sum())}


def unit_strength(model: torch.nn.Module) -> torch.Tensor:
    """|incoming| * |outgoing| weight of each hidden unit of a one-hidden-layer MLP."""
    return model.net[0].weight.detach().norm(dim=1) * model.net[-1].weight.detach().norm(dim=0)


def active_neurons(model: torch.nn.Module, relative: float = 1e-2) -> list[int]:
    """Hidden units of a one-hidden-layer MLP whose strength (unit_strength) is at least `relative`
    times the largest one's: the units that still carry signal."""
    strength = unit_strength(model)
    return torch.nonzero(strength >= relative * strength.max()).flatten().tolist()


def pruned_accuracy(model: torch.nn.Module, keep: list[int], x: torch.Tensor, y: torch.Tensor, accuracy) -> float:
    """accuracy(outputs, targets) of the model with every hidden unit but `keep` removed."""
    mask = torch.zeros(model.net[0].out_features)
    mask[keep] = 1.0
    with torch.no_grad():
        hidden = model.net[1](model.net[0](x)) * mask
        return float(accuracy(model.net[2](hidden), y))


def circuit(model: torch.nn.Module, accuracy, val: tuple[torch.Tensor, torch.Tensor], relative: float = 1e-2,
            parity: tuple[int, int] | None = None, samples: int = 20_000, seed: int = 0) -> dict:
    """The active hidden units of a one-hidden-layer MLP (losslab's, `model.net`) and the accuracy
    of the network pruned to them on `val`; for an (n, k)-parity, also on every input for
    n <= 20, else on `samples` fresh random inputs."""
    keep = active_neurons(model, relative)
    x_val, y_val = val
    result = {"width": model.net[0].out_features, "active_neurons": keep, "active": len(keep),
              "relative_threshold": relative, "val_accuracy_pruned": pruned_accuracy(model, keep, x_val, y_val,
                                                                                      accuracy)}
    if parity is not None:
        n, k = parity
        if n <= 20:
            x = all_inputs(n)
        else:
            g = torch.Generator().manual_seed(seed)
            x = torch.randint(0, 2, (samples, n), generator=g).float() * 2 - 1
        y = (x[:, :k].prod(dim=1) > 0).long()
        result.update(checked_inputs=len(x), exhaustive=n <= 20,
                      accuracy_pruned=pruned_accuracy(model, keep, x.to(x_val.dtype), y, accuracy))
    return result
