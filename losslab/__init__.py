"""losslab: a laboratory for the loss landscape and the training dynamics of neural networks.

The analyses are functions of an Objective (a model, a loss, data) that return small typed
results; the names below are imported on first use, so `import losslab` stays light:

    import losslab as ll
    obj = ll.Objective(model, torch.nn.functional.cross_entropy, loader)
    ll.hessian_eigenvalues(obj, k=5, which="both")
"""

import importlib

__version__ = "0.1.0"

_API = {
    "Objective": "objective", "argmax_accuracy": "objective",
    "HessianOperator": "curvature", "GGNOperator": "curvature", "hessian_eigenvalues": "curvature",
    "hessian_trace": "curvature", "hessian_density": "curvature", "hessian_matrix": "curvature",
    "estimate_trace": "curvature", "extreme_eigenpairs": "curvature", "spectral_density": "curvature",
    "random_direction": "directions", "direction_to": "directions", "trajectory_directions": "directions",
    "hessian_directions": "directions", "project_trajectory": "directions",
    "loss_line": "surface", "loss_plane": "surface",
    "sam_sharpness": "sharpness", "keskar_sharpness": "sharpness", "preconditioned_sharpness": "sharpness",
    "connect": "connect", "match_weights": "connect",
    "basin": "basin", "behavioral_gradients": "basin",
    "trajectory_geometry": "trajectory",
    "intrinsic_dimension": "dimension", "IntrinsicDimension": "dimension", "layer_inputs": "dimension",
    "objective_at": "losslab.train.checkpoints",
    "Monitor": "losslab.monitor", "gradient_noise": "losslab.monitor.measures",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'losslab' has no attribute {name!r}")
    module = _API[name]
    return getattr(importlib.import_module(module if "." in module else f"losslab.analysis.{module}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
