"""Analyses of a run's stored checkpoints (through the library: the checkpoint's Objective) and of its
metrics: Hessian, surfaces, sharpness, basin, trajectory, connectivity, ...; each result saved with the run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from losslab.cli.common import JsonFlag, StoreOpt, app, err, fmt, number, out, print_json, stages
from losslab.core.errors import LossLabError
from losslab.core.limits import MAX_SEED

# ---------------------------------------------------------------- analyses of checkpoints

RunArg = Annotated[str, typer.Argument(metavar="RUN", help="A run folder or run id.")]
CheckpointOpt = Annotated[Optional[int], number("The step of a stored checkpoint (default: the last).", 0,
                                                 kind=int, flags=("--checkpoint",))]
SplitOpt = Annotated[str, typer.Option(help="train or val.")]


def _checkpoint(store: Path, run_ref: str, checkpoint: int | None = None, split: str = "train"):
    """The run's checkpoint and its objective on `split`; a missing run, step or split, or a run
    folder its result could not be saved in, is refused in one line before anything runs."""
    from losslab.store import RunStore  # startup
    from losslab.train.checkpoints import load_checkpoint  # startup

    run = RunStore(store).find(run_ref)
    run.check_writable()
    ck = load_checkpoint(run, checkpoint)
    return ck, ck.objective(split)


def _save(ck, kind: str, name: str, settings: dict, result: dict, figures: dict | None = None) -> dict:
    """The result of the analysis `kind` (and its figures, named after it) saved with the run: keyed
    by its settings, so that no analysis replaces another's of other settings."""
    from losslab.core.files import save_figure  # startup
    from losslab.core.names import settings_stem  # startup

    stem = settings_stem(name, settings)
    for key, (fig, suffix) in (figures or {}).items():
        result[key] = str(save_figure(fig, ck.run.figure_path(f"{stem}{suffix}")))
    result["file"] = str(ck.run.save_analysis(kind, stem, settings, result))
    return result


