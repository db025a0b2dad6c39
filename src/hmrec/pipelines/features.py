"""`hmrec features`: raw files -> every feature group, the `retrieval` view, the online store.

Orchestration only; the transforms are in hmrec.features. Order matters for two
reasons:
  * bad input fails before anything is written: the small tables (customers,
    articles, id codes), whose cleaning can reject a value, and the id lookup of
    every transaction row come first;
  * memory at 31.8M transactions: each large frame is built, written and freed
    before the next one is built.
Purchases the HTTP service accepted are in the events log under the store; every run
adds ALL of them after the raw rows (hmrec.features.events), so a rebuild keeps them
and a re-run gives them the same keys, and marks them ingested once everything is
written.
Every group is recomputed from the raw files and written with `overwrite` (one
atomic Delta commit per group), so a re-run leaves identical tables, and rows that
left the raw files leave the store too. `mode="upsert"` uses `insert` instead
(upsert by primary key) for the entity and transaction groups; the aggregates are
always overwritten (their change points depend on every row). Id codes are never
renumbered: an existing mapping is extended with new ids only.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Literal

import polars as pl

from hmrec.config import Settings
from hmrec.data import RawData, load_raw, sample_customers
from hmrec.features import aggregates, groups
from hmrec.features.articles import build_articles
from hmrec.features.customers import build_customers
from hmrec.features.events import add_event_purchases, read_event_purchases
from hmrec.features.ids import attach_codes, build_article_ids, build_customer_ids
from hmrec.features.transactions import build_transactions
from hmrec.features.views import RETRIEVAL_VIEW, create_retrieval_view
from hmrec.store import FeatureGroup, FeatureGroupNotFound, FeatureStore
from hmrec.store.atomic import write_json
from hmrec.store.events_log import ingested_seq, mark_ingested

Progress = Callable[..., None]
REPORT_STEP = "features"


@dataclass
class FeaturePipelineSummary:
    """What the run wrote: rows and Delta commit per group, the view, the online tables."""

    store_dir: str
    rows: dict[str, int] = field(default_factory=dict)
    table_versions: dict[str, int] = field(default_factory=dict)
    view: dict[str, object] = field(default_factory=dict)
    online_rows: dict[str, int] = field(default_factory=dict)
    as_of: dt.date | None = None  # the day the online aggregates describe (day after the last purchase)
    sampled_customers: int | None = None
    events: dict[str, int] = field(default_factory=dict)  # purchases taken from the events log
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["as_of"] = None if self.as_of is None else self.as_of.isoformat()
        return d


def _group(fs: FeatureStore, spec: groups.GroupSpec) -> FeatureGroup:
    return fs.get_or_create_feature_group(
        name=spec.name,
        version=spec.version,
        primary_key=spec.primary_key,
        event_time=spec.event_time,
        description=spec.description,
        features=spec.features,
        schema=spec.schema,
    )


def _existing(fs: FeatureStore, spec: groups.GroupSpec) -> pl.DataFrame | None:
    try:
        fg = fs.get_feature_group(spec.name, spec.version)
    except FeatureGroupNotFound:
        return None
    return fg.read() if fg.count() else None


def run_feature_pipeline(
    settings: Settings,
    raw: RawData | None = None,
    progress: Progress | None = None,
    mode: Literal["overwrite", "upsert"] = "overwrite",
    sample: bool = True,
    write_report: bool = True,
) -> FeaturePipelineSummary:
    """Build every feature group from the raw data and write it into the feature store.

    ``raw`` defaults to ``load_raw(settings.data_dir)``. With ``sample`` and a
    CUSTOMER_DATA_SIZE other than FULL, a dataset with more customers than the size
    asks for is sampled down (``hmrec.data.sample_customers``, seeded by SEED).
    ``progress("features", completed, total)`` is called after each stage.
    """
    if mode not in ("overwrite", "upsert"):
        raise ValueError(f"mode must be 'overwrite' or 'upsert', got {mode!r}")
    t_start = time.perf_counter()
    stages = ["load", "customers", "articles", "customer_ids", "article_ids", "transactions",
              "article_sales_windows", "customer_activity", "retrieval view", "online store"]
    done = 0

    def tick(stage: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress("features", done, len(stages))  # one bar; stage names are in summary.seconds

    summary = FeaturePipelineSummary(store_dir=str(settings.store_dir))
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        summary.seconds[name] = round(now - clock, 3)
        clock = now

    if raw is None:
        raw = load_raw(settings.data_dir, drop_unknown_references=settings.DROP_UNKNOWN_REFERENCES)
    n_wanted = settings.CUSTOMER_DATA_SIZE.n_customers
    if sample and n_wanted is not None and raw.customers.height > n_wanted:
        raw = sample_customers(raw, n_wanted, settings.SEED)
        summary.sampled_customers = n_wanted
    # Purchases the service accepted (the whole events log, so a rebuild never loses them).
    purchases = read_event_purchases(settings.store_dir)
    raw_customers, raw_tx, summary.events = add_event_purchases(
        raw.customers, raw.articles, raw.transactions, purchases, settings.store_dir,
        drop_unknown_articles=settings.DROP_UNKNOWN_REFERENCES,
    )
    summary.events["log_seq"] = purchases.last_seq
    lap("load")
    tick("load")

    fs = FeatureStore(settings.store_dir)

    # Small tables first: their cleaning is what can reject a value, before anything is written.
    customers_df = build_customers(raw_customers)
    articles_df = build_articles(raw.articles)
    customer_ids = build_customer_ids(raw_customers, _existing(fs, groups.CUSTOMER_IDS))
    article_ids = build_article_ids(raw.articles, _existing(fs, groups.ARTICLE_IDS))
    # Integer codes on every transaction row (rejects an id without a code, still before any
    # write): exact cheap line numbers, and id strings shared with the mapping instead of one
    # copy per row (~2 GB less at 31.8M rows).
    tx = attach_codes(raw_tx, customer_ids, article_ids)
    del raw, raw_tx, raw_customers
    lap("build small groups + id lookup")

    def write(spec: groups.GroupSpec, df: pl.DataFrame, upsert: bool) -> None:
        fg = _group(fs, spec)
        summary.table_versions[spec.name] = fg.insert(df) if upsert else fg.overwrite(df)
        summary.rows[spec.name] = df.height
        lap(spec.name)
        tick(spec.name)

    entity_upsert = mode == "upsert"
    write(groups.CUSTOMERS, customers_df, entity_upsert)
    write(groups.ARTICLES, articles_df, entity_upsert)
    # ids: an existing mapping is already inside the new one (extended), so overwrite is exact.
    write(groups.CUSTOMER_IDS, customer_ids, False)
    write(groups.ARTICLE_IDS, article_ids, False)
    del customers_df, articles_df, customer_ids, article_ids

    write(groups.TRANSACTIONS, build_transactions(tx), entity_upsert)
    write(groups.ARTICLE_SALES, aggregates.build_article_sales_windows(tx).collect(), False)
    write(groups.CUSTOMER_ACTIVITY, aggregates.build_customer_activity(tx).collect(), False)
    last_day = tx["t_dat"].max()
    del tx

    fv = create_retrieval_view(fs)
    summary.view = {"name": fv.name, "version": fv.version, "columns": fv.columns}
    lap("retrieval view")
    tick("retrieval view")

    # Online store: the latest entity features, and the aggregates as of the day after the
    # last purchase (the day a recommendation made now is for).
    summary.as_of = None if last_day is None else last_day + dt.timedelta(days=1)
    # (Id codes are not served: models carry their own vocabularies and take raw ids.)
    for spec in groups.ALL_GROUPS:
        if spec.online_key is None:
            continue
        fg = fs.get_feature_group(spec.name, spec.version)
        if spec.event_time is None:
            summary.online_rows[spec.name] = fs.materialize(fg)
        elif summary.as_of is not None:
            # Change points can start after as_of (a sale leaving a window): take the row valid then.
            summary.online_rows[spec.name] = fs.materialize(fg, at=summary.as_of)
    lap("online store")
    tick("online store")

    # Only now does the store hold the events' purchases: tell the service not to replay them.
    if purchases.last_seq > ingested_seq(settings.store_dir):
        mark_ingested(settings.store_dir, purchases.last_seq)

    summary.seconds["total"] = round(time.perf_counter() - t_start, 3)
    if write_report:
        _write_report(settings.reports_dir, summary)
    return summary


def _write_report(reports_dir: Path, summary: FeaturePipelineSummary) -> None:
    """<home>/reports/features.json, written atomically."""
    payload = {"step": REPORT_STEP, "seconds": summary.seconds.get("total"), **summary.to_dict()}
    write_json(reports_dir / f"{REPORT_STEP}.json", payload)


__all__ = ["FeaturePipelineSummary", "RETRIEVAL_VIEW", "run_feature_pipeline"]
