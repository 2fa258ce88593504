"""Phase diagrams (cell means over two axes) and the power law of t4 against the train fraction."""

import math

import numpy as np
import pytest

from losslab.core.errors import LossLabError
from losslab.sweep.figures import default_axes, phase_figure, power_law_figure, save
from losslab.sweep.phase import cell_means, fit_power_law, t4_against_fraction


def row(lr, wd, seed, t4, val_acc, status="completed"):
    return {"axis:optim.lr": lr, "axis:optim.weight_decay": wd, "axis:seed": seed, "status": status,
            "t4": t4, "grokked": t4 is not None, "val_acc": val_acc, "signature_energy": 1.0 + lr}


ROWS = [row(lr, wd, seed, t4=(100 * seed + 1000 if wd > 0.5 else None), val_acc=wd * lr)
        for lr in (1e-3, 1e-2) for wd in (0.1, 1.0, 3.0) for seed in (0, 1)]


def test_cells_average_over_the_other_axes():
    xs, ys, acc = cell_means(ROWS, "optim.weight_decay", "optim.lr", "val_acc")
    assert xs == [0.1, 1.0, 3.0] and ys == [1e-3, 1e-2]
    np.testing.assert_allclose(acc, np.outer(ys, xs))
    _, _, t4 = cell_means(ROWS, "optim.weight_decay", "optim.lr", "t4")
    assert np.isnan(t4[:, 0]).all() and np.allclose(t4[:, 1:], 1050)  # the mean over seeds of those that grokked
    _, _, grokked = cell_means(ROWS, "optim.weight_decay", "optim.lr", "grokked")
    np.testing.assert_allclose(grokked, [[0, 1, 1], [0, 1, 1]])


def test_failed_runs_are_left_out_and_unknown_axes_refused(tmp_path):
    rows = ROWS + [row(1e-3, 0.1, 2, t4=None, val_acc=99.0, status="failed")]
    _, _, acc = cell_means(rows, "optim.weight_decay", "optim.lr", "val_acc")
    assert acc[0, 0] == pytest.approx(1e-4)
    with pytest.raises(LossLabError, match="no axis 'optim.beta'"):
        cell_means(rows, "optim.beta", "optim.lr", "val_acc")
    assert default_axes(ROWS) == ("optim.weight_decay", "optim.lr")
    assert save(phase_figure(ROWS, "optim.weight_decay", "optim.lr"), tmp_path / "p.png").stat().st_size > 10_000


def test_the_power_law_is_recovered():
    r = np.array([0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.8] * 3)
    noise = np.random.default_rng(0).normal(scale=5, size=len(r))
    fit = fit_power_law(r, 40 * r**-2.5 + 300 + noise)
    assert fit["gamma"] == pytest.approx(2.5, rel=0.05) and fit["b"] == pytest.approx(300, rel=0.05)
    assert fit["r2"] > 0.99
    with pytest.raises(LossLabError, match="4 or more"):
        fit_power_law([0.3, 0.5, 0.7], [300, 200, 100])


def test_t4_against_fraction_uses_grokked_runs(tmp_path):
    rows = [{"axis:task.train_fraction": r, "t4": (None if r < 0.3 else 50 * r**-1.5 + 10), "status": "completed"}
            for r in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)]
    law = t4_against_fraction(rows)
    assert law["r"] == [0.3, 0.4, 0.5, 0.6, 0.7] and law["fit"]["gamma"] == pytest.approx(1.5, rel=1e-4)
    assert math.isfinite(law["fit"]["gamma_stderr"])
    figure = power_law_figure(law, "task.train_fraction")
    dots, curve = figure.axes[0].collections[0], figure.axes[0].lines[0]  # the runs, and the law through them
    assert dots.get_offsets().tolist() == [list(point) for point in zip(law["r"], law["t4"])]
    assert np.interp(law["r"], *curve.get_data()) == pytest.approx(law["t4"], rel=1e-3)
    assert save(figure, tmp_path / "law.png").stat().st_size > 10_000
    with pytest.raises(LossLabError, match="no run grokked"):
        t4_against_fraction([{**r, "t4": None} for r in rows])


def test_speedup_pairs_matched_runs_and_counts_one_sided_grokking():
    from losslab.sweep.compare import speedup
    rows = []
    for seed in (0, 1, 2):
        for wd in (0.1, 1.0):
            for lr in (1e-3, 3e-3):
                base_t4 = 1000 * (1 + seed) / (lr / 1e-3)
                rows.append({"axis:optim.name": "adamw", "axis:optim.lr": lr, "axis:optim.weight_decay": wd,
                             "axis:seed": seed, "status": "completed", "t4": None if wd < 0.5 else base_t4})
                rows.append({"axis:optim.name": "grokfast_ema", "axis:optim.lr": lr, "axis:optim.weight_decay": wd,
                             "axis:seed": seed, "status": "completed", "t4": base_t4 / (2 + seed)})
    result = speedup(rows, "optim.name", "adamw", "grokfast_ema")
    by_cell = {(c["optim.lr"], c["optim.weight_decay"]): c for c in result["cells"]}
    cell = by_cell[(1e-3, 1.0)]
    assert cell["pairs"] == 3 and cell["speedup_mean"] == pytest.approx(3.0) and cell["speedup_std"] == pytest.approx(1.0)
    assert by_cell[(1e-3, 0.1)]["pairs"] == 0 and by_cell[(1e-3, 0.1)]["only_treatment"] == 3
    assert result["only_treatment_grokked"] == 6 and result["pairs"] == 6
    # against the baseline at 3x the learning rate (its t4 a third): speed-ups a third as large
    matched = speedup(rows, "optim.name", "adamw", "grokfast_ema", lr_factor=3.0)
    assert [c["speedup_mean"] for c in matched["cells"] if c["optim.weight_decay"] == 1.0] == [pytest.approx(1.0)]
    with pytest.raises(LossLabError, match="no value 'sgd'"):
        speedup(rows, "optim.name", "sgd", "grokfast_ema")
