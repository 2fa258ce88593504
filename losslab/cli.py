"""The `losslab` command. Errors a user can cause end in one line on stderr and exit 2."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column, Table
from typer.exceptions import TyperException

from losslab.errors import LossLabError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None, help="A laboratory for loss landscapes and training dynamics.")
# Off a terminal (pipes, CI logs) rich would squeeze tables into 80 columns.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
StoreOpt = Annotated[Path, typer.Option("--out", help="The run store (a folder of runs).")]
EXIT_INTERRUPTED = 130


def _print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def _fmt(value, digits=4) -> str:
    return "-" if value is None else (f"{value:.{digits}g}" if isinstance(value, float) else str(value))


# ---------------------------------------------------------------- presets


@app.command()
def presets(as_json: JsonFlag = False):
    """List the built-in experiments."""
    from losslab.config import load_raw, preset_names

    rows = [{"name": n, "description": load_raw(n).get("description", "")} for n in preset_names()]
    if as_json:
        return _print_json(rows)
    table = Table("preset", "description", box=None)
    for row in rows:
        table.add_row(row["name"], row["description"])
    out.print(table)


# ---------------------------------------------------------------- run / resume


def _progress_callback(progress: Progress, task_id):
    def on_eval(step: int, m: dict, events: dict) -> None:
        progress.update(task_id, completed=step, metrics=(
            f"train {m['train_loss']:.3g} / {m['train_acc']:.1%}  val {m['val_loss']:.3g} / {m['val_acc']:.1%}"
            + "".join(f"  {k}={v}" for k, v in events.items() if v is not None)))
    return on_eval


def _train_with_progress(max_steps: int, work, as_json: bool) -> dict:
    columns = [TextColumn("step"), MofNCompleteColumn(), BarColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[metrics]}")]
    with Progress(*columns, console=err, transient=False) as progress:
        task_id = progress.add_task("train", total=max_steps, metrics="")
        summary = work(_progress_callback(progress, task_id))
    if as_json:
        _print_json(summary)
    else:
        _print_summary(summary)
    if summary["status"] == "interrupted":
        err.print(f"interrupted at step {summary['steps']}; continue with: losslab resume {summary['run_dir']}",
                  highlight=False)
        raise typer.Exit(EXIT_INTERRUPTED)
    return summary


def _print_summary(s: dict) -> None:
    table = Table(title=f"{s['run_id']}: {s['status']} ({s.get('stop_reason') or ''})", box=None, show_header=False)
    table.add_row("steps", str(s["steps"]))
    table.add_row("events", "  ".join(f"{k}={_fmt(v)}" for k, v in s["events"].items()))
    for key, value in s["final"].items():
        table.add_row(key, _fmt(value))
    table.add_row("wall time", f"{s['wall_s']:.1f} s")
    table.add_row("peak memory", f"{s['peak_rss_mb']} MB")
    table.add_row("run folder", s["run_dir"])
    for figure in s.get("figures", []):
        table.add_row("figure", figure)
    out.print(table)


@app.command()
def run(
    source: Annotated[str, typer.Argument(help="A preset name or a TOML config file.")],
    overrides: Annotated[Optional[list[str]], typer.Option("--set", help="key=value, e.g. optim.lr=3e-4")] = None,
    store: StoreOpt = Path("runs"),
    seed: Annotated[Optional[int], typer.Option(help="Override the config's seed.")] = None,
    as_json: JsonFlag = False,
):
    """Train one run and write it to the store."""
    from losslab.config import load_config
    from losslab.store import RunStore
    from losslab.train.loop import finish, prepare

    cfg = load_config(source, overrides or [], seed)
    trainer = prepare(cfg, RunStore(store))  # refusals come before the progress bar
    _train_with_progress(cfg.train.max_steps, lambda cb: finish(trainer, cb), as_json)


@app.command()
def resume(
    run_dir: Annotated[str, typer.Argument(help="The run folder (or its id in the store).")],
    store: StoreOpt = Path("runs"),
    as_json: JsonFlag = False,
):
    """Continue an interrupted or killed run from its last checkpoint."""
    from losslab.store import RunStore
    from losslab.train.loop import finish, prepare_resume

    run_folder = RunStore(store).find(run_dir)
    trainer = prepare_resume(run_folder, RunStore(run_folder.path.parent))
    _train_with_progress(trainer.cfg.train.max_steps, lambda cb: finish(trainer, cb), as_json)


# ---------------------------------------------------------------- runs / show


@app.command("runs")
def list_runs(store: StoreOpt = Path("runs"), as_json: JsonFlag = False):
    """List the runs in the store."""
    from losslab.store import RunStore

    summaries = RunStore(store).summaries()
    if as_json:
        return _print_json(summaries)
    table = Table("status", "steps", "t2", "t4", "train acc", "val acc", "wall s", box=None)
    table.columns.insert(0, Column("run", no_wrap=True))
    for s in summaries:
        final = s.get("final") or {}
        table.add_row(s["run_id"], s["status"], str(s["steps"]), _fmt(s["events"]["t2"]), _fmt(s["events"]["t4"]),
                      _fmt(final.get("train_acc")), _fmt(final.get("val_acc")), f"{s['wall_s']:.1f}")
    out.print(table if summaries else f"no runs in {store}")


@app.command()
def show(
    run_ref: Annotated[str, typer.Argument(metavar="RUN", help="A run folder or run id.")],
    store: StoreOpt = Path("runs"),
    as_json: JsonFlag = False,
):
    """Show one run: config, events, final metrics and where its files are."""
    from losslab.store import RunStore

    run_folder = RunStore(store).find(run_ref)
    summary, cfg = run_folder.summary(), run_folder.config()
    files = {"config": run_folder.config_path, "metrics": run_folder.metrics_path,
             "figures": [str(p) for p in sorted(run_folder.figure_dir.glob("*.png"))],
             "checkpoints": [str(p) for p in run_folder.checkpoints()]}
    if as_json:
        return _print_json({**summary, "config": cfg.model_dump(mode="json"), "files": files})
    _print_summary(summary)
    out.print("\n[bold]config[/bold]")
    out.print(run_folder.config_path.read_text(), highlight=False, markup=False)
    out.print(f"checkpoints: {len(files['checkpoints'])} in {run_folder.checkpoint_dir}", highlight=False)


# ---------------------------------------------------------------- analyses of checkpoints

RunArg = Annotated[str, typer.Argument(metavar="RUN", help="A run folder or run id.")]
CheckpointOpt = Annotated[Optional[int], typer.Option("--checkpoint", help="The step of a stored checkpoint "
                                                                           "(default: the last).")]
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
    k: Annotated[int, typer.Option("--k", min=1, help="How many eigenvalues.")] = 5,
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
        return _print_json(result)
    table = Table("quantity", "value", box=None)
    for key in ("step", "split", "n_params", "loss", "grad_norm", "top", "bottom", "condition_number", "rank"):
        if key in result:
            value = result[key]
            table.add_row(key, ", ".join(_fmt(v, 5) for v in value) if isinstance(value, list) else _fmt(value, 5))
    if "trace" in result:
        table.add_row("trace", f"{result['trace']['estimate']:.5g} +- {result['trace']['standard_error']:.2g}")
    table.add_row("Hessian-vector products", str(result["hessian_vector_products"]))
    table.add_row("seconds", _fmt(result["seconds"]))
    out.print(table)
    out.print(f"saved: {result['file']}" + (f"\nfigure: {result['figure']}" if "figure" in result else ""),
              highlight=False)


@app.command()
def sharpness(
    run_ref: RunArg,
    checkpoint: CheckpointOpt = None,
    rho: Annotated[float, typer.Option(help="Radius of SAM's l2 ball (> 0).")] = 0.05,
    steps: Annotated[int, typer.Option(min=1, help="Ascent steps from each start.")] = 20,
    restarts: Annotated[int, typer.Option(min=0, help="Random starts besides the gradient's.")] = 3,
    keskar_eps: Annotated[float, typer.Option(help="Keskar's box: |e_i| <= eps (|w_i| + 1), eps > 0.")] = 1e-3,
    split: SplitOpt = "train",
    store: StoreOpt = Path("runs"),
    as_json: JsonFlag = False,
):
    """Sharpness of a checkpoint: SAM's (worst loss rise in an l2 ball), Keskar's, and for Adam and
    Shampoo runs the preconditioned lambda_max(P^-1 H) with its stability threshold."""
    from losslab.analysis.reports import sharpness_report

    if not (rho > 0 and keskar_eps > 0):
        raise LossLabError(f"--rho and --keskar-eps must be > 0, got {rho:g} and {keskar_eps:g}")
    result = _analyze(store, run_ref, checkpoint, split, "sharpness",
                      lambda point: sharpness_report(point, rho, steps, restarts, keskar_eps, split))
    if as_json:
        return _print_json(result)
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
    max_examples: Annotated[Optional[int], typer.Option(min=1, help="Use the first N examples only.")] = None,
    relative_tol: Annotated[float, typer.Option(help="Singular values below this x the largest count as 0.")
                            ] = 1e-6,
    store: StoreOpt = Path("runs"),
    as_json: JsonFlag = False,
):
    """Behavioral gradients: rank of the output Jacobian, the behavior-manifold dimension, and
    how many inputs each activation layer can no longer tell apart."""
    from losslab.analysis.reports import basin_report

    result = _analyze(store, run_ref, checkpoint, split, "behavioral gradients",
                      lambda point: basin_report(point, split, max_examples, relative_tol))
    if as_json:
        return _print_json(result)
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
        return _print_json(result)
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
    steps: Annotated[int, typer.Option(help="The window: the first this many steps.")] = 400,
    trend: Annotated[str, typer.Option(help="Trend removed first: exponential, linear or none.")] = "exponential",
    store: StoreOpt = Path("runs"),
    as_json: JsonFlag = False,
):
    """The spectral signature of a run's early metric: energy and Hjorth activity, mobility, complexity."""
    from losslab.analysis.signature import TRENDS, run_signature
    from losslab.store import RunStore

    if trend not in TRENDS:
        raise LossLabError(f"--trend must be one of {', '.join(TRENDS)}, got {trend!r}")
    if steps < 8:
        raise LossLabError(f"--steps must be at least 8, got {steps}")
    run_folder = RunStore(store).find(run_ref)
    try:
        result = {"run_id": run_folder.path.name, **run_signature(run_folder.metric_rows(), metric, steps, trend)}
    except ValueError as e:
        raise LossLabError(f"run {run_folder.path.name}: {e}") from None
    if as_json:
        return _print_json(result)
    out.print(f"{result['run_id']}: {metric} over the first {steps} steps ({result['points']} points, "
              f"{trend} trend removed)", highlight=False)
    for key in ("energy", "activity", "mobility", "complexity"):
        out.print(f"  {key:<11}{result[key]:.6g}", highlight=False)


