"""One run's folder: resolved config, summary, metrics (Parquet), figures and checkpoints.

Every file is written durably and atomically (losslab.core.files); what is read back is
checked for the shape it must have, so a corrupt or foreign file is one line naming it.
Checkpoints load with weights_only=True (no code runs).
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from losslab.core.errors import LossLabError
from losslab.core.files import atomic_write, boundary, contained, first_line, read_text, regular_file
from losslab.store.records import MetricRow, summary_problem

if TYPE_CHECKING:
    from losslab.config import RunConfig

METRICS_SCHEMA = pa.schema([("step", pa.int64()), ("split", pa.string()), ("name", pa.string()),
                            ("value", pa.float64())])
# what every stored config.toml holds (to_toml writes every section)
WRITTEN_SECTIONS = ("name", "seed", "task", "model", "optim", "train")
# what a checkpoint must hold to be read at all
CHECKPOINT_KEYS = ("step", "model", "optimizer", "scheduler", "wall_s", "overhead_s", "grad_evals")


def _plain(value):
    """JSON for numpy numbers and arrays in a result."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON")


class RunDir:
    """A run folder. Every path it reads or writes lies inside it once links are followed: a link
    planted in the store (a linked `analyses/`, a run folder that is a link) is refused, never
    written through."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def _inside(self, name: str) -> Path:
        return contained(self.path / name, self.path, f"run {self.path.name}:")

    config_path = property(lambda self: self._inside("config.toml"))
    summary_path = property(lambda self: self._inside("run.json"))
    metrics_path = property(lambda self: self._inside("metrics.parquet"))
    checkpoint_dir = property(lambda self: self._inside("checkpoints"))
    figure_dir = property(lambda self: self._inside("figures"))
    analysis_dir = property(lambda self: self._inside("analyses"))

    def figure_path(self, name: str) -> Path:
        """Where the figure `name` of this run is written (its folder made if missing)."""
        self.figure_dir.mkdir(exist_ok=True)
        return self._inside(f"figures/{name}")

    def check_writable(self) -> None:
        """Refuse, before any work, a run folder whose results could not be saved: read-only, or
        with a folder for them that is a link out of it."""
        for folder in (self.path, self.analysis_dir, self.figure_dir, self.checkpoint_dir):
            if folder.exists() and not folder.is_dir():
                raise LossLabError(f"run {self.path.name}: {folder.name}/ is a file, not a folder")
            if folder.exists() and not os.access(folder, os.W_OK | os.X_OK):
                raise LossLabError(f"run {self.path.name}: {folder} is not writable")

    @classmethod
    def create(cls, path: Path, cfg: RunConfig | None, monitor: dict | None = None) -> RunDir:
        """A new run folder, made whole under a hidden name and renamed into place: a kill leaves
        either no folder or one with its config and a first summary (status `created`). A run
        written by a Monitor in a user's loop has no config: its summary's `monitor` says what
        is known of its model and optimizer."""
        from losslab.config import to_toml  # startup

        path = Path(path)
        draft = cls(path.with_name(f".{path.name}.creating"))
        shutil.rmtree(draft.path, ignore_errors=True)
        try:
            draft.checkpoint_dir.mkdir(parents=True)
            draft.figure_dir.mkdir()
            if cfg is not None:
                atomic_write(draft.config_path, lambda p: p.write_text(to_toml(cfg)))
            draft.write_summary({"run_id": path.name, "name": cfg.name if cfg else monitor["name"],
                                 "status": "created", "steps": 0, "events": {}, "final": {}, "wall_s": 0.0,
                                 "created": datetime.now().isoformat(timespec="seconds"),
                                 **({"monitor": monitor} if monitor else {})})
            os.rename(draft.path, path)
        except OSError as e:
            shutil.rmtree(draft.path, ignore_errors=True)
            why = "it exists already" if path.exists() else (e.strerror or str(e))
            raise LossLabError(f"cannot create run folder {path}: {why}") from None
        except LossLabError:
            shutil.rmtree(draft.path, ignore_errors=True)
            raise
        boundary(f"{path.name} created")
        return cls(path)

    @classmethod
    def open(cls, path: Path) -> RunDir:
        """An existing run folder, checked to hold a readable config and summary."""
        run = cls(path)
        if run.path.is_symlink():
            raise LossLabError(f"run folder {path} is a link: losslab does not follow links in the store")
        if not run.summary_path.is_file():
            raise LossLabError(f"not a losslab run folder: {path}")
        if not run.config_path.is_file() and "monitor" not in run.summary():
            raise LossLabError(f"not a losslab run folder: {path}")
        run.summary()
        return run

    @property
    def monitored(self) -> dict | None:
        """What a Monitor in a user's loop recorded of the run (None for losslab's own runs)."""
        return self.summary().get("monitor")

    def config(self) -> RunConfig:
        from losslab.config import load_config  # startup
        from losslab.presets import load_raw  # startup

        if not self.config_path.is_file() and self.monitored is not None:
            raise LossLabError(f"run {self.path.name} was written by a Monitor in your own training loop: it has no "
                               "losslab config to rebuild its model from (show, report, export and predict read it)")
        try:
            raw = load_raw(self.config_path)
            # a run's config is written whole: an empty or partial file would read as defaults
            missing = [key for key in WRITTEN_SECTIONS if key not in raw]
            if missing:
                raise LossLabError(f"no {', '.join(missing)}: not a run's whole config")
            return load_config(raw)
        except LossLabError as e:
            raise LossLabError(f"run {self.path.name}: corrupt config.toml ({e})") from None

    def summary(self) -> dict:
        try:
            summary = json.loads(read_text(self.summary_path, "run.json"))
        except (LossLabError, ValueError) as e:
            raise LossLabError(f"run {self.path.name}: corrupt run.json ({first_line(e)})") from None
        problem = summary_problem(summary)
        if problem:
            raise LossLabError(f"run {self.path.name}: corrupt run.json ({problem}: not a run's summary)")
        return summary

    def write_summary(self, summary: dict) -> None:
        atomic_write(self.summary_path, lambda p: p.write_text(json.dumps(summary, indent=2)))

    def overwrite_summary(self, summary: dict) -> None:
        """run.json rewritten in its own blocks, for a full disk, where a new file cannot be made:
        compact JSON, no longer than the indented file it replaces, needs no free space."""
        text = json.dumps(summary, separators=(",", ":")).encode()
        with open(self.summary_path, "r+b") as f:
            if len(text) > f.seek(0, os.SEEK_END):
                raise LossLabError(f"run {self.path.name}: no room to mark it in run.json")
            f.seek(0)
            f.write(text)
            f.truncate()
            os.fsync(f.fileno())

    # -- analyses: results keyed by their settings, and their figures

    def save_analysis(self, kind: str, stem: str, settings: dict, result: dict) -> Path:
        """The result of an analysis of `kind` (what draws it: report.plots.INTERACTIVE), as
        analyses/STEM.json beside its settings."""
        self.analysis_dir.mkdir(exist_ok=True)
        path = self._inside(f"analyses/{stem}.json")
        payload = {**result, "analysis": kind, "settings": settings, "file": str(path)}
        atomic_write(path, lambda p: p.write_text(json.dumps(payload, indent=2, default=_plain) + "\n"))
        return path

    def analyses(self) -> list[Path]:
        folder = self.analysis_dir
        return sorted(folder.glob("*.json")) if folder.is_dir() else []

    # -- metrics: rows of (step, split, name, value)

    def write_metrics(self, rows: list[MetricRow]) -> None:
        columns = list(zip(*rows)) if rows else [[], [], [], []]
        table = pa.Table.from_arrays([pa.array(c, t) for c, t in zip(columns, METRICS_SCHEMA.types)],
                                     schema=METRICS_SCHEMA)
        atomic_write(self.metrics_path, lambda p: pq.write_table(table, p))

    def metrics(self) -> pa.Table:
        if not self.metrics_path.exists():
            return METRICS_SCHEMA.empty_table()
        try:
            table = pq.read_table(regular_file(self.metrics_path, f"run {self.path.name}: metrics.parquet"))
        except (OSError, pa.ArrowException) as e:
            raise LossLabError(f"run {self.path.name}: corrupt metrics.parquet ({first_line(e)})") from None
        if not table.schema.equals(METRICS_SCHEMA):
            raise LossLabError(f"run {self.path.name}: metrics.parquet has columns {table.schema.names} of "
                               f"other types than losslab's {METRICS_SCHEMA.names}")
        return table

    def metric_rows(self) -> list[MetricRow]:
        table = self.metrics()
        return [MetricRow(*row) for row in zip(*(table.column(n).to_pylist() for n in METRICS_SCHEMA.names))]

    # -- checkpoints

    def save_checkpoint(self, state: dict, name: str) -> Path:
        import torch  # startup

        path = self._inside(f"checkpoints/{name}.pt")
        atomic_write(path, lambda p: torch.save(state, p))
        return path

    def checkpoints(self) -> list[Path]:
        folder = self.checkpoint_dir
        if folder.exists() and not folder.is_dir():
            raise LossLabError(f"run {self.path.name}: checkpoints/ is a file, not a folder")
        return sorted(folder.glob("*.pt"))

    def load_checkpoint(self, path: Path) -> dict:
        """A checkpoint's state; one line if it is unreadable, would run code, or is not a losslab
        checkpoint (a bare tensor, a dict without its step)."""
        import warnings  # startup

        import torch  # startup

        contained(path, self.path, f"run {self.path.name}: checkpoint")
        regular_file(path, f"run {self.path.name}: checkpoint {Path(path).name}")
        try:
            with warnings.catch_warnings():  # damaged bytes also draw warnings ("pickle protocol 202")
                warnings.simplefilter("ignore")
                state = torch.load(path, weights_only=True, map_location="cpu")
        except Exception as e:  # noqa: BLE001 - the unpickler of damaged bytes raises anything (IndexError, ...)
            raise LossLabError(f"run {self.path.name}: unreadable checkpoint {path.name} ({first_line(e)})") from None
        missing = [k for k in CHECKPOINT_KEYS if k not in state] if isinstance(state, dict) else None
        if missing is None or missing or not isinstance(state["step"], int) or state["step"] < 0:
            what = (f"a {type(state).__name__}" if missing is None else f"no {', '.join(missing)}" if missing
                    else f"step {state['step']!r}")
            raise LossLabError(f"run {self.path.name}: checkpoint {path.name} is not a losslab checkpoint ({what})")
        return state

    def latest_checkpoint(self) -> dict | None:
        """The checkpoint of the highest step (a readable one), or None."""
        latest = None
        for path in self.checkpoints():
            state = self.load_checkpoint(path)
            if latest is None or state["step"] > latest["step"]:
                latest = state
        return latest