@app.command()
def hessian(
    run_ref: RunArg,
    checkpoint: CheckpointOpt = None,
    k: Annotated[int, number("How many eigenvalues.", 1, 10_000, kind=int, flags=("--k",))] = 5,
    which: Annotated[str, typer.Option(help="top, bottom or both.")] = "top",
    trace: Annotated[bool, typer.Option("--trace", help="The trace (Hutch++ or Hutchinson) and its standard "
                                                        "error.")] = False,
    density: Annotated[bool, typer.Option("--density", help="The spectral density (SLQ) and its figure.")] = False,
    dense: Annotated[bool, typer.Option("--dense", help="Small models: the full Hessian, all its eigenvalues "
                                                        "and its numerical rank.")] = False,
    curvature: Annotated[str, typer.Option(help="hessian, or ggn (the Gauss-Newton matrix, positive "
                                                "semi-definite).")] = "hessian",
    trace_method: Annotated[str, typer.Option(help="With --trace: hutch++ or hutchinson.")] = "hutch++",
    split: SplitOpt = "train",
    store: StoreOpt = Path("runs"),
    as_json: JsonFlag = False,
):
    """Hessian of the loss at a checkpoint: extreme eigenvalues, trace, spectral density, dense form."""
    import time  # startup

    import torch  # startup

    from losslab.analysis import curvature as cv  # startup
    from losslab.analysis.basin import DENSE_LIMIT, numerical_rank  # startup

    if which not in ("top", "bottom", "both"):
        raise LossLabError(f"--which must be top, bottom or both, got {which!r}")
    if curvature not in cv.CURVATURES:
        raise LossLabError(f"--curvature must be one of {', '.join(cv.CURVATURES)}, got {curvature!r}")
    if trace_method not in cv.TRACE_METHODS:
        raise LossLabError(f"--trace-method must be one of {', '.join(cv.TRACE_METHODS)}, got {trace_method!r}")
    ck, obj = _checkpoint(store, run_ref, checkpoint, split)
    if dense and obj.size > DENSE_LIMIT:
        raise LossLabError(f"--dense builds the {obj.size} x {obj.size} Hessian: only for models of at most "
                           f"{DENSE_LIMIT} parameters")
    settings = {"step": ck.step, "split": split, "curvature": curvature, "k": k, "which": which, "trace": trace,
                "density": density, "dense": dense}
    started = time.perf_counter()
    with stages(f"{curvature} of {ck.run.path.name} at step {ck.step}") as stage:
        op = cv.curvature_operator(obj, curvature)
        with stage(f"{which} eigenvalues ({curvature}-vector products)"):  # ARPACK: its count is not known ahead
            spectrum = cv.hessian_eigenvalues(op, k, which)
        result: dict = {"run_id": ck.run.path.name, "step": ck.step, "split": split, "curvature": curvature,
                        "n_params": obj.size, "loss": obj.value,
                        **{key: v for key, v in spectrum.to_dict().items() if key not in ("products", "seconds",
                                                                                           "curvature")}}
        result = {key: v for key, v in result.items() if v is not None or key == "condition_number"}
        if dense:  # every eigenvalue, and the rank at the tolerance of float64 products
            with stage("dense matrix (products)", total=obj.size):
                eigenvalues = torch.linalg.eigvalsh(op.matrix())
            result["eigenvalues"] = eigenvalues.tolist()
            result["rank"] = numerical_rank(eigenvalues.abs(), 1e-12)
        figures = {}
        if trace:
            with stage(f"trace, {trace_method} (products)", total=cv.TRACE_PRODUCTS):
                result["trace"] = cv.hessian_trace(op, trace_method, cv.TRACE_PRODUCTS).to_dict()
        if density:
            with stage("spectral density, SLQ (products)", total=cv.SLQ_RUNS * min(cv.SLQ_STEPS, obj.size)):
                d = cv.hessian_density(op)
            result["density"] = {"nodes": d.nodes.tolist(), "weights": d.weights.tolist()}
            extremes = [*(spectrum.top if spectrum.top is not None else []),
                        *(spectrum.bottom if spectrum.bottom is not None else [])]
            figures["figure"] = (d.plot(marks=extremes, title=f"{ck.run.path.name}, step {ck.step}: {curvature} "
                                                              f"spectral density ({split})"), ".png")
    result["hessian_vector_products"] = op.products
    result["seconds"] = round(time.perf_counter() - started, 3)
    result = _save(ck, "hessian", f"{curvature}_step{ck.step}_{split}", settings, result, figures)
    if as_json:
        return print_json(result)
    table = Table("quantity", "value", box=None)
    for key in ("step", "split", "n_params", "loss", "grad_norm", "top", "bottom", "condition_number", "rank"):
        if key in result:
            value = result[key]
            if key == "condition_number" and value is None:
                value = "none (not positive definite)"
            table.add_row(key, ", ".join(fmt(v, 5) for v in value) if isinstance(value, list) else fmt(value, 5))
    if "trace" in result:
        t = result["trace"]
        table.add_row(f"trace ({t['method']})", f"{t['estimate']:.5g} +- {t['standard_error']:.2g}")
    table.add_row(f"{curvature}-vector products", str(result["hessian_vector_products"]))
    table.add_row("seconds", fmt(result["seconds"]))
    out.print(table)
    out.print(f"saved: {result['file']}" + (f"\nfigure: {result['figure']}" if "figure" in result else ""),
              highlight=False)


