"""losslab's optimizers against closed forms, explicit eigen-decompositions and brute force."""

import copy
import math
import re

import numpy as np
import pytest
import torch
from torch import nn

from losslab.config import MLPConfig, load_config
from losslab.core.errors import LossLabError
from losslab.models.mlp import MLP
from losslab.optim.muon import HybridMuon, Muon, hidden_matrices, orthogonalize
from losslab.optim.registry import OPTIMIZERS, construct
from losslab.optim.sam import SAM, sam_perturbation
from losslab.optim.shampoo import Shampoo
from losslab.optim.svrg import SVRG, gradient_variance
from losslab.train.loop import train

# ------------------------------------------------------------------ SAM

G = [torch.tensor([3.0, -4.0]), torch.tensor([[0.0, 1.0], [-2.0, 4.0]])]  # |g| max 4, twice


def flat(tensors):
    return torch.cat([t.flatten() for t in tensors])


def test_sam_perturbation_closed_forms():
    g = flat(G)
    rho = 0.3
    assert torch.allclose(flat(sam_perturbation(G, rho, 2)), rho * g / g.norm())
    assert torch.allclose(flat(sam_perturbation(G, rho, math.inf)), rho * g.sign())
    # p = 1: rho on the largest |g_i|, split between the two ties (-4 and 4)
    expected = torch.zeros_like(g)
    expected[[1, 5]] = torch.tensor([-rho / 2, rho / 2])
    assert torch.allclose(flat(sam_perturbation(G, rho, 1)), expected)
    # any p: the formula of the paper, and the perturbation lies on the l_p sphere of radius rho
    p = 3.0
    q = p / (p - 1)
    closed = rho * g.sign() * g.abs() ** (q - 1) / (g.abs() ** q).sum() ** (1 / p)
    eps = flat(sam_perturbation(G, rho, p))
    assert torch.allclose(eps, closed) and math.isclose(eps.norm(p=p).item(), rho, rel_tol=1e-5)


@pytest.mark.parametrize("scale", [1e-15, 1e-30, 1e6])
def test_sam_steps_are_rho_long_for_any_gradient_scale_and_zero_for_a_zero_gradient(scale):
    """No epsilon on the norm: a float32 gradient of norm 1e-15 moved 1.7e-4 instead of rho."""
    grads = [t.float() * scale for t in G]
    eps = flat(sam_perturbation(grads, 0.05, 2))
    assert math.isclose(eps.norm().item(), 0.05, rel_tol=1e-5)
    assert torch.allclose(eps, 0.05 * flat(G).float() / flat(G).float().norm(), rtol=1e-5)
    assert flat(sam_perturbation([torch.zeros(3), torch.zeros(2, 2)], 0.05, 2)).abs().max() == 0


def test_sam_perturbation_maximizes_the_linear_model_over_the_ball():
    """Brute force: no random point of the l_p ball beats eps_hat on g . eps."""
    g = flat(G)
    torch.manual_seed(0)
    for p in (1.0, 1.5, 2.0, 4.0, math.inf):
        best = (flat(sam_perturbation(G, 1.0, p)) @ g).item()
        candidates = torch.randn(20000, g.numel())
        candidates /= candidates.norm(p=p, dim=1, keepdim=True)
        assert (candidates @ g).max().item() <= best + 1e-5
        assert math.isclose(best, g.norm(p=p / (p - 1) if p != 1 else math.inf).item()
                            if not math.isinf(p) else g.norm(p=1).item(), rel_tol=1e-5)


def quadratic():
    a = torch.tensor([[3.0, 1.0], [1.0, 2.0]])
    w = nn.Parameter(torch.tensor([1.0, -2.0]))
    return a, w, (lambda: 0.5 * w @ a @ w)


@pytest.mark.parametrize("adaptive", [False, True])
def test_one_sam_step_on_a_quadratic_equals_the_hand_computed_update(adaptive):
    a, w, loss = quadratic()
    w0 = w.detach().clone()
    rho, lr = 0.1, 0.05
    opt = SAM([w], torch.optim.SGD, rho=rho, adaptive=adaptive, lr=lr)
    loss().backward()

    def closure():
        opt.zero_grad()
        value = loss()
        value.backward()
        return value
    opt.step(closure)
    g = a @ w0
    t = w0.abs() if adaptive else torch.ones(2)
    eps = rho * t**2 * g / (t * g).norm()
    assert torch.allclose(w.detach(), w0 - lr * (a @ (w0 + eps)))


