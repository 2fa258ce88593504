"""How the store touches the disk: durable atomic writes, text reads that refuse in one line,
and the write boundaries a fault test can stop at.

Every file is written to a temporary name, flushed to the disk (fsync), renamed into place and
its folder flushed, so after a kill or a power cut a file is either the old one or the new
one, and a file written before another is on the disk before it (the trainer relies on this:
the metric rows a checkpoint needs are durable before the checkpoint that names them).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import stat
from collections.abc import Callable
from pathlib import Path

import tomllib

from losslab.core.errors import LossLabError

# A process started with LOSSLAB_KILL_AT_WRITE=N kills itself (SIGKILL) at its N-th write
# boundary: the fault tests stop a run at every boundary with it, not at random moments.
KILL_AT_WRITE = "LOSSLAB_KILL_AT_WRITE"
# Called with a label at every write boundary; the in-process fault tests set it.
boundary_hook: Callable[[str], None] | None = None
_boundaries = 0


def boundary(label: str) -> None:
    """A point between two writes at which a kill leaves the store consistent (tested)."""
    global _boundaries
    _boundaries += 1
    if boundary_hook is not None:
        boundary_hook(label)
    if os.environ.get(KILL_AT_WRITE) == str(_boundaries):
        os.kill(os.getpid(), signal.SIGKILL)


def _fsync(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
ALMOST_FULL = 1 << 20  # bytes free below which a failed write is put down to a full disk


class StoreWriteError(LossLabError):
    """The disk refused a write (full, read-only, no permission): nothing half-written is left."""

    def __init__(self, path: Path, why: str, full: bool = False):
        self.path, self.full = Path(path), full
        self.why = "the disk is full" if full else why
        super().__init__(f"cannot write {path}: {self.why}")

    @classmethod
    def of(cls, path: Path, error: OSError) -> "StoreWriteError":
        return cls(path, error.strerror or str(error), error.errno in DISK_FULL)


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """`write(tmp)`, then `tmp` durably renamed to `path`: never a half file at `path`, and no
    temporary left behind whatever the write raised (torch.save and pyarrow report a full disk
    as a RuntimeError or an ArrowException, not an OSError)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.unlink(missing_ok=True)  # a link planted at the temporary name is not written through
        write(tmp)
        _fsync(tmp)
        boundary(f"{path.name} written")
        os.replace(tmp, path)
        _fsync(path.parent, directory=True)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise StoreWriteError.of(path, e) from None
        if isinstance(e, Exception):
            raise StoreWriteError(path, first_line(e), almost_full(path.parent)) from None
        raise
    boundary(f"{path.name} in place")


def almost_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < ALMOST_FULL
    except OSError:
        return False


def regular_file(path: Path, what: str) -> Path:
    """`path` if it is a regular file (a link to one counts); a FIFO, a device or a folder is
    refused in one line before anything opens it (opening a FIFO would wait for a writer)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        raise LossLabError(f"{what}: cannot read ({e.strerror or e})") from None
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "not a regular file"
        raise LossLabError(f"{what}: {path} is {kind}, not a file")
    return Path(path)


def contained(path: Path, folder: Path, what: str) -> Path:
    """`path` if it lies inside `folder` once every link on the way is followed: the store never
    reads or writes through a link that leads out of it."""
    if not Path(path).resolve().is_relative_to(Path(folder).resolve()):
        raise LossLabError(f"{what} {path} leads out of {folder} through a link: losslab does not follow "
                           "links out of the store")
    return Path(path)


def read_text(path: Path, what: str) -> str:
    """A text file that must be UTF-8; anything else is one line naming it."""
    try:
        return regular_file(path, what).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise LossLabError(f"{what}: not UTF-8 text (byte {e.start}: {e.object[e.start:e.start + 1]!r})") from None
    except OSError as e:
        raise LossLabError(f"{what}: cannot read ({e.strerror or e})") from None


def read_json(path: Path, what: str):
    """A JSON file; unreadable, not UTF-8 or not JSON is one line naming it."""
    try:
        return json.loads(read_text(path, what))
    except ValueError as e:
        raise LossLabError(f"{what}: not valid JSON ({e})") from None


def read_toml(text: str, origin: str) -> dict:
    """A TOML document; invalid or nested beyond Python's recursion is one line naming `origin`."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise LossLabError(f"{origin}: not valid TOML ({e})") from None
    except RecursionError:
        raise LossLabError(f"{origin}: nested too deep to be a config") from None


def save_figure(fig, path: Path, dpi: int = 120) -> Path:
    """A matplotlib Figure as PNG (or a plotly one as self-contained HTML), written atomically."""
    path = Path(path)
    if hasattr(fig, "write_html"):  # plotly: plotly.js inlined, so the page opens without a network
        atomic_write(path, lambda p: fig.write_html(p, include_plotlyjs=True, full_html=True))
        return path
    atomic_write(path, lambda p: fig.savefig(p, dpi=dpi, format=path.suffix.lstrip(".") or "png"))
    return path
