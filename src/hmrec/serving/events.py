"""The service's events log. The log is part of the offline store, so the code lives in
hmrec.store.events_log (the feature pipeline reads it without importing serving/);
the names are re-exported here for the service and its callers."""

from __future__ import annotations

from hmrec.store.events_log import (
    EVENTS_DIR,
    LOG_FILE,
    INGESTED_FILE,
    EVENT_TYPES,
    Event,
    EventLog,
    EventLogError,
    events_dir,
    ingested_seq,
    mark_ingested,
    pending_events,
    purchases_frame,
    read_events,
)

__all__ = [
    "EVENTS_DIR",
    "LOG_FILE",
    "INGESTED_FILE",
    "EVENT_TYPES",
    "Event",
    "EventLog",
    "EventLogError",
    "events_dir",
    "ingested_seq",
    "mark_ingested",
    "pending_events",
    "purchases_frame",
    "read_events",
]
