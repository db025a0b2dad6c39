"""Retrieval metrics, computed exactly against the whole catalogue (docs/metrics.md).

Everything is derived from *ranks*: the 0-based position of a target article in a
query's ranking of the full catalogue (ties broken by catalogue position, the order a
stable sort gives). From ranks:

- top-K accuracy: per evaluation ROW (customer, purchased article, with its own request
  context), 1 if rank < K; averaged over rows (the Hopsworks H&M tutorial's "top-100 accuracy").
- per-customer Recall@K, Precision@K, NDCG@K (binary relevance) and MRR over the
  distinct articles each customer bought in the window (the formulas: list_metrics.py),
  scored with one query per customer (its earliest row in the window, i.e. the request at the start of the
  window); averaged over customers with at least one purchase. MRR uses the full
  ranking (no cut-off).

Scoring is brute force against every catalogue item: in a C kernel that keeps the
scores in registers (native_ranks.py), or where it cannot be built, in chunks (queries x
catalogue) so memory stays bounded.
Baselines on the same split: global popularity (last week of training, ties broken by
all-time counts) and random (a uniformly random ranking per query).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import polars as pl
import torch

from hmrec.retrieval import native_ranks
from hmrec.retrieval.best_sellers import best_seller_counts
from hmrec.retrieval.list_metrics import per_query_metrics, sorted_groups

#: Upper bound on the number of scores held at once while ranking (64 MB of fp32).
MAX_CHUNK_ELEMENTS = 1 << 24


@torch.no_grad()
def ranks_of_targets(
    query_emb: np.ndarray | torch.Tensor,
    item_emb: np.ndarray | torch.Tensor,
    query_index: np.ndarray,
    target_item: np.ndarray,
    max_chunk_elements: int = MAX_CHUNK_ELEMENTS,
    native: bool | None = None,
) -> np.ndarray:
    """Rank of ``target_item[t]`` in the full ranking of query ``query_index[t]``.

    rank = #{j : s_j > s_t} + #{j < t : s_j == s_t}; 0 is the top. Float32 embeddings
    are ranked by the C kernel (native_ranks.py) when it can be built (``native=None``),
    else by chunked PyTorch/NumPy scoring; ``native`` True/False forces one path.
    """
    q = torch.as_tensor(query_emb)
    items = torch.as_tensor(item_emb)
    if q.ndim != 2 or items.ndim != 2 or q.shape[1] != items.shape[1]:
        raise ValueError(f"embedding shapes do not match: queries {tuple(q.shape)}, items {tuple(items.shape)}")
    n_items = items.shape[0]
    qi = torch.from_numpy(np.array(query_index, dtype=np.int64))
    ti = torch.from_numpy(np.array(target_item, dtype=np.int64))
    if len(ti) and (int(ti.min()) < 0 or int(ti.max()) >= n_items):
        raise ValueError(f"target item positions must lie in [0, {n_items})")
    if len(qi) and (int(qi.min()) < 0 or int(qi.max()) >= q.shape[0]):
        raise ValueError(f"query positions must lie in [0, {q.shape[0]})")
    fp32 = q.dtype == torch.float32 and items.dtype == torch.float32
    if native is None:
        native = fp32 and len(ti) > 0 and native_ranks.available(items.shape[1])
    if native:
        return native_ranks.target_ranks(q.numpy(), items.numpy(), qi.numpy(), ti.numpy())
    q = q.to(items.dtype)
    out = np.empty(len(ti), dtype=np.int64)
    chunk = max(1, max_chunk_elements // max(n_items, 1))
    positions = np.arange(n_items)
    items_t = items.T.contiguous()
    tgt_all = ti.numpy()
    for s in range(0, len(ti), chunk):
        e = min(len(ti), s + chunk)
        tgt = tgt_all[s:e]
        scores = (q.index_select(0, qi[s:e]) @ items_t).numpy()
        own = scores[np.arange(e - s), tgt][:, None]
        rank = np.count_nonzero(scores > own, axis=1)  # numpy's count is far faster than torch's bool sum
        eq = scores == own
        tied = np.count_nonzero(eq, axis=1) > 1
        if tied.any():
            rows = np.flatnonzero(tied)
            rank[rows] += np.count_nonzero(eq[rows] & (positions[None, :] < tgt[rows, None]), axis=1)
        out[s:e] = rank
    return out


def top_k_accuracy(ranks: np.ndarray, ks: tuple[int, ...]) -> dict[str, float]:
    """Share of rows whose target is in the top K, for each K."""
    ranks = np.asarray(ranks)
    if ranks.size == 0:
        return {f"top_{k}_accuracy": float("nan") for k in ks}
    return {f"top_{k}_accuracy": float(np.mean(ranks < k)) for k in ks}


def random_ranks(query_index: np.ndarray, n_items: int, seed: int) -> np.ndarray:
    """Ranks under a uniformly random ranking per query: distinct random positions per query."""
    qi = np.asarray(query_index, dtype=np.int64)
    rng = np.random.default_rng(seed)
    out = np.empty(qi.size, dtype=np.int64)
    order, starts = sorted_groups(qi)
    sizes = np.diff(starts)
    single = np.empty(qi.size, dtype=bool)
    single[order] = np.repeat(sizes == 1, sizes)
    out[single] = rng.integers(0, n_items, size=int(single.sum()))
    for g in np.flatnonzero(sizes > 1):  # ascending query, rows in their order
        group = order[starts[g]:starts[g + 1]]
        out[group] = rng.choice(n_items, size=group.size, replace=False)
    return out


# ---------------------------------------------------------------------------------------
# Evaluation splits built from feature-view frames
# ---------------------------------------------------------------------------------------


@dataclass
class EvalSplit:
    """What the metrics need from one evaluation window.

    rows: the window's rows (raw query features), one query per row (top-K accuracy);
    row_target: catalogue position of each row's article;
    customers: one raw row per customer (earliest in the window), sorted by customer_id;
    pair_customer / pair_target: distinct (customer, article) pairs as
    (index into ``customers``, catalogue position).
    """

    rows: pl.DataFrame
    row_target: np.ndarray
    customers: pl.DataFrame
    pair_customer: np.ndarray
    pair_target: np.ndarray
    n_items: int


def subsample_split(split: EvalSplit, max_rows: int, seed: int) -> EvalSplit:
    """The split restricted to a seeded random subset of customers with about ``max_rows`` rows.

    Used for per-epoch model selection on big validation windows; the final metrics use
    the whole split.
    """
    if split.rows.height <= max_rows:
        return split
    n_cust = split.customers.height
    keep_share = max_rows / split.rows.height
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(n_cust, size=max(1, int(n_cust * keep_share)), replace=False))
    kept_ids = split.customers["customer_id"].gather(keep)
    row_mask = split.rows["customer_id"].is_in(kept_ids.implode()).to_numpy()
    new_index = np.full(n_cust, -1, dtype=np.int64)
    new_index[keep] = np.arange(len(keep))
    pair_mask = new_index[split.pair_customer] >= 0
    return EvalSplit(
        rows=split.rows.filter(pl.Series(row_mask)),
        row_target=split.row_target[row_mask],
        customers=split.customers[keep],
        pair_customer=new_index[split.pair_customer[pair_mask]],
        pair_target=split.pair_target[pair_mask],
        n_items=split.n_items,
    )


def catalogue_positions(article_ids: pl.Series, catalogue_ids: pl.Series, what: str = "evaluation split") -> np.ndarray:
    """Positions of ``article_ids`` in the catalogue; a clear error for unknown articles."""
    cat = catalogue_ids.cast(pl.String)
    if cat.n_unique() != cat.len():
        raise ValueError("catalogue: column 'article_id' has duplicate values")
    lookup = pl.DataFrame({"value": cat, "pos": np.arange(cat.len(), dtype=np.int64)})
    pos = article_ids.cast(pl.String).replace_strict(lookup["value"], lookup["pos"], default=-1, return_dtype=pl.Int64)
    arr = pos.to_numpy()
    bad = np.flatnonzero(arr < 0)
    if bad.size:
        r = int(bad[0])
        raise ValueError(
            f"{what}: column 'article_id', row {r}: value {article_ids[r]!r} is not in the article catalogue "
            f"({bad.size} such rows)"
        )
    return arr


def make_eval_split(df: pl.DataFrame, catalogue_ids: pl.Series, what: str = "evaluation split") -> EvalSplit:
    """Prepare rows, per-customer queries and relevant pairs of an evaluation window."""
    for col in ("customer_id", "article_id", "t_dat"):
        if col not in df.columns:
            raise ValueError(f"{what}: column {col!r} is missing (has: {', '.join(df.columns)})")
    rows = df.with_columns(pl.col("customer_id").cast(pl.String), pl.col("article_id").cast(pl.String))
    row_target = catalogue_positions(rows["article_id"], catalogue_ids, what)
    indexed = rows.with_row_index("_row")
    customers = (
        indexed.sort(["customer_id", "t_dat", "_row"]).unique("customer_id", keep="first", maintain_order=True)
    )
    cust_pos = customers.select("customer_id").with_row_index("_cust")
    pairs = (
        indexed.select("customer_id", "article_id", "_row")
        .with_columns(pl.Series("_target", row_target))
        .unique(["customer_id", "article_id"], keep="first", maintain_order=True)
        .join(cust_pos, on="customer_id", how="left")
        .sort("_cust", "_target")
    )
    return EvalSplit(
        rows=rows,
        row_target=row_target,
        customers=customers.drop("_row"),
        pair_customer=pairs["_cust"].to_numpy().astype(np.int64),
        pair_target=pairs["_target"].to_numpy().astype(np.int64),
        n_items=catalogue_ids.len(),
    )


def evaluate_embeddings(
    split: EvalSplit,
    row_query_emb: np.ndarray,
    customer_query_emb: np.ndarray,
    item_emb: np.ndarray,
    top_k: tuple[int, ...],
    customer_k: tuple[int, ...],
) -> dict[str, float]:
    """All metrics for a model: dot-product scores of queries against every catalogue item."""
    row_ranks = ranks_of_targets(row_query_emb, item_emb, np.arange(split.rows.height), split.row_target)
    pair_ranks = ranks_of_targets(customer_query_emb, item_emb, split.pair_customer, split.pair_target)
    return {**top_k_accuracy(row_ranks, top_k), **per_query_metrics(split.pair_customer, pair_ranks, customer_k)}


def popularity_scores(train_df: pl.DataFrame, catalogue_ids: pl.Series, days: int = 7) -> np.ndarray:
    """Last-``days`` purchase counts of the training split, ties broken by all-time counts."""
    last = train_df["t_dat"].max()
    if last is None:
        raise ValueError("training split is empty: no popularity baseline")
    # the `days` days up to and including the last day; every article sold, with its all-time total
    counts = best_seller_counts(train_df.select(pl.col("article_id").cast(pl.String), "t_dat"),
                                last + timedelta(days=1), days, all_articles=True)
    cat = pl.DataFrame({"article_id": catalogue_ids.cast(pl.String)})
    joined = cat.join(counts, on="article_id", how="left", maintain_order="left").fill_null(0)
    week = joined["sales"].to_numpy().astype(np.float64)
    total = joined["total"].to_numpy().astype(np.float64)
    return week * (total.max() + 1.0) + total


def evaluate_popularity(
    split: EvalSplit, scores: np.ndarray, top_k: tuple[int, ...], customer_k: tuple[int, ...]
) -> dict[str, float]:
    """Metrics of one global ranking (the same list for every query)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (split.n_items,):
        raise ValueError(f"popularity scores must have one value per catalogue item ({split.n_items}), got {scores.shape}")
    order = np.argsort(-scores, kind="stable")  # ties: catalogue order
    rank_of_item = np.empty(split.n_items, dtype=np.int64)
    rank_of_item[order] = np.arange(split.n_items)
    row_ranks = rank_of_item[split.row_target]
    pair_ranks = rank_of_item[split.pair_target]
    return {**top_k_accuracy(row_ranks, top_k), **per_query_metrics(split.pair_customer, pair_ranks, customer_k)}


def evaluate_random(split: EvalSplit, seed: int, top_k: tuple[int, ...], customer_k: tuple[int, ...]) -> dict[str, float]:
    """Metrics of a uniformly random ranking per query (seeded)."""
    row_ranks = random_ranks(np.arange(split.rows.height), split.n_items, seed)
    pair_ranks = random_ranks(split.pair_customer, split.n_items, seed + 1)
    return {**top_k_accuracy(row_ranks, top_k), **per_query_metrics(split.pair_customer, pair_ranks, customer_k)}