def test_sam_state_dict_carries_the_base_optimizer_state():
    a, w, loss = quadratic()
    opt = SAM([w], torch.optim.SGD, lr=0.1, momentum=0.9)
    for _ in range(3):
        opt.zero_grad()
        loss().backward()
        opt.step(lambda: (opt.zero_grad(), loss().backward()))
    state = opt.state_dict()
    w2 = nn.Parameter(w.detach().clone())
    opt2 = SAM([w2], torch.optim.SGD, lr=0.1, momentum=0.9)
    opt2.load_state_dict(state)
    assert torch.equal(opt2.base_optimizer.state[w2]["momentum_buffer"], opt.base_optimizer.state[w]["momentum_buffer"])
    assert opt2.base_optimizer.param_groups is opt2.param_groups


# ------------------------------------------------------------------ Shampoo

def explicit_root(m: np.ndarray, root: float, eps: float) -> np.ndarray:
    values, vectors = np.linalg.eigh(m)
    return vectors @ np.diag((np.maximum(values, 0) + eps) ** (-1 / root)) @ vectors.T


@pytest.mark.parametrize("beta2", [1.0, 0.9])
def test_shampoo_step_equals_explicit_eigendecomposition_and_reuses_roots(beta2):
    """beta2 = 1: the paper's sums; beta2 < 1: exponential moving averages."""
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(3, 5, dtype=torch.float64))
    grads = [torch.randn(3, 5, dtype=torch.float64) for _ in range(3)]
    lr, eps = 0.1, 1e-3
    weight = 1.0 if beta2 == 1 else 1 - beta2
    opt = Shampoo([w], lr=lr, eps=eps, graft="none", precondition_every=2, beta2=beta2)
    left, right = np.zeros((3, 3)), np.zeros((5, 5))
    expected = w.detach().numpy().copy()
    for step, g in enumerate(grads):
        w.grad = g.clone()
        opt.step()
        gn = g.numpy()
        left = beta2 * left + weight * gn @ gn.T
        right = beta2 * right + weight * gn.T @ gn
        if step % 2 == 0:  # refreshed at steps 1 and 3, reused at step 2
            roots = explicit_root(left, 4, eps), explicit_root(right, 4, eps)
        expected = expected - lr * roots[0] @ gn @ roots[1]
        np.testing.assert_allclose(w.detach().numpy(), expected, rtol=1e-10, atol=1e-12)
        assert torch.equal(w.grad, g)  # p.grad untouched


def test_shampoo_grafting_takes_the_adagrad_step_norm_and_vectors_are_diagonal():
    torch.manual_seed(1)
    w, b = nn.Parameter(torch.randn(4, 6)), nn.Parameter(torch.randn(4))
    w_ref, b_ref = nn.Parameter(w.detach().clone()), nn.Parameter(b.detach().clone())
    shampoo = Shampoo([w, b], lr=0.1, graft="adagrad", graft_eps=1e-10)
    adagrad = torch.optim.Adagrad([w_ref, b_ref], lr=0.1, eps=1e-10)
    for _ in range(3):
        gw, gb = torch.randn(4, 6), torch.randn(4)
        before = w.detach().clone()
        w.grad, b.grad, w_ref.grad, b_ref.grad = gw, gb, gw.clone(), gb.clone()
        ref_before = w_ref.detach().clone()
        shampoo.step()
        adagrad.step()
        assert math.isclose((w - before).norm().item(), (w_ref - ref_before).norm().item(), rel_tol=1e-4)
        assert torch.allclose(b, b_ref, atol=1e-6)  # the vector is plain AdaGrad
    assert not torch.allclose(w, w_ref, atol=1e-3)  # same length, Shampoo's own direction


def test_shampoo_reshapes_higher_rank_tensors_and_skips_long_sides():
    w = nn.Parameter(torch.randn(2, 3, 4))
    w.grad = torch.randn(2, 3, 4)
    opt = Shampoo([w], max_preconditioner_dim=8)
    opt.step()
    state = opt.state[w]
    assert state["L"].shape == (2, 2) and "R" not in state  # (2, 12): the 12-long side left alone


# ------------------------------------------------------------------ Muon

