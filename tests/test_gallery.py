"""The gallery: each entry's claim on an instance small enough for the suite, the command (its list,
its cache, its refusals) and its page in headless Chromium."""

import json
import os

import numpy as np
import pytest

from losslab.gallery import select
from tests.helpers import losslab_here

REDUCED = {
    # the grokking figures share one run (about a minute): the gallery's quick one
    **{name: select([name])[0].quick for name in ("grokking", "grokking-curvature", "grokking-trajectory",
                                                  "grokking-landscape", "grokking-dimension",
                                                  "epochwise-double-descent")},
    "modular-division": select(["modular-division"])[0].quick,
    "grokking-phase-diagram": {"p": 47, "d_model": 64, "d_mlp": 256, "rates": [1e-2], "weight_decays": [0.1, 0.3, 2.0],
                               "max_steps": 800, "early_steps": 200},
    "grokking-forecast": {"t": 400, "predictors": ["energy", "hjorth"]},
    "grokking-power-law": {"p": 47, "d_model": 64, "d_mlp": 256, "lr": 3e-3, "fractions": [0.6, 0.7, 0.8, 0.9],
                           "seeds": [0]},
    "s5": {"lr": 3e-3, "fractions": [0.9], "max_steps": 4000},
    "gradient-clipping": {"p": 47, "d_model": 64, "d_mlp": 256, "lr": 3e-3, "clips": [None, 0.01]},
    "double-descent": {"n_train": 60, "noise": 0.5, "seeds": 3, "features": [10, 30, 50, 60, 70, 100, 300, 600]},
    "hessian-rank": {"examples": 10, "widths": [2, 32], "seeds": 4},
    "mode-connectivity": {"width": 16, "train_steps": 400, "curve_steps": 200},
    "sam-flatness": {"width": 64, "steps": 600, "rho": 0.05, "lr": 0.1},
    "skip-connections": {"depth": 8, "width": 16, "steps": 600, "surface": 7, "curvature": 3},
    "dropout-surfaces": {"width": 128, "steps": 600, "directions": 2, "points": 9},
    "multi-point": {"pattern": [[1, 1, 1, 1], [1, 0, 0, 1], [1, 0, 0, 1], [1, 1, 1, 1]], "width": 32, "examples": 100,
                    "steps": 300, "spacing": 1.0},
    "sgd-least-squares": {"n": 60, "dims": {"not interpolating": 6, "interpolating": 120}, "noise": 0.5,
                          "epochs": 150, "rates": [1.0, 0.1]},
    "deep-relu-init": {"steps": 300},
    "log-rosenbrock": {"steps": 1000, "optimizers": ["sgd", "adam"]},
    "rastrigin": {"steps": 500, "optimizers": ["sgd", "adam"]},
    "heavy-tailed-classes": {"steps": 60},
    "muon-logistic": {"epochs": 10, "lr": 0.02, "weight_decay": 0.01},
    "exponential-lr": {"steps": 300, "lr": 0.1, "weight_decay": 0.05, "width": 32, "batch": 64},
    "algoperf-profile": {"workloads": ["rosenbrock", "digits-mlp"], "optimizers": ["muon", "shampoo"], "trials": 2},
    "parity-representations": {"panels": 3, "examples": 200},
    "weight-decay-switch": {"after_t2": [0.01, 0.1, 1.0], "seeds": [0], "max_steps": 2500},
    "label-noise-threshold": {"n": [30], "weight_decay": [0.01, 0.1], "iterations": 2},
    "minimal-circuits": {"n": 8, "stop_after_t4": 3000},
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """One gallery folder for the module: the entries that share a run train it once."""
    return tmp_path_factory.mktemp("gallery")


def test_every_entry_has_a_reduced_instance_here():
    assert set(REDUCED) == {e.name for e in select(None)}


def _region(runs) -> bool:
    """At every learning rate the least weight decay did not grok and the most did."""
    rates = sorted({r["axis:optim.lr"] for r in runs})
    by_rate = [[r["grokked"] for r in sorted(runs, key=lambda r: r["axis:optim.weight_decay"])
                if r["axis:optim.lr"] == lr] for lr in rates]
    return all(not g[0] and g[-1] for g in by_rate)


def _falling(mean: dict) -> bool:
    return len(mean) > 1 and [mean[r] for r in sorted(mean, key=float)] == sorted(mean.values(), reverse=True)


# the claims that have not come out on the reduced instances, each judged again here from what was measured
# by its own words (so that a reproduction that improves shows as held, and the test says so, not fails)
JUDGED = {
    "grokking-trajectory": lambda m: m["explained_by_two"] > 0.98 and m["cos_theta0"][-1] < 0.5 * m["cos_theta0"][1]
    and np.median(m["cos_previous"]) > 0.95,
    "skip-connections": lambda m: m["mean_ratio"]["without skips"] > 3 * m["mean_ratio"]["with skips"],
    "grokking-forecast": lambda m: all(m["checks"].values()),
    "grokking-phase-diagram": lambda m: _region(m["runs"]) and m["auc_energy"] is not None and m["auc_energy"] > 0.8,
    "grokking-power-law": lambda m: bool(m["fit"]) and m["fit"]["r2"] > 0.95 and _falling(m["mean_t4"]),
    "gradient-clipping": lambda m: None not in m["t4"].values() and list(m["t4"].values()) == sorted(m["t4"].values())
    and list(m["t4"].values())[-1] > list(m["t4"].values())[0]
    and list(m["spike"].values())[-1] < list(m["spike"].values())[0],
}


# in the slow suite (-m slow): the entries that train several grokking runs (minutes), those that share the
# gallery's quick grokking run (about 80 s), and those over about 7 s here; the default suite keeps the rest
SLOW = {"grokking-power-law", "s5", "gradient-clipping", "modular-division",
        "grokking", "grokking-curvature", "grokking-trajectory", "grokking-landscape", "grokking-dimension",
        "epochwise-double-descent", "skip-connections", "grokking-phase-diagram", "heavy-tailed-classes",
        "algoperf-profile", "exponential-lr", "label-noise-threshold", "muon-logistic", "weight-decay-switch"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in REDUCED])