@app.command()
def connect(
    run_a: Annotated[str, typer.Argument(metavar="RUN_A", help="The run at t = 0 (its data and loss are used).")],
    run_b: Annotated[str, typer.Argument(metavar="RUN_B", help="The run at t = 1 (same architecture).")],
    curve: Annotated[str, typer.Option(help="bezier or polychain.")] = "bezier",
    bends: Annotated[int, typer.Option(help="Free control points of the curve.")] = 1,
    steps: Annotated[int, typer.Option(help="Adam steps training the curve.")] = 500,
    lr: Annotated[float, typer.Option(help="Adam's learning rate for the curve.")] = 1e-2,
    align: Annotated[bool, typer.Option(help="Also the straight line to B with its hidden units permuted "
                                             "onto A's (weight matching; MLPs).")] = False,
    store: StoreOpt = Path("runs"),
    as_json: JsonFlag = False,
):
    """Mode connectivity: a trained low-loss curve between two runs' last checkpoints, against the line."""
    from losslab.analysis.connect import connect_report
    from losslab.analysis.point import load_point
    from losslab.store import RunStore

    if not lr > 0:
        raise LossLabError(f"--lr must be > 0, got {lr}")
    a, b = (load_point(RunStore(store).find(r)) for r in (run_a, run_b))
    with err.status(f"training a {curve} curve from {a.run.path.name} to {b.run.path.name}"):
        result = connect_report(a, b, curve, bends, steps, lr, align)
    if as_json:
        return _print_json(result)
    for name, p in result["paths"].items():
        out.print(f"{name:14s} barrier {p['barrier']:.4g}   max train loss {p['max_train_loss']:.4g}   "
                  f"min val acc {min(p['val_acc']):.3f}", highlight=False)
    out.print(f"saved: {result['file']}\nfigure: {result['figure']}", highlight=False)