def ill_conditioned(n: int, m: int, condition: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(m, m, generator=g, dtype=torch.float64))
    k = min(n, m)
    s = torch.logspace(0, -math.log10(condition), k, dtype=torch.float64)
    return ((u[:, :k] * s) @ v[:, :k].T).float()


MATRICES = {
    "random 96x160": torch.randn(96, 160, generator=torch.Generator().manual_seed(0)),
    "random 160x48": torch.randn(160, 48, generator=torch.Generator().manual_seed(1)),
    "cond 1e4 128x128": ill_conditioned(128, 128, 1e4),
    "cond 1e4 64x200": ill_conditioned(64, 200, 1e4),
}
# method: (band of f(sigma) for singular values with sigma / ||M||_F >= floor, floor, upper bound for all)
BANDS = {"newton-schulz": ((0.68, 1.21), 3e-3, 1.21), "polar-express": ((0.99, 1.01), 1e-3, 1.01),
         "svd": ((1 - 1e-6, 1 + 1e-6), 0.0, 1 + 1e-6)}  # float32 in, float32 out


@pytest.mark.parametrize("method", list(BANDS))
@pytest.mark.parametrize("name", list(MATRICES))
def test_orthogonalization_lands_in_its_documented_band(method, name):
    """O = U f(S) V^T: f(sigma_i) = ||O v_i|| for each right singular vector v_i of M."""
    m = MATRICES[name]
    u, s, vh = torch.linalg.svd(m.double(), full_matrices=False)
    o = orthogonalize(m, method).double()
    f = (o @ vh.T).norm(dim=0)
    (low, high), floor, ceiling = BANDS[method]
    resolved = s / s.norm() >= floor
    assert resolved.sum() >= len(s) // 2
    assert f[resolved].min() >= low and f[resolved].max() <= high, (f.min(), f.max())
    assert f.max() <= ceiling
    if method != "newton-schulz":  # bfloat16 also mixes the singular directions a little
        assert torch.allclose(o, u @ torch.diag(f) @ vh, atol=1e-4)


def test_muon_hybrid_splits_parameters_by_role():
    cfg = load_config("grokking")
    from losslab.models import build_model
    task = cfg.task.build(0)
    transformer = build_model(cfg.model, task, task.n_classes)
    assert hidden_matrices(transformer) == {"blocks.0.attn.q.weight", "blocks.0.attn.kv.weight",
                                            "blocks.0.attn.out.weight", "blocks.0.mlp.0.weight",
                                            "blocks.0.mlp.2.weight"}
    mlp = MLP(MLPConfig(depth=3, width=16), input_dim=8, n_outputs=2)
    assert hidden_matrices(mlp) == {"net.2.weight", "net.4.weight"}  # not the input layer nor the head
    opt = HybridMuon.for_model(mlp, lr=0.02)
    muon_params = {id(p) for p in opt.muon.param_groups[0]["params"]}
    assert muon_params == {id(mlp.net[2].weight), id(mlp.net[4].weight)}
    assert len(opt.param_groups) == 2 and opt.parts[1].param_groups[0]["lr"] == 1e-3


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1),
                                      nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))

    def forward(self, x):
        return self.head(self.features(x))


def test_muon_on_a_cnn_takes_the_hidden_filters_and_the_first_linear_after_them():
    """The first convolution is the input layer and the last Linear the output layer (AdamW);
    the second convolution's filters and the Linear between go to Muon."""
    cnn = SmallCNN()
    assert hidden_matrices(cnn) == {"features.2.weight", "head.0.weight"}
    opt = HybridMuon.for_model(cnn, lr=0.02, orthogonalization="svd", momentum=0.0)
    assert {id(p) for p in opt.muon.param_groups[0]["params"]} == {id(cnn.features[2].weight), id(cnn.head[0].weight)}
    filters = cnn.features[2].weight
    before = filters.detach().clone()
    cnn(torch.randn(32, 1, 8, 8)).square().mean().backward()
    opt.step()
    # the step of a filter bank is the polar factor of its (out, in x 3 x 3) matrix, scaled by the lr
    step = (before - filters.detach()).reshape(16, -1).double() / 0.02
    assert torch.allclose(torch.linalg.svdvals(step), torch.ones(16, dtype=torch.float64), atol=1e-5)
    with pytest.raises(ValueError, match="not a parameter of size"):
        Muon([torch.nn.Parameter(torch.zeros(3))])


