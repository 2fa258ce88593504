"""Optuna search over a sweep file's axes: trials are runs, pruners stop them, the journal resumes."""

import json

import pytest

from losslab.store import RunStore
from losslab.sweep.tune import tune
from tests.helpers import ConstantForecaster, losslab_here, sweep_file

pytest.importorskip("optuna")

AXES = """
    [grid]
    "optim.weight_decay" = [0.1, 1.0]
    [random]
    samples = 1
    seed = 3
    [random.axes]
    "optim.lr" = {low = 1e-3, high = 1e-2, log = true}
"""


def test_trials_are_runs_and_the_journal_study_resumes(tmp_path):
    store = RunStore(tmp_path / "runs")
    path = sweep_file(tmp_path, AXES)
    first = tune(path, store, trials=2, objective="val_acc", pruner="none", report_every=10)
    assert [t["state"] for t in first["trials"]] == ["COMPLETE", "COMPLETE"]
    for t in first["trials"]:
        summary = store.find(t["run_id"]).summary()
        assert summary["final"]["val_acc"] == t["value"]
        assert 1e-3 <= t["axis:optim.lr"] <= 1e-2 and t["axis:optim.weight_decay"] in (0.1, 1.0)
    again = tune(path, store, trials=1, objective="val_acc", pruner="none")
    assert len(again["trials"]) == 3 and (store.root / "sweeps" / "s" / "optuna.journal").is_file()


def test_the_will_not_grok_pruner_stops_trials_at_t(tmp_path):
    store = RunStore(tmp_path / "runs")
    result = tune(sweep_file(tmp_path, AXES), store, trials=2, pruner="will-not-grok",
                  forecaster=ConstantForecaster(0.1), report_every=10)
    assert result["pruned"] == 2 and all(t["p_grok"] == pytest.approx(0.1) for t in result["trials"])
    assert all(store.find(t["run_id"]).summary()["steps"] == 20 for t in result["trials"])
    kept = tune(sweep_file(tmp_path, AXES, name="k"), store, trials=1, pruner="will-not-grok",
                forecaster=ConstantForecaster(0.9), report_every=10)
    assert kept["pruned"] == 0 and kept["trials"][0]["value"] == 2.0 * 30  # t4 not reached: 2 x max_steps


def test_tune_command_refusals(tmp_path):
    path = sweep_file(tmp_path, AXES)
    for args, message in [(["--pruner", "will-not-grok"], "has seen no runs of add (transformer)"),  # the shipped one
                          (["--refit-on", "s"], "are for --pruner will-not-grok"),
                          (["--objective", "speed"], "--objective must be one of"),
                          (["--trials", "0"], "0 is not in [1, 100000]")]:
        bad = losslab_here("tune", path, "--out", tmp_path / "runs", *args)
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
    out = losslab_here("tune", path, "--trials", "1", "--out", tmp_path / "runs", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["trials"][0]["state"] == "COMPLETE"
