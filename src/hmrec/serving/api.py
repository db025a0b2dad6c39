"""The HTTP service: the 4-stage recommender behind FastAPI + uvicorn.

    GET  /recommendations/{customer_id}?k=12&at=YYYY-MM-DD   ordered articles + attributes
    POST /events                  (bearer token) a purchase or click; durable before the 2xx
    GET  /articles/{article_id}   catalogue attributes
    GET  /health                  503 until models, index and events are loaded, then 200
    POST /admin/reload            (bearer token; absent without one) load the new champion
    GET  /docs, /openapi.json     the OpenAPI page

Design choices, and why:

* Ready when it says so. Models load in a background thread after the socket is
  open, so /health can answer 503 ("loading") instead of connections being refused;
  recommendations answer 503 with Retry-After until then.
* Events are written to the log (fsync) before they are applied and before the 2xx
  (hmrec.serving.events), and the log is replayed at start-up and into every reloaded
  model, so an acknowledged event survives kill -9 and a reload.
* Reload builds the new recommender aside, replays the events into it, and swaps one
  reference under the events lock: requests in flight finish on the old one, none
  waits for the load, no event falls between the two.
* Recommendation handlers run on the event loop (they are CPU-bound and take about a
  millisecond; a thread hop would cost more than it buys under the GIL); concurrent
  ones are answered together by one vectorised call (hmrec.serving.batching), which
  pays the per-call costs once per batch. Event handlers run on the loop too (about a
  millisecond of CPU plus one fdatasync): in the thread pool each event waited for the
  GIL a dozen times while the loop answered batches (45 ms median instead of 14 under
  load). The cost: the loop waits for the disk's fdatasync (0.25 ms here; a slow disk
  would add its flush time to every request in flight). While a reload holds the events
  lock an event goes to the thread pool instead, so reads never wait for a reload.
* Steady tail latency: once loaded (and after every reload) the heap is frozen
  (gc.freeze): full garbage collections no longer walk the millions of objects the
  models and lookups hold, which took hundreds of ms under load. /health reports the
  process's collections and their pauses.
* Secure defaults: loopback bind, bounded bodies (413) and header sizes, ids checked
  against the data contract, constant-time token comparison, admin routes not even
  registered when no token is configured.
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import logging
import os
import secrets
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import polars as pl
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from hmrec.config import Settings
from hmrec.serving import schemas
from hmrec.serving.batching import MicroBatcher
from hmrec.serving.events import (
    Event,
    EventLog,
    events_dir,
    ingested_seq,
)
from hmrec.serving.recommender import (
    FourStageRecommender,
    Recommendation,
    RecommendationRequest,
)
from hmrec.store.online import OnlineStore

log = logging.getLogger("hmrec.serving")

MODEL_NAMES = ("query_model", "candidate_model", "ranking_model")
#: Attributes returned with every article (what a product tile needs).
ARTICLE_FIELDS = tuple(f for f in schemas.Article.model_fields if f != "article_id")
#: Largest request line + headers uvicorn buffers (h11); longer requests are refused.
MAX_HEADER_BYTES = 16 * 1024
#: Paths whose requests go through the micro-batcher (counted while in flight).
BATCHED_PREFIX = "/recommendations/"
#: Written by POST /admin/reload so every worker process reloads.
RELOAD_FILE = "reload.json"
#: Environment variable carrying the Settings to worker processes (serve with workers > 1).
SETTINGS_ENV = "HMREC_SERVE_SETTINGS"
#: How often a worker looks for a reload another worker was asked for.
RELOAD_CHECK_S = 0.2


# ---------------------------------------------------------------------------- GC
class GcStats:
    """This process's garbage collections, as /health reports them (gc.callbacks: a
    counter and a clock read per collection, nothing per request)."""

    def __init__(self) -> None:
        self.collections = [0, 0, 0]
        self.full_pause_ms_total = 0.0
        self.pause_ms_max = 0.0
        self._started = 0.0

    def callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause = (time.perf_counter() - self._started) * 1000
        gen = info.get("generation", 0)
        self.collections[gen] += 1
        self.pause_ms_max = max(self.pause_ms_max, pause)
        if gen == 2:
            self.full_pause_ms_total += pause

    def report(self) -> dict[str, Any]:
        return {"collections": list(self.collections), "full_collections": self.collections[2],
                "full_pause_ms_total": round(self.full_pause_ms_total, 3), "pause_ms_max": round(self.pause_ms_max, 3),
                "frozen_objects": gc.get_freeze_count()}


GC_STATS = GcStats()
gc.callbacks.append(GC_STATS.callback)


def freeze_heap(unfreeze_first: bool = False) -> float:
    """Move every object alive now out of the garbage collector's sight (gc.freeze).

    The models, lookups and tables loaded at start-up are millions of long-lived Python
    objects; without this every full collection walks all of them (hundreds of ms holding
    the GIL: the p99 spikes under load), and one runs whenever enough new objects have
    survived. Frozen objects are still freed by reference counting; only cycles among them
    are not, so a reload first unfreezes (the old models' cycles become collectable) and
    collects once, then freezes the new state. Returns the seconds it took."""
    started = time.perf_counter()
    if unfreeze_first:
        gc.unfreeze()
    gc.collect()
    gc.freeze()
    return time.perf_counter() - started


# ---------------------------------------------------------------------------- state
@dataclass
class ServingState:
    """Everything a request reads, swapped as one reference on reload."""

    recommender: FourStageRecommender
    models: dict[str, int | None]
    articles: dict[str, dict[str, Any]]
    loaded_at: str
    events_replayed: int = 0


def _article_table(articles: pl.DataFrame) -> dict[str, dict[str, Any]]:
    cols = ["article_id", *[c for c in ARTICLE_FIELDS if c in articles.columns]]
    return {row["article_id"]: row for row in articles.select(cols).iter_rows(named=True)}


def _model_versions(settings: Settings, alias: str) -> dict[str, int | None]:
    from hmrec.registry import ModelRegistry, RegistryError

    registry = ModelRegistry.from_settings(settings)
    out: dict[str, int | None] = {}
    for name in MODEL_NAMES:
        try:
            out[name] = registry.get_version(name, alias=alias).version
        except RegistryError:
            out[name] = None
    return out


def _default_loader(settings: Settings, alias: str) -> tuple[FourStageRecommender, dict[str, int | None]]:
    from hmrec.serving.loading import load_recommender

    versions = _model_versions(settings, alias)
    return load_recommender(settings, alias=alias), versions


Loader = Callable[[Settings, str], tuple[FourStageRecommender, dict[str, int | None]]]


class Service:
    """The service's moving parts: current state, the events log, loading and reloading.

    Several worker processes may serve one home: the events log is their shared truth
    (each applies what the others appended before answering), and a reload asked of one
    is broadcast to all through ``<store>/events/reload.json``.
    """

    def __init__(self, settings: Settings, recommender: FourStageRecommender | None = None,
                 alias: str = "champion", loader: Loader | None = None,
                 models: dict[str, int | None] | None = None) -> None:
        self.settings = settings
        self.alias = alias
        self.loader = loader or _default_loader
        self.log = EventLog(settings.store_dir)
        self.state: ServingState | None = None
        self.status = "loading"
        self.error: str | None = None
        self.reloading = False
        self.reloads = 0  # completed reloads (what a test waits for, instead of catching `reloading`)
        self._events_lock = threading.Lock()
        self._given = recommender
        self._given_models = models or {n: None for n in MODEL_NAMES}
        self._reload_file = events_dir(settings.store_dir) / RELOAD_FILE
        self._reload_seen: tuple[int, int] | None = None
        self._reload_checked = 0.0
        self._online: OnlineStore | None = None

    # -- loading -------------------------------------------------------------------------
    def start(self, background: bool = True) -> None:
        """Load models (unless given), replay the events log, warm up; /health turns 200."""
        if background:
            threading.Thread(target=self._start, name="hmrec-load", daemon=True).start()
        else:
            self._start()

    def _start(self) -> None:
        try:
            started = time.perf_counter()
            events = self.log.open()  # repairs a torn tail and learns the seqs written so far
            self._reload_seen = self._reload_stamp()
            if self._given is not None:
                rec, models = self._given, self._given_models
            else:
                rec, models = self.loader(self.settings, self.alias)
            state = self._prepare(rec, models)
            with self._events_lock:
                pending = self._pending(events + self.log.catch_up())
                self._apply(state.recommender, pending, fix_online=True)
                state.events_replayed = len(pending)
                self.state = state
            frozen_s = freeze_heap()
            self.status = "ok"
            log.info("ready in %.1f s (%d events replayed; gc.freeze %.2f s, %d objects)",
                     time.perf_counter() - started, len(pending), frozen_s, gc.get_freeze_count())
        except Exception as exc:  # noqa: BLE001 - any failure is reported by /health; the process keeps answering
            self.status = "error"
            self.error = f"{type(exc).__name__}: {exc}"
            log.error("loading failed: %s\n%s", self.error, traceback.format_exc())

    def _prepare(self, rec: FourStageRecommender, models: dict[str, int | None]) -> ServingState:
        last = rec.last_day()
        if last is not None:
            rec.warm_up(last + dt.timedelta(days=1))
        return ServingState(rec, dict(models), _article_table(rec.articles),
                            dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))

    def _pending(self, events: list[Event]) -> list[Event]:
        """The events the store does not hold yet (after the feature pipeline's watermark)."""
        done = ingested_seq(self.settings.store_dir) if events else 0
        return [e for e in events if e.seq > done]

    def _apply(self, rec: FourStageRecommender, events: list[Event], fix_online: bool) -> None:
        """Give the purchases among `events` to the recommender. Holds the events lock.
        Nothing to do (a click, no other worker's events) costs nothing: building even an
        empty frame took ~0.4 ms, twice per POST /events."""
        bought = [e for e in events if e.type == "purchase"]
        if not bought:
            return
        rec.add_purchases(pl.DataFrame(
            {"t_dat": [e.t_dat for e in bought], "customer_id": [e.customer_id for e in bought],
             "article_id": [e.article_id for e in bought]},
            schema={"t_dat": pl.Date, "customer_id": pl.String, "article_id": pl.String}))
        if fix_online:
            self._update_online(rec, list(dict.fromkeys(e.customer_id for e in bought)))

    def catch_up(self) -> None:
        """Before answering: apply what other workers appended, start a reload one was asked for."""
        if self.log.has_new():
            with self._events_lock:
                new = self._pending(self.log.catch_up())
                if self.state is not None:
                    self._apply(self.state.recommender, new, fix_online=False)
        now = time.monotonic()
        if now - self._reload_checked < RELOAD_CHECK_S:
            return
        self._reload_checked = now
        stamp = self._reload_stamp()
        if stamp != self._reload_seen:
            self._reload_seen = stamp
            try:
                alias = json.loads(self._reload_file.read_text())["alias"]
            except (OSError, ValueError, KeyError):
                return
            self.reload(alias)

    def _reload_stamp(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self._reload_file)
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns

    def request_reload(self, alias: str) -> bool:
        """Reload here and tell the other workers (reload.json); False if already reloading."""
        if self.reloading:
            return False
        tmp = self._reload_file.with_name(f".{RELOAD_FILE}.{os.getpid()}.tmp")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"alias": alias, "requested_at": dt.datetime.now(dt.UTC).isoformat()}))
        os.replace(tmp, self._reload_file)
        self._reload_seen = self._reload_stamp()
        return self.reload(alias)

    def reload(self, alias: str | None = None) -> bool:
        """Start loading `alias` in the background; False when a reload is already running."""
        with self._events_lock:
            if self.reloading:
                return False
            self.reloading = True
        threading.Thread(target=self._reload, args=(alias or self.alias,), name="hmrec-reload",
                         daemon=True).start()
        return True

    def _reload(self, alias: str) -> None:
        try:
            rec, models = self.loader(self.settings, alias)
            state = self._prepare(rec, models)
            with self._events_lock:  # no event can fall between the replay and the swap
                self.log.catch_up()
                pending = self._pending(self.log.read_known())
                self._apply(state.recommender, pending, fix_online=False)
                state.events_replayed = len(pending)
                self.state = state
                self.alias = alias
            del rec, state  # the old models go with the last request still using them
            frozen_s = freeze_heap(unfreeze_first=True)
            self.status, self.error = "ok", None
            self.reloads += 1
            log.info("reloaded %s: %s (gc.freeze %.2f s)", alias, models, frozen_s)
        except Exception as exc:  # noqa: BLE001 - whatever failed, keep serving the old models
            self.error = f"reload failed: {type(exc).__name__}: {exc}"
            log.error("%s\n%s", self.error, traceback.format_exc())
        finally:
            self.reloading = False

    # -- events --------------------------------------------------------------------------
    def record(self, ev: schemas.EventIn, wait: bool = True) -> tuple[Event, bool] | None:
        """Append durably, then apply. Returns (event, duplicate); with wait=False, None
        instead of waiting when the events lock is held (a reload's replay and swap)."""
        state = self.state
        if state is None:
            raise HTTPException(503, "the service is still loading; retry shortly", headers={"Retry-After": "1"})
        rec = state.recommender
        if ev.article_id not in state.articles:
            raise HTTPException(422, f"article_id {ev.article_id!r} is not in the catalogue")
        if ev.t_dat is not None:
            day = schemas.parse_day(ev.t_dat, "t_dat")
        else:
            last = rec.last_day()
            day = last if last is not None else dt.date.today()
        if not self._events_lock.acquire(blocking=wait):
            return None
        try:
            if ev.event_id is not None and self.log.seen(ev.event_id):
                found = self.log.find(ev.event_id)
                if found is not None:
                    return found, True
            written, others = self.log.append(ev.type, ev.customer_id, ev.article_id, day, ev.price,
                                              ev.sales_channel_id, ev.event_id)
            rec = self.state.recommender if self.state is not None else rec  # a reload may have swapped
            self._apply(rec, self._pending(others), fix_online=False)  # other workers' events
            if written is not None:
                self._apply(rec, [written], fix_online=True)
            if written is None:  # a concurrent duplicate written by another process
                found = self.log.find(ev.event_id or "")
                assert found is not None
                return found, True
            return written, False
        finally:
            self._events_lock.release()

    def _update_online(self, rec: FourStageRecommender, customer_ids: list[str]) -> None:
        """Rewrite the customers' customer_activity rows in the online store from their full
        history (store + events): idempotent, so a replay after a crash cannot double count."""
        from hmrec.features import groups
        from hmrec.store import FeatureStore

        if self._online is None:
            self._online = FeatureStore(self.settings.store_dir).online
        online = self._online
        table = groups.CUSTOMER_ACTIVITY.name
        if table not in online.tables():
            return
        rows = []
        for c in customer_ids:
            days = rec.purchase_days(c)
            if days:
                rows.append({"customer_id": c, "valid_from": days[-1] + dt.timedelta(days=1),
                             "purchase_count": len(days), "purchase_days": len(set(days)),
                             "last_purchase_date": days[-1]})
        if rows:
            online.upsert(table, pl.DataFrame(rows, schema=online.schema(table)))

    def close(self) -> None:
        """Release files (the events log, the online store's connections)."""
        self.log.close()
        if self._online is not None:
            self._online.close()

    # -- reads ---------------------------------------------------------------------------
    def ready_state(self) -> ServingState:
        state = self.state
        if state is None:
            detail = self.error if self.status == "error" else "the service is still loading; retry shortly"
            raise HTTPException(503, detail, headers={"Retry-After": "1"})
        return state


