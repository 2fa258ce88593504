"""The geometry of a training trajectory (a list of state_dicts): the fraction of its variance in
its principal directions (the grokking paper's Appendix G.3 reports > 98% in two), cosines to the
start and between consecutive states, the norms of every weight matrix, and its projection on
the first two principal directions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from losslab.core.errors import LossLabError


def trajectory_geometry(states: Sequence[Mapping[str, torch.Tensor]]) -> dict:
    if len(states) < 3:
        raise LossLabError(f"a trajectory needs 3 states, got {len(states)}")
    names = [n for n, w in states[0].items() if w.is_floating_point()]
    rows = torch.stack([torch.cat([s[n].detach().flatten().double().cpu() for n in names]) for s in states])
    centered = rows - rows.mean(0)
    _, s, vh = torch.linalg.svd(centered, full_matrices=False)
    explained = (s**2 / (s**2).sum()).tolist()
    norms: dict[str, list[float]] = {}
    for state in states:
        for name in names:
            w = state[name]
            if w.ndim == 2:
                norms.setdefault(f"fro/{name}", []).append(float(torch.linalg.matrix_norm(w.double())))
                norms.setdefault(f"spec/{name}", []).append(float(torch.linalg.matrix_norm(w.double(), ord=2)))
    cos = torch.nn.functional.cosine_similarity
    return {"explained_variance": explained[:5], "explained_by_two": sum(explained[:2]),
            "cos_theta0": cos(rows, rows[:1]).tolist(), "cos_consecutive": cos(rows[1:], rows[:-1]).tolist(),
            "norms": norms, "projected": (centered @ vh[:2].T).tolist()}
