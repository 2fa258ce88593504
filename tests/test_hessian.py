"""Curvature estimators against closed forms and the dense Hessian."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.sparse.linalg import LinearOperator
from torch import nn
from torch.func import functional_call

from losslab.analysis.curvature import (
    HessianOperator,
    MatrixOperator,
    estimate_trace,
    extreme_eigenpairs,
    hessian_matrix,
    spectral_density,
)
from losslab.analysis.objective import Objective
from losslab.core.errors import LossLabError


class Weights(nn.Module):
    """A bag of parameters: the model of a loss written in its weights."""

    def __init__(self, **tensors):
        super().__init__()
        for name, t in tensors.items():
            self.register_parameter(name, nn.Parameter(t.clone()))


def quadratic(eigenvalues, seed=0, at=None):
    """0.5 w^T A w with A = Q diag(eigenvalues) Q^T, as an objective: its Hessian is A."""
    n = len(eigenvalues)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    a = q @ torch.diag(torch.tensor(eigenvalues, dtype=torch.float64)) @ q.T
    w = torch.randn(n, dtype=torch.float64) if at is None else at
    return Objective(Weights(w=w), forward=lambda model, p, batch: (0.5 * p["w"] @ a @ p["w"], 1), data=[()]), a


EIGS = [5.0, 3.0, 2.0, 1.0, 0.5, 0.1, 0.0, -0.2, -1.0, -4.0] + [0.3] * 10


def test_quadratic_extreme_eigenvalues_trace_and_dense_are_exact():
    obj, a = quadratic(EIGS)
    h = HessianOperator(obj)
    assert torch.allclose(h.matrix(), a, atol=1e-12)
    values, vectors = extreme_eigenpairs(h, k=3, which="top")
    assert np.allclose(values, [2.0, 3.0, 5.0], rtol=1e-8)
    values_bottom, _ = extreme_eigenpairs(h, k=2, which="bottom")
    assert np.allclose(values_bottom, [-4.0, -1.0], rtol=1e-8)
    v = torch.from_numpy(vectors[:, -1])
    assert torch.allclose(a @ v, 5.0 * v, atol=1e-6)
    for method in ("hutchinson", "hutch++"):
        trace = estimate_trace(h, method, products=300)
        assert abs(trace.estimate - sum(EIGS)) <= 4 * trace.standard_error + 1e-9 and trace.products <= 300


def test_the_bottom_to_a_tolerance_of_lambda_max_is_right_to_it_in_a_fraction_of_the_products():
    """A memorizing net's lambda_min: a small negative eigenvalue just below a dense cluster at 0."""
    rng = np.random.default_rng(0)
    values = np.concatenate([[-0.12], rng.uniform(-0.11, 0.05, 1500), rng.uniform(0.05, 90, 499)])
    basis = np.linalg.qr(rng.standard_normal((2000, 2000)))[0]
    matrix = (basis * values) @ basis.T
    counted = {"products": 0}

    def product(v):
        counted["products"] += 1
        return matrix @ v
    operator = LinearOperator(matrix.shape, matvec=product, dtype=np.float64)
    found = {}
    for scale, tol in ((None, 1e-6), (90.0, 1e-4)):  # the default; the monitor's lambda_min
        counted["products"] = 0
        found[scale] = (extreme_eigenpairs(operator, 1, "bottom", tol=tol, scale=scale)[0][0], counted["products"])
    assert found[None][0] == pytest.approx(-0.12, abs=1e-5)
    assert found[90.0][0] == pytest.approx(-0.12, abs=1e-4 * 90)
    assert found[90.0][1] < found[None][1] / 2  # 271 against 721 (121 against 3,642 on a grokking transformer)


