"""Directions in weight space from the objective's point theta, for loss surfaces theta + a d1 + b d2.
Each is a flat vector over the objective's parameters, on its device (obj.unflatten gives the
tensors back).

- random_direction: zero-mean Gaussian, normalized filter by filter (Li et al. 2018: each filter
  -- a row of a weight matrix, a kernel of a convolution -- rescaled to the norm of the same
  filter of theta), per layer, or not at all; 1D parameters (biases, norm gains) are zero unless
  included. Drawn from a seed, so a surface can be repeated over seeds.
- direction_to: another state_dict of the same architecture minus theta (toward another minimum,
  the initialization, a later checkpoint).
- trajectory_directions: the principal directions of a trajectory (a list of state_dicts), with
  the fraction of its variance each explains.
- hessian_directions: the eigenvectors of the top Hessian eigenvalues.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from losslab.analysis.curvature import hessian_eigenvalues
from losslab.analysis.objective import Objective
from losslab.core.errors import LossLabError

NORMALIZATIONS = ("filter", "layer", "none")


def random_direction(obj: Objective, seed: int = 0, normalization: str = "filter",
                     include_biases: bool = False) -> torch.Tensor:
    """A random direction in parameter space, normalized to the weights as Li et al. (2018) draw surfaces.

    Gaussian, then (filter normalization) each filter, a row of a weight matrix or an output channel
    of a kernel, scaled to the norm of the same filter of the weights, so the surface's scale means
    the same in every layer; biases and other 1-D parameters stay still unless `include_biases`.
    Drawn on the CPU: the same direction on every device.

    Args:
        obj: the objective whose parameters the direction spans.
        seed: the draw's seed.
        normalization: `"filter"`, `"layer"` (each parameter to its norm) or `"none"`.
        include_biases: move the 1-D parameters too.

    Returns:
        A flat tensor of the objective's size (`obj.unflatten` gives a dict of tensors).

    Raises:
        LossLabError: an unknown normalization.

    Examples:
        >>> d = ll.random_direction(obj, seed=1)
        >>> w = obj.params["0.weight"]
        >>> bool(torch.allclose(obj.unflatten(d)["0.weight"].norm(dim=1), w.norm(dim=1)))
        True
    """
    if normalization not in NORMALIZATIONS:
        raise LossLabError(f"unknown normalization {normalization!r} (known: {', '.join(NORMALIZATIONS)})")
    g = torch.Generator().manual_seed(seed)  # drawn on the CPU: the same direction on every device
    pieces = []
    for w in obj.params.values():
        d = torch.randn(w.shape, generator=g, dtype=torch.float64).to(w.device, w.dtype)
        if w.ndim < 2 and not include_biases:
            d.zero_()
        elif normalization == "filter" and w.ndim >= 2:  # each filter (row) to the norm of theta's
            rows, d_rows = w.flatten(1), d.flatten(1)
            d = (d_rows * (rows.norm(dim=1, keepdim=True) / d_rows.norm(dim=1, keepdim=True).clamp_min(1e-30))
                 ).view(w.shape)
        elif normalization != "none":  # a layer (or a 1D parameter) as a whole
            d = d * (w.norm() / d.norm().clamp_min(1e-30))
        pieces.append(d.flatten())
    return torch.cat(pieces)


def flat_state(obj: Objective, state: Mapping[str, torch.Tensor], what: str) -> torch.Tensor:
    """A state_dict's weights of the objective's parameters, flat, on its device; refused unless
    it holds each of them with its shape."""
    missing = [n for n in obj.params if n not in state]
    wrong = [n for n, p in obj.params.items() if n in state and tuple(state[n].shape) != tuple(p.shape)]
    if missing or wrong:
        shown = ", ".join([*(f"{n} missing" for n in missing[:3]),
                           *(f"{n} {tuple(state[n].shape)} not {tuple(obj.params[n].shape)}" for n in wrong[:3])])
        raise LossLabError(f"{what} is not a state of this model ({shown})")
    return torch.cat([state[n].detach().reshape(-1).to(obj.device, obj.dtype) for n in obj.params])


def direction_to(obj: Objective, state: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The direction from the objective's point to another state of the same model: state - theta.

    Args:
        obj: the objective.
        state: a state_dict holding every parameter of the objective, with its shape.

    Returns:
        A flat tensor: `loss_line(obj, direction_to(obj, b))` walks to `b` at 1.

    Raises:
        LossLabError: the state lacks a parameter or has one of another shape.

    Examples:
        >>> ll.direction_to(obj, {n: torch.zeros_like(p) for n, p in model.state_dict().items()}).norm() > 0
        tensor(True)
    """
    return flat_state(obj, state, "the target") - obj.flatten(obj.params)


