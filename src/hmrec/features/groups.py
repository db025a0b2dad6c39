"""What each feature group is: name, key, event time, schema, descriptions.

One table of specs so the pipeline, the tests and the docs agree on them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from hmrec.features import aggregates, articles, customers, ids, transactions


@dataclass(frozen=True)
class GroupSpec:
    name: str
    primary_key: list[str]
    schema: dict[str, pl.DataType]
    features: dict[str, str]
    description: str
    event_time: str | None = None
    version: int = 1
    # Served from the online store under this key (groups with an event time: the row valid
    # on the serving day). None: offline only.
    online_key: str | None = field(default=None)


CUSTOMERS = GroupSpec(
    customers.GROUP_NAME, customers.PRIMARY_KEY, customers.SCHEMA, customers.FEATURES,
    "Customer attributes, cleaned (missing age filled + flagged, ABSENT club status, NONE news).",
    online_key="customer_id",
)
ARTICLES = GroupSpec(
    articles.GROUP_NAME, articles.PRIMARY_KEY, articles.SCHEMA, articles.FEATURES,
    "Article catalogue: every categorical attribute, prod_name_length, article_description.",
    online_key="article_id",
)
TRANSACTIONS = GroupSpec(
    transactions.GROUP_NAME, transactions.PRIMARY_KEY, transactions.SCHEMA, transactions.FEATURES,
    "One row per purchase row (repeat purchases kept), with calendar and on-demand month features.",
    event_time=transactions.EVENT_TIME,
)
ARTICLE_SALES = GroupSpec(
    aggregates.ARTICLE_SALES_GROUP, aggregates.ARTICLE_SALES_KEY, aggregates.article_sales_schema(),
    aggregates.article_sales_features(),
    "Article sales in the last 7/28 days, change points; read as-of (point-in-time) only.",
    event_time=aggregates.VALID_FROM,
    online_key="article_id",
)
CUSTOMER_ACTIVITY = GroupSpec(
    aggregates.CUSTOMER_ACTIVITY_GROUP, aggregates.CUSTOMER_ACTIVITY_KEY, aggregates.CUSTOMER_ACTIVITY_SCHEMA,
    aggregates.CUSTOMER_ACTIVITY_FEATURES,
    "Customer purchase counts and last purchase date before each day; read as-of only.",
    event_time=aggregates.VALID_FROM,
    online_key="customer_id",
)
CUSTOMER_IDS = GroupSpec(
    ids.CUSTOMER_IDS_GROUP, ["customer_id"], ids.ids_schema("customer_id"), ids.ids_features("customer_id"),
    "customer_id -> dense UInt32 customer_idx shared by every pipeline.",
)
ARTICLE_IDS = GroupSpec(
    ids.ARTICLE_IDS_GROUP, ["article_id"], ids.ids_schema("article_id"), ids.ids_features("article_id"),
    "article_id -> dense UInt32 article_idx shared by every pipeline.",
)

ALL_GROUPS: list[GroupSpec] = [
    CUSTOMERS, ARTICLES, TRANSACTIONS, ARTICLE_SALES, CUSTOMER_ACTIVITY, CUSTOMER_IDS, ARTICLE_IDS,
]
