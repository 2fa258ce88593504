"""The Monitor in a user's own loop: its measures equal the analyses' functions and closed forms
at the same step, what it writes is an ordinary run, and bad input is refused before the loop."""

import json
import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import losslab as ll
from losslab.analysis.signature import run_signature
from losslab.core.errors import LossLabError
from losslab.monitor import series
from losslab.monitor.measures import gradient_noise
from losslab.store import RunStore
from tests.helpers import T, drawn, fake_benchmark, losslab_here, open_page


def half_squared(out, y):
    return 0.5 * (out.squeeze(-1) - y).square().mean()


def test_gradient_noise_of_linear_regression_equals_its_closed_form():
    """Per-example gradients of 0.5 (w.x + b - y)^2 are (w.x + b - y) (x, 1): B_simple = tr(Sigma) / |G|^2
    with tr(Sigma) their unbiased covariance trace and |G|^2 = |mean g|^2 - tr(Sigma) / n."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 5, generator=g, dtype=torch.float64)
    y = x @ torch.arange(1.0, 6.0, dtype=torch.float64) + 0.5 * torch.randn(300, generator=g, dtype=torch.float64)
    model = torch.nn.Linear(5, 1).double()
    scale, snr = gradient_noise(ll.Objective(model, half_squared, [(x[:128], y[:128]), (x[128:], y[128:])]))
    residual = (model(x).squeeze(-1) - y).detach().numpy()
    per_example = residual[:, None] * np.hstack([x.numpy(), np.ones((300, 1))])
    mean = per_example.mean(0)
    trace = ((per_example - mean) ** 2).sum() / 299
    assert scale == pytest.approx(trace / (mean @ mean - trace / 300), rel=1e-10)
    assert snr == pytest.approx((mean @ mean) / (trace / 300), rel=1e-10)


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Linear(6, 8), torch.nn.Linear(8, 3)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)))


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                reason="no CUDA device here"))]


def train(model, opt, mon, x, y, steps):
    """Full-batch steps on (x, y), each given to the monitor."""
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        mon.step(loss)


def loop(tmp_path, measures, every=5, steps=20, optimizer=torch.optim.AdamW, device="cpu", **options):
    """A plain PyTorch loop with the monitor; returns the monitor, the model, its optimizer and the
    weights after every step (to check the measures against); its data stays in loop.data."""
    torch.manual_seed(0)
    x, y = torch.randn(96, 6, dtype=torch.float64).to(device), torch.randint(0, 3, (96,)).to(device)
    loop.data = x, y
    model = Net().double().to(device)
    opt = optimizer(model.parameters(), lr=0.05)
    mon = ll.Monitor(model, opt, probe=(x[:32], y[:32]), loss=F.cross_entropy, store=tmp_path / "runs", name="mine",
                     every=every, measures=measures, **options)
    weights, losses = [{k: v.clone() for k, v in model.state_dict().items()}], []
    for step in range(steps):
        batch = slice(32 * (step % 3), 32 * (step % 3 + 1))
        loss = F.cross_entropy(model(x[batch]), y[batch])
        loss.backward()
        opt.step()
        opt.zero_grad()
        mon.step(loss)
        weights.append({k: v.clone() for k, v in model.state_dict().items()})
        losses.append(loss.item())
    return mon, model, opt, (x[:32], y[:32]), weights, losses


def rows_at(mon, step):
    return {name: v for s, split, name, v in mon.rows if s == step and split == "probe"}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("tolerance, accuracy", [(None, 1e-4), (1e-3, 1e-6)], ids=["default tolerance", "1e-3"])
def test_the_monitors_curvature_equals_the_dense_hessian_and_the_analysis_at_the_same_step(tmp_path, device,
                                                                                            tolerance, accuracy):
    """lambda_max to the accuracy its tolerance states (1e-2 by default: ~1e-4; 1e-3: ~1e-6)."""
    options = {"tolerance": tolerance} if tolerance else {}
    mon, model, opt, probe, weights, _ = loop(tmp_path, ["sharpness", "lambda_min", "preconditioned_sharpness",
                                                         "gradient_noise"], steps=10, device=device, **options)
    mon.close()
    at10 = rows_at(mon, 10)
    obj = ll.Objective(model, F.cross_entropy, probe)  # the weights after step 10: the model as it is
    dense = torch.linalg.eigvalsh(ll.hessian_matrix(obj))
    assert at10["lambda_max"] == pytest.approx(float(dense[-1]), rel=accuracy)
    assert at10["lambda_min"] == pytest.approx(float(dense[0]), abs=1e-4 * float(dense[-1]))  # its stated accuracy
    assert at10["edge_of_stability"] == pytest.approx(2 / 0.05)
    # the measurement at 10 started from the eigenvector of the one at 5; the analysis here starts cold
    assert "preconditioned" in mon.measures.warm
    assert at10["preconditioned_lambda_max"] == pytest.approx(ll.preconditioned_sharpness(obj, opt).lambda_max,
                                                              rel=accuracy)


@pytest.mark.parametrize("device", DEVICES)
def test_the_exact_gauss_newton_trace_is_the_dense_matrixs_at_the_same_step(tmp_path, device):
    mon, model, _, probe, _, _ = loop(tmp_path, ["ggn_trace"], steps=5, device=device)
    mon.close()
    dense = ll.hessian_matrix(ll.Objective(model, F.cross_entropy, probe), curvature="ggn")
    assert rows_at(mon, 5)["ggn_trace"] == pytest.approx(torch.trace(dense).item(), rel=1e-10)


@pytest.mark.parametrize("device", DEVICES)
def test_the_dimension_of_chosen_layers_equals_the_estimators_on_what_they_see(tmp_path, device):
    from losslab.analysis.dimension import levina_bickel, two_nn

    mon, model, _, probe, weights, _ = loop(tmp_path, ["dimension"], steps=10, device=device, layers=["b"])
    mon.close()
    model.load_state_dict(weights[5])
    with torch.no_grad():
        seen = torch.tanh(model.a(probe[0])).double().cpu().numpy()  # what b sees after step 5
    measured = {k: v for k, v in rows_at(mon, 5).items() if k.startswith("dim_")}
    assert measured == pytest.approx({"dim_twonn/b": two_nn(seen), "dim_mle/b": levina_bickel(seen)}, rel=1e-12)


def seven_steps(tmp_path, build, measures, device="cpu"):
    """Seven full-batch AdamW steps of build() (float64) from seed 0, with a monitor of `measures`
    every 3 steps (lambda_max to ~1e-6: tolerance 1e-3), or bare where there are none: (the model,
    the monitor, its probe)."""
    torch.manual_seed(0)
    model = build().to(device).double()
    opt = torch.optim.AdamW(model.parameters(), lr=0.05)
    x, y = torch.randn(64, 6, dtype=torch.float64, device=device), torch.randint(0, 3, (64,), device=device)
    mon = ll.Monitor(model, opt, (x[:32], y[:32]), F.cross_entropy, store=tmp_path / "-".join(measures), every=3,
                     measures=measures, tolerance=1e-3) if measures else None
    for _ in range(7):
        F.cross_entropy(model(x), y).backward()
        opt.step()
        opt.zero_grad()
        if mon is not None:
            mon.step(0.0)
    if mon is not None:
        mon.close()
    return model, mon, (x[:32], y[:32])


def test_the_measures_see_no_dropout_and_leave_the_loops_randomness_alone(tmp_path):
    """With dropout in the model, a measured loop goes through the weights of the unmeasured one (the
    measures draw no random numbers), and lambda_max is that of the network without dropout."""
    def build():
        return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Dropout(0.3),
                                   torch.nn.Linear(16, 3))
    bare, _, _ = seven_steps(tmp_path, build, [])
    measured, mon, probe = seven_steps(tmp_path, build, ["sharpness", "gradient_noise", "trace"])
    for a, b in zip(bare.parameters(), measured.parameters()):
        assert torch.equal(a, b)
    assert measured.training and measured[2].training  # given back as it was
    measured.eval()
    dense = torch.linalg.eigvalsh(ll.hessian_matrix(ll.Objective(measured, F.cross_entropy, probe, mode="train")))
    assert rows_at(mon, 7)["lambda_max"] == pytest.approx(float(dense[-1]), rel=1e-5)


class Normalized(Net):
    """BatchNorm in training mode between the layers: each batch normalized by its own statistics."""

    def __init__(self):
        super().__init__()
        self.norm = torch.nn.BatchNorm1d(8)

    def forward(self, x):
        return self.b(torch.tanh(self.norm(self.a(x))))


@pytest.mark.parametrize("device", DEVICES)
def test_the_measures_leave_batchnorms_statistics_as_they_were(tmp_path, device):
    """The probe measures' forwards in training mode (the dimension measure's on the model itself)
    leave BatchNorm's running statistics as the loop left them: a measured loop ends with the
    weights and the buffers of the unmeasured one; lambda_max is the train-mode probe loss's."""
    bare, _, _ = seven_steps(tmp_path, Normalized, [], device)
    measured, mon, probe = seven_steps(tmp_path, Normalized, ["sharpness", "dimension", "trace"], device)
    assert measured.norm.num_batches_tracked == bare.norm.num_batches_tracked == 7
    for a, b in zip([*bare.parameters(), *bare.buffers()], [*measured.parameters(), *measured.buffers()]):
        assert torch.equal(a, b)
    dense = torch.linalg.eigvalsh(ll.hessian_matrix(ll.Objective(measured, F.cross_entropy, probe, mode="train")))
    assert rows_at(mon, 7)["lambda_max"] == pytest.approx(float(dense[-1]), rel=1e-5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("every, ring_rows", [(1, None), (4, None), (4, 3)],
                         ids=["norms at every step", "a ring of the window", "a ring emptied within the window"])
def test_every_step_measures_loss_series_and_signature_are_the_loops_own(tmp_path, monkeypatch, device, every,
                                                                         ring_rows):
    """At every step, recomputed from the weights the loop went through: the norm of the step's own
    gradient (at theta_t, on its batch), the Frobenius norms after it and ||w_t+1 - w_t|| / ||w_t||;
    the last, unfinished window read at close. Whether the norms are taken at every step (a ring of
    fewer than two rows) or from a ring of copies, emptied at the reading or before."""
    from torch.func import functional_call

    if ring_rows:  # a step keeps Net's 72 matrix entries before and after it and its 83 gradients, float64
        monkeypatch.setattr(series, "RING_BYTES", ring_rows * 8 * (2 * 72 + 83))
    mon, model, _, _, weights, losses = loop(tmp_path, ["step_grad_norm", "weight_norms", "update_ratio"],
                                             every=every, steps=13, device=device)
    assert mon._series.capacity == (ring_rows or (every if every > 1 else 0))
    summary = mon.close()
    data = loop.data
    for step in range(13):
        batch = slice(32 * (step % 3), 32 * (step % 3 + 1))
        params = {k: v.clone().requires_grad_() for k, v in weights[step].items()}
        loss = F.cross_entropy(functional_call(model, params, (data[0][batch],)), data[1][batch])
        gradient = torch.autograd.grad(loss, list(params.values()))
        assert rows_at(mon, step)["step_grad_norm"] == pytest.approx(
            float(torch.cat([g.flatten() for g in gradient]).norm()), rel=1e-12)
        before, after = weights[step]["a.weight"], weights[step + 1]["a.weight"]
        assert rows_at(mon, step + 1)["update_ratio/a.weight"] == pytest.approx(
            float((after - before).norm() / before.norm()), rel=1e-12)
        assert rows_at(mon, step + 1)["norm_fro/b.weight"] == pytest.approx(
            float(weights[step + 1]["b.weight"].norm()), rel=1e-12)
    recorded = sorted((s, v) for s, split, name, v in mon.rows if (split, name) == ("train", "step_loss"))
    assert recorded == list(enumerate(losses))
    assert summary["signature"] == run_signature(mon.rows, "train_loss", 400)


@pytest.mark.parametrize("every", [1, 4], ids=["norms at every step", "a ring"])
def test_a_step_the_optimizer_skipped_is_recorded_as_nan(tmp_path, every):
    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
    mon = ll.Monitor(model, opt, (x, y), F.cross_entropy, store=tmp_path, every=every,
                     measures=["step_grad_norm", "update_ratio"])
    for step in range(4):
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        if step != 2:  # e.g. a GradScaler that found an inf
            opt.step()
        opt.zero_grad()
        mon.step(loss)
    mon.close()
    norms = [v for s, split, name, v in sorted(mon.rows) if name == "step_grad_norm"]
    assert np.isnan(norms[2]) and np.isfinite(norms[:2] + norms[3:]).all()
    ratios = [v for s, split, name, v in sorted(mon.rows) if name == "update_ratio/a.weight"]  # at steps 1..4
    assert np.isnan(ratios[2]) and np.isfinite(ratios[:2] + ratios[3:]).all()


def test_a_parameter_without_a_gradient_adds_nothing_to_the_gradient_norm(tmp_path):
    model = Net()
    model.unused = torch.nn.Linear(2, 2)  # in the optimizer, never in the forward: its grad stays None
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
    mon = ll.Monitor(model, opt, (x, y), F.cross_entropy, store=tmp_path, every=2, measures=["step_grad_norm"])
    F.cross_entropy(model(x), y).backward()
    expected = float(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]).norm())
    opt.step()
    mon.step(0.0)
    mon.close()
    assert rows_at(mon, 0)["step_grad_norm"] == pytest.approx(expected, rel=1e-6)


