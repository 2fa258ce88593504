"""Double descent: the model-wise peak sits at the interpolation threshold; the epoch-wise one
is found in a series that descends, rises and descends again."""

import json

import numpy as np
import pytest

from losslab.analysis.double_descent import epochwise, random_features_risk
from tests.test_cli import losslab, losslab_here


@pytest.mark.parametrize("n_train", [40, 100])
def test_the_test_risk_peaks_at_the_interpolation_threshold(n_train):
    features = [n_train // 4, n_train // 2, n_train * 3 // 4, n_train - 5, n_train, n_train + 5,
                n_train * 3 // 2, n_train * 3, n_train * 10]
    r = random_features_risk(features, n_train=n_train, seeds=5)
    assert r["peak_at"] == n_train
    risk = dict(zip(features, r["test_risk"]))
    assert risk[n_train] > 10 * risk[n_train * 10] and risk[n_train * 10] < risk[n_train // 4]  # descends again
    # past the threshold every model interpolates its training set
    assert all(train < 1e-10 for n, train in zip(features, r["train_risk"]) if n >= n_train)


def test_no_noise_no_peak_to_speak_of():
    """The peak is the label noise amplified: without noise the risk at N = n stays moderate."""
    noisy = random_features_risk([50, 100, 1000], n_train=100, noise=0.5, seeds=3)["test_risk"][1]
    clean = random_features_risk([50, 100, 1000], n_train=100, noise=0.0, seeds=3)["test_risk"][1]
    assert clean < noisy / 10


def test_epochwise_finds_descent_rise_descent():
    steps = np.arange(200)
    values = np.concatenate([np.linspace(5, 4, 20), np.linspace(4, 9, 80), np.linspace(9, 0.1, 100)])
    found = epochwise(steps, values)
    assert found["first_minimum"] == pytest.approx(19, abs=3) and found["peak"] == pytest.approx(99, abs=3)
    assert 100 < found["second_descent"] < 200
    assert epochwise(steps, np.linspace(5, 0, 200)) is None  # a plain descent


def test_double_descent_command(tmp_path):
    out = losslab("double-descent", "--n-train", 40, "--seeds", 3, "--out", tmp_path, "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["peak_at"] == 40 and (tmp_path / "studies" / "double_descent.png").is_file()
    bad = losslab_here("double-descent", "--n-train", 1, "--out", tmp_path)
    assert bad.returncode == 2 and "--n-train must be at least 2" in bad.stderr