def test_a_warm_started_top_eigenpair_is_tracked_as_right_as_arpack_in_fewer_products():
    """Tracking lambda_max over training: each measurement starts from the previous eigenvector of a
    slowly rotating matrix; losslab's Lanczos stops once the residual meets tol, ARPACK builds six
    vectors first."""
    rng = np.random.default_rng(1)
    n = 300
    values = np.concatenate([[10.0, 7.0], rng.uniform(-1, 5, n - 2)])
    basis = np.linalg.qr(rng.standard_normal((n, n)))[0]
    generator = rng.standard_normal((n, n)) * 0.002
    rotation = np.linalg.qr(np.eye(n) + generator - generator.T)[0]
    v, tracked, arpack = None, [], []
    for _ in range(6):
        matrix = (basis * values) @ basis.T
        op = MatrixOperator(torch.from_numpy(matrix))
        counted = {"products": 0}

        def product(x, matrix=matrix):
            counted["products"] += 1
            return matrix @ x
        if v is None:
            v = extreme_eigenpairs(op, 1, "top")[1][:, 0]  # a cold start: ARPACK
        else:
            found, vectors = extreme_eigenpairs(op, 1, "top", tol=1e-3, v0=v)
            reference = extreme_eigenpairs(LinearOperator(matrix.shape, matvec=product, dtype=np.float64), 1, "top",
                                           tol=1e-3, v0=v)[0]
            assert found[0] == pytest.approx(10.0, rel=1e-6) and reference[0] == pytest.approx(10.0, rel=1e-6)
            assert abs(vectors[:, 0] @ basis[:, 0]) == pytest.approx(1.0, abs=1e-6)
            tracked.append(op.products)
            arpack.append(counted["products"])
            v = vectors[:, 0]
        basis = rotation @ basis
    assert max(tracked) <= 5 and sum(tracked) < 0.75 * sum(arpack), (tracked, arpack)
    op = MatrixOperator(torch.from_numpy((basis * values) @ basis.T))
    assert extreme_eigenpairs(op, 1, "top", v0=basis[:, 0])[0][0] == pytest.approx(10.0, rel=1e-12)
    assert op.products == 1  # the eigenvector itself: an invariant subspace after one product


def test_slq_with_full_lanczos_puts_its_nodes_on_the_eigenvalues():
    obj, _ = quadratic(EIGS)
    density = spectral_density(HessianOperator(obj), steps=20, runs=3)
    distinct = sorted(set(EIGS))
    for nodes, weights in zip(density.nodes, density.weights):
        real = nodes[weights > 1e-12]
        assert len(real) == len(distinct) and np.allclose(sorted(real), distinct, atol=1e-8)
        assert math.isclose(weights.sum(), 1.0, rel_tol=1e-10)
    grid = np.linspace(-6, 7, 4001)
    smooth = density.smoothed(grid, sigma=0.05)
    assert math.isclose(np.trapezoid(smooth, grid), 1.0, rel_tol=1e-3)
    # each run's mean is v^T H v / v^T v for its random start: tr(H) / n in expectation
    many = spectral_density(HessianOperator(obj), steps=4, runs=400)
    means = (many.nodes * many.weights).sum(1)
    assert abs(means.mean() - np.mean(EIGS)) < 3 * means.std() / math.sqrt(len(means))


