"""Request and response models of the HTTP API, with the bounds every input must meet.

The bounds live here, next to the shapes, so the OpenAPI page documents exactly what
the service accepts and schemathesis tests exactly that. Ids follow the raw data
contract: a customer_id is 64 hex characters, an article_id 10
digits. Dates are ISO days (YYYY-MM-DD), parsed here so a malformed or impossible
date is a 422 naming the field, never a 500.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

CUSTOMER_ID_PATTERN = r"^[0-9a-fA-F]{64}$"
ARTICLE_ID_PATTERN = r"^[0-9]{10}$"
DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
EVENT_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
#: Requests may ask for days in this range (wider than any data, narrow enough to be sane).
MIN_DATE = dt.date(2000, 1, 1)
MAX_DATE = dt.date(2099, 12, 31)
MAX_K = 100
#: Largest accepted request body (an event is ~300 bytes).
MAX_BODY_BYTES = 16 * 1024


def parse_day(value: str, field: str) -> dt.date:
    """An ISO day in [MIN_DATE, MAX_DATE]; ValueError naming the field and value otherwise."""
    try:
        day = dt.date.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValueError(f"{field} must be a date YYYY-MM-DD, got {value!r}") from None
    if not (MIN_DATE <= day <= MAX_DATE):
        raise ValueError(f"{field} must be between {MIN_DATE} and {MAX_DATE}, got {value!r}")
    return day


class EventIn(BaseModel):
    """A purchase (changes what is recommended) or a click (recorded only)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    type: Literal["purchase", "click"] = Field(description="purchase or click")
    customer_id: str = Field(pattern=CUSTOMER_ID_PATTERN, description="64 hex characters")
    article_id: str = Field(pattern=ARTICLE_ID_PATTERN, description="10 digits, e.g. 0108775015")
    t_dat: str | None = Field(
        default=None, pattern=DATE_PATTERN,
        description="Day of the event (YYYY-MM-DD); default: the service's current day "
        "(the last day with a known transaction).")
    price: float | None = Field(default=None, ge=0.0, le=1000.0, description="Normalised price, as in the data")
    sales_channel_id: Literal[1, 2] | None = Field(default=None, description="1 or 2")
    event_id: str | None = Field(
        default=None, pattern=EVENT_ID_PATTERN,
        description="Client-chosen id; sending the same id again is accepted once (safe retries).")

    @field_validator("t_dat")
    @classmethod
    def _day(cls, v: str | None) -> str | None:
        if v is not None:
            parse_day(v, "t_dat")
        return v

    @field_validator("customer_id")
    @classmethod
    def _lower(cls, v: str) -> str:
        return v.lower()


class EventAccepted(BaseModel):
    """The event is on disk (fsynced) and applied; `duplicate` when its event_id was seen."""

    event_id: str
    seq: int
    type: str
    customer_id: str
    article_id: str
    t_dat: dt.date
    duplicate: bool


class Article(BaseModel):
    """What a UI shows for an article (the catalogue's descriptive attributes)."""

    article_id: str
    prod_name: str | None = None
    product_type_name: str | None = None
    product_group_name: str | None = None
    graphical_appearance_name: str | None = None
    colour_group_name: str | None = None
    perceived_colour_master_name: str | None = None
    department_name: str | None = None
    index_name: str | None = None
    index_group_name: str | None = None
    section_name: str | None = None
    garment_group_name: str | None = None
    detail_desc: str | None = None


class RecommendedItem(Article):
    """One recommended article: its rank, score, the stage that produced it, its attributes."""

    rank: int
    score: float
    stage: Literal["ranking", "popularity"]


class Debug(BaseModel):
    """What the service computed on the way (for skew checks against the offline pipeline)."""

    query_embedding: list[float] | None = None
    candidates: int = 0


class RecommendationOut(BaseModel):
    customer_id: str
    at: dt.date
    k: int
    cold_start: bool
    items: list[RecommendedItem]
    models: dict[str, int | None]
    debug: Debug | None = None


class Health(BaseModel):
    status: Literal["ok", "loading", "error"]
    models: dict[str, int | None] = {}
    articles: int = 0
    customers: int = 0
    events_replayed: int = 0
    current_day: dt.date | None = None
    loaded_at: str | None = None
    reloading: bool = False
    error: str | None = None
    batches: int = Field(0, description="Micro-batches this worker has answered recommendations in")
    batched_requests: int = Field(0, description="Recommendation requests answered in them")
    reloads: int = Field(0, description="Reloads this worker has completed since it started")
    events_logged: int = Field(0, description="Events in the log as this worker has read it (its last seq)")
    event_log_reads: int = Field(0, description="Times this worker has read events from the log file (start-up, "
                                 "other workers' appends, reloads); answering a retried event id reads nothing")
    pid: int | None = Field(None, description="Process id of the worker that answered")
    gc: dict[str, Any] | None = Field(None, description="This process's garbage collections: counts per "
                                      "generation, full collections and their pauses, objects frozen")


class ReloadAccepted(BaseModel):
    status: Literal["reloading", "already reloading"]
    alias: str


class ErrorOut(BaseModel):
    detail: str | list
    message: str | None = None
