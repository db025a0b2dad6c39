"""Feature view definitions, written the way the reference course writes them.

The `retrieval` view (docs/architecture.md): one row per purchase row, with the
customer's and the article's features joined on their ids. Customers and articles
have no event time, so these are plain key joins; the time-windowed aggregates
(`article_sales_windows`, `customer_activity`) have one and join point-in-time when
a view selects them (see `activity_query`).
"""

from __future__ import annotations

from hmrec.features import aggregates, articles, customers, transactions
from hmrec.store import FeatureStore, FeatureView, Query

RETRIEVAL_VIEW = "retrieval"
RETRIEVAL_VIEW_VERSION = 1


def retrieval_query(fs: FeatureStore) -> Query:
    """transactions[...] ⋈ customers[...] ⋈ articles[...] (left joins on the ids)."""
    trans_fg = fs.get_feature_group(transactions.GROUP_NAME, version=1)
    customers_fg = fs.get_feature_group(customers.GROUP_NAME, version=1)
    articles_fg = fs.get_feature_group(articles.GROUP_NAME, version=1)

    return (
        trans_fg.select(["customer_id", "article_id", "t_dat", "price", "month_sin", "month_cos"])
        .join(customers_fg.select(["age", "club_member_status", "age_group"]), on="customer_id")
        .join(articles_fg.select(["garment_group_name", "index_group_name"]), on="article_id")
    )


def create_retrieval_view(fs: FeatureStore, version: int = RETRIEVAL_VIEW_VERSION) -> FeatureView:
    """Get or create the `retrieval` feature view (idempotent: same definition, same view)."""
    return fs.get_or_create_feature_view(
        name=RETRIEVAL_VIEW,
        version=version,
        query=retrieval_query(fs),
        description="Purchases with customer and article features, for the two-tower retrieval model.",
    )


def activity_query(fs: FeatureStore) -> Query:
    """Purchases with the point-in-time aggregates as of the purchase day (not a stored view:
    an example and a test of the as-of joins; counts are null before an entity's first row,
    which means 0)."""
    trans_fg = fs.get_feature_group(transactions.GROUP_NAME, version=1)
    sales_fg = fs.get_feature_group(aggregates.ARTICLE_SALES_GROUP, version=1)
    activity_fg = fs.get_feature_group(aggregates.CUSTOMER_ACTIVITY_GROUP, version=1)
    return (
        trans_fg.select(["customer_id", "article_id", "t_dat", "line_no"])
        .join(sales_fg.select(["sales_7d", "sales_28d"]), on="article_id")
        .join(activity_fg.select(["purchase_count", "purchase_days", "last_purchase_date"]), on="customer_id")
    )