@app.command("double-descent")
def double_descent(
    run_ref: Annotated[Optional[str], typer.Option("--run", metavar="RUN",
                                                   help="Epoch-wise: this run's validation loss.")] = None,
    n_train: Annotated[int, typer.Option(help="Model-wise: training samples n (the threshold N = n).")] = 100,
    noise: Annotated[float, typer.Option(help="Model-wise: std of the label noise.")] = 0.5,
    seeds: Annotated[int, typer.Option(help="Model-wise: draws averaged.")] = 10,
    store: StoreOpt = Path("runs"),
    as_json: JsonFlag = False,
):
    """Double descent: model-wise (test risk against random features, min-norm least squares) or,
    with --run, epoch-wise (a run's validation loss descending, rising, descending again)."""
    import json as json_module

    from losslab.analysis.double_descent import epochwise, random_features_risk
    from losslab.analysis.figures import double_descent_figure, epochwise_figure
    from losslab.store import RunStore

    if run_ref is not None:
        run_folder = RunStore(store).find(run_ref)
        series = sorted((s, v) for s, split, n, v in run_folder.metric_rows() if (split, n) == ("val", "loss"))
        steps, values = zip(*series) if series else ((), ())
        found = epochwise(steps, values)
        result = {"run_id": run_folder.path.name, "epochwise": found, "events": run_folder.summary()["events"],
                  "figure": str(epochwise_figure(steps, values, found, run_folder.path.name,
                                                 run_folder.figure_dir / "double_descent.png"))}
    else:
        if n_train < 2 or seeds < 1 or noise < 0:
            raise LossLabError("--n-train must be at least 2, --seeds at least 1 and --noise at least 0")
        grid = sorted({max(1, round(n_train * f)) for f in (0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 1.0, 1.05, 1.1,
                                                             1.2, 1.5, 2, 3, 5, 10)})
        result = random_features_risk(grid, n_train=n_train, noise=noise, seeds=seeds)
        folder = store / "studies"
        folder.mkdir(parents=True, exist_ok=True)
        result["figure"] = str(double_descent_figure(result, folder / "double_descent.png"))
        (folder / "double_descent.json").write_text(json_module.dumps(result, indent=2))
    if as_json:
        return _print_json(result)
    if run_ref is not None:
        found = result["epochwise"]
        out.print("no second descent in the validation loss" if found is None else
                  f"validation loss: minimum at step {found['first_minimum']}, peak at {found['peak']} "
                  f"(+{found['rise']:.3g}), below the minimum again at {found['second_descent']}", highlight=False)
    else:
        out.print(f"test risk peaks at N = {result['peak_at']} random features (threshold N = n = {n_train}): "
                  f"{max(result['test_risk']):.4g}, against {min(result['test_risk']):.4g} at its best",
                  highlight=False)
    out.print(f"figure: {result['figure']}", highlight=False)


