"""What every command of `losslab` shares: the app, its option types, the consoles, progress on a
terminal and in a log, JSON output."""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from losslab.core.errors import LossLabError

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None, help="A laboratory for loss landscapes and training dynamics.")
# Off a terminal (pipes, CI logs) rich would squeeze tables into 80 columns. No markup: what is
# printed holds text from the store ("[/bold]" in a run's status), which must print as it is.
out = Console(width=None if sys.stdout.isatty() else 160, markup=False)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160, markup=False)

# ---------------------------------------------------------------- options: every value checked as it is parsed


def number(help: str, low: float | None = None, high: float | None = None, *, kind: type = float,
           above: bool = False, flags: tuple[str, ...] = ()):
    """An int or float option that must be finite and in [low, high] ((low, high] with `above`),
    its range stated in its help: every numeric option of the command is one of these."""
    shown = (lambda v: str(int(v))) if kind is int else (lambda v: f"{v:g}")
    bounds = f"{'(' if above else '['}{'-inf' if low is None else shown(low)}, {'inf' if high is None else shown(high)}]"

    def parse(text: str):
        try:
            value = float(text)
            if kind is int:
                if not value.is_integer():
                    raise ValueError
                value = int(value) if abs(value) < 2**53 else int(text)
        except (ValueError, OverflowError):
            raise typer.BadParameter(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if kind is float and not math.isfinite(value):
            raise typer.BadParameter(f"{text} is not finite")
        if (low is not None and (value <= low if above else value < low)) or (high is not None and value > high):
            raise typer.BadParameter(f"{text} is not in {bounds}")
        return value
    return typer.Option(*flags, parser=parse, metavar="INTEGER" if kind is int else "NUMBER",
                        help=f"{help} {bounds}")


def _store_folder(path: Path) -> Path:
    if path.exists() and not path.is_dir():
        raise typer.BadParameter(f"{path} is a file, not a folder")
    return path


def output_file(*suffixes: str):
    """A parser for a file to write: in a folder that exists, not a folder itself, with one of
    `suffixes` (if given)."""
    def parse(text: str) -> Path:
        path = Path(text)
        if suffixes and path.suffix not in suffixes:
            raise typer.BadParameter(f"{text}: the file must end in {' or '.join(suffixes)}")
        if path.is_dir():
            raise typer.BadParameter(f"{text} is a folder, not a file")
        if not path.parent.is_dir():
            raise typer.BadParameter(f"{text}: no folder {path.parent}")
        return path
    return parse


MAX_LISTED = 64  # names in one comma-separated option (optimizers, entries, workloads)


def name_list(text: str, option: str, what: str, most: int = MAX_LISTED) -> list[str]:
    """The names of a comma-separated option: at least one `what`, each once, at most `most`."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise LossLabError(f"{option} names no {what}: {text!r}")
    if len(names) > most:
        raise LossLabError(f"{option} names {len(names):,} entries; at most {most}")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise LossLabError(f"{option} names {', '.join(twice[:5])} more than once")
    return names


def stoppable(command):
    """A command that stops on SIGINT / SIGTERM through losslab.train.stop: the handlers stay for
    the whole command, and a signal that came at any moment of it exits 130 / 143, even one that
    arrived after the last piece of work had finished."""
    import functools  # startup

    @functools.wraps(command)
    def run(*args, **kwargs):
        from losslab.train import stop  # startup

        with stop.stop_on_signals():
            result = command(*args, **kwargs)
        if stop.requested is not None:
            raise typer.Exit(stop.exit_code())
        return result
    return run


JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
StoreOpt = Annotated[Path, typer.Option("--out", "--store", callback=_store_folder,
                                        help="The run store (a folder of runs).")]
EXIT_INTERRUPTED = 130


PROGRESS_LINE_S = 30  # off a terminal, a progress line this often within a stage


@contextmanager
def stages(title: str):
    """Progress of a long command, stage by stage, on stderr: `with stages(t) as stage: with
    stage("trace", total=99): ...` counts what the library reports (losslab.core.progress). On a
    terminal a bar with the count and an ETA; off one (a pipe, a log) a line as each stage ends and
    one every PROGRESS_LINE_S seconds within it."""
    from losslab.core import progress  # startup

    if err.is_terminal:
        bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       TextColumn("ETA"), TimeRemainingColumn(), console=err)

        @contextmanager
        def stage(name: str, total: int | None = None):
            task = bar.add_task(f"  {name}", total=total)
            with progress.reporting(lambda n: bar.advance(task, n), lambda n: bar.update(task, total=n)):
                yield
            bar.update(task, total=bar.tasks[task].completed)  # a stage of unknown length ends full

        err.print(title, highlight=False)
        with bar:
            yield stage
        return

    @contextmanager
    def stage(name: str, total: int | None = None):
        with _Lines(f"{title}: {name}", total) as lines, progress.reporting(lines.advance, lines.expect):
            yield
        err.print(lines.said() + ", done", highlight=False)

    yield stage


class _Lines:
    """Progress off a terminal: the count so far, with its ETA, said every PROGRESS_LINE_S seconds
    (even while nothing is counted: a long run in a pool) by a thread, and on request."""

    def __init__(self, title: str, total: int | None):
        self.title, self.total, self.count = title, total, 0
        self.started, self._ended = time.monotonic(), threading.Event()
        self._thread = threading.Thread(target=self._every_while, daemon=True)

    def advance(self, n: int) -> None:
        self.count += n

    def expect(self, total: int) -> None:
        self.total = total

    def said(self) -> str:
        elapsed = time.monotonic() - self.started
        text = f"losslab: {self.title}: {self.count:,}" + (f"/{self.total:,}" if self.total else "")
        text += f" in {elapsed:.1f} s"
        if self.total and self.count and self.count < self.total:
            text += f", ETA {elapsed / self.count * (self.total - self.count):.0f} s"
        return text

    def _every_while(self) -> None:
        while not self._ended.wait(PROGRESS_LINE_S):
            err.print(self.said(), highlight=False)

    def __enter__(self) -> "_Lines":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._ended.set()
        self._thread.join()


@contextmanager
def counting(title: str, unit: str):
    """Progress of work that ends a piece at a time (a sweep's runs, a benchmark's trials, a study's
    trials, a threshold's settings): `with counting(t, "runs") as done: done(count, total, what)`
    after each piece. On a terminal a bar with the count, the ETA and the last piece; off one (a
    pipe, a log) a line per piece, with its count, ETA and what it was, and one every
    PROGRESS_LINE_S seconds between."""
    if err.is_terminal:
        with Progress(TextColumn("{task.description}", markup=False), MofNCompleteColumn(), BarColumn(),
                      TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                      TextColumn("{task.fields[last]}", markup=False), console=err) as bar:
            task = bar.add_task(f"{title}: {unit}", total=None, last="")
            yield lambda count, total, what: bar.update(task, completed=count, total=total, last=what)
        return

    with _Lines(f"{title}: {unit}", None) as lines:
        def done(count: int, total: int | None, what: str) -> None:
            lines.count, lines.total = count, total
            err.print(f"{lines.said()}: {what}", highlight=False)
        yield done


def print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def fmt(value, digits=4) -> str:
    return "-" if value is None else (f"{value:.{digits}g}" if isinstance(value, float) else str(value))


def _version(asked: bool) -> None:
    if asked:
        from losslab import __version__  # startup

        out.print(f"losslab {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                   help="Print losslab's version and exit.")] = False):
    """A laboratory for loss landscapes and training dynamics."""
