"""Analyses of a stored run, as a user runs them."""

import json
import re

import numpy as np
import pytest
import torch

from losslab.store import RunStore
from losslab.train.checkpoints import checkpoint_paths, load_checkpoint
from tests.helpers import TINY, losslab_here


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    out = losslab_here("run", "grokking", *TINY, "--set", "train.max_steps=120", "--out", root, "--json")
    assert out.returncode == 0, out.stderr
    return root, json.loads(out.stdout)["run_id"]


def test_checkpoints_load_into_the_runs_model(tiny_run):
    root, run_id = tiny_run
    run = RunStore(root).find(run_id)
    steps = list(checkpoint_paths(run))
    assert steps[0] == 0 and steps[-1] == 120
    loss = load_checkpoint(run, 0).objective().value
    first = [v for s, split, name, v in run.metric_rows() if s == 0 and split == "train" and name == "loss"][0]
    assert loss == pytest.approx(first, rel=1e-5)
    import losslab as ll  # the public bridge from a run folder to an objective

    assert ll.objective_at(run.path, 0).value == loss
    assert ll.objective_at(run, 0, "val").value != loss


def test_hessian_dense_agrees_with_lanczos(tmp_path):
    store = tmp_path / "store"
    out = losslab_here("run", "parity", "--set", "model.width=8", "--set", "train.max_steps=30", "--out", store,
                       "--json")
    run_id = json.loads(out.stdout)["run_id"]
    out = losslab_here("hessian", run_id, "--out", store, "--dense", "--which", "both", "--k", "2", "--json")
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    eigenvalues = np.array(r["eigenvalues"])
    assert len(eigenvalues) == r["n_params"] == 50 * 8 + 8 + 8 and 0 < r["rank"] <= r["n_params"]
    assert np.allclose(eigenvalues[::-1][:2], r["top"], rtol=1e-4) and np.allclose(eigenvalues[:2], r["bottom"],
                                                                                   rtol=1e-4, atol=1e-7)


def test_hessian_command(tiny_run):
    root, run_id = tiny_run
    out = losslab_here("hessian", run_id, "--out", root, "--which", "both", "--k", "3", "--trace", "--density",
                       "--json")
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["step"] == 120 and len(r["top"]) == 3 and len(r["bottom"]) == 3
    assert r["top"][0] >= r["top"][1] >= r["top"][2] and r["bottom"][0] <= r["bottom"][1]
    assert r["lambda_max"] == r["top"][0] and r["lambda_min"] == r["bottom"][0]
    # an indefinite Hessian has no condition number: none is printed
    assert r["lambda_min"] < 0 and r["condition_number"] is None
    assert r["trace"]["standard_error"] > 0
    nodes, weights = np.array(r["density"]["nodes"]), np.array(r["density"]["weights"])
    assert np.allclose(weights.sum(1), 1) and nodes.max() == pytest.approx(r["lambda_max"], rel=1e-3)
    saved = json.loads(open(r["file"]).read())
    assert saved["top"] == r["top"] and open(r["figure"], "rb").read(4) == b"\x89PNG"
    # off a terminal, a line as each stage ends, with its count: together, every product made
    done = re.findall(r"^losslab: hessian of .*: (.*): ([\d,]+)(?:/([\d,]+))? in [\d.]+ s, done$", out.stderr, re.M)
    assert [stage for stage, *_ in done] == ["both eigenvalues (hessian-vector products)", "trace, hutch++ (products)",
                                             "spectral density, SLQ (products)"]
    assert sum(int(count.replace(",", "")) for _, count, _ in done) == r["hessian_vector_products"]
    assert all(total == "" or total == count for _, count, total in done)
    # another analysis of the same checkpoint keeps this one (each is keyed by its settings)
    again = json.loads(losslab_here("hessian", run_id, "--out", root, "--k", "2", "--json").stdout)
    assert again["file"] != r["file"] and json.loads(open(r["file"]).read())["top"] == r["top"]
    listed = json.loads(losslab_here("show", run_id, "--out", root, "--json").stdout)["analyses"]
    assert {r["file"], again["file"]} <= {a["file"] for a in listed}
    assert {a["settings"]["k"] for a in listed if a["file"] in (r["file"], again["file"])} == {2, 3}


