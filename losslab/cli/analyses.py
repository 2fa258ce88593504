"""Analyses of a run's stored checkpoints (and its metrics): Hessian, surfaces, sharpness, ..."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from losslab.cli import JsonFlag, StoreOpt, app, err, fmt, number, out, print_json
from losslab.errors import LossLabError
from losslab.limits import MAX_SEED

# ---------------------------------------------------------------- analyses of checkpoints

RunArg = Annotated[str, typer.Argument(metavar="RUN", help="A run folder or run id.")]
CheckpointOpt = Annotated[Optional[int], number("The step of a stored checkpoint (default: the last).", 0,
                                                 kind=int, flags=("--checkpoint",))]
SplitOpt = Annotated[str, typer.Option(help="train or val.")]


def _analyze(store: Path, run_ref: str, checkpoint: int | None, split: str, label: str, work):
    """`work(point)` on the run's checkpoint under a status line; a missing run, step or split is
    refused in one line before anything runs."""
    from losslab.analysis.point import load_point
    from losslab.store import RunStore

    point = load_point(RunStore(store).find(run_ref), checkpoint)
    point.data(split)
    with err.status(f"{label} of {point.run.path.name} at step {point.step}"):
        return work(point)


@app.command()
def hessian(
    run_ref: RunArg,
    checkpoint: CheckpointOpt = None,
    k: Annotated[int, number("How many eigenvalues.", 1, 10_000, kind=int, flags=("--k",))] = 5,
    which: Annotated[str, typer.Option(help="top, bottom or both.")] = "top",
    trace: Annotated[bool, typer.Option("--trace", help="Hutchinson's trace estimate.")] = False,
    density: Annotated[bool, typer.Option("--density", help="The spectral density (SLQ) and its figure.")] = False,
    dense: Annotated[bool, typer.Option("--dense", help="Small models: the full Hessian, all its eigenvalues "
                                                        "and its numerical rank.")] = False,
    split: SplitOpt = "train",
    store: StoreOpt = Path("runs"),
    as_json: JsonFlag = False,
):
    """Hessian of the loss at a checkpoint: extreme eigenvalues, trace, spectral density, dense form."""
    from losslab.analysis.reports import hessian_report

    if which not in ("top", "bottom", "both"):
        raise LossLabError(f"--which must be top, bottom or both, got {which!r}")
    result = _analyze(store, run_ref, checkpoint, split, "Hessian",
                      lambda point: hessian_report(point, k, which, trace, density, split, dense=dense))
    if as_json:
        return print_json(result)
    table = Table("quantity", "value", box=None)
    for key in ("step", "split", "n_params", "loss", "grad_norm", "top", "bottom", "condition_number", "rank"):
        if key in result:
            value = result[key]
            table.add_row(key, ", ".join(fmt(v, 5) for v in value) if isinstance(value, list) else fmt(value, 5))
    if "trace" in result:
        table.add_row("trace", f"{result['trace']['estimate']:.5g} +- {result['trace']['standard_error']:.2g}")
    table.add_row("Hessian-vector products", str(result["hessian_vector_products"]))
    table.add_row("seconds", fmt(result["seconds"]))
    out.print(table)
    out.print(f"saved: {result['file']}" + (f"\nfigure: {result['figure']}" if "figure" in result else ""),
              highlight=False)


@app.command()
def sharpness(
    run_ref: RunArg,
    checkpoint: CheckpointOpt = None,
    rho: Annotated[float, number("Radius of SAM's l2 ball.", 0, above=True)] = 0.05,
    steps: Annotated[int, number("Ascent steps from each start.", 1, 100_000, kind=int)] = 20,
    restarts: Annotated[int, number("Random starts besides the gradient's.", 0, 1000, kind=int)] = 3,
    keskar_eps: Annotated[float, number("Keskar's box: |e_i| <= eps (|w_i| + 1).", 0, above=True)] = 1e-3,
    split: SplitOpt = "train",
    store: StoreOpt = Path("runs"),
    as_json: JsonFlag = False,
):
    """Sharpness of a checkpoint: SAM's (worst loss rise in an l2 ball), Keskar's, and for Adam and
    Shampoo runs the preconditioned lambda_max(P^-1 H) with its stability threshold."""
    from losslab.analysis.reports import sharpness_report

    result = _analyze(store, run_ref, checkpoint, split, "sharpness",
                      lambda point: sharpness_report(point, rho, steps, restarts, keskar_eps, split))
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
    from losslab.analysis.reports import basin_report

    result = _analyze(store, run_ref, checkpoint, split, "behavioral gradients",
                      lambda point: basin_report(point, split, max_examples, relative_tol))
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
    from losslab.analysis.point import load_point
    from losslab.analysis.reports import trajectory_report
    from losslab.store import RunStore

    result = trajectory_report(load_point(RunStore(store).find(run_ref)))
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
    from losslab.analysis.signature import TRENDS, run_signature
    from losslab.store import RunStore

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
    from losslab.analysis.connect import connect_report
    from losslab.analysis.point import load_point
    from losslab.store import RunStore

    a, b = (load_point(RunStore(store).find(r)) for r in (run_a, run_b))
    with err.status(f"training a {curve} curve from {a.run.path.name} to {b.run.path.name}"):
        result = connect_report(a, b, curve, bends, steps, lr, align)
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
    model: Annotated[str, typer.Option(help="Model-wise: 'features' (random-features least squares) or "
                                            "'mlp' (MLPs of growing width on digits).")] = "features",
    n_train: Annotated[int, number("Model-wise: training samples n (mlp: at most 1,500 of digits' 1,797).", 2,
                                   2000, kind=int)] = 100,
    noise: Annotated[float, number("features: std of the label noise.", 0, 100)] = 0.5,
    label_noise: Annotated[float, number("mlp: fraction of the training labels flipped (below 0.9).", 0, 0.9)
                           ] = 0.2,
    steps: Annotated[int, number("mlp: full-batch Adam steps per width.", 1, 10**6, kind=int)] = 2000,
    seeds: Annotated[Optional[int], number("Model-wise: draws averaged (default 10 features, 5 mlp).", 1, 1000,
                                           kind=int)] = None,
    store: StoreOpt = Path("runs"),
    as_json: JsonFlag = False,
):
    """Double descent: model-wise (test risk against random features or MLP width) or, with --run,
    epoch-wise (a run's validation loss descending, rising, descending again)."""
    import json as json_module

    from losslab.analysis import double_descent as dd
    from losslab.analysis import figures
    from losslab.store import RunStore

    if run_ref is not None:
        run_folder = RunStore(store).find(run_ref)
        series = sorted((s, v) for s, split, n, v in run_folder.metric_rows() if (split, n) == ("val", "loss"))
        steps_seen, values = zip(*series) if series else ((), ())
        found = dd.epochwise(steps_seen, values)
        result = {"run_id": run_folder.path.name, "epochwise": found, "events": run_folder.summary()["events"],
                  "figure": str(figures.epochwise_figure(steps_seen, values, found, run_folder.path.name,
                                                         run_folder.figure_dir / "double_descent.png"))}
    else:
        if model not in ("features", "mlp"):
            raise LossLabError(f"--model must be 'features' or 'mlp', not {model!r}")
        seeds = seeds if seeds is not None else 10 if model == "features" else 5
        if label_noise == 0.9:
            raise LossLabError("--label-noise must be below 0.9: the fraction of labels flipped")
        if model == "mlp" and n_train > 1500:
            raise LossLabError(f"--n-train {n_train}: digits has 1,797 images, and at least 297 stay for the test")
        folder = store / "studies"
        folder.mkdir(parents=True, exist_ok=True)
        if model == "features":
            grid = sorted({max(1, round(n_train * f)) for f in (0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 1.0, 1.05,
                                                                 1.1, 1.2, 1.5, 2, 3, 5, 10)})
            result = dd.random_features_risk(grid, n_train=n_train, noise=noise, seeds=seeds)
            name, draw = "double_descent", figures.double_descent_figure
        else:
            widths = [1, 2, 3, 4, 6, 8, 10, 12, 16, 24, 32, 64, 128, 256]
            with err.status(f"training {len(widths)} widths x {seeds} seeds"):
                result = dd.mlp_width_risk(widths, n_train=n_train, label_noise=label_noise, seeds=seeds,
                                           steps=steps)
            name, draw = "double_descent_mlp", figures.width_double_descent_figure
        result["figure"] = str(draw(result, folder / f"{name}.png"))
        (folder / f"{name}.json").write_text(json_module.dumps(result, indent=2))
    if as_json:
        return print_json(result)
    if run_ref is not None:
        found = result["epochwise"]
        out.print("no second descent in the validation loss" if found is None else
                  f"validation loss: minimum at step {found['first_minimum']}, peak at {found['peak']} "
                  f"(+{found['rise']:.3g}), below the minimum again at {found['second_descent']}", highlight=False)
    elif model == "features":
        out.print(f"test risk peaks at N = {result['peak_at']} random features (threshold N = n = {n_train}): "
                  f"{max(result['test_risk']):.4g}, against {min(result['test_risk']):.4g} at its best",
                  highlight=False)
    else:
        out.print(f"test cross-entropy peaks at width {result['peak_at']} ({max(result['test_loss']):.3g}, "
                  f"{result['test_loss'][-1]:.3g} at width {result['widths'][-1]}); the interpolation threshold "
                  f"(the first width fitting the noisy labels) is {result['threshold']}", highlight=False)
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
    from losslab.analysis.figures import representation_figures
    from losslab.analysis.point import load_point
    from losslab.analysis.reports import _save
    from losslab.analysis.representations import representation_report
    from losslab.store import RunStore

    point = load_point(RunStore(store).find(run_ref))
    with err.status(f"t-SNE of {point.run.path.name} at up to {panels} checkpoints"):
        result = representation_report(point, panels, examples)
        result["figures"] = [str(p) for p in representation_figures(result, point.run.figure_dir)]
    result = _save(point, "representations", result)
    if as_json:
        return print_json({k: v for k, v in result.items() if k not in ("panels", "colors", "output_weights")})
    out.print(f"steps {result['steps']} ({result['layer']}'s input, colored by {result['colored_by']})",
              highlight=False)
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
    from losslab.analysis.circuits import check_two_neuron, circuit_report
    from losslab.analysis.point import load_point
    from losslab.store import RunStore

    if run_ref is None:
        result = {"two_neuron": [check_two_neuron(n, bias) for bias in (True, False)]}
    else:
        try:
            result = circuit_report(load_point(RunStore(store).find(run_ref)), relative)
        except ValueError as e:
            raise LossLabError(str(e)) from None
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
    span: Annotated[str, typer.Option("--range", help="START:STOP of the coefficients.")] = "-1:1",
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
    import numpy as np

    from losslab.analysis.reports import landscape_report
    from losslab.analysis.surface import axis, parse_range

    start, stop = parse_range(span)
    axis(start, stop, points)
    if all_checkpoints and dims != 1:
        raise LossLabError("--all-checkpoints draws a line: it needs --dims 1")
    result = _analyze(store, run_ref, checkpoint, split, "landscape", lambda point: landscape_report(
        point, dims, direction, direction2, (start, stop), points, split, seed, seeds, normalization, include_biases,
        all_checkpoints, chunk))
    if as_json:
        return print_json(result)
    loss = np.asarray(result["loss"])
    out.print(f"{result['dims']}D {result['direction']} from step {result['step']} ({result['split']}): "
              f"loss {loss.min():.4g} .. {loss.max():.4g} over {loss.size} points in {result['seconds']:.1f} s",
              highlight=False)
    out.print(f"saved: {result['file']}\nfigure: {result['figure']}", highlight=False)
