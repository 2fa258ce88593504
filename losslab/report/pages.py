"""HTML pages of a run and of a sweep: self-contained (Plotly's script and the data inlined) when
written to a file, or pointing at one shared copy of the script when served.

Every piece of text from a config, a run or a sweep goes through html.escape; numbers are
formatted here, not trusted.
"""

from __future__ import annotations

import base64
import html
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import plotly.graph_objects as go
import plotly.io as pio

from losslab.report import plots
from losslab.store import RunDir, RunStore
from losslab.store.run_dir import atomic_write

EVENTS = {"t1": "train accuracy first reaches 10%", "t2": "memorization: train accuracy 99%",
          "t3": "val accuracy first reaches 10%", "t4": "generalization: val accuracy 99%"}
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
        from plotly.offline import get_plotlyjs

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


def _image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return (f'<figure><img class="figure" alt="{html.escape(path.name)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(path.name)}</figcaption></figure>")


# ---------------------------------------------------------------- a run


def run_page(run: RunDir, plotly_js: str = "inline", nav: str = "") -> str:
    summary, rows = run.summary(), run.metric_rows()
    name, run_id, description = summary.get("name", ""), run.path.name, run.config().description
    events = summary.get("events") or {}
    facts = [("status", summary.get("status")), ("stop reason", summary.get("stop_reason")),
             ("steps", summary.get("steps")), ("wall time (s)", summary.get("wall_s")),
             ("parameters", summary.get("n_params")), ("peak memory (MB)", summary.get("peak_rss_mb")),
             ("seed", summary.get("seed")), ("created", summary.get("created"))]
    body = [f"<h1>{html.escape(str(name))}</h1><p class='sub'>{html.escape(run_id)}"
            f"{' &mdash; ' + html.escape(description) if description else ''}</p>",
            table(facts, table_id="facts"),
            "<h2>Events</h2>", table([(k, events.get(k), EVENTS[k]) for k in EVENTS], ("event", "step", "meaning"),
                                     table_id="events"),
            "<h2>Final metrics</h2>", table(sorted((summary.get("final") or {}).items()), ("metric", "value"),
                                            table_id="final"),
            "<h2>Curves</h2>", figure_div(plots.grokking_curves(rows, events, f"{name}: accuracy and loss"),
                                          "curves") or "<p>no metrics recorded yet</p>"]
    if summary.get("signature"):
        body += ["<h2>Spectral signature of the early training loss</h2>",
                 table(list(summary["signature"].items()), ("", "value"), table_id="signature")]
    other = plots.other_series(rows)
    if other is not None:
        body += ["<h2>Probes over training</h2>", figure_div(other, "probes")]
    analyses = sorted((run.path / "analyses").glob("*.json")) if (run.path / "analyses").is_dir() else []
    if analyses:
        body.append("<h2>Analyses</h2>")
    for i, path in enumerate(analyses):
        result = json.loads(path.read_text())
        body += [f'<section class="analysis"><h3>{html.escape(path.stem)}</h3>',
                 table(scalars(result), ("", "value")),
                 figure_div(plots.analysis_figure(path.stem, result), f"analysis-{i}"), "</section>"]
    images = sorted(run.figure_dir.glob("*.png")) if run.figure_dir.is_dir() else []
    if images:
        body += ["<h2>Figures</h2><details><summary>the run's PNG figures "
                 f"({len(images)})</summary>", *map(_image, images), "</details>"]
    body += ["<h2>Config</h2>", f"<pre>{html.escape((run.path / 'config.toml').read_text())}</pre>"]
    return page(f"{name} ({run_id})", "\n".join(body), plotly_js, nav)


# ---------------------------------------------------------------- a sweep

RESULT_COLUMNS = ("status", "stop_reason", "t1", "t2", "t3", "t4", "grokked", "val_acc", "train_acc", "val_loss",
                  "signature_energy", "wall_s")


def sweep_page(name: str, rows: list[dict], run_link: Callable[[str], str | None], plotly_js: str = "inline",
               nav: str = "") -> str:
    """The sweep's phase diagrams over its two main axes and its sortable results table, each run
    linked to its own page (run_link gives the address, or None where the run has none)."""
    from losslab.sweep.figures import default_axes
    from losslab.sweep.phase import OUTCOMES, cell_means

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
    table_rows = []
    for r in rows:
        href = run_link(r["run_id"])
        run = html.escape(r["run_id"])
        link = Markup(f'<td data-value="{run}">' + (f'<a href="{html.escape(href)}">{run}</a>' if href else run)
                      + "</td>")
        table_rows.append((link, *(r.get(k) for k in axis_columns), *(r.get(k) for k in RESULT_COLUMNS)))
    body += ["<h2>Runs</h2><p class='sub'>click a column to sort</p>",
             table(table_rows, header, table_id="results", sortable=True)]
    return page(f"sweep {name}", "\n".join(body), plotly_js, nav)


# ---------------------------------------------------------------- files


def write_run_report(run: RunDir, out: Path | None = None) -> Path:
    """The run's page, self-contained, at `out` (default: report.html in the run's folder)."""
    out = out or run.path / "report.html"
    atomic_write(out, lambda p: p.write_text(run_page(run)))
    return out


def write_sweep_report(store: RunStore, name: str, out: Path | None = None) -> Path:
    """The sweep's page, self-contained, at `out` (default: report.html in the sweep's folder), and
    beside it pages/ with one page per run, which share one copy of plotly.js."""
    from plotly.offline import get_plotlyjs

    from losslab.sweep.run import read_results, sweep_dir

    rows = read_results(store, name)
    out = out or sweep_dir(store, name) / "report.html"
    pages = out.parent / "pages"
    pages.mkdir(parents=True, exist_ok=True)
    atomic_write(pages / "plotly.min.js", lambda p: p.write_text(get_plotlyjs()))
    linked = set()
    for r in rows:
        if (store.root / r["run_id"] / "run.json").is_file():
            run = store.find(r["run_id"])
            atomic_write(pages / f"{r['run_id']}.html", lambda p: p.write_text(run_page(run, "plotly.min.js")))
            linked.add(r["run_id"])
    html_text = sweep_page(name, rows, lambda run_id: f"pages/{quote(run_id)}.html" if run_id in linked else None)
    atomic_write(out, lambda p: p.write_text(html_text))
    return out
