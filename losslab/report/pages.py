"""HTML pages of a run and of a sweep: self-contained (Plotly's script and the data inlined) when
written to a file, or pointing at one shared copy of the script when served.

Every piece of text from a config, a run or a sweep goes through html.escape; numbers are
formatted here, not trusted.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from losslab.bench.run import CLOCKS, read_benchmark
from losslab.core.files import atomic_write, read_json, read_text
from losslab.monitor.events import meanings
from losslab.monitor.figures import curves
from losslab.report import plots
from losslab.store import RunDir, RunStore
from losslab.sweep.figures import default_axes
from losslab.sweep.phase import OUTCOMES, cell_means
from losslab.sweep.run import read_results, sweep_dir

HIDDEN = {"file", "figure", "figure_3d", "run_id"}  # analysis keys that are not results
STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:0 24px 48px;color:#222}
h1{margin-bottom:0}.sub{color:#666;margin-top:4px}h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:36px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 9px;text-align:left}
th{background:#f5f5f5}table.sortable th{cursor:pointer}td.num{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#f7f7f7;padding:12px;overflow:auto}img.figure{max-width:100%;border:1px solid #eee}
nav a{margin-right:14px}.grid{display:grid;grid-template-columns:1fr 1fr;gap:8px}
"""
SORT_SCRIPT = """
document.querySelectorAll("table.sortable th").forEach((th, col) => th.addEventListener("click", () => {
  const body = th.closest("table").tBodies[0], up = th.dataset.order !== "up";
  th.dataset.order = up ? "up" : "down";
  const key = row => { const v = row.cells[col].dataset.value; return v === "" ? null : isNaN(+v) ? v : +v; };
  [...body.rows].sort((a, b) => {
    const x = key(a), y = key(b);
    if (x === null || y === null) return (x === null) - (y === null);  // empty cells last
    return (x > y ? 1 : x < y ? -1 : 0) * (up ? 1 : -1);
  }).forEach(row => body.appendChild(row));
}));
"""


def plotly_script(source: str) -> str:
    """'inline' puts plotly.js in the page; anything else is the URL of a copy of it."""
    if source == "inline":
        return f"<script>{get_plotlyjs()}</script>"
    return f'<script src="{html.escape(source)}"></script>'


def page(title: str, body: str, plotly_js: str, nav: str = "") -> str:
    # the empty icon: no request for /favicon.ico (a 404 in the console)
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">'
            f"<title>{html.escape(title)}</title><style>{STYLE}</style>{plotly_script(plotly_js)}</head>\n<body>{nav}{body}"
            f"<script>{SORT_SCRIPT}</script></body></html>\n")


def cell(value) -> str:
    if isinstance(value, bool) or value is None or not isinstance(value, (int, float)):
        text = "-" if value is None else str(value)
        return f'<td data-value="{"" if value is None else html.escape(text)}">{html.escape(text)}</td>'
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return f'<td class="num" data-value="{value!r}">{text}</td>'


class Markup(str):
    """A table cell already written as HTML (a link), not to be escaped again."""


def table(rows: list[tuple], header: tuple | None = None, table_id: str = "", sortable: bool = False) -> str:
    attributes = (f' id="{table_id}"' if table_id else "") + (' class="sortable"' if sortable else "")
    head = "<thead><tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr></thead>" \
        if header else ""
    body = "".join("<tr>" + "".join(c if isinstance(c, Markup) else cell(c) for c in row) + "</tr>" for row in rows)
    return f"<table{attributes}>{head}<tbody>{body}</tbody></table>"


def figure_div(fig: go.Figure | None, div_id: str) -> str:
    if fig is None:
        return ""
    return pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id=div_id,
                       config={"displaylogo": False, "responsive": True})


def scalars(result: dict) -> list[tuple[str, object]]:
    """The numbers and words of an analysis (one level of nesting flattened), not its series."""
    found = []
    for key, value in result.items():
        if key in HIDDEN:
            continue
        if isinstance(value, dict):
            found += [(f"{key}.{k}", v) for k, v in value.items()
                      if v is None or isinstance(v, (int, float, str, bool))]
        elif value is None or isinstance(value, (int, float, str, bool)):
            found.append((key, value))
    return found


