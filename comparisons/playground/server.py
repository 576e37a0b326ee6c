"""playground: a local page that trains trigrad's MLP, or its tiny GPT, live on every backend at once.

    python -m comparisons playground            # serves http://127.0.0.1:8765/ and opens it
    python -m comparisons playground --dataset spirals --loss softmax_ce --sizes 2,16,16,3
    python -m comparisons playground --model gpt --task reverse     # attention maps, live

The page (comparisons/playground/page.html with its style and scripts in static/: plain HTML, CSS and
JavaScript, nothing fetched from the internet) shows the decision boundary, every hidden unit over the
input plane, one unit's forward and backward for one sample, the train and test loss of every backend
and dtype, and the parity gap between each pair of backends in ε units; in GPT mode, each head's
attention map instead. This module is its server: the standard library's ThreadingHTTPServer on
127.0.0.1 only, and these endpoints:

    GET  /                     the page; /static/NAME its style and scripts
    GET  /api/options          defaults, choices, installed backends and the bounds below
    POST /api/run              {config} -> a new run at step 0 (400 naming the field if a value is bad)
    POST /api/step             {run, steps?, view?} -> one chunk, streamed as JSON lines (see `step`)
    GET  /api/export.npz       ?run=ID&lane=numpy-float64: the run as a Trajectory file (Trajectory.save)
    GET  /api/config.json      ?run=ID: the run's config, as the page and the command line spell it
    GET  /api/view.json        ?run=ID&lane=LANE: the pictures of another lane, without training
    GET  /api/inspect.json     ?run=ID&lane=LANE&layer=L&unit=J&sample=I: one unit's forward and backward
                               for one training sample on every backend of the lane's dtype (inspector.py)
    GET  /api/link.json        ?run=ID&layer=L&i=I&j=J: the weight W[L][I, J] over the run on every lane,
                               and its gradient now
    GET  /api/attention.json   ?run=ID&lane=LANE&tokens=31415 (GPT mode): every layer's and head's (t × t)
                               attention map for that input, by the lane's framework, and its prediction

A config uses the command line's option names (`batch_size` for --batch-size) and is validated by the
very parser and `build_problem` that every other command uses, so a bad value is refused with the same
message, before any work. On top come the playground's own bounds (MAX_*): a page request can never
ask for more than a few seconds of work or a few MB of memory.

How a run continues. A run is a chain of chunks, and chunk k is one `Backend.train` call that
continues the run so far (`train(spec, traj, ...)`: its params, its optimizer state, its place in the
minibatch schedule), so N chunks of `steps` are exactly one run of N·steps, momentum and Adam
included. Nothing else is re-implemented.
"""

from __future__ import annotations

import itertools
import json
import sys
import tempfile
import threading
import webbrowser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse

from comparisons.playground.config import (
    CONFIG_FIELDS,
    HOST,
    MAX_BODY,
    MAX_CHUNK_STEPS,
    MAX_RUNS,
    ConfigError,
    make_playground_parser,
    options,
    setup,
    setup_from_args,
)
from comparisons.playground.gpt_mode import GPTSetup, attention_view
from comparisons.playground.inspector import inspect_unit, link_history
from comparisons.playground.runs import Lane, Run, Runs, describe_run, step, view

PAGE = Path(__file__).with_name("page.html")
STATIC = Path(__file__).with_name("static")  # the page's style and scripts, served as they are
STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}

# ---- the HTTP server ----


