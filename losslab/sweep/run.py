"""Running a sweep: its points through an executor, resumably, into one results table.

A sweep lives in <store>/sweeps/<name>/: sweep.json (what it runs: its points, its
fingerprint, the failures) and results.parquet (one row per point). Its runs are ordinary
runs of the store, with ids fixed by their point, so a rerun finds each run it started:
completed and diverged runs are kept, interrupted or killed ones resume from their last
checkpoint, failed ones are tried again.
"""

from __future__ import annotations

import fcntl
import json
import signal
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from losslab.analysis.signature import full_window
from losslab.core.errors import LossLabError, NotFound
from losslab.core.files import atomic_write, read_json, read_text
from losslab.presets import sweep_file
from losslab.store import RunDir, RunStore
from losslab.store.records import Job
from losslab.sweep.executors import Executor
from losslab.sweep.figures import default_axes, phase_figure, power_law_figure, save
from losslab.sweep.phase import t4_against_fraction
from losslab.sweep.spec import Point, expand, fingerprint, load_spec
from losslab.train import stop as signals

FINAL = ("completed", "diverged")


def sweep_dir(store: RunStore, name: str) -> Path:
    return store.inside("sweeps", name)


def finished_summary(store: RunStore, run_id: str) -> dict | None:
    """The summary of a run that has ended for good (completed or diverged), else None."""
    path = store.root / run_id
    try:
        summary = RunDir.open(path).summary() if path.exists() else None
    except LossLabError:
        return None
    return summary if summary and summary.get("status") in FINAL else None


# ---------------------------------------------------------------- results


def result_row(point: Point, summary: dict | None, error: str | None = None) -> dict:
    """One row of the results table: axis values, status, events, final metrics, signature."""
    summary = summary or {}
    row = {"index": point.index, "run_id": point.run_id, **{f"axis:{k}": v for k, v in point.values.items()},
           "status": summary.get("status", "failed" if error else "pending"), "error": error,
           "stop_reason": summary.get("stop_reason"),
           "steps": summary.get("steps"), "wall_s": summary.get("wall_s"),
           "trained_with": (summary.get("group") or {}).get("runs")}
    events = summary.get("events") or {}
    row.update({k: events.get(k) for k in ("t1", "t2", "t3", "t4")})
    row["grokked"] = events.get("t4") is not None if summary else None
    row.update({k: (summary.get("final") or {}).get(k) for k in ("train_loss", "train_acc", "val_loss", "val_acc")})
    signature = summary.get("signature") or {}
    # a window the run stopped inside gives no comparable energy: left out (signature_window says so)
    comparable = full_window(signature)
    row["signature_window"] = (signature.get("window") or ("full" if comparable else "partial")) if signature else None
    row.update({f"signature_{k}": signature.get(k) if comparable else None
                for k in ("energy", "activity", "mobility", "complexity")})
    row["config"] = json.dumps(point.config.model_dump(mode="json"))  # the whole resolved config
    return row


def _arrow_safe(rows: list[dict]) -> pa.Table:
    """Axis values may mix ints and floats (or be lists): store each column as one type."""
    columns = {}
    for key in dict.fromkeys(k for r in rows for k in r):
        values = [r.get(key) for r in rows]
        kinds = {type(v) for v in values if v is not None}
        if kinds <= {int, float} and float in kinds:
            values = [None if v is None else float(v) for v in values]
        elif len(kinds) > 1 or kinds & {list, dict}:
            values = [None if v is None else json.dumps(v) for v in values]
        columns[key] = values
    return pa.table(columns)


def write_results(directory: Path, rows: list[dict]) -> pa.Table:
    """Write the results table; returns it (its rows as `sweep-show` reads them back)."""
    table = _arrow_safe(rows)
    atomic_write(directory / "results.parquet", lambda p: pq.write_table(table, p))
    return table


def read_results(store: RunStore, name: str) -> list[dict]:
    path = sweep_dir(store, name) / "results.parquet"
    if not path.is_file():
        known = sorted(p.name for p in (store.root / "sweeps").glob("*")) if (store.root / "sweeps").exists() else []
        raise NotFound(f"no sweep {name!r} in {store.root} (known: {', '.join(known) or 'none'})")
    try:
        return pq.read_table(path).to_pylist()
    except (OSError, pa.ArrowException) as e:
        raise LossLabError(f"sweep {name}: corrupt results.parquet ({e})") from None


def draw(directory: Path, rows: list[dict]) -> dict[str, str]:
    """The default figures the sweep's axes allow: a phase diagram over two varied axes, and t4
    against the train fraction with its power law where that is an axis and enough runs grokked."""
    figures, axes = {}, default_axes(rows)
    (directory / "figures").mkdir(exist_ok=True)
    if axes:
        figures["phase"] = str(save(phase_figure(rows, *axes), directory / "figures" / "phase.png"))
    if any(k == "axis:task.train_fraction" for k in rows[0]):
        try:
            law = t4_against_fraction(rows)
        except LossLabError:  # too few grokked runs for a fit: no figure
            return figures
        figures["power_law"] = str(save(power_law_figure(law, "task.train_fraction"),
                                        directory / "figures" / "t4_power_law.png"))
    return figures


# ---------------------------------------------------------------- the sweep


def _write_manifest(directory: Path, manifest: dict) -> None:
    atomic_write(directory / "sweep.json", lambda p: p.write_text(json.dumps(manifest, indent=2, default=str)))


