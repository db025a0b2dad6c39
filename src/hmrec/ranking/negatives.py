"""Negative (customer, article) rows for the ranking dataset.

Two sources, chosen by ``RANKING_NEGATIVES``:

* ``random`` — articles drawn uniformly from the catalogue, 10 per positive (the
  Hopsworks H&M tutorial's ratio). Easy negatives: a ranker trained on them mostly learns
  popularity, and is kept for comparison.
* ``retrieval`` — what the candidate generator (the two-tower model) retrieves for
  the customer at that time but the customer did not buy: the hard negatives the
  ranker actually has to tell apart from purchases at serving time (dataset.py builds
  them from ``candidate_frame``).

Both are built at the same ``as_of`` as the customer's positives, and neither ever
equals an article the customer bought in the window.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date

import numpy as np
import polars as pl

#: candidates(customer_ids, as_of, k) -> {customer_id: [(article_id, score), ...]} best first.
CandidateFn = Callable[[list[str], date, int], dict[str, list[tuple[str, float]]]]

_KEYS = ("customer_id", "article_id", "as_of")
_MAX_REJECTION_ROUNDS = 50


def _check_positives(positives: pl.DataFrame) -> None:
    missing = [c for c in _KEYS if c not in positives.columns]
    if missing:
        raise ValueError(f"positives lacks column(s) {missing}; it has {positives.columns}")


def random_negatives(
    positives: pl.DataFrame,
    catalogue: Sequence[str] | pl.Series,
    per_positive: int = 10,
    seed: int = 42,
) -> pl.DataFrame:
    """Uniform negatives: `per_positive` per positive row, distinct within a customer and date.

    positives: customer_id, article_id, as_of — the customer's purchases in the window
    (duplicates are ignored). For each (customer_id, as_of) group with n positives,
    draws per_positive * n distinct catalogue articles that the customer did not buy
    in that group, capped at what the catalogue leaves (only reachable with a tiny
    catalogue). Deterministic for a given seed and input set (order does not matter).
    Returns customer_id, article_id, as_of.
    """
    _check_positives(positives)
    if per_positive < 0:
        raise ValueError(f"per_positive must be >= 0, got {per_positive}")
    items = pl.Series("article_id", catalogue, dtype=pl.String).unique().sort()
    if items.null_count():
        raise ValueError("catalogue contains a null article_id")
    n_items = items.len()
    pos = positives.select(_KEYS).unique()
    empty = pl.DataFrame(schema={"customer_id": pl.String, "article_id": pl.String, "as_of": pl.Date})
    if pos.height == 0 or per_positive == 0 or n_items == 0:
        return empty

    codes = pl.DataFrame({"article_id": items, "_code": np.arange(n_items, dtype=np.int64)})
    groups = (
        pos.group_by("customer_id", "as_of")
        .agg(pl.len().alias("n_pos"))
        .sort("customer_id", "as_of")
        .with_row_index("_gid")
    )
    pos = pos.join(groups.select("customer_id", "as_of", "_gid"), on=["customer_id", "as_of"])
    bought = pos.join(codes, on="article_id", how="inner")
    n_bought = bought.group_by("_gid").agg(pl.len().alias("n_bought"))
    groups = groups.join(n_bought, on="_gid", how="left").with_columns(
        pl.col("n_bought").fill_null(0)
    ).sort("_gid")
    n_neg = np.minimum(
        groups["n_pos"].to_numpy().astype(np.int64) * per_positive,
        n_items - groups["n_bought"].to_numpy().astype(np.int64),
    )
    gid = np.repeat(groups["_gid"].to_numpy().astype(np.int64), n_neg)
    bought_keys = np.sort(
        bought["_gid"].to_numpy().astype(np.int64) * n_items + bought["_code"].to_numpy()
    )

    rng = np.random.default_rng(seed)
    draw = rng.integers(0, n_items, size=gid.size, dtype=np.int64)
    todo = np.arange(gid.size)
    for _ in range(_MAX_REJECTION_ROUNDS):
        keys = gid * n_items + draw
        invalid = np.isin(keys, bought_keys, assume_unique=False)
        _, first = np.unique(keys, return_index=True)
        duplicate = np.ones(keys.size, dtype=bool)
        duplicate[first] = False
        todo = np.flatnonzero(invalid | duplicate)
        if todo.size == 0:
            break
        draw[todo] = rng.integers(0, n_items, size=todo.size, dtype=np.int64)
    if todo.size:  # nearly saturated groups: sample their complement exactly
        for g in np.unique(gid[todo]):
            at = np.flatnonzero(gid == g)
            taken = bought_keys[(bought_keys >= g * n_items) & (bought_keys < (g + 1) * n_items)]
            free = np.setdiff1d(np.arange(n_items), taken - g * n_items)
            draw[at] = rng.choice(free, size=at.size, replace=False)

    out = pl.DataFrame({"_gid": gid.astype(np.uint32), "_code": draw})
    return (
        out.join(groups.select("_gid", "customer_id", "as_of"), on="_gid", maintain_order="left")
        .join(codes, on="_code", maintain_order="left")
        .select(_KEYS)
    )


def candidate_lists_to_frame(result: dict[str, list[tuple[str, float]]], batch: list[str]) -> pl.DataFrame:
    cust: list[str] = []
    art: list[str] = []
    score: list[float] = []
    for customer in batch:
        listed = result.get(customer, ())
        cust.extend([customer] * len(listed))
        for article, value in listed:
            art.append(article)
            score.append(value)
    return pl.DataFrame(
        {
            "customer_id": pl.Series(cust, dtype=pl.String),
            "article_id": pl.Series(art, dtype=pl.String),
            "retrieval_score": pl.Series(score, dtype=pl.Float32),
        }
    )


def candidate_frame(
    candidates: CandidateFn,
    customer_ids: Sequence[str],
    as_of: date,
    k: int,
    batch_size: int = 20_000,
) -> pl.DataFrame:
    """Call the candidate generator in batches; one row per (customer, candidate).

    Returns customer_id, article_id, as_of, retrieval_score (Float32) and
    retrieval_rank (1 = best: the generator's order, Int32). A candidate listed twice
    keeps its first place. A generator with a ``frame(customer_ids, as_of, k)`` method
    returning customer_id, article_id, retrieval_score rows (each customer's best
    first) is called through it instead: the dict form costs a Python tuple per
    candidate, tens of millions at full scale.
    """
    ids = list(dict.fromkeys(customer_ids))
    fast = getattr(candidates, "frame", None)
    parts = []
    for start in range(0, len(ids), batch_size):
        batch = ids[start : start + batch_size]
        if fast is not None:
            part = fast(batch, as_of, k).select(
                pl.col("customer_id").cast(pl.String),
                pl.col("article_id").cast(pl.String),
                pl.col("retrieval_score").cast(pl.Float32),
            )
        else:
            part = candidate_lists_to_frame(candidates(batch, as_of, k), batch)
        parts.append(part)
    frame = (
        pl.concat(parts)
        if parts
        else pl.DataFrame(
            schema={"customer_id": pl.String, "article_id": pl.String, "retrieval_score": pl.Float32}
        )
    )
    return (
        frame.unique(["customer_id", "article_id"], keep="first", maintain_order=True)
        .with_columns(
            pl.lit(as_of, dtype=pl.Date).alias("as_of"),
            (pl.int_range(pl.len(), dtype=pl.Int32).over("customer_id") + 1).alias("retrieval_rank"),
        )
        .select("customer_id", "article_id", "as_of", "retrieval_score", "retrieval_rank")
    )