def image(path: Path, caption: str | None = None) -> str:
    """A PNG inlined in the page (it stays self-contained), captioned by its name unless told."""
    data = base64.b64encode(path.read_bytes()).decode()
    return (f'<figure><img class="figure" alt="{html.escape(path.name)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption or path.name)}</figcaption></figure>")


# ---------------------------------------------------------------- a run

LIVE_EVERY_S = 2  # a running run's served page asks for its figures this often
# the served page of a running run: its figures redrawn in place (Plotly.react) from /runs/ID/live.json, its
# status and steps updated, until it ends (then the page loads once more, whole)
LIVE_SCRIPT = """
const live = async () => {
  let state = null;
  try { state = await (await fetch(LIVE_URL, {cache: "no-store"})).json(); } catch (e) {}
  if (state) {
    for (const [id, figure] of Object.entries(state.figures)) {
      const div = document.getElementById(id);
      if (!div) { location.reload(); return; }
      Plotly.react(div, figure.data, figure.layout);
    }
    const facts = document.getElementById("facts").rows;
    facts[0].cells[1].textContent = state.status;
    facts[2].cells[1].textContent = state.steps;
    if (state.status !== "running") { location.reload(); return; }
  }
  setTimeout(live, LIVE_EVERY_S * 1000);
};
setTimeout(live, LIVE_EVERY_S * 1000);
"""


def live_figures(summary: dict, series: plots.Series) -> dict[str, go.Figure]:
    """The figures of a run that change while it trains, by the id of their place on its page
    (series: monitor.figures.curves of its metric rows)."""
    found = {"curves": plots.grokking_curves(series, summary.get("events") or {},
                                             f"{summary.get('name', '')}: accuracy and loss"),
             "probes": plots.other_series(series)}
    return {place: fig for place, fig in found.items() if fig is not None}


def live_state(run: RunDir) -> bytes:
    """What a running run's page redraws: its status, its steps and its figures (JSON)."""
    summary = run.summary()
    figures = ",".join(f"{json.dumps(place)}:{pio.to_json(fig, validate=False)}"
                       for place, fig in live_figures(summary, curves(run.metric_rows())).items())
    return (f'{{"status":{json.dumps(summary.get("status"))},"steps":{json.dumps(summary.get("steps"))},'
            f'"figures":{{{figures}}}}}').encode()


def run_page(run: RunDir, plotly_js: str = "inline", nav: str = "", live: str | None = None) -> str:
    """The run's page; `live`, the URL of its live_state where it is served: a running run's
    figures then follow its training without a reload."""
    summary, series = run.summary(), curves(run.metric_rows())
    figures = live_figures(summary, series)
    monitored = summary.get("monitor")
    description = monitored["description"] if monitored else run.config().describe()
    name, run_id = summary.get("name", ""), run.path.name
    events = summary.get("events") or {}
    facts = [("status", summary.get("status")), ("stop reason", summary.get("stop_reason")),
             ("steps", summary.get("steps")), ("wall time (s)", summary.get("wall_s")),
             ("parameters", summary.get("n_params")), ("peak memory (MB)", summary.get("peak_rss_mb")),
             ("seed", summary.get("seed")), ("created", summary.get("created"))]
    body = [f"<h1>{html.escape(str(name))}</h1><p class='sub'>{html.escape(run_id)}"
            f"{' &mdash; ' + html.escape(description) if description else ''}</p>",
            table(facts, table_id="facts"),
            *(["<h2>Events</h2>", table([(k, events.get(k), said) for k, said in
                                         meanings(events, summary.get("event_thresholds")).items()],
                                        ("event", "step", "meaning"), table_id="events")] if events else []),
            "<h2>Final metrics</h2>", table(sorted((summary.get("final") or {}).items()), ("metric", "value"),
                                            table_id="final"),
            "<h2>Curves</h2>", figure_div(figures.get("curves"), "curves") or "<p>no metrics recorded yet</p>"]
    if summary.get("signature"):
        body += ["<h2>Spectral signature of the early training loss</h2>",
                 table(list(summary["signature"].items()), ("", "value"), table_id="signature")]
    constant = plots.constant_series(series)
    if "probes" in figures:
        body += ["<h2>Probes over training</h2>", figure_div(figures["probes"], "probes")]
    if constant:
        body += ["<h2>Constant over training</h2>", table(list(constant.items()), ("series", "value"),
                                                          table_id="constants")]
    analyses = run.analyses()
    if analyses:
        body.append("<h2>Analyses</h2>")
    for i, path in enumerate(analyses):
        result = read_json(path, f"run {run_id}: analysis {path.name}")
        body += [f'<section class="analysis"><h3>{html.escape(path.stem)}</h3>',
                 table(scalars(result), ("", "value")),
                 figure_div(plots.analysis_figure(result), f"analysis-{i}"), "</section>"]
    images = sorted(run.figure_dir.glob("*.png")) if run.figure_dir.is_dir() else []
    if images:
        body += ["<h2>Figures</h2><details><summary>the run's PNG figures "
                 f"({len(images)})</summary>", *map(image, images), "</details>"]
    if monitored:
        body += ["<h2>Monitored in your own training loop</h2>",
                 f"<pre>{html.escape(json.dumps(monitored, indent=2))}</pre>"]
    else:
        body += ["<h2>Config</h2>", f"<pre>{html.escape(read_text(run.config_path, f'run {run_id}: config.toml'))}</pre>"]
    if live and summary.get("status") == "running":
        body.append(f"<script>const LIVE_URL = {json.dumps(live)}, LIVE_EVERY_S = {LIVE_EVERY_S};"
                    f"{LIVE_SCRIPT}</script>")
    return page(f"{name} ({run_id})", "\n".join(body), plotly_js, nav)


def run_cell(run_id: str | None, run_link: Callable[[str], str | None]) -> Markup:
    """A table cell naming a run, linked to its page where it has one."""
    if not run_id:
        return Markup('<td data-value="">-</td>')
    href, run = run_link(run_id), html.escape(run_id)
    return Markup(f'<td data-value="{run}">' + (f'<a href="{html.escape(href)}">{run}</a>' if href else run) + "</td>")


# ---------------------------------------------------------------- a sweep

RESULT_COLUMNS = ("status", "stop_reason", "t1", "t2", "t3", "t4", "grokked", "val_acc", "train_acc", "val_loss",
                  "signature_energy", "wall_s")


def sweep_page(name: str, rows: list[dict], run_link: Callable[[str], str | None], plotly_js: str = "inline",
               nav: str = "") -> str:
    """The sweep's phase diagrams over its two main axes and its sortable results table, each run
    linked to its own page (run_link gives the address, or None where the run has none)."""
    counts = Counter(r["status"] for r in rows)
    body = [f"<h1>sweep {html.escape(name)}</h1>",
            f"<p class='sub'>{len(rows)} runs: "
            + ", ".join(f"{n} {html.escape(str(s))}" for s, n in counts.most_common()) + "</p>"]
    axes = default_axes(rows)
    if axes is not None:
        x, y = axes
        body.append(f"<h2>Phase diagrams: {html.escape(x)} x {html.escape(y)}</h2>")
        body.append('<div class="grid">')
        for outcome in OUTCOMES:
            xs, ys, matrix = cell_means(rows, x, y, outcome)
            body.append(figure_div(plots.phase_heatmap(xs, ys, matrix, x, y, outcome), f"phase-{outcome}"))
        body.append("</div>")
    axis_columns = [k for k in (rows[0] if rows else {}) if k.startswith("axis:")]
    header = ("run", *(k.removeprefix("axis:") for k in axis_columns), *RESULT_COLUMNS)
    table_rows = [(run_cell(r["run_id"], run_link), *(r.get(k) for k in axis_columns),
                   *(r.get(k) for k in RESULT_COLUMNS)) for r in rows]
    body += ["<h2>Runs</h2><p class='sub'>click a column to sort</p>",
             table(table_rows, header, table_id="results", sortable=True)]
    return page(f"sweep {name}", "\n".join(body), plotly_js, nav)


# ---------------------------------------------------------------- a benchmark


def _missed(value: float):
    return None if value == math.inf else value  # shown as "-", sorted last


def bench_page(name: str, result: dict, trials: list[dict], run_link: Callable[[str], str | None],
               plotly_js: str = "inline", nav: str = "") -> str:
    """A bench-optim result (read_benchmark's): a leaderboard per clock (scores with their bootstrap
    intervals, each workload's time to target), the performance profiles, the best
    hyperparameters and every trial, linked to its run."""
    optimizers, workloads = result["optimizers"], result["workloads"]
    body = [f"<h1>benchmark {html.escape(name)}</h1>",
            f"<p class='sub'>suite {html.escape(str(result.get('suite')))}: {len(workloads)} workloads, "
            f"{len(optimizers)} optimizers, {result.get('trials_per_study')} trials per study x "
            f"{result.get('studies')} studies; score = the area under the performance profile up to r_max = "
            f"{result['r_max']:g}, divided by r_max - 1 (1 = fastest on every workload)</p>"]
    for clock, clock_label in CLOCKS.items():
        block = result["clocks"][clock]
        intervals = block.get("intervals") or {}
        rows = [(opt, block["scores"][opt], *(intervals.get(opt) or (None, None)),
                 *(_missed(block["times"][opt][w]) for w in workloads))
                for opt in sorted(optimizers, key=block["scores"].get, reverse=True)]
        body += [f"<h2>Leaderboard: time to target in {html.escape(clock_label)}</h2>"
                 "<p class='sub'>click a column to sort; - = target missed</p>",
                 table(rows, ("optimizer", "score", "95% low", "95% high", *workloads),
                       table_id=f"leaderboard-{clock}", sortable=True)]
    body += ["<h2>Performance profiles</h2>", figure_div(plots.performance_profiles(result, CLOCKS), "profiles")]
    best = result.get("best_hyperparameters") or {}
    body += ["<h2>Best hyperparameters (study 0)</h2>",
             table([(opt, *(_hyperparameters(best.get(opt, {}).get(w)) for w in workloads)) for opt in optimizers],
                   ("optimizer", *workloads), table_id="best")]
    trial_rows = [(t["workload"], t["optimizer"], t["study"], _hyperparameters(t["hyperparameters"]),
                   _missed(t["seconds"]), _missed(t["grad_evals"]), run_cell(t["run_id"], run_link), t["error"])
                  for t in trials]
    body += ["<h2>Trials</h2>", table(trial_rows, ("workload", "optimizer", "study", "hyperparameters",
                                                   "seconds to target", "gradient evaluations", "run", "error"),
                                      table_id="trials", sortable=True)]
    return page(f"benchmark {name}", "\n".join(body), plotly_js, nav)


def _hyperparameters(hp: dict | None) -> str | None:
    return None if hp is None else ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                                             for k, v in hp.items())


