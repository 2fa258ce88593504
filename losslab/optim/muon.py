"""Muon (Jordan et al. 2024) with a choice of orthogonalization, and the hybrid Muon + AdamW.

Muon replaces the momentum M of a hidden weight matrix by its polar factor U V^T
(M = U S V^T), approximated by an odd matrix polynomial X <- a X + b (X X^T) X + c (X X^T)^2 X
applied after scaling M to spectral norm <= 1:

- "newton-schulz": torch.optim.Muon's quintic (3.4445, -4.775, 2.0315) x 5 in bfloat16.
  Fast; it trades accuracy for speed: singular values land in a band around 0.7..1.2.
- "polar-express": the per-step minimax schedule of Amsel et al. 2025 (degree 5, 8 steps,
  with their safety factor 1.01), in float32: singular values within about 1% of 1.
- "svd": the exact polar factor U V^T by SVD in float64, the reference.

The hybrid gives Muon the hidden matrices and convolution filters only; embeddings, the input
and output layers, biases, gains and every parameter of fewer than two dimensions go to AdamW,
as Muon is meant to be used (see hidden_matrices for the rule).
"""

from __future__ import annotations

import torch
from torch import nn

_POLAR_EXPRESS_RAW = [
    (8.28721201814563, -23.595886519098837, 17.300387312530933),
    (4.107059111542203, -2.9478499167379106, 0.5448431082926601),
    (3.9486908534822946, -2.908902115962949, 0.5518191394370137),
    (3.3184196573706015, -2.488488024314874, 0.51004894012372),
    (2.300652019954817, -1.6689039845747493, 0.4188073119525673),
    (1.891301407787398, -1.2679958271945868, 0.37680408948524835),
    (1.8750014808534479, -1.2500016453999487, 0.3750001645474248),
]
POLAR_EXPRESS = [(a / 1.01, b / 1.01**3, c / 1.01**5) for a, b, c in _POLAR_EXPRESS_RAW] + [(1.875, -1.25, 0.375)]
ORTHOGONALIZATIONS = ("newton-schulz", "polar-express", "svd")


def polynomial_polar(m: torch.Tensor, coefficients, dtype: torch.dtype, margin: float = 1.0) -> torch.Tensor:
    """Odd polynomial iteration toward the polar factor of a 2D matrix, computed in `dtype`."""
    x = m.to(dtype)
    wide = x.size(0) <= x.size(1)
    if not wide:  # iterate on the smaller Gram matrix
        x = x.T
    x = x / (x.norm() * margin + 1e-7)  # Frobenius norm >= spectral norm
    for a, b, c in coefficients:
        gram = x @ x.T
        x = a * x + torch.addmm(gram, gram, gram, beta=b, alpha=c) @ x
    return (x if wide else x.T).to(m.dtype)


def orthogonalize(m: torch.Tensor, method: str = "newton-schulz") -> torch.Tensor:
    """An approximation of U V^T for M = U S V^T by the chosen method."""
    if method == "newton-schulz":
        return torch.optim._muon._zeropower_via_newtonschulz(m, (3.4445, -4.775, 2.0315), 5, 1e-7).to(m.dtype)
    if method == "polar-express":
        return polynomial_polar(m, POLAR_EXPRESS, torch.float32, margin=1.01)
    if method == "svd":
        u, _, vh = torch.linalg.svd(m.double(), full_matrices=False)
        return (u @ vh).to(m.dtype)
    raise ValueError(f"unknown orthogonalization {method!r} (known: {', '.join(ORTHOGONALIZATIONS)})")


class Muon(torch.optim.Optimizer):
    """Muon: momentum orthogonalized before the step (Keller Jordan et al. 2024), for matrices.

    Its step is `torch.optim.Muon`'s (momentum by lerp, Nesterov, decoupled weight decay, torch's
    learning-rate adjustment); the orthogonalization is selectable, and a weight of more than two
    dimensions (a convolution filter bank) is orthogonalized as its (out_channels, in_channels x
    kernel) matrix, as the reference does. For a whole model (embeddings, biases and the head by
    AdamW) use `HybridMuon.for_model`.

    Args:
        params: matrix (or filter) parameters.
        lr: the learning rate.
        weight_decay: decoupled weight decay.
        momentum: the momentum's coefficient.
        nesterov: Nesterov momentum.
        orthogonalization: `"newton-schulz"` (torch's iteration, bfloat16: singular values land in
            [0.68, 1.21]), `"polar-express"` (float32: [0.99, 1.01]) or `"svd"` (float64, exact).
        adjust_lr_fn: torch's learning-rate adjustment by shape (`"original"`, `"match_rms_adamw"`).

    Examples:
        >>> from losslab.optim import Muon
        >>> opt = Muon([model[0].weight, model[2].weight], lr=0.02)
        >>> F.cross_entropy(model(x), y).backward(); opt.step()
    """

    def __init__(self, params, lr: float = 1e-3, weight_decay: float = 0.1, momentum: float = 0.95,
                 nesterov: bool = True, orthogonalization: str = "newton-schulz", adjust_lr_fn: str | None = None):
        if orthogonalization not in ORTHOGONALIZATIONS:
            raise ValueError(f"unknown orthogonalization {orthogonalization!r} "
                             f"(known: {', '.join(ORTHOGONALIZATIONS)})")
        if not lr >= 0 or not momentum >= 0 or not weight_decay >= 0:
            raise ValueError(f"lr, momentum and weight_decay must be >= 0, got {lr}, {momentum}, {weight_decay}")
        if adjust_lr_fn not in (None, "original", "match_rms_adamw"):
            raise ValueError(f"adjust_lr_fn must be 'original' or 'match_rms_adamw', got {adjust_lr_fn!r}")
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay, "momentum": momentum, "nesterov": nesterov,
                                  "adjust_lr_fn": adjust_lr_fn})
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim < 2:
                    raise ValueError(f"Muon takes matrices and filters (2D and up), not a parameter of size "
                                     f"{tuple(p.shape)}")
        self.orthogonalization = orthogonalization

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p.grad)
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - group["momentum"])
                update = p.grad.lerp(buf, group["momentum"]) if group["nesterov"] else buf
                matrix = update.reshape(len(update), -1)
                update = orthogonalize(matrix, self.orthogonalization).view_as(p)
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(update, alpha=-torch.optim._muon._adjust_lr(group["lr"], group["adjust_lr_fn"], matrix.shape))
        return loss


