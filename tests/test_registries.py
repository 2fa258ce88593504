"""A new measure, task and analysis are one file each (tests/extensions/), registered in one line,
and then work everywhere the built-in ones do: the Monitor and its instruments for the measure; the
config, `--set`, its refusals, the footprint check and a training run for the task; a result that
draws itself and its interactive twin on the run's page for the analysis."""

import importlib
import json
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import losslab as ll
from losslab.config import ProbesConfig, load_config
from losslab.core.errors import LossLabError
from losslab.monitor import Monitor
from losslab.monitor.instruments import scalar_tag
from losslab.monitor.measures import MEASURES
from losslab.report.pages import run_page
from losslab.report.plots import INTERACTIVE, analysis_figure
from losslab.store import RunStore
from losslab.tasks import TASKS
from tests.helpers import fake_run, losslab_here


@pytest.fixture
def extension():
    """Import an extension's file (its @register runs), and take it out of its registry after."""
    loaded = []

    def load(module: str, registry: dict, name: str):
        loaded.append((module, registry, name))
        return importlib.import_module(f"tests.extensions.{module}")
    yield load
    for module, registry, name in loaded:
        registry.pop(name, None)
        sys.modules.pop(f"tests.extensions.{module}", None)


def test_a_measure_in_one_file_is_measured_by_the_monitor_against_a_dense_hessian(extension, tmp_path):
    extension("gradient_curvature", MEASURES, "gradient_curvature")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()
    x, y = torch.randn(32, 4, dtype=torch.float64), torch.randn(32, 1, dtype=torch.float64)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    mon = Monitor(model, optimizer, (x, y), F.mse_loss, store=tmp_path, every=5,
                  measures=["gradient_curvature", "sharpness"])
    for _ in range(10):
        loss = F.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        mon.step(loss)
    mon.close()
    measured = {(s, name): v for s, split, name, v in mon.rows if split == "probe"}
    obj = ll.Objective(model, F.mse_loss, (x, y))
    g, h = obj.value_and_grad()[1], ll.hessian_matrix(obj)
    assert measured[(10, "gradient_curvature")] == pytest.approx(float(g @ h @ g / (g @ g)), rel=1e-8)
    assert measured[(10, "lambda_max")] == pytest.approx(float(torch.linalg.eigvalsh(h)[-1]), rel=1e-3)
    assert scalar_tag("probe", "gradient_curvature") == "2 step size and stability/gradient_curvature/probe"


def test_an_unknown_measure_is_refused_with_the_registered_ones(extension, tmp_path):
    extension("gradient_curvature", MEASURES, "gradient_curvature")
    model = torch.nn.Linear(2, 1)
    with pytest.raises(LossLabError, match="unknown measures \\['curvature'\\].*gradient_curvature"):
        Monitor(model, torch.optim.SGD(model.parameters(), lr=0.1), (torch.randn(4, 2), torch.randn(4, 1)),
                F.mse_loss, store=tmp_path, measures=["curvature"])


def test_a_task_in_one_file_is_configured_refused_and_trained(extension, tmp_path):
    extension("majority_task", TASKS, "majority")
    cfg = load_config("parity", ["task.name=majority", "task.n=7"])
    # the keys both tasks take kept (n_train, n_test), those only parity takes dropped (k)
    assert cfg.task.model_dump() == {"name": "majority", "n": 7, "n_train": 300, "n_test": 100}
    assert cfg.describe().startswith("majority of 7 bits, 300 examples; MLP 1 x 500")
    task = cfg.task.build(0)
    assert cfg.task.shape() == (len(task.y_train) + len(task.y_val), task.input_dim, None, task.n_classes)
    assert torch.equal(task.y_train, (task.x_train.sum(1) > 0).long())
    with pytest.raises(LossLabError, match="^config task: n=8 is even"):
        load_config("parity", ["task.name=majority", "task.n=8"])
    with pytest.raises(LossLabError, match="^config task.k: unknown key"):
        load_config({"task": {"name": "majority", "k": 2}})
    done = losslab_here("run", "parity", "--set", "task.name=majority", "--set", "task.n=9", "--set", "train.max_steps=60",
                        "--store", tmp_path, "--json")
    assert done.returncode == 0, done.stderr
    [run] = RunStore(tmp_path).summaries()
    assert run["status"] == "completed" and run["final"]["train_acc"] > 0.5
    assert RunStore(tmp_path).find(run["run_id"]).config().describe().startswith("majority of 9 bits")  # read back


def test_the_probes_keys_of_a_run_are_the_switches_the_measures_declare():
    """losslab's runs turn measures on by [probes] key: every key turns on a measure, every measure's
    switch is a key (a new kind of probe needs its key in ProbesConfig, with its description)."""
    switches = {m.switch for m in MEASURES.values() if m.switch}
    assert switches == set(ProbesConfig.model_fields) - {"every"}


def test_an_analysis_in_one_file_draws_itself_and_its_twin_on_the_run_page(extension, store):
    analysis = extension("step_size_curve", INTERACTIVE, "step_size_curve")
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1, bias=False).double()
    obj = ll.Objective(model, F.mse_loss, (torch.randn(20, 3, dtype=torch.float64),
                                          torch.randn(20, 1, dtype=torch.float64)))
    etas = [0.0, 0.1, 0.2, 0.4]
    curve = analysis.step_size_curve(obj, etas)
    value, g = obj.value_and_grad()
    h = ll.hessian_matrix(obj)
    exact = [value - eta * float(g @ g) + eta**2 / 2 * float(g @ h @ g) for eta in etas]  # the loss is quadratic
    assert curve.losses == pytest.approx(exact, rel=1e-10)
    assert np.allclose(curve.plot().axes[0].lines[0].get_ydata(), exact)

    run = store.find(fake_run(store, 0, False, np.random.default_rng(0))["run_id"])
    saved = json.loads(run.save_analysis("step_size_curve", "step_size", {"etas": etas}, curve.to_dict()).read_text())
    assert analysis_figure(saved).data[0].y == pytest.approx(exact, rel=1e-10)
    page = run_page(run)
    assert '<h3>step_size</h3>' in page and 'id="analysis-0"' in page
