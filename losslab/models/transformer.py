"""Decoder-only transformer for `a op b =` sequences (Power et al. 2022; Nanda et al. 2023).

Only the answer at the last position is used, so the last block computes its query, its MLP
and its residual stream at that position alone: the same outputs as a full causal pass at
about half the cost (keys and values still come from every position).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from losslab.config import TransformerConfig

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU}


class Attention(nn.Module):
    """Causal multi-head attention written as broadcast products: with sequences of a few
    tokens this beats batched matmuls of tiny matrices, and unlike the fused kernel it has a
    vmap batching rule."""

    def __init__(self, d_model: int, n_heads: int, max_len: int):
        super().__init__()
        self.n_heads = n_heads
        self.q = nn.Linear(d_model, d_model, bias=False)
        self.kv = nn.Linear(d_model, 2 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)
        future = torch.ones(max_len, max_len, dtype=torch.bool).triu(1)
        self.register_buffer("future", future, persistent=False)

    def forward(self, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        """q: projected queries of the last positions (batch, n_queries, d); kv: projected keys
        and values of every position (batch, length, 2d)."""
        batch, n_queries, d_model = q.shape
        length, d_head = kv.shape[1], d_model // self.n_heads
        q = q.view(batch, n_queries, 1, self.n_heads, d_head)
        k, v = kv.view(batch, 1, length, 2, self.n_heads, d_head).unbind(3)
        scores = (q * k).sum(-1) / math.sqrt(d_head)  # (batch, n_queries, length, heads)
        if n_queries > 1:
            scores = scores.masked_fill(self.future[length - n_queries: length, :length, None], float("-inf"))
        mixed = (scores.softmax(2).unsqueeze(-1) * v).sum(2)  # (batch, n_queries, heads, d_head)
        return self.out(mixed.reshape(batch, n_queries, d_model))


class Block(nn.Module):
    def __init__(self, cfg: TransformerConfig, max_len: int):
        super().__init__()
        norm = (lambda: nn.LayerNorm(cfg.d_model)) if cfg.layer_norm else nn.Identity
        self.norm1, self.norm2 = norm(), norm()
        self.attn = Attention(cfg.d_model, cfg.n_heads, max_len)
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_mlp), ACTIVATIONS[cfg.activation](),
                                 nn.Linear(cfg.d_mlp, cfg.d_model))

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The position-wise part before attention: queries and keys/values of every row of x."""
        h = self.norm1(x)
        return self.attn.q(h), self.attn.kv(h)

    def forward(self, x: torch.Tensor, n_queries: int, q=None, kv=None) -> torch.Tensor:
        """The last `n_queries` positions of the residual stream after this block; q (of those
        positions) and kv may be given already projected."""
        if q is None:
            q, kv = self.project(x)
            q = q[:, x.shape[1] - n_queries:]
        x = x[:, x.shape[1] - n_queries:] + self.attn(q, kv)
        return x + self.mlp(self.norm2(x))


class Transformer(nn.Module):
    def __init__(self, cfg: TransformerConfig, vocab_size: int, seq_len: int, n_outputs: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, cfg.d_model)
        self.pos = nn.Parameter(torch.empty(seq_len, cfg.d_model))
        nn.init.normal_(self.embed.weight, std=cfg.embed_std)
        nn.init.normal_(self.pos, std=cfg.embed_std)
        self.blocks = nn.ModuleList(Block(cfg, seq_len) for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(cfg.d_model) if cfg.layer_norm else nn.Identity()
        self.unembed = nn.Linear(cfg.d_model, n_outputs, bias=False)

    def forward(self, tokens: torch.Tensor, all_positions: bool = False) -> torch.Tensor:
        """Logits at the last position, (batch, n_outputs); every position if `all_positions`."""
        length = tokens.shape[1]
        x = self.embed(tokens) + self.pos[:length]
        # Before its attention, the first block sees only (position, token): project the
        # (length x vocab) table of such pairs once and look rows up, instead of projecting
        # every example's every position (the same numbers, a fraction of the work).
        vocab = self.embed.num_embeddings
        q_table, kv_table = self.blocks[0].project((self.pos[:length, None] + self.embed.weight).flatten(0, 1))
        pair = tokens + torch.arange(length) * vocab
        for i, block in enumerate(self.blocks):
            n_queries = 1 if i == len(self.blocks) - 1 and not all_positions else length
            if i == 0:
                q, kv = F.embedding(pair[:, length - n_queries:], q_table), F.embedding(pair, kv_table)
                x = block(x, n_queries, q, kv)
            else:
                x = block(x, n_queries)
        logits = self.unembed(self.norm(x))
        return logits if all_positions else logits[:, -1]
