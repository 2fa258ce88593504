"""Test problems with known minima, and optimizers raced on them."""

import json
import math

import pytest
import torch

from losslab.optimize.functions import PROBLEMS, problem
from losslab.optimize.run import parse_spec, run
from tests.helpers import losslab_here


@pytest.mark.parametrize("name", PROBLEMS)
def test_minimizer_is_a_stationary_point_with_the_known_value(name):
    p = problem(name)
    x = p.minimizer.clone().requires_grad_(True)
    value = p.f(x)
    (grad,) = torch.autograd.grad(value, x)
    assert grad.norm() < 1e-7
    if "rosenbrock" in name or "rastrigin" in name:
        assert value.item() == 0.0
    start = p.start.clone().requires_grad_(True)
    assert p.f(start) > value  # the start is not already optimal


@pytest.mark.parametrize("name", PROBLEMS)
def test_functions_are_batched(name):
    p = problem(name)
    points = p.start + torch.randn(5, *p.start.shape, dtype=p.start.dtype)
    assert torch.allclose(p.f(points), torch.stack([p.f(q) for q in points]))


def test_rosenbrock_chain_closed_form():
    x = torch.tensor([[0.5, -1.0, 2.0]], dtype=torch.float64)
    expected = 100 * (-1 - 0.25) ** 2 + 0.5**2 + 100 * (2 - 1) ** 2 + 2**2
    assert math.isclose(problem("rosenbrock-nd", 3).f(x).item(), expected)
    assert math.isclose(problem("log-rosenbrock").f(x[:, :2]).item(), math.log1p(100 * 1.25**2 + 0.25))


def test_on_log_rosenbrock_adaptive_methods_reach_the_minimum_and_sgd_crawls():
    runs = {t.optimizer: t for t in run(problem("log-rosenbrock"), ["sgd", "adam", "adamax"], 1000)}
    assert runs["adam"].steps_to(1e-3) is not None and runs["adamax"].steps_to(1e-3) is not None
    assert runs["sgd"].distances[-1] > 0.5  # the best of every learning rate on the grid
    assert runs["sgd"].steps_to(0.1) is None


def test_learning_rate_tuning_picks_the_closest_final_point():
    p = problem("least-squares")
    tuned = run(p, ["adam"], 200)[0]
    for lr in (1e-3, 1e-2, 1e-1):
        assert run(p, [f"adam@{lr}"], 200)[0].distances[-1] >= tuned.distances[-1]


def test_spec_parsing():
    assert parse_spec("momentum@0.01") == ("momentum", "sgd", {"momentum": 0.9}, 0.01)
    assert parse_spec("muon")[2]["orthogonalization"] == "svd"
    for bad, message in (("lion", "unknown optimizer"), ("adam@-1", "must be > 0"), ("adam@fast", "a number")):
        with pytest.raises(ValueError, match=message):
            parse_spec(bad)


@pytest.mark.slow  # the races' numbers stay in the default suite; the tutorials run this command at make docs
def test_optimize_command_writes_figures_animation_and_results(tmp_path):
    out = losslab_here("optimize", "rosenbrock", "--optimizers", "adam@0.05,momentum@0.001,muon@0.01",
                  "--steps", "60", "--out", tmp_path, "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert [o["optimizer"] for o in result["optimizers"]] == ["adam", "momentum", "muon"]
    names = sorted(p.split("/")[-1] for p in result["figures"])
    assert names == ["distance.png", "trajectories.gif", "trajectories.png"]
    assert json.loads((tmp_path / "optimize" / result["folder"].split("/")[-1] / "results.json").read_text())


def test_optimize_bad_input_is_one_line(tmp_path):
    for args in (["nope"], ["rosenbrock", "--optimizers", "lion"], ["rosenbrock", "--steps", "0"]):
        out = losslab_here("optimize", *args, "--out", tmp_path)
        assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert not (tmp_path / "optimize").exists()


def test_each_optimizer_has_its_panel_and_rastrigin_paths_leave_the_diagonal():
    """Small multiples: a panel per optimizer holding exactly its path (eight paths from one start
    overplotted); from Rastrigin's start, off the diagonal, the paths are not all one line."""
    from losslab.optimize.figures import trajectory_figure

    prob = problem("rastrigin")
    runs = run(prob, ["sgd@0.001", "adam@0.3", "rmsprop@0.3", "momentum@0.01", "sam@0.01"], 100)
    fig = trajectory_figure(prob, runs)
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.axison]
    assert len(panels) == len(runs)
    for ax, t in zip(panels, runs):
        (path,) = [line for line in ax.lines if len(line.get_xdata()) == len(t.points)]
        assert (path.get_xdata() == t.points[:, 0, 0].numpy()).all() and t.optimizer in ax.get_title()
    spread = [torch.linalg.matrix_rank((t.points[:, 0] - t.points[0, 0]).double(), atol=1e-3) for t in runs]
    assert max(spread) == 2  # some path bends: not every step along one line
