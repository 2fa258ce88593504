"""The analyses on a user's own model and DataLoader: batches give the full-batch numbers, a small
CNN on digits end to end, and every bad input refused in one line."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import losslab as ll
from losslab.core.errors import LossLabError

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                               reason="no CUDA device on this machine"))]


def mlp_and_data(dtype=torch.float64, n=103):
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).to(dtype)
    return model, torch.randn(n, 5, generator=g, dtype=dtype), torch.randint(0, 3, (n,), generator=g)


@pytest.fixture(scope="module")
def pair():
    """The same loss as one full batch and through a DataLoader of uneven batches (25, 25, 25, 25, 3)."""
    model, x, y = mlp_and_data()
    full = ll.Objective(model, F.cross_entropy, (x, y))
    batched = ll.Objective(model, F.cross_entropy, DataLoader(TensorDataset(x, y), batch_size=25))
    assert batched.n_batches == 5 and batched.n_examples == full.n_examples == 103
    return full, batched


def close(a, b, rel=1e-8):
    return np.allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float), rtol=rel, atol=rel * 1e-3)


def test_a_loader_of_uneven_batches_gives_the_full_batch_numbers(pair):
    full, batched = pair
    assert close(full.value, batched.value)
    (_, g1), (_, g2) = full.value_and_grad(), batched.value_and_grad()
    assert close(g1, g2)
    s1, s2 = (ll.hessian_eigenvalues(o, k=3, which="both") for o in (full, batched))
    assert close(s1.top, s2.top) and close(s1.bottom, s2.bottom)
    t1, t2 = (ll.hessian_trace(o, "hutch++", products=30, seed=3) for o in (full, batched))
    assert close(t1.estimate, t2.estimate)
    d1, d2 = (ll.hessian_density(o, steps=10, runs=2) for o in (full, batched))
    for power in (1, 2):  # the density's moments
        assert close((d1.nodes**power * d1.weights).sum(1), (d2.nodes**power * d2.weights).sum(1))
    d_a, d_b = ll.random_direction(full, seed=0), ll.random_direction(full, seed=1)
    p1, p2 = (ll.loss_plane(o, d_a, d_b, points=5) for o in (full, batched))
    assert close(p1.loss, p2.loss) and close(p1.acc, p2.acc)
    sam1, sam2 = (ll.sam_sharpness(o, rho=0.05, steps=5, restarts=1) for o in (full, batched))
    assert close(sam1.sharpness, sam2.sharpness)


def test_kept_graphs_and_rebuilt_ones_give_the_same_products(pair):
    full, batched = pair
    v = torch.randn(batched.size, dtype=torch.float64)
    kept = ll.HessianOperator(batched)
    rebuilt = ll.HessianOperator(batched, keep_bytes=0)
    partly = ll.HessianOperator(batched, keep_bytes=kept.kept_bytes // 2)
    assert len(kept.kept) == 5 and len(rebuilt.kept) == 0 and 0 < len(partly.kept) < 5
    one = ll.HessianOperator(full)  # a lone batch: kept whatever its size
    assert len(one.kept) == 1
    for op in (rebuilt, partly, one):
        assert torch.allclose(kept @ v, op @ v, rtol=1e-12, atol=1e-14)


def test_a_parameter_the_loss_does_not_use_has_zero_rows_in_the_hessian():
    net, x, y = mlp_and_data()

    class WithUnused(nn.Module):
        def __init__(self):
            super().__init__()
            self.net, self.unused = net, nn.Linear(2, 2).to(torch.float64)

        def forward(self, x):
            return self.net(x)
    obj = ll.Objective(WithUnused(), F.cross_entropy, (x, y))
    h = ll.HessianOperator(obj)
    dense = h.matrix()
    used = obj.size - 6  # the unused layer's 4 weights and 2 biases come last
    assert dense[used:].abs().max() == 0 and dense[:, used:].abs().max() == 0
    assert dense[:used].abs().max() > 0 and h.grad[used:].abs().max() == 0


def test_a_refreshed_objective_reads_the_model_again_but_not_its_data():
    model, x, y = mlp_and_data()
    passes = []

    class Counted(list):  # a re-iterable of batches that counts its passes
        def __iter__(self):
            passes.append(1)
            return super().__iter__()
    obj = ll.Objective(model, F.cross_entropy, Counted([(x[:50], y[:50]), (x[50:], y[50:])]))
    read = len(passes)
    with torch.no_grad():
        model[0].weight.mul_(2)
    now = obj.refreshed()
    assert len(passes) == read  # the batches were kept on the device: not read again
    fresh = ll.Objective(model, F.cross_entropy, [(x[:50], y[:50]), (x[50:], y[50:])])
    assert now.value == fresh.value != obj.value
    assert all(torch.equal(now.params[n], fresh.params[n]) for n in fresh.params)
    assert not torch.equal(now.params["0.weight"], obj.params["0.weight"])  # the first is left as it was


class SmallCNN(nn.Module):
    """A user's model, not losslab's: convolution, pooling, linear."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 4 * 4, 10)

    def forward(self, x):
        return self.fc(F.max_pool2d(F.relu(self.conv(x)), 2).flatten(1))


