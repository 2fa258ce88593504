"""AlgoPerf scoring against a hand-computed example, and the benchmark as a user runs it."""

import json
import math

import numpy as np
import pytest

from losslab.bench.scoring import bootstrap_intervals, performance_ratios, profile, score, scores
from losslab.bench.suite import trial_points
from tests.helpers import losslab_here

INF = math.inf
TIMES = {"A": {"w1": 10.0, "w2": 20.0, "w3": INF},
         "B": {"w1": 20.0, "w2": 10.0, "w3": 100.0},
         "C": {"w1": 50.0, "w2": 15.0, "w3": INF}}


def test_ratios_and_scores_by_hand():
    r = performance_ratios(TIMES, r_max=4)
    assert r["A"] == {"w1": 1.0, "w2": 2.0, "w3": INF}
    assert r["B"] == {"w1": 2.0, "w2": 1.0, "w3": 1.0}
    assert r["C"] == {"w1": INF, "w2": 1.5, "w3": INF}  # 5x the best is beyond r_max
    s = scores(TIMES, r_max=4)
    # A: ((4-1) + (4-2)) / 3 / 3 workloads; B: (2 + 3 + 3) / 9; C: 2.5 / 9
    assert s == pytest.approx({"A": 5 / 9, "B": 8 / 9, "C": 2.5 / 9})


@pytest.mark.parametrize("opt", list(TIMES))
def test_score_is_the_normalized_area_under_the_profile(opt):
    ratios = performance_ratios(TIMES)[opt]
    taus = np.linspace(1, 4, 300_001)
    area = np.trapezoid(profile(ratios, taus), taus) / 3
    assert score(ratios) == pytest.approx(area, abs=1e-4)


def test_fastest_everywhere_scores_one_and_all_missed_zero():
    assert scores({"a": {"w": 1.0}, "b": {"w": INF}}) == {"a": 1.0, "b": 0.0}


def test_bootstrap_interval_contains_the_score_and_collapses_without_spread():
    studies = {o: {w: [t, t, t] for w, t in per.items()} for o, per in TIMES.items()}
    for opt, (lo, hi) in bootstrap_intervals(studies, resamples=50).items():
        assert lo == pytest.approx(scores(TIMES)[opt]) == pytest.approx(hi)
    noisy = {o: {w: [t, 2 * t, 0.5 * t] for w, t in per.items()} for o, per in TIMES.items()}
    intervals = bootstrap_intervals(noisy, resamples=200)
    assert all(lo <= scores(TIMES)[o] <= hi for o, (lo, hi) in intervals.items())
    assert any(hi - lo > 0.05 for lo, hi in intervals.values())


def test_trial_points_are_quasi_random_in_the_search_space():
    points = trial_points("sam", 8, seed=0)
    assert all(1e-3 <= p["lr"] <= 1.0 and 0.01 <= p["rho"] <= 0.2 for p in points)
    assert points == trial_points("sam", 8, seed=0) and points != trial_points("sam", 8, seed=1)
    logs = sorted(math.log10(p["lr"]) for p in points)
    assert max(np.diff([-3, *logs, 0])) < 1.0  # spread over the log range, no big hole


def test_bench_optim_command(tmp_path):
    out = losslab_here("bench-optim", "quick", "--optimizers", "adam,sgd,muon", "--trials", "1",
                  "--workloads", "digits-mlp,logreg", "--out", tmp_path, "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["workloads"] == ["digits-mlp", "logreg"] and set(result["clocks"]) == {"seconds", "grad_evals"}
    for block in result["clocks"].values():
        assert set(block["scores"]) == {"adam", "sgd", "muon"} and max(block["scores"].values()) > 0
    folder = tmp_path / "bench" / result["folder"].split("/")[-1]
    assert (folder / "profile.png").exists() and (folder / "results.json").exists()
    trials = json.loads((folder / "trials.json").read_text())
    assert len(trials) == 6 and all(t["run_id"] for t in trials if t["workload"] == "digits-mlp")
    runs = json.loads(losslab_here("runs", "--out", tmp_path, "--json").stdout)
    assert len(runs) == 3  # the digits trials went through the store


def test_bench_optim_bad_input(tmp_path):
    for args in (["nope"], ["quick", "--optimizers", "lion"], ["quick", "--workloads", "mnist"]):
        out = losslab_here("bench-optim", *args, "--out", tmp_path)
        assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert not (tmp_path / "bench").exists()
