"""Analyses run on a checkpoint and saved with the run: analyses/*.json and figures/*.png."""

from __future__ import annotations

import copy
import json
import re
import time

import numpy as np
import torch
from torch.func import functional_call

from losslab.analysis.basin import behavioral_gradients, numerical_rank, shared_activation_patterns
from losslab.analysis.directions import resolve_direction, trajectory_matrix
from losslab.analysis.figures import (
    checkpoint_heatmap,
    density_figure,
    line_figure,
    plane_3d,
    plane_figure,
    trajectory_figure,
)
from losslab.analysis.hessian import Hessian, extreme_eigenpairs, hutchinson_trace, spectral_density
from losslab.analysis.point import Point, checkpoint_paths, load_point, unflatten
from losslab.analysis.sharpness import PRECONDITIONED, keskar_sharpness, sam_sharpness
from losslab.analysis.surface import axis, evaluate
from losslab.errors import LossLabError

DENSE_LIMIT = 3000  # parameters: the dense Hessian (one product per parameter) stays quick up to here


def _save(point: Point, name: str, result: dict) -> dict:
    folder = point.run.path / "analyses"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.json"
    result["file"] = str(path)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return result


def hessian_report(point: Point, k: int = 5, which: str = "top", trace: bool = False, density: bool = False,
                   split: str = "train", tol: float = 1e-6, seed: int = 0, dense: bool = False) -> dict:
    started = time.perf_counter()
    h = Hessian(lambda p: point.loss(p, split), point.params)
    if dense and h.size > DENSE_LIMIT:
        raise LossLabError(f"--dense builds the {h.size} x {h.size} Hessian: only for models of at most "
                           f"{DENSE_LIMIT} parameters")
    result: dict = {"run_id": point.run.path.name, "step": point.step, "split": split, "n_params": h.size,
                    "loss": float(h.loss.detach()), "grad_norm": float(h.flat_grad().norm())}
    if dense:  # every eigenvalue, and the rank at the tolerance of float64 products
        eigenvalues = torch.linalg.eigvalsh(h.dense())
        result["eigenvalues"] = eigenvalues.tolist()
        result["rank"] = numerical_rank(eigenvalues.abs(), 1e-12)
    extremes = []
    for side in (["top", "bottom"] if which == "both" else [which]):
        eig = extreme_eigenpairs(h, k, side, tol=tol, seed=seed)
        result[side] = [float(v) for v in eig.values[::-1]] if side == "top" else [float(v) for v in eig.values]
        extremes += result[side]
    if "top" in result and "bottom" in result:
        result["lambda_max"], result["lambda_min"] = result["top"][0], result["bottom"][0]
        result["condition_number"] = abs(result["lambda_max"]) / max(abs(result["lambda_min"]), 1e-300)
    if trace:
        t = hutchinson_trace(h, seed=seed)
        result["trace"] = {"estimate": t.estimate, "standard_error": t.standard_error, "samples": t.samples}
    if density:
        d = spectral_density(h, seed=seed)
        result["density"] = {"nodes": d.nodes.tolist(), "weights": d.weights.tolist()}
        fig = point.run.figure_dir / f"hessian_density_step{point.step}.png"
        result["figure"] = str(density_figure(d, extremes, f"{point.run.path.name} step {point.step}: "
                                                           f"Hessian spectral density ({split})", fig))
    result["hessian_vector_products"] = h.products
    result["seconds"] = round(time.perf_counter() - started, 3)
    return _save(point, f"hessian_step{point.step}_{split}", result)



def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text)


