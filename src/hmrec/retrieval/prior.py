"""Popularity prior: what is selling NOW, added to the two-tower score as one extra dimension.

Why: fashion demand moves fast (launches, selling windows, seasons), and the towers see
no time except the month: trained on two years, an article's embedding encodes its
average appeal, not whether it is on sale this week. In-batch softmax training without
logQ correction learns log P(item | customer) - log q(item) (taste relative to training
popularity q); with logQ correction it learns log P(item | customer), i.e. taste + the
training-period popularity. Either way, replacing the training popularity by the
current one gives the score we want:

    score(u, i) = <query_u, item_i> + b_i,   b_i = log p_recent(i) - [log q_train(i) if logQ-trained]

with p_recent the article's share of sales in the last ``days`` days (additively
smoothed over the catalogue, so unseen articles get a finite, low prior). Appending b_i
to item embeddings and a constant 1 to query embeddings keeps the score a plain inner
product, so FAISS, the registry's query/candidate models and serving need no change.
The prior is data, not weights: refresh it (``PopularityPrior.fit``) when new sales
arrive, without retraining.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import polars as pl

from hmrec.retrieval.best_sellers import best_seller_counts


@dataclass
class PopularityPrior:
    """Per-article additive score bias ``log p_recent - log q_train`` (see module doc).

    Arrays are aligned with ``article_ids``; articles the prior does not list get the
    ``default_*`` values. ``log_q`` is all zeros for a model trained without logQ correction.
    """

    article_ids: pl.Series
    log_recent: np.ndarray
    log_q: np.ndarray
    default_log_recent: float
    default_log_q: float
    days: int
    smoothing: float
    as_of: date | None
    _lookup: pl.DataFrame | None = None

    @property
    def bias(self) -> np.ndarray:
        return (self.log_recent - self.log_q).astype(np.float32)

    @property
    def default(self) -> float:
        return self.default_log_recent - self.default_log_q

    @staticmethod
    def _recent(
        transactions: pl.DataFrame, cat: pl.DataFrame, days: int, smoothing: float, as_of: date | None
    ) -> tuple[np.ndarray, float, date]:
        end = as_of if as_of is not None else transactions["t_dat"].max()
        if end is None:
            raise ValueError("popularity prior: no transactions to compute it from")
        # the `days` days up to and including `end`
        recent = best_seller_counts(transactions, end + timedelta(days=1), days).select(
            pl.col("article_id").cast(pl.String), pl.col("sales").alias("recent"))
        denom = float(recent["recent"].sum()) + smoothing * cat.height
        joined = cat.join(recent, on="article_id", how="left", maintain_order="left").fill_null(0)
        log_recent = np.log((joined["recent"].to_numpy().astype(np.float64) + smoothing) / denom)
        return log_recent, float(np.log(smoothing / denom)), end

    @classmethod
    def fit(
        cls,
        transactions: pl.DataFrame,
        catalogue_ids: pl.Series,
        days: int = 7,
        smoothing: float = 0.1,
        train_df: pl.DataFrame | None = None,
        as_of: date | None = None,
    ) -> "PopularityPrior":
        """Prior from the ``days`` days of ``transactions`` up to ``as_of`` (default: their last day).

        ``train_df``: the training split of a logQ-trained model, whose article shares
        (log q, as the trainer computes them: count, at least 1, over rows) are subtracted;
        None for a model trained without logQ correction.
        """
        if days < 1 or smoothing <= 0:
            raise ValueError(f"popularity prior needs days >= 1 and smoothing > 0, got {days}, {smoothing}")
        cat = pl.DataFrame({"article_id": catalogue_ids.cast(pl.String)}).unique(maintain_order=True)
        log_recent, default_recent, end = cls._recent(transactions, cat, days, smoothing, as_of)
        log_q = np.zeros(cat.height)
        default_q = 0.0
        if train_df is not None:
            total = float(max(train_df.height, 1))
            counts = train_df.select(pl.col("article_id").cast(pl.String)).group_by("article_id").agg(pl.len().alias("n"))
            tc = cat.join(counts, on="article_id", how="left", maintain_order="left")
            log_q = np.log(np.maximum(tc["n"].fill_null(0).to_numpy().astype(np.float64), 1.0) / total)
            default_q = float(np.log(1.0 / total))
        return cls(cat["article_id"], log_recent, log_q, default_recent, default_q, days, smoothing, end)

    def refresh(
        self, transactions: pl.DataFrame, catalogue_ids: pl.Series | None = None, as_of: date | None = None
    ) -> "PopularityPrior":
        """The same prior over the latest ``days`` of ``transactions`` (log q kept; model unchanged)."""
        ids = self.article_ids if catalogue_ids is None else catalogue_ids.cast(pl.String)
        cat = pl.DataFrame({"article_id": ids}).unique(maintain_order=True)
        log_recent, default_recent, end = self._recent(transactions, cat, self.days, self.smoothing, as_of)
        old = pl.DataFrame({"article_id": self.article_ids, "log_q": self.log_q})
        log_q = cat.join(old, on="article_id", how="left", maintain_order="left")["log_q"].fill_null(self.default_log_q)
        return PopularityPrior(
            cat["article_id"], log_recent, log_q.to_numpy(), default_recent, self.default_log_q, self.days, self.smoothing, end
        )

    def lookup(self, article_ids: pl.Series) -> np.ndarray:
        """Bias of each article id (float32); ``default`` for articles the prior does not list."""
        if self._lookup is None:
            self._lookup = pl.DataFrame({"value": self.article_ids, "bias": self.bias})
        out = article_ids.cast(pl.String).replace_strict(
            self._lookup["value"], self._lookup["bias"], default=self.default, return_dtype=pl.Float32
        )
        return np.array(out.to_numpy(), dtype=np.float32)

    # ---- persistence (the model folder writes these) --------------------------------------
    def to_json(self) -> dict:
        return {
            "days": self.days,
            "smoothing": self.smoothing,
            "default_log_recent": self.default_log_recent,
            "default_log_q": self.default_log_q,
            "as_of": self.as_of.isoformat() if self.as_of is not None else None,
        }

    def to_frame(self) -> pl.DataFrame:
        return pl.DataFrame({"article_id": self.article_ids, "log_recent": self.log_recent, "log_q": self.log_q})

    @classmethod
    def from_parts(cls, meta: dict, frame: pl.DataFrame) -> "PopularityPrior":
        as_of = date.fromisoformat(meta["as_of"]) if meta.get("as_of") else None
        return cls(
            frame["article_id"].cast(pl.String),
            frame["log_recent"].to_numpy().astype(np.float64),
            frame["log_q"].to_numpy().astype(np.float64),
            float(meta["default_log_recent"]),
            float(meta["default_log_q"]),
            int(meta["days"]),
            float(meta["smoothing"]),
            as_of,
        )


