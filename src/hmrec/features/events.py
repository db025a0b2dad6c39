"""Purchases the HTTP service accepted (the events log) -> extra raw transaction rows.

The service appends every accepted event to the durable log under the store
(hmrec.store.events_log). Each feature pipeline run rebuilds the `transactions`
group from the raw files, so it adds the purchase events of the WHOLE log to them
(not only the ones after the ingested watermark): otherwise a purchase ingested by
one run would vanish on the next rebuild. Event rows come after every raw row, in
log order, so the raw rows keep their line numbers and the events always get the
same ones: a re-run produces the same keys (upsert-safe, never a duplicate). The
watermark (`mark_ingested`) is moved only after the store holds them, which tells
a restarted service not to replay them on top of the store.

Ids: an event's article must be in the catalogue (the service checks it). Its
customer may be new (a cold-start customer bought something): such a customer is
added to the customers table with every attribute unknown (missing age, club status
and news frequency), exactly as a customer row with empty fields would be, so the
purchase keeps its customer and every pipeline sees one consistent set of ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from hmrec.features.errors import FeatureInputError
from hmrec.store.events_log import LOG_FILE, events_dir, purchases_frame, read_events

#: Columns of a raw transactions frame (hmrec.data.load_transactions), in order.
RAW_TRANSACTION_COLUMNS = ["t_dat", "customer_id", "article_id", "price", "sales_channel_id"]


@dataclass(frozen=True)
class EventPurchases:
    """Purchase events of the log as raw transaction rows, and the last seq read."""

    rows: pl.DataFrame  # RAW_TRANSACTION_COLUMNS plus seq, event_id, line (1-based line of the log)
    last_seq: int  # every event up to here was read (purchases and clicks): the watermark to set

    @property
    def height(self) -> int:
        return self.rows.height


def read_event_purchases(store_dir: Path | str) -> EventPurchases:
    """Every purchase event in the log of the store at `store_dir` (none if there is no log)."""
    events = read_events(store_dir)
    lines = {ev.seq: i for i, ev in enumerate(events, start=1)}  # the log has no blank lines
    rows = purchases_frame(events)
    rows = rows.with_columns(pl.col("seq").replace_strict(lines, return_dtype=pl.Int64).alias("line"))
    return EventPurchases(rows, max((ev.seq for ev in events), default=0))


def add_event_purchases(
    customers: pl.DataFrame,
    articles: pl.DataFrame,
    transactions: pl.DataFrame,
    purchases: EventPurchases,
    store_dir: Path | str,
    drop_unknown_articles: bool = False,
) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, int]]:
    """(customers, transactions) with the event purchases added, and counts of what was done.

    Raw frames in, raw frames out (same columns and dtypes). Raises FeatureInputError
    for an event whose article is not in ``articles`` (naming the log file, line and
    value), unless ``drop_unknown_articles``: then such events are left out and counted.
    """
    info = {"event_purchases": 0, "new_customers": 0, "dropped_unknown_article": 0}
    rows = purchases.rows
    if rows.height == 0:
        return customers, transactions, info
    known_article = rows["article_id"].is_in(articles["article_id"].implode())
    if not known_article.all():
        if not drop_unknown_articles:
            i = int((~known_article).arg_true()[0])
            raise FeatureInputError(
                str(events_dir(store_dir) / LOG_FILE), "article_id", int(rows["line"][i]), rows["article_id"][i],
                "an article in articles.csv (set DROP_UNKNOWN_REFERENCES to leave such events out)",
            )
        info["dropped_unknown_article"] = int((~known_article).sum())
        rows = rows.filter(known_article)
    new_ids = (
        rows.select("customer_id")
        .unique(maintain_order=True)
        .filter(~pl.col("customer_id").is_in(customers["customer_id"].implode()))
    )
    if new_ids.height:
        blank = pl.DataFrame(schema=customers.schema).clear(new_ids.height)
        new_customers = blank.with_columns(new_ids["customer_id"])
        customers = pl.concat([customers, new_customers.select(customers.columns)], how="vertical")
    info["new_customers"] = new_ids.height
    info["event_purchases"] = rows.height
    extra = rows.select(pl.col(c).cast(transactions.schema[c]) for c in RAW_TRANSACTION_COLUMNS)
    return customers, pl.concat([transactions, extra.select(transactions.columns)], how="vertical"), info
