"""`losslab forecast`: the benchmark of grokking forecasts, built, evaluated and shown."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from losslab.cli.common import JsonFlag, StoreOpt, app, counting, number, out, print_json, stages, stoppable
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
    as_json: JsonFlag = False,
):
    """Evaluate every predictor on the benchmark held out by task, p and optimizer at T = 100, 200,
    400 and 800, and write the page: the claim beside what was measured."""
    from losslab.forecast.evaluation import evaluate_benchmark  # startup
    from losslab.forecast.page import write_report  # startup
    from losslab.forecast.predictors import PREDICTORS  # startup
    from losslab.forecast.table import read_table  # startup

    if folder.exists() and not folder.is_dir():
        raise LossLabError(f"--out {folder} is a file, not a folder")
    rows = read_table(table)
    with stages("forecast report") as stage, stage("held-out evaluations"):
        results = evaluate_benchmark(rows, {n: c() for n, c in PREDICTORS.items()}, recall=recall)
    written = write_report(results, rows, folder, f"table {table or 'shipped with losslab (forecast-small)'}")
    if as_json:
        return print_json(written)
    verdict = written["verdict"]
    pooled = verdict["pooled"]
    out.print(f"{'the claim holds' if verdict['holds'] else 'the claim does not hold'}; closest: "
              f"{verdict['closest']}, held-out-task AUC {pooled['auc']:.2f} [{pooled['auc_interval'][0]:.2f}, "
              f"{pooled['auc_interval'][1]:.2f}], {pooled['recall']:.0%} of grokking runs kept, "
              f"{pooled['compute_saved']:.0%} of the compute saved at T = 400\npage: {written['page']}",
              highlight=False)
