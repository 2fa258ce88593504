"""Forecasts of grokking: each predictor recovers a known rule, leave-one-group-out never trains on the
held-out group, the bootstrap interval covers a known AUC at its rate, the threshold keeps the recall
it was chosen for, a tiny benchmark built from real runs, the stop rule inside real sweeps, and the
commands (the refusal of unseen task families)."""

import json
import math

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from losslab.forecast.benchmark import Design, benchmark_sweep
from losslab.forecast.evaluation import Dataset, auc, bootstrap_auc, dataset, held_out, stopping, threshold_for_recall
from losslab.forecast.features import FEATURES, HYPERPARAMETERS, METRICS, SIGNATURE, early_series, features_at
from losslab.forecast.forecaster import forecaster
from losslab.forecast.predictors import PREDICTORS, Predictor
from losslab.forecast.table import read_table, sweep_rows, write_table
from losslab.store import RunStore
from losslab.sweep.executors import LocalExecutor
from losslab.sweep.run import Sweep
from tests.helpers import ConstantForecaster, T, fake_benchmark, losslab_here, sweep_file


def synthetic(n: int, rng, rule_column: str) -> tuple[np.ndarray, np.ndarray]:
    """A features table of standard normals whose label is the sign of one column (plus a little noise)."""
    x = rng.normal(size=(n, len(FEATURES)))
    y = x[:, FEATURES.index(rule_column)] + 0.1 * rng.normal(size=n) > 0
    return x, y


@pytest.mark.parametrize("name", list(PREDICTORS))
def test_each_predictor_recovers_a_known_rule_on_its_own_features(name):
    rng = np.random.default_rng(1)
    predictor = PREDICTORS[name]()
    x, y = synthetic(400, rng, predictor.columns[0])
    p = predictor.fit(x[:200], y[:200]).predict_proba(x[200:])
    assert p.shape == (200, 2) and np.allclose(p.sum(1), 1)
    assert roc_auc_score(y[200:], p[:, 1]) > 0.95


def test_a_predictor_imputes_the_features_a_run_did_not_record():
    rng = np.random.default_rng(2)
    x, y = synthetic(300, rng, "log_weight_norm")
    x[::3, FEATURES.index("log_weight_norm")] = np.nan  # runs without probes
    for name in ("weight-norm", "boosted"):
        p = PREDICTORS[name]().fit(x[:200], y[:200]).predict_proba(x[200:])[:, 1]
        assert np.isfinite(p).all()


class Spy(Predictor):
    """A predictor that records which groups it was fitted on and asked about (column 0 holds the group)."""

    fits: list = []

    def fit(self, x, y):
        self.seen_ = set(np.asarray(x)[:, 0].astype(int).tolist())
        return super().fit(x, y)

    def predict_proba(self, x):
        asked = set(np.asarray(x)[:, 0].astype(int).tolist())
        Spy.fits.append((self.seen_, asked))
        return super().predict_proba(x)


def test_leave_one_group_out_never_trains_on_the_held_out_group():
    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(5), 20)
    x, y = synthetic(100, rng, "log_energy")
    x[:, 0] = groups  # log_energy is column 0 of FEATURES: the group, read back by the spy
    y = rng.random(100) < 0.5
    rows = [{"run_id": str(i), "family": str(g), "steps": 1000} for i, g in enumerate(groups)]
    Spy.fits = []
    result = held_out(Spy(), Dataset(100, x, y, rows), "task")
    assert len(Spy.fits) == 5 + 5 * 4  # each held-out group, and the inner folds that choose its threshold
    for fitted, asked in Spy.fits:
        assert not fitted & asked
    assert set(result["groups"]) == {str(g) for g in range(5)}
    assert sorted(result["predictions"]["run_id"], key=int) == [r["run_id"] for r in rows]


def test_the_bootstrap_interval_covers_a_known_auc_at_its_rate():
    """Binormal scores (negatives N(0, 1), positives N(d, 1)) have AUC = Phi(d / sqrt 2)."""
    rng, d = np.random.default_rng(4), 1.0
    truth = norm.cdf(d / math.sqrt(2))
    covered = 0
    trials = 200
    for trial in range(trials):
        y = np.repeat([True, False], 60)
        p = np.where(y, rng.normal(d, 1, 120), rng.normal(0, 1, 120))
        low, high = bootstrap_auc(y, p, draws=500, seed=trial)
        covered += low <= truth <= high
    assert 0.90 <= covered / trials <= 0.99