def test_the_density_figures_draw_the_smoothed_density_with_readable_titles_and_legends():
    """The PNG and the report's panel draw the same smoothed curve, peaked at the eigenvalues; the
    PNG's long title stays inside the figure and its dashed lines are in the legend."""
    from losslab.report.plots import hessian

    obj, _ = quadratic(EIGS)
    density = spectral_density(HessianOperator(obj), steps=20, runs=3)
    grid, values = density.curve()
    peaks = grid[1:-1][(values[1:-1] > values[:-2]) & (values[1:-1] > values[2:])]
    for isolated in (5.0, 3.0, 2.0, 1.0, -1.0, -4.0):
        assert np.abs(peaks - isolated).min() < 2 * (grid[1] - grid[0])
    fig = density.plot(marks=[max(EIGS), min(EIGS)], title="grokking-paper-20261128-085334-0c33c5, step 12345: hessian spectral density of the train split, "
                         "its extreme eigenvalues marked")
    fig.canvas.draw()
    title = fig._suptitle.get_window_extent()
    assert 0 <= title.x0 and title.x1 <= fig.bbox.width and title.y1 <= fig.bbox.height
    assert "extreme eigenvalues (Lanczos)" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert sorted(line.get_xdata()[0] for line in fig.axes[0].lines[1:]) == [min(EIGS), max(EIGS)]  # the marks
    panel = hessian({"step": 1000, "split": "train", "top": [max(EIGS)],
                     "density": {"nodes": density.nodes.tolist(), "weights": density.weights.tolist()}})
    curve = next(t for t in panel.data if t.xaxis == "x2")
    assert np.asarray(curve.x).ndim == 1 and np.all(np.diff(curve.x) > 0)
    assert abs(curve.x[int(np.argmax(curve.y))] - grid[int(np.argmax(values))]) < 2 * (curve.x[1] - curve.x[0])


def test_a_spectrum_draws_its_eigenvalues_at_their_index_on_the_axes_it_is_given():
    """As a scikit-learn Display: on the caller's axes (two spectra on one), each point the eigenvalue found."""
    from losslab.analysis.curvature import hessian_eigenvalues
    from losslab.core.plotting import subplots

    obj, _ = quadratic(EIGS)
    spectrum = hessian_eigenvalues(obj, 3, "both")
    fig, ax = subplots()
    assert spectrum.plot(ax=ax) is fig and hessian_eigenvalues(obj, 2).plot(ax=ax) is fig
    top, bottom, again = ax.lines
    assert list(top.get_xdata()) == [1, 2, 3] and np.allclose(top.get_ydata(), [5, 3, 2])
    assert np.allclose(bottom.get_ydata(), [-4, -1, -0.2]) and np.allclose(again.get_ydata(), [5, 3])
    assert ax.get_yscale() == "symlog"  # eigenvalues of both signs


def test_hutch_plus_plus_beats_hutchinson_at_equal_products_on_a_decaying_spectrum():
    """Meyer et al.'s claim: on a spectrum that decays (here 1/i^2), Hutch++'s error at m products
    is much smaller than Hutchinson's; averaged over 30 seeds at m = 30."""
    n = 200
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    values = 1.0 / torch.arange(1, n + 1, dtype=torch.float64) ** 2
    op = MatrixOperator(q @ torch.diag(values) @ q.T)
    exact = float(values.sum())
    errors = {m: np.mean([abs(estimate_trace(op, m, products=30, seed=s).estimate - exact) for s in range(30)])
              for m in ("hutchinson", "hutch++")}
    assert errors["hutch++"] < errors["hutchinson"] / 3, errors


@pytest.fixture(scope="module")
def small_mlp():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    x, y = torch.randn(64, 6), torch.randint(0, 3, (64,))
    params = {n: p.detach() for n, p in model.named_parameters()}
    flat = torch.cat([p.flatten() for p in params.values()])

    def flat_loss(v):
        pieces, at = {}, 0
        for n, p in params.items():
            pieces[n] = v[at: at + p.numel()].view(p.shape)
            at += p.numel()
        return nn.functional.cross_entropy(functional_call(model, pieces, (x,)), y)
    dense = torch.autograd.functional.hessian(flat_loss, flat).double()
    return Objective(model, nn.functional.cross_entropy, (x, y)), dense


def test_mlp_hessian_against_autograd_functional_hessian(small_mlp):
    obj, dense = small_mlp
    h = HessianOperator(obj)
    assert torch.allclose(h.matrix(), (dense + dense.T) / 2, atol=1e-5)
    exact = torch.linalg.eigvalsh(dense).numpy()
    top, _ = extreme_eigenpairs(h, k=5, which="top")
    assert np.allclose(top, exact[-5:], rtol=1e-4)
    bottom, _ = extreme_eigenpairs(h, k=3, which="bottom")
    assert np.allclose(bottom, exact[:3], rtol=1e-4, atol=1e-6)
    trace = estimate_trace(h, "hutchinson", products=300)
    assert abs(trace.estimate - float(dense.trace())) < 3 * trace.standard_error
    assert torch.linalg.matrix_rank(h.matrix(), hermitian=True) == torch.linalg.matrix_rank(dense.double(),
                                                                                             hermitian=True)