def test_a_training_that_diverges_is_measured_no_further_and_goes_on(tmp_path):
    """Weights gone NaN in a user's loop: the measurements there record the losses and NaN
    evaluations but no probe measures, and never raise into the loop, which goes on to close."""
    torch.manual_seed(0)
    x, y = torch.randn(64, 6, dtype=torch.float64), torch.randint(0, 3, (64,))
    model = Net().double()
    opt = torch.optim.AdamW(model.parameters(), lr=0.05)
    mon = ll.Monitor(model, opt, probe=(x[:32], y[:32]), loss=F.cross_entropy, store=tmp_path, every=5,
                     measures=["step_grad_norm", "sharpness", "preconditioned_sharpness", "gradient_noise"],
                     validation=(x[32:], y[32:]))
    for step in range(1, 16):
        if step == 8:
            with torch.no_grad():
                model.a.weight.fill_(math.nan)
        loss = F.cross_entropy(model(x[:32]), y[:32])
        loss.backward()
        opt.step()
        opt.zero_grad()
        mon.step(loss)
    summary = mon.close()
    assert {"lambda_max", "preconditioned_lambda_max", "gradient_noise_scale"} <= set(rows_at(mon, 5))
    for step in (10, 15):
        assert not {"lambda_max", "preconditioned_lambda_max", "gradient_noise_scale"} & set(rows_at(mon, step))
        evaluated = {(split, name): v for s, split, name, v in mon.rows if s == step and split in ("train", "val")}
        assert math.isnan(evaluated[("val", "loss")]) and math.isnan(evaluated[("train", "loss")])
    assert math.isnan(summary["final"]["val_loss"])


