"""The run store: a root folder (default ./runs) of run folders and their SQLite index."""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from losslab.core.errors import LossLabError, NotFound
from losslab.core.files import contained
from losslab.core.names import check_name
from losslab.store.index import RunIndex
from losslab.store.records import summary_problem
from losslab.store.run_dir import RunDir

if TYPE_CHECKING:
    from losslab.config import RunConfig

DEFAULT_ROOT = Path("runs")


class RunStore:
    def __init__(self, root: Path | str = DEFAULT_ROOT):
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise LossLabError(f"the run store {self.root} is a file, not a folder")
        self.index = RunIndex(self.root)
        self.problems: list[str] = []  # what the last summaries() could not read

    def inside(self, *parts: str) -> Path:
        """The store's folder or file at `parts` (sweeps/NAME, bench/NAME), refused where a link
        planted in the store leads out of it."""
        return contained(self.root.joinpath(*parts), self.root, "store path")

    def check_writable(self) -> None:
        """Refuse, before any work, a store where no run could be written: read-only, or under a
        file (its nearest existing folder is the one that must take new folders)."""
        existing = self.root
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise LossLabError(f"the run store {self.root} cannot be made: {existing} is a file, not a folder")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise LossLabError(f"the run store {self.root} is not writable ({existing} is read-only to you)")

    def create(self, cfg: RunConfig | None, run_id: str | None = None, monitor: dict | None = None) -> RunDir:
        """A new run folder (named from the config's name, or the monitor's, and the time, unless
        `run_id` is given)."""
        name = cfg.name if cfg is not None else monitor["name"]
        run_id = check_name(run_id or f"{name}-{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}", "run id")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise LossLabError(f"cannot make the run store {self.root}: {e.strerror or e}") from None
        return RunDir.create(self.root / run_id, cfg, monitor)

    def find(self, run: str | Path) -> RunDir:
        """A run by its folder path, by its id in this store, or by its name (the newest run of that
        name: `losslab run grokking` then `losslab hessian grokking`)."""
        if "\0" in str(run):
            raise NotFound(f"no run {str(run)!r} (a name holds no NUL)")
        path = Path(run)
        if not path.exists():
            path = self.root / str(run)
        if not path.exists():
            named = [s["run_id"] for s in self.summaries() if s.get("name") == str(run)]
            if not named:
                raise NotFound(f"no run {str(run)!r} (not a folder, nor a run id or name in {self.root})")
            path = self.root / named[-1]
        return RunDir.open(path)

    def record(self, summary: dict) -> None:
        self.index.upsert(summary)

    def summaries(self) -> list[dict]:
        """Every run's summary, oldest first. Rows the index cannot give are read from the run
        folders; what neither can give is listed in `self.problems`."""
        self.problems = []
        if not self.root.is_dir():
            return []
        index = self.index.path
        try:
            if index.is_symlink() or (index.exists() and not index.is_file()):
                raise sqlite3.DatabaseError("not a regular file")
            rows = self.index.rows() if index.exists() else None
        except sqlite3.DatabaseError as e:
            self.problems.append(f"{index}: unreadable index ({e}); runs read from their folders")
            rows = None
        if rows is None:
            return self._from_folders(p.name for p in sorted(self.root.iterdir())
                                      if p.is_dir() and not p.is_symlink() and not p.name.startswith("."))
        summaries = []
        for run_id, text in rows:
            try:
                summary = json.loads(text)
            except (TypeError, ValueError):
                summary = None
            if summary_problem(summary) is None:
                summaries.append(summary)
                continue
            known = len(self.problems)
            from_folder = self._from_folders([run_id])
            if not from_folder and len(self.problems) == known:  # nothing said of it yet
                self.problems.append(f"{self.index.path}: the row of {run_id!r} is not a run's summary, and its "
                                     "folder has no readable run.json")
            summaries += from_folder
        return summaries

    def _from_folders(self, run_ids) -> list[dict]:
        found = []
        for run_id in run_ids:
            if not (self.root / run_id / "run.json").is_file():
                continue
            try:
                found.append(RunDir.open(self.root / run_id).summary())
            except LossLabError as e:
                self.problems.append(str(e))
        return sorted(found, key=lambda s: (str(s.get("created")), str(s.get("run_id"))))


__all__ = ["DEFAULT_ROOT", "RunDir", "RunStore"]
