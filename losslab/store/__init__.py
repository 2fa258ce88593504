"""The run store: a root folder (default ./runs) of run folders and their SQLite index."""

from __future__ import annotations

import secrets
from datetime import datetime
from pathlib import Path

from losslab.config import RunConfig
from losslab.errors import LossLabError
from losslab.store.index import RunIndex
from losslab.store.run_dir import RunDir

DEFAULT_ROOT = Path("runs")


class RunStore:
    def __init__(self, root: Path | str = DEFAULT_ROOT):
        self.root = Path(root)
        self.index = RunIndex(self.root)

    def create(self, cfg: RunConfig, run_id: str | None = None) -> RunDir:
        """A new run folder (named from the config's name and the time, unless `run_id` is given)."""
        self.root.mkdir(parents=True, exist_ok=True)
        run_id = run_id or f"{cfg.name}-{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
        return RunDir.create(self.root / run_id, cfg)

    def find(self, run: str | Path) -> RunDir:
        """A run by its folder path, by its id in this store, or by its name (the newest run of that
        name: `losslab run grokking` then `losslab hessian grokking`)."""
        path = Path(run)
        if not path.exists():
            path = self.root / str(run)
        if not path.exists():
            named = [s["run_id"] for s in self.summaries() if s.get("name") == str(run)]
            if not named:
                raise LossLabError(f"no run {str(run)!r} (not a folder, nor a run id or name in {self.root})")
            path = self.root / named[-1]
        return RunDir.open(path)

    def record(self, summary: dict) -> None:
        self.index.upsert(summary)

    def summaries(self) -> list[dict]:
        return self.index.summaries()


__all__ = ["DEFAULT_ROOT", "RunDir", "RunStore"]
