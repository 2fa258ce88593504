"""Hessian estimators against closed forms and the dense Hessian."""

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

from losslab.analysis.hessian import Hessian, extreme_eigenpairs, hutchinson_trace, spectral_density


def quadratic(eigenvalues, seed=0):
    """0.5 w^T A w with A = Q diag(eigenvalues) Q^T: its Hessian is A."""
    n = len(eigenvalues)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    a = q @ torch.diag(torch.tensor(eigenvalues, dtype=torch.float64)) @ q.T
    w = torch.randn(n, dtype=torch.float64)
    return Hessian(lambda p: 0.5 * p["w"] @ a @ p["w"], {"w": w}), a


EIGS = [5.0, 3.0, 2.0, 1.0, 0.5, 0.1, 0.0, -0.2, -1.0, -4.0] + [0.3] * 10


def test_quadratic_extreme_eigenvalues_trace_and_dense_are_exact():
    h, a = quadratic(EIGS)
    assert torch.allclose(h.dense(), a, atol=1e-12)
    top = extreme_eigenpairs(h, k=3, which="top")
    assert np.allclose(top.values, [2.0, 3.0, 5.0], rtol=1e-8)
    bottom = extreme_eigenpairs(h, k=2, which="bottom")
    assert np.allclose(bottom.values, [-4.0, -1.0], rtol=1e-8)
    v = torch.from_numpy(top.vectors[:, -1])
    assert torch.allclose(a @ v, 5.0 * v, atol=1e-6)
    trace = hutchinson_trace(h, samples=400)
    assert abs(trace.estimate - sum(EIGS)) < 3 * trace.standard_error


def test_slq_with_full_lanczos_puts_its_nodes_on_the_eigenvalues():
    h, _ = quadratic(EIGS)
    density = spectral_density(h, steps=20, runs=3)
    distinct = sorted(set(EIGS))
    for nodes, weights in zip(density.nodes, density.weights):
        real = nodes[weights > 1e-12]
        assert len(real) == len(distinct) and np.allclose(sorted(real), distinct, atol=1e-8)
        assert math.isclose(weights.sum(), 1.0, rel_tol=1e-10)
    grid = np.linspace(-6, 7, 4001)
    smooth = density.smoothed(grid, sigma=0.05)
    assert math.isclose(np.trapezoid(smooth, grid), 1.0, rel_tol=1e-3)
    # each run's mean is v^T H v / v^T v for its random start: tr(H) / n in expectation
    many = spectral_density(h, steps=4, runs=400)
    means = (many.nodes * many.weights).sum(1)
    assert abs(means.mean() - np.mean(EIGS)) < 3 * means.std() / math.sqrt(len(means))


@pytest.fixture(scope="module")
def small_mlp():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    x, y = torch.randn(64, 6), torch.randint(0, 3, (64,))

    def loss_of(p):
        return nn.functional.cross_entropy(functional_call(model, p, (x,)), y)
    params = {n: p.detach() for n, p in model.named_parameters()}
    flat = torch.cat([p.flatten() for p in params.values()])

    def flat_loss(v):
        pieces, at = {}, 0
        for n, p in params.items():
            pieces[n] = v[at: at + p.numel()].view(p.shape)
            at += p.numel()
        return loss_of(pieces)
    dense = torch.autograd.functional.hessian(flat_loss, flat).double()
    return Hessian(loss_of, params), dense


def test_mlp_hessian_against_autograd_functional_hessian(small_mlp):
    h, dense = small_mlp
    assert torch.allclose(h.dense(), (dense + dense.T) / 2, atol=1e-5)
    exact = torch.linalg.eigvalsh(dense).numpy()
    top = extreme_eigenpairs(h, k=5, which="top")
    assert np.allclose(top.values, exact[-5:], rtol=1e-4)
    bottom = extreme_eigenpairs(h, k=3, which="bottom")
    assert np.allclose(bottom.values, exact[:3], rtol=1e-4, atol=1e-6)
    trace = hutchinson_trace(h, samples=300)
    assert abs(trace.estimate - float(dense.trace())) < 3 * trace.standard_error
    assert torch.linalg.matrix_rank(h.dense(), hermitian=True) == torch.linalg.matrix_rank(dense.double(),
                                                                                            hermitian=True)


def test_sam_and_keskar_sharpness_on_a_quadratic_at_its_minimum():
    from losslab.analysis.sharpness import keskar_sharpness, sam_sharpness
    h, a = quadratic([4.0, 1.0, 0.5, 0.1])
    params = {"w": torch.zeros(4, dtype=torch.float64)}

    def loss_of(p):
        return 0.5 * p["w"] @ a @ p["w"]
    rho = 0.1
    assert sam_sharpness(loss_of, params, rho=rho, steps=30)["sharpness"] == pytest.approx(rho**2 * 4.0 / 2, rel=1e-3)
    # Keskar's box |eps_i| <= eps (|w_i| + 1) = eps: the best corner, by brute force over the 16 corners
    eps = 1e-2
    corners = torch.tensor([[(c >> i) & 1 for i in range(4)] for c in range(16)], dtype=torch.float64) * 2 - 1
    best = max(float(loss_of({"w": eps * c})) for c in corners)
    assert keskar_sharpness(loss_of, params, eps=eps)["sharpness"] == pytest.approx(100 * best, rel=1e-6)