def test_the_auc_is_the_mann_whitney_statistic_with_ties_counted_half():
    rng = np.random.default_rng(5)
    y = rng.random(50) < 0.4
    p = rng.integers(0, 4, 50).astype(float)  # many ties
    assert auc(y, p)[0] == pytest.approx(roc_auc_score(y, p))


@pytest.mark.parametrize("recall", [0.5, 0.8, 0.95, 1.0])
def test_the_threshold_chosen_for_a_recall_keeps_at_least_that_share(recall):
    rng = np.random.default_rng(6)
    y = rng.random(200) < 0.3
    p = np.clip(rng.normal(np.where(y, 0.6, 0.4), 0.2), 0, 1)
    threshold = threshold_for_recall(y, p, recall)
    assert (p[y] >= threshold).mean() >= recall
    assert stopping(y, p, np.full(200, 1000.0), 100, threshold)["recall"] >= recall
    assert (p[y] >= np.nextafter(threshold, 2)).mean() < recall or threshold == p[y].max()  # the highest such


def test_held_out_thresholds_keep_the_recall_on_the_training_groups():
    """Each held-out group's threshold is chosen on the other groups' own held-out predictions, and
    keeps at least the recall there."""
    rng = np.random.default_rng(7)
    groups = np.repeat(np.arange(4), 40)
    x, y = synthetic(160, rng, "val_acc")
    rows = [{"run_id": str(i), "family": str(g), "steps": 1000} for i, g in enumerate(groups)]
    data = Dataset(100, x, y, rows)
    result = held_out(PREDICTORS["metrics"](), data, "task", recall=0.9)
    from losslab.forecast.evaluation import _inner_predictions

    for name, group in result["groups"].items():
        train = groups != int(name)
        inner = _inner_predictions(PREDICTORS["metrics"](), x[train], y[train], groups[train])
        assert (inner[y[train]] >= group["threshold"]).mean() >= 0.9
    assert result["pooled"]["auc"] > 0.95 and result["pooled"]["runs"] == 160


def test_features_read_only_the_first_t_steps():
    rng = np.random.default_rng(8)
    rows = [(s, "train", "step_loss", float(v)) for s, v in enumerate(rng.random(200))]
    rows += [(s, split, name, 0.5) for s in (0, 50, 100, 150) for split in ("train", "val") for name in ("loss", "acc")]
    rows += [(s, "probe", k, 1.0) for s in (0, 50, 100, 150) for k in ("grad_norm", "cos_theta0", "cos_previous",
                                                                      "norm_fro/a", "norm_fro/b")]
    later = [(s, sp, n, 99.0 if n != "step_loss" else v) if s > 100 else (s, sp, n, v) for s, sp, n, v in rows]
    hyper = dict.fromkeys(HYPERPARAMETERS, 0.0)
    assert features_at(early_series(rows, 200), 100, hyper) == features_at(early_series(later, 200), 100, hyper)
    series = early_series(rows, 200)
    assert series["weight_norm"][0] == pytest.approx(math.sqrt(2))  # the matrices' Frobenius norms together
    with pytest.raises(ValueError, match="cover 100 of the first 150 steps"):
        features_at(early_series(rows, 100), 150, hyper)


def test_a_tiny_benchmark_built_from_real_runs(tmp_path):
    """The benchmark's pipeline end to end in seconds: its runs (modular, S4, parity; three optimizers)
    trained as a sweep, their table written and read back, the features of every run at T."""
    store = RunStore(tmp_path / "runs")
    design = Design(moduli=(7,), parity_bits=(6,), settings=1, seeds=1, budget=60, t_max=40, width=16)
    sweep = benchmark_sweep(store, design, "forecast-tiny")
    assert {p.values["family"] for p in sweep.points} == {"add", "sub", "mul", "div", "sq_sum", "s4", "parity"}
    result = sweep.run(LocalExecutor(1))
    assert result["failed"] == 0 and result["points"] == 7
    path = write_table(sweep_rows(store, "forecast-tiny"), tmp_path / "table.parquet")
    rows = read_table(path)
    assert len(rows) == 7 and all(len(r["step_loss"]) == 40 and r["probe_step"] for r in rows)
    assert {r["optimizer"] for r in rows} == {"adamw", "sgd", "grokfast_ema"}
    data = dataset(rows, 20)
    assert len(data.y) + len(data.apart["grokked_by_T"]) == 7
    whole = [FEATURES.index(k) for k in SIGNATURE + METRICS + HYPERPARAMETERS + ("log_weight_norm", "log_grad_norm")]
    assert np.isfinite(data.x[:, whole]).all()  # the slopes need two points in [T/2, T]: NaN at T = 20 here
    again = benchmark_sweep(store, design, "forecast-tiny").run(LocalExecutor(1))  # resumed: nothing to run
    assert again["ran"] == 0