def test_each_entrys_claim_holds_on_a_reduced_instance(name, folder):
    measured, figure = select([name])[0].make(REDUCED[name], folder)
    if name in JUDGED:
        assert measured["held"] is bool(JUDGED[name](measured)), measured["outcome"]
        print(f"{name}: {'held' if measured['held'] else 'not held'}: {measured['outcome']}")
    else:
        assert measured["held"] is True, measured["outcome"]
    assert figure.axes and all(ax.has_data() for ax in figure.axes)
    if name == "double-descent":
        assert measured["peak_at"] == 60
    if name == "hessian-rank":  # the fractions drawn are the seeds'; at each global minimum rank(H) = rank(G) = n
        runs = measured["solutions"]
        assert measured["deficient"] == {w: np.mean([g < 10 for g, _, _ in r]) for w, r in runs.items()} == {"2": 1, "32": 0}
        assert all(h == g == 10 for r in runs.values() for g, h, reached in r if reached) and any(r[2] for r in runs["32"])
        assert list(figure.axes[0].lines[0].get_ydata()) == [1, 0]
    if name == "sgd-least-squares":
        stalled = measured["excess_loss"]["not interpolating"]
        assert stalled["SGD, rate 0.1"] < stalled["SGD, rate 1"]  # the floor shrinks with the rate, but stays
    if name == "mode-connectivity":
        assert measured["barriers"]["bezier"] < measured["barriers"]["line"] / 4
    if name in ("grokking", "modular-division"):  # the generalization line drawn at t4
        events = measured["events"]
        assert events["t4"] >= 5 * events["t2"]
        assert any(list(line.get_xdata()) == [events["t4"]] * 2 for line in figure.axes[0].lines)
    if name == "grokking-curvature":
        assert list(figure.axes[0].lines[0].get_ydata()) == measured["lambda_max"]
        assert measured["collapse"] < 0.1 and measured["slingshot_rise"] > 10
    if name == "grokking-trajectory":  # the variance in two directions is the spectrum's
        assert measured["explained_by_two"] == pytest.approx(sum(measured["explained_variance"][:2]))
    if name == "muon-logistic":  # the points drawn are each step's spread, the curves the test losses
        for line, points, loss in zip(figure.axes[0].lines, figure.axes[1].lines, measured["test_loss"].values()):
            assert list(line.get_ydata()) == loss and len(points.get_ydata()) == 10 * 40
            assert np.median(points.get_ydata()) == pytest.approx(measured["median_spread"][line.get_label()])
    if name == "algoperf-profile":  # the profiles drawn are the scores' (a step at each ratio within r_max)
        assert figure.axes[1].get_legend().get_texts()[0].get_text().endswith(f"({max(measured['scores'].values()):.3f})")
    if name == "grokking-forecast":  # a ROC curve per predictor, labelled with its held-out AUC
        labels = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
        assert [lab.split(":")[0] for lab in labels[:-1]] == sorted(measured["auc"], key=lambda n: -measured["auc"][n])
        assert all(f"{measured['auc'][lab.split(':')[0]]:.2f} [" in lab for lab in labels[:-1])
    if name == "grokking-phase-diagram":  # the maps are the runs', the verdict on the region its outcome's
        runs = measured["runs"]
        assert ("at every rate the least weight decay did not and the most did" in measured["outcome"]) == _region(runs)
        shown = [ax.images[0].get_array() for ax in figure.axes if ax.images]
        assert np.allclose(shown[0].ravel(), [r["val_acc"] for r in runs])
        assert np.allclose(shown[2].ravel(), np.log10([r["signature_energy"] for r in runs]))
    if name == "grokking-power-law":  # the points are the mean t4s, the law drawn is the one fitted
        t4, fit = list(measured["mean_t4"].values()), measured["fit"]
        assert len(t4) == 4
        assert figure.axes[0].collections[0].get_offsets()[:, 1].tolist() == t4
        law = figure.axes[0].lines[0]
        assert law.get_ydata()[0] == pytest.approx(fit["a"] * law.get_xdata()[0] ** -fit["gamma"] + fit["b"])
    if name == "s5":  # generalized long after memorizing; the curves are the run's, marked at its events
        events = measured["events"]["0.9"]
        assert events["t4"] >= 3 * events["t2"] and measured["fit"] is None
        marks = {line.get_label(): line.get_xdata()[0] for line in figure.axes[0].lines if line.get_label()[:2] in ("t2", "t4")}
        assert marks == {f"t2 = {events['t2']}": events["t2"], f"t4 = {events['t4']}": events["t4"]}
        val = next(line for line in figure.axes[0].lines if line.get_label() == "r = 0.9, val")
        assert val.get_ydata()[-1] > 0.95 and max(val.get_xdata()) >= events["t4"]
    if name == "gradient-clipping":  # with AdamW the clipped run groks no later; the bars are the runs' t4
        t4 = measured["t4"]
        assert t4["clip 0.01"] <= t4["unclipped"] and min(measured["spike"].values()) > 1
        assert [bar.get_height() for bar in figure.axes[1].patches] == list(t4.values())
    if name == "grokking-landscape":  # a barrier from the memorizing checkpoints only; the heatmap is of every line
        events, rise = measured["events"], dict(zip(measured["steps"], measured["rise"]))
        assert rise[events["t2"]] > 1 and rise[events["t4"]] < 0.01 and rise[0] == 0
        assert figure.axes[0].collections[0].get_array().shape == (11, len(rise))
    if name == "exponential-lr":  # the same function at every step, from a rate that grew
        assert measured["loss_gap"] < 1e-6 and measured["rate_growth"] > 10
    if name == "skip-connections":  # both nets trained; the ratios are those drawn
        for variant, ratios in measured["ratios"].items():
            assert measured["mean_ratio"][variant] == pytest.approx(np.mean(ratios)) and 0 <= np.min(ratios)
        assert set(measured["ratios"]) == {"without skips", "with skips"} and max(measured["training_loss"].values()) < 0.5
    if name == "dropout-surfaces":  # one initialization: the same lines at the start
        assert measured["rise"]["no dropout, start"] == measured["rise"]["dropout 0.2, start"]
        assert measured["rise"]["dropout 0.2, end"] < measured["rise"]["no dropout, end"] / 1.5
    if name == "epochwise-double-descent":  # the peak drawn where it was found, after t2
        peak = measured["found"]["peak"]
        assert measured["events"]["t2"] <= peak < measured["events"]["t4"]
        assert any(list(line.get_xdata()) == [peak] * 2 for line in figure.axes[0].lines)
    if name == "multi-point":  # the picture's light pixels fit the data, its dark ones the relabelling
        accuracy = np.array(measured["accuracy_at_pixels"])
        assert accuracy[0, 0] > 0.5 > accuracy[1, 1] and measured["agreement"] == 1.0
    if name == "parity-representations":  # the first and last panels at t2 and t4, their separations those shown
        events, separation = measured["events"], measured["separation"]
        assert list(separation)[::2] == [str(events["t2"]), str(events["t4"])] and len(separation) == 3
        assert [ax.get_title() for ax in figure.axes[:3]] == [f"step {k} ({v:.0%} by 5-NN)" for k, v in separation.items()]
        assert measured["first_layer_norm"][1] < measured["first_layer_norm"][0] / 2
    if name == "weight-decay-switch":  # one seed: the switched run is faster, the strongest switch never generalizes
        t4 = measured["t4"]
        assert t4["0.1/0"] < t4["0.01/0"] / 2 and t4["1/0"] is None and measured["never"] == [1.0]
    if name == "label-noise-threshold":  # brackets of width 0.5 / 2^2, disjoint and rising with the weight decay
        weak, strong = measured["brackets"]
        assert weak["high"] - (weak["low"] or 0) == strong["high"] - strong["low"] == 0.125
        assert strong["low"] >= weak["high"]
    if name == "minimal-circuits":  # the hand-built network on all 2^8 inputs; the trained one pruned, still exact
        assert measured["hand_built"]["inputs"] == 256 and measured["hand_built"]["accuracy"] == 1.0
        assert measured["circuit"]["accuracy_pruned"] == 1.0 and measured["circuit"]["active"] <= 10
        assert len(figure.axes[1].get_yticks()) == measured["circuit"]["active"]
    if name == "heavy-tailed-classes":
        (gd_start, gd_end), (adam_start, adam_end) = measured["rarest_group_loss"].values()
        assert gd_start == adam_start and adam_end < gd_end  # one initialization, two optimizers