class Handler(BaseHTTPRequestHandler):
    """GET the page, the options and the exports; POST a new run or a chunk. Errors are JSON:
    {"error": message, "field": name} with status 400 (a bad value) or 404/405/413."""

    server: PlaygroundServer
    server_version = "trigrad-playground"

    def log_message(self, format, *args):  # quiet: a page polls many times a second
        if self.server.verbose:
            super().log_message(format, *args)

    def _send(self, status: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, obj: dict, status: int = 200) -> None:
        self._send(status, json.dumps(obj, allow_nan=False).encode(), "application/json")

    def _error(self, status: int, message: str, field_name: str | None = None) -> None:
        self._json({"error": message, "field": field_name}, status)

    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise ConfigError("body", f"a request body of {length} bytes; at most {MAX_BODY}")
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError("body", f"not JSON: {e}") from None
        if not isinstance(body, dict):
            raise ConfigError("body", f"expected a JSON object; got {type(body).__name__}")
        return body

    def _query(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(urlparse(self.path).query).items()}

    def do_GET(self) -> None:
        path = urlparse(self.path).path
        pages = {
            "/": self._page,
            "/index.html": self._page,
            "/favicon.ico": lambda: self._send(204, b"", "image/x-icon"),
            "/api/options": lambda: self._json(options() | {"csv": self.server.csv}),
            "/api/config.json": self._config,
            "/api/export.npz": self._export,
            "/api/view.json": self._view,
            "/api/attention.json": self._attention,
            "/api/inspect.json": self._inspect,
            "/api/link.json": self._link,
        }
        try:
            if path.startswith("/static/"):
                self._static(path.removeprefix("/static/"))
            elif path not in pages:
                self._error(404, f"no page {path}")
            else:
                pages[path]()
        except ConfigError as e:
            self._error(400, str(e), e.field)
        except Exception as e:  # a bug, not a bad request: say so, keep serving
            self._error(500, f"{type(e).__name__}: {e}")

    # ---- the GET endpoints: each reads its query, checks it (ConfigError: a 400), answers ----

    def _page(self) -> None:
        self._send(200, PAGE.read_bytes(), "text/html; charset=utf-8")

    def _static(self, name: str) -> None:
        """One of the page's own files, by its plain name (no folders: nothing else can be read)."""
        files = {p.name: p for p in STATIC.iterdir() if p.suffix in STATIC_TYPES}
        if name not in files:
            self._error(404, f"no file /static/{name}")
            return
        self._send(200, files[name].read_bytes(), STATIC_TYPES[files[name].suffix])

    def _run_and_lane(self, query: dict) -> tuple[Run, Lane]:
        run = self.server.runs.get(query.get("run"))
        return run, run.lane(query.get("lane"))

    def _config(self) -> None:
        run = self.server.runs.get(self._query().get("run"))
        body = json.dumps({"config": run.setup.config, "step": run.step, "chunks": run.chunks}, indent=2)
        disposition = {"Content-Disposition": 'attachment; filename="playground-config.json"'}
        self._send(200, body.encode(), "application/json", disposition)

    def _export(self) -> None:
        run, lane = self._run_and_lane(self._query())
        with run.lock, tempfile.TemporaryDirectory() as folder:
            data = lane.trajectory(run.setup).save(Path(folder) / "run.npz").read_bytes()
        disposition = {"Content-Disposition": f'attachment; filename="playground-{lane.name}.npz"'}
        self._send(200, data, "application/octet-stream", disposition)

    def _view(self) -> None:
        run, lane = self._run_and_lane(self._query())
        with run.lock, self.server.runs.training:
            self._json({"type": "view", **view(run.setup, lane)})

    def _attention(self) -> None:
        query = self._query()
        run, lane = self._run_and_lane(query)
        if not isinstance(run.setup, GPTSetup):
            raise ConfigError("run", "attention maps are the GPT's: this run trains the MLP (model=mlp)")
        try:
            with run.lock, self.server.runs.training:
                numbers = attention_view(run.setup, lane, query.get("tokens"))
        except ValueError as e:
            raise ConfigError("tokens", str(e)) from None
        self._json({"run": run.id, "step": run.step, **numbers})

    def _inspect(self) -> None:
        query = self._query()
        run, lane = self._run_and_lane(query)
        if isinstance(run.setup, GPTSetup):
            raise ConfigError("run", "the unit panel is the MLP's: this run trains the GPT (attention.json)")
        with run.lock, self.server.runs.training:
            backends = [b for b, d in run.setup.lanes if d == lane.dtype]
            numbers = inspect_unit(run.setup, lane.params, lane.dtype, backends, query)
        self._json({"run": run.id, "lane": lane.name, "step": run.step, **numbers})

    def _link(self) -> None:
        query = self._query()
        run = self.server.runs.get(query.get("run"))
        if isinstance(run.setup, GPTSetup):
            raise ConfigError("run", "links are the MLP's: this run trains the GPT")
        with run.lock, self.server.runs.training:
            self._json({"run": run.id, "step": run.step, **link_history(run, query)})

    def do_POST(self) -> None:
        path = urlparse(self.path).path
        try:
            if path == "/api/run":
                body = self._body()
                run = self.server.runs.new(setup(body.get("config", {})))
                with self.server.runs.training:
                    described = describe_run(run)
                self._json(described)
            elif path == "/api/step":
                body = self._body()
                run = self.server.runs.get(body.get("run"))
                steps = body.get("steps", run.setup.config["steps"])
                if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_CHUNK_STEPS:
                    raise ConfigError(
                        "steps", f"--steps expected an integer from 1 to {MAX_CHUNK_STEPS}; got {steps!r}"
                    )
                self._stream(run, steps, body.get("view"))
            else:
                self._error(404, f"no endpoint {path}")
        except ConfigError as e:
            self._error(400, str(e), e.field)
        except Exception as e:
            self._error(500, f"{type(e).__name__}: {e}")

    def _stream(self, run: Run, steps: int, view_lane: object) -> None:
        """The chunk's results as JSON lines, each sent as soon as it is computed."""
        if not run.lock.acquire(blocking=False):
            return self._error(409, "this run is already training a chunk", "run")
        try:
            with self.server.runs.training:
                chunks = step(run, steps, view_lane if isinstance(view_lane, str) else None)
                first = next(chunks)  # a ConfigError here is still a 400
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                try:
                    for item in itertools.chain([first], chunks):
                        self.wfile.write(json.dumps(item, allow_nan=False).encode() + b"\n")
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):  # the tab was closed: stop, change nothing
                    chunks.close()
                    self.close_connection = True
                except Exception as e:  # after the headers: the error goes down the stream as a line
                    line = {"type": "error", "error": f"{type(e).__name__}: {e}"}
                    self.wfile.write(json.dumps(line).encode() + b"\n")
        finally:
            run.lock.release()


