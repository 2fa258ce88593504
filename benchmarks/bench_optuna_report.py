"""What one `trial.report` costs on Optuna's storages (why losslab reports every N steps, not
every step): milliseconds per report on a journal file, on SQLite, and in memory, side by side.

    python benchmarks/bench_optuna_report.py [--reports 200]
"""

import argparse
import tempfile
import time
from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend


def per_report(storage, reports: int) -> float:
    study = optuna.create_study(storage=storage)
    trial = study.ask()
    start = time.perf_counter()
    for step in range(reports):
        trial.report(1.0 / (step + 1), step)
        trial.should_prune()
    return (time.perf_counter() - start) / reports


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reports", type=int, default=200)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        storages = {"memory": None,
                    "journal file": JournalStorage(JournalFileBackend(str(Path(tmp) / "journal"))),
                    "sqlite": f"sqlite:///{tmp}/study.db"}
        for name, storage in storages.items():
            print(f"{name:13s} {1000 * per_report(storage, args.reports):7.2f} ms per report (+ should_prune)")


if __name__ == "__main__":
    main()