def test_the_command_lists_makes_once_and_refuses(tmp_path):
    listed = json.loads(losslab_here("gallery", "--list", "--json").stdout)
    assert [e["name"] for e in listed] == list(REDUCED) and all(e["claim"] and e["seconds"] > 0 for e in listed)
    args = ["gallery", "--only", "double-descent,sgd-least-squares", "--quick", "--out", tmp_path / "g", "--json"]
    first = losslab_here(*args)
    assert first.returncode == 0, first.stderr
    made = json.loads(first.stdout)
    assert [r["cached"] for r in made["entries"]] == [False, False] and made["held"] == 2
    assert all(0 < r["seconds"] < 60 for r in made["entries"])  # what making each took
    stamps = [os.stat(r["figure"]).st_mtime_ns for r in made["entries"]]
    again = json.loads(losslab_here(*args).stdout)
    assert [r["cached"] for r in again["entries"]] == [True, True]
    assert [os.stat(r["figure"]).st_mtime_ns for r in again["entries"]] == stamps
    for bad, message in ((["--only", "nope"], "unknown gallery entries ['nope']"),
                         (["--out", tmp_path / "g" / "index.html"], "is a file, not a folder")):
        refused = losslab_here("gallery", *bad)
        assert refused.returncode == 2 and message in refused.stderr and refused.stderr.count("\n") == 1


