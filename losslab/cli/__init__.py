"""The `losslab` command. Errors a user can cause end in one line on stderr and exit 2.

This module holds the app and what every command shares; the commands live beside it, by
theme: runs (run, resume, runs, show), analyses (of a run's checkpoints), optimizers (test
functions, the optimizer benchmark), sweeps (sweeps, search and what is read from them).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from typer.exceptions import TyperException

from losslab.errors import LossLabError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None, help="A laboratory for loss landscapes and training dynamics.")
# Off a terminal (pipes, CI logs) rich would squeeze tables into 80 columns.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
StoreOpt = Annotated[Path, typer.Option("--out", "--store", help="The run store (a folder of runs).")]
# for commands whose --out is the file they write
StoreOnlyOpt = Annotated[Path, typer.Option("--store", help="The run store (a folder of runs).")]
EXIT_INTERRUPTED = 130


def print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def fmt(value, digits=4) -> str:
    return "-" if value is None else (f"{value:.{digits}g}" if isinstance(value, float) else str(value))


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


# the commands register themselves on `app` (in this order in --help)
from losslab.cli import runs, analyses, optimizers, sweeps, reports  # noqa: E402,F401,I001