@pytest.mark.parametrize("device", DEVICES)
def test_a_small_cnn_on_digits_end_to_end(device):
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x[:200] / 16, dtype=torch.float64).view(-1, 1, 8, 8)
    y = torch.tensor(y[:200])
    torch.manual_seed(0)
    model = SmallCNN().double().to(device)
    before = {n: p.detach().clone() for n, p in model.state_dict().items()}
    loader = DataLoader(TensorDataset(x, y), batch_size=64)  # 64, 64, 64, 8
    obj = ll.Objective(model, F.cross_entropy, loader)
    assert obj.device.type == device and obj.size == 4 * 9 + 4 + 64 * 10 + 10
    spectrum = ll.hessian_eigenvalues(obj, k=4, which="both")
    exact = torch.linalg.eigvalsh(ll.hessian_matrix(obj)).numpy()
    assert np.allclose(spectrum.top, exact[::-1][:4], rtol=1e-4)
    assert np.allclose(spectrum.bottom, exact[:4], rtol=1e-4, atol=1e-7)
    plane = ll.loss_plane(obj, ll.random_direction(obj, seed=0), ll.random_direction(obj, seed=1), points=5)
    centre = list(plane.alphas).index(0.0)
    assert plane.loss[centre, centre] == pytest.approx(obj.value, rel=1e-10)
    assert plane.acc is not None and 0 <= plane.acc.min() <= plane.acc.max() <= 1
    assert ll.sam_sharpness(obj, rho=0.05, steps=3, restarts=1).sharpness > 0
    after = model.state_dict()
    assert all(torch.equal(before[n], after[n]) for n in before)  # the model was never moved


def test_a_custom_forward_for_dict_batches():
    model, x, y = mlp_and_data()
    batches = [{"inputs": x[i: i + 40], "labels": y[i: i + 40]} for i in range(0, 103, 40)]

    def forward(model, params, batch):
        out = torch.func.functional_call(model, params, (batch["inputs"],))
        return F.cross_entropy(out, batch["labels"]), len(batch["labels"])
    custom = ll.Objective(model, forward=forward, data=batches)
    plain = ll.Objective(model, F.cross_entropy, (x, y))
    assert close(custom.value, plain.value)
    assert close(ll.hessian_eigenvalues(custom, k=2).top, ll.hessian_eigenvalues(plain, k=2).top)


def test_connect_two_state_dicts_of_one_architecture():
    model, x, y = mlp_and_data()
    a = {n: p.detach().clone() for n, p in model.named_parameters()}
    b = {n: p + 0.3 * torch.randn_like(p) for n, p in a.items()}
    joined = ll.connect(ll.Objective(model, F.cross_entropy, (x, y)), a, b, steps=20, points=5)
    line = joined.paths["line"]
    assert line["t"][0] == 0 and line["train_loss"][0] == pytest.approx(ll.Objective(model, F.cross_entropy,
                                                                                      (x, y)).value)
    assert set(joined.paths) == {"line", "bezier"} and "line" in joined.barriers