@pytest.mark.parametrize("args,message", [
    (["hessian", "nosuchrun"], "no run 'nosuchrun'"),
    (["hessian", "RUN", "--checkpoint", "7"], "has no checkpoint at step 7"),
    (["hessian", "RUN", "--which", "middle"], "--which must be top, bottom or both"),
    (["hessian", "RUN", "--split", "test"], "unknown split 'test'"),
    (["hessian", "RUN", "--dense"], "only for models of at most 3000 parameters"),
])
def test_bad_analysis_input_is_one_line(tiny_run, args, message):
    root, run_id = tiny_run
    out = losslab_here(*[run_id if a == "RUN" else a for a in args], "--out", root)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and message in out.stderr, out.stderr


def test_filter_normalized_directions_match_each_filters_norm(tiny_run):
    from losslab.analysis.directions import random_direction
    obj = load_checkpoint(RunStore(tiny_run[0]).find(tiny_run[1])).objective()
    d = obj.unflatten(random_direction(obj, seed=3))
    for name, w in obj.params.items():
        if w.ndim >= 2:
            assert torch.allclose(d[name].flatten(1).norm(dim=1), w.flatten(1).norm(dim=1), rtol=1e-5)
        else:
            assert not d[name].any()  # biases ignored by default
    layer = obj.unflatten(random_direction(obj, seed=3, normalization="layer", include_biases=True))
    assert all(torch.isclose(layer[n].norm(), w.norm(), rtol=1e-5) for n, w in obj.params.items())
    assert torch.equal(random_direction(obj, seed=3), obj.flatten(d))
    flat = random_direction(obj, seed=3, normalization="none", include_biases=True)
    assert abs(float(flat.mean())) < 4 / flat.numel() ** 0.5  # zero-mean (loss-landscapes' were not)


def test_surface_centre_is_the_checkpoint_and_the_model_never_moves(tiny_run):
    from losslab.analysis.surface import axis, loss_line, loss_plane
    from losslab.train.checkpoints import named_direction
    ck = load_checkpoint(RunStore(tiny_run[0]).find(tiny_run[1]))
    obj = ck.objective()
    before = {n: p.clone() for n, p in ck.model.named_parameters()}
    alphas = axis(-1, 1, 4)  # 4 points do not hold 0: it is added
    assert 0.0 in alphas and len(alphas) == 5
    d1, d2 = named_direction(ck, obj, "random", 0), named_direction(ck, obj, "random", 1)
    plane = loss_plane(obj, d1, d2, points=4)
    i = list(alphas).index(0.0)
    assert plane.loss[i, i] == pytest.approx(obj.value, rel=1e-6)
    assert all(torch.equal(before[n], p) for n, p in ck.model.named_parameters())
    for chunk in (1, 3):  # one point at a time, and vmap over chunks (the last one short)
        assert np.allclose(loss_plane(obj, d1, d2, points=4, chunk=chunk).loss, plane.loss, rtol=1e-5)
    # toward the initialization: alpha = 1 is the step-0 checkpoint
    line = loss_line(obj, named_direction(ck, obj, "init"), (0.0, 1.0), points=2)
    assert line.loss[-1] == pytest.approx(load_checkpoint(ck.run, 0).objective().value, rel=1e-5)