def landscape_report(point: Point, dims: int = 1, direction: str = "random", direction2: str = "random",
                     span: tuple[float, float] = (-1.0, 1.0), points: int = 51, split: str = "train", seed: int = 0,
                     seeds: int = 1, normalization: str = "filter", include_biases: bool = False,
                     all_checkpoints: bool = False, chunk: int | None = None) -> dict:
    """A 1D line (over `seeds` random directions, or at every checkpoint) or a 2D plane."""
    started = time.perf_counter()
    alphas = axis(span[0], span[1], points)
    options = {"normalization": normalization, "include_biases": include_biases, "split": split}
    run, name = point.run, point.run.path.name
    result: dict = {"run_id": name, "step": point.step, "split": split, "dims": dims, "direction": direction,
                    "normalization": normalization, "include_biases": include_biases, "alphas": alphas.tolist()}
    tag = f"{dims}d_{_slug(direction)}" + (f"_{_slug(direction2)}" if dims == 2 else "")
    if dims == 2:
        d1 = resolve_direction(point, direction, seed, **options)
        d2 = resolve_direction(point, direction2, seed + 1, **options)
        s = evaluate(point, d1, alphas, d2, alphas, split, chunk)
        result.update(direction2=direction2, seeds=[seed, seed + 1], betas=alphas.tolist(), loss=s.loss.tolist(),
                      acc=s.acc.tolist())
        title = f"{name} step {point.step}: {direction} x {direction2} ({split})"
        fig = plane_figure(alphas, alphas, s.loss, s.acc, title, (direction, direction2),
                           run.figure_dir / f"landscape_{tag}_step{point.step}.png")
        result["figure_3d"] = str(plane_3d(alphas, alphas, s.loss, title, (direction, direction2),
                                           run.figure_dir / f"landscape_{tag}_step{point.step}.html"))
    elif all_checkpoints:
        steps = list(checkpoint_paths(run))
        lines = []
        for step in steps:
            at = load_point(run, step)
            lines.append(evaluate(at, resolve_direction(at, direction, seed, **options), alphas, split=split,
                                  chunk=chunk))
        loss, acc = np.array([s.loss for s in lines]), np.array([s.acc for s in lines])
        result.update(steps=steps, seeds=[seed], loss=loss.tolist(), acc=acc.tolist())
        fig = checkpoint_heatmap(steps, alphas, loss, acc, f"{name}: {direction} line at every checkpoint ({split})",
                                 run.figure_dir / f"landscape_{tag}_checkpoints.png")
        tag += "_checkpoints"
    else:
        chosen = [seed + i for i in range(seeds)] if direction == "random" else [seed]
        lines = [evaluate(point, resolve_direction(point, direction, s, **options), alphas, split=split, chunk=chunk)
                 for s in chosen]
        result.update(seeds=chosen, loss=[s.loss.tolist() for s in lines], acc=[s.acc.tolist() for s in lines])
        fig = line_figure(alphas, [(f"seed {s}", ln.loss, ln.acc) for s, ln in zip(chosen, lines)],
                          f"{name} step {point.step}: {direction} ({split})", "alpha",
                          run.figure_dir / f"landscape_{tag}_step{point.step}.png")
    result["figure"] = str(fig)
    result["seconds"] = round(time.perf_counter() - started, 3)
    suffix = "" if all_checkpoints and dims == 1 else f"_step{point.step}"
    return _save(point, f"landscape_{tag}{suffix}_{split}", result)


def sharpness_report(point: Point, rho: float = 0.05, steps: int = 20, restarts: int = 3, keskar_eps: float = 1e-3,
                     split: str = "train", seed: int = 0) -> dict:
    """SAM and Keskar sharpness; for Adam, AdamW and Shampoo runs also lambda_max(P^-1 H) against
    its stability threshold."""
    started = time.perf_counter()
    params = point.params

    def loss_of(p):
        return point.loss(p, split)
    result = {"run_id": point.run.path.name, "step": point.step, "split": split,
              "sam": sam_sharpness(loss_of, params, rho, steps, restarts, seed),
              "keskar": keskar_sharpness(loss_of, params, keskar_eps, steps, seed)}
    if point.cfg.optim.name in PRECONDITIONED:
        state = point.run.load_checkpoint(checkpoint_paths(point.run)[point.step])["optimizer"]
        if state["state"]:  # none before the first step
            result["preconditioned"] = PRECONDITIONED[point.cfg.optim.name](Hessian(loss_of, params), state)
    result["seconds"] = round(time.perf_counter() - started, 3)
    return _save(point, f"sharpness_step{point.step}_{split}", result)


