"""The benchmark's table: one row per finished run, its early series (up to T_MAX steps), its settings
and its outcome, in a parquet file of a few MB. The small benchmark's table ships inside the
package (losslab/forecast/data/), so that predictors are compared without training anything."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from losslab.core.errors import LossLabError, NotFound
from losslab.core.files import atomic_write
from losslab.forecast.benchmark import T_MAX
from losslab.forecast.features import HYPERPARAMETERS, SERIES, config_hyperparameters, early_series, task_family
from losslab.store import RunStore
from losslab.sweep.run import read_results
from losslab.tasks.modular import GROUPS

SHIPPED = "forecast-small.parquet"


def run_row(run) -> dict:
    """The table's row of one finished losslab run (a RunDir): its group (task family, p, optimizer,
    model, seed), settings, outcome and early series."""
    summary, config = run.summary(), run.config()
    events = summary.get("events") or {}
    return {"run_id": run.path.name, "family": task_family(config),
            "p": config.task.p if config.task.name == "modular" and config.task.op not in GROUPS else None,
            "optimizer": config.optim.name, "model": config.model.name, "seed": config.seed,
            "status": summary["status"], "steps": summary.get("steps"), "budget": config.train.max_steps,
            "t2": events.get("t2"), "t4": events.get("t4"), "grokked": events.get("t4") is not None,
            **config_hyperparameters(config), **early_series(run.metric_rows(), T_MAX)}


def sweep_rows(store: RunStore, name: str) -> list[dict]:
    """The rows of a sweep's runs that ended on their own (completed or diverged; not those stopped
    as unpromising, whose outcome is unknown)."""
    return [run_row(store.find(r["run_id"])) for r in read_results(store, name)
            if r["status"] in ("completed", "diverged") and r.get("stop_reason") != "unpromising"]


def write_table(rows: list[dict], path: Path) -> Path:
    """The rows as parquet (series as lists of float32)."""
    columns = {k: [r[k] for r in rows] for k in rows[0]}
    schema = [pa.field(k, pa.list_(pa.float32())) if k in SERIES else
              pa.field(k, pa.float64() if k in HYPERPARAMETERS else pa.array(columns[k]).type) for k in columns]
    table = pa.table(columns, schema=pa.schema(schema))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda p: pq.write_table(table, p, compression="zstd"))
    return path


def read_table(path: Path | None = None) -> list[dict]:
    """A benchmark table's rows: the shipped small benchmark's by default."""
    source = Path(path) if path else Path(str(files("losslab.forecast") / "data" / SHIPPED))
    if not source.is_file():
        raise NotFound(f"no benchmark table at {source} (build one: losslab forecast build)")
    try:
        return pq.read_table(source).to_pylist()
    except (OSError, pa.ArrowException) as e:
        raise LossLabError(f"benchmark table {source}: unreadable ({e})") from None

