"""The `losslab` command. Errors a user can cause end in one line on stderr and exit 2.

The app and what every command shares are in losslab.cli.common; the commands live beside it, by
theme: runs (run, resume, runs, show), analyses (of a run's checkpoints), optimizers (test
functions, the optimizer benchmark), sweeps (sweeps, search and what is read from them), reports.
"""

from __future__ import annotations

import sys

import typer
from typer.exceptions import TyperException

# the commands register themselves on `app` (in this order in --help)
# isort: off
from losslab.cli import runs, analyses, optimizers, sweeps, forecast, reports  # noqa: F401
# isort: on
from losslab.cli.common import EXIT_INTERRUPTED, app
from losslab.core.errors import LossLabError

__all__ = ["app", "main"]


def _fail(message: str) -> None:
    """One line, whatever the message holds (a library's multi-line text folded)."""
    line = "; ".join(part.strip() for part in message.splitlines() if part.strip())
    sys.stderr.write(f"losslab: error: {line}\n")
    sys.exit(2)


def main() -> None:
    try:
        code = app(standalone_mode=False)  # returns the code of a typer.Exit raised by a command
    except LossLabError as e:
        _fail(str(e))
    except OSError as e:  # the file system refused (permissions, a full or read-only disk): not a bug
        _fail(f"{e.filename + ': ' if e.filename else ''}{e.strerror or e}")
    except TyperException as e:  # usage errors: unknown option, missing argument, ...
        if type(e).__name__ == "NoArgsIsHelpError":  # bare `losslab`: the message is the help
            sys.stderr.write(e.format_message() + "\n")
            sys.exit(2)
        _fail(e.format_message())
    except typer.Abort:
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(code if isinstance(code, int) else 0)
