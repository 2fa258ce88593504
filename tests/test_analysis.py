"""Analyses of a stored run, as a user runs them."""

import json

import numpy as np
import pytest
import torch

from losslab.analysis.point import checkpoint_paths, load_point
from losslab.store import RunStore
from tests.test_cli import TINY, losslab


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    out = losslab("run", "grokking", *TINY, "--set", "train.max_steps=120", "--out", root, "--json")
    assert out.returncode == 0, out.stderr
    return root, json.loads(out.stdout)["run_id"]


def test_checkpoints_load_into_the_runs_model(tiny_run):
    root, run_id = tiny_run
    run = RunStore(root).find(run_id)
    steps = list(checkpoint_paths(run))
    assert steps[0] == 0 and steps[-1] == 120
    point = load_point(run, 0)
    with torch.no_grad():
        loss = point.loss(point.params).item()
    first = [v for s, split, name, v in run.metric_rows() if s == 0 and split == "train" and name == "loss"][0]
    assert loss == pytest.approx(first, rel=1e-5)


def test_hessian_command(tiny_run):
    root, run_id = tiny_run
    out = losslab("hessian", run_id, "--out", root, "--which", "both", "--k", "3", "--trace", "--density", "--json")
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["step"] == 120 and len(r["top"]) == 3 and len(r["bottom"]) == 3
    assert r["top"][0] >= r["top"][1] >= r["top"][2] and r["bottom"][0] <= r["bottom"][1]
    assert r["lambda_max"] == r["top"][0] and r["condition_number"] > 1
    assert r["trace"]["standard_error"] > 0
    nodes, weights = np.array(r["density"]["nodes"]), np.array(r["density"]["weights"])
    assert np.allclose(weights.sum(1), 1) and nodes.max() == pytest.approx(r["lambda_max"], rel=1e-3)
    saved = json.loads(open(r["file"]).read())
    assert saved["top"] == r["top"] and open(r["figure"], "rb").read(4) == b"\x89PNG"


@pytest.mark.parametrize("args,message", [
    (["hessian", "nosuchrun"], "no run 'nosuchrun'"),
    (["hessian", "RUN", "--checkpoint", "7"], "has no checkpoint at step 7"),
    (["hessian", "RUN", "--which", "middle"], "--which must be top, bottom or both"),
    (["hessian", "RUN", "--split", "test"], "unknown split 'test'"),
])
def test_bad_analysis_input_is_one_line(tiny_run, args, message):
    root, run_id = tiny_run
    out = losslab(*[run_id if a == "RUN" else a for a in args], "--out", root)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and message in out.stderr, out.stderr
