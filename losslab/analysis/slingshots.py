"""The slingshot mechanism (Thilak et al. 2022) read from a run's metric series: cyclic spikes of the
training loss with jumps of the last layer's norm, which the paper ties to grokking without
weight decay."""

from __future__ import annotations


def slingshots(rows, last_layer: str, spike: float = 2.0, growth: float = 0.05) -> list[int]:
    """Steps of the slingshot mechanism (Thilak et al. 2022): the training loss jumps by `spike`x
    or more between two evaluations while the Frobenius norm of the last layer (from the
    geometry probes) grows by more than `growth` (relative) across the same interval."""
    loss = sorted((s, v) for s, split, name, v in rows if split == "train" and name == "loss")
    norm = sorted((s, v) for s, split, name, v in rows if split == "probe" and name == f"norm_fro/{last_layer}")
    found = []
    for (s0, l0), (s1, l1) in zip(loss, loss[1:]):
        if not l1 > spike * l0:
            continue
        before = [v for s, v in norm if s <= s0]
        after = [v for s, v in norm if s >= s1]
        if before and after and after[0] > (1 + growth) * before[-1]:
            found.append(s1)
    return found