# ---------------------------------------------------------------------------- HTTP
class BodyLimit:
    """ASGI middleware: refuse request bodies over `limit` bytes with 413 (also chunked ones)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await self._too_large(send)
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.limit:
                return await self._too_large(send)
            if not message.get("more_body"):
                break
        sent = False

        async def replay() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send: Callable) -> None:
        payload = json.dumps({"detail": f"request body larger than {self.limit} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode()), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": payload})


class InFlight:
    """ASGI middleware: tells the micro-batcher when a recommendation request is accepted
    and when it has been answered, so a batch runs as soon as every accepted request is
    waiting in it (instead of after a fixed delay)."""

    def __init__(self, app: Any, batcher: MicroBatcher) -> None:
        self.app = app
        self.batcher = batcher

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or not scope["path"].startswith(BATCHED_PREFIX):
            return await self.app(scope, receive, send)
        self.batcher.arrived()
        try:
            await self.app(scope, receive, send)
        finally:
            self.batcher.left()


def _answer_batch(items: list[tuple[FourStageRecommender, RecommendationRequest]]
                  ) -> list[Recommendation | Exception]:
    """One recommend_many call per recommender (one, except across a reload: a request
    finishes on the models it started with)."""
    out: list[Recommendation | Exception | None] = [None] * len(items)
    groups: dict[int, list[int]] = {}
    for i, (rec, _) in enumerate(items):
        groups.setdefault(id(rec), []).append(i)
    for positions in groups.values():
        rec = items[positions[0]][0]
        for i, res in zip(positions, rec.recommend_many([items[i][1] for i in positions])):
            out[i] = res
    return out  # type: ignore[return-value]


#: How long a thread may hold the GIL while another waits for it (Python's default: 5 ms).
#: The threads besides the event loop (a reload loading models, an event waiting out a
#: reload in the pool) then delay the loop by at most 0.5 ms at a time. (It did not cure
#: the slow events of the thread pool by itself: their waits are for C calls that hold the
#: GIL, which is why events now run on the loop.)
GIL_SWITCH_INTERVAL_S = 0.0005


def limit_threads() -> None:
    """One compute thread per serving process: requests are CPU-bound and several
    workers use the cores; FAISS's OpenMP threads on a busy machine cost ~10x (a
    16-query search took 22 ms instead of 3)."""
    import faiss

    faiss.omp_set_num_threads(1)


#: What a pattern-checked field must look like, in words.
_PATTERNS = {
    "customer_id": "must be 64 hexadecimal characters",
    "article_id": "must be 10 digits, e.g. 0108775015",
    "at": "must be a date YYYY-MM-DD",
    "t_dat": "must be a date YYYY-MM-DD",
    "event_id": "must be 1-64 letters, digits or _ . : -",
    "alias": "must be 1-64 letters, digits or _ . -",
}


def _message(errors: list[dict]) -> str:
    """One line naming each bad field, what it must be, and the value given."""
    parts = []
    for e in errors:
        loc = [str(x) for x in e.get("loc", ()) if x not in ("body", "query", "path")]
        where = ".".join(loc) or "request"
        msg = e.get("msg", "invalid")
        if e.get("type") == "string_pattern_mismatch" and loc and loc[-1] in _PATTERNS:
            msg = _PATTERNS[loc[-1]]
        given = e.get("input")
        shown = "" if given is None or isinstance(given, (dict, list)) else f" (got {str(given)[:80]!r})"
        parts.append(f"{where}: {msg}{shown}")
    return "; ".join(parts)


def create_app(settings: Settings, recommender: FourStageRecommender | None = None,
               alias: str = "champion", loader: Loader | None = None,
               models: dict[str, int | None] | None = None) -> FastAPI:
    """The FastAPI app. Without `recommender`, the `alias` models are loaded from the
    registry (and features from the store) in the background when the app starts."""
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    service = Service(settings, recommender, alias=alias, loader=loader, models=models)
    batcher: MicroBatcher = MicroBatcher(_answer_batch, max_batch=settings.SERVING_BATCH_MAX,
                                         max_wait_s=settings.SERVING_BATCH_WAIT_MS / 1000)
    token = settings.API_TOKEN or None
    bearer = HTTPBearer(auto_error=False, description="Settings.API_TOKEN")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service.start(background=True)
        yield
        service.close()

    app = FastAPI(
        title="hmrec",
        version="1",
        description="Real-time fashion recommendations: retrieve -> filter -> rank -> order.",
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.batcher = batcher
    app.add_middleware(BodyLimit, limit=schemas.MAX_BODY_BYTES)
    app.add_middleware(InFlight, batcher=batcher)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = jsonable_encoder(exc.errors(), custom_encoder={Exception: str})
        for e in errors:
            e.pop("ctx", None)
            e.pop("url", None)
        return JSONResponse(status_code=422, content={"detail": errors, "message": _message(errors)})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(status_code=exc.status_code, content={"detail": exc.detail},
                            headers=getattr(exc, "headers", None))

    # async: a sync dependency would cost every POST /events one more thread-pool hop
    async def authorized(creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:  # noqa: B008
        if token is None:
            raise HTTPException(403, "disabled: no API token is configured (set API_TOKEN)")
        if creds is None:
            raise HTTPException(401, "missing bearer token (Authorization: Bearer <token>)",
                                headers={"WWW-Authenticate": "Bearer"})
        if not secrets.compare_digest(creds.credentials.encode(), token.encode()):
            raise HTTPException(403, "invalid token")

    errors_4xx = {400: {"model": schemas.ErrorOut, "description": "The body cannot be read (e.g. not UTF-8)"},
                  401: {"model": schemas.ErrorOut}, 403: {"model": schemas.ErrorOut},
                  413: {"model": schemas.ErrorOut}, 422: {"model": schemas.ErrorOut},
                  503: {"model": schemas.ErrorOut}}

    @app.get("/health", response_model=schemas.Health, responses={503: {"model": schemas.Health}})
    async def health() -> JSONResponse:
        if service.state is not None:
            service.catch_up()
        state = service.state
        body: dict[str, Any] = {"status": service.status if state is None else "ok",
                                "reloading": service.reloading, "error": service.error,
                                "batches": batcher.batches, "batched_requests": batcher.items,
                                "reloads": service.reloads, "events_logged": service.log.last_seq,
                                "event_log_reads": service.log.reads, "gc": GC_STATS.report(),
                                "pid": os.getpid()}
        if state is not None:
            rec = state.recommender
            last = rec.last_day()
            body.update(models=state.models, articles=len(state.articles), customers=rec.customers.height,
                        events_replayed=state.events_replayed, loaded_at=state.loaded_at,
                        current_day=None if last is None else last.isoformat())
        return JSONResponse(status_code=200 if state is not None else 503, content=body)

    @app.get("/recommendations/{customer_id}", response_model=schemas.RecommendationOut,
             responses=errors_4xx)
    async def recommendations(
        customer_id: str = Path(pattern=schemas.CUSTOMER_ID_PATTERN, description="64 hex characters"),
        k: int = Query(12, ge=1, le=schemas.MAX_K, description="How many articles (1..100)"),
        at: str | None = Query(None, pattern=schemas.DATE_PATTERN,
                               description="Day to recommend for (YYYY-MM-DD); default: the day "
                               "after the last known purchase"),
        age: int | None = Query(None, ge=0, le=120, description="Age, for a cold-start answer"),
        debug: bool = Query(False, description="Add the query embedding (skew checks)"),
    ) -> JSONResponse:
        service.ready_state()
        service.catch_up()
        state = service.ready_state()
        rec = state.recommender
        cid = customer_id.lower()
        if at is None:
            last = rec.last_day()
            day = (last + dt.timedelta(days=1)) if last is not None else dt.date.today()
        else:
            try:
                day = schemas.parse_day(at, "at")
            except ValueError as exc:
                raise HTTPException(422, str(exc)) from None
        r = await batcher.submit((rec, RecommendationRequest(cid, day, k, age)))
        arts = state.articles
        items = []
        for i, (a, s, stage) in enumerate(zip(r.article_ids, r.scores, r.stages), start=1):
            item = {"rank": i, "score": s, "stage": stage}
            item.update(arts.get(a) or {"article_id": a})
            items.append(item)
        body: dict[str, Any] = {"customer_id": cid, "at": day.isoformat(), "k": k, "cold_start": r.cold_start,
                                "items": items, "models": state.models}
        if debug:
            emb = rec.query_embeddings([cid], day)[0] if not r.cold_start else None
            body["debug"] = {"query_embedding": None if emb is None else [float(x) for x in emb]}
        return JSONResponse(body)

    @app.get("/articles/{article_id}", response_model=schemas.Article,
             responses={404: {"model": schemas.ErrorOut}, 422: {"model": schemas.ErrorOut},
                        503: {"model": schemas.ErrorOut}})
    async def article(article_id: str = Path(pattern=schemas.ARTICLE_ID_PATTERN,
                                             description="10 digits")) -> JSONResponse:
        found = service.ready_state().articles.get(article_id)
        if found is None:
            raise HTTPException(404, f"article {article_id} is not in the catalogue")
        return JSONResponse(found)

    @app.post("/events", response_model=schemas.EventAccepted, responses=errors_4xx,
              dependencies=[Depends(authorized)])
    async def events(event: schemas.EventIn) -> JSONResponse:
        # on the event loop: ~1 ms of CPU plus the fdatasync (~0.3 ms here). In the thread
        # pool an event waited for the GIL at each of its dozen releases while the loop
        # answered batches: 45 ms median instead of 14 under the mixed load. Only while a
        # reload holds the events lock does it wait in the pool, so reads never wait for it.
        done = service.record(event, wait=False)
        ev, duplicate = done if done is not None else await run_in_threadpool(service.record, event)
        return JSONResponse({"event_id": ev.event_id, "seq": ev.seq, "type": ev.type,
                             "customer_id": ev.customer_id, "article_id": ev.article_id,
                             "t_dat": ev.t_dat.isoformat(), "duplicate": duplicate})

    if token is not None:
        @app.post("/admin/reload", response_model=schemas.ReloadAccepted, status_code=202,
                  responses=errors_4xx, dependencies=[Depends(authorized)])
        def reload(alias: str = Query("champion", pattern=r"^[A-Za-z0-9_.-]{1,64}$",
                                      description="Registry alias to load")) -> JSONResponse:
            started = service.request_reload(alias)
            return JSONResponse(status_code=202, content={
                "status": "reloading" if started else "already reloading", "alias": alias})

    return app


def app_from_environment() -> FastAPI:
    """The app of one worker process when serving with several (Settings from SETTINGS_ENV)."""
    limit_threads()
    return create_app(Settings(**json.loads(os.environ[SETTINGS_ENV])))


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          log_level: str = "warning") -> None:
    """Run the service with uvicorn (blocking). Loopback unless `host` says otherwise.

    workers > 1 starts that many processes, each with its own models (memory x workers);
    they share the events log and reload together. One worker per core is the most that
    helps: requests are CPU-bound. Each worker listens on its own SO_REUSEPORT socket, so
    the kernel spreads connections over them (see _supervise)."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    limit_threads()
    common = {"host": host, "port": port, "log_level": log_level, "access_log": False,
              "h11_max_incomplete_event_size": MAX_HEADER_BYTES, "timeout_keep_alive": 30}
    if workers > 1:
        os.environ[SETTINGS_ENV] = settings.model_dump_json()
        _supervise(host, port, workers, common)
    else:
        uvicorn.run(create_app(settings), **common)


