"""How a network's representations change over training (the sparse-parity studies of "Beyond
Memorization: grokking in sparse neural networks"): t-SNE of the last hidden layer at
log-spaced checkpoints between memorization and generalization, colored by the first k input
bits (parity) or the label; the density of the output-layer weights at each checkpoint; the
Frobenius and spectral norms of every weight matrix against the step."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.manifold import TSNE

from losslab.analysis.dimension import layer_inputs
from losslab.analysis.point import Point, checkpoint_paths, load_point


def chosen_steps(point: Point, panels: int = 6) -> list[int]:
    """Up to `panels` stored steps, log-spaced between t2 and t4 when the run has both (from the
    first checkpoint to the last otherwise)."""
    steps = list(checkpoint_paths(point.run))
    events = point.run.summary().get("events", {})
    lo = events.get("t2") if events.get("t2") is not None else steps[0]
    hi = events.get("t4") if events.get("t4") is not None else steps[-1]
    inside = [s for s in steps if lo <= s <= hi] or steps
    if len(inside) <= panels:
        return inside
    wanted = np.geomspace(max(inside[0], 1), max(inside[-1], 1), panels)
    return sorted({min(inside, key=lambda s: abs(np.log(max(s, 1)) - np.log(w))) for w in wanted})


def colors_of(point: Point, x: torch.Tensor, y: torch.Tensor) -> tuple[np.ndarray, str]:
    """A color class per example: the first k bits of a parity input (2^k colors), else its label."""
    if point.cfg.task.name == "parity":
        k = point.cfg.task.k
        bits = (x[:, :k] > 0).long()
        return (bits * (2 ** torch.arange(k))).sum(1).numpy(), f"first {k} bits"
    return y.numpy(), "label"


def representation_report(first: Point, panels: int = 6, examples: int = 500, seed: int = 0) -> dict:
    """t-SNE embeddings of the last hidden representation, output-weight values and weight norms
    at the chosen checkpoints."""
    steps = chosen_steps(first, panels)
    x, y = first.data("train")
    x, y = x[:examples], y[:examples]
    colors, colored_by = colors_of(first, x, y)
    panels_out, weights, norms = [], {}, {}
    for step in checkpoint_paths(first.run):
        point = load_point(first.run, step)
        for name, w in point.params.items():
            if w.ndim == 2:
                norms.setdefault(name, []).append((step, float(torch.linalg.matrix_norm(w)),
                                                   float(torch.linalg.matrix_norm(w, ord=2))))
        if step not in steps:
            continue
        seen = layer_inputs(point.model, x)
        last = list(seen)[-1]  # what the output layer sees: the last hidden representation
        embedding = TSNE(n_components=2, perplexity=min(30.0, (len(x) - 1) / 3), init="pca",
                         random_state=seed).fit_transform(seen[last])
        panels_out.append({"step": step, "embedding": embedding.tolist()})
        weights[step] = point.params[f"{last}.weight"].flatten().double().numpy().tolist()
    return {"run_id": first.run.path.name, "steps": steps, "layer": last, "colored_by": colored_by,
            "colors": colors.tolist(), "panels": panels_out, "output_weights": weights, "norms": norms,
            "events": first.run.summary().get("events", {})}
