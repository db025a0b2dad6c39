"""In-memory lookups for the single-request path of the 4-stage recommender.

The batch path builds ranking features with Polars joins over the whole purchase
history (hmrec.ranking.feature_rows): right for 5,000 customers at once, far too slow
for one request (~60 ms, mostly per-call query planning). This module holds the same
facts indexed for one customer at a time:

* each customer's purchases (day, article row), sorted by customer, plus the
  purchases added since (events);
* every article's and customer's ranking attributes, already converted exactly as
  ``hmrec.ranking.model.to_pool`` converts them (categories as strings with nulls
  as ``<NA>``, numbers as floats), so CatBoost sees identical inputs;
* article sales in the 7/28 days before a day, per day asked (kept up to date as
  purchases arrive).

``features_many`` computes, for several customers and their candidate articles, the
same values ``feature_rows`` does (one vectorised pass over the block: a micro-batch
of requests pays NumPy's per-call costs once); ``features`` is its one-customer case.
The tests hold the two paths to equal values and scores.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict

import numpy as np
import pandas as pd
import polars as pl
from catboost import FeaturesData, Pool

from hmrec.features.on_demand import month_cos, month_sin
from hmrec.ranking import (
    ARTICLE_FEATURES,
    CUSTOMER_FEATURES,
    DAYS_SINCE_NEVER,
    INTERACTION_FEATURES,
    TWO_TOWER_SCORE,
)
from hmrec.ranking.dataset import LIST_FEATURES, list_features_of
from hmrec.ranking.model import MISSING_CATEGORY, RankingModel

_EPOCH = dt.date(1970, 1, 1)
_CONTEXT = ("month_sin", "month_cos")
#: Days whose article sales are kept (a service asks for one or two days at a time).
_SALES_CACHE = 8


#: "Never bought" in the last-day arrays of _per_owner.
_NEVER = np.iinfo(np.int64).min


#: Rows from which a block goes to CatBoost as pandas categoricals (CatBoost hashes each
#: distinct category once) instead of FeaturesData (it hashes every cell, ~0.3 us each):
#: measured here, 1,900 rows took 2.9 ms instead of 5.1, 120 rows 2.3 ms instead of 0.7.
PANDAS_MIN_ROWS = 1000


class RankerInputs:
    """The ranker's inputs for a block of rows: numbers, and categories as codes into
    per-column vocabularies (the strings to_pool would give CatBoost)."""

    def __init__(self, num: np.ndarray, cat_codes: np.ndarray, num_names: list[str], cat_names: list[str],
                 vocab: list[np.ndarray], dtypes: list[pd.CategoricalDtype], order: list[str]) -> None:
        self.num = num
        self.cat_codes = cat_codes
        self.num_names = num_names
        self.cat_names = cat_names
        self.vocab = vocab
        self.dtypes = dtypes
        self.order = order

    def __len__(self) -> int:
        return self.num.shape[0]

    def features_data(self) -> FeaturesData:
        """As CatBoost's FeaturesData (categories as UTF-8 bytes)."""
        cat = np.empty(self.cat_codes.shape, dtype=object)
        for j, words in enumerate(self.vocab):
            cat[:, j] = words[self.cat_codes[:, j]]
        return FeaturesData(num_feature_data=self.num, cat_feature_data=cat,
                            num_feature_names=self.num_names, cat_feature_names=self.cat_names)

    def pool(self) -> Pool:
        """A Pool in whichever layout CatBoost reads faster at this size (same values)."""
        if len(self) < PANDAS_MIN_ROWS or not self.cat_names:
            return Pool(self.features_data(), thread_count=1)
        cols: dict[str, object] = {c: self.num[:, j] for j, c in enumerate(self.num_names)}
        for j, c in enumerate(self.cat_names):
            cols[c] = pd.Categorical.from_codes(self.cat_codes[:, j], dtype=self.dtypes[j])
        frame = pd.DataFrame({c: cols[c] for c in self.order}, copy=False)
        return Pool(frame, cat_features=self.cat_names, thread_count=1)


