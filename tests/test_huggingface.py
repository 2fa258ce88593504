"""A Hugging Face language model (GPT-2 built from a config: nothing is downloaded) with dict batches,
through loss= and a forward= that returns (logits, next tokens): its loss is the model's own, its
Hessian and Gauss-Newton products equal float64 references, the Monitor measures its training, and
the fused attention kernel (no double backward) is one line naming the setting to change."""

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

import losslab as ll
from losslab.core.errors import LossLabError

transformers = pytest.importorskip("transformers", reason="transformers is in the test extra: pip install -e .[test]")

VOCAB = 11


def gpt2(attention="eager"):
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=VOCAB, n_positions=8,
                                     attn_implementation=attention)
    return transformers.GPT2LMHeadModel(config).double()


def next_token(model, params, batch):
    """(logits, targets) of next-token prediction: each position predicts the token after it."""
    logits = functional_call(model, params, (), {"input_ids": batch["input_ids"]}).logits
    return logits[:, :-1].reshape(-1, VOCAB), batch["input_ids"][:, 1:].reshape(-1)


@pytest.fixture(scope="module")
def tokens():
    return torch.randint(0, VOCAB, (6, 5), generator=torch.Generator().manual_seed(1))


def test_the_language_model_loss_hessian_and_gauss_newton_are_the_references(tokens):
    model = gpt2()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batches = [{"input_ids": tokens[:4]}, {"input_ids": tokens[4:]}]  # the last batch smaller
    obj = ll.Objective(model, F.cross_entropy, batches, forward=next_token)
    model.eval()
    with torch.no_grad():  # the model's own loss (it shifts the labels itself), weighted by each batch's tokens
        own = sum(model(**b, labels=b["input_ids"]).loss * b["input_ids"][:, 1:].numel() for b in batches)
    assert obj.value == pytest.approx(float(own) / tokens[:, 1:].numel(), rel=1e-6)  # its loss casts to float32

    v = torch.randn(obj.size, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    eps = 1e-5
    gradient_difference = obj.value_and_grad(obj.shifted(v, eps))[1] - obj.value_and_grad(obj.shifted(v, -eps))[1]
    hv = ll.HessianOperator(obj) @ v
    assert torch.allclose(hv, gradient_difference / (2 * eps), atol=1e-6 * hv.norm())

    ggn = torch.zeros(obj.size, obj.size, dtype=torch.float64)
    for batch in batches:
        def logits(flat, batch=batch):
            return obj.output_target(obj.unflatten(flat), batch)[0].flatten()
        point = obj.flatten(obj.params)
        jacobian = torch.autograd.functional.jacobian(logits, point)
        y = obj.output_target(obj.params, batch)[1]
        h_out = torch.autograd.functional.hessian(lambda o, y=y: F.cross_entropy(o.view(len(y), -1), y),
                                                  logits(point).detach())
        ggn += jacobian.T @ h_out @ jacobian * len(y) / obj.n_examples
    assert torch.allclose(ll.GGNOperator(obj) @ v, ggn @ v, atol=1e-9 * (ggn @ v).norm())
    top = ll.hessian_eigenvalues(ll.GGNOperator(obj), 1, "top").top[0]
    assert top == pytest.approx(float(torch.linalg.eigvalsh(ggn)[-1]), rel=1e-6)
    assert all(torch.equal(before[k], t) for k, t in model.state_dict().items())


def test_fused_attention_is_one_line_naming_the_eager_setting(tokens):
    obj = ll.Objective(gpt2("sdpa"), F.cross_entropy, {"input_ids": tokens}, forward=next_token)
    with pytest.raises(LossLabError, match="attn_implementation='eager'") as refused:
        ll.hessian_eigenvalues(obj, 1, "top")
    assert "\n" not in str(refused.value)


def test_the_monitor_measures_the_language_model_training(tokens, tmp_path):
    model = gpt2()
    probe, validation = {"input_ids": tokens[:4]}, {"input_ids": tokens[4:]}
    opt = torch.optim.AdamW(model.parameters(), 1e-2)
    mon = ll.Monitor(model, opt, probe, F.cross_entropy, forward=next_token, validation=validation, every=2,
                     store=tmp_path, measures=["grad_norm", "sharpness", "trace", "preconditioned_sharpness"])
    for _ in range(4):
        loss = F.cross_entropy(*next_token(model, dict(model.named_parameters()), probe))
        opt.zero_grad()
        loss.backward()
        opt.step()
        mon.step(loss)
    summary = mon.close()
    assert summary["status"] == "completed"
    names = {n for _, split, n, _ in mon.rows if split == "probe"}
    assert {"lambda_max", "hessian_trace", "preconditioned_lambda_max"} <= names
    accuracies = [v for _, split, n, v in mon.rows if split == "val" and n == "acc"]
    assert accuracies and all(0 <= a <= 1 for a in accuracies)  # next-token accuracy over the vocabulary
