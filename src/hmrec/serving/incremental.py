"""The retrieval stage as the service runs it: purchases update its per-day caches in
place instead of throwing them away.

``RetrievalStage.add_purchases`` (the offline definition) appends the rows to its
history and clears its per-day caches, so the next request after every accepted
purchase recomputed, over the whole purchase history, the best sellers of the week and
the popularity prior, then copied the article embeddings and rebuilt the FAISS index:
a quarter of the server's time under a load with one purchase in ten requests, and it
grows with the history (31M rows at FULL).

:class:`ServingRetrieval` keeps, for the days it has answered, what those caches are
computed from, and applies each purchase to it:

* best sellers: the sales count of every article in the window and the top-n list
  (counts only grow, so an article can only enter the list or move up in it);
* popularity prior: the window's sales per index article and in total; the prior
  column is recomputed from them with the very expression
  ``hmrec.retrieval.prior.PopularityPrior`` uses (one vectorised log over the
  catalogue) and written into the index's embeddings and FAISS's copy of them in place.
  When the cache is built the column computed this way is checked against the one the
  offline code built, bit for bit; if they ever differ the stage falls back to
  rebuilding (the offline behaviour).

New rows also wait in a list and join the history (one chunk) only when a cache for a
new day is built, instead of one concatenation per purchase. The answers are those of a
RetrievalStage given the same rows (the tests compare the two after purchases).
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import date, timedelta

import faiss
import numpy as np
import polars as pl

from hmrec.retrieval.candidates import RetrievalStage, best_sellers
from hmrec.retrieval.index import CandidateIndex

#: Added purchases waiting to join the history are joined when this many (memory bound).
MERGE_EVERY = 256
#: A history frame of more chunks than this is made one chunk again when rows join it.
MAX_CHUNKS = 64
#: Days whose best-seller counts are kept (a service asks for one or two days at a time).
POPULAR_DAYS_KEPT = 8


class _PriorCounts:
    """What the prior column of one day's index is computed from (see module doc)."""

    def __init__(self, as_of: date, start: date, end: date, counts: np.ndarray, total: int, log_q: np.ndarray,
                 smoothing: float) -> None:
        self.as_of, self.start, self.end = as_of, start, end
        self.counts = counts  # sales in [start, end] per index article (int64)
        self.total = total  # every sale in the window, catalogue or not (the prior's denominator)
        self.log_q = log_q
        self.smoothing = smoothing

    def column(self) -> np.ndarray:
        """The prior column (float32), as PopularityPrior.refresh + lookup compute it."""
        denom = float(self.total) + self.smoothing * len(self.counts)
        log_recent = np.log((self.counts.astype(np.float64) + self.smoothing) / denom)
        return (log_recent - self.log_q).astype(np.float32)


