import math

import torch
import torch.nn.functional as F

from losslab.config import MLPConfig, TransformerConfig
from losslab.models import build_model
from losslab.tasks import ModularTask, ParityTask


def reference_forward(model, tokens):
    """An independent full causal pass with torch's fused attention, using the model's weights."""
    x = model.embed(tokens) + model.pos
    for block in model.blocks:
        h = block.norm1(x)
        heads = block.attn.n_heads
        q, (k, v) = block.attn.q(h), block.attn.kv(h).chunk(2, -1)
        split = lambda t: t.view(*t.shape[:2], heads, -1).transpose(1, 2)  # noqa: E731
        a = F.scaled_dot_product_attention(split(q), split(k), split(v), is_causal=True)
        x = x + block.attn.out(a.transpose(1, 2).flatten(2))
        x = x + block.mlp(block.norm2(x))
    return model.unembed(model.norm(x))[:, -1]


def test_transformer_answer_only_equals_full_causal_pass():
    task = ModularTask(p=13).build(0)
    for layers, norm in [(1, False), (2, True), (3, False)]:
        torch.manual_seed(layers)
        cfg = TransformerConfig(n_layers=layers, d_model=32, n_heads=4, d_mlp=64, layer_norm=norm)
        model = build_model(cfg, task, task.n_classes)
        out = model(task.x_train)
        assert out.shape == (len(task.x_train), 13)
        torch.testing.assert_close(out, reference_forward(model, task.x_train), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out, model(task.x_train, all_positions=True)[:, -1], atol=1e-5, rtol=1e-5)


def test_transformer_gradients_match_reference():
    task = ModularTask(p=11).build(0)
    torch.manual_seed(0)
    model = build_model(TransformerConfig(n_layers=2, d_model=16, n_heads=2, d_mlp=32), task, 11)
    grads = []
    for f in (model, lambda t: reference_forward(model, t)):
        model.zero_grad()
        F.cross_entropy(f(task.x_train), task.y_train).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_embedding_init_std():
    task = ModularTask(p=97).build(0)
    torch.manual_seed(0)
    model = build_model(TransformerConfig(embed_std=1 / math.sqrt(128)), task, 97)
    assert abs(model.embed.weight.std().item() - 1 / math.sqrt(128)) < 0.005


def test_mlp_shapes_and_one_hot_tokens():
    parity = ParityTask(n=20, n_train=8, n_test=4).build(0)
    model = build_model(MLPConfig(depth=2, width=30), parity, 1)
    assert model(parity.x_train).shape == (8, 1)
    assert model.net[-1].bias is None and model.net[0].bias is not None
    tokens = ModularTask(p=7).build(0)
    model = build_model(MLPConfig(depth=1, width=10), tokens, 7)
    assert model.net[0].in_features == 4 * 9 and model(tokens.x_train).shape == (len(tokens.x_train), 7)


def test_mlp_initializations():
    task = ParityTask(n=1000, n_train=4, n_test=4).build(0)
    torch.manual_seed(0)
    kaiming = build_model(MLPConfig(width=1000, init="kaiming"), task, 1)
    assert abs(kaiming.net[0].weight.std().item() - math.sqrt(2 / 1000)) < 1e-3
    normal = build_model(MLPConfig(width=1000, init="normal", init_std=0.05), task, 1)
    assert abs(normal.net[0].weight.std().item() - 0.05) < 1e-3 and (normal.net[0].bias == 0).all()