@app.command()
def sharpness(
    run_ref: RunArg,
    checkpoint: CheckpointOpt = None,
    rho: Annotated[float, number("Radius of SAM's l2 ball.", 0, above=True)] = 0.05,
    steps: Annotated[int, number("SAM: at most this many ascent steps from each start (each stops once its rise "
                                 "grows by less than 1e-4 of itself over 5 steps).", 1, 100_000, kind=int)] = 1000,
    keskar_steps: Annotated[int, number("Keskar: ascent steps.", 1, 100_000, kind=int)] = 20,
    restarts: Annotated[int, number("Random starts besides the gradient's.", 0, 1000, kind=int)] = 3,
    keskar_eps: Annotated[float, number("Keskar's box: |e_i| <= eps (|w_i| + 1).", 0, above=True)] = 1e-3,
    split: SplitOpt = "train",
    store: StoreOpt = Path("runs"),
    as_json: JsonFlag = False,
):
    """Sharpness of a checkpoint: SAM's (worst loss rise in an l2 ball), Keskar's, and for Adam and
    Shampoo runs the preconditioned lambda_max(P^-1 H) with its stability threshold."""
    from losslab.analysis.sharpness import keskar_sharpness, preconditioned_sharpness, sam_sharpness  # startup

    ck, obj = _checkpoint(store, run_ref, checkpoint, split)
    settings = {"step": ck.step, "split": split, "rho": rho, "steps": steps, "restarts": restarts,
                "keskar_eps": keskar_eps, "keskar_steps": keskar_steps}
    with stages(f"sharpness of {ck.run.path.name} at step {ck.step}") as stage:
        with stage("SAM's ascents to their tolerance (gradients)"):
            sam = sam_sharpness(obj, rho, steps, restarts).to_dict()
        with stage("Keskar's ascent (gradients)", keskar_steps + 1):
            keskar = keskar_sharpness(obj, keskar_eps, keskar_steps).to_dict()
        result = {"run_id": ck.run.path.name, "step": ck.step, "split": split, "sam": sam, "keskar": keskar}
        if ck.cfg.optim.name in ("adam", "adamw", "shampoo") and ck.state["optimizer"]["state"]:
            with stage("lambda_max(P^-1 H) (products)"):
                pre = preconditioned_sharpness(obj, ck.optimizer())
            result["preconditioned"] = {"optimizer": pre.optimizer, "preconditioned_lambda_max": pre.lambda_max,
                                        "threshold": pre.threshold, "products": pre.products}
    result = _save(ck, "sharpness", f"sharpness_step{ck.step}_{split}", settings, result)
    if as_json:
        return print_json(result)
    out.print(f"step {result['step']} ({split}): loss {result['sam']['loss']:.5g}", highlight=False)
    out.print(f"SAM sharpness (rho {rho:g}): {result['sam']['sharpness']:.5g}", highlight=False)
    out.print(f"Keskar sharpness (eps {keskar_eps:g}): {result['keskar']['sharpness']:.5g}", highlight=False)
    if "preconditioned" in result:
        pre = result["preconditioned"]
        out.print(f"lambda_max(P^-1 H) {pre['preconditioned_lambda_max']:.5g} against its stability threshold "
                  f"{pre['threshold']:.5g}", highlight=False)
    out.print(f"saved: {result['file']}", highlight=False)


@app.command()
def basin(
    run_ref: RunArg,
    checkpoint: CheckpointOpt = None,
    split: SplitOpt = "train",
    max_examples: Annotated[Optional[int], number("Use the first N examples only.", 1, 10**6, kind=int)] = None,
    relative_tol: Annotated[float, number("Singular values below this x the largest count as 0.", 0, 1,
                                          above=True)] = 1e-6,
    store: StoreOpt = Path("runs"),
    as_json: JsonFlag = False,
):
    """Behavioral gradients: rank of the output Jacobian, the behavior-manifold dimension, and
    how many inputs each activation layer can no longer tell apart."""
    from losslab.analysis.basin import DENSE_LIMIT as RANK_LIMIT  # startup
    from losslab.analysis.basin import basin as measure  # startup

    ck, obj = _checkpoint(store, run_ref, checkpoint, split)
    settings = {"step": ck.step, "split": split, "max_examples": max_examples, "relative_tol": relative_tol}
    with stages(f"basin of {ck.run.path.name} at step {ck.step}") as stage, stage("behavioral gradients"):
        found = measure(obj, max_examples, relative_tol,
                        hessian_rank=ck.cfg.loss == "mse" and obj.size <= RANK_LIMIT)
    result = {"run_id": ck.run.path.name, "step": ck.step, "split": split,
              **{k: v for k, v in found.to_dict().items() if v is not None}}
    result = _save(ck, "basin", f"basin_step{ck.step}_{split}", settings, result)
    if as_json:
        return print_json(result)
    out.print(f"step {result['step']} ({split}, {result['examples']} examples x {result['outputs']} outputs): "
              f"rank(G) = {result['rank_G']} of {result['n_params']} parameters; behavior manifold dimension "
              f"{result['behavior_manifold_dim']}", highlight=False)
    if "rank_H" in result:
        out.print(f"MSE: rank(H) = {result['rank_H']} (loss {result['loss']:.3g}; equal to rank(G) at a global "
                  f"minimum)", highlight=False)
    for layer, shared in result["shared_activation_patterns"].items():
        out.print(f"layer {layer}: {shared} of {result['examples']} inputs share their activation pattern",
                  highlight=False)
    out.print(f"saved: {result['file']}", highlight=False)


