"""`losslab serve`: a read-only web view of a run store (the standard library's HTTP server).

/                 the runs and the sweeps
/runs/RUN_ID      a run's page (a running run's follows its training: /runs/RUN_ID/live.json)
/sweeps/NAME      a sweep's page, its runs linked
/bench/NAME       a bench-optim result's page, its trial runs linked
/plotly.min.js    the one copy of plotly.js the pages share

Pages are built from the store at each request, so a running sweep shows its latest state.
Only GET and HEAD are answered; nothing in the store is written. A path that is no page is 404,
one over 2,048 characters 414; failed requests are logged one line each.
"""

from __future__ import annotations

import html
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote

from plotly.offline import get_plotlyjs

from losslab.bench.run import find_benchmark, read_benchmark
from losslab.core.errors import NotFound
from losslab.core.names import name_problem
from losslab.report.pages import Markup, bench_page, live_state, page, run_page, sweep_page, table
from losslab.store import RunStore
from losslab.sweep.run import read_results

NAV = '<nav><a href="/">all runs and sweeps</a></nav>'


def link_list(section: str, names: list[str]) -> str:
    if not names:
        return "<p>none</p>"
    return "<ul>" + "".join(f'<li><a href="/{section}/{quote(n)}">{html.escape(n)}</a></li>' for n in names) + "</ul>"


def index_page(store: RunStore) -> str:
    runs = store.summaries()
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


MAX_PATH = 2048  # longer request paths are answered 414


class StoreHandler(BaseHTTPRequestHandler):
    store: RunStore
    plotly_js: bytes

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        self._answer(send_body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(send_body=False)

    def _answer(self, send_body: bool) -> None:
        path = None
        try:
            if len(self.path) <= MAX_PATH:
                path = unquote(self.path.split("?", 1)[0], errors="strict")
            if path is None:
                status, body = HTTPStatus.REQUEST_URI_TOO_LONG, _message("too long", "a path of at most "
                                                                         f"{MAX_PATH} characters")
            else:
                status, body = HTTPStatus.OK, self._page(path)
        except (NotFound, UnicodeDecodeError) as e:
            status, body = HTTPStatus.NOT_FOUND, _message("not found", str(e))
        except Exception as e:  # noqa: BLE001 - one unreadable file in the store: say so, keep serving
            status, body = HTTPStatus.INTERNAL_SERVER_ERROR, _message(f"cannot show {path}",
                                                                      f"{type(e).__name__}: {e}")
            self.log_error("%s: %s: %s", path, type(e).__name__, str(e).splitlines()[0] if str(e) else "")
        kind = ("application/json" if path and path.endswith(".json") else "text/javascript; charset=utf-8") \
            if isinstance(body, bytes) else "text/html; charset=utf-8"
        data = body if isinstance(body, bytes) else body.encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if send_body:
            self.wfile.write(data)

    def _page(self, path: str) -> str | bytes:
        if path == "/":
            return index_page(self.store)
        if path == "/plotly.min.js":
            return self.plotly_js
        section, _, name = path.strip("/").partition("/")
        name, _, part = name.partition("/")
        if name_problem(name) or part not in ("", "live.json") or (part and section != "runs"):  # one plain name: nothing outside the store, nothing too long
            raise NotFound(f"no page {path[:100]!r}")

        def run_link(run_id: str) -> str:
            return f"/runs/{quote(run_id)}"
        if section == "runs":
            run = self.store.find(self.store.root / name)
            return live_state(run) if part else run_page(run, "/plotly.min.js", NAV, f"/runs/{quote(name)}/live.json")
        if section == "sweeps":
            return sweep_page(name, read_results(self.store, name), run_link, "/plotly.min.js", NAV)
        if section == "bench":
            folder = find_benchmark(self.store, name)
            return bench_page(folder.name, *read_benchmark(folder), run_link, "/plotly.min.js", NAV)
        raise NotFound(f"no page {path[:100]!r}")

    def log_request(self, code="-", size="-") -> None:
        """One short line per failed request on stderr; successful ones are not logged."""
        if isinstance(code, int) and code >= 400:
            line = self.requestline if len(self.requestline) <= 200 else self.requestline[:200] + "..."
            self.log_message('"%s" %s', line, code)


def _message(title: str, text: str) -> str:
    return page(title, f"{NAV}<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>", "/plotly.min.js")


class StoreServer(ThreadingHTTPServer):
    """A thread per request, a listen queue deep enough for hundreds of clients at once (the
    standard library's 5 drops connections), and one line, not a traceback, when a client
    goes away mid-answer."""

    request_queue_size = 1024

    def handle_error(self, request, client_address) -> None:
        error = sys.exc_info()[1]
        sys.stderr.write(f"losslab serve: {client_address[0]}: {type(error).__name__}: {error}\n")


def make_server(store_root: Path, host: str = "127.0.0.1", port: int = 8000) -> StoreServer:
    handler = type("Handler", (StoreHandler,), {"store": RunStore(store_root), "plotly_js": get_plotlyjs().encode()})
    return StoreServer((host, port), handler)