@pytest.mark.slow  # 12 s of training; the page and the entries' claims stay in the default suite
def test_the_runs_of_the_entries_train_together_each_once_the_longest_first(tmp_path):
    from losslab.gallery import runs_to_train
    from losslab.gallery.runs import configs

    entries = select(None)
    ids = {e.name: [run_id for run_id, _ in configs(*e.runs(e.settings))] for e in entries if e.runs}
    full = runs_to_train(entries, tmp_path, quick=False)
    assert set(full) == {run_id for each in ids.values() for run_id in each}
    # the six grokking figures read one run; gradient-clipping's unclipped run is the power law's at r = 0.5, seed 0
    assert [full[ids[name][0]].entry for name in ("grokking", "grokking-landscape")] == ["grokking", "grokking"]
    assert full[ids["gradient-clipping"][0]].entry == "grokking-power-law" and ids["gradient-clipping"][0] in ids[
        "grokking-power-law"]
    assert next(iter(full.values())).entry == "modular-division"  # one run of about 12 minutes: the longest
    assert [p.seconds for p in full.values()] == sorted((p.seconds for p in full.values()), reverse=True)
    # made from the command: its runs trained in one pool, their time counted in the entries'
    made_here = ["deep-relu-init", "parity-representations"]
    args = ["gallery", "--only", ",".join(made_here), "--quick", "--out", tmp_path, "--json"]
    planned = runs_to_train(select(made_here), tmp_path, quick=True)
    work = sum(p.seconds for p in planned.values())
    done = losslab_here(*args)
    assert done.returncode == 0 and f"training the entries' {len(planned)} runs (counted in seconds of work, as " \
        f"estimated): {work:.0f}/{work:.0f}" in done.stderr, done.stderr
    made = json.loads(done.stdout)["entries"]
    assert len(planned) == 3 and [r["held"] for r in made] == [True, True] and all(r["seconds"] > 1 for r in made)
    left = {p.entry for p in runs_to_train(entries, tmp_path, quick=True).values()}
    assert "grokking" in left and not left & set(made_here)