def test_sam_and_keskar_sharpness_on_a_quadratic_at_its_minimum():
    from losslab.analysis.sharpness import keskar_sharpness, sam_sharpness
    obj, a = quadratic([4.0, 1.0, 0.5, 0.1], at=torch.zeros(4, dtype=torch.float64))
    rho = 0.1
    assert sam_sharpness(obj, rho=rho, steps=30).sharpness == pytest.approx(rho**2 * 4.0 / 2, rel=1e-3)
    # Keskar's box |eps_i| <= eps (|w_i| + 1) = eps: the best corner, by brute force over the 16 corners
    eps = 1e-2
    corners = torch.tensor([[(c >> i) & 1 for i in range(4)] for c in range(16)], dtype=torch.float64) * 2 - 1
    best = max(float(0.5 * (eps * c) @ a @ (eps * c)) for c in corners)
    assert keskar_sharpness(obj, eps=eps).sharpness == pytest.approx(100 * best, rel=1e-6)


def test_sam_steps_are_rho_long_even_for_a_float32_gradient_of_norm_1e_15():
    """No 1e-12 added to the gradient's norm: the first step is rho * g / ||g|| exactly."""
    from losslab.analysis.sharpness import _unit
    g = torch.full((4,), 5e-16, dtype=torch.float32)
    assert float(_unit(g).norm()) == pytest.approx(1.0, rel=1e-6)
    assert float(_unit(torch.zeros(4)).norm()) == 0.0


def test_adam_preconditioned_sharpness_against_the_dense_matrix():
    from losslab.analysis.sharpness import preconditioned_sharpness
    obj, a = quadratic(EIGS)
    v = torch.rand(len(EIGS), dtype=torch.float64) + 0.1
    opt = torch.optim.Adam(obj.model.parameters(), lr=0.01, betas=(0.9, 0.999))
    opt.state[obj.model.w] = {"exp_avg_sq": v * (1 - 0.999**10), "step": torch.tensor(10.0),
                              "exp_avg": torch.zeros_like(v)}
    p_inv_sqrt = torch.diag((v.sqrt() + 1e-8).rsqrt())
    exact = torch.linalg.eigvalsh(p_inv_sqrt @ a @ p_inv_sqrt).max().item()
    result = preconditioned_sharpness(obj, opt)
    assert result.optimizer == "adam" and result.lambda_max == pytest.approx(exact, rel=1e-6)
    assert result.threshold == pytest.approx(3.8 / (0.1 * 0.01))
    with pytest.raises(LossLabError, match="reads the state of Adam, AdamW or Shampoo, not SGD"):
        preconditioned_sharpness(obj, torch.optim.SGD(obj.model.parameters(), lr=0.1))


def matrix_and_vector_quadratic():
    """A 3 x 4 matrix w and a vector b of 2 (seed 0) under 0.5 x^T A x, x = (w row-major, b), A with
    eigenvalues from 0.1 to 3: (the model, A, the objective)."""
    torch.manual_seed(0)
    model = Weights(w=torch.randn(3, 4, dtype=torch.float64), b=torch.randn(2, dtype=torch.float64))
    q, _ = torch.linalg.qr(torch.randn(14, 14, dtype=torch.float64))
    a = q @ torch.diag(torch.linspace(0.1, 3, 14, dtype=torch.float64)) @ q.T

    def forward(model, p, batch):
        flat = torch.cat([p["w"].flatten(), p["b"]])
        return 0.5 * flat @ a @ flat, 1
    return model, a, Objective(model, forward=forward, data=[()])


