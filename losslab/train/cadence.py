"""Which steps are evaluated and checkpointed: every E steps plus log-spaced steps."""

import numpy as np


def log_spaced(max_steps: int, per_decade: int) -> set[int]:
    """About `per_decade` integer steps per decade from 1 to max_steps (and step 0)."""
    if per_decade == 0:
        return set()
    count = int(np.ceil(np.log10(max(max_steps, 1)) * per_decade)) + 1
    return {0, *np.unique(np.round(np.logspace(0, np.log10(max(max_steps, 1)), count))).astype(int).tolist()}


def eval_steps(max_steps: int, every: int, per_decade: int) -> set[int]:
    return {0, max_steps, *range(0, max_steps + 1, every), *log_spaced(max_steps, per_decade)}