def test_muon_steps_as_torch_muon_on_matrices():
    torch.manual_seed(0)
    a, b = nn.Linear(6, 5), nn.Linear(6, 5)
    b.load_state_dict(a.state_dict())
    ours = Muon([a.weight], lr=0.05, weight_decay=0.1, adjust_lr_fn="match_rms_adamw")
    theirs = torch.optim.Muon([b.weight], lr=0.05, weight_decay=0.1, adjust_lr_fn="match_rms_adamw")
    x = torch.randn(16, 6)
    for _ in range(3):
        for layer, opt in ((a, ours), (b, theirs)):
            opt.zero_grad()
            layer(x).square().sum().backward()
            opt.step()
    assert torch.equal(a.weight, b.weight)


@pytest.mark.parametrize("method", list(BANDS))
def test_muon_update_has_the_singular_values_of_its_band(method):
    torch.manual_seed(0)
    mlp = MLP(MLPConfig(depth=2, width=64), input_dim=8, n_outputs=2)
    weight = mlp.net[2].weight
    opt = HybridMuon.for_model(mlp, lr=0.01, momentum=0.0, orthogonalization=method)
    before = weight.detach().clone()
    mlp(torch.randn(256, 8)).square().mean().backward()
    opt.step()
    s = torch.linalg.svdvals((before - weight.detach()).double() / 0.01)
    (low, high), _, ceiling = BANDS[method]
    assert s.max() <= ceiling + 1e-3 and (s >= low - 1e-3).float().mean() > 0.5


def test_muon_on_a_model_without_hidden_matrices_is_one_clear_line(store):
    cfg = load_config("parity", ["optim.name=muon"])  # one hidden layer: input and head only
    with pytest.raises(LossLabError, match="no hidden matrices or filters for Muon"):
        train(cfg, store)
    assert not list(store.root.glob("*/config.toml"))  # no empty run left behind


def test_reference_mode_trains_in_float64_with_the_exact_polar_factor(store, tiny_cfg):
    from losslab.train.loop import Trainer
    cfg = tiny_cfg("optim.name=muon", "optim.reference=true")
    trainer = Trainer(cfg, store.create(cfg), store)
    assert {p.dtype for p in trainer.stepper.model.parameters()} == {torch.float64}
    assert trainer.stepper.optimizer.muon.orthogonalization == "svd"
    assert trainer.run()["status"] == "completed"


# ------------------------------------------------------------------ SVRG

def finite_sum_problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(64, 5, generator=g, dtype=torch.float64), torch.randn(64, dtype=torch.float64, generator=g)
    model = nn.Linear(5, 1, bias=False).double()
    loss_fn = lambda out, target: 0.5 * ((out[:, 0] - target) ** 2).mean()  # noqa: E731
    return model, loss_fn, x, y


def test_svrg_estimate_is_unbiased():
    model, loss_fn, x, y = finite_sum_problem()
    batches = torch.arange(64).view(8, 8)
    lr = 0.1
    opt = SVRG(model.parameters(), snapshot_every=100, lr=lr)

    def gradient(xb, yb):
        opt.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        return loss
    gradient(x[batches[0]], y[batches[0]])
    opt.step(lambda full=False: gradient(x, y) if full else gradient(x[batches[0]], y[batches[0]]))
    estimates = []
    for b in batches:  # from the same (w, w~): the base SGD step is -lr * v
        m, o = copy.deepcopy(model), None
        o = SVRG(m.parameters(), snapshot_every=100, lr=lr)
        o.load_state_dict(opt.state_dict())
        w = m.weight.detach().clone()

        def grad_of(xb, yb, m=m, o=o):
            o.zero_grad()
            loss = loss_fn(m(xb), yb)
            loss.backward()
            return loss
        grad_of(x[b], y[b])
        o.step(lambda full=False, b=b, grad_of=grad_of: grad_of(x, y) if full else grad_of(x[b], y[b]))
        estimates.append((w - m.weight.detach()) / lr)
    gradient(x, y)
    assert torch.allclose(torch.stack(estimates).mean(0), model.weight.grad, atol=1e-12)
    assert torch.stack(estimates).std(0).max() > 1e-3  # a real estimate, not the full gradient