def _per_owner(h_owner: np.ndarray, h_key: np.ndarray, h_day: np.ndarray, c_owner: np.ndarray,
               c_key: np.ndarray, n_keys: int) -> tuple[np.ndarray, np.ndarray]:
    """For each candidate (owner, key): how many of the owner's purchases have that key,
    and the last day of them (_NEVER if none). Keys are small non-negative codes."""
    count = np.zeros(len(c_key), dtype=np.int64)
    last = np.full(len(c_key), _NEVER, dtype=np.int64)
    if len(h_key) == 0 or len(c_key) == 0:
        return count, last
    h = h_owner * n_keys + h_key
    uniq, inv = np.unique(h, return_inverse=True)
    n = np.bincount(inv, minlength=len(uniq))
    latest = np.full(len(uniq), _NEVER, dtype=np.int64)
    np.maximum.at(latest, inv, h_day.astype(np.int64))
    c = c_owner * n_keys + np.where(c_key >= 0, c_key, 0)
    pos = np.minimum(np.searchsorted(uniq, c), len(uniq) - 1)
    hit = (uniq[pos] == c) & (c_key >= 0)
    count[hit] = n[pos[hit]]
    last[hit] = latest[pos[hit]]
    return count, last


def day_number(day: dt.date) -> int:
    return (day - _EPOCH).days


class UnsupportedModel(ValueError):
    """The ranking model uses a feature this path cannot compute (use the batch path)."""


def _codes(values: list) -> np.ndarray:
    """Dense int codes of values (None -> -1), plus a final -1 for the unknown-article row."""
    mapping: dict = {}
    out = np.full(len(values) + 1, -1, dtype=np.int32)
    for i, v in enumerate(values):
        if v is not None:
            out[i] = mapping.setdefault(v, len(mapping))
    return out


def _converted(df: pl.DataFrame, names: list[str], cats: set[str]) -> tuple[np.ndarray, np.ndarray]:
    """Columns as to_pool converts them: categories -> bytes objects, numbers -> float32."""
    cat_names = [c for c in names if c in cats]
    num_names = [c for c in names if c not in cats]
    cat = np.empty((df.height + 1, len(cat_names)), dtype=object)
    for j, c in enumerate(cat_names):
        values = df.select(pl.col(c).cast(pl.String).fill_null(MISSING_CATEGORY))[c].to_list()
        cat[:-1, j] = [v.encode() for v in values]
        cat[-1, j] = MISSING_CATEGORY.encode()  # the row of an unknown key
    num = np.full((df.height + 1, len(num_names)), np.nan, dtype=np.float32)
    for j, c in enumerate(num_names):
        num[:-1, j] = df.select(pl.col(c).cast(pl.Float64))[c].to_numpy().astype(np.float32)
    return cat, num


