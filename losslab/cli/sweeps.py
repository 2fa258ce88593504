"""Sweeps, Optuna search, and the studies read from their results."""

from __future__ import annotations

import math
import signal
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from losslab.cli.common import JsonFlag, StoreOpt, app, counting, err, fmt, number, out, print_json, stoppable
from losslab.core.errors import LossLabError
from losslab.core.limits import MAX_STEPS

# ---------------------------------------------------------------- sweeps

EXECUTORS = ("local", "batched", "ray")


WorkersOpt = number("Processes (default: one per core): a run each, or batched, a share of each group of "
                    "same-shaped runs.", 1, 1024, kind=int)
StepsT = number("T: the steps of each run seen before deciding.", 8, 10**6, kind=int)


def _executor(name: str, workers: int | None, address: str | None):
    from losslab.sweep.executors import BatchedExecutor, LocalExecutor, RayExecutor  # startup

    if address is not None and name != "ray":
        raise LossLabError("--address is for --executor ray")
    if name == "batched":
        return BatchedExecutor(workers)
    return RayExecutor(workers, address) if name == "ray" else LocalExecutor(workers)


RefitOpt = Annotated[Optional[str], typer.Option(metavar="SWEEP", help="Refit the forecaster on the benchmark "
                                                "and this finished sweep's runs.")]
RecallOpt = Annotated[float, number("The share of grokking runs the stopping threshold is chosen to keep (on the "
                                    "benchmark's held-out tasks).", 0, 1, above=True)]
TrustOpt = Annotated[bool, typer.Option(help="Stop runs of task families (and models) the forecaster has not seen.")]
TableOpt = Annotated[Optional[Path], typer.Option(metavar="FILE.parquet", help="A forecast benchmark's table "
                                                 "(default: the small one shipped with losslab).")]
PredictorOpt = Annotated[Optional[str], typer.Option(help="A predictor by name (losslab forecast report lists "
                                                          "them); default: the benchmark's best at T.")]


def load_forecaster(store, steps: int, recall: float, predictor: str | None, refit_on: str | None,
                    table: Path | None = None, stops: set[str] | None = None, trust_unseen: bool = False,
                    option: str = ""):
    """The forecast benchmark's best predictor at T (or the one named), refitted with a finished
    sweep's runs. `stops`: the task families (and models) of the runs it is to stop, refused (before
    anything is fitted) where it has seen none of their like, unless `trust_unseen`."""
    from losslab.forecast.forecaster import forecaster, seen_keys  # startup
    from losslab.forecast.table import read_table, sweep_rows  # startup

    benchmark = read_table(table)
    extra = sweep_rows(store, refit_on) if refit_on else []
    seen = seen_keys(benchmark + extra)
    if stops and (unseen := sorted(stops - seen)) and not trust_unseen:
        raise LossLabError(f"{option}: the forecaster has seen no runs of {', '.join(unseen)} (it has seen "
                           f"{', '.join(sorted(seen))}), so its held-out record says nothing of them: pass "
                           "--trust-unseen to stop them anyway, or --refit-on a finished sweep of them")
    return forecaster(benchmark, steps, recall, predictor, extra)