#: A worker that exits this soon after it started is broken (app, bind): stop, do not loop.
WORKER_STARTUP_S = 30.0


def _worker(host: str, port: int, common: dict[str, Any]) -> None:
    """One worker process: its own SO_REUSEPORT listener, uvicorn, the app from SETTINGS_ENV."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    limit_threads()
    config = uvicorn.Config("hmrec.serving.api:app_from_environment", factory=True, **common)
    uvicorn.Server(config).run(sockets=[_tcp_listener(host, port, reuse_port=True)])


def _supervise(host: str, port: int, workers: int, common: dict[str, Any]) -> None:
    """Run `workers` worker processes until SIGINT/SIGTERM; replace one that dies.

    Why not uvicorn's Multiprocess: its workers share one listening socket, and the worker
    that wakes first accepts every connection waiting (asyncio accepts in a loop), so a
    client opening its connections at once got them all on one worker: measured, 4 of 5
    runs had 16 of 16 connections on one worker (one core busy, ~900 req/s; the balanced
    run 1,230). With a socket per worker (SO_REUSEPORT) the kernel spreads connections
    by their addresses. The parent binds the port too, without listening, so it is held
    for the workers and a port in use fails at once."""
    import multiprocessing
    import signal

    family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                      proto=socket.IPPROTO_TCP)[0]
    holder = socket.socket(family, kind, proto)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind(addr)  # not listening: connections go to the workers' sockets only
    ctx = multiprocessing.get_context("spawn")
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())

    def start() -> tuple[multiprocessing.process.BaseProcess, float]:
        proc = ctx.Process(target=_worker, args=(host, port, common), name="hmrec-worker")
        proc.start()
        return proc, time.monotonic()

    procs = [start() for _ in range(workers)]
    log.info("started %d workers: %s", workers, [p.pid for p, _ in procs])
    try:
        while not stopping.wait(0.5):
            for i, (proc, started) in enumerate(procs):
                if proc.is_alive():
                    continue
                if time.monotonic() - started < WORKER_STARTUP_S:
                    log.error("worker %s exited with %s while starting: stopping", proc.pid, proc.exitcode)
                    stopping.set()
                    break
                log.warning("worker %s exited with %s: starting another", proc.pid, proc.exitcode)
                procs[i] = start()
    finally:
        for proc, _ in procs:
            if proc.is_alive():
                proc.terminate()
        for proc, _ in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
                proc.join()
        holder.close()


def _tcp_listener(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """A listening socket created with proto=IPPROTO_TCP. uvicorn's own (proto 0) makes
    asyncio skip TCP_NODELAY on accepted connections, and a keep-alive response written in
    two parts then waits ~40 ms for a delayed ACK: 20 req/s per connection instead of 300.
    `reuse_port`: one of several sockets on the port (SO_REUSEPORT), one per worker."""
    family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                      proto=socket.IPPROTO_TCP)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(addr)
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock
