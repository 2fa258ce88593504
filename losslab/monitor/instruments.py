"""The instruments a run's series are read on, in the order a reader learns once (after Cockpit,
Schneider et al. 2021): each series (split, name) belongs to one. TensorBoard groups scalars by
the first part of their tag, and sorts the groups: the instruments are numbered to keep the order."""

from __future__ import annotations

STABILITY = {"lr", "lambda_max", "edge_of_stability", "lambda_min", "condition_number", "hessian_trace",
             "preconditioned_lambda_max", "adaptive_edge_of_stability"}
GRADIENTS = {"grad_norm", "step_grad_norm", "gradient_noise_scale", "gradient_snr"}
WEIGHTS = ("norm_fro/", "norm_spec/", "update_ratio/", "cos_", "grad_var_")


def instrument(split: str, name: str) -> str:
    """The instrument that shows the series `name` of `split`."""
    if split == "signature":
        return "6 signature"
    if split == "cost":
        return "7 cost"
    if name in STABILITY or split == "optim":
        return "2 step size and stability"
    if name in GRADIENTS:
        return "3 gradients"
    if name.startswith(WEIGHTS):
        return "4 weights"
    if name.startswith("dim_"):
        return "5 representations"
    return "1 loss and accuracy"


def scalar_tag(split: str, name: str) -> str:
    """The series' TensorBoard tag: its instrument, its name, its split (train and val of a metric
    share a chart)."""
    return f"{instrument(split, name)}/{name}/{split}"
