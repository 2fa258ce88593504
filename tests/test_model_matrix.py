"""Every public analysis on the models researchers train: BatchNorm (eval and train mode), GroupNorm,
LayerNorm with dropout, a residual block, dict batches through forward=, tied weights, a frozen
and an unused parameter, a loader whose last batch is smaller. Each cell either equals a float64
reference computed by hand (autograd's dense Hessian, the loss at sampled points) or is a
one-line LossLabError raised before any work; the model's parameters and buffers are
bit-identical afterwards, and it keeps its mode."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

import losslab as ll
from losslab.core.errors import LossLabError

torch.manual_seed(0)


class CNN(nn.Module):
    def __init__(self, norm=nn.BatchNorm2d):
        super().__init__()
        self.conv, self.bn, self.head = nn.Conv2d(1, 4, 3), norm(4), nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        return self.head(F.relu(self.bn(self.conv(x))).flatten(1))


class Attention(nn.Module):
    """A LayerNorm transformer block with dropout over 4 tokens, read at the last one."""

    def __init__(self):
        super().__init__()
        self.embed, self.ln, self.qkv = nn.Embedding(5, 8), nn.LayerNorm(8), nn.Linear(8, 24)
        self.drop, self.head = nn.Dropout(0.2), nn.Linear(8, 5)

    def forward(self, tokens):
        h = self.ln(self.embed(tokens))
        q, k, v = self.qkv(h).chunk(3, -1)
        attention = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(8), -1)
        return self.head(self.drop(h + attention @ v)[:, -1])


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp, self.bn, self.ln, self.out = nn.Linear(6, 10), nn.BatchNorm1d(10), nn.LayerNorm(10), nn.Linear(10, 3)

    def forward(self, x):
        h = self.inp(x)
        return self.out(self.ln(h + F.relu(self.bn(h))))


class Tied(nn.Module):
    """Tied embedding and unembedding, a frozen bias, and a parameter the loss never uses."""

    def __init__(self):
        super().__init__()
        self.embed, self.mix = nn.Embedding(6, 4), nn.Linear(4, 4)
        self.mix.bias.requires_grad_(False)
        self.unused = nn.Parameter(torch.ones(3))

    def forward(self, tokens):
        return torch.tanh(self.mix(self.embed(tokens))) @ self.embed.weight.T


class DictModel(nn.Module):
    """A model taking a dict batch, as a Hugging Face model does (its loss computed inside)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(5, 6), nn.GELU(), nn.Linear(6, 3))

    def forward(self, input_values, labels):
        return F.cross_entropy(self.body(input_values), labels)


class DictLogits(nn.Module):
    """A model taking dict inputs and returning logits, as a Hugging Face model without labels does."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(5, 6), nn.GELU(), nn.Linear(6, 3))

    def forward(self, input_values):
        return self.body(input_values)


def forward_of_dicts(model, params, batch):
    """forward= alone: the batch's (mean loss, examples)."""
    return functional_call(model, params, (), batch), len(batch["labels"])


def outputs_of_dicts(model, params, batch):
    """forward= beside loss=: the batch's (outputs, targets)."""
    return functional_call(model, params, (), {"input_values": batch["input_values"]}), batch["labels"]


def batches(x, y, size=8):
    """A loader's batches, the last smaller."""
    return [(x[i:i + size], y[i:i + size]) for i in range(0, len(x), size)]


N = 21
CASES = {
    "mlp": (lambda: nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)),
            lambda: batches(torch.randn(N, 5), torch.randint(0, 3, (N,))), "eval"),
    "cnn+batchnorm eval": (CNN, lambda: batches(torch.randn(N, 1, 6, 6), torch.randint(0, 3, (N,))), "eval"),
    "cnn+batchnorm train": (CNN, lambda: batches(torch.randn(N, 1, 6, 6), torch.randint(0, 3, (N,))), "train"),
    "cnn+groupnorm train": (lambda: CNN(lambda c: nn.GroupNorm(2, c)),
                            lambda: batches(torch.randn(N, 1, 6, 6), torch.randint(0, 3, (N,))), "train"),
    "layernorm attention+dropout": (Attention, lambda: batches(torch.randint(0, 5, (N, 4)),
                                                                torch.randint(0, 5, (N,))), "eval"),
    "residual bn+ln train": (Residual, lambda: batches(torch.randn(N, 6), torch.randint(0, 3, (N,))), "train"),
    "tied, frozen, unused": (Tied, lambda: batches(torch.randint(0, 6, (N,)), torch.randint(0, 6, (N,))), "eval"),
    "dict batches (forward=)": (DictModel, lambda: dicts(torch.randn(N, 5), torch.randint(0, 3, (N,))), "eval"),
    "dict batches (loss + forward=)": (DictLogits, lambda: dicts(torch.randn(N, 5), torch.randint(0, 3, (N,))),
                                       "eval"),
}