@pytest.mark.parametrize("p,stopped", [(0.1, True), (0.9, False)])
def test_a_sweep_stops_the_runs_the_forecaster_rules_out(tmp_path, p, stopped):
    path = sweep_file(tmp_path, '[grid]\n"optim.weight_decay" = [0.1, 1.0]\n')
    result = Sweep.from_file(path, RunStore(tmp_path / "runs")).run(
        LocalExecutor(1), stop={"forecaster": ConstantForecaster(p)})
    if stopped:
        assert all(r["stop_reason"] == "unpromising" and r["steps"] == 20 for r in result["rows"])
        assert result["stopped_unpromising"] == 2 and result["steps_saved_at_most"] == 2 * (30 - 20)
    else:
        assert all(r["stop_reason"] == "max_steps" and r["steps"] == 30 for r in result["rows"])
        assert result["stopped_unpromising"] == 0


@pytest.fixture
def benchmark(tmp_path):
    store = RunStore(tmp_path / "bench")
    return fake_benchmark(store, tmp_path / "table.parquet")


def test_the_forecaster_is_the_best_held_out_predictor_refitted(benchmark):
    rows = read_table(benchmark)
    fc = forecaster(rows, T, recall=0.9)
    data = dataset(rows, T)
    assert fc.held_out["auc"] == 1.0  # fake runs oscillate exactly when they grok
    assert fc.fitted_on == len(data.y) == 24 and fc.seen == {"add (transformer)", "sub (transformer)",
                                                            "mul (transformer)"}
    assert fc.held_out["recall"] >= 0.9
    p = fc.model.predict_proba(data.x)[:, 1]
    assert ((p >= 0.5) == data.y).all()


def test_forecast_commands_and_the_refusal_of_unseen_families(benchmark, tmp_path):
    store = tmp_path / "runs"
    div = sweep_file(tmp_path, '[grid]\n"task.op" = ["div"]\n', name="div")
    refused = losslab_here("sweep", div, "--stop-unpromising", "--table", benchmark, "--steps", 20, "--out", store)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "has seen no runs of div (transformer)" in refused.stderr and "--trust-unseen" in refused.stderr
    assert not (store / "sweeps" / "div" / "results.parquet").exists()
    add = sweep_file(tmp_path, '[grid]\n"optim.lr" = [1e-3]\n', name="add")
    lone = losslab_here("sweep", add, "--trust-unseen", "--out", store)
    assert lone.returncode == 2 and "are for --stop-unpromising" in lone.stderr

    out = losslab_here("predict", "--table", benchmark, "--steps", T, "--predictor", "hjorth", "--json")
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout)["forecaster"]
    assert record["predictor"] == "hjorth" and record["held_out"]["auc"] == 1.0
    bad = losslab_here("predict", "--table", benchmark, "--predictor", "oracle")
    assert bad.returncode == 2 and "unknown predictor 'oracle'" in bad.stderr


@pytest.mark.slow  # two sweeps trained (12 s); the refusal, the stop rule in a sweep, predict: the default suite
def test_an_unseen_family_trusted_and_a_seen_one_are_swept_with_the_forecaster(benchmark, tmp_path):
    store = tmp_path / "runs"
    div = sweep_file(tmp_path, '[grid]\n"task.op" = ["div"]\n', name="div")
    trusted = losslab_here("sweep", div, "--stop-unpromising", "--trust-unseen", "--table", benchmark,
                           "--steps", 20, "--predictor", "hjorth", "--out", store, "--json")
    assert trusted.returncode == 0, trusted.stderr
    result = json.loads(trusted.stdout)
    assert result["forecaster"]["steps"] == 20 and result["points"] == 1
    add = sweep_file(tmp_path, '[grid]\n"optim.lr" = [1e-3]\n', name="add")  # a family it has seen: not refused
    assert losslab_here("sweep", add, "--stop-unpromising", "--table", benchmark, "--steps", 20,
                        "--predictor", "hjorth", "--out", store).returncode == 0


