"""Commands that show the store to people and to other tools: report, serve, export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from losslab.cli.common import JsonFlag, StoreOpt, app, err, name_list, number, out, output_file, print_json, stoppable
from losslab.core.errors import LossLabError, NotFound


@app.command()
def report(
    ref: Annotated[str, typer.Argument(metavar="RUN|SWEEP|BENCH", help="A run folder, id or name, a sweep's name, "
                                       "or a benchmark's folder name or suite (its newest).")],
    to: Annotated[Optional[Path], typer.Option("--html", metavar="FILE.html", parser=output_file(".html"),
                                               help="Where to write [report.html in its folder].")] = None,
    open_it: Annotated[bool, typer.Option("--open", help="Open the page in the default browser.")] = False,
    store: StoreOpt = Path("runs"),
    as_json: JsonFlag = False,
):
    """One self-contained HTML page (no network needed) of a run, or of a sweep or a bench-optim
    result with a page per run."""
    from losslab.bench.run import find_benchmark  # startup
    from losslab.report.pages import write_bench_report, write_run_report, write_sweep_report  # startup
    from losslab.store import RunStore  # startup

    runs = RunStore(store)
    if (runs.root / "sweeps" / ref / "results.parquet").is_file():
        kind, path = "sweep", write_sweep_report(runs, ref, to)
    else:  # a run that exists but cannot be read says what is wrong with it
        try:
            run, folder = runs.find(ref), None
        except NotFound:
            try:
                run, folder = None, find_benchmark(runs, ref)
            except NotFound:
                raise LossLabError(f"no run, sweep or benchmark {ref!r} in {runs.root}") from None
        kind, path = ("run", write_run_report(run, to)) if run else ("benchmark", write_bench_report(runs, folder, to))
    if open_it:
        import webbrowser  # startup

        webbrowser.open(path.resolve().as_uri())
    if as_json:
        return print_json({"kind": kind, "page": str(path)})
    out.print(f"page: {path}", highlight=False)


@app.command()
def serve(
    port: Annotated[int, number("The port (0: any free one).", 0, 65535, kind=int)] = 8000,
    host: Annotated[str, typer.Option(help="The address to listen on; other machines reach it only if "
                                           "this is not 127.0.0.1.")] = "127.0.0.1",
    store: StoreOpt = Path("runs"),
):
    """A read-only local web view of the store: the runs, sweeps and benchmarks, each page its report."""
    from losslab.report.serve import make_server  # startup

    if not store.is_dir():
        raise LossLabError(f"no run store at {store}")
    if not host.isascii():
        raise LossLabError(f"--host {host!r}: an address or an ASCII host name (a non-ASCII name in its punycode form)")
    try:
        server = make_server(store, host, port)
    except OSError as e:
        raise LossLabError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    if host not in ("127.0.0.1", "localhost", "::1"):
        err.print(f"losslab: warning: listening on {host}: other machines can read this store (no password, no "
                  "encryption); use --host 127.0.0.1 to keep it to this machine", highlight=False)
    out.print(f"serving {store} at http://{host}:{server.server_address[1]}/ (Ctrl-C stops)", highlight=False)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@app.command()
def export(
    run_ref: Annotated[str, typer.Argument(metavar="RUN", help="A run folder or run id.")],
    tensorboard: Annotated[Optional[Path], typer.Option(metavar="DIR", help="Write TensorBoard event files "
                                                        "into DIR/RUN_ID.")] = None,
    table: Annotated[Optional[Path], typer.Option(metavar="FILE", parser=output_file(".csv", ".parquet"),
                                                  help="Write the metrics, a row per step, to FILE.csv or "
                                                       "FILE.parquet.")] = None,
    store: StoreOpt = Path("runs"),
    as_json: JsonFlag = False,
):
    """A run's metrics for other tools: TensorBoard event files, CSV or Parquet."""
    from losslab.report.export import write_table, write_tensorboard  # startup
    from losslab.store import RunStore  # startup

    if tensorboard is None and table is None:
        raise LossLabError("say where: --tensorboard DIR and/or --table FILE.csv|FILE.parquet")
    run = RunStore(store).find(run_ref)
    written = {}
    if table is not None:  # first: a bad file name is refused before anything is written
        written["table"] = str(write_table(run, table))
    if tensorboard is not None:
        written["tensorboard"] = str(write_tensorboard(run, tensorboard))
    if as_json:
        return print_json(written)
    for kind, path in written.items():
        out.print(f"{kind}: {path}", highlight=False)
    if tensorboard is not None:
        out.print(f"view: tensorboard --logdir {tensorboard}", highlight=False)