def test_adam_preconditioned_sharpness_against_the_dense_matrix():
    from losslab.analysis.sharpness import adam_preconditioned_sharpness
    h, a = quadratic(EIGS)
    v = torch.rand(len(EIGS), dtype=torch.float64) + 0.1
    state = {"state": {0: {"exp_avg_sq": v * (1 - 0.999**10), "step": torch.tensor(10.0)}},
             "param_groups": [{"params": [0], "betas": (0.9, 0.999), "lr": 0.01, "eps": 1e-8}]}
    p_inv_sqrt = torch.diag((v.sqrt() + 1e-8).rsqrt())
    exact = torch.linalg.eigvalsh(p_inv_sqrt @ a @ p_inv_sqrt).max().item()
    result = adam_preconditioned_sharpness(h, state)
    assert result["preconditioned_lambda_max"] == pytest.approx(exact, rel=1e-6)
    assert result["threshold"] == pytest.approx(3.8 / (0.1 * 0.01))


def test_behavioral_gradients_of_a_linear_model_have_the_rank_of_the_data():
    from losslab.analysis.basin import behavioral_gradients, numerical_rank
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 3, generator=g) @ torch.randn(3, 8, generator=g)  # rank 3 inputs in 8 dimensions
    model = nn.Linear(8, 2, bias=False)
    jac = behavioral_gradients(model, {n: p.detach() for n, p in model.named_parameters()}, x)
    assert jac.shape == (60, 16)
    assert numerical_rank(torch.linalg.svdvals(jac), 1e-6) == 2 * 3  # one copy of X per output
    expected = torch.zeros(60, 16, dtype=torch.float64)  # d out_k / d W_kj = x_j
    for i in range(30):
        for k in range(2):
            expected[2 * i + k, 8 * k: 8 * (k + 1)] = x[i]
    assert torch.allclose(jac, expected, atol=1e-6)


def test_at_a_global_minimum_of_mse_rank_h_equals_rank_g():
    from losslab.analysis.basin import behavioral_gradients, numerical_rank
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 6), nn.Tanh(), nn.Linear(6, 1)).double()
    x, y = torch.randn(5, 2, dtype=torch.float64), torch.randn(5, 1, dtype=torch.float64)
    lbfgs = torch.optim.LBFGS(model.parameters(), lr=1, max_iter=2000, tolerance_grad=1e-15,
                              tolerance_change=1e-20, line_search_fn="strong_wolfe")

    def closure():
        lbfgs.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        return loss
    lbfgs.step(closure)
    params = {n: p.detach() for n, p in model.named_parameters()}
    loss_of = (lambda p: ((functional_call(model, p, (x,)) - y) ** 2).mean())  # noqa: E731
    assert loss_of(params) < 1e-20  # 25 parameters, 5 targets: interpolated
    rank_g = numerical_rank(torch.linalg.svdvals(behavioral_gradients(model, params, x)), 1e-6)
    rank_h = numerical_rank(torch.linalg.eigvalsh(Hessian(loss_of, params).dense()).abs(), 1e-12)
    assert rank_g == rank_h == 5


def test_inputs_that_share_an_activation_pattern_are_counted():
    from losslab.analysis.basin import shared_activation_patterns
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(2))
        model[0].bias.zero_()
    x = torch.tensor([[1.0, 1.0], [2.0, 3.0], [-1.0, 1.0], [1.0, -1.0], [-2.0, -1.0]])
    assert shared_activation_patterns(model, x) == {"1": 2}  # (+, +) twice; the other three are alone


def test_shampoo_preconditioned_sharpness_against_the_dense_matrix():
    """P^-1 = L^-1/4 (x) R^-1/4 on a matrix parameter (row-major flattening), AdaGrad on a vector."""
    from losslab.analysis.sharpness import shampoo_preconditioned_sharpness
    from losslab.optim.shampoo import Shampoo
    torch.manual_seed(0)
    w, b = nn.Parameter(torch.randn(3, 4, dtype=torch.float64)), nn.Parameter(torch.randn(2, dtype=torch.float64))
    opt = Shampoo([w, b], lr=0.1, graft="none")
    for _ in range(3):
        w.grad, b.grad = torch.randn(3, 4, dtype=torch.float64), torch.randn(2, dtype=torch.float64)
        opt.step()
    n = 14
    q, _ = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64))
    a = q @ torch.diag(torch.linspace(0.1, 3, n, dtype=torch.float64)) @ q.T
    h = Hessian(lambda p: 0.5 * torch.cat([p["w"].flatten(), p["b"]]) @ a @ torch.cat([p["w"].flatten(), p["b"]]),
                {"w": w.detach(), "b": b.detach()})
    state = opt.state
    p_inv = torch.block_diag(torch.kron(state[w]["L_root"], state[w]["R_root"]),
                             torch.diag(1 / (state[b]["diagonal"].sqrt() + 1e-8)))
    exact = torch.linalg.eigvals(p_inv @ a).real.max().item()
    result = shampoo_preconditioned_sharpness(h, opt.state_dict())
    assert result["preconditioned_lambda_max"] == pytest.approx(exact, rel=1e-6) and result["threshold"] == 20