def test_a_picture_for_multi_point_is_read_small_and_a_bad_one_refused(tmp_path):
    from PIL import Image

    from losslab.gallery import read_pattern

    picture = np.zeros((40, 60), np.uint8)
    picture[:20, :] = 255  # the top half light: the plane's upper rows (a is drawn upwards)
    Image.fromarray(picture).save(tmp_path / "half.png")
    pattern = np.array(read_pattern(tmp_path / "half.png", 12))
    assert pattern.shape == (8, 12) and pattern[-4:].all() and not pattern[:4].any()
    (tmp_path / "broken.png").write_bytes(b"not a picture")
    Image.fromarray(np.full((8, 8), 7, np.uint8)).save(tmp_path / "flat.png")
    for args, message in ((["--only", "multi-point", "--image", tmp_path / "broken.png"], "cannot read the image"),
                          (["--only", "multi-point", "--image", tmp_path / "flat.png"], "one flat colour"),
                          (["--only", "rastrigin", "--image", tmp_path / "half.png"], "add it to --only")):
        refused = losslab_here("gallery", *args, "--out", tmp_path / "g")
        assert refused.returncode == 2 and message in refused.stderr and refused.stderr.count("\n") == 1
    assert not (tmp_path / "g").exists()  # refused before anything was written


def test_the_page_shows_every_figure_beside_its_verdict(tmp_path, browser):  # noqa: F811
    done = losslab_here("gallery", "--only", "double-descent,hessian-rank", "--quick", "--out", tmp_path, "--json")
    page = json.loads(done.stdout)["page"]
    tab = browser.new_page()
    tab.goto(f"file://{page}")
    sections = tab.eval_on_selector_all("section", """els => els.map(s => ({
        id: s.id, loaded: s.querySelector('img').complete && s.querySelector('img').naturalWidth > 0,
        verdict: s.querySelector('.verdict').textContent, claim: s.querySelector('.claim').textContent,
        text: s.textContent}))""")
    assert [s["id"] for s in sections] == ["double-descent", "hessian-rank"]
    assert all(s["loaded"] and s["verdict"] == "claim held" and s["claim"] for s in sections)
    made = [f"(made in {r['seconds']:.0f} s)" for r in json.loads(done.stdout)["entries"]]
    assert tab.text_content(".sub").endswith(" s on this machine") and [
        s["text"].count(m) for s, m in zip(sections, made)] == [1, 1]
    tab.close()