@app.command()
@stoppable
def sweep(
    file: Annotated[Path, typer.Argument(metavar="FILE|NAME", help="A sweep file (TOML: base, set, [grid], "
                                         "[random]) or a built-in sweep's name (losslab presets).")],
    executor: Annotated[str, typer.Option(help="local (a process pool on this machine), batched (runs of "
                                               "the same shapes trained together through vmap) or ray.")] = "local",
    workers: Annotated[Optional[int], WorkersOpt] = None,
    address: Annotated[Optional[str], typer.Option(help="Ray: join this cluster ('auto': the running one).")] = None,
    force: Annotated[bool, typer.Option(help="Run a sweep file that changed since its first run.")] = False,
    stop_unpromising: Annotated[bool, typer.Option(
        help="Stop at T the runs the forecaster (the forecast benchmark's best predictor) rules out.")] = False,
    refit_on: RefitOpt = None,
    recall: RecallOpt = 0.95,
    steps: Annotated[int, StepsT] = 400,
    trust_unseen: TrustOpt = False,
    predictor: PredictorOpt = None,
    table: TableOpt = None,
    store: StoreOpt = Path("runs"),
    as_json: JsonFlag = False,
):
    """Run every point of a sweep (again: only those not finished) into one results table."""
    from losslab.forecast.forecaster import config_key  # startup
    from losslab.store import RunStore  # startup
    from losslab.sweep.run import Sweep  # startup

    if executor not in EXECUTORS:
        raise LossLabError(f"--executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    planned = Sweep.from_file(file, RunStore(store), force)  # refusals come before anything starts
    RunStore(store).check_writable()
    stop = forecast = None
    if stop_unpromising:
        short = sorted({p.config.train.record_loss_steps for p in planned.points if
                        p.config.train.record_loss_steps < steps})
        if short:
            raise LossLabError(f"--stop-unpromising at T = {steps} reads every step's loss up to T: this sweep's runs "
                               f"record {short[0]} (set train.record_loss_steps={steps})")
        stops = {config_key(p.config) for p in planned.points}
        forecast = load_forecaster(RunStore(store), steps, recall, predictor, refit_on, table, stops, trust_unseen,
                                   "--stop-unpromising")
        stop = {"forecaster": forecast}
    elif refit_on or trust_unseen or predictor or table:
        raise LossLabError("--refit-on, --trust-unseen, --predictor and --table are for --stop-unpromising")
    pool = _executor(executor, workers, address)
    with counting(f"sweep {planned.name} ({executor})", "runs") as tick:
        def on_result(row: dict, done: int, total: int) -> None:
            shown = ", ".join(f"{k.removeprefix('axis:')}={fmt(v, 3)}" for k, v in row.items() if k.startswith("axis:"))
            group = f" (trained in a group of {row['trained_with']})" if row.get("trained_with") else ""
            tick(done, total, f"{row['run_id']}{group}: {shown}: {row['status']}"
                 + (f" t4={row['t4']}" if row["t4"] is not None else ""))
        result = planned.run(pool, on_result, stop)
    if forecast:
        result["forecaster"] = forecast.record()
    if as_json:
        print_json(result)
    else:
        _print_sweep(result["rows"])
        out.print(f"{result['points']} points: {result['ran']} run now, {result['skipped']} already done, "
                  f"{result['failed']} failed, {result['grokked']} grokked; table: {result['table']}",
                  highlight=False)
    if forecast and not as_json:
        out.print(f"stopped as unpromising at step {steps}: {result['stopped_unpromising']} runs, "
                  f"{result['steps_saved_at_most']:.0f} steps saved at most ({result['steps_run']:.0f} run), by the "
                  f"{forecast.describe()}", highlight=False)
    if result["interrupted"]:
        interrupted(result["interrupted"], f"what finished is kept. Continue with: losslab sweep {file} --out {store}")


def interrupted(signal_name: str, then: str) -> None:
    """Say what a command stopped by a signal kept and how to go on, and exit as the shell
    expects (130 for SIGINT, 143 for SIGTERM)."""
    from losslab.train import stop  # startup

    err.print(f"stopped by {signal_name}; {then}", highlight=False)
    raise typer.Exit(stop.exit_code(signal_name))


def _print_sweep(rows: list[dict]) -> None:
    axes = [k for k in rows[0] if k.startswith("axis:")] if rows else []
    table = Table(*(a.removeprefix("axis:") for a in axes), "status", "t2", "t4", "val acc", "energy", box=None)
    for r in rows:
        table.add_row(*(fmt(r[a], 3) for a in axes), r["status"] + (f" ({r['error']})" if r["error"] else ""),
                      fmt(r["t2"]), fmt(r["t4"]), fmt(r["val_acc"]), fmt(r["signature_energy"], 3))
    out.print(table)


@app.command()
@stoppable
def tune(
    file: Annotated[Path, typer.Argument(metavar="FILE|NAME", help="A sweep file or a built-in sweep's name: "
                                         "its axes are the search space.")],
    trials: Annotated[int, number("Trials to add to the study.", 1, 100_000, kind=int)] = 20,
    objective: Annotated[str, typer.Option(help="t4 (minimize) or val_acc (maximize).")] = "t4",
    pruner: Annotated[str, typer.Option(help="will-not-grok (the forecaster), median or none.")] = "none",
    refit_on: RefitOpt = None,
    recall: RecallOpt = 0.95,
    steps: Annotated[int, StepsT] = 400,
    trust_unseen: TrustOpt = False,
    predictor: PredictorOpt = None,
    table: TableOpt = None,
    storage: Annotated[Optional[str], typer.Option(help="A journal file, or an RDB URL (postgresql://...) "
                                                        "shared across machines.")] = None,
    report_every: Annotated[int, number("Report to the trial every this many steps.", 1, MAX_STEPS, kind=int)] = 100,
    store: StoreOpt = Path("runs"),
    as_json: JsonFlag = False,
):
    """Search a sweep file's axes with Optuna's TPE, pruning runs that will not grok."""
    from losslab.config import validate  # startup
    from losslab.forecast.forecaster import config_key  # startup
    from losslab.store import RunStore  # startup
    from losslab.sweep.spec import base_config, load_spec  # startup
    from losslab.sweep.tune import tune as search  # startup

    forecast = None
    if pruner == "will-not-grok":
        base = validate(base_config(load_spec(file)))
        forecast = load_forecaster(RunStore(store), steps, recall, predictor, refit_on, table,
                                   {config_key(base)}, trust_unseen,
                                   "--pruner will-not-grok")
    elif refit_on or trust_unseen or predictor or table:
        raise LossLabError("--refit-on, --trust-unseen, --predictor and --table are for --pruner will-not-grok")
    with counting(f"tune {file}", "trials") as tick:
        def on_trial(t) -> None:
            tick(t.number + 1, trials, f"trial {t.number}: {t.state.name} {fmt(t.value)}")
        result = search(file, RunStore(store), trials, objective, pruner, forecast, storage, report_every, on_trial)
    if result["interrupted"]:
        if as_json:
            print_json(result)
        interrupted(result["interrupted"], f"the trials so far are in the study; add more with: losslab tune {file} "
                                           f"--out {store}")
    if as_json:
        return print_json(result)
    table = Table("trial", "state", objective, "p(grok)", *(k.removeprefix("axis:") for k in result["trials"][0]
                                                           if k.startswith("axis:")), box=None)
    for t in result["trials"]:
        table.add_row(str(t["number"]), t["state"], fmt(t["value"]), fmt(t["p_grok"], 3),
                      *(fmt(v, 3) for k, v in t.items() if k.startswith("axis:")))
    out.print(table)
    out.print(f"best: {result['best']}; {result['pruned']} pruned, {result['failed']} failed", highlight=False)


@app.command("sweep-show")
def sweep_show(
    name: Annotated[str, typer.Argument(metavar="SWEEP", help="The sweep's name (its file's `name`).")],
    store: StoreOpt = Path("runs"),
    as_json: JsonFlag = False,
):
    """The results table of a sweep: every point's axes, status, events, final metrics, signature."""
    from losslab.store import RunStore  # startup
    from losslab.sweep.run import read_results  # startup

    rows = read_results(RunStore(store), name)
    if as_json:
        return print_json(rows)
    _print_sweep(rows)


@app.command()
def predict(
    name: Annotated[Optional[str], typer.Argument(metavar="[SWEEP]", help="A finished sweep: scored by the "
                                                  "forecaster (fitted on the benchmark alone), or with --run, "
                                                  "added to its fit.")] = None,
    steps: Annotated[int, StepsT] = 400,
    recall: RecallOpt = 0.95,
    predictor: PredictorOpt = None,
    runs: Annotated[Optional[list[str]], typer.Option(
        "--run", metavar="RUN", help="p(grok) of these runs (any run: a sweep's, a single one, a monitored "
                                     "loop's).")] = None,
    table: TableOpt = None,
    store: StoreOpt = Path("runs"),
    as_json: JsonFlag = False,
):
    """Forecast grokking from a run's first T steps with the forecast benchmark's best predictor: its
    record on the benchmark's held-out tasks; on a finished sweep, how it ranks the sweep's runs (a
    task it was not fitted on) and what stopping the runs it rejects would have saved and lost; with
    --run, p(grok) of those runs."""
    from losslab.core.files import save_figure  # startup
    from losslab.forecast.figures import roc_figure, trade_off_figure  # startup
    from losslab.forecast.forecaster import config_key, evaluate_on  # startup
    from losslab.forecast.table import sweep_rows  # startup
    from losslab.store import RunStore  # startup
    from losslab.sweep.run import sweep_dir  # startup

    s = RunStore(store)
    if runs:
        forecast = load_forecaster(s, steps, recall, predictor, name, table)
        found = []
        for run_id in runs:
            run = s.find(run_id)
            config = None if run.monitored is not None else run.config()  # a Monitor's run has none
            try:
                p = forecast.p_grok(run.metric_rows(), config)
            except ValueError as e:
                raise LossLabError(f"run {run.path.name} cannot be forecast: {e} (a monitored run needs validation "
                                   "data for its accuracies)") from None
            seen = config is not None and not forecast.unseen({config_key(config)})
            found.append({"run_id": run.path.name, "steps": steps, "p_grok": p, "seen": seen,
                          "stop": p < forecast.threshold})
        if as_json:
            return print_json({"forecaster": forecast.record(), "runs": found})
        out.print(forecast.describe(), highlight=False)
        for r in found:
            out.print(f"{r['run_id']}: p(grok) = {r['p_grok']:.3f} from its first {steps} steps"
                      + (" (would be stopped)" if r["stop"] else "")
                      + ("" if r["seen"] else "; of a task family or model the forecaster has not seen"),
                      highlight=False)
        return
    forecast = load_forecaster(s, steps, recall, predictor, None, table)
    result = {"forecaster": forecast.record()}
    if name:
        scored = evaluate_on(forecast, sweep_rows(s, name))
        folder = sweep_dir(s, name) / "figures"
        folder.mkdir(exist_ok=True)
        title = f"{name}, first {steps} steps"
        drawn = {forecast.name: scored}
        scored["figures"] = {"roc": str(save_figure(roc_figure(drawn, title), folder / "forecast_roc.png")),
                             "trade_off": str(save_figure(trade_off_figure(drawn, title),
                                                          folder / "forecast_trade_off.png"))}
        result["sweep"] = scored
    if as_json:
        return print_json(result)
    out.print(forecast.describe(), highlight=False)
    if name:
        p = result["sweep"]["pooled"]
        low, high = p["auc_interval"]
        apart = result["sweep"]["apart"]
        out.print(f"on {name} ({p['runs']} runs decided at step {steps}, {p['grokked']} grokked later; "
                  f"{len(apart['grokked_by_T'])} grokked by then, {len(apart['no_features'])} without whole first "
                  f"{steps} steps): ROC AUC {p['auc']:.2f} [{low:.2f}, {high:.2f}]; stopping would have stopped "
                  f"{p['stopped']} runs, {p['grokking_runs_lost']} of {p['grokking_runs']} grokking runs among them, "
                  f"and saved {p['compute_saved']:.0%} of the compute\nfigures: {result['sweep']['figures']['roc']}, "
                  f"{result['sweep']['figures']['trade_off']}", highlight=False)


@app.command()
def speedup(
    name: Annotated[str, typer.Argument(metavar="SWEEP", help="The sweep's name.")],
    treatment: Annotated[str, typer.Option(help="The value of --axis under test, e.g. grokfast_ema.")],
    baseline: Annotated[str, typer.Option(help="The value it is compared with, e.g. adamw.")],
    axis: Annotated[str, typer.Option(help="The axis the two differ on.")] = "optim.name",
    lr_factor: Annotated[float, number("Pair with the baseline at this many times the treatment's learning rate "
                                       "(matched effective step size).", 0, above=True)] = 1.0,
    store: StoreOpt = Path("runs"),
    as_json: JsonFlag = False,
):
    """t4 speed-up of a treatment over a baseline at matched settings, with its spread over seeds."""
    from losslab.config import parse_value  # startup
    from losslab.store import RunStore  # startup
    from losslab.sweep.compare import speedup as measure  # startup
    from losslab.sweep.run import read_results  # startup

    result = measure(read_results(RunStore(store), name), axis, parse_value(baseline), parse_value(treatment),
                     lr_factor)
    if as_json:
        return print_json(result)
    matched = [k for k in result["cells"][0] if k not in ("pairs", "speedup_mean", "speedup_std", "speedup_min",
                                                          "speedup_max", "only_baseline", "only_treatment", "neither")]
    table = Table(*matched, "pairs", "speed-up", "spread (sd)", "range", "only baseline grokked",
                  "only treatment grokked", box=None, title=f"t4({baseline}) / t4({treatment})")
    for c in result["cells"]:
        table.add_row(*(fmt(c[k], 3) for k in matched), str(c["pairs"]), fmt(c["speedup_mean"], 3),
                      fmt(c["speedup_std"], 2),
                      f"{c['speedup_min']:.3g}..{c['speedup_max']:.3g}" if c["pairs"] else "-",
                      str(c["only_baseline"]), str(c["only_treatment"]))
    out.print(table)
    out.print(f"geometric mean over {result['pairs']} pairs: {fmt(result['geometric_mean'], 3)}", highlight=False)


def _numbers(text: str, kind, option: str) -> list:
    """Comma-separated finite numbers, at least 0."""
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or not all(math.isfinite(v) and v >= 0 for v in values):
        raise LossLabError(f"{option} expects comma-separated finite numbers >= 0, got {text!r}")
    return values


@app.command("noise-threshold")
@stoppable
def noise_threshold(
    n: Annotated[str, typer.Option(help="Parity sizes n, comma-separated.")] = "30,50,70",
    weight_decay: Annotated[str, typer.Option(help="Weight decays, comma-separated.")] = "0.01,0.05,0.1",
    iterations: Annotated[int, number("Halvings of [0, 0.5): the bracket is 0.5 / 2^iterations.", 1, 30,
                                      kind=int)] = 5,
    workers: Annotated[int, number("Settings bisected at once.", 1, 1024, kind=int)] = 1,
    overrides: Annotated[Optional[list[str]], typer.Option("--set", help="key=value for every run.")] = None,
    store: StoreOpt = Path("runs"),
    as_json: JsonFlag = False,
):
    """The label-noise threshold of grokking on sparse parity for every (n, weight decay), by bisection."""
    from losslab.store.studies import save_study  # startup
    from losslab.sweep.bisect import noise_table  # startup
    from losslab.train import stop  # startup

    ns, decays = _numbers(n, int, "--n"), _numbers(weight_decay, float, "--weight-decay")
    with counting("noise threshold", "settings") as tick:
        table = noise_table(ns, decays, str(store), iterations=iterations, workers=workers, extra=overrides or [],
                            on_setting=lambda done, total, r: tick(done, total, f"n={r['n']}, weight decay "
                                                                              f"{r['weight_decay']:g}"))
    if stop.requested is not None:
        interrupted(signal.Signals(stop.requested).name, f"{len(table)} of {len(ns) * len(decays)} settings were "
                    "bisected (their runs are in the store); the table is written whole: run it again")
    save_study(store, "noise_threshold", {"n": ns, "weight_decay": decays, "iterations": iterations,
                                          "set": overrides or []}, {"table": table})
    if as_json:
        return print_json(table)
    grid = Table("n \\ weight decay", *(fmt(d, 3) for d in decays), box=None,
                 title="label-noise threshold of grokking (bracket low..high)")
    for size in ns:
        cells = [r for r in table if r["n"] == size]
        grid.add_row(str(size), *("no grokking even clean" if r["threshold"] is None else
                                  f"{r['low']:.3f}..{r['high']:.3f}" for r in cells))
    out.print(grid)


@app.command()
def phase(
    name: Annotated[str, typer.Argument(metavar="SWEEP", help="The sweep's name.")],
    x: Annotated[Optional[str], typer.Option(help="The axis across (default: optim.weight_decay where the sweep "
                                                  "varies it and optim.lr, else its first varied axis).")] = None,
    y: Annotated[Optional[str], typer.Option(help="The axis up (default: optim.lr with optim.weight_decay, else the "
                                                  "second varied axis).")] = None,
    store: StoreOpt = Path("runs"),
    as_json: JsonFlag = False,
):
    """Phase diagrams of a sweep over two axes: validation accuracy, grokked, t4, early spectral energy."""

    from losslab.store import RunStore  # startup
    from losslab.sweep.figures import default_axes, phase_figure, save  # startup
    from losslab.sweep.phase import OUTCOMES, cell_means  # startup
    from losslab.sweep.run import read_results, sweep_dir  # startup

    if x is not None and x == y:
        raise LossLabError(f"--x and --y are both {x}: a phase diagram needs two different axes")
    rows = read_results(RunStore(store), name)
    if x is None or y is None:
        defaults = default_axes(rows)
        if defaults is None:
            raise LossLabError(f"sweep {name} has fewer than two axes with more than one value")
        x, y = x or defaults[0], y or defaults[1]
    cells = {o: cell_means(rows, x, y, o) for o in OUTCOMES}
    figure = save(phase_figure(rows, x, y), sweep_dir(RunStore(store), name) / "figures" / f"phase_{x}_{y}.png")
    if as_json:
        xs, ys, _ = cells[OUTCOMES[0]]
        return print_json({"x": x, "y": y, "xs": xs, "ys": ys, "figure": str(figure),
                            **{o: [[None if math.isnan(v) else v for v in r] for r in m.tolist()]
                               for o, (_, _, m) in cells.items()}})
    xs, ys, grokked = cells["grokked"]
    table = Table(f"{y} \\ {x}", *(fmt(v, 3) for v in xs), box=None, title="fraction grokked")
    for yv, line in zip(ys, grokked):
        table.add_row(fmt(yv, 3), *(fmt(float(v), 2) for v in line))
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
    from losslab.store import RunStore  # startup
    from losslab.sweep.figures import power_law_figure, save  # startup
    from losslab.sweep.phase import t4_against_fraction  # startup
    from losslab.sweep.run import read_results, sweep_dir  # startup

    law = t4_against_fraction(read_results(RunStore(store), name), axis)
    law["figure"] = str(save(power_law_figure(law, axis), sweep_dir(RunStore(store), name) / "figures" / "t4_power_law.png"))
    if as_json:
        return print_json(law)
    fit = law["fit"]
    out.print(f"t4(r) = {fit['a']:.4g} r^{-fit['gamma']:.4g} + {fit['b']:.4g}   gamma +- {fit['gamma_stderr']:.2g}, "
              f"R^2 {fit['r2']:.4f}, {fit['points']} grokked runs\nfigure: {law['figure']}", highlight=False)
