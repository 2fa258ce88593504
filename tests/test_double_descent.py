"""Double descent: the model-wise peak sits at the interpolation threshold; the epoch-wise one
is found in a series that descends, rises and descends again."""

import json
from pathlib import Path

import numpy as np
import pytest

from losslab.analysis.double_descent import descent_peak, epochwise, mlp_width_risk, noisy_digits, random_features_risk
from tests.helpers import losslab_here


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


@pytest.mark.slow  # 7 s of MLP training; the random-features peak and the command stay in the default suite
def test_mlp_test_loss_peaks_where_the_width_first_fits_the_flipped_labels():
    widths = [2, 4, 6, 8, 16, 64]
    noisy = mlp_width_risk(widths, n_train=100, label_noise=0.2, seeds=3, steps=1000)
    assert noisy["threshold"] == noisy["peak_at"]
    peak = noisy["test_loss"][widths.index(noisy["peak_at"])]
    assert peak > 2 * noisy["test_loss"][-1] and peak > 1.5 * noisy["test_loss"][0]  # up, then down again
    clean = mlp_width_risk(widths, n_train=100, label_noise=0.0, seeds=3, steps=1000)
    assert clean["test_loss"][widths.index(clean["threshold"])] < peak / 3  # the peak is the noise memorized
    assert clean["peak_at"] is None  # clean labels: the test loss only falls with the width


def test_label_noise_flips_that_fraction_to_other_classes():
    _, y, _, _ = noisy_digits(1000, 0.3, seed=0)
    _, clean, _, _ = noisy_digits(1000, 0.0, seed=0)
    assert (y != clean).mean() == pytest.approx(0.3, abs=0.04)


def test_epochwise_finds_descent_rise_descent():
    steps = np.arange(200)
    values = np.concatenate([np.linspace(5, 4, 20), np.linspace(4, 9, 80), np.linspace(9, 0.1, 100)])
    found = epochwise(steps, values)
    assert found["first_minimum"] == pytest.approx(19, abs=3) and found["peak"] == pytest.approx(99, abs=3)
    assert 100 < found["second_descent"] < 200
    assert epochwise(steps, np.linspace(5, 0, 200)) is None  # a plain descent


def test_double_descent_command(tmp_path):
    """Each study with its settings in its own folder (a second call with other settings keeps the
    first's figure), listed in the index; a setting of the other model is refused."""
    out = losslab_here("double-descent", "--n-train", 40, "--seeds", 3, "--out", tmp_path, "--json")
    assert out.returncode == 0, out.stderr
    first = json.loads(out.stdout)
    assert first["peak_at"] == 40 and Path(first["figure"]).is_file()
    clean = json.loads(losslab_here("double-descent", "--n-train", 40, "--seeds", 3, "--noise", 0, "--out", tmp_path,
                                    "--json").stdout)
    assert clean["settings"]["noise"] == 0 and Path(clean["figure"]).parent != Path(first["figure"]).parent
    assert Path(first["figure"]).is_file() and json.loads(Path(first["file"]).read_text())["settings"]["noise"] == 0.5
    index = json.loads((tmp_path / "studies" / "index.json").read_text())
    assert sorted(e["settings"]["noise"] for e in index) == [0, 0.5]
    for args, message in ((["--n-train", 1], "--n-train': 1 is not in [2, 2000]"),
                          (["--model", "mlp", "--label-noise", 0.95], "--label-noise': 0.95 is not in [0, 0.9]"),
                          (["--label-noise", 0], "--label-noise is not a setting of --model features"),
                          (["--model", "mlp", "--noise", 1], "--noise is not a setting of --model mlp")):
        bad = losslab_here("double-descent", *args, "--out", tmp_path)
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr


def test_a_peak_is_a_rise_after_the_first_minimum():
    assert descent_peak([1, 2, 3, 4], [5.0, 4.0, 3.0, 2.0]) is None  # only falls: no peak at the underfit start
    assert descent_peak([1, 2, 3, 4, 5], [5.0, 4.0, 8.0, 3.0, 2.0]) == 3
    assert descent_peak([1, 2, 3, 4], [5.0, 4.0, 4.1, 3.0]) is None  # a 2.5% wiggle is not a peak
    assert descent_peak([1, 2, 3], [1.0, 2.0, 0.5]) == 2
