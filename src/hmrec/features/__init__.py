"""Feature pipeline: raw H&M tables -> feature groups (pure Polars transforms).

Writing them into the feature store is hmrec.pipelines.features; the `retrieval`
feature view is defined in hmrec.features.views.
"""

from hmrec.features.aggregates import (
    attach_article_sales,
    attach_customer_activity,
    build_article_sales_windows,
    build_customer_activity,
)
from hmrec.features.articles import build_articles
from hmrec.features.customers import age_group, build_customers
from hmrec.features.errors import FeatureInputError
from hmrec.features.events import EventPurchases, add_event_purchases, read_event_purchases
from hmrec.features.ids import assign_codes, build_article_ids, build_customer_ids
from hmrec.features.on_demand import days_since, month_cos, month_sin, request_features
from hmrec.features.transactions import build_transactions

__all__ = [
    "EventPurchases",
    "FeatureInputError",
    "add_event_purchases",
    "age_group",
    "assign_codes",
    "attach_article_sales",
    "attach_customer_activity",
    "build_article_ids",
    "build_article_sales_windows",
    "build_articles",
    "build_customer_activity",
    "build_customer_ids",
    "build_customers",
    "build_transactions",
    "days_since",
    "month_cos",
    "month_sin",
    "read_event_purchases",
    "request_features",
]
