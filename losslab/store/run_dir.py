"""One run's folder: resolved config, summary, metrics (Parquet), figures and checkpoints.

Every file is written to a temporary name and renamed into place, so an interrupted write
never leaves a half file behind; checkpoints load with weights_only=True (no code runs).
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from losslab.config import RunConfig, load_config, to_toml
from losslab.errors import LossLabError

METRICS_SCHEMA = pa.schema([("step", pa.int64()), ("split", pa.string()), ("name", pa.string()),
                            ("value", pa.float64())])


def atomic_write(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


class RunDir:
    def __init__(self, path: Path):
        self.path = Path(path)

    config_path = property(lambda self: self.path / "config.toml")
    summary_path = property(lambda self: self.path / "run.json")
    metrics_path = property(lambda self: self.path / "metrics.parquet")
    checkpoint_dir = property(lambda self: self.path / "checkpoints")
    figure_dir = property(lambda self: self.path / "figures")

    @classmethod
    def create(cls, path: Path, cfg: RunConfig) -> RunDir:
        run = cls(path)
        run.checkpoint_dir.mkdir(parents=True)
        run.figure_dir.mkdir()
        atomic_write(run.config_path, lambda p: p.write_text(to_toml(cfg)))
        return run

    @classmethod
    def open(cls, path: Path) -> RunDir:
        """An existing run folder, checked to hold a readable config and summary."""
        run = cls(path)
        if not run.summary_path.is_file() or not run.config_path.is_file():
            raise LossLabError(f"not a losslab run folder: {path}")
        run.summary()
        return run

    def config(self) -> RunConfig:
        try:
            return load_config(self.config_path)
        except LossLabError as e:
            raise LossLabError(f"run {self.path.name}: corrupt config.toml ({e})") from None

    def summary(self) -> dict:
        try:
            return json.loads(self.summary_path.read_text())
        except (OSError, ValueError) as e:
            raise LossLabError(f"run {self.path.name}: corrupt run.json ({e})") from None

    def write_summary(self, summary: dict) -> None:
        atomic_write(self.summary_path, lambda p: p.write_text(json.dumps(summary, indent=2)))

    # -- metrics: rows of (step, split, name, value)

    def write_metrics(self, rows: list[tuple[int, str, str, float]]) -> None:
        columns = list(zip(*rows)) if rows else [[], [], [], []]
        table = pa.Table.from_arrays([pa.array(c, t) for c, t in zip(columns, METRICS_SCHEMA.types)],
                                     schema=METRICS_SCHEMA)
        atomic_write(self.metrics_path, lambda p: pq.write_table(table, p))

    def metrics(self) -> pa.Table:
        if not self.metrics_path.exists():
            return METRICS_SCHEMA.empty_table()
        try:
            return pq.read_table(self.metrics_path)
        except (OSError, pa.ArrowException) as e:
            raise LossLabError(f"run {self.path.name}: corrupt metrics.parquet ({e})") from None

    def metric_rows(self) -> list[tuple[int, str, str, float]]:
        table = self.metrics()
        return list(zip(*(table.column(n).to_pylist() for n in METRICS_SCHEMA.names)))

    # -- checkpoints

    def save_checkpoint(self, state: dict, name: str) -> Path:
        path = self.checkpoint_dir / f"{name}.pt"
        atomic_write(path, lambda p: torch.save(state, p))
        return path

    def checkpoints(self) -> list[Path]:
        return sorted(self.checkpoint_dir.glob("*.pt"))

    def load_checkpoint(self, path: Path) -> dict:
        try:
            return torch.load(path, weights_only=True)
        except (OSError, RuntimeError, pickle.UnpicklingError, EOFError) as e:
            raise LossLabError(f"run {self.path.name}: unreadable checkpoint {path.name} ({e})") from None

    def latest_checkpoint(self) -> dict | None:
        """The checkpoint of the highest step (a readable one), or None."""
        latest = None
        for path in self.checkpoints():
            state = self.load_checkpoint(path)
            if latest is None or state["step"] > latest["step"]:
                latest = state
        return latest
