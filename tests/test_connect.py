"""Mode connectivity: curves, weight matching against a known permutation, the command."""

import json

import numpy as np
import pytest
import torch

from losslab.analysis.connect import barrier, curve_weights, match_weights
from losslab.config import load_config
from losslab.train.loop import train
from tests.helpers import TINY, losslab_here

DIGITS = ["task.name=digits", "loss=cross_entropy", "model.width=64", "train.max_steps=300", "optim.name=adam",
          "optim.lr=3e-3", "train.batch_size=128", "train.eval_every=50", "train.stop_after_t4=100000",
          "data_seed=0"]


def test_curves_pass_through_their_ends_and_bends():
    a, b = torch.zeros(3), torch.ones(3)
    bends = torch.tensor([[2.0, 0.0, 0.0], [0.0, 4.0, 0.0]])
    for curve in ("bezier", "polychain"):
        assert torch.equal(curve_weights(torch.tensor(0.0), (a, b), bends, curve), a)
        assert torch.allclose(curve_weights(torch.tensor(1.0), (a, b), bends, curve), b)
    # the broken line is at its bends at t = 1/3, 2/3; the quadratic Bezier of one bend at t = 1/2
    assert torch.allclose(curve_weights(torch.tensor(1 / 3), (a, b), bends, "polychain"), bends[0])
    one = bends[:1]
    assert torch.allclose(curve_weights(torch.tensor(0.5), (a, b), one, "bezier"), 0.25 * a + 0.5 * one[0] + 0.25 * b)
    ts = np.linspace(0, 1, 5)
    assert barrier(np.array([1.0, 2.0, 3.0, 2.0, 1.0]), ts) == 2.0


def test_weight_matching_undoes_a_permutation_of_hidden_units():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 6), torch.nn.ReLU(),
                              torch.nn.Linear(6, 3))
    a = {n: p.detach() for n, p in net.named_parameters()}
    p1, p2 = torch.randperm(8), torch.randperm(6)
    b = dict(a)
    b["0.weight"], b["0.bias"] = a["0.weight"][p1], a["0.bias"][p1]
    b["2.weight"], b["2.bias"] = a["2.weight"][p2][:, p1], a["2.bias"][p2]
    b["4.weight"] = a["4.weight"][:, p2]
    x = torch.randn(10, 5)
    assert torch.allclose(torch.func.functional_call(net, b, (x,)), net(x), atol=1e-6)  # the same function
    matched = match_weights(net, a, b)
    assert all(torch.equal(matched[n], a[n]) for n in a)


@pytest.fixture(scope="module")
def two_digit_mlps(tmp_path_factory):
    from losslab.store import RunStore
    store = RunStore(tmp_path_factory.mktemp("runs"))
    ids = [train(load_config("parity", DIGITS, seed=seed), store)["run_id"] for seed in (0, 1)]
    return store, ids


def test_a_data_seed_fixes_the_data_and_not_the_initialization(two_digit_mlps):
    from losslab.train.checkpoints import load_checkpoint

    store, ids = two_digit_mlps
    a, b = (load_checkpoint(store.find(i)) for i in ids)
    assert all(torch.equal(u, v) for split in ("train", "val") for u, v in zip(a.data(split), b.data(split)))
    assert not torch.equal(a.weights()["net.0.weight"], b.weights()["net.0.weight"])


def test_the_curve_has_a_lower_barrier_than_the_line(two_digit_mlps):
    """Two MLPs on digits from different seeds (the same data): the straight line between them
    rises well above its ends; a trained Bezier curve, and the line to B aligned by weight
    matching, much less."""
    store, ids = two_digit_mlps
    out = losslab_here("connect", *ids, "--align", "--steps", 300, "--out", store.root, "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    b = result["barriers"]
    assert b["line"] > 0.1 and b["bezier"] < b["line"] / 4 and b["aligned line"] < b["line"] / 2
    assert min(result["paths"]["bezier"]["val_acc"]) > 0.8
    assert f"connect_{ids[1]}_bezier1_" in result["file"] and result["figure"].endswith(".png")
    # a polychain beside it: both results kept
    other = json.loads(losslab_here("connect", *ids, "--curve", "polychain", "--steps", 20, "--out", store.root,
                               "--json").stdout)
    assert other["file"] != result["file"] and json.loads(open(result["file"]).read())["curve"] == "bezier"


def test_bad_input_to_connect(two_digit_mlps, tmp_path):
    store, ids = two_digit_mlps
    other = json.loads(losslab_here("run", "grokking", *TINY, "--out", store.root, "--json").stdout)["run_id"]
    own_data = train(load_config("parity", [*DIGITS[:-1], "train.max_steps=1"], seed=1), store)["run_id"]
    for args, message in [([ids[0], other], "different architectures"),
                          ([ids[0], own_data], "trained on different data (task or data seed)"),
                          ([ids[0], ids[1], "--curve", "spline"], "--curve must be one of"),
                          ([ids[0], ids[1], "--bends", "0"], "0 is not in [1, 20]"),
                          ([other, other, "--align", "--steps", "1"], "weight matching permutes")]:
        bad = losslab_here("connect", *args, "--out", store.root)
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr


def test_the_connectivity_figure_shows_the_accuracy_differences_and_its_whole_title():
    from losslab.analysis.connect import Connection

    t = np.linspace(0, 1, 11)
    paths = {"line": {"t": t, "train_loss": 0.1 + np.sin(np.pi * t), "val_acc": 0.98 - 0.03 * np.sin(np.pi * t),
                      "barrier": 1.0},
             "bezier": {"t": t, "train_loss": 0.1 + 0 * t, "val_acc": 0.98 - 0.001 * np.sin(np.pi * t), "barrier": 0.0}}
    fig = Connection("bezier", 1, 10, 0.01, paths).plot(title="grokking-20261128-085334-0c33c5 (t=0) to grokking-20261128-091102-9ab2f1 (t=1)")
    fig.canvas.draw()
    low, high = fig.axes[1].get_ylim()
    assert 0.9 < low < 0.95 and 0.98 < high < 1.0  # the 95..98% band fills the panel
    title = fig._suptitle.get_window_extent()
    assert 0 <= title.x0 and title.x1 <= fig.bbox.width