@app.command()
@stoppable
def gallery(
    only: Annotated[Optional[str], typer.Option("--only", metavar="NAME,...",
                                                help="Only these entries (--list names them).")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="The smaller instance of each figure.")] = False,
    folder: Annotated[Path, typer.Option("--out", help="The gallery's folder: its studies and index.html.")] = Path(
        "gallery"),
    list_them: Annotated[bool, typer.Option("--list", help="The entries, their claims and estimated times.")] = False,
    image: Annotated[Optional[Path], typer.Option("--image", help="A picture for multi-point to draw in the loss "
                                                                  "surface (PNG, JPEG, ...; made small).")] = None,
    as_json: JsonFlag = False,
):
    """Figures of the course, the study and the paper made again, each beside its claim, whether it
    held and what was measured, on one self-contained page (FOLDER/index.html: every entry kept
    there with these settings). An entry already made with the same settings is read back."""
    import signal  # startup

    from losslab.cli.common import stages  # startup
    from losslab.cli.sweeps import interrupted  # startup
    from losslab.gallery import kept, read_pattern, reproduce, runs_to_train, select, settings_of, train_runs  # startup
    from losslab.gallery.page import write_page  # startup
    from losslab.train import stop  # startup

    entries = select(name_list(only, "--only", "entry") if only is not None else None)
    changes = {}
    if image is not None:
        drawing = next((e for e in entries if e.name == "multi-point"), None)
        if drawing is None:
            raise LossLabError("--image is the picture of the multi-point entry: add it to --only")
        changes["multi-point"] = {"pattern": read_pattern(image, len(settings_of(drawing, quick)["pattern"]))}
    if list_them:
        listed = [{"name": e.name, "title": e.title, "claim": e.claim, "source": e.source,
                   "seconds_quick": e.seconds[0], "seconds": e.seconds[1]} for e in entries]
        if as_json:
            return print_json(listed)
        for e in listed:
            out.print(f"{e['name']:20s} ~{e['seconds_quick']:g} s quick, ~{e['seconds']:g} s  {e['title']}\n"
                      f"{'':20s} {e['claim']}", highlight=False)
        return
    if folder.exists() and not folder.is_dir():
        raise LossLabError(f"--out {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ".writable").touch()
        (folder / ".writable").unlink()
    except OSError as e:
        raise LossLabError(f"cannot write the gallery into {folder}: {e.strerror or e}") from None
    results, trained_for = [], {}
    with stages(f"gallery{' (quick)' if quick else ''}: {len(entries)} entries") as stage:
        try:
            if todo := runs_to_train(entries, folder, quick, changes):
                work = sum(p.seconds for p in todo.values())
                with stage(f"training the entries' {len(todo)} runs (counted in seconds of work, as estimated)",
                           total=work):
                    trained_for = train_runs(folder, todo)
            for i, e in enumerate(entries):
                left = sum(max(x.seconds[0 if quick else 1] - trained_for.get(x.name, 0.0), 0.0) for x in entries[i:])
                with stage(f"{i + 1}/{len(entries)} {e.name} (about {left:.0f} s left)"):
                    results.append(reproduce(e, folder, quick, changes, trained_for.get(e.name, 0.0)))
        except stop.Stopped:  # a signal while runs trained (elsewhere it aborts at once)
            page = write_page(folder, kept(folder, quick, changes))
            interrupted(signal.Signals(stop.requested or signal.SIGINT).name,
                        f"{len(results)} of {len(entries)} entries made, on {page}; run it again: "
                        "the runs cut short resume")
    page = write_page(folder, kept(folder, quick, changes))
    if as_json:
        return print_json({"page": str(page), "held": sum(bool(r["held"]) for r in results), "entries": results})
    for r in results:
        out.print(f"{'held' if r['held'] else 'NOT REPRODUCED':15s} {r['study']:20s} {r['outcome']}"
                  + (" (made before)" if r["cached"] else ""), highlight=False)
    out.print(f"page: {page}", highlight=False)