@app.command()
def trajectory(run_ref: RunArg, store: StoreOpt = Path("runs"), as_json: JsonFlag = False):
    """Geometry of a run's stored trajectory: principal directions, cosines, weight norms."""
    from losslab.analysis.trajectory import trajectory_geometry  # startup
    from losslab.train.checkpoints import trajectory as stored  # startup

    ck, _ = _checkpoint(store, run_ref)
    steps, states = stored(ck.run)
    geometry = trajectory_geometry(states)
    result = {"run_id": ck.run.path.name, "steps": steps, **geometry.to_dict(),
              "slingshots": ck.run.summary().get("slingshots")}
    del result["projected"]
    figure = geometry.plot(steps=steps, title=f"{ck.run.path.name}: trajectory")
    result = _save(ck, "trajectory", "trajectory", {"steps": steps}, result, {"figure": (figure, ".png")})
    if as_json:
        return print_json(result)
    out.print(f"{len(result['steps'])} checkpoints; variance in the first principal directions: "
              + ", ".join(f"{v:.1%}" for v in result["explained_variance"])
              + f" (first two: {result['explained_by_two']:.1%})", highlight=False)
    out.print(f"cos(theta_last, theta_0) = {result['cos_theta0'][-1]:.4f}; slingshots: {result['slingshots']}",
              highlight=False)
    out.print(f"saved: {result['file']}\nfigure: {result['figure']}", highlight=False)


@app.command()
def signature(
    run_ref: RunArg,
    metric: Annotated[str, typer.Option(help="train_loss (every recorded step), train_acc, val_loss, val_acc "
                                             "or a probe such as grad_norm.")] = "train_loss",
    steps: Annotated[int, number("The window: the first this many steps.", 8, 10**6, kind=int)] = 400,
    trend: Annotated[str, typer.Option(help="Trend removed first: exponential, linear or none.")] = "exponential",
    store: StoreOpt = Path("runs"),
    as_json: JsonFlag = False,
):
    """The spectral signature of a run's early metric: energy and Hjorth activity, mobility, complexity."""
    from losslab.analysis.signature import TRENDS, run_signature  # startup
    from losslab.store import RunStore  # startup

    if trend not in TRENDS:
        raise LossLabError(f"--trend must be one of {', '.join(TRENDS)}, got {trend!r}")
    run_folder = RunStore(store).find(run_ref)
    try:
        result = {"run_id": run_folder.path.name, **run_signature(run_folder.metric_rows(), metric, steps, trend)}
    except ValueError as e:
        raise LossLabError(f"run {run_folder.path.name}: {e}") from None
    if as_json:
        return print_json(result)
    out.print(f"{result['run_id']}: {metric} over the first {steps} steps ({result['points']} points, "
              f"{trend} trend removed)", highlight=False)
    for key in ("energy", "activity", "mobility", "complexity"):
        out.print(f"  {key:<11}{result[key]:.6g}", highlight=False)