def test_principal_directions_explain_the_trajectory(tiny_run):
    from losslab.analysis.directions import trajectory_directions
    from losslab.train.checkpoints import trajectory
    ck = load_checkpoint(RunStore(tiny_run[0]).find(tiny_run[1]))
    obj = ck.objective()
    _, states = trajectory(ck.run)
    (d1, d2), explained = trajectory_directions(obj, states, 2)
    assert d1.norm() == pytest.approx(1, rel=1e-5) and abs(float(d1 @ d2)) < 1e-5
    rows = torch.stack([torch.cat([s[n].flatten() for n in obj.params]) for s in states]).double()
    centered = rows - rows.mean(0)
    assert explained[0] == pytest.approx(float((centered @ d1.double()).square().sum() / centered.square().sum()),
                                         rel=1e-4)


def test_a_trajectory_on_a_known_plane_projects_to_its_coordinates():
    """States theta + a_t e1 + b_t e2: their principal directions span (e1, e2) with all of the
    variance, and the projection gives back (a_t, b_t) up to a rotation within the plane."""
    from losslab import Objective
    from losslab.analysis.directions import project_trajectory, trajectory_directions

    model = torch.nn.Linear(4, 3).double()
    obj = Objective(model, torch.nn.functional.cross_entropy, (torch.randn(8, 4).double(), torch.zeros(8).long()))
    e, _ = torch.linalg.qr(torch.randn(obj.size, 2, dtype=torch.float64))
    ab = np.array([[0.0, 0.0], [1.0, 0.2], [2.5, -0.4], [3.0, 1.0], [-1.0, 0.5]]) * [3.0, 1.0]
    theta = obj.flatten(obj.params)
    states = [obj.unflatten(theta + e @ torch.tensor(row)) for row in ab]
    (d1, d2), explained = trajectory_directions(obj, states, 2)
    assert sum(explained) == pytest.approx(1.0)
    coords = project_trajectory(obj, states, [d1, d2])
    rotation = np.linalg.lstsq(coords, ab, rcond=None)[0]
    assert np.allclose(coords @ rotation, ab, atol=1e-9) and np.allclose(rotation.T @ rotation, np.eye(2), atol=1e-9)


def test_a_pca_plane_spans_the_trajectory_and_draws_it(tiny_run):
    root, run_id = tiny_run
    out = losslab_here("landscape", run_id, "--out", root, "--dims", "2", "--direction", "pca1", "--direction2", "pca2",
                  "--points", "7", "--json")
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    coords = np.array(r["trajectory"]["coordinates"])
    assert coords.shape == (len(r["trajectory"]["steps"]), 2)
    assert np.allclose(coords[-1], 0, atol=1e-4)  # the last checkpoint is the plane's centre
    for axis, grid in enumerate((np.array(r["alphas"]), np.array(r["betas"]))):  # each axis spans the trajectory
        low, high = coords[:, axis].min(), coords[:, axis].max()
        assert grid.min() < low and high < grid.max() and grid.max() - grid.min() < 1.5 * (high - low) + 1e-6


def test_landscape_command(tiny_run):
    root, run_id = tiny_run
    out = losslab_here("landscape", run_id, "--out", root, "--dims", "2", "--points", "5", "--json")
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert np.array(r["loss"]).shape == (5, 5) and r["seeds"] == [0, 1] and r["figure"].endswith(".png")
    assert re.search(r"^losslab: landscape of .*: grid points: 25/25 in [\d.]+ s, done$", out.stderr, re.M)
    page = open(r["figure_3d"]).read()  # interactive, and viewable offline: plotly.js is inside
    assert "Plotly.newPlot" in page and "<script src=\"http" not in page and "log10 loss" in page
    out = losslab_here("landscape", run_id, "--out", root, "--all-checkpoints", "--points", "5", "--json")
    r = json.loads(out.stdout)
    assert np.array(r["loss"]).shape == (len(r["steps"]), 5)
    out = losslab_here("landscape", run_id, "--out", root, "--direction", "step", "--points", "3", "--json")
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("args,message", [
    (["--range", "1:-1"], "holds no grid"),
    (["--points", "1"], "1 is not in [2, 1001]"),
    (["--range", "wide"], "--range expects START:STOP"),
    (["--direction", "sideways"], "unknown direction 'sideways'"),
    (["--direction", "checkpoint:7"], "has no checkpoint at step 7"),
    (["--direction", "pca40"], "too few for 40 principal directions"),
    (["--dims", "2", "--all-checkpoints"], "--all-checkpoints draws a line"),
    (["--normalization", "row"], "unknown normalization 'row'"),
])
def test_bad_landscape_input_is_one_line(tiny_run, args, message):
    root, run_id = tiny_run
    out = losslab_here("landscape", run_id, *args, "--points" if "--points" not in args else "--seed", "5",
                       "--out", root)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and message in out.stderr, out.stderr