def basin_report(point: Point, split: str = "train", max_examples: int | None = None,
                 relative_tol: float = 1e-6) -> dict:
    """Rank of the behavioral gradients G, the behavior-manifold dimension, the information-loss
    counts per layer, and for MSE runs (small ones) rank(H) against rank(G)."""
    started = time.perf_counter()
    x, y = point.data(split)
    if max_examples is not None:
        x, y = x[:max_examples], y[:max_examples]
    g = behavioral_gradients(point.model, point.params, x)
    sv = torch.linalg.svdvals(g)
    rank = numerical_rank(sv, relative_tol)
    n_params = g.shape[1]
    result = {"run_id": point.run.path.name, "step": point.step, "split": split, "examples": len(x),
              "outputs": g.shape[0] // len(x), "n_params": n_params, "rank_G": rank,
              "behavior_manifold_dim": n_params - rank, "relative_tol": relative_tol,
              "singular_values": sv.tolist(), "shared_activation_patterns": shared_activation_patterns(point.model, x)}
    if point.cfg.loss == "mse" and n_params <= DENSE_LIMIT:
        params64 = {n: p.double() for n, p in point.params.items()}
        model64 = copy.deepcopy(point.model).double()
        x64 = x.double() if x.is_floating_point() else x

        def loss_of(p):
            return point.loss_fn(functional_call(model64, p, (x64,)), y)
        h = Hessian(loss_of, params64)
        eigenvalues = torch.linalg.eigvalsh(h.dense()).abs()
        result.update(loss=float(h.loss.detach()), rank_H=numerical_rank(eigenvalues, relative_tol**2))
    result["seconds"] = round(time.perf_counter() - started, 3)
    return _save(point, f"basin_step{point.step}_{split}", result)


def trajectory_report(point: Point) -> dict:
    """Geometry of the stored trajectory: the variance in its principal directions, the cosines
    between checkpoints, the norms of every weight matrix; its projection on the first two
    principal directions as a figure."""
    steps, rows = trajectory_matrix(point)
    if len(steps) < 3:
        raise LossLabError(f"run {point.run.path.name} stored {len(steps)} checkpoints: a trajectory needs 3")
    centered = rows.double() - rows.double().mean(0)
    _, s, vh = torch.linalg.svd(centered, full_matrices=False)
    explained = (s**2 / (s**2).sum()).tolist()
    norms: dict[str, list[float]] = {}
    for row in rows:  # each checkpoint's weights, from the rows already loaded
        for name, w in unflatten(row, point.params).items():
            if w.ndim == 2:
                norms.setdefault(f"fro/{name}", []).append(float(torch.linalg.matrix_norm(w)))
                norms.setdefault(f"spec/{name}", []).append(float(torch.linalg.matrix_norm(w, ord=2)))
    cos = torch.nn.functional.cosine_similarity
    result = {"run_id": point.run.path.name, "steps": steps, "explained_variance": explained[:5],
              "explained_by_two": sum(explained[:2]),
              "cos_theta0": cos(rows.double(), rows[:1].double()).tolist(),
              "cos_consecutive": cos(rows[1:].double(), rows[:-1].double()).tolist(),
              "norms": norms, "slingshots": point.run.summary().get("slingshots")}
    projected = (centered @ vh[:2].T).numpy()
    result["figure"] = str(trajectory_figure(steps, projected, explained, point.run.path.name,
                                             point.run.figure_dir / "trajectory_pca.png"))
    return _save(point, "trajectory", result)