def test_a_monitored_run_is_an_ordinary_run(tmp_path):
    mon, *_ = loop(tmp_path, ["step_grad_norm", "weight_norms", "gradient_noise"], steps=15)
    summary = mon.close()
    root = tmp_path / "runs"
    listed = json.loads(losslab_here("runs", "--out", root, "--json").stdout)
    assert [r["run_id"] for r in listed] == [summary["run_id"]] and listed[0]["status"] == "completed"
    shown = json.loads(losslab_here("show", "mine", "--out", root, "--json").stdout)
    assert shown["monitor"]["optimizer"] == "AdamW" and shown["steps"] == 15
    table = tmp_path / "m.csv"
    assert losslab_here("export", "mine", "--out", root, "--table", table).returncode == 0
    header = table.read_text().splitlines()[0]
    assert "probe/gradient_noise_scale" in header and "train/step_loss" in header
    page = losslab_here("report", "mine", "--out", root, "--json")
    assert page.returncode == 0
    text = open(json.loads(page.stdout)["page"]).read()
    assert "Monitored in your own training loop" in text
    assert "<h2>Events</h2>" not in text and "memorization" not in text  # no validation data: no grokking events
    refused = losslab_here("hessian", "mine", "--out", root)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1


class Noisy(Net):
    """Noise drawn in the forward, not by an nn.Dropout: the monitor cannot turn it off."""

    def forward(self, x):
        return super().forward(x + 0.1 * torch.randn_like(x))