def dicts(x, y):
    return [{"input_values": xs, "labels": ys} for xs, ys in batches(x, y)]


def loss_and_forward(case):
    """The objective's loss= and forward= for a case."""
    if case == "dict batches (forward=)":
        return None, forward_of_dicts
    return F.cross_entropy, outputs_of_dicts if case.startswith("dict") else None


def build(case):
    make_model, make_data, mode = CASES[case]
    torch.manual_seed(1)
    model, data = make_model(), make_data()
    model.train()  # as it is right after a training loop
    loss, forward = loss_and_forward(case)
    obj = ll.Objective(model, loss, data, forward=forward, mode=mode)
    return model, data, forward, mode, obj


def reference(model, data, forward, mode):
    """The mean loss as a function of the flat trainable parameters, in float64, written out by hand
    (the model copied in the mode: dropout off; train mode: each batch's own statistics), its
    point, and the dense Gauss-Newton matrix there (sum over batches of J^T H_out J, weighted by
    the batch's examples), None where forward= returns the loss."""
    ref = copy.deepcopy(model).double()
    ref.train(mode == "train")
    for m in ref.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    names = [n for n, p in ref.named_parameters() if p.requires_grad]
    shapes = [ref.get_parameter(n).shape for n in names]
    frozen = {n: p for n, p in ref.named_parameters() if not p.requires_grad}
    total = sum(len(b["labels"] if forward else b[1]) for b in data)

    def unflat(flat):
        params, at = {}, 0
        for n, s in zip(names, shapes):
            params[n] = flat[at: at + s.numel()].view(s)
            at += s.numel()
        return {**params, **frozen}

    def batch_outputs(flat, b):
        """(outputs, targets) of batch b, or (mean loss, None) where forward= returns the loss."""
        params = unflat(flat)
        buffers = {n: t.clone() for n, t in ref.named_buffers()}  # train mode updates these copies only
        if forward:
            batch = {k: v.double() if v.is_floating_point() else v for k, v in b.items()}
            if forward is forward_of_dicts:
                return forward(ref, {**buffers, **params}, batch)[0], None
            return forward(ref, {**buffers, **params}, batch)
        x = b[0].double() if b[0].is_floating_point() else b[0]
        return functional_call(ref, {**buffers, **params}, (x,)), b[1]

    def f(flat):
        out = 0
        for b in data:
            o, y = batch_outputs(flat, b)
            loss = o if y is None else F.cross_entropy(o, y)
            out = out + loss * len(b["labels"] if forward else b[1]) / total
        return out
    flat = torch.cat([ref.get_parameter(n).detach().flatten() for n in names])
    if forward is forward_of_dicts:
        return f, flat, None
    ggn = 0
    for b in data:
        o, y = batch_outputs(flat, b)
        jacobian = torch.autograd.functional.jacobian(lambda p, b=b: batch_outputs(p, b)[0].flatten(), flat)
        h_out = torch.autograd.functional.hessian(lambda o, y=y: F.cross_entropy(o.view(len(y), -1), y),
                                                  o.detach().flatten())
        ggn = ggn + jacobian.T @ h_out @ jacobian * len(y) / total
    return f, flat, ggn


def snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}, model.training


def unchanged(model, before):
    state, training = before
    return model.training == training and all(torch.equal(state[k], v) for k, v in model.state_dict().items())


MATRIX: dict[tuple[str, str], str] = {}


def cell(case, analysis, work):
    """Run one cell: 'ok' if it checks out, 'refused: ...' for a LossLabError (one line)."""
    try:
        work()
        MATRIX[case, analysis] = "ok"
    except LossLabError as e:
        assert "\n" not in str(e)
        MATRIX[case, analysis] = f"refused: {str(e)[:70]}"


