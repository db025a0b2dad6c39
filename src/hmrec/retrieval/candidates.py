"""The retrieval stage as the rest of the system calls it: "candidates for these customers
as of this day" and "the two-tower score of these (customer, article) pairs".

Both build the query rows the same way serving does: the customer's stored features
(online/offline customers group) plus the request context of the day (month_sin,
month_cos from hmrec.features.on_demand), so ranking data, offline evaluation and the
HTTP service all see the same embeddings for the same customer and date.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl

from hmrec.features.on_demand import month_cos, month_sin
from hmrec.retrieval.index import CandidateIndex
from hmrec.retrieval.model import TwoTowerModel


def query_rows(customers: pl.DataFrame, customer_ids: list[str], as_of: date, columns: list[str]) -> pl.DataFrame:
    """Raw query-tower rows for customers on a day; unknown customers get null features
    (the tower maps them to its out-of-vocabulary bucket and imputes age)."""
    ids = pl.DataFrame({"customer_id": pl.Series(customer_ids, dtype=pl.String)})
    known = [c for c in columns if c in customers.columns and c != "customer_id"]
    rows = ids.join(customers.select(["customer_id", *known]), on="customer_id", how="left",
                    maintain_order="left")
    return rows.with_columns(
        pl.lit(month_sin(as_of), dtype=pl.Float32).alias("month_sin"),
        pl.lit(month_cos(as_of), dtype=pl.Float32).alias("month_cos"),
    )


class RetrievalStage:
    """A trained two-tower model + its candidate index + the customer features it reads."""

    def __init__(self, model: TwoTowerModel, index: CandidateIndex, customers: pl.DataFrame):
        self.model = model
        self.index = index
        self.customers = customers
        self._article_pos = {a: i for i, a in enumerate(index.article_ids.to_list())}

    def query_embeddings(self, customer_ids: list[str], as_of: date) -> np.ndarray:
        """Query-tower embeddings (float32) of customers on a day."""
        tower = self.model.query_tower
        return tower.embed(query_rows(self.customers, customer_ids, as_of, list(tower.columns)))

    def __call__(self, customer_ids: list[str], as_of: date, k: int) -> dict[str, list[tuple[str, float]]]:
        """Top-k (article_id, score) per customer: the ranking package's CandidateFn."""
        if not customer_ids:
            return {}
        ids, scores = self.index.retrieve(self.query_embeddings(list(customer_ids), as_of), k)
        return {
            c: list(zip(ids[i].tolist(), scores[i].astype(float).tolist()))
            for i, c in enumerate(customer_ids)
        }

    def score_pairs(self, customer_ids: list[str], article_ids: list[str], as_of: date) -> np.ndarray:
        """Two-tower score of each (customer, article) pair on a day: the ranking package's
        PairScorer. Articles outside the index score NaN."""
        if len(customer_ids) == 0:
            return np.zeros(0, dtype=np.float32)
        unique = list(dict.fromkeys(customer_ids))
        q = self.query_embeddings(unique, as_of)
        pos_of_customer = {c: i for i, c in enumerate(unique)}
        row = np.fromiter((pos_of_customer[c] for c in customer_ids), dtype=np.int64, count=len(customer_ids))
        col = np.fromiter((self._article_pos.get(a, -1) for a in article_ids), dtype=np.int64,
                          count=len(article_ids))
        out = np.full(len(customer_ids), np.nan, dtype=np.float32)
        ok = col >= 0
        out[ok] = np.einsum("ij,ij->i", q[row[ok]], self.index.embeddings[col[ok]])
        return out
