"""What the ranking step reads from the feature store, and the `ranking` feature view.

The view names the ranking model's training data for lineage (the registry records
its name and version): transactions [customer_id, article_id, t_dat] joined with the
customer attributes and the article attributes the ranker uses. Label rows and their
negatives are then built by hmrec.ranking.dataset from the same three groups, so
every feature a model saw can be traced to a group, a version and a commit.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from hmrec.features import articles as article_group
from hmrec.features import customers as customer_group
from hmrec.features import transactions as transaction_group
from hmrec.ranking.dataset import ARTICLE_FEATURES, CUSTOMER_FEATURES
from hmrec.store import FeatureStore, FeatureView

VIEW_NAME = "ranking"
#: Article columns besides the attributes: needed by the interaction features.
_ARTICLE_KEYS = ("product_code", "index_group_name", "garment_group_name")


@dataclass
class RankingInputs:
    """The three tables the ranking dataset is built from."""

    transactions: pl.LazyFrame  # t_dat, customer_id, article_id
    articles: pl.DataFrame
    customers: pl.DataFrame


def _customer_columns(fs: FeatureStore) -> list[str]:
    schema = fs.get_feature_group(customer_group.GROUP_NAME).schema or {}
    return [c for c in CUSTOMER_FEATURES if c in schema]


def _article_columns(fs: FeatureStore) -> list[str]:
    schema = fs.get_feature_group(article_group.GROUP_NAME).schema or {}
    wanted = dict.fromkeys((*_ARTICLE_KEYS, *ARTICLE_FEATURES))
    return [c for c in wanted if c in schema]


def ranking_feature_view(fs: FeatureStore, version: int = 1) -> FeatureView:
    """Get or create the `ranking` view (transactions joined with customers and articles)."""
    tx = fs.get_feature_group(transaction_group.GROUP_NAME)
    cust = fs.get_feature_group(customer_group.GROUP_NAME)
    art = fs.get_feature_group(article_group.GROUP_NAME)
    query = (
        tx.select(["customer_id", "article_id", "t_dat"])
        .join(cust.select(_customer_columns(fs)), on="customer_id")
        .join(art.select(_article_columns(fs)), on="article_id")
    )
    return fs.get_or_create_feature_view(
        VIEW_NAME,
        query,
        version=version,
        description="Ranking rows: purchases (positives) with customer and article attributes; "
        "negatives and point-in-time interaction features come from hmrec.ranking.dataset.",
    )


def load_inputs(fs: FeatureStore) -> RankingInputs:
    """Read the groups the ranking dataset needs (transactions lazily: it is the big one)."""
    tx = fs.get_feature_group(transaction_group.GROUP_NAME)
    cust = fs.get_feature_group(customer_group.GROUP_NAME)
    art = fs.get_feature_group(article_group.GROUP_NAME)
    return RankingInputs(
        transactions=tx.scan(["t_dat", "customer_id", "article_id"]),
        articles=art.read(["article_id", *_article_columns(fs)]),
        customers=cust.read(["customer_id", *_customer_columns(fs)]),
    )