@app.command()
def representations(
    run_ref: RunArg,
    panels: Annotated[int, typer.Option(help="Checkpoints shown (log-spaced between t2 and t4).")] = 6,
    examples: Annotated[int, typer.Option(help="Training examples embedded.")] = 500,
    store: StoreOpt = Path("runs"),
    as_json: JsonFlag = False,
):
    """Representations over training: t-SNE of the last hidden layer, output-weight densities, norms."""
    from losslab.analysis.figures import representation_figures
    from losslab.analysis.point import load_point
    from losslab.analysis.reports import _save
    from losslab.analysis.representations import representation_report
    from losslab.store import RunStore

    if panels < 1 or examples < 10:
        raise LossLabError("--panels must be at least 1 and --examples at least 10")
    point = load_point(RunStore(store).find(run_ref))
    with err.status(f"t-SNE of {point.run.path.name} at up to {panels} checkpoints"):
        result = representation_report(point, panels, examples)
        result["figures"] = [str(p) for p in representation_figures(result, point.run.figure_dir)]
    result = _save(point, "representations", result)
    if as_json:
        return _print_json({k: v for k, v in result.items() if k not in ("panels", "colors", "output_weights")})
    out.print(f"steps {result['steps']} ({result['layer']}'s input, colored by {result['colored_by']})",
              highlight=False)
    for f in result["figures"]:
        out.print(f"figure: {f}", highlight=False)


@app.command()
def circuit(
    run_ref: Annotated[Optional[str], typer.Argument(metavar="[RUN]", help="A one-hidden-layer MLP run (parity).")] = None,
    n: Annotated[int, typer.Option(help="Without RUN: the (n, 2)-parity of the hand-built network (n <= 20).")] = 10,
    relative: Annotated[float, typer.Option(help="A unit is active above this fraction of the strongest.")] = 1e-2,
    store: StoreOpt = Path("runs"),
    as_json: JsonFlag = False,
):
    """Minimal circuits for sparse parity: the hand-built 2-neuron network checked on all inputs, or
    the units a trained network keeps (and its accuracy pruned to them)."""
    from losslab.analysis.circuits import check_two_neuron, circuit_report
    from losslab.analysis.point import load_point
    from losslab.store import RunStore

    if run_ref is None:
        if not 2 <= n <= 20:
            raise LossLabError(f"--n must be in 2..20 (every input is checked), got {n}")
        result = {"two_neuron": [check_two_neuron(n, bias) for bias in (True, False)]}
    else:
        try:
            result = circuit_report(load_point(RunStore(store).find(run_ref)), relative)
        except ValueError as e:
            raise LossLabError(str(e)) from None
    if as_json:
        return _print_json(result)
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
    dims: Annotated[int, typer.Option(min=1, max=2, help="1: a line, 2: a plane.")] = 1,
    direction: Annotated[str, typer.Option(help="random, init, final, checkpoint:STEP, run:RUN[@STEP], step, "
                                                "pcaN, hessianN.")] = "random",
    direction2: Annotated[str, typer.Option(help="The second direction of a plane.")] = "random",
    span: Annotated[str, typer.Option("--range", help="START:STOP of the coefficients.")] = "-1:1",
    points: Annotated[int, typer.Option(help="Grid points per axis (0 is always added).")] = 51,
    split: SplitOpt = "train",
    seed: Annotated[int, typer.Option(help="Seed of the (first) random direction.")] = 0,
    seeds: Annotated[int, typer.Option(min=1, help="1D random lines: repeat over this many seeds.")] = 1,
    normalization: Annotated[str, typer.Option(help="Of random directions: filter, layer or none.")] = "filter",
    include_biases: Annotated[bool, typer.Option("--include-biases", help="Random directions also move 1D "
                                                                          "parameters.")] = False,
    all_checkpoints: Annotated[bool, typer.Option("--all-checkpoints", help="1D: the line at every stored "
                                                                            "checkpoint, as a heatmap.")] = False,
    chunk: Annotated[Optional[int], typer.Option(min=1, help="Grid points per vmapped call (default: measured "
                                                             "best, 8; 1 for MLPs).")] = None,
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
        return _print_json(result)
    loss = np.asarray(result["loss"])
    out.print(f"{result['dims']}D {result['direction']} from step {result['step']} ({result['split']}): "
              f"loss {loss.min():.4g} .. {loss.max():.4g} over {loss.size} points in {result['seconds']:.1f} s",
              highlight=False)
    out.print(f"saved: {result['file']}\nfigure: {result['figure']}", highlight=False)


# ---------------------------------------------------------------- optimize