def test_svrg_variance_vanishes_at_the_optimum_where_sgds_does_not():
    model, loss_fn, x, y = finite_sum_problem()
    solution = torch.linalg.lstsq(x, y[:, None]).solution.T
    with torch.no_grad():
        model.weight.copy_(solution)
    at_optimum = gradient_variance(model, loss_fn, x, y, 8, {"weight": solution})
    sgd, svrg = at_optimum["weight"]
    assert sgd > 1e-3 and svrg < 1e-20
    # away from it, with an old snapshot: both positive, SVRG's smaller near the snapshot
    with torch.no_grad():
        model.weight.add_(0.01)
    sgd, svrg = gradient_variance(model, loss_fn, x, y, 8, {"weight": solution})["weight"]
    assert 0 < svrg < sgd / 100


# ------------------------------------------------------------------ Grokfast


def _gradients_fed_to_the_base(opt_name, kwargs, grads):
    """The p.grad the base optimizer (SGD, lr 1) sees for a scalar parameter given `grads`."""
    w = nn.Parameter(torch.zeros(()))
    opt = construct(opt_name, nn.ParameterList([w]), {"base": "sgd", "lr": 1.0, **kwargs})
    seen = []
    for g in grads:
        before = w.detach().clone()
        w.grad = torch.tensor(float(g))
        opt.step()
        seen.append(float(before - w.detach()))  # SGD with lr 1: the step is the gradient it saw
    return seen


def test_grokfast_ema_amplifies_the_exponential_average():
    grads = [1.0, -2.0, 0.5, 3.0, 3.0]
    alpha, lamb = 0.9, 2.0
    mu, expected = None, []
    for g in grads:
        mu = g if mu is None else alpha * mu + (1 - alpha) * g
        expected.append(g + lamb * mu)
    assert _gradients_fed_to_the_base("grokfast_ema", {"alpha": alpha, "lamb": lamb}, grads) == pytest.approx(expected)
    # a constant gradient is scaled by (1 + lamb): the effective step size a fair comparison matches
    assert _gradients_fed_to_the_base("grokfast_ema", {"lamb": 2.0}, [0.3] * 4) == pytest.approx([0.9] * 4)


def test_grokfast_ma_waits_for_a_full_window_then_adds_its_mean():
    grads = [1.0, 2.0, 4.0, 8.0, 16.0]
    seen = _gradients_fed_to_the_base("grokfast_ma", {"window": 3, "lamb": 5.0}, grads)
    assert seen == pytest.approx([1.0, 2.0, 4.0 + 5 * 7 / 3, 8.0 + 5 * 14 / 3, 16.0 + 5 * 28 / 3])


@pytest.mark.parametrize("override,message", [("optim.alpha=1.0", "alpha must be in [0, 1)"),
                                              ("optim.window=0", "window must be >= 1"),
                                              ("optim.lamb=-1", "lamb must be >= 0")])
def test_grokfast_arguments_are_checked(override, message):
    name = "grokfast_ma" if "window" in override else "grokfast_ema"
    with pytest.raises(LossLabError, match=re.escape(message)):
        load_config("grokking", [f"optim.name={name}", override])


# ------------------------------------------------------------------ every optimizer

SETTINGS = {  # learning rates for a unit-scale quadratic, cosine-decayed over 400 steps
    "sgd": {"lr": 0.5}, "adam": {"lr": 0.1}, "adamw": {"lr": 0.1}, "adamax": {"lr": 0.1}, "nadam": {"lr": 0.1},
    "radam": {"lr": 0.1}, "rmsprop": {"lr": 0.02}, "rprop": {"lr": 0.01}, "adagrad": {"lr": 0.5},
    "adadelta": {"lr": 50.0}, "schedulefree_adamw": {"lr": 0.1}, "schedulefree_sgd": {"lr": 0.2},
    "shampoo": {"lr": 0.5}, "muon": {"lr": 0.1, "adamw_lr": 0.1}, "sam": {"lr": 0.5, "rho": 0.01},
    "svrg": {"lr": 0.5, "snapshot_every": 10}, "grokfast_ema": {"lr": 0.05}, "grokfast_ma": {"lr": 0.05, "window": 5},
}


def test_every_registered_optimizer_has_a_setting_here():
    assert set(SETTINGS) == set(OPTIMIZERS)


