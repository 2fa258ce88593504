"""Commands on runs: presets, run, resume, runs, show."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from losslab.cli.common import JsonFlag, StoreOpt, app, err, fmt, number, out, print_json, stoppable
from losslab.core.limits import MAX_SEED

# ---------------------------------------------------------------- presets


@app.command()
def presets(as_json: JsonFlag = False):
    """List the built-in experiments: run presets (losslab run NAME) and sweeps (losslab sweep NAME)."""
    from losslab.presets import load_raw, preset_names, sweep_file, sweep_names  # startup

    rows = [{"name": n, "kind": "run", "description": load_raw(n).get("description", "")} for n in preset_names()]
    rows += [{"name": n, "kind": "sweep", "description": load_raw(sweep_file(n)).get("description", "")}
             for n in sweep_names()]
    if as_json:
        return print_json(rows)
    table = Table("preset", "kind", "description", box=None)
    for row in rows:
        table.add_row(row["name"], row["kind"], row["description"])
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
        print_json(summary)
    else:
        _print_summary(summary)
    if summary["status"] == "interrupted":
        from losslab.train.stop import exit_code  # startup

        err.print(f"interrupted at step {summary['steps']}; continue with: losslab resume {summary['run_dir']}",
                  highlight=False)
        raise typer.Exit(exit_code(summary["stop_reason"]))
    return summary


def _print_summary(s: dict) -> None:
    table = Table(title=f"{s['run_id']}: {s['status']} ({s.get('stop_reason') or ''})", box=None, show_header=False)
    table.add_row("steps", str(s["steps"]))
    table.add_row("events", "  ".join(f"{k}={fmt(v)}" for k, v in s["events"].items()))
    if s.get("outcome"):
        table.add_row("outcome", s["outcome"])
    for key, value in s["final"].items():
        table.add_row(key, fmt(value))
    table.add_row("wall time", f"{s['wall_s']:.1f} s")
    if s.get("peak_rss_mb") is not None:  # a run of losslab's own trainer
        table.add_row("peak memory", f"{s['peak_rss_mb']} MB")
    table.add_row("run folder", s["run_dir"])
    for figure in s.get("figures", []):
        table.add_row("figure", figure)
    out.print(table)


@app.command()
@stoppable
def run(
    source: Annotated[str, typer.Argument(help="A preset name or a TOML config file.")],
    overrides: Annotated[Optional[list[str]], typer.Option("--set", help="key=value, e.g. optim.lr=3e-4")] = None,
    store: StoreOpt = Path("runs"),
    seed: Annotated[Optional[int], number("Override the config's seed.", 0, MAX_SEED, kind=int)] = None,
    as_json: JsonFlag = False,
):
    """Train one run and write it to the store."""
    from losslab.config import load_config  # startup
    from losslab.store import RunStore  # startup
    from losslab.train.loop import prepare, run_to_end  # startup

    cfg = load_config(source, overrides or [], seed)
    trainer = prepare(cfg, RunStore(store))  # refusals come before the progress bar
    _train_with_progress(cfg.train.max_steps, lambda cb: run_to_end(trainer, cb), as_json)


@app.command()
@stoppable
def resume(
    run_dir: Annotated[str, typer.Argument(help="The run folder (or its id in the store).")],
    store: StoreOpt = Path("runs"),
    as_json: JsonFlag = False,
):
    """Continue an interrupted or killed run from its last checkpoint."""
    from losslab.store import RunStore  # startup
    from losslab.train.loop import prepare_resume, run_to_end  # startup

    run_folder = RunStore(store).find(run_dir)
    trainer = prepare_resume(run_folder, RunStore(run_folder.path.parent))
    _train_with_progress(trainer.cfg.train.max_steps, lambda cb: run_to_end(trainer, cb), as_json)


# ---------------------------------------------------------------- runs / show


@app.command("runs")
def list_runs(store: StoreOpt = Path("runs"), as_json: JsonFlag = False):
    """List the runs in the store."""
    from losslab.store import RunStore  # startup

    runs = RunStore(store)
    summaries = runs.summaries()
    for problem in runs.problems:  # listed anyway: what could be read
        err.print(f"losslab: warning: {problem}", highlight=False)
    if as_json:
        return print_json(summaries)
    table = Table("status", "steps", "t2", "t4", "train acc", "val acc", "wall s", box=None)
    table.columns.insert(0, Column("run", no_wrap=True))
    for s in summaries:
        final, events = s.get("final") or {}, s.get("events") or {}
        table.add_row(s["run_id"], s["status"], str(s["steps"]), fmt(events.get("t2")), fmt(events.get("t4")),
                      fmt(final.get("train_acc")), fmt(final.get("val_acc")), f"{s['wall_s']:.1f}")
    out.print(table if summaries else f"no runs in {store}")


def _settings_of(path: Path):
    from losslab.core.errors import LossLabError  # startup
    from losslab.core.files import read_json  # startup

    try:
        found = read_json(path, f"analysis {path.name}")
    except LossLabError as e:
        return str(e)
    return found.get("settings", {}) if isinstance(found, dict) else "not an analysis's result"


@app.command()
def show(
    run_ref: Annotated[str, typer.Argument(metavar="RUN", help="A run folder or run id.")],
    store: StoreOpt = Path("runs"),
    as_json: JsonFlag = False,
):
    """Show one run: config, events, final metrics and where its files are."""
    from losslab.core.files import read_text  # startup
    from losslab.store import RunStore  # startup

    run_folder = RunStore(store).find(run_ref)
    summary = run_folder.summary()
    cfg = None if summary.get("monitor") else run_folder.config()
    files = {"config": run_folder.config_path if cfg else None, "metrics": run_folder.metrics_path,
             "figures": [str(p) for p in sorted(run_folder.figure_dir.glob("*.png"))],
             "checkpoints": [str(p) for p in run_folder.checkpoints()]}
    analyses = [{"file": str(p), "settings": _settings_of(p)} for p in run_folder.analyses()]
    if as_json:
        return print_json({**summary, "config": cfg.model_dump(mode="json") if cfg else None, "files": files,
                           "analyses": analyses})
    _print_summary(summary)
    if cfg is None:  # written by a Monitor in the user's own loop
        out.print("\nmonitored in your own training loop", style="bold")
        out.print(json.dumps(summary["monitor"], indent=2), highlight=False)
    else:
        out.print("\nconfig", style="bold")
        out.print(read_text(run_folder.config_path, f"run {run_folder.path.name}: config.toml"), highlight=False)
    out.print(f"checkpoints: {len(files['checkpoints'])} in {run_folder.checkpoint_dir}", highlight=False)
    if analyses:
        table = Table("analysis", "settings", box=None, title="analyses (each kept, keyed by its settings)")
        for a in analyses:
            shown = a["settings"] if isinstance(a["settings"], str) else "  ".join(
                f"{k}={v}" for k, v in a["settings"].items() if v not in (None, False))
            table.add_row(Path(a["file"]).stem, shown)
        out.print(table)
