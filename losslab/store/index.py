"""The index of runs: one SQLite file in WAL mode, safe for several writing processes."""

import json
import random
import sqlite3
import time
from pathlib import Path

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
        con = self._connect()
        try:
            with con:
                con.execute(
                    "INSERT OR REPLACE INTO runs VALUES "
                    "(:run_id, :name, :status, :steps, :run_dir, :created, :updated, :summary)",
                    {**row, "summary": json.dumps(summary)})
        finally:
            con.close()

    def summaries(self) -> list[dict]:
        """Every run's summary, oldest first."""
        if not self.path.exists():
            return []
        con = self._connect()
        try:
            return [json.loads(s) for (s,) in con.execute("SELECT summary FROM runs ORDER BY created, run_id")]
        finally:
            con.close()
