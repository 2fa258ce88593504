"""An optimizer that wraps a base torch.optim optimizer over the same parameter groups.

SAM and SVRG change the gradient the base optimizer sees, then let it step. The base
optimizer shares the wrapper's param_groups (so a learning-rate scheduler on the wrapper
drives it), and the state dict carries both: the wrapper's own state and the base's.
"""

from __future__ import annotations

import torch

# The closure protocol of losslab's trainer: closure() recomputes the gradient of the current
# minibatch at the current weights into p.grad and returns the loss; closure(full=True) does
# the same on the whole training set.


class WrappedOptimizer(torch.optim.Optimizer):
    needs_closure = True

    def __init__(self, params, base_optimizer_cls: type[torch.optim.Optimizer], defaults: dict, **base_kwargs):
        super().__init__(params, {**defaults, **base_kwargs})
        self.base_optimizer = base_optimizer_cls(self.param_groups, **base_kwargs)

    def _params(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def state_dict(self) -> dict:
        return {**super().state_dict(), "base": self.base_optimizer.state_dict()}

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        base = state_dict.pop("base")
        super().load_state_dict(state_dict)
        self.base_optimizer.load_state_dict(base)
        self.base_optimizer.param_groups = self.param_groups  # loading made new group dicts: share again
