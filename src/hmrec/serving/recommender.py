"""The 4-stage recommender: retrieve -> filter -> rank -> order.

1. retrieve: the query tower embeds the customer's stored features plus the request
   context (month of `at`); FAISS returns the RETRIEVAL_K nearest articles.
2. filter: a policy (FILTER_POLICIES) decides what the customer's own purchase history
   does to the candidates.
3. rank: the ranking model scores every remaining candidate from the same features it
   was trained on (hmrec.ranking.feature_rows, point-in-time as of `at`).
4. order: highest score first, top k; padded with popular articles when too few
   candidates survive.

A customer the models have never seen (no stored features and no history) gets a
cold-start answer: best sellers of the last week in their age group if an age is
given, else overall — flagged ``cold_start=True``, never an error.

One object serves single requests and batches (the batch path is vectorised: one
query-tower call, one FAISS search, one feature build and one CatBoost call per batch).
"""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import polars as pl

from hmrec.features.customers import age_group
from hmrec.ranking import RankingModel, feature_rows
from hmrec.retrieval.candidates import RetrievalStage

#: Filter policies (stage 2).
#: - none: keep every retrieved candidate.
#: - exclude_purchased: drop every article the customer bought before `at` (the reference).
#: - exclude_purchased_except_repurchase: drop old purchases, but keep (and add as
#:   candidates) the articles bought within the last REPURCHASE_DAYS, because repurchase
#:   of recent articles is frequent in this data; the ranker's history features decide.
FILTER_POLICIES = ("none", "exclude_purchased", "exclude_purchased_except_repurchase")
REPURCHASE_DAYS = 28
POPULARITY_DAYS = 7


@dataclass
class Recommendation:
    """One customer's answer: ordered articles with scores and where each came from."""

    customer_id: str
    article_ids: list[str]
    scores: list[float]
    stages: list[str]  # "ranking" or "popularity" (padding / cold start)
    cold_start: bool
    at: dt.date
    extra: dict = field(default_factory=dict)


