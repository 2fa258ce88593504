"""How a network's representations change over training (the sparse-parity studies of "Beyond
Memorization: grokking in sparse neural networks"): t-SNE of the last hidden layer at
log-spaced checkpoints between memorization and generalization, colored by the first k input
bits (parity) or the label; the density of the output-layer weights at each checkpoint; the
Frobenius and spectral norms of every weight matrix against the step."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from sklearn.manifold import TSNE
from sklearn.model_selection import KFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from torch import nn

from losslab.analysis.dimension import layer_inputs
from losslab.core import progress


def chosen_steps(steps: list[int], events: dict, panels: int = 6) -> list[int]:
    """`panels` distinct stored steps (all of them if the run has fewer), log-spaced between t2
    and t4 when the run has both (from the first step to the last otherwise); where fewer than
    `panels` lie between them, the nearest steps outside join, alternately before and after."""
    steps = sorted(steps)
    lo = events.get("t2") if events.get("t2") is not None else steps[0]
    hi = events.get("t4") if events.get("t4") is not None else steps[-1]
    inside = [s for s in steps if lo <= s <= hi]
    before, after = [s for s in steps if s < lo], [s for s in steps if s > hi]
    while len(inside) < panels and (before or after):
        inside = [before.pop()] + inside if before and (len(inside) % 2 == 0 or not after) else inside + [after.pop(0)]
    if len(inside) <= panels:
        return inside
    log_steps = np.log(np.maximum(inside, 1))
    free, chosen = set(range(len(inside))), []
    for target in np.linspace(log_steps[0], log_steps[-1], panels):  # each target its nearest step still free
        best = min(free, key=lambda i: abs(log_steps[i] - target))
        free.remove(best)
        chosen.append(inside[best])
    return sorted(chosen)


def parity_colors(x: torch.Tensor, k: int) -> np.ndarray:
    """A color class per parity input: its first k bits as a number (2^k colors)."""
    bits = (x[:, :k] > 0).long()
    return (bits * (2 ** torch.arange(k))).sum(1).numpy()


def separation(embedding: np.ndarray, colors: np.ndarray) -> float:
    """How well a panel separates its colors: the accuracy of a 5-nearest-neighbour vote in the
    embedding, each half of the points classified by the other (1: clustered by color; chance, one over
    the number of colors, when not)."""
    return float(cross_val_score(KNeighborsClassifier(5), embedding, colors, cv=KFold(2)).mean())


def representations(models: Mapping[int, nn.Module], x: torch.Tensor, shown: list[int], seed: int = 0,
                    colors: np.ndarray | None = None) -> dict:
    """t-SNE embeddings of the last hidden representation (what the output layer sees) at the
    steps `shown` (with their separation of `colors` where given), the output layer's weights
    there, and every weight matrix's norms at every step."""
    panels, weights, norms = [], {}, {}
    last = None
    for step, model in models.items():
        for name, w in model.named_parameters():
            if w.ndim == 2:
                norms.setdefault(name, []).append((step, float(torch.linalg.matrix_norm(w.detach())),
                                                   float(torch.linalg.matrix_norm(w.detach(), ord=2))))
        if step not in shown:
            continue
        seen = layer_inputs(model, x)
        last = list(seen)[-1]
        embedding = TSNE(n_components=2, perplexity=min(30.0, (len(x) - 1) / 3), init="pca",
                         random_state=seed).fit_transform(seen[last])
        panels.append({"step": step, "embedding": embedding.tolist(),
                       **({"separation": separation(embedding, colors)} if colors is not None else {})})
        weights[step] = model.get_parameter(f"{last}.weight").detach().flatten().double().numpy().tolist()
        progress.advance()
    return {"steps": shown, "layer": last, "panels": panels, "output_weights": weights, "norms": norms}
