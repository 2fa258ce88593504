"""Probes: measurements of theta_t taken during training, written as metric rows (split "probe").

- hessian: lambda_max and lambda_min of the training loss's Hessian (eigsh, warm-started from
  the previous probe's eigenvectors) and |lambda_max / lambda_min|; with the learning rate,
  the edge-of-stability line 2 / lr of Cohen et al. is drawn against lambda_max.
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

from losslab.analysis.hessian import Hessian, extreme_eigenpairs
from losslab.analysis.point import flatten
from losslab.analysis.sharpness import PRECONDITIONED
from losslab.config import ProbesConfig


DIMENSION_EXAMPLES = 1000


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()).clamp_min(1e-30))


class Probes:
    def __init__(self, cfg: ProbesConfig, model: torch.nn.Module, loss_of, optimizer, optimizer_name: str,
                 inputs: torch.Tensor | None = None):
        self.cfg, self.model, self.loss_of = cfg, model, loss_of
        self.inputs = inputs[:DIMENSION_EXAMPLES] if inputs is not None else None
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
        params = {n: p.detach() for n, p in self.model.named_parameters()}
        rows: list[tuple[int, str, str, float]] = []

        def add(name: str, value) -> None:
            rows.append((step, "probe", name, float(value)))
        curvature = self.cfg.hessian or self.cfg.preconditioned
        h = Hessian(self.loss_of, params) if curvature else None
        if self.cfg.geometry:
            self._geometry(params, h, add)
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
            add("condition_number", abs(top) / max(abs(bottom), 1e-300))
            add("edge_of_stability", 2 / self.optimizer.param_groups[0]["lr"])
        if self.cfg.preconditioned and self.optimizer_name in PRECONDITIONED:
            state = self.optimizer.state_dict()
            if state["state"]:  # the preconditioner exists from the first step on
                pre = PRECONDITIONED[self.optimizer_name](h, state)
                add("preconditioned_lambda_max", pre["preconditioned_lambda_max"])
                add("adaptive_edge_of_stability", pre["threshold"])
        return rows

    def _extreme(self, h: Hessian, side: str) -> float:
        eig = extreme_eigenpairs(h, 1, side, v0=self.warm.get(side))
        self.warm[side] = eig.vectors[:, 0]  # the next probe starts from here: few products when it moved little
        return float(eig.values[0])

    def _geometry(self, params: dict[str, torch.Tensor], h: Hessian | None, add) -> None:
        if h is not None:
            grad = h.flat_grad()
        else:
            leaves = {n: p.clone().requires_grad_(True) for n, p in params.items()}
            with torch.enable_grad():
                grads = torch.autograd.grad(self.loss_of(leaves), list(leaves.values()))
            grad = torch.cat([g.flatten() for g in grads])
        add("grad_norm", grad.norm())
        flat = flatten(params)
        if self.theta0 is not None:
            add("cos_theta0", _cos(flat, self.theta0))
        if self.previous is not None:
            add("cos_previous", _cos(flat, self.previous))
        self.previous = flat.clone()
        for name, w in params.items():
            if w.ndim == 2:
                add(f"norm_fro/{name}", torch.linalg.matrix_norm(w))
                add(f"norm_spec/{name}", torch.linalg.matrix_norm(w, ord=2))
