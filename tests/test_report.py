"""Reports: the pages of a run and of a sweep, loaded in headless Chromium (no console error, the
curves drawn, the events shown, text from configs escaped), the read-only server, the exports."""

import json
import math
import shutil
import threading
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pyarrow.csv
import pytest

from losslab.config import load_config
from losslab.report.pages import write_run_report, write_sweep_report
from losslab.report.serve import make_server
from losslab.store import RunStore
from losslab.train.loop import train
from tests.helpers import drawn, losslab_here, open_page

HOSTILE_NAME = "<img src=x onerror=window.pwned=1>"
HOSTILE_TEXT = "</pre><script>window.pwned=2</script>"
TINY = ["task.p=11", "model.d_model=32", "model.d_mlp=64", "train.max_steps=60", "train.eval_every=10",
        "optim.lr=3e-3", "train.stop_after_t4=0"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store with a run named and described with markup, three analyses of it, a sweep and a
    benchmark (whose digits trials are runs)."""
    root = tmp_path_factory.mktemp("store")
    runs = RunStore(root)
    cfg = load_config("grokking", TINY).model_copy(update={"description": HOSTILE_TEXT})
    summary = train(cfg, runs)
    # a config refuses a name with markup; a store written by someone else may still hold one
    summary["name"] = HOSTILE_NAME
    runs.find(summary["run_id"]).write_summary(summary)
    for args in (["landscape", "--dims", "2", "--points", "5"], ["hessian", "--k", "2"], ["trajectory"]):
        done = losslab_here(args[0], summary["run_id"], *args[1:], "--out", root)
        assert done.returncode == 0, done.stderr
    (root / "tiny.toml").write_text('name = "tiny"\nbase = "grokking"\nset = [' + ", ".join(f'"{s}"' for s in TINY)
                                    + ']\n[grid]\n"optim.lr" = [1e-3, 3e-3]\n"optim.weight_decay" = [0.1, 1.0]\n')
    done = losslab_here("sweep", root / "tiny.toml", "--out", root, "--workers", "1")
    assert done.returncode == 0, done.stderr
    done = losslab_here("bench-optim", "quick", "--optimizers", "adam,sgd", "--workloads", "logreg,digits-mlp",
                        "--trials", "1", "--studies", "2", "--out", root)
    assert done.returncode == 0, done.stderr
    return runs, summary


def test_run_page_holds_the_run_and_escapes_its_text(store):
    runs, summary = store
    path = write_run_report(runs.find(summary["run_id"]))
    text = path.read_text()
    assert HOSTILE_NAME not in text and HOSTILE_TEXT not in text and "&lt;img src=x" in text
    assert 'id="events"' in text and 'id="curves"' in text and text.count('class="analysis"') == 3
    # described from its resolved config (p = 11, d_model 32 set over the preset), not the preset's words
    assert "a + b mod 11, r = 0.5; 1-layer transformer (d_model 32, 4 heads)" in text
    assert 'src="http' not in text and "<script src=" not in text  # self-contained: nothing to fetch
    # the events in the run's words: above chance is 1/11 + 0.2 * 10/11 of p = 11's classes, not a fixed 10%
    assert summary["event_thresholds"]["t1"] == ["train", pytest.approx(1 / 11 + 0.2 * 10 / 11, abs=1e-6)]
    assert "train accuracy first reaches 27.3%" in text and "reaches 10%" not in text


def test_run_page_in_chromium(store, browser):
    runs, summary = store
    path = write_run_report(runs.find(summary["run_id"]))
    page, problems = open_page(browser, path.as_uri())
    assert problems == []
    assert page.evaluate("window.pwned") is None and page.locator("img[src=x]").count() == 0
    assert page.locator("h1").inner_text() == HOSTILE_NAME  # shown as text
    events = page.locator("#events").inner_text()
    for event, step in summary["events"].items():
        assert f"{event}\t{'-' if step is None else step}" in events
    assert page.locator("#curves .main-svg").count() > 0 and drawn(page, "#curves")
    # each event's label is drawn where its line is (plotly places shapes and annotations on a log
    # axis by different rules); the lines' data positions are checked in test_event_marks_sit_at_their_steps
    lines = page.locator("#curves .shapelayer path")
    labels = page.locator("#curves .annotation-text-g", has_text="=")
    marked = [step for step in summary["events"].values() if step is not None]
    assert lines.count() == labels.count() == 2 * len(marked) > 0
    for i in range(lines.count()):
        assert abs(lines.nth(i).bounding_box()["x"] - labels.nth(i).bounding_box()["x"]) < 6
    # the 2D landscape as a contour and a 3D surface (a WebGL scene), the Hessian, the trajectory
    assert page.locator(".analysis .main-svg").count() >= 3 and page.locator(".analysis .gl-container").count() > 0


def test_event_marks_sit_at_their_steps():
    """On the log-step axis each event's line is at its step (not at log10 of it), its label beside it,
    and labels of close events do not overlap."""
    from losslab.report.plots import grokking_curves

    events = {"t1": 38, "t2": 45, "t3": 1200, "t4": 1459}
    fig = grokking_curves({("train", "acc"): ([0, 10, 100, 2000], [0.1, 0.5, 1.0, 1.0])}, events, "run")
    shapes, notes = fig.layout.shapes, [a for a in fig.layout.annotations if "=" in a.text]
    assert sorted(s.x0 for s in shapes) == sorted(2 * list(events.values()))
    assert all(s.x0 == s.x1 for s in shapes)
    for note in notes:
        event, step = note.text.split("=")
        assert note.x == pytest.approx(math.log10(int(step))) and events[event] == int(step)
    heights = [(n.xref, n.y) for n in notes]
    assert len(set(heights)) == len(heights)


def test_sweep_page_sorts_and_links_each_run(store, browser):
    runs, _ = store
    path = write_sweep_report(runs, "tiny")
    page, problems = open_page(browser, path.as_uri())
    assert problems == []
    assert page.locator(".js-plotly-plot").count() == 4 and drawn(page, "#phase-val_acc")
    column = ["run", "optim.lr", "optim.weight_decay", "status"].index("optim.weight_decay") + 1
    cells = f"#results tbody td:nth-child({column})"
    page.locator("#results th", has_text="optim.weight_decay").click()
    assert page.locator(cells).all_inner_texts() == ["0.1", "0.1", "1", "1"]
    page.locator("#results th", has_text="optim.weight_decay").click()
    assert page.locator(cells).all_inner_texts() == ["1", "1", "0.1", "0.1"]
    links = page.locator("#results a")
    assert links.count() == 4
    links.first.click()
    page.wait_for_load_state("load")
    assert page.url.endswith(".html") and "/pages/tiny-" in page.url and page.locator("#curves .main-svg").count()


def test_benchmark_page_ranks_sorts_and_links_each_trial_run(store, browser):
    runs, _ = store
    done = losslab_here("report", "quick", "--store", runs.root, "--json")
    assert done.returncode == 0, done.stderr
    written = json.loads(done.stdout)
    assert written["kind"] == "benchmark"
    page, problems = open_page(browser, Path(written["page"]).as_uri())
    assert problems == [] and drawn(page, "#profiles")
    result = json.loads((Path(written["page"]).parent / "results.json").read_text())
    scores = result["clocks"]["seconds"]["scores"]
    ranked = sorted(scores, key=scores.get, reverse=True)
    optimizers = "#leaderboard-seconds tbody td:nth-child(1)"
    assert page.locator(optimizers).all_inner_texts() == ranked  # the best first
    page.locator("#leaderboard-seconds th", has_text="score").click()
    assert page.locator(optimizers).all_inner_texts() == sorted(scores, key=scores.get)
    low, high = result["clocks"]["seconds"]["intervals"][ranked[0]]
    assert page.locator("#leaderboard-seconds tbody tr").last.inner_text().split("\t")[2:4] == [f"{low:.4g}",
                                                                                                  f"{high:.4g}"]
    assert page.locator("#trials tbody tr").count() == 8  # 2 workloads x 2 optimizers x 2 studies
    links = page.locator("#trials a")
    assert links.count() == 4  # the digits trials are runs; the logistic regressions are not
    links.first.click()
    page.wait_for_load_state("load")
    assert "/pages/digits-mlp-" in page.url and drawn(page, "#curves")


def test_a_suite_name_finds_its_newest_benchmark(store, tmp_path):
    from losslab.bench.run import find_benchmark
    from losslab.core.errors import LossLabError

    runs, _ = store
    (first,) = (runs.root / "bench").iterdir()
    assert find_benchmark(runs, "quick") == first == find_benchmark(runs, first.name)
    later = first.with_name("quick-29991231-235959")
    shutil.copytree(first, later)
    try:
        assert find_benchmark(runs, "quick") == later
    finally:
        shutil.rmtree(later)
    for missing in ("default", "quic", "quick-2026", ""):
        with pytest.raises(LossLabError, match="no finished benchmark"):
            find_benchmark(runs, missing)


@pytest.fixture
def server(store):
    runs, _ = store
    httpd = make_server(runs.root, port=0)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def status(url, method="GET"):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method)) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""


def test_server_answers_pages_and_refuses_the_rest(store, server):
    runs, summary = store
    code, index = status(server + "/")
    assert code == 200 and index.count('href="/runs/') == 1 + 4 + 4  # the run, the sweep's, the benchmark's
    assert 'href="/sweeps/tiny"' in index and 'href="/bench/quick-' in index
    assert status(f"{server}/runs/{quote(summary['run_id'])}")[0] == 200
    assert status(server + "/sweeps/tiny")[0] == 200
    code, bench = status(server + "/bench/quick")  # a suite's name: its newest benchmark
    assert code == 200 and bench.count('href="/runs/digits-mlp-') == 4
    for missing in ("/runs/nope", "/runs/..%2F..%2Fetc", "/sweeps/nope", "/bench/default", "/bench/", "/elsewhere"):
        assert status(server + missing)[0] == 404, missing
    assert status(server + "/", method="POST")[0] == 501  # read-only
    assert status(server + "/", method="DELETE")[0] == 501


def test_an_unreadable_analysis_is_an_error_page_not_a_dead_server(store, server, tmp_path):
    runs, summary = store
    broken = runs.root / summary["run_id"] / "analyses" / "broken.json"
    broken.write_text("{not json")
    try:
        assert status(f"{server}/runs/{quote(summary['run_id'])}")[0] == 500
        assert status(server + "/")[0] == 200
    finally:
        broken.unlink()


def test_served_pages_in_chromium(store, server, browser):
    page, problems = open_page(browser, server + "/")
    page.locator("a", has_text="tiny").first.click()  # the sweep
    page.wait_for_load_state("load")
    page.locator("#results a").first.click()  # one of its runs
    page.wait_for_load_state("load")
    assert problems == [] and "/runs/tiny-" in page.url and drawn(page, "#curves")


def test_serve_binds_to_loopback_by_default(store):
    httpd = make_server(store[0].root, port=0)
    try:
        assert httpd.server_address[0] == "127.0.0.1"
    finally:
        httpd.server_close()


def test_export_tensorboard_and_tables(store, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs, summary = store
    run = runs.find(summary["run_id"])
    expected = {step: value for step, split, name, value in run.metric_rows() if (split, name) == ("val", "acc")}
    for _ in range(2):  # a second export replaces the first
        done = losslab_here("export", summary["run_id"], "--store", runs.root, "--tensorboard", tmp_path / "tb",
                            "--table", tmp_path / "m.csv", "--json")
        assert done.returncode == 0, done.stderr
    written = json.loads(done.stdout)
    assert len(list((tmp_path / "tb" / summary["run_id"]).glob("events.out.tfevents.*"))) == 1
    events = EventAccumulator(written["tensorboard"])
    events.Reload()
    assert {e.step: e.value for e in events.Scalars("1 loss and accuracy/acc/val")} == pytest.approx(expected)
    assert {"config/text_summary", "events/text_summary"} <= set(events.Tags()["tensors"])
    table = pyarrow.csv.read_csv(tmp_path / "m.csv").to_pydict()
    assert {s: v for s, v in zip(table["step"], table["val/acc"]) if v is not None} == pytest.approx(expected)
    assert {"train/loss", "val/loss", "cost/train_s"} <= set(table)


@pytest.mark.parametrize(("args", "message"), [
    (["report", "nothing-here"], "no run, sweep or benchmark 'nothing-here'"),
    (["report", "tiny", "--html", "page.txt"], "Invalid value for '--html': page.txt: the file must end in .html"),
    (["report", "tiny", "--html", "/no/dir/x.html"], "Invalid value for '--html': /no/dir/x.html: no folder /no/dir"),
    (["export", "RUN"], "say where: --tensorboard DIR and/or --table"),
    (["export", "RUN", "--table", "m.json"], "Invalid value for '--table': m.json: the file must end in .csv or "
                                             ".parquet"),
    (["export", "RUN", "--table", "/no/dir/x.csv"], "Invalid value for '--table': /no/dir/x.csv: no folder /no/dir"),
    (["serve", "--store", "/nonexistent/store"], "no run store at /nonexistent/store"),
])
def test_bad_input_is_one_line(store, args, message):
    runs, summary = store
    args = [summary["run_id"] if a == "RUN" else a for a in args]
    if "--store" not in args:
        args += ["--store", runs.root]
    done = losslab_here(*args)
    assert done.returncode == 2 and done.stderr.startswith(f"losslab: error: {message}")
    assert done.stderr.count("\n") == 1


def test_serve_on_a_busy_port_is_one_line(store):
    httpd = make_server(store[0].root, port=0)
    try:
        done = losslab_here("serve", "--store", store[0].root, "--port", httpd.server_address[1])
        assert done.returncode == 2 and "cannot listen on 127.0.0.1:" in done.stderr
    finally:
        httpd.server_close()


def test_an_every_step_series_is_drawn_whole_or_as_its_envelope_which_keeps_every_spike():
    """100,000 steps of a loss with one spike: the panel holds at most two points a pixel column
    (1,200 columns on the log axis), among them the spike, the lowest point and the first steps
    one by one; a series of fewer points is drawn whole."""
    import numpy as np

    from losslab.monitor.figures import curves
    from losslab.report.plots import COLUMNS, envelope, other_series

    rng = np.random.default_rng(0)
    loss = np.exp(-np.arange(100_000) / 2e4) + 0.01 * rng.random(100_000)
    loss[54_321] = 5.0
    rows = [(s, "train", "step_loss", float(v)) for s, v in enumerate(loss)]
    rows += [(s, "probe", "grad_norm", 1.0 / (s + 1)) for s in range(0, 100_000, 1000)]
    fig = other_series(curves(rows))
    drawn_loss = next(t for t in fig.data if t.name == "train step_loss")
    assert len(drawn_loss.x) <= 2 * COLUMNS and 54_321 in drawn_loss.x and max(drawn_loss.y) == 5.0
    assert min(drawn_loss.y) == loss.min() and list(drawn_loss.x[:10]) == [1, 1, *range(2, 10)]  # step 0 at 1
    assert list(drawn_loss.x) == sorted(drawn_loss.x)
    assert len(next(t for t in fig.data if t.name == "probe grad_norm").x) == 100  # whole
    steps, values = envelope(list(range(10)), [float("nan")] * 10)
    assert steps == list(range(10))  # short: drawn as it is