class FourStageRecommender:
    """retrieve -> filter -> rank -> order over in-memory features read from the store."""

    def __init__(
        self,
        retrieval: RetrievalStage,
        ranker: RankingModel,
        articles: pl.DataFrame,
        customers: pl.DataFrame,
        history: pl.DataFrame,
        filter_policy: str = "exclude_purchased_except_repurchase",
        retrieval_k: int = 100,
    ) -> None:
        if filter_policy not in FILTER_POLICIES:
            raise ValueError(f"unknown filter policy {filter_policy!r}; choose one of {', '.join(FILTER_POLICIES)}")
        self.retrieval = retrieval
        self.ranker = ranker
        self.articles = articles
        self.customers = customers
        self.history = history.select("t_dat", "customer_id", "article_id")
        self.filter_policy = filter_policy
        self.retrieval_k = retrieval_k
        self._known_articles = set(articles["article_id"].to_list())
        self._known_customers = set(customers["customer_id"].to_list())
        self._popular_cache: dict[tuple[dt.date, str | None], list[str]] = {}

    def with_policy(self, filter_policy: str) -> "FourStageRecommender":
        """The same models and features under another filter policy (shares memory)."""
        clone = copy.copy(self)
        if filter_policy not in FILTER_POLICIES:
            raise ValueError(f"unknown filter policy {filter_policy!r}; choose one of {', '.join(FILTER_POLICIES)}")
        clone.filter_policy = filter_policy
        return clone

    def candidates(self, customer_ids: Sequence[str], at: dt.date, k: int | None = None) -> dict[str, list[str]]:
        """Stages 1-2 only: each customer's retrieved and filtered candidates (best first)."""
        known = [c for c in dict.fromkeys(customer_ids) if c in self._known_customers]
        if not known:
            return {c: [] for c in customer_ids}
        cands = self._filter(self._retrieve(known, at), at, known)
        lists = (cands.sort(["customer_id", "retrieval_score"], descending=[False, True], nulls_last=True)
                 .group_by("customer_id", maintain_order=True).agg("article_id"))
        found = dict(zip(lists["customer_id"].to_list(), lists["article_id"].to_list()))
        return {c: found.get(c, [])[: k or None] for c in customer_ids}

    def _retrieve(self, customer_ids: list[str], at: dt.date) -> pl.DataFrame:
        found = self.retrieval(customer_ids, at, self.retrieval_k)
        return pl.DataFrame(
            [(c, a, s) for c, items in found.items() for a, s in items],
            schema={"customer_id": pl.String, "article_id": pl.String, "retrieval_score": pl.Float32},
            orient="row",
        )

    # -- helpers ---------------------------------------------------------------------------
    def add_purchases(self, rows: pl.DataFrame) -> None:
        """Append purchases (t_dat, customer_id, article_id) so the next answer reflects them."""
        self.history = pl.concat([self.history, rows.select("t_dat", "customer_id", "article_id")])
        self._known_customers.update(rows["customer_id"].to_list())
        self._popular_cache.clear()

    def popular(self, at: dt.date, age_group: str | None = None, n: int = 100) -> list[str]:
        """Best sellers of the POPULARITY_DAYS days before `at` (in an age group if given)."""
        key = (at, age_group)
        if key not in self._popular_cache:
            start = at - dt.timedelta(days=POPULARITY_DAYS)
            recent = self.history.filter((pl.col("t_dat") >= start) & (pl.col("t_dat") < at))
            if age_group is not None:
                members = self.customers.filter(pl.col("age_group") == age_group).select("customer_id")
                recent = recent.join(members, on="customer_id", how="semi")
            ranked = (recent.group_by("article_id").agg(pl.len().alias("n"))
                      .sort(["n", "article_id"], descending=[True, False]))["article_id"].to_list()
            if age_group is not None and len(ranked) < n:
                ranked += [a for a in self.popular(at, None, n) if a not in set(ranked)]
            if len(ranked) < n:  # an empty week: fall back to all-time sales before `at`
                ranked += [a for a in (self.history.filter(pl.col("t_dat") < at).group_by("article_id")
                                       .agg(pl.len().alias("n")).sort(["n", "article_id"], descending=[True, False])
                                       ["article_id"].to_list()) if a not in set(ranked)]
            self._popular_cache[key] = ranked[:n]
        return self._popular_cache[key]

    def _filter(self, cands: pl.DataFrame, at: dt.date, customer_ids: Sequence[str]) -> pl.DataFrame:
        if self.filter_policy == "none":
            return cands
        past = self.history.filter((pl.col("t_dat") < at) & pl.col("customer_id").is_in(list(customer_ids)))
        if self.filter_policy == "exclude_purchased":
            return cands.join(past.select("customer_id", "article_id").unique(), on=["customer_id", "article_id"],
                              how="anti")
        recent_start = at - dt.timedelta(days=REPURCHASE_DAYS)
        old = past.filter(pl.col("t_dat") < recent_start).select("customer_id", "article_id").unique()
        recent = past.filter(pl.col("t_dat") >= recent_start).select("customer_id", "article_id").unique()
        recent = recent.filter(pl.col("article_id").is_in(list(self._known_articles)))
        kept = cands.join(old.join(recent, on=["customer_id", "article_id"], how="anti"),
                          on=["customer_id", "article_id"], how="anti")
        added = recent.join(kept.select("customer_id", "article_id"), on=["customer_id", "article_id"], how="anti")
        return pl.concat([kept, added.with_columns(pl.lit(None, dtype=pl.Float32).alias("retrieval_score"))],
                         how="diagonal_relaxed")

    # -- the four stages ---------------------------------------------------------------------
    def recommend_batch(self, customer_ids: Sequence[str], at: dt.date, k: int = 12,
                        ages: dict[str, float] | None = None) -> list[Recommendation]:
        """Recommendations for many customers on day `at`, in input order."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        customer_ids = list(customer_ids)
        known = [c for c in dict.fromkeys(customer_ids) if c in self._known_customers]
        ranked: dict[str, tuple[list[str], list[float]]] = {}
        if known:
            # 1. retrieve
            cands = self._retrieve(known, at)
            # 2. filter
            cands = self._filter(cands, at, known)
            # 3. rank
            pairs = cands.select("customer_id", "article_id").with_columns(pl.lit(at, dtype=pl.Date).alias("as_of"))
            feats = feature_rows(pairs, self.history.filter(pl.col("t_dat") < at), self.articles, self.customers,
                                 pair_scorer=self.retrieval.score_pairs)
            scores = self.ranker.predict(feats) if feats.height else np.zeros(0)
            scored = feats.select("customer_id", "article_id").with_columns(pl.Series("score", scores, dtype=pl.Float64))
            # 4. order
            top = (scored.sort(["customer_id", "score", "article_id"], descending=[False, True, False])
                   .group_by("customer_id", maintain_order=True).head(k)
                   .group_by("customer_id", maintain_order=True).agg("article_id", "score"))
            for c, arts, sc in top.iter_rows():
                ranked[c] = (arts, sc)
        out = []
        for c in customer_ids:
            arts, sc = ranked.get(c, ([], []))
            cold = c not in self._known_customers
            stages = ["ranking"] * len(arts)
            if len(arts) < k:
                group = self._cold_age_group(c, ages) if cold else None
                pad = [a for a in self.popular(at, group, k + len(arts)) if a not in set(arts)][: k - len(arts)]
                arts = list(arts) + pad
                sc = list(sc) + [0.0] * len(pad)
                stages += ["popularity"] * len(pad)
            out.append(Recommendation(c, list(arts), [float(x) for x in sc], stages, cold, at))
        return out

    def recommend(self, customer_id: str, at: dt.date, k: int = 12, age: float | None = None) -> Recommendation:
        """One customer's top-k on day `at` (the same path as a batch of one)."""
        return self.recommend_batch([customer_id], at, k, ages=None if age is None else {customer_id: age})[0]

    def _cold_age_group(self, customer_id: str, ages: dict[str, float] | None) -> str | None:
        if not ages or ages.get(customer_id) is None:
            return None
        group = age_group(ages[customer_id])
        return group if group in set(self.customers["age_group"].to_list()) else None