class PlaygroundServer(ThreadingHTTPServer):
    daemon_threads = True  # a request still running never holds up Ctrl-C

    def __init__(self, port: int = 0, verbose: bool = False, csv: str | None = None, max_runs: int = MAX_RUNS):
        super().__init__((HOST, port), Handler)
        self.runs = Runs(max_runs)  # the least recently used run beyond max_runs is dropped
        self.verbose = verbose
        self.csv = csv  # the command's --csv points: too long for the URL, so the page asks for them

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}/"


def main(argv: list[str]) -> int:
    parser = make_playground_parser()
    args = parser.parse_args(argv)
    s = setup_from_args(parser, args)  # a bad option fails here, before the server starts
    if not 0 <= args.port <= 65535:
        parser.error(f"--port {args.port}: expected 0 to 65535")
    try:
        server = PlaygroundServer(args.port, csv=s.config.get("csv"))
    except OSError as e:
        parser.error(f"--port {args.port}: cannot listen on {HOST}:{args.port} ({e.strerror or e}); try --port 0")
    shown = {k: v for k, v in s.config.items() if k in CONFIG_FIELDS and k != "csv" and v is not None}  # no CSV
    query = {k: ",".join(map(str, v)) if isinstance(v, list) else v for k, v in shown.items()}
    url = f"{server.url}?{urlencode(query)}"
    print(f"trigrad playground at {url}\n(Ctrl-C stops it)", flush=True)
    if not args.no_open:
        threading.Timer(0.3, webbrowser.open, [url]).start()
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        print("\nplayground stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