@pytest.mark.parametrize("name", list(SETTINGS))
def test_each_optimizer_reaches_the_minimum_of_a_convex_quadratic(name):
    """f(W) = 0.5 * ||W X - Y||^2 / n, W 3x4, X well conditioned: W* by least squares."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 64, generator=g)
    y = torch.randn(3, 64, generator=g)
    target = torch.linalg.lstsq(x.T, y.T).solution.T
    model = nn.Sequential(nn.Identity())
    model.w = nn.Parameter(torch.zeros(3, 4))
    opt = (HybridMuon(model.named_parameters(), **SETTINGS[name]) if name == "muon"
           else construct(name, model, SETTINGS[name]))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 400)
    if hasattr(opt, "train"):
        opt.train()

    def closure(full=False):
        opt.zero_grad()
        loss = 0.5 * ((model.w @ x - y) ** 2).sum() / 64
        loss.backward()
        return loss
    for _ in range(400):
        closure()
        opt.step(closure) if getattr(opt, "needs_closure", False) else opt.step()
        scheduler.step()
    if hasattr(opt, "eval"):
        opt.eval()
    assert (model.w.detach() - target).norm() < 1e-2 * target.norm()


def test_svrg_run_records_the_variance_ratio_per_layer(store):
    """Right after a snapshot (w close to w~) SVRG removes most of the variance."""
    cfg = load_config("parity", ["optim.name=svrg", "optim.snapshot_every=31", "optim.lr=0.05",
                                 "train.max_steps=40", "train.batch_size=32"])
    s = train(cfg, store)
    ratios = [r for r in store.find(s["run_id"]).metric_rows() if r[2].startswith("grad_var_ratio/")]
    assert {r[2] for r in ratios} == {"grad_var_ratio/net.0.weight", "grad_var_ratio/net.0.bias",
                                      "grad_var_ratio/net.2.weight"}
    assert min(r[3] for r in ratios if r[0] == 1) > 10
    assert any(f.endswith("svrg_variance.png") for f in s["figures"])


@pytest.mark.slow  # 12 s; the gallery's heavy-tailed-classes entry (slow too) makes the same claim
def test_heavy_tailed_classes_gd_leaves_the_rare_ones_adam_learns_them(store):
    """Kunstner et al. 2024 on the heavy-tail preset, 150 steps (GD diverges at lr 10, spikes at 3)."""
    def group_losses(*overrides):
        s = train(load_config("heavy-tail", ["train.max_steps=150", *overrides]), store)
        assert s["status"] == "completed" and any(f.endswith("class_groups.png") for f in s["figures"])
        rows = store.find(s["run_id"]).metric_rows()
        first = {n: v for step, _, n, v in rows if step == 0 and n.startswith("loss_group")}
        last = {n: v for step, _, n, v in rows if step == 150 and n.startswith("loss_group")}
        return first, last
    first, last = group_losses("optim.name=sgd", "optim.lr=1")
    assert last["loss_group0"] < first["loss_group0"] - 1  # GD learns the most frequent classes
    assert last["loss_group7"] > first["loss_group7"] - 0.1  # and not the rarest
    first, last = group_losses()
    assert all(last[g] < 0.3 * first[g] for g in first)  # Adam learns every group


def test_zipf_frequency_groups_hold_equal_shares_of_samples():
    from losslab.tasks.zipf import frequency_groups, zipf_probabilities
    p = zipf_probabilities(1000, 1.0)
    assert math.isclose(p[0] / p[9], 10.0) and math.isclose(float(p.sum()), 1.0)
    labels = torch.multinomial(p.float(), 20000, replacement=True, generator=torch.Generator().manual_seed(0))
    groups = frequency_groups(labels, 1000, 4)
    shares = torch.bincount(groups[labels], minlength=4) / len(labels)
    assert groups[0] == 0 and (shares - 0.25).abs().max() < 0.05
    assert (torch.bincount(groups, minlength=4).diff() > 0).all()  # rarer groups hold more classes


def test_the_optimizers_import_from_the_package_as_the_readme_says():
    import losslab.optim as package

    for name in package.__all__:
        assert getattr(package, name) is getattr(__import__(f"losslab.optim.{package._OPTIMIZERS[name]}",
                                                            fromlist=[name]), name)
    from losslab.optim import SAM as PackageSAM  # noqa: N811

    assert PackageSAM is SAM
    with pytest.raises(AttributeError):
        package.NoSuchOptimizer  # noqa: B018