# ---------------------------------------------------------------- files


def write_run_report(run: RunDir, out: Path | None = None) -> Path:
    """The run's page, self-contained, at `out` (default: report.html in the run's folder)."""
    out = out or run.path / "report.html"
    atomic_write(out, lambda p: p.write_text(run_page(run)))
    return out


def write_sweep_report(store: RunStore, name: str, out: Path | None = None) -> Path:
    """The sweep's page, self-contained, at `out` (default: report.html in the sweep's folder), and
    beside it pages/ with one page per run."""
    rows = read_results(store, name)
    out = out or sweep_dir(store, name) / "report.html"
    html_text = sweep_page(name, rows, write_run_pages(store, [r["run_id"] for r in rows], out.parent / "pages"))
    atomic_write(out, lambda p: p.write_text(html_text))
    return out


def write_bench_report(store: RunStore, folder: Path, out: Path | None = None) -> Path:
    """The benchmark's page, self-contained, at `out` (default: report.html in its folder), and
    beside it pages/ with a page per trial run."""
    result, trials = read_benchmark(folder)
    out = out or folder / "report.html"
    run_link = write_run_pages(store, [t["run_id"] for t in trials if t["run_id"]], out.parent / "pages")
    html_text = bench_page(folder.name, result, trials, run_link)
    atomic_write(out, lambda p: p.write_text(html_text))
    return out


def write_run_pages(store: RunStore, run_ids: list[str], pages: Path) -> Callable[[str], str | None]:
    """A page per run (those still in the store) in `pages`, sharing one copy of plotly.js there;
    returns the link to a run's page from beside `pages`, or None where it has none."""
    pages.mkdir(parents=True, exist_ok=True)
    atomic_write(pages / "plotly.min.js", lambda p: p.write_text(get_plotlyjs()))
    linked = set()
    for run_id in run_ids:
        if (store.root / run_id / "run.json").is_file():
            run = store.find(run_id)
            atomic_write(pages / f"{run_id}.html", lambda p: p.write_text(run_page(run, "plotly.min.js")))
            linked.add(run_id)
    return lambda run_id: f"{pages.name}/{quote(run_id)}.html" if run_id in linked else None