def _read_manifest(directory: Path) -> dict | None:
    path = directory / "sweep.json"
    if not path.is_file():
        return None
    manifest = read_json(path, f"sweep {directory.name}: sweep.json")
    if not isinstance(manifest, dict) or not {"fingerprint", "points"} <= set(manifest):
        raise LossLabError(f"sweep {directory.name}: corrupt sweep.json (not a sweep's manifest)")
    return manifest


class Sweep:
    """A sweep's points and its folder, checked against what an earlier run of it ran. `source`
    is what defines the points (a sweep file's text), kept in its manifest."""

    def __init__(self, name: str, points: list[Point], store: RunStore, source: str, force: bool = False,
                 run_figures: bool = True, axes: list[str] | None = None):
        self.name, self.store, self.points, self.run_figures = name, store, points, run_figures
        self.directory = sweep_dir(store, name)
        old = _read_manifest(self.directory)
        same = old is not None and old["fingerprint"] == fingerprint(self.points)
        if old and not same and not force:
            then = len(old["points"])
            change = f"{then} points then, {len(self.points)} now" if then != len(self.points) else "other configs"
            raise LossLabError(f"sweep {name} changed since its first run ({change}); its results would mix: "
                               "rerun with --force to keep the runs of unchanged points and run the new ones")
        self.failures = {int(k): v for k, v in old.get("failures", {}).items()} if same else {}
        self.manifest = {"name": name, "fingerprint": fingerprint(self.points), "spec": source,
                         "axes": axes if axes is not None else list(dict.fromkeys(k for p in points for k in p.values)),
                         "points": [{"index": p.index, "values": p.values, "run_id": p.run_id} for p in self.points]}

    @classmethod
    def from_file(cls, spec_path: str | Path, store: RunStore, force: bool = False) -> Sweep:
        """The sweep of a sweep file (or a built-in sweep's name)."""
        spec_path = sweep_file(spec_path)
        spec = load_spec(spec_path)
        return cls(spec.name, expand(spec), store, read_text(spec_path, f"sweep file {spec_path}"), force,
                   spec.run_figures, spec.axes)

    def rows(self, summaries: dict[int, dict | None]) -> list[dict]:
        return [result_row(p, summaries[p.index], self.failures.get(p.index)) for p in self.points]

    def run(self, executor: Executor, on_result: Callable[[dict, int, int], None] | None = None,
            stop: dict | None = None) -> dict:
        """Run the points not finished yet; returns {name, dir, table, rows, counts}. `stop`
        ({forecaster}) stops the runs a forecaster (losslab.forecast) says will not grok.
        SIGINT or SIGTERM stop the sweep: no new point starts, the running ones end `interrupted`
        and the table holds what finished (`interrupted` in the result: the signal's name)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with self._lock(), signals.stop_on_signals():
            return self._run(executor, on_result, stop)

    @contextmanager
    def _lock(self):
        """One process runs a sweep at a time (freed by the OS on kill -9): a second is refused."""
        with open(self.directory / ".lock", "w") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LossLabError(f"sweep {self.name} is being run by another process; wait for it, "
                                   "or stop it, then run it again") from None
            yield

    def _run(self, executor: Executor, on_result, stop: dict | None) -> dict:
        summaries = {p.index: finished_summary(self.store, p.run_id) for p in self.points}
        # a point's row follows its run: an old failure of a run that has since finished is gone
        self.failures = {i: e for i, e in self.failures.items() if summaries[i] is None}
        _write_manifest(self.directory, {**self.manifest, "failures": self.failures})
        todo = [p for p in self.points if summaries[p.index] is None]
        jobs = [Job(p.run_id, p.config.model_dump(mode="json"), str(self.store.root), executor.threads, stop,
                    self.run_figures) for p in todo]
        by_run = {p.run_id: p for p in self.points}
        for done, result in enumerate(executor(jobs), 1):
            point = by_run[result["run_id"]]
            if result["status"] == "failed":
                self.failures[point.index] = result["error"]
            else:
                self.failures.pop(point.index, None)
                summaries[point.index] = result
            _write_manifest(self.directory, {**self.manifest, "failures": self.failures})
            write_results(self.directory, self.rows(summaries))  # a killed sweep keeps its table so far
            if on_result:
                on_result(result_row(point, summaries[point.index], self.failures.get(point.index)), done, len(jobs))
        rows = write_results(self.directory, self.rows(summaries)).to_pylist()  # the table's types
        interrupted = None if signals.requested is None else signal.Signals(signals.requested).name
        return {"name": self.name, "dir": str(self.directory), "table": str(self.directory / "results.parquet"),
                "figures": {} if interrupted else draw(self.directory, rows), "interrupted": interrupted,
                "points": len(rows), "ran": len(jobs), "skipped": len(rows) - len(jobs),
                "failed": len(self.failures), "grokked": sum(bool(r["grokked"]) for r in rows),
                **self._stopped(rows), "rows": rows}

    def _stopped(self, rows: list[dict]) -> dict:
        """The runs stopped as unpromising, and the steps they did not run (at most: some would
        have stopped early at t4)."""
        stopped = [(p, r) for p, r in zip(self.points, rows) if r["stop_reason"] == "unpromising"]
        return {"stopped_unpromising": len(stopped),
                "steps_saved_at_most": sum(p.config.train.max_steps - r["steps"] for p, r in stopped),
                "steps_run": sum(r["steps"] or 0 for r in rows)}
