"""Probes: measurements of theta_t taken during training, written as metric rows (split "probe").

- hessian: lambda_max and lambda_min of the training loss's Hessian (eigsh, warm-started from
  the previous probe's eigenvectors), and the condition number lambda_max / lambda_min where
  the Hessian is positive definite; with the learning rate, the edge-of-stability line 2 / lr
  of Cohen et al. is drawn against lambda_max.
- preconditioned (Adam, AdamW: lambda_max(P^-1 H) and the adaptive edge of stability
  (2 + 2 beta1) / ((1 - beta1) lr), Cohen et al. 2022; Shampoo: with its roots, against 2 / lr).
- dimension: the intrinsic dimension (TwoNN and the Levina-Bickel MLE) of the inputs of every
  Linear layer (the representation before it), on up to 1000 training examples.
- geometry: the full-batch gradient norm, cos(theta_t, theta_0), cos(theta_t, theta at the
  previous probe), and the Frobenius and spectral norms of every weight matrix.
"""

from __future__ import annotations

import numpy as np
import torch

from losslab.analysis.curvature import HessianOperator, extreme_eigenpairs
from losslab.analysis.objective import Objective
from losslab.analysis.sharpness import preconditioned_sharpness
from losslab.config import ProbesConfig


DIMENSION_EXAMPLES = 1000
PRECONDITIONED = ("adam", "adamw", "shampoo")  # optimizers whose preconditioner the probe reads


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()).clamp_min(1e-30))


class Probes:
    def __init__(self, cfg: ProbesConfig, model: torch.nn.Module, loss_fn, data: tuple[torch.Tensor, torch.Tensor],
                 optimizer, optimizer_name: str):
        self.cfg, self.model, self.loss_fn, self.data = cfg, model, loss_fn, data
        self.inputs = data[0][:DIMENSION_EXAMPLES]
        self.optimizer, self.optimizer_name = optimizer, optimizer_name
        self.theta0: torch.Tensor | None = None  # set by the trainer (from the step-0 weights)
        self.previous: torch.Tensor | None = None
        self.warm: dict[str, np.ndarray] = {}
        self._before_step, self._before = None, (None, {})  # the state before the last probe, and its step

    def state(self, step: int) -> dict:
        """What the probe at `step` starts from (the previous weights, the warm starts): in the
        checkpoint of `step`, so that a resumed run, which measures `step` again, measures what
        the uninterrupted one did."""
        previous, warm = self._before if self._before_step == step else (self.previous, self.warm)
        return {"previous": previous, "warm": {k: torch.from_numpy(v) for k, v in warm.items()}}

    def restore(self, state: dict) -> None:
        self.previous = state.get("previous")
        self.warm = {k: v.numpy() for k, v in state.get("warm", {}).items()}

    def due(self, step: int) -> bool:
        return self.cfg.every > 0 and step % self.cfg.every == 0

    def measure(self, step: int) -> list[tuple[int, str, str, float]]:
        self._before_step, self._before = step, (self.previous, dict(self.warm))
        obj = Objective(self.model, self.loss_fn, self.data)
        rows: list[tuple[int, str, str, float]] = []

        def add(name: str, value) -> None:
            rows.append((step, "probe", name, float(value)))
        curvature = self.cfg.hessian or self.cfg.preconditioned
        h = HessianOperator(obj) if curvature else None
        if self.cfg.geometry:
            self._geometry(obj, h, add)
        if self.cfg.dimension and self.inputs is not None:
            from losslab.analysis.dimension import layer_inputs, levina_bickel, two_nn  # scikit-learn: only here

            for layer, acts in layer_inputs(self.model, self.inputs).items():
                try:
                    add(f"dim_twonn/{layer}", two_nn(acts))
                    add(f"dim_mle/{layer}", levina_bickel(acts))
                except ValueError:  # collapsed: too few distinct representations
                    continue
        if self.cfg.hessian:
            top, bottom = (self._extreme(h, side) for side in ("top", "bottom"))
            add("lambda_max", top)
            add("lambda_min", bottom)
            if bottom > 0:  # positive definite: otherwise there is no condition number
                add("condition_number", top / bottom)
            add("edge_of_stability", 2 / self.optimizer.param_groups[0]["lr"])
        if self.cfg.preconditioned and self.optimizer_name in PRECONDITIONED and self.optimizer.state:
            pre = preconditioned_sharpness(obj, self.optimizer, operator=h)  # from the first step on
            add("preconditioned_lambda_max", pre.lambda_max)
            add("adaptive_edge_of_stability", pre.threshold)
        return rows

    def _extreme(self, h: HessianOperator, side: str) -> float:
        values, vectors = extreme_eigenpairs(h, 1, side, v0=self.warm.get(side))
        self.warm[side] = vectors[:, 0]  # the next probe starts from here: few products when it moved little
        return float(values[0])

    def _geometry(self, obj: Objective, h: HessianOperator | None, add) -> None:
        grad = h.grad if h is not None else obj.value_and_grad()[1]
        add("grad_norm", grad.norm())
        params = obj.params
        flat = obj.flatten(params)
        if self.theta0 is not None:
            add("cos_theta0", _cos(flat, self.theta0))
        if self.previous is not None:
            add("cos_previous", _cos(flat, self.previous))
        self.previous = flat.clone()
        for name, w in params.items():
            if w.ndim == 2:
                add(f"norm_fro/{name}", torch.linalg.matrix_norm(w))
                add(f"norm_spec/{name}", torch.linalg.matrix_norm(w, ord=2))