@app.command()
def connect(
    run_a: Annotated[str, typer.Argument(metavar="RUN_A", help="The run at t = 0 (its data and loss are used).")],
    run_b: Annotated[str, typer.Argument(metavar="RUN_B", help="The run at t = 1 (same architecture).")],
    curve: Annotated[str, typer.Option(help="bezier or polychain.")] = "bezier",
    bends: Annotated[int, number("Free control points of the curve.", 1, 20, kind=int)] = 1,
    steps: Annotated[int, number("Adam steps training the curve.", 1, 10**6, kind=int)] = 500,
    lr: Annotated[float, number("Adam's learning rate for the curve.", 0, 10, above=True)] = 1e-2,
    align: Annotated[bool, typer.Option(help="Also the straight line to B with its hidden units permuted "
                                             "onto A's (weight matching; MLPs).")] = False,
    store: StoreOpt = Path("runs"),
    as_json: JsonFlag = False,
):
    """Mode connectivity: a trained low-loss curve between two runs' last checkpoints, against the line."""
    from losslab.analysis.connect import CURVES  # startup
    from losslab.analysis.connect import connect as join  # startup

    if curve not in CURVES:
        raise LossLabError(f"--curve must be one of {', '.join(CURVES)}, got {curve!r}")
    (a, train), (b, _) = _checkpoint(store, run_a), _checkpoint(store, run_b)
    if a.cfg.model != b.cfg.model:
        raise LossLabError(f"runs {a.run.path.name} and {b.run.path.name} have different architectures: "
                           "a curve joins two weights of one model")
    if a.cfg.task != b.cfg.task or a.cfg.task_seed != b.cfg.task_seed:
        # B would be evaluated on A's split, whose validation examples B may have trained on
        raise LossLabError(f"runs {a.run.path.name} and {b.run.path.name} were trained on different data "
                           "(task or data seed): train both with the same --set data_seed=N")
    settings = {"run_b": b.run.path.name, "step_a": a.step, "step_b": b.step, "curve": curve, "bends": bends,
                "steps": steps, "lr": lr, "align": align}
    with stages(f"{curve} curve from {a.run.path.name} to {b.run.path.name}") as stage, stage("training (steps)", steps):
        joined = join(train, a.weights(), b.weights(), curve, bends, steps, lr, align=align, val=a.objective("val"))
    result = {"run_a": a.run.path.name, "run_b": b.run.path.name, "step_a": a.step, "step_b": b.step,
              **joined.to_dict()}
    figure = joined.plot(title=f"{a.run.path.name} (t=0) to {b.run.path.name} (t=1)")
    result = _save(a, "connect", f"connect_{b.run.path.name}_{curve}{bends}", settings, result,
                   {"figure": (figure, ".png")})
    if as_json:
        return print_json(result)
    for name, p in result["paths"].items():
        out.print(f"{name:14s} barrier {p['barrier']:.4g}   max train loss {p['max_train_loss']:.4g}   "
                  f"min val acc {min(p['val_acc']):.3f}", highlight=False)
    out.print(f"saved: {result['file']}\nfigure: {result['figure']}", highlight=False)


