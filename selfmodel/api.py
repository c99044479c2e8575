"""A small HTTP API over the published snapshot, for services not written in Python: `selfmodel api`.

    GET  /users/{user_id}/beliefs   the user's self-model (the `selfmodel lookup --json` shape); 404 if the
                                    snapshot holds nothing about the user
    POST /enrich                    {"user_id", "query", "min_confidence"?, "max_beliefs"?} ->
                                    {"enriched_query", "beliefs_used", "snapshot"}; a user the snapshot does
                                    not know gets the query back unchanged (as BeliefStore.enrich does)
    GET  /healthz                   snapshot version, data as-of, users, last reload error; 503 until a
                                    snapshot is published

It reads through `warehouse.online.BeliefStore`'s public API only and follows CURRENT as the store does
(its watcher thread). Until something is published it keeps looking for CURRENT in a thread of its own,
so the event loop never waits for a snapshot to load. Every error is JSON with an `error` line: 404
unknown user or path, 422 a body or parameter that does not validate (min_confidence outside [0, 1], an
unknown field), 503 no snapshot.

Handlers are `async def` and call the store directly: a lookup costs microseconds and never blocks, so a
thread-pool hop per request would cost more than the work.
"""

from __future__ import annotations

import json
import gc
import logging
import socket
import sys
import threading
from collections.abc import Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from selfmodel.settings import Settings
from warehouse.online import BeliefStore, SnapshotError, read_current

log = logging.getLogger("selfmodel.api")

MAX_BELIEFS_USED = 10_000  # as `selfmodel enrich --max-beliefs`


class EnrichRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt min_confidence must not be ignored silently

    user_id: str = Field(min_length=1)
    query: str
    # allow_inf_nan: NaN passes every comparison with a bound; refuse it outright.
    min_confidence: float | None = Field(default=None, ge=0, le=1, allow_inf_nan=False)
    max_beliefs: int = Field(default=12, ge=1, le=MAX_BELIEFS_USED)