def test_first_layer_shortcut_gives_the_plain_values(tmp_path):
    """On an MLP the surface reuses W x, D1 x, D2 x: the values are those of full forward passes."""
    from torch.func import functional_call

    from losslab.analysis.directions import random_direction
    from losslab.analysis.surface import _first_linear, loss_plane
    from losslab.config import load_config
    from losslab.train.loop import train
    store = RunStore(tmp_path)
    s = train(load_config("parity", ["train.max_steps=30", "model.depth=2", "model.bias=true"]), store)
    ck = load_checkpoint(store.find(s["run_id"]))
    obj = ck.objective()
    assert _first_linear(ck.model) is not None
    d1, d2 = random_direction(obj, 0, include_biases=True), random_direction(obj, 1)
    plane = loss_plane(obj, d1, d2, (-0.5, 0.5), points=3)
    assert np.allclose(loss_plane(obj, d1, d2, (-0.5, 0.5), points=3, chunk=2).loss, plane.loss, rtol=1e-5)
    x, y = ck.data()
    for i, a in enumerate(plane.alphas):
        for j, b in enumerate(plane.betas):
            params = obj.unflatten(obj.flatten(obj.params) + a * d1 + b * d2)
            with torch.no_grad():
                out = functional_call(ck.model, params, (x,))
            assert plane.loss[i, j] == pytest.approx(ck.loss_fn(out, y).item(), rel=1e-5)
            assert plane.acc[i, j] == pytest.approx(ck.loss_fn.accuracy(out, y).item(), abs=1e-12)


def test_sharpness_command(tiny_run):
    root, run_id = tiny_run
    out = losslab_here("sharpness", run_id, "--out", root, "--steps", "5", "--restarts", "1", "--json")
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["sam"]["sharpness"] > 0 and r["keskar"]["sharpness"] > 0 and r["sam"]["starts"] == 2
    assert "SAM's ascents to their tolerance (gradients): " in out.stderr  # at most 1 + 2 starts x 5
    assert "Keskar's ascent (gradients): 21/21 in" in out.stderr  # 1 + --keskar-steps 20
    assert r["sam"]["steps"] <= 2 * 5
    pre = r["preconditioned"]  # the tiny run trains with AdamW
    assert pre["preconditioned_lambda_max"] > 0 and pre["threshold"] == pytest.approx(3.8 / (0.1 * 3e-3))
    bad = losslab_here("sharpness", run_id, "--out", root, "--rho", "-1")
    assert bad.returncode == 2 and "--rho': -1 is not in (0, inf]" in bad.stderr