@app.command("double-descent")
def double_descent(
    run_ref: Annotated[Optional[str], typer.Option("--run", metavar="RUN",
                                                   help="Epoch-wise: this run's validation loss.")] = None,
    model: Annotated[Optional[str], typer.Option(help="Model-wise: 'features' (random-features least squares) "
                                                      "or 'mlp' (MLPs of growing width on digits) [default: "
                                                      "features].")] = None,
    n_train: Annotated[Optional[int], number("Model-wise: training samples n (mlp: at most 1,500 of digits' "
                                             "1,797) [default 100].", 2, 2000, kind=int)] = None,
    noise: Annotated[Optional[float], number("features: std of the label noise [default 0.5].", 0, 100)] = None,
    label_noise: Annotated[Optional[float], number("mlp: fraction of the training labels flipped, below 0.9 "
                                                   "[default 0.2].", 0, 0.9)] = None,
    steps: Annotated[Optional[int], number("mlp: full-batch Adam steps per width [default 2000].", 1, 10**6,
                                           kind=int)] = None,
    seeds: Annotated[Optional[int], number("Model-wise: draws averaged (default 10 features, 5 mlp).", 1, 1000,
                                           kind=int)] = None,
    store: StoreOpt = Path("runs"),
    as_json: JsonFlag = False,
):
    """Double descent: model-wise (test risk against random features or MLP width) or, with --run,
    epoch-wise (a run's validation loss descending, rising, descending again)."""
    from losslab.analysis import double_descent as dd  # startup
    from losslab.analysis import figures  # startup
    from losslab.core.files import save_figure  # startup
    from losslab.store import RunStore  # startup
    from losslab.store.studies import save_study  # startup

    model_wise = {"--model": model, "--n-train": n_train, "--noise": noise, "--label-noise": label_noise,
                  "--steps": steps, "--seeds": seeds}
    if run_ref is not None and any(v is not None for v in model_wise.values()):
        given = ", ".join(flag for flag, v in model_wise.items() if v is not None)
        raise LossLabError(f"{given}: settings of the model-wise curve, not of --run (the epoch-wise one)")
    model, n_train = model or "features", n_train or 100
    if run_ref is not None:
        run_folder = RunStore(store).find(run_ref)
        run_folder.check_writable()
        series = sorted((s, v) for s, split, n, v in run_folder.metric_rows() if (split, n) == ("val", "loss"))
        steps_seen, values = zip(*series) if series else ((), ())
        found = dd.epochwise(steps_seen, values)
        result = {"run_id": run_folder.path.name, "epochwise": found, "events": run_folder.summary()["events"],
                  "figure": str(save_figure(figures.epochwise_figure(steps_seen, values, found, run_folder.path.name),
                                            run_folder.figure_path("double_descent.png")))}
    else:
        if model not in ("features", "mlp"):
            raise LossLabError(f"--model must be 'features' or 'mlp', not {model!r}")
        foreign = {"features": [("--label-noise", label_noise), ("--steps", steps)], "mlp": [("--noise", noise)]}
        for flag, value in foreign[model]:
            if value is not None:
                raise LossLabError(f"{flag} is not a setting of --model {model}")
        if label_noise == 0.9:
            raise LossLabError("--label-noise must be below 0.9: the fraction of labels flipped")
        if model == "mlp" and n_train > 1500:
            raise LossLabError(f"--n-train {n_train}: digits has 1,797 images, and at least 297 stay for the test")
        seeds = seeds if seeds is not None else 10 if model == "features" else 5
        if model == "features":
            settings = {"model": model, "n_train": n_train, "noise": 0.5 if noise is None else noise, "seeds": seeds}
            result = dd.random_features_risk(n_train=n_train, noise=settings["noise"], seeds=seeds)
            name, draw = "double_descent", figures.double_descent_figure
        else:
            settings = {"model": model, "n_train": n_train, "label_noise": 0.2 if label_noise is None else label_noise,
                        "steps": 2000 if steps is None else steps, "seeds": seeds}
            with stages(f"double descent, {seeds} seeds a width") as stage, stage("widths trained", len(dd.WIDTHS)):
                result = dd.mlp_width_risk(n_train=n_train, label_noise=settings["label_noise"], seeds=seeds,
                                           steps=settings["steps"])
            name, draw = "double_descent_mlp", figures.width_double_descent_figure
        result = save_study(store, name, settings, result, {"figure.png": draw(result)})
    if as_json:
        return print_json(result)
    if run_ref is not None:
        found = result["epochwise"]
        out.print("no second descent in the validation loss" if found is None else
                  f"validation loss: minimum at step {found['first_minimum']}, peak at {found['peak']} "
                  f"(+{found['rise']:.3g}), below the minimum again at {found['second_descent']}", highlight=False)
    else:
        sizes, risk = ((result["features"], result["test_risk"]) if model == "features" else
                       (result["widths"], result["test_loss"]))
        unit = "N = {} random features" if model == "features" else "width {}"
        what = "test risk" if model == "features" else "test cross-entropy"
        if result["peak_at"] is None:
            out.print(f"no peak: the {what} falls with the size ({risk[0]:.4g} at {unit.format(sizes[0])}, "
                      f"{risk[-1]:.4g} at {unit.format(sizes[-1])})", highlight=False)
        else:
            out.print(f"{what} peaks at {unit.format(result['peak_at'])}: {risk[sizes.index(result['peak_at'])]:.4g}, "
                      f"against {min(risk):.4g} at its best", highlight=False)
        out.print(f"interpolation threshold: {'N = n = ' if model == 'features' else 'width '}{result['threshold']}"
                  + (" (the first width fitting the noisy labels)" if model == "mlp" else ""), highlight=False)
    out.print(f"figure: {result['figure']}", highlight=False)


