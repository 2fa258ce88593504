"""Models built from the config for a task: `build_model(cfg, task, n_outputs)`."""

import torch

from losslab.config import MLPConfig, TransformerConfig
from losslab.models.mlp import MLP
from losslab.models.transformer import Transformer
from losslab.tasks import Task


def build_model(cfg: TransformerConfig | MLPConfig, task: Task, n_outputs: int) -> torch.nn.Module:
    if cfg.name == "transformer":
        return Transformer(cfg, task.vocab_size, task.x_train.shape[1], n_outputs)
    return MLP(cfg, task.input_dim, n_outputs, vocab_size=task.vocab_size)


__all__ = ["MLP", "Transformer", "build_model"]