def two_betas(params, lr):
    """AdamW with its second param group (the second layer) at another beta1."""
    params = list(params)
    return torch.optim.AdamW([{"params": params[:2]}, {"params": params[2:], "betas": (0.5, 0.999)}], lr=lr)


@pytest.mark.parametrize("change,message", [
    ({"measures": ["sharpnes"]}, "unknown measures ['sharpnes']"),
    ({"measures": ["preconditioned_sharpness"], "optimizer": torch.optim.SGD},
     "preconditioned_sharpness reads the state of Adam, AdamW or Shampoo, not SGD"),
    ({"measures": ["preconditioned_sharpness"], "optimizer": two_betas}, "the param groups' beta1 differ (0.5, 0.9)"),
    ({"probe": (torch.randn(4, 7), torch.zeros(4).long())}, "the probe does not fit the model"),
    ({"validation": (torch.randn(4, 7), torch.zeros(4).long())}, "the validation set does not fit the model"),
    ({"every": 0}, "every must be an integer >= 1"),
    ({"measures": ["sharpness"], "tolerance": 0}, "tolerance is Lanczos's relative residual, between 0 and 1"),
    ({"measures": ["dimension"], "probe": [(torch.randn(4, 6), torch.zeros(4).long())] * 2},
     "give the probe as (inputs, targets)"),
    ({"store": "FILE"}, "is a file, not a folder"),
    ({"measures": ["dimension"], "layers": ["a", "c"]}, "layers ['c'] are not modules of the model"),
    ({"measures": ["sharpness"], "layers": ["a"]}, "add 'dimension' to the measures"),
    ({"measures": ["sharpness"], "model": "noisy"}, "the probe measures need a loss without randomness"),
    ({"measures": ["gradient_noise"], "model": "normalized"},
     "gradient_noise takes per-example gradients (torch.func.vmap), which this model has not: BatchNorm in training "
     "mode normalizes each example by its batch"),
])
def test_bad_input_is_refused_at_construction_and_writes_nothing(tmp_path, change, message):
    (tmp_path / "FILE").write_text("")
    model = {"noisy": Noisy, "normalized": Normalized}.get(change.pop("model", None), Net)()
    optimizer = change.pop("optimizer", torch.optim.AdamW)(model.parameters(), lr=0.1)
    options = {"probe": (torch.randn(4, 6), torch.zeros(4).long()), "loss": F.cross_entropy,
               "store": tmp_path / "runs", **change}
    if options["store"] == "FILE":
        options["store"] = tmp_path / "FILE"
    with pytest.raises(LossLabError, match=re.escape(message)):
        ll.Monitor(model, optimizer, **options)
    assert not (tmp_path / "runs").exists()


