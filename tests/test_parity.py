"""Sparse parity: the preset groks, and its representations organize by the relevant bits."""

import json

import numpy as np
import pytest

from losslab.config import load_config
from losslab.store import RunStore
from losslab.train.loop import train
from tests.helpers import losslab_here


@pytest.fixture(scope="module")
def parity_run(tmp_path_factory):
    store = RunStore(tmp_path_factory.mktemp("runs"))
    return store, train(load_config("parity", ["train.checkpoint_per_decade=8"]), store)


def test_parity_preset_groks(parity_run):
    _, s = parity_run
    t = s["events"]
    assert s["status"] == "completed" and s["final"]["val_acc"] == 1.0
    assert t["t2"] < t["t4"]


def test_separation_is_a_nearest_neighbour_vote_across_halves():
    from losslab.analysis.representations import separation

    g = np.random.default_rng(0)
    codes = np.tile(np.arange(4), 50)
    clusters = np.array([[0, 0], [10, 0], [0, 10], [10, 10]])[codes] + g.normal(size=(200, 2))
    assert separation(clusters, codes) == 1.0
    assert separation(g.normal(size=(200, 2)), codes) == pytest.approx(0.25, abs=0.1)  # chance among 4
    assert separation(clusters, np.r_[codes[:100], (codes[100:] + 1) % 4]) == 0.0  # each half votes the other's


@pytest.mark.slow  # the gallery's parity-representations claim stays in the default suite
def test_hidden_representations_cluster_by_the_first_k_bits_once_generalized(parity_run):
    """At t4 the t-SNE of the hidden layer separates the 2^k codes of the relevant bits (a
    nearest-neighbour vote in the embedding recovers them); at memorization it does not."""
    store, s = parity_run
    out = losslab_here("representations", s["run_id"], "--out", store.root, "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(open(json.loads(out.stdout)["file"]).read())
    steps = result["steps"]
    assert len(steps) == len(result["panels"]) == 6 and steps == sorted(set(steps))  # as many panels as asked
    assert steps[0] <= s["events"]["t2"] * 2 and steps[-1] >= s["events"]["t4"] / 2
    assert len(json.loads(out.stdout)["figures"]) == 3
    codes = np.array(result["colors"])
    assert set(codes) == {0, 1, 2, 3}
    separation = [p["separation"] for p in result["panels"]]
    assert json.loads(out.stdout)["separation"] == separation
    assert separation[-1] > 0.95 and separation[0] < separation[-1] - 0.2
    assert {"net.0.weight", "net.2.weight"} == set(result["norms"])
    assert all(f.endswith(".png") for f in json.loads(out.stdout)["figures"])


@pytest.mark.parametrize("out_bias,loss,margin,ties", [(True, 0.0, 1.0, 0), (False, 0.5, 0.0, 512)])
def test_the_hand_built_two_neuron_network_on_every_input(out_bias, loss, margin, ties):
    from losslab.analysis.circuits import check_two_neuron
    r = check_two_neuron(10, out_bias)
    assert r["inputs"] == 1024 and r["accuracy"] == 1.0
    assert r["hinge_loss"] == loss and r["min_margin"] == margin and r["zero_margin_inputs"] == ties


def test_an_l1_penalty_prunes_parity_to_a_few_units(tmp_path):
    """parity-l1: of 100 hidden units a handful stay active, and the network pruned to them still
    computes the parity (on 20,000 fresh inputs of {-1, +1}^50)."""
    store = RunStore(tmp_path / "runs")
    s = train(load_config("parity-l1"), store)
    out = losslab_here("circuit", s["run_id"], "--out", store.root, "--json")
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert 2 <= r["active"] <= 8 and r["width"] == 100
    assert r["accuracy_pruned"] == 1.0 and r["checked_inputs"] == 20_000 and r["val_accuracy_pruned"] == 1.0
    bad = losslab_here("circuit", "--n", 30)
    assert bad.returncode == 2 and "--n': 30 is not in [2, 20]" in bad.stderr


def test_noise_threshold_brackets_by_bisection(tmp_path):
    """Bisection keeps a bracket [low, high) of width 0.5 / 2^iterations: the run at `low` grokked
    (or low = 0), the run at `high` did not (or high = 0.5)."""
    out = losslab_here("noise-threshold", "--n", "12", "--weight-decay", "0.05", "--iterations", "2",
                  "--set", "train.max_steps=1500", "--set", "model.width=64", "--out", tmp_path / "runs", "--json")
    assert out.returncode == 0, out.stderr
    (row,) = json.loads(out.stdout)
    assert row["n"] == 12 and row["high"] - row["low"] == pytest.approx(0.125)
    by_noise = {r["noise"]: r["grokked"] for r in row["runs"]}
    assert by_noise[0.0] is True and len(row["runs"]) == 3
    assert row["low"] == 0.0 or by_noise[row["low"]] is True
    assert row["high"] == 0.5 or by_noise[row["high"]] is False
    (entry,) = json.loads((tmp_path / "runs" / "studies" / "index.json").read_text())
    assert entry["study"] == "noise_threshold" and entry["settings"]["n"] == [12]
    assert json.loads((tmp_path / "runs" / "studies" / entry["folder"] / "result.json").read_text())["table"] == [row]
    bad = losslab_here("noise-threshold", "--n", "ten", "--out", tmp_path / "runs")
    assert bad.returncode == 2 and "--n expects comma-separated finite numbers" in bad.stderr
    bad = losslab_here("noise-threshold", "--n", "1", "--out", tmp_path / "runs")  # k = 2 > n = 1
    assert bad.returncode == 2 and "k=2 must be at most n=1" in bad.stderr


def test_switching_weight_decay_at_memorization_speeds_grokking_until_it_breaks_it(tmp_path):
    """the weight-decay-switch sweep in small: from 0.01 to 0.1 at t2 generalizes several
    times sooner; to 3.0 the weights decay faster than they learn and it never generalizes."""
    from losslab.sweep.executors import LocalExecutor
    from losslab.sweep.run import Sweep
    path = tmp_path / "s.toml"
    path.write_text('name = "s"\nbase = "parity"\nrun_figures = false\n'
                    '[grid]\n"optim.weight_decay_after_t2" = [0.01, 0.1, 3.0]\n')
    rows = Sweep.from_file(path, RunStore(tmp_path / "runs")).run(LocalExecutor(1))["rows"]
    t4 = {r["axis:optim.weight_decay_after_t2"]: r["t4"] for r in rows}
    assert t4[0.1] is not None and t4[0.01] is not None and t4[0.1] < t4[0.01] / 3
    assert t4[3.0] is None


def test_the_panels_asked_are_the_panels_drawn():
    """Log-spaced distinct checkpoints between t2 and t4, neighbours outside joining when too few lie
    inside (a run checkpoints a few times a decade), every one when the run stored fewer."""
    from losslab.analysis.representations import chosen_steps

    stored = [0, 1, 2, 3, 5, 10, 17, 31, 56, 100, 177, 316, 562, 1000, 1778, 3162]
    assert chosen_steps(stored, {"t2": 100, "t4": 600}, 6) == [56, 100, 177, 316, 562, 1000]
    wide = chosen_steps(stored, {"t2": 10, "t4": 3162}, 6)
    assert len(wide) == 6 and wide[0] == 10 and wide[-1] == 3162 and all(10 <= s <= 3162 for s in wide)
    assert chosen_steps(stored[:4], {}, 6) == [0, 1, 2, 3]
    assert len(chosen_steps(stored, {"t2": None, "t4": None}, 50)) == len(stored)
