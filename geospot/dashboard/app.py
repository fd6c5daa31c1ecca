"""The dashboard's ASGI app: a JSON API over the run stores of one runs folder, a live
Server-Sent-Events stream per run, and the static page (static/index.html and its scripts: app.js,
with charts.js, worldmap.js, explain.js and geo.js before it).

Safety by construction:
- read-only: every store is opened through `RunReader` (SQLite `mode=ro`, query_only);
- no paths from requests: a run is named by a key looked up in the set of run folders
  found under the runs folder, and a thumbnail by an image id looked up in that run's
  store (the file name is a hash, re-checked to lie inside the run's thumbs folder);
- model text is data: the API returns JSON, the page sets it with textContent, and a strict
  Content-Security-Policy forbids inline script and any other origin;
- files only from inside the runs folder: a thumbnail's fully resolved path must lie inside
  the resolved runs folder (a `thumbs/` symlinked to /etc serves nothing);
- no DNS rebinding: a request whose Host header names neither localhost, an IP address, the
  bound host nor an `allowed_hosts` name is refused (403), as Jupyter and Vite do, so a page
  on evil.com that re-points its name at 127.0.0.1 reads nothing;
- a token when asked for (the CLI requires one to bind beyond loopback): `?token=` once sets
  an HttpOnly SameSite=Strict cookie; `Authorization: token <t>` works for scripts;
- a corrupt store is a 503 "unreadable" answer (one warning line), never a traceback.

Live updates: one `RunWatcher` per watched run polls the store's change counter (`seq`)
and keeps a bounded ring of recent events; each SSE client keeps its own cursor into it
and falls back to the store when it fell behind the ring, so no event is lost and memory
stays bounded however many clients listen.
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import ipaddress
import json
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from geospot.dashboard.env_view import env_view, played_envs
from geospot.runs.liveness import effective_status
from geospot.runs.store import STORE_FILE, RunReader

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
MAX_DEPTH = 3  # runs/<group>/<name>/store.sqlite at most
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


class RunWatcher:
    """Polls one store for new events; SSE clients read from its bounded ring."""

    def __init__(self, reader: RunReader, poll_s: float, ring_size: int) -> None:
        self.reader, self.poll_s = reader, poll_s
        self.ring: collections.deque[dict[str, Any]] = collections.deque(maxlen=ring_size)
        self.generation = reader.generation()
        self.last_seq = reader.seq()
        self.ring_floor = self.last_seq  # the ring holds every event with seq > ring_floor
        self.changed = asyncio.Event()
        self.clients = 0
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._poll())

    async def _poll(self) -> None:
        while self.clients > 0:
            try:
                generation = await asyncio.to_thread(self.reader.generation)
                if generation != self.generation:  # started afresh, or rewound by a resume: clients start again
                    self.ring.clear()
                    self.generation, self.last_seq = generation, await asyncio.to_thread(self.reader.seq)
                    self.ring_floor = self.last_seq
                    old, self.changed = self.changed, asyncio.Event()
                    old.set()
                events = await asyncio.to_thread(self.reader.events_since, self.last_seq)
            except Exception:  # store busy or mid-creation: try again next tick
                log.debug("poll of %s failed", self.reader.path, exc_info=True)
                events = []
            if events:
                for e in events:
                    if len(self.ring) == self.ring.maxlen:
                        self.ring_floor = self.ring[0]["seq"]
                    self.ring.append(e)
                self.last_seq = events[-1]["seq"]
                old, self.changed = self.changed, asyncio.Event()
                old.set()  # wake every waiting client at once
            await asyncio.sleep(self.poll_s)

    async def events_after(self, cursor: int) -> list[dict[str, Any]]:
        if cursor >= self.ring_floor:
            return [e for e in self.ring if e["seq"] > cursor]
        return await asyncio.to_thread(self.reader.events_since, cursor)  # fell behind the ring


class Dashboard:
    def __init__(self, runs_dir: str | Path, poll_s: float = 0.25, ring_size: int = 4096,
                 keepalive_s: float = 15.0) -> None:
        self.runs_dir = Path(runs_dir).resolve()
        self.poll_s, self.ring_size, self.keepalive_s = poll_s, ring_size, keepalive_s
        self._runs: dict[str, Path] = {}
        self._watchers: dict[str, RunWatcher] = {}
        self._summaries: dict[str, tuple[tuple, dict[str, Any]]] = {}  # name -> (version, summary)

    # ---- run discovery -----------------------------------------------------------------
    def scan(self) -> dict[str, Path]:
        found: dict[str, Path] = {}
        if self.runs_dir.is_dir():
            for depth in range(MAX_DEPTH + 1):
                for store in self.runs_dir.glob("/".join(["*"] * depth + [STORE_FILE])):
                    run = store.parent
                    if run.resolve().is_relative_to(self.runs_dir):  # no symlinks out of the folder
                        name = run.relative_to(self.runs_dir).as_posix()
                        found[name if name != "." else self.runs_dir.name] = run
        self._runs = found
        return found

    def reader(self, name: str) -> RunReader | None:
        run = self._runs.get(name) or self.scan().get(name)
        return RunReader(run) if run is not None else None

    def summary(self, name: str, run: Path) -> dict[str, Any]:
        """The run-list row of one run. Every tab polls /api/runs, and a summary parses every
        step's metrics, so it is cached until the store's change counter moves. The version
        is read *before* the summary: a write in between only costs a recompute next time."""
        reader = RunReader(run)
        meta = reader.meta()
        # `created` too: a run folder deleted and started afresh restarts seq from 0
        version = (str(run), meta.get("seq"), meta.get("created"))
        hit = self._summaries.get(name)
        if hit is not None and hit[0] == version:
            summary = hit[1]
        else:
            summary = {**reader.summary(), "setup": run_setup(reader.config()[1])}
            self._summaries[name] = (version, summary)
        # a killed run writes nothing, so liveness is judged afresh on every call, not cached
        return {**summary, "status": effective_status(summary.get("stored_status", summary["status"]), meta)}

    def forget_missing(self, names: set[str]) -> None:
        """Drop cached summaries of runs that are gone (bounded by the runs on disk)."""
        for name in list(self._summaries):  # a snapshot: worker threads may add entries meanwhile
            if name not in names:
                self._summaries.pop(name, None)

    def watcher(self, name: str, reader: RunReader) -> RunWatcher:
        """The run's watcher; made afresh when no page follows the old one (its poll has stopped, so
        what it holds may be another history of the run by now)."""
        w = self._watchers.get(name)
        if w is None or w.clients == 0:
            w = self._watchers[name] = RunWatcher(reader, self.poll_s, self.ring_size)
        return w


def run_setup(config: dict[str, Any]) -> dict[str, Any]:
    """What a run is, for the run list (a hierarchical, a geohash and a single-turn run's held-out
    GeoScore are different numbers): its env (RL's env_type and the mix_env_type playing part of
    each batch; SFT's prompt_style and `asks`, the env its held-out eval asks), reasoning, its model_name and
    the run it started from."""
    def text(key: str) -> str | None:
        value = config.get(key)
        return str(value) if isinstance(value, (str, int, float)) and str(value) else None

    share = config.get("mix_share")
    return {"env_type": text("env_type"), "mix_env_type": text("mix_env_type"),
            "mix_share": share if isinstance(share, (int, float)) and not isinstance(share, bool) else None,
            "prompt_style": text("prompt_style"), "asks": (played_envs(config) or [None])[0],
            "reasoning": config.get("reasoning") is True,
            "model": text("model_name"), "start": text("load_checkpoint_path"), "start_run": None}


def inherit_models(rows: list[dict[str, Any]]) -> None:
    """A run started from another run's weights (load_checkpoint_path=<run>) records no model_name:
    it continues its start run's model (train/inherit.py). Where that start run is one of the listed
    runs (its path ends with the run's name, a `checkpoints/<step>` folder of it counts), name it
    (`start_run`) and take its model, down a chain (sft -> rl -> rl). Only names already listed are
    looked up: no path from a config is ever opened."""
    by_name = {r["name"]: r for r in rows if r.get("setup")}

    def listed(path: str) -> str | None:
        parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
        if "checkpoints" in parts:
            parts = parts[:len(parts) - 1 - parts[::-1].index("checkpoints")]
        for k in range(min(len(parts), MAX_DEPTH + 1), 0, -1):  # the longest name first
            if "/".join(parts[-k:]) in by_name:
                return "/".join(parts[-k:])
        return None

    for row in by_name.values():  # every row's start run first: the chains below walk them
        setup = row["setup"] = dict(row["setup"])  # the cached summary stays as the store says
        setup["start_run"] = listed(setup["start"]) if setup["start"] and "://" not in setup["start"] else None
    for row in by_name.values():
        setup = row["setup"]
        seen, start = {row["name"]}, setup["start_run"]
        while setup["model"] is None and start is not None and start not in seen:
            seen.add(start)
            parent = by_name[start]["setup"]
            setup["model"], start = parent["model"], parent["start_run"]


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status)


def _run_or_404(dash: Dashboard, request: Request) -> RunReader | JSONResponse:
    name = request.query_params.get("run", "")
    reader = dash.reader(name)
    if reader is None:
        return _json({"error": "no such run"}, 404)
    return reader


def _int64(text: str) -> int | None:
    """An integer the store can compare with (SQLite's are 64-bit), or None."""
    try:
        value = int(text)
    except ValueError:
        return None
    return value if -2**63 <= value < 2**63 else None


def _unreadable(handler: Any) -> Any:
    """A per-run endpoint whose store is corrupt (or not a store) answers 503 with one line
    logged, instead of a 500 and a traceback."""
    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except (sqlite3.Error, OSError, ValueError, KeyError, TypeError) as e:
            log.warning("dashboard: run %r is unreadable (%s: %s)", request.query_params.get("run", ""),
                        type(e).__name__, e)
            return _json({"error": f"run store unreadable ({type(e).__name__})"}, 503)
    return guarded


def create_app(runs_dir: str | Path, *, allowed_hosts: tuple[str, ...] | None = None, bound_host: str = "127.0.0.1",
               token: str | None = None, **dashboard_kwargs: Any) -> Starlette:
    """`allowed_hosts`: Host-header names accepted besides localhost, IP addresses and
    `bound_host`; `token`: required on every request when set."""
    dash = Dashboard(runs_dir, **dashboard_kwargs)

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    async def api_runs(request: Request) -> Response:
        rows = []
        found = await asyncio.to_thread(dash.scan)
        dash.forget_missing(set(found))
        for name, run in sorted(found.items()):
            try:
                rows.append({"name": name, **await asyncio.to_thread(dash.summary, name, run)})
            except Exception as e:  # a store being created or corrupt: list it, flagged
                rows.append({"name": name, "kind": "", "status": f"unreadable: {type(e).__name__}", "steps": 0,
                             "last_step": None, "last": {}, "best": {}, "setup": {}})
        inherit_models(rows)
        return _json({"runs_dir": str(dash.runs_dir), "runs": rows})

    async def api_run(request: Request) -> Response:
        reader = _run_or_404(dash, request)
        if isinstance(reader, Response):
            return reader

        def load() -> dict[str, Any]:
            generation, seq = reader.generation(), reader.seq()  # read first: events after it are streamed
            kind, config = reader.config()
            return {"name": request.query_params["run"], "kind": kind, "config": config, "setup": run_setup(config),
                    "env": env_view(config), "seq": seq, "generation": generation,
                    "status": reader.status()["status"], "steps": reader.steps(), "image_steps": reader.image_steps()}

        return _json(await asyncio.to_thread(load))

    async def api_status(request: Request) -> Response:
        """The run's status judged now (a run killed without a word turns `stopped`)."""
        reader = _run_or_404(dash, request)
        if isinstance(reader, Response):
            return reader
        return _json(await asyncio.to_thread(reader.status))

    async def api_images(request: Request) -> Response:
        reader = _run_or_404(dash, request)
        if isinstance(reader, Response):
            return reader
        step = _int64(request.query_params.get("step", ""))
        if step is None:
            return _json({"error": "step must be an integer"}, 400)
        split = request.query_params.get("split", "train")
        return _json({"step": step, "split": split, "images": await asyncio.to_thread(reader.images, step, split)})

    async def api_thumb(request: Request) -> Response:
        reader = _run_or_404(dash, request)
        if isinstance(reader, Response):
            return reader
        path = await asyncio.to_thread(reader.thumb_path, request.query_params.get("id", ""))
        # the store checks the thumbs folder; a thumbs folder that is itself a symlink out of
        # the runs folder must not count, so the file's own resolved path is checked here
        if path is None or not Path(path).resolve().is_relative_to(dash.runs_dir):
            return _json({"error": "no such image"}, 404)
        return FileResponse(path, media_type="image/jpeg")

    async def api_events(request: Request) -> Response:
        name = request.query_params.get("run", "")
        reader = _run_or_404(dash, request)
        if isinstance(reader, Response):
            return reader
        # EventSource resends the last id it saw on reconnect: resume exactly there
        cursor = _int64(request.headers.get("last-event-id") or request.query_params.get("since", "0"))
        if cursor is None:
            return _json({"error": "since must be an integer"}, 400)
        watcher = dash.watcher(name, reader)
        seen = request.query_params.get("generation")  # the history the page holds (its /api/run's)
        return StreamingResponse(_stream(watcher, cursor, dash.keepalive_s, seen), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    routes = [
        Route("/", index),
        Route("/favicon.ico", lambda request: Response(status_code=204)),
        Route("/api/runs", api_runs),
        Route("/api/run", _unreadable(api_run)),
        Route("/api/status", _unreadable(api_status)),
        Route("/api/images", _unreadable(api_images)),
        Route("/api/thumb", _unreadable(api_thumb)),
        Route("/api/events", _unreadable(api_events)),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    # a long run's /api/run is megabytes of step history: gzip (not the event stream: starlette excludes it)
    middleware = [Middleware(SecurityHeaders),
                  Middleware(HostAndToken, allowed_hosts=(bound_host, *(allowed_hosts or ())), token=token),
                  Middleware(GZipMiddleware, minimum_size=1024, compresslevel=6)]  # (9: far more CPU, ~same size)
    app = Starlette(routes=routes, middleware=middleware)
    app.state.dashboard = dash
    return app


class SecurityHeaders:
    """Pure ASGI middleware (keeps SSE streaming untouched) adding CSP and friends."""

    HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
               (b"referrer-policy", b"no-referrer"), (b"x-frame-options", b"DENY")]

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.HEADERS]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def host_allowed(host_header: str, allowed: set[str]) -> bool:
    """Host header (with or without a port) -> is it localhost, an IP literal, or a named host?
    IP literals are safe: DNS rebinding needs a name the attacker controls."""
    host = host_header.strip().lower()
    if host.startswith("["):  # [::1]:8765
        host = host[1:host.find("]")] if "]" in host else host[1:]
    elif host.count(":") == 1:
        host = host.rsplit(":", 1)[0]
    host = host.rstrip(".")
    if not host:
        return False
    if host in allowed or host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


TOKEN_COOKIE = "geospot_dashboard_token"


class HostAndToken:
    """Pure ASGI middleware: the Host-header check (403) and, when a token is set, the token
    check (401): `?token=` (then remembered in a cookie), the cookie, or `Authorization: token`."""

    def __init__(self, app: Any, allowed_hosts: tuple[str, ...], token: str | None) -> None:
        self.app, self.token = app, token
        self.allowed = {h.strip().lower().strip("[]") for h in allowed_hosts if h and h not in ("0.0.0.0", "::")}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if not host_allowed(headers.get("host", ""), self.allowed):
            return await _plain(send, 403, "Host header not allowed: start the dashboard with "
                                           "--allowed-host NAME to serve it under that name")
        if self.token is None:
            return await self.app(scope, receive, send)
        request = Request(scope)
        given = (request.query_params.get("token") or request.cookies.get(TOKEN_COOKIE)
                 or headers.get("authorization", "").removeprefix("token ").strip())
        if not given or not hmac.compare_digest(given.encode(), self.token.encode()):
            return await _plain(send, 401, "token required: open the URL with ?token=... that the dashboard printed")
        if request.query_params.get("token"):
            cookie = f"{TOKEN_COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/".encode()

            async def send_cookie(message: dict) -> None:
                if message["type"] == "http.response.start":
                    message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie)]}
                await send(message)

            return await self.app(scope, receive, send_cookie)
        return await self.app(scope, receive, send)


