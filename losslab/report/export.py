"""A run's metrics out of losslab: TensorBoard event files (the viewer users already know), and one
table with a row per step and a column per series, as CSV or Parquet."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

from losslab.core.errors import LossLabError
from losslab.core.files import atomic_write, read_text
from losslab.monitor.instruments import scalar_tag
from losslab.store import RunDir


def wide_table(run: RunDir) -> pa.Table:
    """step, then one column `split/name` per series (empty where a series has no value at a step)."""
    rows = run.metric_rows()
    columns = sorted({f"{split}/{name}" for _, split, name, _ in rows})
    by_step: dict[int, dict[str, float]] = {}
    for step, split, name, value in rows:
        by_step.setdefault(step, {})[f"{split}/{name}"] = value
    steps = sorted(by_step)
    return pa.table({"step": pa.array(steps, pa.int64()),
                     **{c: pa.array([by_step[s].get(c) for s in steps], pa.float64()) for c in columns}})


def write_table(run: RunDir, path: Path) -> Path:
    """CSV or Parquet, by the file's suffix."""
    import pyarrow.csv as csv  # startup
    import pyarrow.parquet as pq  # startup

    writers = {".csv": csv.write_csv, ".parquet": pq.write_table}
    if path.suffix not in writers:
        raise LossLabError(f"{path}: a table file must end in .csv or .parquet")
    table = wide_table(run)
    atomic_write(path, lambda p: writers[path.suffix](table, str(p)))
    return path


def write_tensorboard(run: RunDir, directory: Path) -> Path:
    """Event files in directory/RUN_ID: every series as scalars tagged `instrument/name/split`
    (monitor.instruments: the instruments as TensorBoard's groups, train and val of a metric on one
    chart), the config and the events as text. An earlier export of
    the same run there is replaced, not added to."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # optional
    except ImportError:
        raise LossLabError("--tensorboard needs the tensorboard package: pip install 'losslab[tensorboard]'") \
            from None
    log_dir = directory / run.path.name
    for old in log_dir.glob("events.out.tfevents.*"):
        old.unlink()
    summary = run.summary()
    with SummaryWriter(str(log_dir)) as writer:
        for step, split, name, value in run.metric_rows():
            writer.add_scalar(scalar_tag(split, name), value, step)
        text = (json.dumps(summary["monitor"], indent=2) if summary.get("monitor") else
                read_text(run.config_path, f"run {run.path.name}: config.toml"))
        writer.add_text("config", "    " + text.replace("\n", "\n    "))  # markdown code
        events = summary.get("events") or {}
        writer.add_text("events", "  \n".join(f"{k} = {v}" for k, v in events.items()) or "none")
    return log_dir
