"""Fully connected network of configurable depth, width, activation and initialization."""

import torch
import torch.nn.functional as F
from torch import nn

from losslab.config import MLPConfig
from losslab.models.transformer import ACTIVATIONS


class MLP(nn.Module):
    """`depth` hidden layers of `width`; token inputs are one-hot encoded and concatenated."""

    def __init__(self, cfg: MLPConfig, input_dim: int, n_outputs: int, vocab_size: int | None = None):
        super().__init__()
        self.vocab_size = vocab_size
        in_features = input_dim * vocab_size if vocab_size else input_dim
        layers: list[nn.Module] = []
        for _ in range(cfg.depth):
            layers += [nn.Linear(in_features, cfg.width, bias=cfg.bias), ACTIVATIONS[cfg.activation]()]
            in_features = cfg.width
        layers.append(nn.Linear(in_features, n_outputs, bias=cfg.out_bias))
        self.net = nn.Sequential(*layers)
        self._initialize(cfg)

    def _initialize(self, cfg: MLPConfig) -> None:
        if cfg.init == "default":
            return
        for layer in self.net:
            if isinstance(layer, nn.Linear):
                if cfg.init == "kaiming":  # He et al. 2015: variance 2 / fan_in keeps ReLU signals alive
                    nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
                else:
                    nn.init.normal_(layer.weight, std=cfg.init_std)
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)

    @property
    def sequential_body(self) -> nn.Sequential | None:
        """The layers that are the whole forward on vector inputs (None on tokens): an analysis may
        split them (the loss surface computes the first Linear layer's products once)."""
        return None if self.vocab_size else self.net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.vocab_size:
            x = F.one_hot(x, self.vocab_size).flatten(1).to(self.net[0].weight.dtype)
        return self.net(x)