@app.command()
def optimize(
    function: Annotated[str, typer.Argument(help="rosenbrock, log-rosenbrock, rosenbrock-nd, rastrigin, "
                                                 "log-rastrigin, least-squares or logreg.")],
    optimizers: Annotated[str, typer.Option(help="Comma-separated; name@lr fixes the learning rate, "
                                                 "otherwise it is tuned on a grid 1e-4..1.")
                          ] = "sgd,momentum,rmsprop,rprop,adam,adamax,muon,sam",
    steps: Annotated[int, typer.Option(min=1, help="Steps of each optimizer.")] = 1000,
    dim: Annotated[Optional[int], typer.Option(min=2, help="Dimension of the n-dimensional problems.")] = None,
    tolerance: Annotated[float, typer.Option(help="'Reached' means ||x - x*|| <= this.")] = 1e-3,
    store: Annotated[Path, typer.Option("--out", help="Folder under which the results go.")] = Path("runs"),
    as_json: JsonFlag = False,
):
    """Run optimizers from the same start on a test problem; draw trajectories and distances."""
    from datetime import datetime

    from losslab.optimize.figures import write_figures
    from losslab.optimize.functions import problem as make_problem
    from losslab.optimize.run import run as run_optimizers

    try:
        prob = make_problem(function, dim)
        specs = [s.strip() for s in optimizers.split(",") if s.strip()]
        with err.status(f"{function}: {len(specs)} optimizers x {steps} steps"):
            runs = run_optimizers(prob, specs, steps)
    except ValueError as e:
        raise LossLabError(str(e)) from None
    folder = store / "optimize" / f"{function}-{datetime.now():%Y%m%d-%H%M%S}"
    figures = write_figures(prob, runs, folder)
    result = {"function": function, "dim": prob.start.numel(), "steps": steps, "tolerance": tolerance,
              "folder": str(folder), "figures": [str(f) for f in figures],
              "optimizers": [t.summary(tolerance) for t in runs]}
    (folder / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    if as_json:
        return _print_json(result)
    table = Table("optimizer", "lr", "final f - f*", "||x - x*||", f"steps to {tolerance:g}", box=None)
    for t in result["optimizers"]:
        table.add_row(t["optimizer"], _fmt(t["lr"], 3), _fmt(t["final_value"] - prob.minimum, 3),
                      "diverged" if t["diverged"] else _fmt(t["final_distance"], 3), _fmt(t["steps_to_tolerance"]))
    out.print(table)
    out.print(f"figures: {folder}", highlight=False)


# ---------------------------------------------------------------- bench-optim


@app.command("bench-optim")
def bench_optim(
    suite: Annotated[str, typer.Argument(help="quick (test problems and digits) or default (also parity "
                                              "and grokking).")] = "quick",
    optimizers: Annotated[str, typer.Option(help="Comma-separated optimizer names or aliases.")
                          ] = "sgd,momentum,adam,sam,muon,shampoo",
    trials: Annotated[int, typer.Option(min=1, help="Quasi-random hyperparameter trials per study.")] = 4,
    studies: Annotated[int, typer.Option(min=1, help="Independent studies (seeds); >1 gives confidence "
                                                     "intervals.")] = 1,
    workloads: Annotated[Optional[str], typer.Option(help="Comma-separated subset of the suite's workloads.")
                         ] = None,
    store: StoreOpt = Path("runs"),
    as_json: JsonFlag = False,
):
    """Race optimizers on a suite of workloads; score them as AlgoPerf does (performance profiles)."""
    from losslab.bench.run import jsonable, resolve, run_benchmark
    from losslab.store import RunStore

    opts = [o.strip() for o in optimizers.split(",") if o.strip()]
    chosen = [w.strip() for w in workloads.split(",")] if workloads else None
    try:
        resolve(suite, chosen, opts)
    except ValueError as e:
        raise LossLabError(str(e)) from None
    with Progress(TextColumn("{task.description}"), MofNCompleteColumn(), BarColumn(), TimeElapsedColumn(),
                  console=err) as progress:
        task_id = progress.add_task("trials", total=None)

        def on_trial(t, done, total):
            progress.update(task_id, completed=done, total=total, description=f"{t.workload} / {t.optimizer}")
        result = run_benchmark(suite, opts, trials, studies, RunStore(store), chosen, on_trial=on_trial)
    if as_json:
        return _print_json(jsonable(result))
    for clock, label in (("seconds", "training seconds"), ("grad_evals", "gradient evaluations")):
        block = result["clocks"][clock]
        table = Table("optimizer", "score", "95% interval", *result["workloads"], box=None,
                      title=f"time to target in {label} (score 1 = fastest everywhere; - = missed)")
        for opt in sorted(opts, key=block["scores"].get, reverse=True):
            interval = block["intervals"][opt] if block["intervals"] else None
            table.add_row(opt, f"{block['scores'][opt]:.3f}",
                          f"{interval[0]:.3f}..{interval[1]:.3f}" if interval else "-",
                          *(_fmt(t, 3) if t != float("inf") else "-" for t in block["times"][opt].values()))
        out.print(table)
    out.print(f"profile: {result['figure']}", highlight=False)


# ---------------------------------------------------------------- sweeps

EXECUTORS = ("local", "batched", "ray")


def _probability(value: float) -> float:
    if not 0 < value < 1:
        raise typer.BadParameter(f"must be in (0, 1), got {value}")
    return value


ThresholdOpt = Annotated[float, typer.Option(callback=_probability,
                                             help="Stop (prune) a run when its p(grok) is below this.")]


def _executor(name: str, workers: int | None, address: str | None):
    from losslab.sweep.executors import BatchedExecutor, LocalExecutor, RayExecutor

    if workers is not None and workers < 1:
        raise LossLabError(f"--workers must be at least 1, got {workers}")
    if address is not None and name != "ray":
        raise LossLabError("--address is for --executor ray")
    if name == "batched":
        return BatchedExecutor(workers or 64)
    return RayExecutor(workers, address) if name == "ray" else LocalExecutor(workers)


@app.command()
def sweep(
    file: Annotated[Path, typer.Argument(help="The sweep file (TOML): base, set, [grid], [random].")],
    executor: Annotated[str, typer.Option(help="local (a process pool on this machine), batched (runs of "
                                               "the same shapes trained together through vmap) or ray.")] = "local",
    workers: Annotated[Optional[int], typer.Option(help="Runs at once (default: one per core; batched: "
                                                        "up to 64 models in one pass).")] = None,
    address: Annotated[Optional[str], typer.Option(help="Ray: join this cluster ('auto': the running one).")] = None,
    force: Annotated[bool, typer.Option(help="Run a sweep file that changed since its first run.")] = False,
    stop_unpromising: Annotated[Optional[str], typer.Option(
        metavar="SWEEP", help="Stop at T the runs predicted not to grok by a predictor fitted on this "
                              "finished sweep's runs.")] = None,
    threshold: ThresholdOpt = 0.5,
    steps: Annotated[int, typer.Option(help="With --stop-unpromising: T, the steps seen before deciding.")] = 400,
    store: StoreOpt = Path("runs"),
    as_json: JsonFlag = False,
):
    """Run every point of a sweep (again: only those not finished) into one results table."""
    from losslab.store import RunStore
    from losslab.sweep.predict import evaluate, fit
    from losslab.sweep.run import Sweep, read_results

    if executor not in EXECUTORS:
        raise LossLabError(f"--executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    planned = Sweep(file, RunStore(store), force)  # refusals come before anything starts
    stop = policy = None
    if stop_unpromising:
        source = read_results(RunStore(store), stop_unpromising)
        policy = evaluate(RunStore(store), source, steps, threshold)  # how the policy did on its own sweep
        policy.pop("predictions")
        stop = {"predictor": fit(RunStore(store), source, steps), "threshold": threshold}
    pool = _executor(executor, workers, address)
    columns = [TextColumn("runs"), MofNCompleteColumn(), BarColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[last]}")]
    with Progress(*columns, console=err, transient=False) as progress:
        task_id = progress.add_task("sweep", total=None, last="")

        def on_result(row: dict, done: int, total: int) -> None:
            shown = ", ".join(f"{k.removeprefix('axis:')}={_fmt(v, 3)}" for k, v in row.items() if k.startswith("axis:"))
            progress.update(task_id, completed=done, total=total,
                            last=f"{shown}: {row['status']}" + (f" t4={row['t4']}" if row["t4"] is not None else ""))
        result = planned.run(pool, on_result, stop)
    if policy:
        result["policy_on_source"] = policy
    if as_json:
        return _print_json(result)
    _print_sweep(result["rows"])
    out.print(f"{result['points']} points: {result['ran']} run now, {result['skipped']} already done, "
              f"{result['failed']} failed, {result['grokked']} grokked; table: {result['table']}", highlight=False)
    if policy:
        out.print(f"stopped as unpromising at step {steps}: {result['stopped_unpromising']} runs, "
                  f"{result['steps_saved_at_most']:.0f} steps saved at most ({result['steps_run']:.0f} run). "
                  f"Cross-validated on {stop_unpromising}: {policy['compute_saved']:.0%} of its compute saved, "
                  f"{policy['grokking_runs_lost']} of {policy['grokked']} grokking runs lost", highlight=False)


def _print_sweep(rows: list[dict]) -> None:
    axes = [k for k in rows[0] if k.startswith("axis:")] if rows else []
    table = Table(*(a.removeprefix("axis:") for a in axes), "status", "t2", "t4", "val acc", "energy", box=None)
    for r in rows:
        table.add_row(*(_fmt(r[a], 3) for a in axes), r["status"] + (f" ({r['error']})" if r["error"] else ""),
                      _fmt(r["t2"]), _fmt(r["t4"]), _fmt(r["val_acc"]), _fmt(r["signature_energy"], 3))
    out.print(table)


@app.command()
def tune(
    file: Annotated[Path, typer.Argument(help="A sweep file: its axes are the search space.")],
    trials: Annotated[int, typer.Option(help="Trials to add to the study.")] = 20,
    objective: Annotated[str, typer.Option(help="t4 (minimize) or val_acc (maximize).")] = "t4",
    pruner: Annotated[str, typer.Option(help="will-not-grok (needs --predictor-from), median or none.")] = "none",
    predictor_from: Annotated[Optional[str], typer.Option(
        metavar="SWEEP", help="Fit the will-not-grok predictor on this finished sweep.")] = None,
    threshold: ThresholdOpt = 0.5,
    steps: Annotated[int, typer.Option(help="will-not-grok: T, the steps seen before deciding.")] = 400,
    storage: Annotated[Optional[str], typer.Option(help="A journal file, or an RDB URL (postgresql://...) "
                                                        "shared across machines.")] = None,
    report_every: Annotated[int, typer.Option(help="Report to the trial every this many steps.")] = 100,
    store: StoreOpt = Path("runs"),
    as_json: JsonFlag = False,
):
    """Search a sweep file's axes with Optuna's TPE, pruning runs that will not grok."""
    from losslab.store import RunStore
    from losslab.sweep.predict import fit
    from losslab.sweep.run import read_results
    from losslab.sweep.tune import tune as search

    if trials < 1 or report_every < 1:
        raise LossLabError("--trials and --report-every must be at least 1")
    predictor = (fit(RunStore(store), read_results(RunStore(store), predictor_from), steps)
                 if predictor_from else None)
    with err.status("tuning") as status:
        def on_trial(t) -> None:
            status.update(f"trial {t.number}: {t.state.name} {_fmt(t.value)}")
        result = search(file, RunStore(store), trials, objective, pruner, predictor, threshold, storage,
                        report_every, on_trial)
    if as_json:
        return _print_json(result)
    table = Table("trial", "state", objective, "p(grok)", *(k.removeprefix("axis:") for k in result["trials"][0]
                                                           if k.startswith("axis:")), box=None)
    for t in result["trials"]:
        table.add_row(str(t["number"]), t["state"], _fmt(t["value"]), _fmt(t["p_grok"], 3),
                      *(_fmt(v, 3) for k, v in t.items() if k.startswith("axis:")))
    out.print(table)
    out.print(f"best: {result['best']}; {result['pruned']} pruned, {result['failed']} failed", highlight=False)


@app.command("sweep-show")
def sweep_show(
    name: Annotated[str, typer.Argument(metavar="SWEEP", help="The sweep's name (its file's `name`).")],
    store: StoreOpt = Path("runs"),
    as_json: JsonFlag = False,
):
    """The results table of a sweep: every point's axes, status, events, final metrics, signature."""
    from losslab.store import RunStore
    from losslab.sweep.run import read_results

    rows = read_results(RunStore(store), name)
    if as_json:
        return _print_json(rows)
    _print_sweep(rows)


@app.command()
def predict(
    name: Annotated[str, typer.Argument(metavar="SWEEP", help="A finished sweep's name.")],
    steps: Annotated[int, typer.Option(help="T: the predictor sees the first T steps of each run.")] = 400,
    threshold: ThresholdOpt = 0.5,
    store: StoreOpt = Path("runs"),
    as_json: JsonFlag = False,
):
    """How well the first T steps predict grokking on a sweep (cross-validated), and the compute that
    stopping the runs predicted not to grok would have saved."""
    from losslab.store import RunStore
    from losslab.sweep.predict import evaluate
    from losslab.sweep.run import read_results

    if steps < 8:
        raise LossLabError(f"--steps must be at least 8, got {steps}")
    result = evaluate(RunStore(store), read_results(RunStore(store), name), steps, threshold)
    if as_json:
        return _print_json(result)
    out.print(f"{result['runs']} runs ({result['grokked']} grokked), first {steps} steps, "
              f"{result['folds']}-fold cross-validation:\n"
              f"  ROC AUC {result['roc_auc']:.3f} (spectral energy alone: {result['roc_auc_energy_alone']:.3f}), "
              f"accuracy {result['accuracy']:.1%}\n"
              f"  stopping at step {steps} when p(grok) < {threshold}: {result['stopped']} runs stopped, "
              f"{result['compute_saved']:.1%} of the compute saved, {result['grokking_runs_lost']} grokking runs lost",
              highlight=False)


@app.command()
def speedup(
    name: Annotated[str, typer.Argument(metavar="SWEEP", help="The sweep's name.")],
    treatment: Annotated[str, typer.Option(help="The value of --axis under test, e.g. grokfast_ema.")],
    baseline: Annotated[str, typer.Option(help="The value it is compared with, e.g. adamw.")],
    axis: Annotated[str, typer.Option(help="The axis the two differ on.")] = "optim.name",
    lr_factor: Annotated[float, typer.Option(help="Pair with the baseline at this many times the treatment's "
                                                  "learning rate (matched effective step size).")] = 1.0,
    store: StoreOpt = Path("runs"),
    as_json: JsonFlag = False,
):
    """t4 speed-up of a treatment over a baseline at matched settings, with its spread over seeds."""
    from losslab.config import parse_value
    from losslab.store import RunStore
    from losslab.sweep.compare import speedup as measure
    from losslab.sweep.run import read_results

    if not lr_factor > 0:
        raise LossLabError(f"--lr-factor must be > 0, got {lr_factor}")
    result = measure(read_results(RunStore(store), name), axis, parse_value(baseline), parse_value(treatment),
                     lr_factor)
    if as_json:
        return _print_json(result)
    matched = [k for k in result["cells"][0] if k not in ("pairs", "speedup_mean", "speedup_std", "speedup_min",
                                                          "speedup_max", "only_baseline", "only_treatment", "neither")]
    table = Table(*matched, "pairs", "speed-up", "spread (sd)", "range", "only baseline grokked",
                  "only treatment grokked", box=None, title=f"t4({baseline}) / t4({treatment})")
    for c in result["cells"]:
        table.add_row(*(_fmt(c[k], 3) for k in matched), str(c["pairs"]), _fmt(c["speedup_mean"], 3),
                      _fmt(c["speedup_std"], 2),
                      f"{c['speedup_min']:.3g}..{c['speedup_max']:.3g}" if c["pairs"] else "-",
                      str(c["only_baseline"]), str(c["only_treatment"]))
    out.print(table)
    out.print(f"geometric mean over {result['pairs']} pairs: {_fmt(result['geometric_mean'], 3)}", highlight=False)


def _numbers(text: str, kind, option: str) -> list:
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values:
        raise LossLabError(f"{option} expects comma-separated numbers, got {text!r}")
    return values


@app.command("noise-threshold")
def noise_threshold(
    n: Annotated[str, typer.Option(help="Parity sizes n, comma-separated.")] = "30,50,70",
    weight_decay: Annotated[str, typer.Option(help="Weight decays, comma-separated.")] = "0.01,0.05,0.1",
    iterations: Annotated[int, typer.Option(help="Halvings of [0, 0.5): the bracket is 0.5 / 2^iterations.")] = 5,
    workers: Annotated[int, typer.Option(help="Settings bisected at once.")] = 1,
    overrides: Annotated[Optional[list[str]], typer.Option("--set", help="key=value for every run.")] = None,
    store: StoreOpt = Path("runs"),
    as_json: JsonFlag = False,
):
    """The label-noise threshold of grokking on sparse parity for every (n, weight decay), by bisection."""
    import json as json_module

    from losslab.sweep.bisect import noise_table

    ns, decays = _numbers(n, int, "--n"), _numbers(weight_decay, float, "--weight-decay")
    if iterations < 1 or workers < 1:
        raise LossLabError("--iterations and --workers must be at least 1")
    with err.status(f"bisecting the noise threshold of {len(ns) * len(decays)} settings"):
        table = noise_table(ns, decays, str(store), iterations=iterations, workers=workers, extra=overrides or [])
    folder = store / "studies"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "noise_threshold.json").write_text(json_module.dumps(table, indent=2))
    if as_json:
        return _print_json(table)
    grid = Table("n \\ weight decay", *(_fmt(d, 3) for d in decays), box=None,
                 title="label-noise threshold of grokking (bracket low..high)")
    for size in ns:
        cells = [r for r in table if r["n"] == size]
        grid.add_row(str(size), *("no grokking even clean" if r["threshold"] is None else
                                  f"{r['low']:.3f}..{r['high']:.3f}" for r in cells))
    out.print(grid)


@app.command()
def phase(
    name: Annotated[str, typer.Argument(metavar="SWEEP", help="The sweep's name.")],
    x: Annotated[Optional[str], typer.Option(help="The axis across (default: optim.weight_decay).")] = None,
    y: Annotated[Optional[str], typer.Option(help="The axis up (default: optim.lr).")] = None,
    store: StoreOpt = Path("runs"),
    as_json: JsonFlag = False,
):
    """Phase diagrams of a sweep over two axes: validation accuracy, grokked, t4, early spectral energy."""
    import math

    from losslab.store import RunStore
    from losslab.sweep.figures import default_axes, phase_figure
    from losslab.sweep.phase import OUTCOMES, cell_means
    from losslab.sweep.run import read_results, sweep_dir

    rows = read_results(RunStore(store), name)
    if x is None or y is None:
        defaults = default_axes(rows)
        if defaults is None:
            raise LossLabError(f"sweep {name} has fewer than two axes with more than one value")
        x, y = x or defaults[0], y or defaults[1]
    cells = {o: cell_means(rows, x, y, o) for o in OUTCOMES}
    figure = phase_figure(rows, x, y, sweep_dir(RunStore(store), name) / "figures" / f"phase_{x}_{y}.png")
    if as_json:
        xs, ys, _ = cells[OUTCOMES[0]]
        return _print_json({"x": x, "y": y, "xs": xs, "ys": ys, "figure": str(figure),
                            **{o: [[None if math.isnan(v) else v for v in r] for r in m.tolist()]
                               for o, (_, _, m) in cells.items()}})
    xs, ys, grokked = cells["grokked"]
    table = Table(f"{y} \\ {x}", *(_fmt(v, 3) for v in xs), box=None, title="fraction grokked")
    for yv, line in zip(ys, grokked):
        table.add_row(_fmt(yv, 3), *(_fmt(float(v), 2) for v in line))
    out.print(table)
    out.print(f"figure: {figure}", highlight=False)


@app.command("power-law")
def power_law(
    name: Annotated[str, typer.Argument(metavar="SWEEP", help="The sweep's name.")],
    axis: Annotated[str, typer.Option(help="The train-fraction axis.")] = "task.train_fraction",
    store: StoreOpt = Path("runs"),
    as_json: JsonFlag = False,
):
    """Fit t4(r) = a r^-gamma + b to a sweep's grokked runs over the train fraction r."""
    from losslab.store import RunStore
    from losslab.sweep.figures import power_law_figure
    from losslab.sweep.phase import t4_against_fraction
    from losslab.sweep.run import read_results, sweep_dir

    law = t4_against_fraction(read_results(RunStore(store), name), axis)
    law["figure"] = str(power_law_figure(law, axis, sweep_dir(RunStore(store), name) / "figures" / "t4_power_law.png"))
    if as_json:
        return _print_json(law)
    fit = law["fit"]
    out.print(f"t4(r) = {fit['a']:.4g} r^-{fit['gamma']:.4g} + {fit['b']:.4g}   gamma +- {fit['gamma_stderr']:.2g}, "
              f"R^2 {fit['r2']:.4f}, {fit['points']} grokked runs\nfigure: {law['figure']}", highlight=False)


# ---------------------------------------------------------------- entry point


def _fail(message: str) -> None:
    sys.stderr.write(f"losslab: error: {message}\n")
    sys.exit(2)


def main() -> None:
    try:
        code = app(standalone_mode=False)  # returns the code of a typer.Exit raised by a command
    except LossLabError as e:
        _fail(str(e))
    except TyperException as e:  # usage errors: unknown option, missing argument, ...
        if type(e).__name__ == "NoArgsIsHelpError":  # bare `losslab`: the message is the help
            sys.stderr.write(e.format_message() + "\n")
            sys.exit(2)
        _fail(e.format_message())
    except typer.Abort:
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