class OnlineLookups:
    """Per-customer history, per-article/customer attributes and sales counts, in memory."""

    def __init__(self, articles: pl.DataFrame, customers: pl.DataFrame, history: pl.DataFrame,
                 ranker: RankingModel, customer_codes: dict[str, int] | None = None) -> None:
        """`customer_codes`: customer_id -> row of `customers` (ids unique), shared with the
        caller to keep one copy of a million-entry dict; built here when not given."""
        names = list(ranker.feature_names_)
        cats = set(ranker.cat_features_)
        self.kind = ranker.kind
        self.model = ranker.model_
        cust_cols = [c for c in CUSTOMER_FEATURES if c in customers.columns]
        art_cols = [c for c in ARTICLE_FEATURES if c in articles.columns]
        known = (set(_CONTEXT) | set(cust_cols) | set(art_cols) | set(INTERACTION_FEATURES) | {TWO_TOWER_SCORE}
                 | set(LIST_FEATURES))
        unknown = [c for c in names if c not in known]
        if unknown:
            raise UnsupportedModel(f"ranking features {unknown} have no single-request definition")
        self.num_names = [c for c in names if c not in cats]
        self.cat_names = [c for c in names if c in cats]
        self.cust_names = [c for c in names if c in cust_cols]
        self.art_names = [c for c in names if c in art_cols]

        # articles: attributes (converted), interaction keys, position in the FAISS index
        self.article_ids: list[str] = articles["article_id"].to_list()
        self.article_row = {a: i for i, a in enumerate(self.article_ids)}
        self.n_articles = len(self.article_ids)
        self.art_cat, self.art_num = _converted(articles, self.art_names, cats)
        self.art_product = _codes(articles["product_code"].to_list())
        self.art_index_group = _codes(articles["index_group_name"].to_list())
        self.art_garment = _codes(articles["garment_group_name"].to_list())

        # customers: attributes (converted); the last row is "unknown" (all null)
        unique = customers.unique("customer_id", keep="first", maintain_order=True)
        if customer_codes is None or unique.height != customers.height:
            customer_codes = {c: i for i, c in enumerate(unique["customer_id"].to_list())}
        self.codes = customer_codes
        self.n_customers = unique.height
        self.cust_cat, self.cust_num = _converted(unique, self.cust_names, cats)
        self._cust_cat_pos = {c: j for j, c in enumerate(c for c in self.cust_names if c in cats)}
        self._cust_num_pos = {c: j for j, c in enumerate(c for c in self.cust_names if c not in cats)}
        self._art_cat_pos = {c: j for j, c in enumerate(c for c in self.art_names if c in cats)}
        self._art_num_pos = {c: j for j, c in enumerate(c for c in self.art_names if c not in cats)}
        # the model's input layout per article, filled once: a request copies its candidates'
        # rows and writes the customer's and the interaction columns into them
        self._cat_rows = np.empty((self.n_articles + 1, len(self.cat_names)), dtype=object)
        for j, c in enumerate(self.cat_names):
            if c in self._art_cat_pos:
                self._cat_rows[:, j] = self.art_cat[:, self._art_cat_pos[c]]
        self._num_rows = np.full((self.n_articles + 1, len(self.num_names)), np.nan, dtype=np.float32)
        for j, c in enumerate(self.num_names):
            if c in self._art_num_pos:
                self._num_rows[:, j] = self.art_num[:, self._art_num_pos[c]]
        self._cust_cat_cols = [(j, self._cust_cat_pos[c]) for j, c in enumerate(self.cat_names)
                               if c in self._cust_cat_pos]
        # categories as codes: per column, its distinct values (bytes, and as a pandas
        # dtype) and each article's / customer's code
        self._order = names
        self._vocab: list[np.ndarray] = []
        self._dtypes: list[pd.CategoricalDtype] = []
        self._cat_code_rows = np.zeros((self.n_articles + 1, len(self.cat_names)), dtype=np.int32)
        self._cust_cat_codes = np.zeros((self.n_customers + 1, len(self._cust_cat_pos)), dtype=np.int32)
        for j, c in enumerate(self.cat_names):
            cust = c in self._cust_cat_pos
            source = self.cust_cat[:, self._cust_cat_pos[c]] if cust else self._cat_rows[:, j]
            words, codes = np.unique(source.astype(bytes), return_inverse=True)
            self._vocab.append(np.array([bytes(w) for w in words], dtype=object))
            self._dtypes.append(pd.CategoricalDtype([bytes(w).decode() for w in words]))
            if cust:
                self._cust_cat_codes[:, self._cust_cat_pos[c]] = codes
            else:
                self._cat_code_rows[:, j] = codes
        self._request_num_cols = [(j, c) for j, c in enumerate(self.num_names) if c not in self._art_num_pos]

        # history sorted by customer code: day numbers and article rows (-1: not in the
        # catalogue); customers with purchases but no attributes get codes after the others
        rows = pl.DataFrame({"article_id": self.article_ids,
                             "_a": pl.Series(range(self.n_articles), dtype=pl.Int32)})
        code_frame = pl.DataFrame({"customer_id": unique["customer_id"],
                                   "_c": pl.Series(range(self.n_customers), dtype=pl.Int64)})
        h = (history.select("customer_id", pl.col("t_dat").cast(pl.Int32).alias("_d"), "article_id")
             .join(rows, on="article_id", how="left", maintain_order="left")
             .join(code_frame, on="customer_id", how="left", maintain_order="left")
             .with_columns(pl.col("_a").fill_null(-1)))
        others = h.filter(pl.col("_c").is_null())["customer_id"].unique(maintain_order=True).to_list()
        self.other_codes = {c: self.n_customers + i for i, c in enumerate(others)}
        if others:
            extra = pl.DataFrame({"customer_id": others, "_o": pl.Series(list(self.other_codes.values()),
                                                                         dtype=pl.Int64)})
            h = (h.join(extra, on="customer_id", how="left", maintain_order="left")
                 .with_columns(pl.col("_c").fill_null(pl.col("_o"))).drop("_o"))
        h = h.sort("_c", maintain_order=True)
        self.days = h["_d"].to_numpy().astype(np.int32)
        self.arts = h["_a"].to_numpy().astype(np.int32)
        sorted_codes = h["_c"].to_numpy()
        all_codes = np.arange(self.n_customers + len(others))
        self.starts = np.searchsorted(sorted_codes, all_codes, side="left")
        self.ends = np.searchsorted(sorted_codes, all_codes, side="right")
        self.extra: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.extra_days: list[int] = []
        self.extra_arts: list[int] = []
        self._sales: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ updates
    def add(self, days: list[int], customer_ids: list[str], article_ids: list[str]) -> None:
        """Purchases that arrived after the store was read (day numbers)."""
        with self._lock:
            for d, c, a in zip(days, customer_ids, article_ids):
                row = self.article_row.get(a, -1)
                old_d, old_a = self.extra.get(c, (np.zeros(0, np.int32), np.zeros(0, np.int32)))
                # copy-on-write: a request reading the old arrays keeps a consistent view
                self.extra[c] = (np.append(old_d, np.int32(d)), np.append(old_a, np.int32(row)))
                self.extra_days.append(d)
                self.extra_arts.append(row)
                if row >= 0:
                    for at, (s7, s28) in self._sales.items():
                        if at - 7 <= d < at:
                            s7[row] += 1
                        if at - 28 <= d < at:
                            s28[row] += 1

    # ------------------------------------------------------------------ reads
    def history_of(self, customer_id: str) -> tuple[np.ndarray, np.ndarray]:
        """(days, article rows) of every purchase of a customer (store + events)."""
        code = self.codes.get(customer_id)
        if code is None:
            code = self.other_codes.get(customer_id)
        if code is None:
            d, a = self.days[:0], self.arts[:0]
        else:
            d, a = self.days[self.starts[code]:self.ends[code]], self.arts[self.starts[code]:self.ends[code]]
        more = self.extra.get(customer_id)
        if more is not None:
            d, a = np.concatenate([d, more[0]]), np.concatenate([a, more[1]])
        return d, a

    def sales(self, at: int) -> tuple[np.ndarray, np.ndarray]:
        """Article sales (per article row) in [at-7, at) and [at-28, at)."""
        with self._lock:
            found = self._sales.get(at)
            if found is not None:
                self._sales.move_to_end(at)
                return found
            days = np.concatenate([self.days, np.asarray(self.extra_days, dtype=np.int32)])
            arts = np.concatenate([self.arts, np.asarray(self.extra_arts, dtype=np.int32)])
            out = []
            for w in (7, 28):
                m = (days >= at - w) & (days < at) & (arts >= 0)
                out.append(np.bincount(arts[m], minlength=self.n_articles + 1).astype(np.int32))
            self._sales[at] = (out[0], out[1])
            if len(self._sales) > _SALES_CACHE:
                self._sales.popitem(last=False)
            return self._sales[at]

    def features(self, customer_id: str, at: dt.date, cand_rows: np.ndarray,
                 pair_scores: np.ndarray | None = None) -> RankerInputs:
        """The ranker's inputs for one customer's candidates (article rows), as of `at`;
        `pair_scores`: the two-tower score of each candidate (the retrieval's score_pairs)."""
        return self.features_many([customer_id], at, [cand_rows], pair_scores)

    def features_many(self, customer_ids: list[str], at: dt.date, cand_rows: list[np.ndarray],
                      pair_scores: np.ndarray | None = None) -> RankerInputs:
        """The ranker's inputs for several customers' candidates at once (rows: the first
        customer's candidates, then the next one's, ...), vectorised over the whole block:
        a micro-batch pays NumPy's per-call cost once, not once per customer.
        `pair_scores`: one per row, in the same order."""
        at_n = day_number(at)
        n_cust = len(customer_ids)
        sizes = np.fromiter((len(r) for r in cand_rows), dtype=np.int64, count=n_cust)
        rows = np.concatenate(cand_rows).astype(np.int64) if n_cust else np.zeros(0, np.int64)
        owner = np.repeat(np.arange(n_cust, dtype=np.int64), sizes)  # customer of each row

        # the customers' purchases before `at` (catalogue articles only), tagged by customer
        totals = np.zeros(n_cust, dtype=np.int64)  # every purchase counts towards the total
        h_days, h_rows, h_owner = [], [], []
        for i, c in enumerate(customer_ids):
            d, a = self.history_of(c)
            past = d < at_n
            totals[i] = int(past.sum())
            keep = past & (a >= 0)
            h_days.append(d[keep])
            h_rows.append(a[keep].astype(np.int64))
            h_owner.append(np.full(int(keep.sum()), i, dtype=np.int64))
        hd = np.concatenate(h_days) if h_days else np.zeros(0, np.int32)
        ha = np.concatenate(h_rows) if h_rows else np.zeros(0, np.int64)
        ho = np.concatenate(h_owner) if h_owner else np.zeros(0, np.int64)

        art_n, art_last = _per_owner(ho, ha, hd, owner, rows, self.n_articles + 1)
        h_prod, c_prod = self.art_product[ha].astype(np.int64), self.art_product[rows].astype(np.int64)
        ok = h_prod >= 0
        prod_n, prod_last = _per_owner(ho[ok], h_prod[ok], hd[ok], owner, c_prod, len(self.art_product))
        prod_n[c_prod < 0] = 0
        prod_last[c_prod < 0] = _NEVER
        tot = totals[owner]
        shares = []
        for codes in (self.art_index_group, self.art_garment):
            h_g, c_g = codes[ha].astype(np.int64), codes[rows].astype(np.int64)
            ok = h_g >= 0
            n, _ = _per_owner(ho[ok], h_g[ok], hd[ok], owner, c_g, len(codes))
            share = np.zeros(len(rows), dtype=np.float64)
            has = (tot > 0) & (c_g >= 0)
            share[has] = n[has] / tot[has]
            shares.append(share.astype(np.float32))

        s7, s28 = self.sales(at_n)
        cols: dict[str, np.ndarray | float] = {
            "customer_article_purchases": art_n.astype(np.float32),
            "customer_product_purchases": prod_n.astype(np.float32),
            "days_since_article_purchase": np.where(art_last == _NEVER, DAYS_SINCE_NEVER,
                                                    at_n - art_last).astype(np.float32),
            "days_since_product_purchase": np.where(prod_last == _NEVER, DAYS_SINCE_NEVER,
                                                    at_n - prod_last).astype(np.float32),
            "customer_total_purchases": tot.astype(np.float32),
            "customer_index_group_share": shares[0],
            "customer_garment_group_share": shares[1],
            "article_sales_7d": s7[rows].astype(np.float32),
            "article_sales_28d": s28[rows].astype(np.float32),
        }
        needs_list = any(c in self.num_names for c in LIST_FEATURES)
        if TWO_TOWER_SCORE in self.num_names or needs_list:
            if pair_scores is None:
                raise ValueError(f"the ranking model needs {TWO_TOWER_SCORE}: pass pair_scores")
            cols[TWO_TOWER_SCORE] = np.asarray(pair_scores, dtype=np.float32)
        if needs_list:  # each customer's place in their own candidate list
            bounds = np.concatenate([[0], np.cumsum(sizes)])
            for c in LIST_FEATURES:
                cols[c] = np.empty(len(rows), dtype=np.float32)
            for i in range(n_cust):
                part = slice(int(bounds[i]), int(bounds[i + 1]))
                for c, values in list_features_of(cols[TWO_TOWER_SCORE][part]).items():
                    cols[c][part] = values
        cols["month_sin"] = month_sin(at)
        cols["month_cos"] = month_cos(at)
        crow = np.fromiter((self.codes.get(c, -1) for c in customer_ids), dtype=np.int64,
                           count=n_cust)[owner]  # -1: the all-null row
        for c, j in self._cust_num_pos.items():
            cols[c] = self.cust_num[crow, j]
        num = self._num_rows[rows]
        for j, c in self._request_num_cols:
            num[:, j] = cols[c]
        codes = self._cat_code_rows[rows]
        for j, k in self._cust_cat_cols:
            codes[:, j] = self._cust_cat_codes[crow, k]
        return RankerInputs(num, codes, self.num_names, self.cat_names, self._vocab, self._dtypes, self._order)

    def predict(self, data: RankerInputs) -> np.ndarray:
        """Scores as RankingModel.predict gives them (one thread)."""
        pool = data.pool()
        if self.kind == "classifier":
            return self.model.predict_proba(pool, thread_count=1)[:, 1]
        return np.asarray(self.model.predict(pool, thread_count=1), dtype=float)