def _load_state(state: Mapping[str, torch.Tensor] | str | Path) -> Mapping[str, torch.Tensor]:
    """A state_dict, or one read from a checkpoint file (weights only: loading runs no code; a
    losslab checkpoint's model, or a bare state_dict)."""
    if not isinstance(state, str | Path):
        return state
    try:
        loaded = torch.load(state, weights_only=True, map_location="cpu")
    except Exception as e:  # noqa: BLE001 - any unreadable file: one line naming it
        raise LossLabError(f"cannot read a state_dict from {state} ({str(e).splitlines()[0]})") from None
    return loaded["model"] if isinstance(loaded, dict) and isinstance(loaded.get("model"), dict) else loaded


def trajectory_directions(obj: Objective, states: Sequence[Mapping[str, torch.Tensor] | str | Path],
                          k: int = 2) -> tuple[list[torch.Tensor], list[float]]:
    """The top principal directions of a training trajectory, and the variance each explains.

    The SVD (float64) of the states centered on their mean, as Li et al. (2018) find the plane a
    trajectory lies in.

    Args:
        obj: the objective (its parameters name what is read from each state).
        states: state_dicts, or checkpoint files, in training order.
        k: how many directions.

    Returns:
        `(directions, explained)`: k orthonormal flat tensors and the fraction of the variance each
            explains.

    Raises:
        LossLabError: fewer than k + 1 states, or a state of another model.

    Examples:
        >>> states = [{n: p + 0.1 * i for n, p in model.state_dict().items()} for i in range(4)]
        >>> directions, explained = ll.trajectory_directions(obj, states, k=1)
        >>> round(explained[0], 6)  # a straight line: one direction holds it all
        1.0
    """
    if len(states) < k + 1:
        raise LossLabError(f"a trajectory of {len(states)} states: too few for {k} principal directions")
    rows = torch.stack([flat_state(obj, _load_state(s), f"state {i} of the trajectory")
                        for i, s in enumerate(states)]).double()
    centered = rows - rows.mean(0)
    _, s, vh = torch.linalg.svd(centered, full_matrices=False)
    explained = (s**2 / (s**2).sum()).tolist()
    return [vh[i].to(obj.dtype) for i in range(k)], explained[:k]


def project_trajectory(obj: Objective, states: Sequence[Mapping[str, torch.Tensor] | str | Path],
                       directions: Sequence[torch.Tensor]) -> np.ndarray:
    """Each state's coordinates along orthonormal directions from the objective's point.

    (theta_t - theta) . d_i for every state and direction, as Li et al. draw a trajectory on the plane
    of its principal directions.

    Args:
        obj: the objective (its point is the origin).
        states: state_dicts, or checkpoint files.
        directions: orthonormal flat tensors (`trajectory_directions` gives them).

    Returns:
        A (T, k) array: a row per state.

    Examples:
        >>> states = [{n: p + 0.1 * i for n, p in model.state_dict().items()} for i in range(4)]
        >>> directions, _ = ll.trajectory_directions(obj, states, k=2)
        >>> ll.project_trajectory(obj, states, directions).shape
        (4, 2)
    """
    theta = obj.flatten(obj.params).double()
    basis = torch.stack([d.double() for d in directions])
    return np.stack([(basis @ (flat_state(obj, _load_state(s), f"state {i} of the trajectory").double() - theta))
                     .cpu().numpy() for i, s in enumerate(states)])


def hessian_directions(obj: Objective, k: int = 1) -> list[torch.Tensor]:
    """The eigenvectors of the k largest Hessian eigenvalues, largest first, as flat directions.

    Args:
        obj: the objective.
        k: how many.

    Returns:
        k flat unit tensors on the objective's device.

    Cost: the Lanczos products of `hessian_eigenvalues(obj, k)`.

    Examples:
        >>> [d] = ll.hessian_directions(obj, k=1)
        >>> round(float(d.norm()), 6)
        1.0
    """
    spectrum = hessian_eigenvalues(obj, k=k, which="top")
    return [torch.from_numpy(spectrum.top_vectors[:, i].copy()).to(obj.device, obj.dtype) for i in range(k)]
