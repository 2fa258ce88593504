"""Double descent (Belkin et al. 2019; Nakkiran et al. 2020).

Model-wise: least-squares regression on N random ReLU features relu(W x) (W fixed, Gaussian),
fitted by the minimum-norm solution (the pseudo-inverse: what gradient descent from zero
converges to). The test risk falls, peaks where N equals the number of training samples n (the
interpolation threshold: the feature matrix is square and its smallest singular value near 0, so
the fit amplifies the label noise), then falls again as N grows past n.

Model-wise, trained: one-hidden-layer ReLU MLPs of growing width fitted to scikit-learn's digits
with a fraction of the training labels flipped (Nakkiran et al.'s setting, small). Trained long
enough, without regularization, a width past the interpolation threshold (the smallest width that
fits the noisy training set, their "effective model complexity" = n) memorizes the flipped labels.
The test cross-entropy peaks at the threshold and descends again as the width grows; the test
error only plateaus there on this data.

Epoch-wise: the validation loss of a run that descends, rises, then descends again (grokking
runs do: it rises while the network memorizes, and falls when it generalizes).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from losslab.core import progress

# the numbers of random features, as fractions of the training samples: dense around N = n
FEATURE_FRACTIONS = (0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.2, 1.5, 2, 3, 5, 10)
WIDTHS = (1, 2, 3, 4, 6, 8, 10, 12, 16, 24, 32, 64, 128, 256)  # MLP widths on digits, past the threshold


def random_features_risk(features: list[int] | None = None, n_train: int = 100, n_test: int = 2000, dim: int = 20,
                         noise: float = 0.5, seeds: int = 10) -> dict:
    """Test and train mean squared error of min-norm random-features regression, averaged over
    seeds, for each number of features (default: FEATURE_FRACTIONS of n_train); the target is
    linear in x plus Gaussian label noise."""
    features = features or sorted({max(1, round(n_train * f)) for f in FEATURE_FRACTIONS})
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
    return {"features": list(features), "test_risk": test.tolist(), "train_risk": train.tolist(),
            "threshold": n_train, "peak_at": descent_peak(features, test), "n_train": n_train, "dim": dim,
            "noise": noise, "seeds": seeds}


def descent_peak(sizes, risks, rise: float = 0.05) -> int | None:
    """The size at which the risk peaks after it first stopped falling: the highest point past its
    first local minimum, if at least `rise` (relative) above that minimum; None when the risk only
    falls (an underfit start is not a double-descent peak)."""
    risks = np.asarray(risks, dtype=np.float64)
    rising = np.nonzero(np.diff(risks) > 0)[0]
    if not len(rising):
        return None
    first = int(rising[0])  # the first local minimum: where the risk first goes up
    peak = first + int(np.argmax(risks[first:]))
    return int(sizes[peak]) if risks[peak] > (1 + rise) * risks[first] else None


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


def noisy_digits(n_train: int, label_noise: float, seed: int):
    """n_train digits with that fraction of their labels flipped to another class at random, and the
    rest of the data set, clean, for testing."""
    from sklearn.datasets import load_digits  # startup

    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    train, test = order[:n_train], order[n_train:]
    y_train = y[train].copy()
    flip = rng.random(n_train) < label_noise
    y_train[flip] = (y_train[flip] + rng.integers(1, 10, flip.sum())) % 10
    return x[train] / 16.0, y_train, x[test] / 16.0, y[test]


def mlp_width_risk(widths: list[int] = WIDTHS, n_train: int = 300, label_noise: float = 0.2, seeds: int = 5,
                   steps: int = 2000, lr: float = 1e-2) -> dict:
    """Train and test error and test cross-entropy of one-hidden-layer MLPs of each width, trained
    full batch by Adam for `steps` from PyTorch's default initialization, averaged over seeds (each
    seed its own split, flipped labels and initialization; the seeds of a width train as one
    batched model, their gradients independent)."""
    splits = [noisy_digits(n_train, label_noise, seed) for seed in range(seeds)]
    x, y, x_test, y_test = (torch.tensor(np.stack(a)) for a in zip(*splits))
    x, x_test = x.float(), x_test.float()
    rows = {"train_error": [], "test_error": [], "test_loss": []}
    for width in widths:
        generator = torch.Generator().manual_seed(width)

        def uniform(*shape, fan_in):  # nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
            return ((torch.rand(seeds, *shape, generator=generator) * 2 - 1) / fan_in ** 0.5).requires_grad_()

        params = [uniform(64, width, fan_in=64), uniform(1, width, fan_in=64),
                  uniform(width, 10, fan_in=width), uniform(1, 10, fan_in=width)]
        w1, b1, w2, b2 = params

        def logits(inputs):
            return torch.relu(inputs @ w1 + b1) @ w2 + b2

        optimizer = torch.optim.Adam(params, lr=lr)
        for _ in range(steps):  # the seeds' losses summed: each seed's gradient is its own mean loss's
            loss = F.cross_entropy(logits(x).flatten(0, 1), y.flatten(), reduction="sum") / n_train
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            out = logits(x_test)
            rows["train_error"].append((logits(x).argmax(-1) != y).float().mean().item())
            rows["test_error"].append((out.argmax(-1) != y_test).float().mean().item())
            rows["test_loss"].append(F.cross_entropy(out.flatten(0, 1), y_test.flatten()).item())
        progress.advance()
    fitted = [w for w, e in zip(widths, rows["train_error"]) if e <= 0.01]
    return {"widths": list(widths), **rows, "threshold": fitted[0] if fitted else None,
            "peak_at": descent_peak(widths, rows["test_loss"]), "parameters": [75 * w + 10 for w in widths],
            "n_train": n_train, "label_noise": label_noise, "seeds": seeds, "steps": steps, "lr": lr}
