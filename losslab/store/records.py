"""The shape of what the store holds and is handed: a run's metric rows, its summary (run.json,
and its row in the index), and a job (a run to train, as a worker receives it).

A summary is one model, checked at every read, so that a file that parses but is not a run's
summary (a string where a mapping belongs, no `final`) is one line naming it, never a KeyError in
a command.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class MetricRow(NamedTuple):
    """One measurement of a run (a row of metrics.parquet): `name` = `value` at `step`, on `split`
    ("train", "val", or "probe" for the measures)."""

    step: int
    split: str
    name: str
    value: float


Number = float | None  # a metric may be NaN (a diverged run) or missing
Text = str | None


@dataclass(frozen=True)
class Job:
    """One run to train in a store, as a sweep's (or the gallery's) worker receives it: plain data (and
    the stop rule's fitted forecaster), pickled to worker processes and Ray tasks. The config is validated again where the run is made."""

    run_id: str
    config: dict  # the run's config as JSON (RunConfig.model_dump(mode="json"))
    store: str  # the store's root folder
    threads: int  # torch threads of the worker
    stop: dict | None = None  # the sweep's stop rule ({forecaster}: a fitted losslab.forecast Forecaster), if any
    figures: bool = True  # the run's own figures


class RunSummary(BaseModel):
    """What every run.json holds (losslab's runs and Monitor runs alike); other keys pass unchecked."""

    model_config = ConfigDict(extra="allow", strict=True)

    run_id: str
    status: str
    steps: int = Field(ge=0)
    events: dict[str, int | None]
    final: dict[str, Number]
    wall_s: float = Field(ge=0)
    name: Text = None
    created: Text = None
    updated: Text = None
    stop_reason: Text = None
    outcome: Text = None
    run_dir: Text = None
    peak_rss_mb: Number = None
    figures: list[str] | None = None
    signature: dict[str, str | int | float | None] | None = None
    slingshots: list | None = None
    monitor: dict | None = None


def summary_problem(summary) -> str | None:
    """Why `summary` (parsed JSON) is not a run's summary, or None if it is."""
    if not isinstance(summary, dict):
        return f"a JSON {type(summary).__name__}, not a mapping"
    try:
        RunSummary.model_validate(summary)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
        return f"{where}: {first['msg']}{more}"
    return None
