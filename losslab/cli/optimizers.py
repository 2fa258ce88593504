"""Optimizers on test functions, and the AlgoPerf-style optimizer benchmark."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from losslab.cli.common import (
    JsonFlag,
    StoreOpt,
    app,
    counting,
    err,
    fmt,
    name_list,
    number,
    out,
    print_json,
    stoppable,
)
from losslab.core.errors import LossLabError

# ---------------------------------------------------------------- optimize


@app.command()
def optimize(
    function: Annotated[str, typer.Argument(help="rosenbrock, log-rosenbrock, rosenbrock-nd, rastrigin, "
                                                 "log-rastrigin, least-squares or logreg.")],
    optimizers: Annotated[str, typer.Option(help="Comma-separated; name@lr fixes the learning rate, "
                                                 "otherwise it is tuned on a grid 1e-4..1.")
                          ] = "sgd,momentum,rmsprop,rprop,adam,adamax,muon,sam",
    steps: Annotated[int, number("Steps of each optimizer.", 1, 10**6, kind=int)] = 1000,
    dim: Annotated[Optional[int], number("Dimension of the n-dimensional problems.", 2, 4096, kind=int)] = None,
    tolerance: Annotated[float, number("'Reached' means ||x - x*|| <= this.", 0, above=True)] = 1e-3,
    store: StoreOpt = Path("runs"),
    as_json: JsonFlag = False,
):
    """Run optimizers from the same start on a test problem; draw trajectories and distances."""
    from datetime import datetime  # startup

    from losslab.core.files import atomic_write  # startup
    from losslab.optimize.figures import write_figures  # startup
    from losslab.optimize.functions import problem as make_problem  # startup
    from losslab.optimize.run import run as run_optimizers  # startup

    try:
        prob = make_problem(function, dim)
        specs = name_list(optimizers, "--optimizers", "optimizer")
        with err.status(f"{function}: {len(specs)} optimizers x {steps} steps"):
            runs = run_optimizers(prob, specs, steps)
    except ValueError as e:
        raise LossLabError(str(e)) from None
    folder = store / "optimize" / f"{function}-{datetime.now():%Y%m%d-%H%M%S}"
    figures = write_figures(prob, runs, folder)
    result = {"function": function, "dim": prob.start.numel(), "steps": steps, "tolerance": tolerance,
              "folder": str(folder), "figures": [str(f) for f in figures],
              "optimizers": [t.summary(tolerance) for t in runs]}
    atomic_write(folder / "results.json", lambda p: p.write_text(json.dumps(result, indent=2) + "\n"))
    if as_json:
        return print_json(result)
    table = Table("optimizer", "lr", "final f - f*", "||x - x*||", f"steps to {tolerance:g}", box=None)
    for t in result["optimizers"]:
        table.add_row(t["optimizer"], fmt(t["lr"], 3), fmt(t["final_value"] - prob.minimum, 3),
                      "diverged" if t["diverged"] else fmt(t["final_distance"], 3), fmt(t["steps_to_tolerance"]))
    out.print(table)
    out.print(f"figures: {folder}", highlight=False)


# ---------------------------------------------------------------- bench-optim


@app.command("bench-optim")
@stoppable
def bench_optim(
    suite: Annotated[str, typer.Argument(help="quick (test problems and digits) or default (also parity "
                                              "and grokking).")] = "quick",
    optimizers: Annotated[str, typer.Option(help="Comma-separated optimizer names or aliases.")
                          ] = "sgd,momentum,adam,sam,muon,shampoo",
    trials: Annotated[int, number("Quasi-random hyperparameter trials per study.", 1, 1000, kind=int)] = 4,
    studies: Annotated[int, number("Independent studies (seeds); >1 gives confidence intervals.", 1, 100,
                                   kind=int)] = 1,
    workloads: Annotated[Optional[str], typer.Option(help="Comma-separated subset of the suite's workloads.")
                         ] = None,
    store: StoreOpt = Path("runs"),
    as_json: JsonFlag = False,
):
    """Race optimizers on a suite of workloads; score them as AlgoPerf does (performance profiles)."""
    from losslab.bench.run import jsonable, resolve, run_benchmark  # startup
    from losslab.store import RunStore  # startup

    opts = name_list(optimizers, "--optimizers", "optimizer")
    chosen = name_list(workloads, "--workloads", "workload") if workloads is not None else None
    try:
        resolve(suite, chosen, opts)
    except ValueError as e:
        raise LossLabError(str(e)) from None
    with counting(f"bench-optim {suite}", "trials") as tick:
        def on_trial(t, done, total):
            tick(done, total, f"{t.workload} / {t.optimizer}")
        result = run_benchmark(suite, opts, trials, studies, RunStore(store), chosen, on_trial=on_trial)
    if result["interrupted"]:
        from losslab.cli.sweeps import interrupted  # startup

        if as_json:
            print_json(result)
        interrupted(result["interrupted"], f"the {result['trials_done']} of {result['trials']} trials so far are in "
                                           f"{result['folder']}/trials.json; a benchmark is scored whole: run it again")
    if as_json:
        return print_json(jsonable(result))
    for clock, label in (("seconds", "training seconds"), ("grad_evals", "gradient evaluations")):
        block = result["clocks"][clock]
        table = Table("optimizer", "score", "95% interval", *result["workloads"], box=None,
                      title=f"time to target in {label} (score 1 = fastest everywhere; - = missed)")
        for opt in sorted(opts, key=block["scores"].get, reverse=True):
            interval = block["intervals"][opt] if block["intervals"] else None
            table.add_row(opt, f"{block['scores'][opt]:.3f}",
                          f"{interval[0]:.3f}..{interval[1]:.3f}" if interval else "-",
                          *(fmt(t, 3) if t != float("inf") else "-" for t in block["times"][opt].values()))
        out.print(table)
    out.print(f"profile: {result['figure']}", highlight=False)
