"""`losslab forecast`: the benchmark of grokking forecasts, built, evaluated and shown."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from losslab.cli.common import JsonFlag, StoreOpt, app, counting, name_list, number, out, print_json, stages, stoppable
from losslab.cli.sweeps import EXECUTORS, WorkersOpt, _executor, interrupted
from losslab.core.errors import LossLabError

forecast_app = typer.Typer(help="The benchmark of grokking forecasts: build it, evaluate the predictors, "
                                "write its page.", no_args_is_help=True)
app.add_typer(forecast_app, name="forecast")
SizeOpt = Annotated[str, typer.Option(help="small (312 runs, under 90 minutes on 2 cores) or full (for a GPU or "
                                           "a cluster: --executor ray).")]


@forecast_app.command()
@stoppable
def build(
    size: SizeOpt = "small",
    executor: Annotated[str, typer.Option(help="local, batched or ray (as for `losslab sweep`).")] = "local",
    workers: Annotated[Optional[int], WorkersOpt] = None,
    address: Annotated[Optional[str], typer.Option(help="Ray: join this cluster ('auto': the running one).")] = None,
    force: Annotated[bool, typer.Option(help="Build a benchmark whose design changed since its first build.")] = False,
    store: StoreOpt = Path("runs"),
    as_json: JsonFlag = False,
):
    """Train the benchmark's runs (again: only those not finished) and write its table of early
    series and outcomes."""
    from losslab.forecast.benchmark import DESIGNS, SIZES, benchmark_sweep  # startup
    from losslab.forecast.table import sweep_rows, write_table  # startup
    from losslab.store import RunStore  # startup
    from losslab.sweep.run import sweep_dir  # startup

    if size not in SIZES:
        raise LossLabError(f"--size must be one of {', '.join(SIZES)}, got {size!r}")
    if executor not in EXECUTORS:
        raise LossLabError(f"--executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    planned = benchmark_sweep(RunStore(store), DESIGNS[size], f"forecast-{size}", force)
    RunStore(store).check_writable()
    pool = _executor(executor, workers, address)
    with counting(f"forecast benchmark {size} ({executor})", "runs") as tick:
        def on_result(row: dict, done: int, total: int) -> None:
            tick(done, total, f"{row['run_id']}: {row['axis:family']} {row['status']}"
                 + (f" t4={row['t4']}" if row["t4"] is not None else ""))
        result = planned.run(pool, on_result)
    if result["interrupted"]:
        interrupted(result["interrupted"], f"what finished is kept. Continue with: losslab forecast build --size "
                                           f"{size} --out {store}")
    result.pop("rows")
    table = sweep_dir(RunStore(store), planned.name) / "table.parquet"
    result["table"] = str(write_table(sweep_rows(RunStore(store), planned.name), table))
    if as_json:
        return print_json(result)
    out.print(f"{result['points']} runs: {result['ran']} run now, {result['skipped']} already done, "
              f"{result['failed']} failed, {result['grokked']} grokked; table: {result['table']}", highlight=False)


@forecast_app.command()
def report(
    table: Annotated[Optional[Path], typer.Option(metavar="FILE.parquet", help="A benchmark's table (default: the "
                                                  "small benchmark's, shipped with losslab).")] = None,
    folder: Annotated[Path, typer.Option("--out", help="Where to write forecast.html, its figures and "
                                                       "evaluation.json.")] = Path("forecast-report"),
    recall: Annotated[float, number("The share of the training tasks' grokking runs the stopping threshold "
                                    "keeps.", 0, 1, above=True)] = 0.95,
    predictors: Annotated[Optional[str], typer.Option(metavar="NAME,...", help="These predictors only (default: "
                                                      "all: energy, hjorth, metrics, weight-norm, hyperparameters, "
                                                      "gap-slope, logistic, boosted).")] = None,
    horizons: Annotated[str, typer.Option(metavar="T,...", help="The steps seen, each evaluated.")] = "100,200,400,800",
    steps: Annotated[int, number("The claim's T (one of --horizons).", 1, 10**6, kind=int)] = 400,
    as_json: JsonFlag = False,
):
    """Evaluate the predictors on the benchmark held out by task, p and optimizer at each T, and
    write the page: the claim beside what was measured."""
    from losslab.forecast.evaluation import evaluate_benchmark  # startup
    from losslab.forecast.page import CLAIM, verdict_line, write_report  # startup
    from losslab.forecast.predictors import PREDICTORS  # startup
    from losslab.forecast.table import read_table  # startup

    if folder.exists() and not folder.is_dir():
        raise LossLabError(f"--out {folder} is a file, not a folder")
    names = name_list(predictors, "--predictors", "predictor") if predictors else list(PREDICTORS)
    if unknown := [n for n in names if n not in PREDICTORS]:
        raise LossLabError(f"--predictors: unknown {', '.join(unknown)} (known: {', '.join(PREDICTORS)})")
    try:
        ts = sorted({int(t) for t in name_list(horizons, "--horizons", "step")})
    except ValueError:
        raise LossLabError(f"--horizons takes whole numbers of steps, got {horizons!r}") from None
    if steps not in ts or ts[0] < 1:
        raise LossLabError(f"--steps {steps} must be one of --horizons ({', '.join(map(str, ts))}), all >= 1")
    rows = read_table(table)
    with stages("forecast report") as stage, stage("held-out evaluations"):
        results = evaluate_benchmark(rows, {n: PREDICTORS[n]() for n in names}, ts, recall=recall)
    if "task" not in results[steps]["held_out"]:
        raise LossLabError(f"leave-one-task-out at T = {steps}: {results[steps]['skipped']['task']}")
    written = write_report(results, rows, folder, f"table {table or 'shipped with losslab (forecast-small)'}",
                           {**CLAIM, "t": steps})
    if as_json:
        return print_json(written)
    out.print(f"{verdict_line(written['verdict'], steps)}\npage: {written['page']}", highlight=False)