@pytest.mark.parametrize("make,message", [
    (lambda m, x, y: ll.Objective(m, F.cross_entropy, DataLoader(TensorDataset(x, y), batch_size=25, shuffle=True)),
     "changes between two passes"),
    (lambda m, x, y: ll.Objective(m, F.cross_entropy, DataLoader(TensorDataset(x[:0], y[:0]), batch_size=25)),
     "yields no batch"),
    (lambda m, x, y: ll.Objective(m, lambda out, t: F.cross_entropy(out, t, reduction="none"), (x, y)),
     "not a scalar"),
    (lambda m, x, y: ll.Objective(m, lambda out, t: out.sum() * float("nan"), (x, y)), "the loss is nan"),
    (lambda m, x, y: ll.Objective(m.requires_grad_(False), F.cross_entropy, (x, y)), "no trainable parameters"),
    (lambda m, x, y: ll.Objective(m, F.cross_entropy, iter([(x, y)])), "one-pass iterator"),
    (lambda m, x, y: ll.Objective(m, F.cross_entropy, [x]), "(inputs, targets)"),
    (lambda m, x, y: ll.Objective(m, None, (x, y)), "give loss"),
    (lambda m, x, y: ll.Objective(m, F.cross_entropy, (x, y), forward=lambda mm, p, b: (F.cross_entropy(
        torch.func.functional_call(mm, p, (b[0],)), b[1]), len(b[1]))), "forward= must return (outputs, targets)"),
    (lambda m, x, y: ll.Objective(m, forward=lambda mm, p, b: (F.cross_entropy(
        torch.func.functional_call(mm, p, (b[0],)), b[1]), len(b[1])), data=(x, y), accuracy=ll.argmax_accuracy),
     "accuracy= takes the model's outputs"),
    (lambda m, x, y: ll.Objective("model", F.cross_entropy, (x, y)), "torch.nn.Module"),
    (lambda m, x, y: ll.hessian_eigenvalues(ll.Objective(m, F.cross_entropy, (x, y)), k=75), "k=75"),
    (lambda m, x, y: ll.loss_line(ll.Objective(m, F.cross_entropy, (x, y)), torch.zeros(3)), "shape (3,)"),
    (lambda m, x, y: ll.direction_to(ll.Objective(m, F.cross_entropy, (x, y)),
                                     nn.Sequential(nn.Linear(5, 9), nn.Tanh(), nn.Linear(9, 3)).state_dict()),
     "not a state of this model"),
    (lambda m, x, y: ll.connect(ll.Objective(m, F.cross_entropy, (x, y)), m.state_dict(),
                                nn.Sequential(nn.Linear(5, 2)).state_dict()), "not a state of this model"),
    (lambda m, x, y: ll.hessian_eigenvalues(ll.Objective(m, forward=lambda m, p, b: (sum(t.sum() for t in p.values()),
                                                                                       1), data=[()]),
                                            curvature="ggn"), "needs the model's outputs"),
])
def test_bad_input_is_one_clear_line(make, message):
    model, x, y = mlp_and_data()
    with pytest.raises(LossLabError, match=message.replace("(", r"\(").replace(")", r"\)")) as found:
        make(model, x, y)
    assert "\n" not in str(found.value)


def test_a_batchnorm_in_training_mode_keeps_its_batches_and_its_running_statistics():
    """In mode="train" its loss uses each batch's own statistics (batches are not joined for
    evaluation), and the objective updates no running statistics, the model's least of all."""
    import copy

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.Linear(8, 3)).double().train()
    _, x, y = mlp_and_data()
    before = copy.deepcopy(model.state_dict())
    loader = DataLoader(TensorDataset(x, y), batch_size=25)
    obj = ll.Objective(model, F.cross_entropy, loader, mode="train")
    twin = copy.deepcopy(model)
    expected = sum(F.cross_entropy(twin(xb), yb).item() * len(xb) for xb, yb in loader) / len(x)
    assert obj.value == pytest.approx(expected, rel=1e-12)
    assert abs(obj.value - ll.Objective(model, F.cross_entropy, (x, y), mode="train").value) > 1e-6  # batches matter
    ll.loss_line(obj, ll.random_direction(obj), points=3)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