def test_adam_preconditioned_sharpness_over_param_groups_of_several_rates_against_the_dense_matrix():
    """Two param groups (the usual decay / no-decay split, here with rates 0.01 and 0.03 and their
    own eps): a parameter of the second is stepped by 0.03 P^-1 m = 0.01 (P / 3)^-1 m, so P^-1 H is
    diag(1 / P, 3 / P) H against the first group's threshold; one beta1 for all, or refused."""
    from losslab.analysis.sharpness import preconditioned_sharpness
    model, a, obj = matrix_and_vector_quadratic()
    opt = torch.optim.AdamW([{"params": [model.w]}, {"params": [model.b], "lr": 0.03, "eps": 1e-3}], lr=0.01,
                            betas=(0.9, 0.99))
    v = {p: torch.rand(p.shape, dtype=torch.float64) + 0.1 for p in (model.w, model.b)}
    for p, step in ((model.w, 10), (model.b, 4)):  # each parameter its own count (one skipped steps)
        opt.state[p] = {"exp_avg_sq": v[p] * (1 - 0.99**step), "step": torch.tensor(float(step)),
                        "exp_avg": torch.zeros_like(p)}
    p_inv = torch.cat([1 / (v[model.w].flatten().sqrt() + 1e-8), 3 / (v[model.b].sqrt() + 1e-3)])
    exact = torch.linalg.eigvalsh(p_inv.sqrt()[:, None] * a * p_inv.sqrt()[None, :]).max().item()
    result = preconditioned_sharpness(obj, opt)
    assert result.lambda_max == pytest.approx(exact, rel=1e-6)
    assert result.threshold == pytest.approx(3.8 / (0.1 * 0.01))
    opt.param_groups[1]["betas"] = (0.5, 0.99)
    with pytest.raises(LossLabError, match=r"the param groups' beta1 differ \(0.5, 0.9\)"):
        preconditioned_sharpness(obj, opt)


def test_behavioral_gradients_of_a_linear_model_have_the_rank_of_the_data():
    from losslab.analysis.basin import behavioral_gradients, numerical_rank
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 3, generator=g) @ torch.randn(3, 8, generator=g)  # rank 3 inputs in 8 dimensions
    model = nn.Linear(8, 2, bias=False)
    jac = behavioral_gradients(Objective(model, nn.functional.mse_loss, (x, torch.zeros(30, 2))))
    assert jac.shape == (60, 16)
    assert numerical_rank(torch.linalg.svdvals(jac), 1e-6) == 2 * 3  # one copy of X per output
    expected = torch.zeros(60, 16, dtype=torch.float64)  # d out_k / d W_kj = x_j
    for i in range(30):
        for k in range(2):
            expected[2 * i + k, 8 * k: 8 * (k + 1)] = x[i]
    assert torch.allclose(jac, expected, atol=1e-6)


def _interpolating_mlp():
    """A tanh MLP with 25 parameters fitted exactly to 5 targets (L-BFGS): an MSE global minimum."""
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
    return Objective(model, nn.functional.mse_loss, (x, y))


def test_at_a_global_minimum_of_mse_rank_h_equals_rank_g():
    from losslab.analysis.basin import basin
    obj = _interpolating_mlp()
    assert obj.value < 1e-20  # 25 parameters, 5 targets: interpolated
    found = basin(obj, hessian_rank=True)
    assert found.rank_G == found.rank_H == 5 and found.behavior_manifold_dim == 20