@pytest.mark.parametrize("case", CASES)
def test_every_analysis_on_the_model(case):
    model, data, forward, mode, obj = build(case)
    before = snapshot(model)
    f, flat, dense_ggn = reference(model, data, forward, mode)
    assert obj.value == pytest.approx(float(f(flat)), rel=1e-5)
    dense = torch.autograd.functional.hessian(f, flat)
    eigenvalues = torch.linalg.eigvalsh(dense)
    scale = float(eigenvalues.abs().max())

    def eigen():
        found = ll.hessian_eigenvalues(obj, 1, "both")
        assert found.top[0] == pytest.approx(float(eigenvalues[-1]), abs=1e-4 * scale)
        assert found.bottom[0] == pytest.approx(float(eigenvalues[0]), abs=1e-4 * scale)

    def matrix():
        assert torch.allclose(ll.hessian_matrix(obj), dense, atol=1e-5 * scale)

    def trace():
        found = ll.hessian_trace(obj)
        assert abs(found.estimate - float(dense.trace())) <= 5 * found.standard_error + 1e-4 * scale * obj.size

    def density():
        d = ll.hessian_density(obj, steps=20, runs=2)
        assert d.weights.sum(1) == pytest.approx(1.0, abs=1e-6)
        assert d.nodes.min() >= float(eigenvalues[0]) - 1e-3 * scale
        assert d.nodes.max() <= float(eigenvalues[-1]) + 1e-3 * scale

    def ggn():
        operator = ll.GGNOperator(obj)
        v = torch.randn(obj.size)
        assert torch.allclose((operator @ v).double(), dense_ggn @ v.double(), atol=1e-5 * scale * v.norm())
        top = ll.hessian_eigenvalues(operator, 1, "top").top[0]
        assert top == pytest.approx(float(torch.linalg.eigvalsh(dense_ggn)[-1]), abs=1e-4 * scale)

    def surfaces():
        d1, d2 = ll.random_direction(obj, 0), ll.random_direction(obj, 1)
        line = ll.loss_line(obj, d1, (-0.5, 0.5), 3)
        plane = ll.loss_plane(obj, d1, d2, (-0.5, 0.5), 3)
        for i, a in enumerate(line.alphas):
            assert line.loss[i] == pytest.approx(float(f(flat + a * d1.double())), rel=1e-5)
        assert plane.loss[0, 2] == pytest.approx(float(f(flat - 0.5 * d1.double() + 0.5 * d2.double())), rel=1e-5)

    def sharpness():
        g = torch.autograd.functional.jacobian(f, flat)
        first = float(f(flat + 0.05 * g / g.norm()) - f(flat))  # the SAM start: a lower bound of the maximum
        assert ll.sam_sharpness(obj, rho=0.05, restarts=0).sharpness >= first - 1e-6
        assert ll.keskar_sharpness(obj, 1e-3, steps=3).sharpness >= 0

    def basin():
        assert 0 < ll.basin(obj).rank_G <= obj.size

    def connect():
        other = copy.deepcopy(model)
        with torch.no_grad():
            for p in other.parameters():
                if p.requires_grad:  # the curve moves the trainable parameters; frozen ones stay A's
                    p.add_(0.05)
        b = ll.Objective(other, *loss_and_forward(case)[:1], data, forward=forward, mode=mode)
        joined = ll.connect(obj, model.state_dict(), other.state_dict(), steps=2, points=3)
        line = joined.paths["line"]["train_loss"]
        assert line[0] == pytest.approx(obj.value, rel=1e-6) and line[-1] == pytest.approx(b.value, rel=1e-6)

    def dimension():
        x = torch.cat([b[0] for b in data]) if not forward else torch.cat([b["input_values"] for b in data])
        body = model.body if forward else model
        for points in ll.layer_inputs(body, x).values():
            assert ll.intrinsic_dimension(points, k=3).mle > 0

    for name, work in [("eigenvalues", eigen), ("dense Hessian", matrix), ("trace", trace), ("density", density),
                       ("GGN", ggn), ("line and plane", surfaces), ("SAM and Keskar", sharpness),
                       ("basin", basin), ("connect", connect), ("intrinsic dimension", dimension)]:
        cell(case, name, work)
        assert unchanged(model, before), f"{case}: {name} changed the model"
    print(f"\n{case}: " + "; ".join(f"{a} {v}" for (c, a), v in MATRIX.items() if c == case))
    refused = {a for (c, a), v in MATRIX.items() if c == case and v != "ok"}
    expected = {"cnn+batchnorm eval": {"connect"}, "cnn+batchnorm train": {"basin"},
                "residual bn+ln train": {"basin"}, "dict batches (forward=)": {"GGN", "basin"},
                "dict batches (loss + forward=)": {"basin"}}
    assert refused == expected.get(case, set()), MATRIX