WEIGHT_LAYERS = (nn.Linear, nn.modules.conv._ConvNd)


def hidden_matrices(model: nn.Module) -> set[str]:
    """Names of the weights Muon should take: those of the hidden Linear and convolution layers.

    The rule (Keller Jordan's): the layers with weights are taken in the model's module order;
    embeddings, the input layer (the first Linear or convolution, unless an Embedding comes
    before it) and the output layer (the last of them) go to AdamW, with every bias, gain and
    other parameter of fewer than two dimensions. So a CNN's first convolution is its input
    layer, and the first Linear after its convolutions is hidden."""
    layers, embedded = [], False
    for name, module in model.named_modules():
        if isinstance(module, nn.Embedding):
            embedded = True
        elif isinstance(module, WEIGHT_LAYERS):
            layers.append((name, embedded))
    hidden = layers[:-1]
    if hidden and not hidden[0][1]:
        hidden = hidden[1:]
    return {f"{name}.weight" if name else "weight" for name, _ in hidden}


class HybridMuon(torch.optim.Optimizer):
    """Muon on the hidden matrices, AdamW on everything else, stepped together.

    `HybridMuon.for_model(model)` sends to Muon the weights of the Linear and convolution layers in
    module order except the input layer and the output layer (`losslab.optim.muon.hidden_matrices`),
    and the rest (embeddings, biases, norms, the head) to AdamW. Both share the learning-rate
    schedule: a scheduler scales each group's lr, and the two peak rates are `lr` and `adamw_lr`.

    Args:
        named_params: `(name, parameter)` pairs (`model.named_parameters()`).
        lr: Muon's learning rate.
        weight_decay: decoupled weight decay of both.
        momentum: Muon's momentum.
        nesterov: Muon's Nesterov momentum.
        orthogonalization: see `Muon`.
        adjust_lr_fn: see `Muon`.
        adamw_lr: AdamW's learning rate.
        adamw_betas: AdamW's betas.
        adamw_eps: AdamW's epsilon.
        hidden: the names that go to Muon (default: the hidden matrices).

    Examples:
        >>> from losslab.optim import HybridMuon
        >>> deeper = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3))
        >>> opt = HybridMuon.for_model(deeper)  # the middle Linear's weight to Muon, the rest to AdamW
        >>> F.cross_entropy(deeper(x.float()), y).backward(); opt.step()
    """

    def __init__(self, named_params, lr: float = 0.02, weight_decay: float = 0.0, momentum: float = 0.95,
                 nesterov: bool = True, orthogonalization: str = "newton-schulz", adjust_lr_fn: str | None = None,
                 adamw_lr: float = 1e-3, adamw_betas: tuple[float, float] = (0.9, 0.95), adamw_eps: float = 1e-8,
                 hidden: set[str] | None = None):
        named = list(named_params)
        hidden = {n for n, p in named if p.ndim >= 2} if hidden is None else hidden
        matrices = [p for n, p in named if n in hidden]
        others = [p for n, p in named if n not in hidden]
        if not matrices:
            raise ValueError("the model has no hidden matrices or filters for Muon (its input and output layers "
                             "go to AdamW)")
        self.muon = Muon(matrices, lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
                         orthogonalization=orthogonalization, adjust_lr_fn=adjust_lr_fn)
        self.parts: list[torch.optim.Optimizer] = [self.muon]
        if others:
            self.parts.append(torch.optim.AdamW(others, lr=adamw_lr, betas=adamw_betas, eps=adamw_eps,
                                                weight_decay=weight_decay))
        super().__init__([p for part in self.parts for g in part.param_groups for p in g["params"]], {})
        self._share_groups()

    def _share_groups(self) -> None:
        self.param_groups = [g for part in self.parts for g in part.param_groups]

    @classmethod
    def for_model(cls, model: nn.Module, **kwargs) -> HybridMuon:
        return cls(model.named_parameters(), hidden=hidden_matrices(model), **kwargs)

    @torch.no_grad()
    def step(self, closure=None):
        for part in self.parts:
            part.step()

    def state_dict(self) -> dict:
        return {"parts": [part.state_dict() for part in self.parts]}

    def load_state_dict(self, state_dict: dict) -> None:
        for part, state in zip(self.parts, state_dict["parts"], strict=True):
            part.load_state_dict(state)
        self._share_groups()
