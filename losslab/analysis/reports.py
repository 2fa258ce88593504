"""Analyses run on a checkpoint and saved with the run: analyses/*.json and figures/*.png."""

from __future__ import annotations

import json
import time

from losslab.analysis.figures import density_figure
from losslab.analysis.hessian import Hessian, extreme_eigenpairs, hutchinson_trace, spectral_density
from losslab.analysis.point import Point


def _save(point: Point, name: str, result: dict) -> dict:
    folder = point.run.path / "analyses"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.json"
    result["file"] = str(path)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return result


def hessian_report(point: Point, k: int = 5, which: str = "top", trace: bool = False, density: bool = False,
                   split: str = "train", tol: float = 1e-6, seed: int = 0) -> dict:
    started = time.perf_counter()
    h = Hessian(lambda p: point.loss(p, split), point.params)
    result: dict = {"run_id": point.run.path.name, "step": point.step, "split": split, "n_params": h.size,
                    "loss": float(h.loss.detach()), "grad_norm": float(h.flat_grad().norm())}
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

