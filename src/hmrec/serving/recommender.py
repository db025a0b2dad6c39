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

One object serves single requests and batches. The batch path is vectorised (one
FAISS search, one Polars feature build and one CatBoost call per batch) and is the
reference definition; the single-request path (``recommend``) computes the same
values from in-memory per-customer lookups (hmrec.serving.lookups) in about a
millisecond, and the tests hold the two to equal answers.

Query embeddings are computed once per request context (day) for every stored
customer, in one batched call, and both paths read them from that table: a PyTorch
matmul over one row rounds differently from the same row inside a batch, so
computing per request would make a customer's answer depend on who else is in the
batch. Offline code (ranking data, evaluation) embeds customers in batches too, so
the service sees the very embeddings the offline pipeline sees.
"""

from __future__ import annotations

import copy
import datetime as dt
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter

import numpy as np
import polars as pl

from hmrec.features.customers import age_group
from hmrec.ranking import (
    LIST_FEATURES,
    RankingModel,
    add_list_features,
    categorical_frame,
    feature_rows,
)
from hmrec.retrieval.candidates import RetrievalStage, query_rows
from hmrec.serving.incremental import ServingRetrieval
from hmrec.serving.lookups import OnlineLookups, UnsupportedModel, day_number

#: Filter policies (stage 2).
#: - none: keep every retrieved candidate.
#: - exclude_purchased: drop every article the customer bought before `at` (the reference).
#: - exclude_purchased_except_repurchase: drop old purchases, but keep (and add as
#:   candidates) the articles bought within the last REPURCHASE_DAYS, because repurchase
#:   of recent articles is frequent in this data; the ranker's history features decide.
FILTER_POLICIES = ("none", "exclude_purchased", "exclude_purchased_except_repurchase")
REPURCHASE_DAYS = 28
POPULARITY_DAYS = 7
#: Request contexts (days) whose customer embedding tables are kept.
EMBEDDING_TABLES = 4


#: Queries per FAISS search in a micro-batch. FAISS scores a small number of queries one
#: by one (the kernel a single request uses) and many with one BLAS matrix product, which
#: rounds differently (the switch is faiss.cvar.distance_compute_blas_threshold: 20 in
#: older releases); chunks this small keep a batched answer bit-identical to a single one.
FAISS_CHUNK = 16


@dataclass(frozen=True)
class RecommendationRequest:
    """One GET /recommendations: a customer, a day, how many, and an age for cold start."""

    customer_id: str
    at: dt.date
    k: int = 12
    age: float | None = None


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


class _BatchWork:
    """The filter-policy-independent work of the last batch, shared by a recommender and its
    `with_policy` clones (the offline evaluation asks every policy for the same batch in turn).

    `rows` holds every pair some policy can rank: the retrieved candidates (in retrieval
    order) and then the recent purchases exclude_purchased_except_repurchase adds, with
    flags saying which policy keeps which row; `features` holds their ranking features
    without LIST_FEATURES, row for row. A policy's list is then a mask over both, and only
    the list-position features (computed over each policy's own list) and the ranker's
    scores are computed per policy. The answers are those of computing everything per
    call: a pair's other features depend on the pair and the day only."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.key: tuple | None = None
        self.history: pl.DataFrame | None = None
        self.known: list[str] = []
        self.rows: pl.DataFrame | None = None
        self.features: pl.DataFrame | None = None
        self.categories = None  # the ranker's categorical features of `features`, converted once


#: Added purchases waiting to join the history are joined when this many (memory bound).
MERGE_EVERY = 256
#: A history frame of more chunks than this is made one chunk again when rows join it.
MAX_CHUNKS = 64
#: Columns and types of added purchases (FourStageRecommender.add_purchases).
_PURCHASE_SCHEMA = pl.Schema({"t_dat": pl.Date, "customer_id": pl.String, "article_id": pl.String})


def candidate_rows(found: dict[str, list[tuple[str, float]]]) -> pl.DataFrame:
    """(customer_id, article_id, retrieval_score) rows of a retrieval answer, in its order.

    Built column by column: a frame from millions of (customer, article, score) tuples
    took seconds per FULL evaluation batch."""
    keys = list(found)
    lengths = np.fromiter((len(v) for v in found.values()), dtype=np.int64, count=len(keys))
    flat = list(chain.from_iterable(found.values()))
    customers = pl.Series("customer_id", keys, dtype=pl.String).gather(np.repeat(np.arange(len(keys)), lengths))
    scores = np.fromiter(map(itemgetter(1), flat), dtype=np.float64, count=len(flat))
    return pl.DataFrame({
        "customer_id": customers,
        "article_id": pl.Series(list(map(itemgetter(0), flat)), dtype=pl.String),
        "retrieval_score": pl.Series(scores, dtype=pl.Float64).cast(pl.Float32),
    })


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
        # The recommender's retrieval stage reads query embeddings from the per-day table
        # (see the module docstring); the stage object given is left as it is.
        self._embed_batch = getattr(retrieval, "query_embeddings", None)
        # a RetrievalStage is served by its incremental copy (same answers; a purchase updates
        # its per-day caches instead of clearing them: hmrec.serving.incremental)
        self.retrieval = (ServingRetrieval.of(retrieval) if type(retrieval) is RetrievalStage
                          else copy.copy(retrieval))
        if self._embed_batch is not None:
            self.retrieval.query_embeddings = self.query_embeddings
        self.ranker = ranker
        self.articles = articles
        self.customers = customers
        self._history = history.select("t_dat", "customer_id", "article_id")
        self._unmerged: list[pl.DataFrame] = []  # added purchases not joined to _history yet
        self.filter_policy = filter_policy
        self.retrieval_k = retrieval_k
        self._known_articles = set(articles["article_id"].to_list())
        # customer_id -> row of `customers`: one dict shared by the lookups and the embedding
        # table (a million 64-character ids cost ~250 MB per copy); plus those added later
        self._codes = {c: i for i, c in enumerate(customers["customer_id"].to_list())}
        self._added_customers: set[str] = set()
        self._age_groups = set(customers["age_group"].to_list()) if "age_group" in customers.columns else set()
        self._popular_cache: dict[tuple[dt.date, str | None], list[str]] = {}
        self._lock = threading.RLock()
        self._lookups: OnlineLookups | None = None
        self._single_path: bool | None = None  # None: not decided yet
        self._tables: OrderedDict[tuple, tuple[dict[str, int], np.ndarray, dict[str, np.ndarray]]] = OrderedDict()
        self._context_keys: dict[dt.date, tuple] = {}
        self._last_day: dt.date | None = self.history["t_dat"].max()
        self._work = _BatchWork()  # shared with the with_policy clones (copy.copy keeps it)

    @property
    def history(self) -> pl.DataFrame:
        """Purchases (t_dat, customer_id, article_id): the store's plus those added. Added
        rows join the frame (as one chunk) when it is read, not once per purchase: the
        single-request path does not read it, and a frame of one chunk per purchase slows
        every later read of it."""
        if self._unmerged:
            self._history = pl.concat([self._history, pl.concat(self._unmerged, rechunk=True)], rechunk=False)
            self._unmerged = []
            if self._history.n_chunks() > MAX_CHUNKS:  # every later scan pays per chunk
                self._history = self._history.rechunk()
        return self._history

    def with_policy(self, filter_policy: str) -> FourStageRecommender:
        """The same models and features under another filter policy (shares memory)."""
        self.history  # noqa: B018 - join pending rows first: the clone gets its own list
        clone = copy.copy(self)
        clone._unmerged = []
        if filter_policy not in FILTER_POLICIES:
            raise ValueError(f"unknown filter policy {filter_policy!r}; choose one of {', '.join(FILTER_POLICIES)}")
        clone.filter_policy = filter_policy
        return clone

    def candidates(self, customer_ids: Sequence[str], at: dt.date, k: int | None = None) -> dict[str, list[str]]:
        """Stages 1-2 only: each customer's retrieved and filtered candidates (best first;
        equal scores by article id, the added repurchases, which have none, last)."""
        known = [c for c in dict.fromkeys(customer_ids) if self._is_known(c)]
        if not known:
            return {c: [] for c in customer_ids}
        with self._lock:  # the batch work is shared with recommend_batch and the policy clones
            work = self._batch_work(known, at)
            lists = (work.rows.filter(self._policy_mask()).select("_c", "article_id", "retrieval_score")
                     .sort(["_c", "retrieval_score", "article_id"], descending=[False, True, False], nulls_last=True)
                     .group_by("_c", maintain_order=True).agg("article_id"))
        found = {known[i]: arts for i, arts in zip(lists["_c"].to_list(), lists["article_id"].to_list())}
        return {c: found.get(c, [])[: k or None] for c in customer_ids}

    def _retrieve(self, customer_ids: list[str], at: dt.date) -> pl.DataFrame:
        return candidate_rows(self.retrieval(customer_ids, at, self.retrieval_k))

    def _policy_mask(self) -> pl.Expr:
        """Stage 2 over a batch's rows (see _batch_work): which rows this policy keeps."""
        if self.filter_policy == "none":
            return ~pl.col("_added")
        if self.filter_policy == "exclude_purchased":
            return ~pl.col("_added") & ~pl.col("_bought")
        return ~pl.col("_old")

    def _batch_work(self, known: list[str], at: dt.date) -> _BatchWork:
        """Stage 1 and what stage 2 needs for a batch, once for every policy asking for it.

        rows: the candidates (``_added`` false) then the articles bought within
        REPURCHASE_DAYS before `at` that are not candidates (``_added`` true, no score);
        ``_bought``: bought before `at`; ``_old``: bought before, but not within the last
        REPURCHASE_DAYS; ``_c``: the customer's position in `known`. The policies:
        none keeps the candidates, exclude_purchased those never bought, and
        exclude_purchased_except_repurchase every row but the ``_old`` ones."""
        work = self._work
        key = (tuple(known), at)
        if work.key == key and work.history is self.history:
            return work
        work.clear()
        cands = self._retrieve(known, at)
        who = pl.DataFrame({"customer_id": known, "_c": np.arange(len(known), dtype=np.int32)},
                           schema={"customer_id": pl.String, "_c": pl.Int32})
        bought = (self.history.lazy().filter(pl.col("t_dat") < at)
                  .join(who.lazy().select("customer_id"), on="customer_id", how="semi")
                  .group_by("customer_id", "article_id").agg(pl.col("t_dat").max().alias("_last"))
                  .collect())
        recent_start = at - dt.timedelta(days=REPURCHASE_DAYS)
        cands = (cands.join(who, on="customer_id", how="left", maintain_order="left")
                 .join(bought, on=["customer_id", "article_id"], how="left", maintain_order="left")
                 .with_columns(pl.lit(False).alias("_added"), pl.col("_last").is_not_null().alias("_bought"),
                               (pl.col("_last") < recent_start).fill_null(False).alias("_old")))
        added = (bought.filter((pl.col("_last") >= recent_start)
                               & pl.col("article_id").is_in(list(self._known_articles)))
                 .join(cands.select("customer_id", "article_id"), on=["customer_id", "article_id"], how="anti")
                 .join(who, on="customer_id", how="left")
                 .sort("_c", "article_id")
                 .with_columns(pl.lit(None, dtype=pl.Float32).alias("retrieval_score"),
                               pl.lit(True).alias("_added"), pl.lit(True).alias("_bought"),
                               pl.lit(False).alias("_old")))
        cols = ["_c", "customer_id", "article_id", "retrieval_score", "_added", "_bought", "_old"]
        work.rows = pl.concat([cands.select(cols), added.select(cols)])
        work.key, work.history, work.known = key, self.history, known
        return work

    def _ranking_features(self, at: dt.date, work: _BatchWork) -> tuple[pl.DataFrame, object]:
        """Ranking features of this policy's list: the batch's per-pair features (computed
        on first use, for every row of the batch) masked to the list, plus LIST_FEATURES
        over it; and the same rows of the batch's categorical features as the ranker takes
        them (converted once per batch: converting was most of a policy's scoring time),
        or None for a ranker without categorical features."""
        if work.features is None:
            pairs = work.rows.select("customer_id", "article_id", pl.lit(at, dtype=pl.Date).alias("as_of"))
            # feature_rows reads only purchases before each row's as_of: the whole history is passed
            feats = feature_rows(pairs, self.history, self.articles, self.customers,
                                 pair_scorer=self.retrieval.score_pairs)
            work.features = feats.drop([c for c in LIST_FEATURES if c in feats.columns]).with_columns(
                work.rows["_c"])
            cats = getattr(self.ranker, "cat_features_", None)
            if cats:
                work.categories = categorical_frame(work.features, cats)
        mask = work.rows.select(self._policy_mask()).to_series()
        feats = add_list_features(work.features.filter(mask))
        if work.categories is None:
            return feats, None
        return feats, work.categories.take(np.flatnonzero(mask.to_numpy()))

    # -- the embeddings both paths share ----------------------------------------------------
    def query_embeddings(self, customer_ids: Sequence[str], at: dt.date) -> np.ndarray:
        """Query-tower embeddings of customers on day `at`, from the per-context table
        (every stored customer embedded in one batch; others embedded on first use)."""
        ids, table, extra = self._table(at)
        out = np.empty((len(customer_ids), table.shape[1]), dtype=np.float32)
        for i, c in enumerate(customer_ids):
            row = ids.get(c)
            if row is not None:
                out[i] = table[row]
                continue
            emb = extra.get(c)
            if emb is None:  # not in the customers table (e.g. first seen in an event)
                emb = self._embed_batch([c, c], at)[0]  # two rows: batched numerics
                extra[c] = emb
            out[i] = emb
        return out

    def _context_key(self, at: dt.date) -> tuple:
        """What the query tower sees of the request besides the customer (e.g. month)."""
        key = self._context_keys.get(at)
        if key is None:
            tower = self.retrieval.model.query_tower
            row = query_rows(self.retrieval.customers.head(0), ["_"], at, list(tower.columns))
            key = tuple(row.drop("customer_id").row(0))
            if len(self._context_keys) > 1000:
                self._context_keys.clear()
            self._context_keys[at] = key
        return key

    def _table(self, at: dt.date) -> tuple[dict[str, int], np.ndarray, dict[str, np.ndarray]]:
        key = self._context_key(at)
        with self._lock:
            found = self._tables.get(key)
            if found is None:
                frame = self.retrieval.customers
                ids = frame["customer_id"].to_list()
                padded = ids if len(ids) != 1 else ids * 2
                table = self._embed_batch(padded, at) if ids else np.zeros(
                    (0, self.retrieval.index.dim), np.float32)
                rows = self._codes if frame is self.customers else {c: i for i, c in enumerate(ids)}
                del ids, padded
                found = (rows, table, {})
                self._tables[key] = found
                if len(self._tables) > EMBEDDING_TABLES:
                    self._tables.popitem(last=False)
            else:
                self._tables.move_to_end(key)
            return found

    # -- helpers ---------------------------------------------------------------------------
    def add_purchases(self, rows: pl.DataFrame) -> None:
        """Append purchases (t_dat, customer_id, article_id) so the next answer reflects them."""
        if rows.schema != _PURCHASE_SCHEMA:  # the service's rows are built with it (no copy)
            rows = rows.select(pl.col("t_dat").cast(pl.Date), pl.col("customer_id").cast(pl.String),
                               pl.col("article_id").cast(pl.String))
        if rows.height == 0:
            return
        with self._lock:
            self._unmerged.append(rows)
            if len(self._unmerged) >= MERGE_EVERY:
                self.history  # noqa: B018 - join them: a frame per purchase costs ~3 KB
            self._work.clear()  # shared with the clones, whose retrieval stage changes too
            if self._lookups is not None:
                self._lookups.add([day_number(d) for d in rows["t_dat"].to_list()],
                                  rows["customer_id"].to_list(), rows["article_id"].to_list())
            self._added_customers.update(c for c in rows["customer_id"].to_list() if c not in self._codes)
            self._popular_cache.clear()
            newest = rows["t_dat"].max()
            if self._last_day is None or (newest is not None and newest > self._last_day):
                self._last_day = newest
            # the retrieval stage's best sellers (and popularity prior) count them too
            self.retrieval.add_purchases(rows)

    def purchase_days(self, customer_id: str) -> list[dt.date]:
        """Days of every purchase row of a customer (store + added), oldest first."""
        lookups = self._ready_lookups()
        if lookups is None:
            return sorted(self.history.filter(pl.col("customer_id") == customer_id)["t_dat"].to_list())
        days, _ = lookups.history_of(customer_id)
        return [dt.date(1970, 1, 1) + dt.timedelta(days=int(d)) for d in np.sort(days)]

    def last_day(self) -> dt.date | None:
        """The last day with a known purchase (store + added); requests default to the day after."""
        return self._last_day

    def warm_up(self, at: dt.date) -> None:
        """Build what the single-request path needs for day `at` now (lookups, embedding
        table, sales counts, the retrieval stage's caches), not on the first request."""
        self._ready_lookups()
        self._table(at)
        self.popular(at, None, 100)
        if self.customers.height:
            self.recommend(self.customers["customer_id"][0], at)

    def _ready_lookups(self) -> OnlineLookups | None:
        with self._lock:
            if self._single_path is None:
                try:
                    self._lookups = OnlineLookups(self.articles, self.customers, self.history, self.ranker,
                                                  customer_codes=self._codes)
                    self._single_path = True
                except UnsupportedModel:
                    self._single_path = False
            return self._lookups

    def popular(self, at: dt.date, age_group: str | None = None, n: int = 100) -> list[str]:
        """Best sellers of the POPULARITY_DAYS days before `at` (in an age group if given),
        topped up with all-time sales before `at` when the week had fewer than n."""
        key = (at, age_group)
        found = self._popular_cache.get(key)
        if found is None or (len(found[0]) < n and found[1] < n):
            want = max(n, 100)
            start = at - dt.timedelta(days=POPULARITY_DAYS)
            recent = self.history.filter((pl.col("t_dat") >= start) & (pl.col("t_dat") < at))
            if age_group is not None:
                members = self.customers.filter(pl.col("age_group") == age_group).select("customer_id")
                recent = recent.join(members, on="customer_id", how="semi")
            ranked = (recent.group_by("article_id").agg(pl.len().alias("n"))
                      .sort(["n", "article_id"], descending=[True, False]))["article_id"].to_list()
            if age_group is not None and len(ranked) < want:
                have = set(ranked)
                ranked += [a for a in self.popular(at, None, want) if a not in have]
            if len(ranked) < want:  # an empty week: fall back to all-time sales before `at`
                have = set(ranked)
                ranked += [a for a in (self.history.filter(pl.col("t_dat") < at).group_by("article_id")
                                       .agg(pl.len().alias("n")).sort(["n", "article_id"], descending=[True, False])
                                       ["article_id"].to_list()) if a not in have]
            found = (ranked[:want], want)
            self._popular_cache[key] = found
        return found[0][:n]

    # -- the four stages ---------------------------------------------------------------------
    def recommend_batch(self, customer_ids: Sequence[str], at: dt.date, k: int = 12,
                        ages: dict[str, float] | None = None) -> list[Recommendation]:
        """Recommendations for many customers on day `at`, in input order."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        with self._lock:
            return self._recommend_many(customer_ids, at, k, ages)

    def _recommend_many(self, customer_ids: Sequence[str], at: dt.date, k: int,
                        ages: dict[str, float] | None) -> list[Recommendation]:
        customer_ids = list(customer_ids)
        known = [c for c in dict.fromkeys(customer_ids) if self._is_known(c)]
        ranked: dict[str, tuple[list[str], list[float]]] = {}
        if known:
            # 1. retrieve (shared by the policies asking for the same batch) and 2. filter
            work = self._batch_work(known, at)
            # 3. rank
            feats, categories = self._ranking_features(at, work)
            if not feats.height:
                scores = np.zeros(0)
            elif categories is None:
                scores = self.ranker.predict(feats)
            else:
                scores = self.ranker.predict(feats, categories=categories)
            scored = feats.select("_c", "article_id").with_columns(pl.Series("score", scores, dtype=pl.Float64))
            # 4. order
            top = (scored.sort(["_c", "score", "article_id"], descending=[False, True, False])
                   .group_by("_c", maintain_order=True).head(k)
                   .group_by("_c", maintain_order=True).agg("article_id", "score"))
            for i, arts, sc in top.iter_rows():
                ranked[work.known[i]] = (arts, sc)
        return [self._answer(c, *ranked.get(c, ([], [])), at, k, ages) for c in customer_ids]

    def _answer(self, c: str, arts: list[str], sc: list[float], at: dt.date, k: int,
                ages: dict[str, float] | None) -> Recommendation:
        """Stage 4's tail: pad with best sellers when fewer than k were ranked."""
        cold = not self._is_known(c)
        stages = ["ranking"] * len(arts)
        if len(arts) < k:
            group = self._cold_age_group(c, ages) if cold else None
            have = set(arts)
            pad = [a for a in self.popular(at, group, k + len(arts)) if a not in have][: k - len(arts)]
            arts = list(arts) + pad
            sc = list(sc) + [0.0] * len(pad)
            stages += ["popularity"] * len(pad)
        return Recommendation(c, list(arts), [float(x) for x in sc], stages, cold, at)

    def recommend(self, customer_id: str, at: dt.date, k: int = 12, age: float | None = None) -> Recommendation:
        """One customer's top-k on day `at`: the same answer as recommend_batch, computed
        from in-memory lookups (about a millisecond instead of tens). Thread-safe."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        with self._lock:
            return self._recommend_one(customer_id, at, k, age)

    def _recommend_one(self, customer_id: str, at: dt.date, k: int, age: float | None) -> Recommendation:
        ages = None if age is None else {customer_id: age}
        lookups = self._ready_lookups()
        if not self._is_known(customer_id):
            return self._answer(customer_id, [], [], at, k, ages)
        if lookups is None:
            return self.recommend_batch([customer_id], at, k, ages=ages)[0]
        found = self.retrieval([customer_id], at, self.retrieval_k).get(customer_id, [])
        cands = self._filter_one(customer_id, [a for a, _ in found], at, lookups)
        if not cands:
            return self._answer(customer_id, [], [], at, k, ages)
        rows = np.fromiter((lookups.article_row.get(a, -1) for a in cands), dtype=np.int64, count=len(cands))
        pair_scores = self.retrieval.score_pairs([customer_id] * len(cands), cands, at)
        scores = lookups.predict(lookups.features(customer_id, at, rows, pair_scores))
        order = _top_k(scores, cands, k)
        return self._answer(customer_id, [cands[i] for i in order], [float(scores[i]) for i in order], at, k, ages)

    def recommend_many(self, requests: Sequence[RecommendationRequest]) -> list[Recommendation | Exception]:
        """Answers to concurrent single requests, computed together: one retrieval call per
        day (FAISS in chunks of FAISS_CHUNK), one pair-score call and ONE CatBoost call for
        all candidates, so the per-call overhead (mostly CatBoost's Pool) is paid once per
        batch instead of once per request. Each answer equals ``recommend`` of its request
        exactly; a request that fails gets its exception in its place, the others their
        answers. Thread-safe."""
        out: list[Recommendation | Exception | None] = [None] * len(requests)
        with self._lock:
            lookups = self._ready_lookups()
            warm: list[int] = []
            for i, r in enumerate(requests):
                if r.k < 1 or lookups is None or not self._is_known(r.customer_id):
                    out[i] = self._one_or_error(r)  # errors, cold starts, the batch-path fallback
                else:
                    warm.append(i)
            if warm:
                try:
                    ranked = self._rank_together([requests[i] for i in warm], lookups)
                    for i in warm:
                        r = requests[i]
                        cands, scores = ranked[(r.customer_id, r.at)]
                        out[i] = self._ordered(r, cands, scores)
                except Exception:  # noqa: BLE001 - isolate the culprit: answer one by one
                    for i in warm:
                        out[i] = self._one_or_error(requests[i])
        return out  # type: ignore[return-value]

    def _one_or_error(self, r: RecommendationRequest) -> Recommendation | Exception:
        try:
            if r.k < 1:
                raise ValueError(f"k must be >= 1, got {r.k}")
            return self._recommend_one(r.customer_id, r.at, r.k, r.age)
        except Exception as exc:  # noqa: BLE001 - handed back in the request's place
            return exc

    def _rank_together(self, requests: Sequence[RecommendationRequest], lookups: OnlineLookups
                       ) -> dict[tuple[str, dt.date], tuple[list[str], np.ndarray]]:
        """Stages 1-3 for every distinct (customer, day): candidates and their scores."""
        by_day: dict[dt.date, list[str]] = {}
        for r in requests:
            by_day.setdefault(r.at, [])
            if r.customer_id not in by_day[r.at]:
                by_day[r.at].append(r.customer_id)
        out: dict[tuple[str, dt.date], tuple[list[str], np.ndarray]] = {}
        for at, customers in by_day.items():
            found: dict[str, list[tuple[str, float]]] = {}
            for start in range(0, len(customers), FAISS_CHUNK):
                found.update(self.retrieval(customers[start:start + FAISS_CHUNK], at, self.retrieval_k))
            cands = {c: self._filter_one(c, [a for a, _ in found.get(c, [])], at, lookups) for c in customers}
            for c in customers:
                if not cands[c]:
                    out[(c, at)] = ([], np.zeros(0))
            ranked = [c for c in customers if cands[c]]
            if not ranked:
                continue
            flat_c = [c for c in ranked for _ in cands[c]]
            flat_a = [a for c in ranked for a in cands[c]]
            rows = np.fromiter((lookups.article_row.get(a, -1) for a in flat_a), dtype=np.int64, count=len(flat_a))
            sizes = np.cumsum([len(cands[c]) for c in ranked])[:-1]
            feats = lookups.features_many(ranked, at, np.split(rows, sizes),
                                          self.retrieval.score_pairs(flat_c, flat_a, at))
            for c, sc in zip(ranked, np.split(lookups.predict(feats), sizes)):
                out[(c, at)] = (cands[c], sc)
        return out

    def _ordered(self, r: RecommendationRequest, cands: list[str], scores: np.ndarray) -> Recommendation:
        """Stage 4 for one request: its top k of the scored candidates, padded."""
        ages = None if r.age is None else {r.customer_id: r.age}
        if not cands:
            return self._answer(r.customer_id, [], [], r.at, r.k, ages)
        order = _top_k(scores, cands, r.k)
        return self._answer(r.customer_id, [cands[i] for i in order], [float(scores[i]) for i in order],
                            r.at, r.k, ages)

    def _filter_one(self, customer_id: str, cands: list[str], at: dt.date, lookups: OnlineLookups) -> list[str]:
        """Stage 2 for one customer (the same rules as _policy_mask over _batch_work's rows)."""
        if self.filter_policy == "none":
            return cands
        days, rows = lookups.history_of(customer_id)
        at_n = day_number(at)
        past = days < at_n
        ids = lookups.article_ids
        if self.filter_policy == "exclude_purchased":
            bought = {ids[r] for r in rows[past].tolist() if r >= 0}
            return [a for a in cands if a not in bought]
        recent_n = at_n - REPURCHASE_DAYS
        recent_mask = past & (days >= recent_n)
        recent = list(dict.fromkeys(ids[r] for r in rows[recent_mask].tolist() if r >= 0))
        recent_set = set(recent)
        old = {ids[r] for r in rows[past & (days < recent_n)].tolist() if r >= 0} - recent_set
        kept = [a for a in cands if a not in old]
        have = set(kept)
        return kept + [a for a in recent if a not in have and a in self._known_articles]

    def _is_known(self, customer_id: str) -> bool:
        """In the store's customers, or seen in an added purchase: not a cold start."""
        return customer_id in self._codes or customer_id in self._added_customers

    def _cold_age_group(self, customer_id: str, ages: dict[str, float] | None) -> str | None:
        if not ages or ages.get(customer_id) is None:
            return None
        group = age_group(ages[customer_id])
        return group if group in self._age_groups else None


def _top_k(scores: np.ndarray, ids: list[str], k: int) -> list[int]:
    """Positions of the k best (highest score, then smallest id): the batch path's order."""
    neg = -np.asarray(scores, dtype=np.float64)
    top = np.argsort(neg, kind="stable")[: k + 1]
    head = neg[top]
    if len(head) > 1 and np.any(head[1:] == head[:-1]):  # a tie near the top: order by id too
        return sorted(range(len(ids)), key=lambda i: (neg[i], ids[i]))[:k]
    return top[:k].tolist()