async def _plain(send: Any, status: int, text: str) -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _stream(watcher: RunWatcher, cursor: int, keepalive_s: float, seen: str | None) -> AsyncIterator[str]:
    watcher.clients += 1
    watcher.start()
    try:
        yield "retry: 1000\n\n"
        while True:
            changed = watcher.changed  # take the event before reading, so no wake-up is missed
            if seen is not None and seen != watcher.generation:  # the page holds another history: it reloads,
                if seen != await asyncio.to_thread(watcher.reader.generation):  # unless the watcher is the one behind
                    yield "event: reset\ndata: {}\n\n"
                    return
                await asyncio.sleep(watcher.poll_s)  # (its poll catches up within a tick)
                continue
            events = await watcher.events_after(cursor)
            if any(e["type"] == "status" for e in events):
                # a stored status is what the writer last said; a run killed without a word still says
                # `running`: each status event carries the status judged now (liveness), as /api/status does
                now = (await asyncio.to_thread(watcher.reader.status))["status"]
                events = [{**e, "data": {**e["data"], "status": now}} if e["type"] == "status" else e for e in events]
            for e in events:
                cursor = e["seq"]
                yield f"id: {e['seq']}\nevent: {e['type']}\ndata: {json.dumps(e['data'])}\n\n"
            if events:
                continue
            try:
                await asyncio.wait_for(changed.wait(), keepalive_s)
            except TimeoutError:
                yield ": keepalive\n\n"
    finally:
        watcher.clients -= 1

