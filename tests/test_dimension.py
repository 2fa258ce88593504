"""Intrinsic dimension estimators on manifolds of known dimension, and the probe over training."""

import numpy as np
import pytest
import torch

from losslab.analysis.dimension import layer_inputs, levina_bickel, two_nn
from losslab.config import load_config
from losslab.core.errors import LossLabError
from losslab.train.loop import train


def subspace(n=2000, d=5, ambient=50, seed=0):
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(ambient, d)))[0]
    return rng.normal(size=(n, d)) @ basis.T


def sphere(n=4000, d=10, ambient=40, seed=0):
    """The unit sphere S^d (a d-dimensional manifold) in R^(d+1), rotated into R^ambient."""
    rng = np.random.default_rng(seed)
    s = rng.normal(size=(n, d + 1))
    s /= np.linalg.norm(s, axis=1, keepdims=True)
    return s @ np.linalg.qr(rng.normal(size=(ambient, d + 1)))[0].T


@pytest.mark.parametrize("estimator", [two_nn, levina_bickel])
@pytest.mark.parametrize("points,d", [(subspace(), 5), (sphere(), 10), (subspace(d=2, ambient=3), 2)])
def test_estimates_within_ten_percent_of_the_known_dimension(estimator, points, d):
    assert estimator(points) == pytest.approx(d, rel=0.10)


def test_duplicates_and_tiny_clouds_are_refused():
    with pytest.raises(ValueError, match="distinct points"):
        two_nn(np.ones((100, 3)))
    with pytest.raises(ValueError, match="k must be at least 2"):
        levina_bickel(subspace(), k=1)


def test_layer_inputs_are_what_each_linear_layer_sees():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    x = torch.randn(7, 3)
    seen = layer_inputs(net, x)
    assert set(seen) == {"0", "2"}
    np.testing.assert_allclose(seen["0"], x.double().numpy())
    np.testing.assert_allclose(seen["2"], torch.relu(net[0](x)).detach().double().numpy(), rtol=1e-6)


def test_the_dimension_probe_writes_every_layer(store):
    cfg = load_config("parity", ["train.max_steps=20", "probes.every=10", "probes.dimension=true",
                                 "probes.geometry=false"])
    rows = store.find(train(cfg, store)["run_id"]).metric_rows()
    names = {name for step, split, name, v in rows if split == "probe"}
    assert names == {"dim_twonn/net.0", "dim_mle/net.0", "dim_twonn/net.2", "dim_mle/net.2"}
    steps = sorted({step for step, split, name, v in rows if split == "probe"})
    assert steps == [0, 10, 20] and all(v > 0 for s, split, n, v in rows if split == "probe")


def _reference_clouds():
    """The clouds on which scikit-dimension 0.5.0 gave the numbers below (same generator calls)."""
    rng = np.random.default_rng(0)
    s = rng.normal(size=(4000, 11))
    s /= np.linalg.norm(s, axis=1, keepdims=True)
    on_sphere = s @ np.linalg.qr(rng.normal(size=(40, 11)))[0].T
    in_subspace = rng.normal(size=(2000, 5)) @ np.linalg.qr(rng.normal(size=(50, 5)))[0].T
    return on_sphere, in_subspace


def test_matches_scikit_dimension():
    """skdim.id.TwoNN().fit(x).dimension_ and skdim.id.MLE(K=20).fit(x, comb="mle").dimension_,
    measured with scikit-dimension 0.5.0 (not a dependency: it pulls numba, 600 MB and 3 s to import)."""
    on_sphere, in_subspace = _reference_clouds()
    assert two_nn(on_sphere) == pytest.approx(9.526870652241712, rel=1e-9)
    assert levina_bickel(on_sphere) == pytest.approx(9.223625507833608, rel=1e-9)
    assert two_nn(in_subspace) == pytest.approx(5.332998429152175, rel=1e-9)
    assert levina_bickel(in_subspace) == pytest.approx(5.0691951739769445, rel=1e-9)


def test_layer_inputs_refuses_a_name_that_is_no_module_in_one_line():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    with pytest.raises(LossLabError, match=r"^layers \['fc'\] are not modules of the model \(its modules: 0, 1, 2\)$"):
        layer_inputs(net, torch.zeros(2, 3), ["fc"])
    assert list(layer_inputs(torch.nn.ReLU(), torch.zeros(2, 3))) == []  # no Linear layer: nothing to read