def test_the_gauss_newton_matrix_is_the_hessian_at_an_interpolating_minimum_and_psd_anywhere():
    obj = _interpolating_mlp()
    h, g = hessian_matrix(obj), hessian_matrix(obj, "ggn")
    assert torch.allclose(g, h, atol=1e-10)
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    random_point = Objective(model, nn.functional.cross_entropy,
                             (torch.randn(40, 4, dtype=torch.float64), torch.randint(0, 3, (40,))))
    g, h = hessian_matrix(random_point, "ggn"), hessian_matrix(random_point)
    assert torch.linalg.eigvalsh(g).min() > -1e-12  # positive semi-definite
    assert torch.linalg.eigvalsh(h).min() < -1e-6 and not torch.allclose(g, h, atol=1e-6)  # away from a minimum


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
    from losslab.analysis.sharpness import preconditioned_sharpness
    from losslab.optim.shampoo import Shampoo
    model, a, obj = matrix_and_vector_quadratic()
    w, b = model.w, model.b
    opt = Shampoo([w, b], lr=0.1, graft="none")
    for _ in range(3):
        w.grad, b.grad = torch.randn(3, 4, dtype=torch.float64), torch.randn(2, dtype=torch.float64)
        opt.step()
    state = opt.state
    p_inv = torch.block_diag(torch.kron(state[w]["L_root"], state[w]["R_root"]),
                             torch.diag(1 / (state[b]["diagonal"].sqrt() + 1e-8)))
    exact = torch.linalg.eigvals(p_inv @ a).real.max().item()
    result = preconditioned_sharpness(obj, opt)
    assert result.lambda_max == pytest.approx(exact, rel=1e-6) and result.threshold == 20


def test_the_exact_gauss_newton_trace_is_the_dense_one_and_on_a_relu_network_the_hessians():
    """tr(G) from per-example Jacobians equals the dense Gauss-Newton matrix's trace; on a network linear
    in each parameter (convolutions, ReLU, max-pooling) the Hessian's diagonal is G's, so it is tr(H) too,
    and with a Tanh it is not."""
    import losslab as ll

    torch.manual_seed(0)
    relu_cnn = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                             nn.Linear(12, 4)).double()
    images, labels = torch.randn(30, 1, 4, 4, dtype=torch.float64), torch.randint(0, 4, (30,))
    tanh_mlp = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    x, y = torch.randn(40, 4, dtype=torch.float64), torch.randint(0, 3, (40,))
    for model, data, is_hessians in ((relu_cnn, [(images[:16], labels[:16]), (images[16:], labels[16:])], True),
                                     (tanh_mlp, (x, y), False)):
        obj = Objective(model, F.cross_entropy, data)
        exact = ll.hessian_trace(obj, method="exact", curvature="ggn")
        assert exact.estimate == pytest.approx(torch.trace(ll.hessian_matrix(obj, curvature="ggn")).item(), rel=1e-10)
        assert exact.standard_error == 0 and exact.products == obj.n_examples * (4 if is_hessians else 3)
        hessians = torch.trace(ll.hessian_matrix(obj)).item()
        assert (exact.estimate == pytest.approx(hessians, rel=1e-10)) is is_hessians
    with pytest.raises(LossLabError, match="curvature='ggn'"):
        ll.hessian_trace(obj, method="exact")
    lm = Objective(tanh_mlp, forward=lambda m, p, b: (F.cross_entropy(functional_call(m, p, (b[0],)), b[1]), len(b[1])),
                   data=(x, y))
    with pytest.raises(LossLabError, match="^the exact Gauss-Newton trace differentiates each example's outputs"):
        ll.hessian_trace(lm, method="exact", curvature="ggn")


@pytest.mark.parametrize("which", ["bottom", "both"])
def test_the_bottom_eigenvalues_are_the_dense_ones_to_the_tolerance_of_the_spectrums_scale(which):
    import losslab as ll

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 12), nn.Tanh(), nn.Linear(12, 3)).double()
    obj = Objective(model, F.cross_entropy, (torch.randn(40, 4, dtype=torch.float64), torch.randint(0, 3, (40,))))
    dense = torch.linalg.eigvalsh(ll.hessian_matrix(obj)).numpy()
    spectrum = ll.hessian_eigenvalues(obj, k=3, which=which)
    assert np.abs(spectrum.bottom - dense[:3]).max() <= 1e-4 * np.abs(dense).max()
    assert (spectrum.top is None) is (which == "bottom")
