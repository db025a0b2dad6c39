"""The durable events log: every purchase/click the service accepts, append-only.

Part of the offline store (it lives under ``<store>/events/``): the HTTP service
appends to it (hmrec.serving.events re-exports this module), and the feature
pipeline ingests its pending purchases into the ``transactions`` feature group. It
sits in ``store/`` so that neither side imports the other.

Why a log first: an event acknowledged with a 2xx must survive the process being
killed right after, and the next feature pipeline run must be able to read it. So
an event is written as one JSON line to ``<store>/events/events.jsonl`` and
``fsync``-ed BEFORE it is applied in memory and before the response goes out; on
start-up the service replays the log into the recommender, so the in-memory state
is always "store + log".

Format: one JSON object per line, fields of :class:`Event`. ``seq`` increases by one
per accepted event (across processes sharing the log: appends hold an exclusive
``flock`` and first read what others appended). A line without its final newline
can only come from a write that was cut short, which was therefore never
acknowledged: it is cut off when the log is opened. Any other unreadable line is an
error naming the file, line and value; nothing is skipped silently.

Retries: a client may repeat an event id; the repeat writes nothing and is answered
with the stored event. Every event this object has read or written is kept in memory,
by id (strings interned, ~300 bytes an event: ~30 MB per 100,000), so that answer costs a
dict lookup instead of a read of the whole log (which took 170-240 ms at 9-27k lines
and held the GIL). The index is built once when the log is opened (start-up replays the
log anyway) and grows with every append and every event read from other processes.

Hand-over to the feature pipeline: ``pending_events()`` gives the events not yet
ingested (``purchases_frame`` turns them into raw transaction rows), and the
pipeline calls ``mark_ingested(seq)`` after it committed them, so a restarted
service does not replay (double count) what the store already holds.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import functools
import json
import os
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path

import polars as pl

EVENTS_DIR = "events"
LOG_FILE = "events.jsonl"
INGESTED_FILE = "ingested.json"
EVENT_TYPES = ("purchase", "click")


class EventLogError(RuntimeError):
    """The log on disk cannot be read (names the file, line and value)."""


@functools.lru_cache(maxsize=4096)
def _day(text: str) -> dt.date:
    """One date object per distinct day (events share a handful of days)."""
    return dt.date.fromisoformat(text)


@dataclass(frozen=True, slots=True)
class Event:
    """One accepted event, as stored."""

    seq: int
    event_id: str
    type: str
    customer_id: str
    article_id: str
    t_dat: dt.date
    price: float | None = None
    sales_channel_id: int | None = None
    received_at: str = ""

    def fields(self) -> tuple:
        """The field values in order (Event(*fields) rebuilds it)."""
        return tuple(getattr(self, name) for name in _FIELDS)

    def to_line(self) -> bytes:
        d = {name: getattr(self, name) for name in _FIELDS}  # asdict's order, without its deep copy
        d["t_dat"] = self.t_dat.isoformat()
        return (json.dumps(d, separators=(",", ":")) + "\n").encode()

    @classmethod
    def from_line(cls, line: bytes, where: str) -> Event:
        try:
            d = json.loads(line)
            d["t_dat"] = _day(d["t_dat"])
            # interned: the in-memory index holds one copy of each customer/article id
            for key in ("type", "customer_id", "article_id"):
                if isinstance(d.get(key), str):
                    d[key] = sys.intern(d[key])
            ev = cls(**d)
        except (ValueError, TypeError, KeyError) as exc:
            raise EventLogError(f"{where}: unreadable event {line[:200]!r}: {exc}") from None
        if ev.type not in EVENT_TYPES:
            raise EventLogError(f"{where}: column 'type' has unknown value {ev.type!r}")
        return ev


_FIELDS = tuple(f.name for f in fields(Event))


def events_dir(store_dir: Path | str) -> Path:
    """Where the log lives: under the offline store, next to the feature groups."""
    return Path(store_dir) / EVENTS_DIR


class EventLog:
    """Append-only, fsynced JSONL log of events under ``<store_dir>/events``.

    Thread-safe; several processes may share one log (appends take an exclusive flock).
    """

    def __init__(self, store_dir: Path | str) -> None:
        self.directory = events_dir(store_dir)
        self.path = self.directory / LOG_FILE
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._end = 0  # bytes of the file this object has read or written
        self._lines_before = 0  # lines in those bytes (for error messages)
        self._last_seq = 0
        #: every event read or written, by id, in log order (the first of a repeated id), as a
        #: tuple of its fields: tuples of strings and numbers are untracked by the garbage
        #: collector, so a full collection does not walk 100,000s of events (Event objects
        #: are tracked: in a 10-minute soak they made full collections ever longer)
        self._by_id: dict[str, tuple] = {}
        #: how many times events were read from the file (start-up, other processes' appends)
        self.reads = 0

    # ------------------------------------------------------------------ plumbing
    def _open_fd(self) -> int:
        if self._fd is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            existed = self.path.exists()
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
            if not existed:  # make the new file's directory entry durable too
                dir_fd = os.open(self.directory, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
        return self._fd

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def _read_new(self, fd: int) -> list[Event]:
        """Events appended after self._end (by anyone); cuts a torn final line. Holds flock."""
        size = os.fstat(fd).st_size
        if size <= self._end:
            return []
        data = os.pread(fd, size - self._end, self._end)
        self.reads += 1
        complete = data.rfind(b"\n") + 1
        if complete < len(data):  # a write cut short: never acknowledged, drop it
            os.ftruncate(fd, self._end + complete)
            os.fsync(fd)
            data = data[:complete]
        out = []
        base_line = self._lines_before
        for i, line in enumerate(data.splitlines()):
            if line.strip():
                out.append(Event.from_line(line, f"{self.path}, line {base_line + i + 1}"))
        self._lines_before = base_line + data.count(b"\n")
        self._end += len(data)
        for ev in out:
            self._by_id.setdefault(ev.event_id, ev.fields())
            self._last_seq = max(self._last_seq, ev.seq)
        return out

    # ------------------------------------------------------------------ API
    def open(self) -> list[Event]:
        """Read the whole log (repairing a torn last line); returns every event in order."""
        with self._lock:
            fd = self._open_fd()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                return self._read_new(fd)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def catch_up(self) -> list[Event]:
        """Events other processes appended since this object last read or wrote."""
        with self._lock:
            fd = self._open_fd()
            if os.fstat(fd).st_size <= self._end:
                return []
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                return self._read_new(fd)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def has_new(self) -> bool:
        """Whether the file grew since this object last read or wrote (one fstat, no lock)."""
        fd = self._fd
        return fd is not None and os.fstat(fd).st_size > self._end

    @property
    def last_seq(self) -> int:
        """The highest seq this object has read or written (0: none)."""
        return self._last_seq

    def read_known(self) -> list[Event]:
        """Every event this object has read or written so far, in log order (from memory)."""
        with self._lock:
            return [Event(*t) for t in self._by_id.values()]

    def seen(self, event_id: str) -> bool:
        return event_id in self._by_id

    def append(self, type: str, customer_id: str, article_id: str, t_dat: dt.date,
               price: float | None = None, sales_channel_id: int | None = None,
               event_id: str | None = None) -> tuple[Event | None, list[Event]]:
        """Write one event durably (fsync) and return it, plus any events other processes
        appended meanwhile. A repeated `event_id` writes nothing and returns (None, ...)."""
        if type not in EVENT_TYPES:
            raise ValueError(f"event type must be one of {EVENT_TYPES}, got {type!r}")
        with self._lock:
            fd = self._open_fd()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                others = self._read_new(fd)
                if event_id is not None and event_id in self._by_id:
                    return None, others
                ev = Event(
                    seq=self._last_seq + 1,
                    event_id=event_id or uuid.uuid4().hex,
                    type=type,
                    customer_id=sys.intern(customer_id),
                    article_id=sys.intern(article_id),
                    t_dat=t_dat,
                    price=None if price is None else float(price),
                    sales_channel_id=None if sales_channel_id is None else int(sales_channel_id),
                    received_at=dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
                )
                line = ev.to_line()
                written = os.write(fd, line)
                if written != len(line):  # disk full etc.: undo, the event is not accepted
                    os.ftruncate(fd, self._end)
                    raise OSError(f"{self.path}: short write ({written} of {len(line)} bytes)")
                os.fdatasync(fd)
                self._end += len(line)
                self._lines_before += 1
                self._last_seq = ev.seq
                self._by_id[ev.event_id] = ev.fields()
                return ev, others
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def find(self, event_id: str) -> Event | None:
        """The stored event with this id among those this object has read or written (the
        idempotent reply to a retry): a dict lookup, the file is not read. Call catch_up()
        or append() first to include what other processes wrote since."""
        found = self._by_id.get(event_id)
        return None if found is None else Event(*found)

    # ------------------------------------------------------------------ hand-over
    def ingested_seq(self) -> int:
        return ingested_seq(self.directory.parent)

    def pending(self) -> list[Event]:
        return pending_events(self.directory.parent)


def _iter_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    if not path.exists():
        return
    with open(path, "rb") as f:
        for i, line in enumerate(f, start=1):
            if line.endswith(b"\n") and line.strip():
                yield i, line


def read_events(store_dir: Path | str) -> list[Event]:
    """Every complete event in the log (read-only; a torn last line is ignored, not cut)."""
    path = events_dir(store_dir) / LOG_FILE
    return [Event.from_line(line, f"{path}, line {i}") for i, line in _iter_lines(path)]


def ingested_seq(store_dir: Path | str) -> int:
    """The last seq the feature pipeline has ingested into the store (0: none)."""
    path = events_dir(store_dir) / INGESTED_FILE
    if not path.exists():
        return 0
    try:
        return int(json.loads(path.read_text())["seq"])
    except (ValueError, KeyError, TypeError) as exc:
        raise EventLogError(f"{path}: expected {{\"seq\": N}}: {exc}") from None


def pending_events(store_dir: Path | str) -> list[Event]:
    """Events the store does not hold yet (seq after the ingested watermark)."""
    done = ingested_seq(store_dir)
    return [ev for ev in read_events(store_dir) if ev.seq > done]


def mark_ingested(store_dir: Path | str, seq: int) -> None:
    """Record (atomically) that events up to `seq` are in the store; call after committing them."""
    directory = events_dir(store_dir)
    directory.mkdir(parents=True, exist_ok=True)
    if seq < ingested_seq(store_dir):
        raise ValueError(f"ingested seq cannot go back: {seq} < {ingested_seq(store_dir)}")
    tmp = directory / f".{INGESTED_FILE}.tmp"
    with open(tmp, "w") as f:
        json.dump({"seq": int(seq), "at": dt.datetime.now(dt.UTC).isoformat()}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, directory / INGESTED_FILE)


def purchases_frame(events: list[Event]) -> pl.DataFrame:
    """Purchase events as raw transaction rows (t_dat, customer_id, article_id, price,
    sales_channel_id) in the raw dtypes, plus seq and event_id."""
    rows = [e for e in events if e.type == "purchase"]
    return pl.DataFrame(
        {
            "t_dat": [e.t_dat for e in rows],
            "customer_id": [e.customer_id for e in rows],
            "article_id": [e.article_id for e in rows],
            "price": [e.price for e in rows],
            "sales_channel_id": [e.sales_channel_id for e in rows],
            "seq": [e.seq for e in rows],
            "event_id": [e.event_id for e in rows],
        },
        schema={"t_dat": pl.Date, "customer_id": pl.String, "article_id": pl.String, "price": pl.Float32,
                "sales_channel_id": pl.Int8, "seq": pl.Int64, "event_id": pl.String},
    )