@pytest.mark.parametrize("case", ["cnn+batchnorm train", "residual bn+ln train", "dict batches (forward=)",
                                  "dict batches (loss + forward=)"])
def test_the_monitor_on_the_model_with_and_without_validation(case, tmp_path):
    model, data, forward, _, _ = build(case)
    loss_fn = loss_and_forward(case)[0]

    def training_loss(batch):
        if forward is forward_of_dicts:
            return forward(model, dict(model.named_parameters()), batch)[0]
        out, y = forward(model, dict(model.named_parameters()), batch) if forward else (model(batch[0]), batch[1])
        return F.cross_entropy(out, y)
    probe, validation = data[0], data[1]
    measures = ["step_grad_norm", "grad_norm", "weight_norms", "update_ratio", "spectral_norms", "cosines", "sharpness",
                "lambda_min", "trace", "preconditioned_sharpness"]
    if not forward:
        measures.append("dimension")
    for held_out in (None, validation):
        opt = torch.optim.Adam(model.parameters(), 1e-2)
        mon = ll.Monitor(model, opt, probe, loss_fn, forward=forward, every=2,
                         validation=held_out, store=tmp_path, measures=measures)
        for _ in range(4):
            loss = training_loss(probe)
            opt.zero_grad()
            loss.backward()
            opt.step()
            mon.step(loss)
        summary = mon.close()
        assert summary["status"] == "completed" and math.isfinite(summary["final"]["train_loss"])
        names = {n for _, split, n, _ in mon.rows if split == "probe"}
        assert {"lambda_max", "lambda_min", "hessian_trace", "preconditioned_lambda_max"} <= names, names


def test_bad_models_and_losses_are_one_line_before_any_work():
    x, y = torch.randn(8, 5), torch.randint(0, 3, (8,))
    frozen = nn.Linear(5, 3).requires_grad_(False)
    with pytest.raises(LossLabError, match="no trainable parameters"):
        ll.Objective(frozen, F.cross_entropy, (x, y))
    with pytest.raises(LossLabError, match="not a scalar"):
        ll.Objective(nn.Linear(5, 3), lambda out, t: F.cross_entropy(out, t, reduction="none"), (x, y))
    with pytest.raises(LossLabError, match="reduction='sum'"):
        ll.Objective(nn.Linear(5, 3), nn.CrossEntropyLoss(reduction="sum"), (x, y))
    with pytest.raises(LossLabError, match="mode must be 'eval'"):
        ll.Objective(nn.Linear(5, 3), F.cross_entropy, (x, y), mode="training")
    model = nn.Linear(5, 3)

    def ignores_params(m, params, batch):  # calls the model, not its parameters: the loss is constant in them
        return F.cross_entropy(m(batch[0]), batch[1]), len(batch[0])
    with pytest.raises(LossLabError, match="does not depend on the parameters"):
        ll.Objective(model, forward=ignores_params, data=(x, y))

    def wrong_shape(m, params, batch):
        return F.cross_entropy(functional_call(m, params, (batch[0],)), batch[1], reduction="none"), len(batch[0])
    with pytest.raises(LossLabError, match="not a scalar"):
        ll.Objective(model, forward=wrong_shape, data=(x, y))


def test_a_model_that_cannot_be_copied_is_one_line():
    import threading

    model = nn.Linear(5, 3)
    model.lock = threading.Lock()  # deepcopy cannot copy a lock
    with pytest.raises(LossLabError, match="cannot be copied"):
        ll.Objective(model, F.cross_entropy, (torch.randn(4, 5), torch.randint(0, 3, (4,))))
