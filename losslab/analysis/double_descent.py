"""Double descent (Belkin et al. 2019; Nakkiran et al. 2020).

Model-wise: least-squares regression on N random ReLU features relu(W x) (W fixed, Gaussian),
fitted by the minimum-norm solution (the pseudo-inverse: what gradient descent from zero
converges to). The test risk falls, peaks where N equals the number of training samples n (the
interpolation threshold: the feature matrix is square and its smallest singular value near 0, so
the fit amplifies the label noise), then falls again as N grows past n.

Epoch-wise: the validation loss of a run that descends, rises, then descends again (grokking
runs do: it rises while the network memorizes, and falls when it generalizes).
"""

from __future__ import annotations

import numpy as np


def random_features_risk(features: list[int], n_train: int = 100, n_test: int = 2000, dim: int = 20,
                         noise: float = 0.5, seeds: int = 10) -> dict:
    """Test and train mean squared error of min-norm random-features regression, averaged over
    seeds, for each number of features; the target is linear in x plus Gaussian label noise."""
    test, train = np.zeros(len(features)), np.zeros(len(features))
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        beta = rng.normal(size=dim) / np.sqrt(dim)
        x_train, x_test = rng.normal(size=(n_train, dim)), rng.normal(size=(n_test, dim))
        y_train = x_train @ beta + noise * rng.normal(size=n_train)
        y_test = x_test @ beta  # the risk of the function, not of the noise
        w_all = rng.normal(size=(max(features), dim)) / np.sqrt(dim)
        for i, n in enumerate(features):
            w = w_all[:n]
            phi_train, phi_test = np.maximum(x_train @ w.T, 0), np.maximum(x_test @ w.T, 0)
            theta = np.linalg.lstsq(phi_train, y_train, rcond=None)[0]  # the minimum-norm solution
            test[i] += np.mean((phi_test @ theta - y_test) ** 2) / seeds
            train[i] += np.mean((phi_train @ theta - y_train) ** 2) / seeds
    peak = int(np.argmax(test))
    return {"features": list(features), "test_risk": test.tolist(), "train_risk": train.tolist(),
            "threshold": n_train, "peak_at": features[peak], "n_train": n_train, "dim": dim, "noise": noise,
            "seeds": seeds}


def epochwise(steps, values, smooth: int = 5) -> dict | None:
    """The first descent-ascent-descent of a series: the steps of its first minimum, the peak after
    it, and the next point below that minimum (a running median of `smooth` points damps noise);
    None if the series does not descend twice."""
    steps, values = np.asarray(steps), np.asarray(values, dtype=np.float64)
    if len(values) < 3 * smooth:
        return None
    pad = smooth // 2
    padded = np.pad(values, pad, mode="edge")
    smoothed = np.array([np.median(padded[i:i + smooth]) for i in range(len(values))])
    for first in range(1, len(smoothed) - 1):
        if smoothed[first] < smoothed[first - 1] and smoothed[first] <= smoothed[first + 1]:
            break
    else:
        return None
    rest = smoothed[first:]
    peak = first + int(np.argmax(rest))
    below = np.nonzero(smoothed[peak:] < smoothed[first])[0]
    if peak == first or not len(below):
        return None
    second = peak + int(below[0])
    return {"first_minimum": int(steps[first]), "peak": int(steps[peak]), "second_descent": int(steps[second]),
            "rise": float(smoothed[peak] - smoothed[first])}
