"""The retrieval stage as the rest of the system calls it: "candidates for these customers
as of this day" and "the two-tower score of these (customer, article) pairs".

Both build the query rows the same way serving does: the customer's stored features
(online/offline customers group) plus the request context of the day (month_sin,
month_cos from hmrec.features.on_demand), so ranking data, offline evaluation and the
HTTP service all see the same embeddings for the same customer and date.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl

from hmrec.features.on_demand import month_cos, month_sin
from hmrec.retrieval.best_sellers import best_sellers
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
    """A trained two-tower model + its candidate index + the customer features it reads.

    Candidates come from two sources: the two-tower model's nearest articles, and the
    `n_popular` best sellers of the `popular_days` days before the request (what any
    shopper sees on the front page, and what the generated and the real data both
    reward). Every candidate gets its two-tower score, whichever source found it, so
    the ranker sees one consistent feature. ``two_tower`` gives the first source alone.
    """

    def __init__(self, model: TwoTowerModel, index: CandidateIndex, customers: pl.DataFrame,
                 history: pl.DataFrame | None = None, n_popular: int = 0, popular_days: int = 7):
        self.model = model
        self.index = index
        self.customers = customers
        self.history = None if history is None else history.select("t_dat", "article_id")
        self.n_popular = n_popular if history is not None else 0
        self.popular_days = popular_days
        self._article_pos = {a: i for i, a in enumerate(index.article_ids.to_list())}
        self._popular: dict[date, list[str]] = {}
        self._dated_index: tuple[date, CandidateIndex] | None = None
        # With a popularity prior (hmrec.retrieval.prior) the last embedding column is the
        # prior on the item side and a constant 1 on the query side.
        self.has_prior = model.prior is not None

    def add_purchases(self, rows: pl.DataFrame) -> None:
        """Count purchases that arrived after the store was read (t_dat, article_id; other
        columns ignored): the best sellers and the popularity prior of later days see them.
        A stage built without a history has nothing to update."""
        if self.history is None or rows.height == 0:
            return
        new = rows.select(pl.col("t_dat").cast(self.history.schema["t_dat"]),
                          pl.col("article_id").cast(self.history.schema["article_id"]))
        self.history = pl.concat([self.history, new])
        self._popular = {}  # per-day caches computed from the old history
        self._dated_index = None

    def _index_for(self, as_of: date) -> CandidateIndex:
        """The index with the model's popularity prior refreshed as of the day before `as_of`
        (only sales before the request day count), so the score is taste + what sells now."""
        if not self.has_prior or self.history is None:
            return self.index
        if self._dated_index is None or self._dated_index[0] != as_of:
            before = self.history.filter(pl.col("t_dat") < as_of)
            prior = self.model.prior.refresh(before, self.index.article_ids, as_of=as_of - timedelta(days=1))
            emb = self.index.embeddings.copy()
            emb[:, -1] = prior.lookup(self.index.article_ids)
            self._dated_index = (as_of, CandidateIndex(self.index.article_ids, emb))
        return self._dated_index[1]

    def query_embeddings(self, customer_ids: list[str], as_of: date) -> np.ndarray:
        """Query-tower embeddings (float32) of customers on a day."""
        tower = self.model.query_tower
        return tower.embed(query_rows(self.customers, customer_ids, as_of, list(tower.columns)))

    def two_tower(self, customer_ids: list[str], as_of: date, k: int) -> dict[str, list[tuple[str, float]]]:
        """Top-k (article_id, score) per customer from the two-tower model (with its
        popularity prior refreshed for `as_of`, when the model has one)."""
        if not customer_ids:
            return {}
        q = self.query_embeddings(list(customer_ids), as_of)
        ids, scores = self._index_for(as_of).retrieve(q, k)
        return {
            c: list(zip(ids[i].tolist(), scores[i].astype(float).tolist()))
            for i, c in enumerate(customer_ids)
        }

    def popular(self, as_of: date) -> list[str]:
        """The popularity source's articles for a day (cached per day)."""
        if self.n_popular <= 0 or self.history is None:
            return []
        if as_of not in self._popular:
            found = best_sellers(self.history, as_of, self.popular_days, self.n_popular)
            self._popular[as_of] = [a for a in found if a in self._article_pos]
        return self._popular[as_of]

    def __call__(self, customer_ids: list[str], as_of: date, k: int) -> dict[str, list[tuple[str, float]]]:
        """At most k candidates per customer, (article_id, two-tower score): the popular
        articles take `n_popular` of the k places, the two-tower model the rest (its best
        first), and a popular article the model also found is listed once, so there may be
        fewer than k. This is the ranking package's CandidateFn and the recommender's
        stage 1, so training and serving rank the same kind of candidate lists."""
        popular = self.popular(as_of)[: max(k - 1, 0)]
        found = self.two_tower(customer_ids, as_of, k - len(popular))
        if not popular:
            return found
        cols = np.fromiter((self._article_pos[a] for a in popular), dtype=np.int64, count=len(popular))
        q = self.query_embeddings(list(customer_ids), as_of)
        pop_scores = q @ self._index_for(as_of).embeddings[cols].T
        out = {}
        for i, c in enumerate(customer_ids):
            have = {a for a, _ in found[c]}
            extra = [(a, float(pop_scores[i, j])) for j, a in enumerate(popular) if a not in have]
            out[c] = found[c] + extra
        return out

    def score_pairs(self, customer_ids: list[str], article_ids: list[str], as_of: date) -> np.ndarray:
        """Two-tower score of each (customer, article) pair on a day, exactly the score the
        retrieval stage ranks by (with the prior refreshed for that day): the ranking
        package's PairScorer. Articles outside the index score NaN."""
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
        out[ok] = np.einsum("ij,ij->i", q[row[ok]], self._index_for(as_of).embeddings[col[ok]])
        return out