class SnapshotHolder:
    """The BeliefStore once a snapshot exists: opened at start-up, or by a thread that looks for CURRENT
    every `poll_interval` seconds until one is published. After that the store follows CURRENT itself."""

    def __init__(self, folder: Path, poll_interval: float = 1.0, store: BeliefStore | None = None) -> None:
        self.folder = Path(folder)
        self.poll_interval = poll_interval
        self.store = store
        self.owns_store = store is None
        self.open_error: str | None = None  # why there is no store (yet)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.store is not None or self._try_open():
            return
        self._thread = threading.Thread(target=self._wait_for_snapshot, name="api-wait-for-snapshot", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.owns_store and self.store is not None:
            self.store.close()

    def _try_open(self) -> bool:
        try:
            if read_current(self.folder) is None:
                self.open_error = f"no snapshot published in {self.folder} yet: run `selfmodel publish`"
                return False
            self.store = BeliefStore.open(self.folder, watch=True, poll_interval=self.poll_interval)
        except SnapshotError as exc:
            self.open_error = str(exc)
            return False
        self.open_error = None
        log.info("serving snapshot %s from %s", self.store.version, self.folder)
        return True

    def _wait_for_snapshot(self) -> None:
        while not self._stop.wait(self.poll_interval):
            if self._try_open():
                return


def _json(payload, status: int = 200) -> Response:
    # json.dumps (ASCII): a control or bidi character in a belief travels as a \\u escape.
    return Response(json.dumps(payload, default=_json_default), status_code=status, media_type="application/json")


def _json_default(value):
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _error(status: int, message: str, **extra) -> Response:
    return _json({"error": message, **extra}, status)


def create_app(source: Settings | BeliefStore | str | Path, *, poll_interval: float = 1.0,
               freeze_gc: bool = False, on_started: Callable[[SnapshotHolder], None] | None = None) -> FastAPI:
    """The API over a BeliefStore (used as given, not closed), or over the snapshots folder of these
    settings or this path (opened at start-up, or as soon as a snapshot is published).

    `freeze_gc`: after start-up, move every object so far out of the collector's way (`gc.freeze()`), so
    full collections do not walk the loaded snapshot: steadier tail latency for a long-running server.
    `on_started` is called once start-up is done (the snapshot loaded, or the wait for one begun).
    """
    if isinstance(source, BeliefStore):
        holder = SnapshotHolder(source.folder, poll_interval, store=source)
    else:
        folder = source.snapshots_path if isinstance(source, Settings) else Path(source)
        holder = SnapshotHolder(folder, poll_interval)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        holder.start()
        if freeze_gc:
            gc.collect()
            gc.freeze()
        if on_started is not None:
            on_started(holder)
        try:
            yield
        finally:
            holder.stop()

    app = FastAPI(title="selfmodel", summary="Beliefs about users from the published snapshot", lifespan=lifespan,
                  docs_url="/docs", redoc_url=None)
    app.state.snapshots = holder

    def no_snapshot() -> Response:
        return _error(503, holder.open_error or f"no snapshot published in {holder.folder}")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        problems = [f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in exc.errors()]
        if request.method == "POST" and "json" not in request.headers.get("content-type", ""):
            problems.append("send the body as JSON, with Content-Type: application/json")
        return _error(422, "; ".join(problems) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> Response:
        return _error(exc.status_code, str(exc.detail))

    @app.get("/healthz", summary="Snapshot in service, its data as-of, and the last reload error")
    async def healthz() -> Response:
        store = holder.store
        if store is None:
            return _json({"status": "no snapshot", "snapshot": None, "data_as_of": None, "users": 0,
                          "last_reload_error": None, "error": holder.open_error}, 503)
        manifest = store.manifest
        return _json({"status": "ok", "snapshot": store.version, "data_as_of": manifest.get("data_as_of"),
                      "users": store.users, "serving_threshold": manifest.get("serving_threshold"),
                      "last_reload_error": store.last_error})

    # :path, so an id with a slash (sent as %2F, which the server decodes before routing) still matches.
    @app.get("/users/{user_id:path}/beliefs", summary="The user's beliefs, most confident first (lookup --json)")
    async def beliefs(user_id: str) -> Response:
        store = holder.store
        if store is None:
            return no_snapshot()
        model = store.get(user_id)
        if model.cold_start:
            return _error(404, "the snapshot holds nothing about this user", user_id=user_id,
                          snapshot=model.snapshot_version)
        return _json(model.model_dump(mode="json"))

    @app.post("/enrich", summary="The query with a preamble of the user's confident beliefs")
    async def enrich(request: EnrichRequest) -> Response:
        store = holder.store
        if store is None:
            return no_snapshot()
        try:
            enrichment = store.enrich(request.query, request.user_id, min_confidence=request.min_confidence,
                                      max_beliefs=request.max_beliefs)
        except ValueError as exc:  # min_confidence below what the snapshot holds
            return _error(422, str(exc))
        return _json({
            "enriched_query": enrichment.enriched_query,
            "beliefs_used": [belief.model_dump(mode="json") for belief in enrichment.beliefs_used],
            "snapshot": enrichment.snapshot_version,
            "min_confidence": enrichment.min_confidence,
        })

    return app


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket, bound here rather than by uvicorn: a port in use is an OSError for the caller
    (uvicorn would log it and exit 3). Made from getaddrinfo's protocol (IPPROTO_TCP), as asyncio makes its
    own: asyncio sets TCP_NODELAY only on connections whose protocol says TCP, and without it each response
    (head and body are two writes) waits ~40 ms for the client's delayed ACK."""
    family, kind, protocol, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    listening = socket.socket(family, kind, protocol)
    try:
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind(address)
        listening.listen(2048)
    except OSError as exc:
        listening.close()
        raise OSError(exc.errno, exc.strerror, f"{host}:{port}") from None
    return listening


def serve(settings: Settings, host: str, port: int, poll_interval: float = 1.0) -> None:
    """Run the API with uvicorn until interrupted (one process, one event loop). Raises OSError when the
    address cannot be bound."""
    import uvicorn

    from selfmodel.terminal import printable

    def announce(holder: SnapshotHolder) -> None:
        store = holder.store
        state = (f"serving snapshot {store.version} ({store.users:,} users)" if store is not None
                 else f"no snapshot yet ({holder.open_error}): 503 until one is published")
        print(printable(f"selfmodel api on http://{host}:{port}: {state}"), file=sys.stderr, flush=True)

    listening = _listen(host, port)
    app = create_app(settings, poll_interval=poll_interval, freeze_gc=True, on_started=announce)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    try:
        server.run(sockets=[listening])
    finally:
        listening.close()