def test_probes_during_training_match_the_checkpoints(tmp_path):
    from losslab.analysis.curvature import hessian_eigenvalues
    from losslab.config import load_config
    from losslab.train.loop import train
    store = RunStore(tmp_path)
    cfg = load_config("grokking", ["task.p=11", "model.d_model=16", "model.d_mlp=32", "train.max_steps=40",
                                   "train.eval_every=10", "optim.lr=3e-3", "probes.every=10", "probes.hessian=true",
                                   "probes.preconditioned=true"])
    s = train(cfg, store)
    assert any(f.endswith("curvature.png") for f in s["figures"]) and s["slingshots"] == []
    probes = {(step, name): v for step, split, name, v in store.find(s["run_id"]).metric_rows() if split == "probe"}
    for step in (0, 40):
        ck = load_checkpoint(store.find(s["run_id"]), step)
        exact = hessian_eigenvalues(ck.objective(), k=1).lambda_max
        assert probes[(step, "lambda_max")] == pytest.approx(exact, rel=1e-4)
        w = ck.weights()["unembed.weight"]
        assert probes[(step, "norm_fro/unembed.weight")] == pytest.approx(float(w.norm()), rel=1e-6)
        assert probes[(step, "norm_spec/unembed.weight")] == pytest.approx(float(torch.linalg.svdvals(w)[0]), rel=1e-5)
    assert probes[(0, "cos_theta0")] == pytest.approx(1.0) and (0, "cos_previous") not in probes
    assert probes[(10, "edge_of_stability")] == pytest.approx(2 / 3e-3)
    assert probes[(40, "preconditioned_lambda_max")] > 0 and (0, "preconditioned_lambda_max") not in probes


def test_basin_command(tmp_path):
    store = tmp_path / "store"
    out = losslab_here("run", "parity", "--set", "loss=mse", "--set", "model.width=8", "--set", "train.max_steps=50",
                  "--out", store, "--json")
    assert out.returncode == 0, out.stderr
    run_id = json.loads(out.stdout)["run_id"]
    out = losslab_here("basin", run_id, "--out", store, "--max-examples", "40", "--json")
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["examples"] == 40 and r["outputs"] == 1 and r["n_params"] == 50 * 8 + 8 + 8
    assert r["rank_G"] <= 40 and r["behavior_manifold_dim"] == r["n_params"] - r["rank_G"]
    assert r["rank_H"] >= 1 and set(r["shared_activation_patterns"]) == {"net.1"}


def test_trajectory_command(tiny_run):
    root, run_id = tiny_run
    out = losslab_here("trajectory", run_id, "--out", root, "--json")
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    n = len(r["steps"])
    assert r["cos_theta0"][0] == pytest.approx(1.0) and len(r["cos_consecutive"]) == n - 1
    assert sum(r["explained_variance"]) <= 1 + 1e-9 and r["explained_by_two"] > 0.5
    assert len(r["norms"]["fro/unembed.weight"]) == n and r["figure"].endswith(".png")


def test_a_checkpoint_that_does_not_fit_the_config_is_one_line(tmp_path, tiny_run):
    import shutil
    root, run_id = tiny_run
    copy = tmp_path / "copy"
    shutil.copytree(root / run_id, copy)
    config = copy / "config.toml"
    config.write_text(config.read_text().replace("d_model = 32", "d_model = 48"))
    out = losslab_here("hessian", copy, "--out", tmp_path)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "does not fit its config" in out.stderr


def test_a_trajectory_in_a_plane_is_all_in_two_directions_and_draws_its_states_where_they_are():
    """States theta_0 + a_i d1 + b_i d2: two principal directions hold all the variance, the
    projection keeps every distance between states, and the figure's points are the projection."""
    import numpy as np

    from losslab.analysis.trajectory import trajectory_geometry

    g = torch.Generator().manual_seed(0)
    base, d1, d2 = (torch.randn(5, 4, generator=g, dtype=torch.float64) for _ in range(3))
    ab = torch.randn(6, 2, generator=g, dtype=torch.float64)
    geometry = trajectory_geometry([{"w": base + a * d1 + b * d2} for a, b in ab])
    assert geometry.explained_by_two == pytest.approx(1.0, abs=1e-12)
    xy = np.asarray(geometry.projected)
    flat = torch.stack([(a * d1 + b * d2).flatten() for a, b in ab]).numpy()
    assert np.allclose(np.linalg.norm(xy[:, None] - xy[None], axis=2),
                       np.linalg.norm(flat[:, None] - flat[None], axis=2), atol=1e-9)
    fig = geometry.plot(steps=[1, 2, 4, 8, 16, 32])
    assert np.allclose(fig.axes[0].collections[0].get_offsets(), xy)