@app.command()
def representations(
    run_ref: RunArg,
    panels: Annotated[int, number("Checkpoints shown (log-spaced between t2 and t4).", 1, 50, kind=int)] = 6,
    examples: Annotated[int, number("Training examples embedded.", 10, 100_000, kind=int)] = 500,
    store: StoreOpt = Path("runs"),
    as_json: JsonFlag = False,
):
    """Representations over training: t-SNE of the last hidden layer, output-weight densities, norms."""
    from losslab.analysis.figures import representation_figures  # startup
    from losslab.analysis.representations import chosen_steps, parity_colors  # startup
    from losslab.analysis.representations import representations as embed  # startup
    from losslab.train.checkpoints import checkpoint_paths, load_checkpoint  # startup

    last, _ = _checkpoint(store, run_ref)
    run, events = last.run, last.run.summary().get("events", {})
    x, y = last.data("train")
    x, y = x[:examples], y[:examples]
    colors, colored_by = ((parity_colors(x, last.cfg.task.k), f"first {last.cfg.task.k} bits")
                          if last.cfg.task.name == "parity" else (y.numpy(), "label"))
    steps = list(checkpoint_paths(run))
    shown = chosen_steps(steps, events, panels)
    with stages(f"representations of {run.path.name}") as stage, stage("t-SNE panels", len(shown)):
        found = embed({s: load_checkpoint(run, s).model for s in steps}, x, shown, colors=colors)
    result = {"run_id": run.path.name, **found, "colored_by": colored_by, "colors": colors.tolist(), "events": events}
    figures = {name.removesuffix(".png"): (fig, f"_{name}") for name, fig in representation_figures(result).items()}
    result = _save(last, "representations", "representations", {"panels": panels, "examples": examples}, result,
                   figures)
    result["figures"] = [result[name] for name in figures]
    if len(shown) < panels:
        err.print(f"losslab: note: {len(shown)} panels: the run stored {len(steps)} checkpoints", highlight=False)
    if as_json:
        return print_json({**{k: v for k, v in result.items() if k not in ("panels", "colors", "output_weights")},
                           "separation": [p["separation"] for p in result["panels"]]})
    out.print(f"steps {result['steps']} ({result['layer']}'s input, colored by {result['colored_by']})",
              highlight=False)
    out.print("separation of the colors (5-NN vote in each panel): "
              + ", ".join(f"{p['separation']:.0%}" for p in result["panels"]), highlight=False)
    for f in result["figures"]:
        out.print(f"figure: {f}", highlight=False)


@app.command()
def circuit(
    run_ref: Annotated[Optional[str], typer.Argument(metavar="[RUN]",
                                                     help="A one-hidden-layer MLP run (parity).")] = None,
    n: Annotated[int, number("Without RUN: the (n, 2)-parity of the hand-built network, checked on all 2^n "
                             "inputs.", 2, 20, kind=int)] = 10,
    relative: Annotated[float, number("A unit is active above this fraction of the strongest.", 0, 1,
                                      above=True)] = 1e-2,
    store: StoreOpt = Path("runs"),
    as_json: JsonFlag = False,
):
    """Minimal circuits for sparse parity: the hand-built 2-neuron network checked on all inputs, or
    the units a trained network keeps (and its accuracy pruned to them)."""
    from losslab.analysis.circuits import check_two_neuron  # startup
    from losslab.analysis.circuits import circuit as find_circuit  # startup

    if run_ref is None:
        result = {"two_neuron": [check_two_neuron(n, bias) for bias in (True, False)]}
    else:
        ck, _ = _checkpoint(store, run_ref)
        if ck.cfg.model.name != "mlp" or ck.cfg.model.depth != 1:
            raise LossLabError(f"run {ck.run.path.name}: a circuit is read from a one-hidden-layer MLP")
        task = ck.cfg.task
        result = {"run_id": ck.run.path.name, "step": ck.step,
                  **find_circuit(ck.model, ck.loss_fn.accuracy, ck.data("val"), relative,
                                 (task.n, task.k) if task.name == "parity" else None)}
    if as_json:
        return print_json(result)
    if run_ref is None:
        for r in result["two_neuron"]:
            out.print(f"2 neurons, (n={n}, 2)-parity, output bias {'-1' if r['out_bias'] else 'none'}: accuracy "
                      f"{r['accuracy']:.0%} on all {r['inputs']} inputs, hinge loss {r['hinge_loss']:.3g}, smallest "
                      f"margin {r['min_margin']:.3g} ({r['zero_margin_inputs']} inputs at margin 0)", highlight=False)
    else:
        out.print(f"{result['active']} of {result['width']} hidden units active: {result['active_neurons']}; pruned "
                  f"to them: val accuracy {result['val_accuracy_pruned']:.1%}"
                  + (f", {result['accuracy_pruned']:.2%} on {result['checked_inputs']} "
                     f"{'(all) ' if result['exhaustive'] else 'fresh '}inputs" if "accuracy_pruned" in result else ""),
                  highlight=False)