def test_predict_scores_a_finished_sweep_as_an_unseen_task(benchmark, tmp_path):
    from losslab.sweep.run import sweep_dir, write_results
    from tests.helpers import fake_run

    store, rng = RunStore(tmp_path / "runs"), np.random.default_rng(9)
    rows = [fake_run(store, i, oscillates=i % 2 == 0, rng=rng, op="div") for i in range(10)]
    sweep_dir(store, "fake").mkdir(parents=True)
    write_results(sweep_dir(store, "fake"), rows)
    out = losslab_here("predict", "fake", "--table", benchmark, "--steps", T, "--predictor", "logistic",
                       "--out", store.root, "--json")
    assert out.returncode == 0, out.stderr
    scored = json.loads(out.stdout)["sweep"]
    assert scored["pooled"]["auc"] == 1.0 and scored["pooled"]["runs"] == 10
    assert all(p.endswith(".png") and (sweep_dir(store, "fake") / "figures" / p.rsplit("/", 1)[1]).is_file()
               for p in scored["figures"].values())
    runs = losslab_here("predict", "fake", "--table", benchmark, "--steps", T, "--predictor", "logistic",
                        "--run", rows[0]["run_id"], "--out", store.root, "--json")
    assert runs.returncode == 0, runs.stderr
    [one] = json.loads(runs.stdout)["runs"]
    assert one["p_grok"] > 0.5 and one["seen"]  # refitted with the sweep: div (transformer) is seen now


def test_the_page_shows_the_held_out_numbers_and_the_verdict(benchmark, tmp_path):
    out = losslab_here("forecast", "report", "--table", benchmark, "--predictors", "energy,hyperparameters",
                       "--horizons", "50,100", "--steps", 100, "--out", tmp_path / "page", "--json")
    assert out.returncode == 0, out.stderr
    written = json.loads(out.stdout)
    results = json.loads((tmp_path / "page" / "evaluation.json").read_text())
    held = results["100"]["held_out"]
    assert set(held) == {"task", "p", "optimizer"} and set(held["task"]) == {"energy", "hyperparameters"}
    energy = held["task"]["energy"]["pooled"]
    assert energy["auc"] == 1.0 and held["task"]["hyperparameters"]["pooled"]["auc"] == 0.5  # fake runs: one setting
    assert written["verdict"]["closest"] == "energy"
    page = (tmp_path / "page" / "forecast.html").read_text()
    assert "ROC AUC 1.00 [1.00, 1.00] at T = 100" in page  # the paper's claim beside what was measured
    assert ("It holds</b> for energy" in page) == written["verdict"]["holds"]
    assert page.count("<img") == 4 and "Leave one p out, Leave one optimizer out (T = 100)" in page
    for bad, message in [(["--predictors", "oracle"], "unknown oracle"), (["--steps", "300"], "must be one of"),
                         (["--horizons", "a"], "whole numbers")]:
        refused = losslab_here("forecast", "report", "--table", benchmark, *bad, "--out", tmp_path / "x")
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr


def test_the_figures_draw_the_held_out_predictions(benchmark):
    from sklearn.metrics import roc_curve

    from losslab.forecast.figures import roc_figure, trade_off_figure

    rows = read_table(benchmark)
    result = held_out(PREDICTORS["hjorth"](), dataset(rows, 50), "task")
    roc = roc_figure({"hjorth": result}, "t").axes[0]
    fpr, tpr, _ = roc_curve(result["predictions"]["grokked"], result["predictions"]["p"])
    assert np.allclose(roc.lines[0].get_xdata(), fpr) and np.allclose(roc.lines[0].get_ydata(), tpr)
    cost = trade_off_figure({"hjorth": result}, "t").axes[0]
    curve, dot = cost.lines[:2]
    assert np.allclose(curve.get_ydata(), result["trade_off"]["compute_saved"])
    assert tuple(dot.get_xydata()[0]) == (1 - result["pooled"]["recall"], result["pooled"]["compute_saved"])
