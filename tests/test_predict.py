"""The early predictor on a sweep whose outcome is known, and the stop rule inside real sweeps."""

import json

import numpy as np
import pytest

from losslab.core.errors import LossLabError
from losslab.store import RunStore
from losslab.sweep.executors import LocalExecutor
from losslab.sweep.predict import FEATURES, early_features, evaluate, fit, p_grok
from losslab.sweep.run import Sweep
from tests.helpers import T, constant_predictor, fake_run, losslab_here, sweep_file


@pytest.fixture
def known(tmp_path):
    store, rng = RunStore(tmp_path / "runs"), np.random.default_rng(0)
    return store, [fake_run(store, i, oscillates=i % 2 == 0, rng=rng) for i in range(20)]


def test_the_predictor_separates_oscillating_runs_and_counts_the_savings(known):
    store, rows = known
    result = evaluate(store, rows, steps=T)
    assert result["runs"] == 20 and result["grokked"] == 10 and result["folds"] == 5
    assert result["roc_auc"] == 1.0 and result["roc_auc_energy_alone"] == 1.0 and result["accuracy"] == 1.0
    # the 10 smooth runs stopped at T: 10 * (3000 - 100) steps of 10 * 1000 + 10 * 3000
    assert result["stopped"] == 10 and result["grokking_runs_lost"] == 0
    assert result["steps_saved"] == 10 * 2900 and result["compute_saved"] == pytest.approx(29000 / 40000)
    predictor = fit(store, rows, steps=T)
    features = early_features(store.find(rows[0]["run_id"]).metric_rows(), T)
    assert set(features) == set(FEATURES)
    assert p_grok(predictor, features) > 0.5 > p_grok(predictor, early_features(
        store.find(rows[1]["run_id"]).metric_rows(), T))


def test_too_few_of_a_class_is_refused(known):
    store, rows = known
    with pytest.raises(LossLabError, match="at least 2 runs that grokked"):
        evaluate(store, [r for r in rows if not r["grokked"]] + rows[:1], steps=T)


@pytest.mark.parametrize("p,stopped", [(0.1, True), (0.9, False)])
def test_a_sweep_stops_the_runs_predicted_not_to_grok(tmp_path, p, stopped):
    path = sweep_file(tmp_path, '[grid]\n"optim.weight_decay" = [0.1, 1.0]\n')
    result = Sweep(path, RunStore(tmp_path / "runs")).run(
        LocalExecutor(1), stop={"predictor": constant_predictor(p), "threshold": 0.5})
    if stopped:
        assert all(r["stop_reason"] == "unpromising" and r["steps"] == 20 for r in result["rows"])
        assert result["stopped_unpromising"] == 2 and result["steps_saved_at_most"] == 2 * (30 - 20)
    else:
        assert all(r["stop_reason"] == "max_steps" and r["steps"] == 30 for r in result["rows"])
        assert result["stopped_unpromising"] == 0


def test_predict_command(known, tmp_path):
    store, rows = known
    from losslab.sweep.run import sweep_dir, write_results
    sweep_dir(store, "fake").mkdir(parents=True)
    write_results(sweep_dir(store, "fake"), rows)
    out = losslab_here("predict", "fake", "--steps", T, "--out", store.root, "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["roc_auc"] == 1.0
    assert result["figure"] == str(sweep_dir(store, "fake") / "figures" / "predictor.png")
    assert (sweep_dir(store, "fake") / "figures" / "predictor.png").is_file()  # the figure the tutorial names
    bad = losslab_here("predict", "fake", "--threshold", "1.5", "--out", store.root)
    assert bad.returncode == 2 and "--threshold': 1.5 is not in (0, 1]" in bad.stderr


def test_a_run_that_grokked_by_T_is_neither_fitted_nor_scored(known):
    """Its validation accuracy at T is its outcome already: it is reported apart. The signature, the
    metrics and the predictor are scored each on its own."""
    store, rows = known
    early = {**rows[0], "t4": T - 10}  # grokked before the window closed
    result = evaluate(store, [early, *rows[1:]], steps=T)
    assert result["grokked_by_T"] == [early["run_id"]] and result["runs"] == 19
    assert early["run_id"] not in {p["run_id"] for p in result["predictions"]}
    assert set(result["roc_auc_by_features"]) == {"signature+metrics", "signature", "metrics"}
    assert result["roc_auc_by_features"]["signature"] == 1.0  # the fake runs oscillate exactly when they grok


def test_a_run_that_stopped_inside_its_window_has_no_features(known):
    store, rows = known
    run = store.find(rows[0]["run_id"])
    run.write_metrics([r for r in run.metric_rows() if not (r[2] == "step_loss" and r[0] >= T // 2)])
    with pytest.raises(ValueError, match=f"cover {T // 2} of the first {T} steps"):
        early_features(run.metric_rows(), T)
    assert evaluate(store, rows, steps=T)["no_features"] == [rows[0]["run_id"]]


def test_the_predictor_figure_shows_each_roc_and_the_chosen_thresholds_trade_off(known):
    from losslab.sweep.figures import predictor_figure
    from losslab.sweep.predict import trade_off

    store, rows = known
    result = evaluate(store, rows, steps=T, threshold=0.5)
    roc, cost = predictor_figure(result).axes
    labels = [line.get_label() for line in roc.get_lines() if not line.get_label().startswith("_")]
    assert labels == [f"{name} (AUC {auc:.2f})" for name, auc in result["roc_auc_by_features"].items()]
    curve, marker = cost.get_lines()
    assert tuple(marker.get_xydata()[0]) == (result["compute_saved"], result["grokking_runs_lost"])
    thresholds, saved, lost = trade_off(result)
    at = np.searchsorted(thresholds, 0.5, side="left")  # the rule stops p < 0.5: the first threshold >= 0.5
    assert (saved[at], lost[at]) == (pytest.approx(result["compute_saved"]), result["grokking_runs_lost"])
    assert saved[0] == 0 and lost[0] == 0 and lost[-1] == result["grokked"]  # nothing stopped; everything stopped
