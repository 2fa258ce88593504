"""The index of runs: one SQLite file in WAL mode, safe for several writing processes.

The index is a cache of the runs' own run.json files: reading it needs no write access (a
read-only store lists), and an index that cannot be read (garbage, another schema, a row that
is not JSON) never hides a run: its runs are read from their folders instead, and what could
not be read is said.
"""

import json
import random
import sqlite3
import time
from pathlib import Path

from losslab.core.files import StoreWriteError, almost_full, boundary

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    name TEXT, status TEXT, steps INTEGER, run_dir TEXT,
    created TEXT, updated TEXT,
    summary TEXT NOT NULL
)"""


class RunIndex:
    def __init__(self, root: Path):
        self.path = Path(root) / "index.sqlite"

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=60)
        # Switching a new file to WAL answers "locked" at once (no busy wait) when another
        # process is doing the same: retry for a while.
        for attempt in range(200):
            try:
                con.execute("PRAGMA journal_mode=WAL")
                con.execute(SCHEMA)
                return con
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or attempt == 199:
                    con.close()
                    raise
                time.sleep(0.05 + random.random() * 0.05)

    def upsert(self, summary: dict) -> None:
        """Insert or replace a run's row from its summary (the content of its run.json)."""
        row = {k: summary.get(k) for k in ("run_id", "name", "status", "steps", "run_dir", "created", "updated")}
        try:
            con = self._connect()
            try:
                with con:
                    con.execute(
                        "INSERT OR REPLACE INTO runs VALUES "
                        "(:run_id, :name, :status, :steps, :run_dir, :created, :updated, :summary)",
                        {**row, "summary": json.dumps(summary)})
            finally:
                con.close()
        except sqlite3.OperationalError as e:  # a full or read-only disk, as the other writes say it
            # SQLite reports a full disk as "disk I/O error" when its journal cannot grow
            full = "full" in str(e) or almost_full(self.path.parent)
            raise StoreWriteError(self.path, str(e), full) from None
        boundary("index row")

    def rows(self) -> list[tuple[str, str]]:
        """(run_id, summary JSON) of every row, oldest first, read without writing anything: a
        read-only store (where WAL's shared-memory file cannot be made) is opened immutable."""
        for mode in ("ro", "immutable=1"):
            uri = f"{self.path.resolve().as_uri()}?{'mode=ro' if mode == 'ro' else mode}"
            try:
                con = sqlite3.connect(uri, uri=True, timeout=60)
            except sqlite3.OperationalError:
                continue
            try:
                return con.execute("SELECT run_id, summary FROM runs ORDER BY created, run_id").fetchall()
            except sqlite3.OperationalError as e:
                if "unable to open" not in str(e) and "readonly" not in str(e):
                    raise
            finally:
                con.close()
        raise sqlite3.OperationalError("unable to open database file")