def test_the_lightning_callback_writes_the_rows_of_the_plain_loop(tmp_path):
    """A tiny LightningModule trained with the callback records what the plain-loop monitor does at
    the same seed, batches and optimizer."""
    pl = pytest.importorskip("pytorch_lightning", reason="the lightning extra is not installed")
    from losslab.monitor.lightning import MonitorCallback

    torch.manual_seed(0)
    x, y = torch.randn(96, 6), torch.randint(0, 3, (96,))
    probe, measures = (x[:32], y[:32]), ["step_grad_norm", "weight_norms", "update_ratio", "sharpness"]

    class Tiny(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Linear(6, 8), torch.nn.Linear(8, 3)

        def forward(self, inputs):
            return self.b(torch.tanh(self.a(inputs)))

        def training_step(self, batch, _):
            return F.cross_entropy(self(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=0.05)

    batches = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32)
    torch.manual_seed(1)
    module = Tiny()
    callback = MonitorCallback(probe, F.cross_entropy, store=tmp_path / "lightning", name="pl", every=2,
                               measures=measures)
    pl.Trainer(max_epochs=3, callbacks=[callback], logger=False, enable_checkpointing=False,
               enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
               devices=1).fit(module, batches)
    torch.manual_seed(1)
    model = Tiny()
    opt = model.configure_optimizers()
    mon = ll.Monitor(model, opt, probe, F.cross_entropy, store=tmp_path / "plain", name="plain", every=2,
                     measures=measures)
    for _ in range(3):
        for batch in batches:
            loss = model.training_step(batch, 0)
            loss.backward()
            opt.step()
            opt.zero_grad()
            mon.step(loss)
    mon.close()
    assert callback.monitor.steps == 9 and callback.monitor.summary["status"] == "completed"
    ours, theirs = sorted(callback.monitor.rows), sorted(mon.rows)
    assert [r[:3] for r in ours] == [r[:3] for r in theirs]
    assert np.allclose([r[3] for r in ours], [r[3] for r in theirs], rtol=1e-5, atol=1e-7)


def test_a_slingshot_in_a_users_loop_is_found_at_its_reading(tmp_path):
    """The last layer blown up just before the reading at step 15: the loss read there spikes and the
    layer's norm jumps, a slingshot at 15 and nowhere else."""
    torch.manual_seed(0)
    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.randn(64, 6), torch.randint(0, 3, (64,))
    mon = ll.Monitor(model, opt, (x, y), F.cross_entropy, store=tmp_path, every=5, measures=["weight_norms"])
    for step in range(20):
        if step == 14:
            with torch.no_grad():
                model.b.weight.mul_(30)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        mon.step(loss)
    assert mon.close()["slingshots"] == [15]


def test_validation_data_give_the_runs_evaluations_and_grokking_events(tmp_path):
    """With validation data the cadence evaluates like losslab's own runs: loss and accuracy on the
    probe and on the validation data (recomputed here from the weights at that step, in eval mode),
    and t1..t4 where the accuracies cross their thresholds; the model is left in train mode."""
    from torch.func import functional_call

    from losslab.config import EventsConfig
    from losslab.monitor.events import EventDetector

    torch.manual_seed(0)
    x = torch.randn(256, 6)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()  # three classes, learnable
    model = torch.nn.Sequential(torch.nn.Linear(6, 32), torch.nn.Dropout(0.5), torch.nn.ReLU(), torch.nn.Linear(32, 3))
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    mon = ll.Monitor(model, opt, (x[:128], y[:128]), F.cross_entropy, store=tmp_path, every=10,
                     validation=[(x[128:192], y[128:192]), (x[192:], y[192:])], measures=[])
    weights = {}
    for step in range(1, 151):
        loss = F.cross_entropy(model(x[:128]), y[:128])
        loss.backward()
        opt.step()
        opt.zero_grad()
        mon.step(loss)
        weights[step] = {k: v.clone() for k, v in model.state_dict().items()}
    summary = mon.close()
    assert model.training
    model.eval()
    evaluated = {(s, split, name): v for s, split, name, v in mon.rows if split in ("train", "val")
                 and name in ("loss", "acc")}
    for step in (10, 80, 150):
        for split, (xs, ys) in (("train", (x[:128], y[:128])), ("val", (x[128:], y[128:]))):
            out = functional_call(model, weights[step], (xs,))
            assert evaluated[(step, split, "loss")] == pytest.approx(float(F.cross_entropy(out, ys)), rel=1e-5)
            assert evaluated[(step, split, "acc")] == pytest.approx(float((out.argmax(-1) == ys).float().mean()))
    replayed = EventDetector(EventsConfig(), 1 / 3)
    replayed.replay(mon.rows)
    assert summary["events"] == replayed.events and summary["events"]["t1"] is not None
    assert summary["final"]["val_acc"] == evaluated[(150, "val", "acc")] and summary["outcome"]


def test_predict_reads_a_monitored_run(tmp_path):
    """A monitored run with validation data is forecast like any run (its settings unknown: no
    hyperparameters, and never of a family the forecaster has seen); one without is refused in one line."""
    from losslab.store import RunStore

    store = RunStore(tmp_path / "runs")
    table = fake_benchmark(RunStore(tmp_path / "bench"), tmp_path / "table.parquet")
    torch.manual_seed(0)
    x, y = torch.randn(64, 6), torch.randint(0, 3, (64,))
    for name, validation in (("seen", (x[32:], y[32:])), ("blind", None)):
        model = Net()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        with ll.Monitor(model, opt, (x[:32], y[:32]), F.cross_entropy, store=store.root, name=name, every=25,
                        validation=validation, measures=[]) as mon:
            for _ in range(T + 20):
                loss = F.cross_entropy(model(x[:32]), y[:32])
                loss.backward()
                opt.step()
                opt.zero_grad()
                mon.step(loss)
    out = losslab_here("predict", "--table", table, "--steps", T, "--predictor", "logistic", "--run", "seen",
                       "--out", store.root, "--json")
    assert out.returncode == 0, out.stderr
    [predicted] = json.loads(out.stdout)["runs"]
    assert 0 <= predicted["p_grok"] <= 1 and not predicted["seen"]
    refused = losslab_here("predict", "--table", table, "--steps", T, "--predictor", "logistic", "--run", "blind",
                           "--out", store.root)
    assert refused.returncode == 2 and "needs validation data" in refused.stderr and refused.stderr.count("\n") == 1


def test_a_monitored_runs_page_loads_in_chromium_with_its_curves(tmp_path, browser):  # noqa: F811
    from losslab.report.pages import write_run_report
    from losslab.store import RunStore

    torch.manual_seed(0)
    x = torch.randn(128, 6)
    y = (x[:, 0] > 0).long()
    model = Net()
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    with ll.Monitor(model, opt, (x[:64], y[:64]), F.cross_entropy, store=tmp_path, name="page", every=10,
                    validation=(x[64:], y[64:]), measures=["step_grad_norm", "weight_norms", "sharpness"]) as mon:
        train(model, opt, mon, x[:64], y[:64], 60)
    path = write_run_report(RunStore(tmp_path).find(mon.summary["run_id"]))
    page, problems = open_page(browser, path.as_uri())
    assert problems == []
    assert page.locator("#curves .main-svg").count() > 0 and drawn(page, "#curves")
    assert f"t1\t{mon.summary['events']['t1']}" in page.locator("#events").inner_text()
    page.close()


def test_the_step_gradient_and_the_probe_gradient_are_two_measures_with_two_names(tmp_path):
    """step_grad_norm: the gradient the optimizer stepped with (this step's batch); grad_norm: the
    probe loss's gradient at the weights after the step, at the cadence (the Trainer's probe too)."""
    from torch.func import functional_call

    torch.manual_seed(0)
    model, x, y = Net(), torch.randn(32, 6), torch.randint(0, 3, (32,))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mon = ll.Monitor(model, opt, (x, y), F.cross_entropy, store=tmp_path, every=2,
                     measures=["step_grad_norm", "grad_norm"])
    stepped, full = [], {}
    for step in range(4):
        batch = slice(8 * step, 8 * step + 8)
        F.cross_entropy(model(x[batch]), y[batch]).backward()
        stepped.append(float(torch.cat([p.grad.flatten() for p in model.parameters()]).norm()))
        opt.step()
        opt.zero_grad()
        mon.step(0.0)
        if step % 2 == 1:  # the probe, measured after the step
            params = {k: v.detach().clone().requires_grad_() for k, v in model.named_parameters()}
            g = torch.autograd.grad(F.cross_entropy(functional_call(model, params, (x,)), y), list(params.values()))
            full[step + 1] = float(torch.cat([t.flatten() for t in g]).norm())
    mon.close()
    assert [rows_at(mon, step)["step_grad_norm"] for step in range(4)] == pytest.approx(stepped, rel=1e-6)
    assert {step: rows_at(mon, step)["grad_norm"] for step in full} == pytest.approx(full, rel=1e-5)
    assert len(set(stepped) | set(full.values())) == 6  # six different gradients


@pytest.mark.parametrize("status", ["completed", "failed"])
def test_the_figures_of_a_closed_run_are_titled_with_its_final_status(tmp_path, monkeypatch, status):
    import losslab.monitor.figures as figures

    titles = []
    drawn_by = figures.grokking_figure
    monkeypatch.setattr(figures, "grokking_figure", lambda rows, events, title: titles.append(title)
                        or drawn_by(rows, events, title))
    mon, *_ = loop(tmp_path, ["step_grad_norm"], steps=6)
    summary = mon.close(status)
    assert titles == [f"{summary['run_id']} ({status})"] and summary["status"] == status


def test_log_to_writes_every_row_to_tensorboard_as_the_run_records_it(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    from losslab.monitor.instruments import scalar_tag

    torch.manual_seed(0)
    x, y = torch.randn(64, 6), torch.randint(0, 3, (64,))
    model = Net().float()
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    with SummaryWriter(str(tmp_path / "tb")) as writer:
        mon = ll.Monitor(model, opt, (x[:32], y[:32]), F.cross_entropy, store=tmp_path / "runs", every=5,
                         validation=(x[32:], y[32:]), measures=["step_grad_norm", "weight_norms", "sharpness"],
                         log_to=writer)
        train(model, opt, mon, x[:32], y[:32], 10)
        summary = mon.close()
    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    stored = {}
    for step, split, name, value in RunStore(tmp_path / "runs").find(summary["run_id"]).metric_rows():
        stored.setdefault(scalar_tag(split, name), {})[step] = value
    assert set(events.Tags()["scalars"]) == set(stored)
    for tag, values in stored.items():  # TensorBoard keeps float32
        assert {e.step: e.value for e in events.Scalars(tag)} == pytest.approx(values, rel=1e-6, nan_ok=True), tag
    groups = {tag.split("/")[0] for tag in stored}
    assert {"1 loss and accuracy", "2 step size and stability", "3 gradients", "4 weights"} <= groups
    assert "2 step size and stability/edge_of_stability/probe" in stored


def test_log_to_takes_a_writer_only():
    x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
    model = Net().float()
    with pytest.raises(LossLabError, match="log_to must be a TensorBoard SummaryWriter"):
        ll.Monitor(model, torch.optim.SGD(model.parameters(), lr=0.1), (x, y), F.cross_entropy, log_to="runs/tb")


def test_the_probe_panels_draw_each_threshold_over_its_quantity_one_trace_per_layer_and_no_constant(tmp_path):
    from losslab.monitor.figures import curves
    from losslab.report.plots import constant_series, other_series

    mon, model, opt, *_ = loop(tmp_path, ["step_grad_norm", "weight_norms", "update_ratio", "sharpness",
                                          "preconditioned_sharpness"], steps=15)
    mon.close()
    series = curves(mon.rows)
    fig = other_series(series)
    titles = [a.text.split(" (")[0] for a in fig.layout.annotations]
    axis = {title: "x" if i == 0 else f"x{i + 1}" for i, title in enumerate(titles)}
    traces = {t.name: t for t in fig.data}
    lr, beta1 = 0.05, opt.param_groups[0]["betas"][0]
    assert traces["probe edge_of_stability"].xaxis == axis["lambda_max"] == traces["probe lambda_max"].xaxis
    assert list(traces["probe edge_of_stability"].y) == pytest.approx([2 / lr] * 3)
    assert traces["probe adaptive_edge_of_stability"].xaxis == axis["preconditioned_lambda_max"]
    adaptive = (2 + 2 * beta1) / ((1 - beta1) * lr)
    assert list(traces["probe adaptive_edge_of_stability"].y) == pytest.approx([adaptive] * 3)
    assert "edge_of_stability" not in titles and "lr" not in titles  # no panel of its own, no constant drawn
    assert constant_series(series) == {"probe lr": pytest.approx(lr)}
    layers = [n for n, p in model.named_parameters() if p.ndim >= 2]
    for family in ("norm_fro", "update_ratio"):  # one panel, a trace per layer
        assert sorted(t.name for t in fig.data if t.xaxis == axis[family]) == [f"probe {family}/{n}" for n in layers]
    assert titles.index("lambda_max") < titles.index("step_grad_norm") < titles.index("norm_fro")  # by instrument


LIVE_LOOP = """
import sys, time
from pathlib import Path
import torch, torch.nn.functional as F
import losslab as ll

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
x, y = torch.randn(64, 4), torch.randn(64, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
mon = ll.Monitor(model, optimizer, (x, y), F.mse_loss, store=sys.argv[1], name="live", every=5, write_every_s=0.2,
                 measures=["step_grad_norm", "sharpness"])
while not Path(sys.argv[2]).exists():  # the test says when to stop
    loss = F.mse_loss(model(x), y)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    mon.step(loss)
    time.sleep(0.01)
mon.close()
"""


def test_the_served_page_of_a_running_monitor_follows_its_training_without_a_reload(tmp_path, browser):
    import subprocess
    import sys
    import threading
    import time

    from losslab.report.serve import make_server

    store, stop = tmp_path / "runs", tmp_path / "stop"
    loop = subprocess.Popen([sys.executable, "-c", LIVE_LOOP, str(store), str(stop)], stderr=subprocess.PIPE,
                            text=True)
    httpd = make_server(store, port=0)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not any(
                r.get("steps", 0) >= 10 for r in (RunStore(store).summaries() if (store / "index.sqlite").exists()
                                                  else [])):
            time.sleep(0.1)
        [run] = RunStore(store).summaries()
        assert run["status"] == "running"
        page, problems = open_page(browser, f"http://127.0.0.1:{httpd.server_address[1]}/runs/{run['run_id']}")
        page.evaluate("window.kept = true")  # gone if the page loads again
        last_step = "Math.max(...document.getElementById('curves').data[0].x)"
        first = page.evaluate(last_step)
        page.wait_for_function(f"{last_step} >= {first + 50}", timeout=30_000)
        assert page.evaluate("window.kept") is True and not problems
        assert int(page.locator("#facts tr:nth-child(3) td:last-child").inner_text()) >= first + 50
    finally:
        stop.touch()
        loop.wait(60)
        httpd.shutdown()
        httpd.server_close()
    assert loop.returncode == 0, loop.stderr.read()


def test_a_monitored_runs_page_in_chromium_reads_as_instruments(tmp_path, browser):
    """In the browser, from the figures' own data: 2 / lr dashed in the lambda_max panel, the adaptive
    threshold in the preconditioned one, a trace per layer, no constant drawn, no "(running)" on the
    completed run, no grokking words for a run without validation data, every step's loss drawn."""
    from losslab.report.pages import write_run_report

    mon, model, opt, *_ = loop(tmp_path, ["step_grad_norm", "weight_norms", "update_ratio", "sharpness",
                                          "preconditioned_sharpness"], steps=15)
    mon.close()
    page, problems = open_page(browser, write_run_report(RunStore(tmp_path / "runs").find(mon.summary["run_id"]))
                               .as_uri())
    traces = {t["name"]: t for t in page.evaluate(
        "[...document.getElementById('probes').data].map(t => ({name: t.name, x: [...t.x], y: [...t.y], "
        "xaxis: t.xaxis || 'x', dash: t.line && t.line.dash}))")}
    assert traces["probe edge_of_stability"]["y"] == pytest.approx([2 / 0.05] * 3)
    assert traces["probe edge_of_stability"]["xaxis"] == traces["probe lambda_max"]["xaxis"]
    assert traces["probe edge_of_stability"]["dash"] == "dash"
    beta1 = opt.param_groups[0]["betas"][0]
    assert traces["probe adaptive_edge_of_stability"]["y"] == pytest.approx([(2 + 2 * beta1) / ((1 - beta1) * 0.05)] * 3)
    assert traces["probe adaptive_edge_of_stability"]["xaxis"] == traces["probe preconditioned_lambda_max"]["xaxis"]
    layers = [n for n, p in model.named_parameters() if p.ndim >= 2]
    norm_axis = traces[f"probe norm_fro/{layers[0]}"]["xaxis"]
    assert sorted(n for n, t in traces.items() if t["xaxis"] == norm_axis) == [f"probe norm_fro/{n}" for n in layers]
    assert "probe lr" not in traces and len(traces["train step_loss"]["x"]) == 15  # every step
    text = page.inner_text("body")
    assert "(running)" not in text and not re.search(r"memoriz|generaliz|grokk", text, re.I)
    assert not problems