@app.command()
def landscape(
    run_ref: RunArg,
    checkpoint: CheckpointOpt = None,
    dims: Annotated[int, number("1: a line, 2: a plane.", 1, 2, kind=int)] = 1,
    direction: Annotated[str, typer.Option(help="random, init, final, checkpoint:STEP, run:RUN[@STEP], step, "
                                                "pcaN, hessianN.")] = "random",
    direction2: Annotated[str, typer.Option(help="The second direction of a plane.")] = "random",
    span: Annotated[Optional[str], typer.Option("--range", help="START:STOP of the coefficients [-1:1; a plane "
                                                                "of two pcaN: the trajectory's span].")] = None,
    points: Annotated[int, number("Grid points per axis (0 is always added).", 2, 1001, kind=int)] = 51,
    split: SplitOpt = "train",
    seed: Annotated[int, number("Seed of the (first) random direction.", 0, MAX_SEED, kind=int)] = 0,
    seeds: Annotated[int, number("1D random lines: repeat over this many seeds.", 1, 1000, kind=int)] = 1,
    normalization: Annotated[str, typer.Option(help="Of random directions: filter, layer or none.")] = "filter",
    include_biases: Annotated[bool, typer.Option("--include-biases", help="Random directions also move 1D "
                                                                          "parameters.")] = False,
    all_checkpoints: Annotated[bool, typer.Option("--all-checkpoints", help="1D: the line at every stored "
                                                                            "checkpoint, as a heatmap.")] = False,
    chunk: Annotated[Optional[int], number("Grid points per vmapped call (default: measured best, 8; 1 for "
                                           "MLPs).", 1, 10_000, kind=int)] = None,
    store: StoreOpt = Path("runs"),
    as_json: JsonFlag = False,
):
    """Loss and accuracy along a line or over a plane through a checkpoint (Li et al. 2018)."""
    import re  # startup

    import numpy as np  # startup

    from losslab.analysis.surface import parse_range  # startup
    from losslab.train.checkpoints import check_direction  # startup
    from losslab.train.landscape import landscape as draw  # startup

    if all_checkpoints and dims != 1:
        raise LossLabError("--all-checkpoints draws a line: it needs --dims 1")
    chosen = parse_range(span) if span is not None else None
    for d in (direction, direction2):
        check_direction(d)
    ck, _ = _checkpoint(store, run_ref, checkpoint, split)
    with stages(f"landscape of {ck.run.path.name} at step {ck.step}") as stage, stage("grid points"):
        found = draw(ck, split, dims, direction, direction2, chosen, points, seed, seeds, normalization,
                     include_biases, all_checkpoints, chunk)
    settings = {"step": ck.step, "split": split, "dims": dims, "direction": direction, "direction2": direction2,
                "range": list(found.span), **({"range2": list(found.span2)} if dims == 2 else {}), "points": points,
                "seed": seed, "seeds": seeds, **found.options, "all_checkpoints": all_checkpoints}
    figures = {"figure": (found.plot(), ".png"), **({"figure_3d": (found.plot_3d(), ".html")} if dims == 2 else {})}
    slug = "_".join(re.sub(r"[^A-Za-z0-9.-]+", "-", d) for d in ([direction, direction2] if dims == 2 else [direction]))
    where = "checkpoints" if all_checkpoints else f"step{ck.step}"
    result = _save(ck, "landscape", f"landscape_{dims}d_{slug}_{where}_{split}", settings, found.to_dict(), figures)
    if as_json:
        return print_json(result)
    loss = np.asarray(result["loss"])
    out.print(f"{result['dims']}D {result['direction']} from step {result['step']} ({result['split']}): "
              f"loss {loss.min():.4g} .. {loss.max():.4g} over {loss.size} points in {result['seconds']:.1f} s",
              highlight=False)
    out.print(f"saved: {result['file']}\nfigure: {result['figure']}", highlight=False)
