"""`losslab serve`: a read-only web view of a run store (the standard library's HTTP server).

/                 the runs and the sweeps
/runs/RUN_ID      a run's page
/sweeps/NAME      a sweep's page, its runs linked
/bench/NAME       a bench-optim result's page, its trial runs linked
/plotly.min.js    the one copy of plotly.js the pages share

Pages are built from the store at each request, so a running sweep shows its latest state.
Only GET and HEAD are answered; nothing in the store is written.
"""

from __future__ import annotations

import html
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote

from losslab.errors import LossLabError
from losslab.report.pages import Markup, bench_page, page, run_page, sweep_page, table
from losslab.store import RunStore

NAV = '<nav><a href="/">all runs and sweeps</a></nav>'


def link_list(section: str, names: list[str]) -> str:
    if not names:
        return "<p>none</p>"
    return "<ul>" + "".join(f'<li><a href="/{section}/{quote(n)}">{html.escape(n)}</a></li>' for n in names) + "</ul>"


def index_page(store: RunStore) -> str:
    runs = store.summaries() if store.index.path.is_file() else []
    rows = []
    for s in reversed(runs):  # the newest first
        link = f'<td data-value="{html.escape(s["run_id"])}"><a href="/runs/{quote(s["run_id"])}">' \
               f'{html.escape(s["run_id"])}</a></td>'
        events = s.get("events") or {}
        rows.append((Markup(link), s.get("name"), s.get("status"), s.get("steps"), events.get("t2"),
                     events.get("t4"), (s.get("final") or {}).get("val_acc"), s.get("created")))
    sweeps = sorted(p.parent.name for p in (store.root / "sweeps").glob("*/results.parquet"))
    benchmarks = sorted((p.parent.name for p in (store.root / "bench").glob("*/results.json")), reverse=True)
    body = (f"<h1>losslab</h1><p class='sub'>{html.escape(str(store.root.resolve()))}</p>"
            "<h2>Sweeps</h2>" + link_list("sweeps", sweeps) + "<h2>Benchmarks</h2>" + link_list("bench", benchmarks)
            + "<h2>Runs</h2>" + table(rows, ("run", "name", "status", "steps", "t2", "t4", "val acc", "created"),
                                      table_id="runs", sortable=True))
    return page("losslab runs", body, "/plotly.min.js")


class StoreHandler(BaseHTTPRequestHandler):
    store: RunStore
    plotly_js: bytes

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        self._answer(send_body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(send_body=False)

    def _answer(self, send_body: bool) -> None:
        path = unquote(self.path.split("?", 1)[0])
        try:
            status, kind, body = HTTPStatus.OK, "text/html; charset=utf-8", self._page(path)
        except LossLabError as e:
            status, kind = HTTPStatus.NOT_FOUND, "text/html; charset=utf-8"
            body = page("not found", f"{NAV}<h1>not found</h1><p>{html.escape(str(e))}</p>", "/plotly.min.js")
        except Exception as e:  # noqa: BLE001 - one unreadable file in the store: say so, keep serving
            status, kind = HTTPStatus.INTERNAL_SERVER_ERROR, "text/html; charset=utf-8"
            body = page("error", f"{NAV}<h1>cannot show {html.escape(path)}</h1>"
                                 f"<p>{html.escape(type(e).__name__)}: {html.escape(str(e))}</p>", "/plotly.min.js")
        if isinstance(body, bytes):
            kind = "text/javascript; charset=utf-8"
        data = body if isinstance(body, bytes) else body.encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if send_body:
            self.wfile.write(data)

    def _page(self, path: str) -> str | bytes:
        from losslab.bench.run import find_benchmark, read_benchmark
        from losslab.sweep.run import read_results

        if path == "/":
            return index_page(self.store)
        if path == "/plotly.min.js":
            return self.plotly_js
        section, _, name = path.strip("/").partition("/")
        if not name or "/" in name or name in (".", ".."):  # one plain name: nothing outside the store
            raise LossLabError(f"no page {path!r}")
        def run_link(run_id: str) -> str:
            return f"/runs/{quote(run_id)}"
        if section == "runs":
            return run_page(self.store.find(self.store.root / name), "/plotly.min.js", NAV)
        if section == "sweeps":
            return sweep_page(name, read_results(self.store, name), run_link, "/plotly.min.js", NAV)
        if section == "bench":
            folder = find_benchmark(self.store, name)
            return bench_page(folder.name, *read_benchmark(folder), run_link, "/plotly.min.js", NAV)
        raise LossLabError(f"no page {path!r}")

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server's signature
        pass  # quiet: the command prints its address once


def make_server(store_root: Path, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    from plotly.offline import get_plotlyjs

    handler = type("Handler", (StoreHandler,), {"store": RunStore(store_root), "plotly_js": get_plotlyjs().encode()})
    return ThreadingHTTPServer((host, port), handler)
