"""A run as it is written to the store: its metric rows and its summary, the spectral signature of
its recorded loss and its figures. One writer for every kind of run: losslab's own Trainer and
the Monitor of a user's loop both record through it, so `losslab show`, `report`, `serve`,
`export` and `predict` read their runs alike.
"""

from __future__ import annotations

import resource
import time
from datetime import datetime

from losslab.analysis.signature import SIGNATURE_KEYS, run_signature
from losslab.analysis.slingshots import slingshots
from losslab.store.records import MetricRow


def now() -> str:
    return datetime.now().isoformat(timespec="seconds")


class RunRecord:
    def __init__(self, run, store, summary: dict):
        """`run` a RunDir of `store` (a RunStore); `summary` what is known of the run at its start."""
        self.run, self.store = run, store
        self.summary = {"run_id": run.path.name, "run_dir": str(run.path.resolve()), "status": "running",
                        "stop_reason": None, "steps": 0, "final": {}, "wall_s": 0.0, "created": now(),
                        "updated": now(), "peak_rss_mb": None, **summary}
        self.rows: list[MetricRow] = []
        self.wall_before = 0.0  # wall time of earlier sessions of a resumed run
        # the run's clock: wall time, or for a run trained in a batched group the seconds of its own
        # work and its share of the group's joint steps (losslab.train.batched), so that the runs'
        # times add up to the group's
        self.clock = time.perf_counter
        self._t0 = self.clock()

    def start_clock(self) -> None:
        self._t0 = self.clock()

    def wall(self) -> float:
        return self.wall_before + self.clock() - self._t0

    def write_metrics(self) -> None:
        self.run.write_metrics(self.rows)

    def write_summary(self, status: str = "running", stop_reason: str | None = None, **fields) -> None:
        """The summary, with its status and these fields, in the run folder and the store's index."""
        self.summary.update(status=status, stop_reason=stop_reason, wall_s=round(self.wall(), 3), updated=now(),
                            peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                            **fields)
        self.save_summary()

    def save_summary(self) -> None:
        """The summary as it stands, in the run folder and the store's index."""
        self.run.write_summary(self.summary)
        self.store.record(self.summary)

    def record_signature(self, steps: int) -> None:
        """The spectral signature of the first `steps` recorded training losses, as metric rows and
        in the summary; nothing for too short a record or a diverged run's non-finite losses."""
        try:
            sig = run_signature(self.rows, "train_loss", steps)
        except ValueError:
            return
        self.summary["signature"] = sig
        self.rows += [MetricRow(steps, "signature", k, sig[k]) for k in SIGNATURE_KEYS]

    def record_slingshots(self, last_layer: str | None) -> None:
        """The steps of slingshots (from the evaluated losses and the Frobenius norms of
        `last_layer`; none without a layer), in the summary."""
        self.summary["slingshots"] = slingshots(self.rows, last_layer) if last_layer else []

    def draw_figures(self) -> None:
        """The run's figures into its folder, listed in the summary."""
        from losslab.monitor.figures import write_run_figures  # startup

        self.summary["figures"] = [str(p) for p in write_run_figures(self.run, self.rows, self.summary)]


class Recorded:
    """What writes a run through its `record` (the Trainer, the Monitor): its rows and summary at hand."""

    record: RunRecord
    rows = property(lambda self: self.record.rows)
    summary = property(lambda self: self.record.summary)
