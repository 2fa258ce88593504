"""Intrinsic dimension of a point cloud (the activations of a layer) from nearest-neighbour
distances, as in appendix H of "Predicting grokking long before it happens".

TwoNN (Facco et al. 2017): with r1 < r2 the distances of a point to its two nearest neighbours,
mu = r2 / r1 follows a Pareto law P(mu > m) = m^-d on a d-dimensional manifold; d is fitted
by least squares through the origin of -log(1 - F(mu)) against log(mu), the largest 10% of mu
left out (they sample the tail poorly), as in the paper and scikit-dimension.

Levina & Bickel (2005) with the MacKay & Ghahramani (2005) correction: the local estimate
m_k(x) = [ 1/(k-1) sum_{j<k} log(T_k(x) / T_j(x)) ]^-1 from the k nearest neighbours is
averaged as an inverse (1/m = mean of 1/m_k(x)), which removes the upward bias of averaging
m_k(x) itself.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from sklearn.neighbors import NearestNeighbors
from torch.func import functional_call

from losslab.core.errors import LossLabError


def _neighbour_distances(x: np.ndarray, k: int) -> np.ndarray:
    """Distances of every point to its k nearest other points, ascending; duplicates removed."""
    x = np.unique(np.asarray(x, dtype=np.float64), axis=0)
    if len(x) <= k:
        raise ValueError(f"need more than {k} distinct points, got {len(x)}")
    distances, _ = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)
    return distances[:, 1:]  # the first is the point itself


def two_nn(x, discard_fraction: float = 0.1) -> float:
    """TwoNN estimate of the intrinsic dimension of the rows of x."""
    r = _neighbour_distances(x, 2)
    mu = np.sort(r[:, 1] / r[:, 0])
    n = len(mu)
    keep = int(np.floor(n * (1 - discard_fraction)))
    f = np.arange(1, n + 1) / n  # empirical CDF at the sorted mu
    xs, ys = np.log(mu[:keep]), -np.log(1 - f[:keep])
    return float(xs @ ys / (xs @ xs))


def levina_bickel(x, k: int = 20) -> float:
    """The MLE of Levina & Bickel with k neighbours, averaged as MacKay & Ghahramani advise."""
    if k < 2:
        raise ValueError(f"k must be at least 2, got {k}")
    t = _neighbour_distances(x, k)
    inverse = np.log(t[:, -1:] / t[:, :-1]).sum(axis=1) / (k - 1)  # 1 / m_k(x) at every point
    return float(1 / inverse.mean())


def chosen_layers(model: torch.nn.Module, layers: list[str] | None) -> list[str]:
    """The modules whose inputs are read: `layers`, refused unless each names a module of the
    model, or by default every Linear layer."""
    modules = dict(model.named_modules())
    if layers is None:
        return [n for n, m in modules.items() if isinstance(m, torch.nn.Linear)]
    missing = [n for n in layers if n not in modules or n == ""]
    if missing or not layers:
        named = [n for n in modules if n]
        raise LossLabError(f"layers {missing} are not modules of the model (its modules: {', '.join(named[:8])}"
                           f"{', ...' if len(named) > 8 else ''})" if named else
                           f"layers {missing} are not modules of the model (it has no submodules)")
    return list(layers)


@torch.no_grad()
def layer_inputs(model: torch.nn.Module, x: torch.Tensor, layers: list[str] | None = None) -> dict[str, np.ndarray]:
    """What named modules see on inputs x: the representations the layers before them made.

    By default every Linear layer's input, one row per example, on the CPU, in the order the forward
    pass reaches them; sequences are represented by their last position. The model's buffers are
    left as they were.

    Args:
        model: the network.
        x: a batch of inputs.
        layers: the names of the modules whose inputs are read (default: every Linear).

    Returns:
        `{module name: (examples, features) array}` (empty for a model without Linear layers).

    Raises:
        LossLabError: a name that is no module of the model.

    Examples:
        >>> {name: a.shape for name, a in ll.layer_inputs(model, x).items()}
        {'0': (64, 4), '2': (64, 16)}
    """
    seen: dict[str, np.ndarray] = {}
    modules = dict(model.named_modules())
    chosen = chosen_layers(model, layers)

    def keep(name):
        def hook(module, args):
            a = args[0]
            seen[name] = (a[:, -1] if a.ndim == 3 else a.flatten(1)).double().cpu().numpy()
        return hook
    handles = [modules[n].register_forward_pre_hook(keep(n)) for n in chosen]
    try:  # on copies of the buffers, as an Objective evaluates: BatchNorm in training mode updates the copies
        functional_call(model, {n: b.clone() for n, b in model.named_buffers()}, (x,))
    finally:
        for h in handles:
            h.remove()
    return seen  # in the order of the forward pass


@dataclass
class IntrinsicDimension:
    """The intrinsic dimension of a point cloud by two estimators.

    Attributes:
        two_nn: TwoNN (Facco et al. 2017).
        mle: the Levina-Bickel MLE, averaged as MacKay and Ghahramani advise.
        points: the distinct points used.
        ambient: the ambient dimension d.

    Examples:
        >>> ll.intrinsic_dimension(x)  # 64 Gaussian points in R^4
        IntrinsicDimension(two_nn=..., mle=..., points=64, ambient=4)
    """

    two_nn: float
    mle: float
    points: int  # distinct points
    ambient: int  # the coordinates of each

    def to_dict(self) -> dict:
        return asdict(self)


def intrinsic_dimension(points, k: int = 20) -> IntrinsicDimension:
    """The intrinsic dimension of the rows of `points` (an (n, d) tensor or array: a layer's
    activations, as `layer_inputs` gives them, or any data).

    Args:
        points: n points of d coordinates; duplicates count once.
        k: the neighbours of the Levina-Bickel MLE (TwoNN takes two).

    Returns:
        IntrinsicDimension: `two_nn` (Facco et al. 2017), `mle` (Levina & Bickel 2005, MacKay &
            Ghahramani's average), the distinct points and the ambient dimension d.

    Raises:
        LossLabError: not a 2-D array of finite numbers, or no more than k distinct points.

    Cost: one k-nearest-neighbour search (scikit-learn), O(n log n) for small d.

    Examples:
        >>> g = torch.Generator().manual_seed(0)
        >>> plane = torch.randn(2000, 2, generator=g) @ torch.randn(2, 50, generator=g)
        >>> d = ll.intrinsic_dimension(plane)  # a plane in R^50
        >>> round(d.two_nn), round(d.mle)
        (2, 2)
    """
    array = (points.detach().double().cpu().numpy() if isinstance(points, torch.Tensor)
             else np.asarray(points, dtype=np.float64))
    if array.ndim != 2 or not np.isfinite(array).all():
        raise LossLabError(f"points must be a 2-D array of finite numbers (n points x d coordinates), got shape "
                           f"{array.shape}")
    try:
        return IntrinsicDimension(two_nn(array), levina_bickel(array, k), len(np.unique(array, axis=0)), array.shape[1])
    except ValueError as e:
        raise LossLabError(f"intrinsic dimension: {e}") from None