class ServingRetrieval(RetrievalStage):
    """A RetrievalStage whose per-day caches follow added purchases incrementally."""

    @classmethod
    def of(cls, stage: RetrievalStage) -> ServingRetrieval:
        """A serving copy of `stage` (shares the model, index and customers; the stage
        itself is not changed, and no cache is shared with it)."""
        new = cls.__new__(cls)
        state = dict(stage.__dict__)
        history = state.pop("history", None)
        new.__dict__.update(state)
        new._history = history
        new._unmerged = []
        new._popular = {}
        new._dated_index = None
        new._popular_counts = OrderedDict()
        new._prior_counts = None
        return new

    # -- history: new rows join it when a cache needs it -----------------------------------
    @property
    def history(self) -> pl.DataFrame | None:  # type: ignore[override]
        if self._unmerged:
            added = pl.concat(self._unmerged, rechunk=True)
            self._history = pl.concat([self._history, added], rechunk=False)
            self._unmerged = []
            if self._history.n_chunks() > MAX_CHUNKS:  # every later scan pays per chunk
                self._history = self._history.rechunk()
        return self._history

    @history.setter
    def history(self, value: pl.DataFrame | None) -> None:
        self._history = value
        self._unmerged = []

    # -- caches ------------------------------------------------------------------------------
    def popular(self, as_of: date) -> list[str]:
        if self.n_popular <= 0 or self._history is None:
            return []
        found = self._popular.get(as_of)
        if found is None:
            history = self.history
            start = as_of - timedelta(days=self.popular_days)
            counts = dict(history.filter((pl.col("t_dat") >= start) & (pl.col("t_dat") < as_of))
                          .group_by("article_id").agg(pl.len()).iter_rows())
            top = best_sellers(history, as_of, self.popular_days, self.n_popular)
            self._popular_counts[as_of] = (counts, top)
            if len(self._popular_counts) > POPULAR_DAYS_KEPT:
                old, _ = self._popular_counts.popitem(last=False)
                self._popular.pop(old, None)
            found = self._popular[as_of] = [a for a in top if a in self._article_pos]
        return found

    def _index_for(self, as_of: date) -> CandidateIndex:
        if not self.has_prior or self._history is None:
            return self.index
        if self._dated_index is None or self._dated_index[0] != as_of:
            index = super()._index_for(as_of)
            self._prior_counts = self._counts_behind(as_of, index)
        return self._dated_index[1]

    def _counts_behind(self, as_of: date, index: CandidateIndex) -> _PriorCounts | None:
        """The counts the prior column of `index` (just built for `as_of`) came from, or
        None when recomputing the column from them does not give it bit for bit."""
        prior = self.model.prior
        end = as_of - timedelta(days=1)
        start = end - timedelta(days=prior.days - 1)
        window = self.history.filter(pl.col("t_dat").is_between(start, end) & (pl.col("t_dat") < as_of))
        counts = np.zeros(len(self.index), dtype=np.int64)
        for article, n in window.group_by("article_id").agg(pl.len()).iter_rows():
            pos = self._article_pos.get(article)
            if pos is not None:
                counts[pos] = n
        cat = pl.DataFrame({"article_id": self.index.article_ids.cast(pl.String)})
        old = pl.DataFrame({"article_id": prior.article_ids, "log_q": prior.log_q})
        log_q = (cat.join(old, on="article_id", how="left", maintain_order="left")["log_q"]
                 .fill_null(prior.default_log_q).to_numpy())
        found = _PriorCounts(as_of, start, end, counts, window.height, log_q, prior.smoothing)
        if not np.array_equal(found.column(), index.embeddings[:, -1]):
            return None
        return found

    # -- purchases -----------------------------------------------------------------------------
    def add_purchases(self, rows: pl.DataFrame) -> None:
        """Count purchases (t_dat, article_id) in the cached days' best sellers and prior."""
        if self._history is None or rows.height == 0:
            return
        schema = self._history.schema
        if rows.schema.get("t_dat") == schema["t_dat"] and rows.schema.get("article_id") == schema["article_id"]:
            new = rows[["t_dat", "article_id"]]
        else:
            new = rows.select(pl.col("t_dat").cast(schema["t_dat"]), pl.col("article_id").cast(schema["article_id"]))
        self._unmerged.append(new)
        if len(self._unmerged) >= MERGE_EVERY:
            self.history  # noqa: B018 - join them: a frame per purchase costs ~3 KB
        days, articles = new["t_dat"].to_list(), new["article_id"].to_list()
        self._count_popular(days, articles)
        self._count_prior(days, articles)

    def _count_popular(self, days: list[date], articles: list[str]) -> None:
        n = self.n_popular
        for as_of, (counts, top) in self._popular_counts.items():
            start = as_of - timedelta(days=self.popular_days)
            changed = False
            for d, a in zip(days, articles):
                if not start <= d < as_of:
                    continue
                counts[a] = counts.get(a, 0) + 1
                if a in top or len(top) < n or (-counts[a], a) < (-counts[top[-1]], top[-1]):
                    if a not in top:
                        top.append(a)
                    top.sort(key=lambda x: (-counts[x], x))
                    del top[n:]
                    changed = True
            if changed:
                self._popular[as_of] = [a for a in top if a in self._article_pos]

    def _count_prior(self, days: list[date], articles: list[str]) -> None:
        if self._dated_index is None:
            return
        state = self._prior_counts
        if state is None or state.as_of != self._dated_index[0]:
            self._dated_index = None  # not followable: rebuilt on next use (the offline way)
            return
        changed = False
        for d, a in zip(days, articles):
            if state.start <= d <= state.end:
                state.total += 1
                pos = self._article_pos.get(a)
                if pos is not None:
                    state.counts[pos] += 1
                changed = True
        if changed:
            _set_last_column(self._dated_index[1], state.column())


def _set_last_column(index: CandidateIndex, column: np.ndarray) -> None:
    """Write the prior column into the index's embeddings and FAISS's copy of them."""
    index.embeddings[:, -1] = column
    flat = index.index
    n, d = flat.ntotal, flat.d
    stored = faiss.rev_swig_ptr(flat.get_xb(), n * d).reshape(n, d)  # a view of FAISS's storage
    stored[:, -1] = column
