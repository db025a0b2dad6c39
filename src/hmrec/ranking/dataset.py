"""The ranking dataset: labelled (customer, article, as_of) rows with point-in-time features.

How rows are made (and why the Hopsworks H&M tutorial's month leak cannot happen here):

* A ``Window`` [start, end) is one labelling period. Its positives are the distinct
  (customer, article) pairs bought in it; its negatives are drawn for the same
  customers (``negatives.py``). EVERY row of a window, positive or negative, gets
  ``as_of = start``: its features are computed from history strictly before the
  window, and its request context (month_sin, month_cos) is that of ``as_of``. This
  is the serving task exactly — "given what we know at the start of the week, what
  will this customer buy during it?" — and no feature can be filled for one class
  and empty for the other.
* Ranking windows must lie after the retrieval model's training data, otherwise the
  two-tower score is in-sample for positives and the ranker over-trusts it. Pass
  ``retrieval_train_end`` to have that checked.

``feature_rows`` is the one definition of the ranker's inputs; training, evaluation
and serving all call it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import polars as pl

from hmrec.features.on_demand import month_cos, month_sin
from hmrec.ranking.interactions import (
    INTERACTION_FEATURES,
    TWO_TOWER_SCORE,
    PairScorer,
    add_interaction_features,
)
from hmrec.ranking.negatives import CandidateFn, candidate_frame, random_negatives


#: Customer columns used when present in the customers frame.
CUSTOMER_FEATURES: tuple[str, ...] = (
    "age",
    "age_missing",
    "age_group",
    "club_member_status",
    "fashion_news_frequency",
    "FN",
    "Active",
)
#: The article attributes the Hopsworks H&M tutorial's ranking model uses.
ARTICLE_FEATURES: tuple[str, ...] = (
    "product_type_name",
    "product_group_name",
    "graphical_appearance_name",
    "colour_group_name",
    "perceived_colour_value_name",
    "perceived_colour_master_name",
    "department_name",
    "index_name",
    "index_group_name",
    "section_name",
    "garment_group_name",
)
CONTEXT_FEATURES: tuple[str, ...] = ("month_sin", "month_cos")
#: Where a row's two-tower score stands among the rows ranked with it (same customer and
#: as_of): its rank (1 = best; ties share the best rank) and its gap to the best score.
#: A raw dot product means little across customers (their query vectors differ in
#: length); its place in the customer's own list is what "order by two-tower" uses.
LIST_FEATURES: tuple[str, ...] = ("two_tower_rank", "two_tower_gap")
ID_COLUMNS: tuple[str, ...] = ("customer_id", "article_id", "as_of")
LABEL = "label"
NEGATIVE_KINDS = ("retrieval", "random")


@dataclass(frozen=True)
class Window:
    """A labelling period [start, end): purchases in it are positives, features as of start."""

    start: date
    end: date

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError(f"Window end {self.end} must be after start {self.start}")

    @classmethod
    def weeks_before(cls, end: date, n_weeks: int, days: int = 7) -> list[Window]:
        """n consecutive windows of `days` days ending at `end` (exclusive), oldest first."""
        return [
            cls(end - timedelta(days=days * (i + 1)), end - timedelta(days=days * i))
            for i in reversed(range(n_weeks))
        ]


def month_columns(dates: pl.Expr) -> list[pl.Expr]:
    """month_sin, month_cos of a Date expression: the feature pipeline's on-demand definition,
    so training rows and serving requests get bit-identical values."""
    return [month_sin(dates).alias("month_sin"), month_cos(dates).alias("month_cos")]


def label_rows(transactions: pl.DataFrame | pl.LazyFrame, window: Window) -> pl.DataFrame:
    """Distinct (customer_id, article_id) bought in the window, with as_of = window.start."""
    return (
        transactions.lazy()
        .filter((pl.col("t_dat") >= window.start) & (pl.col("t_dat") < window.end))
        .select("customer_id", "article_id")
        .unique()
        .sort("customer_id", "article_id")
        .with_columns(pl.lit(window.start, dtype=pl.Date).alias("as_of"))
        .collect()
    )


def add_list_features(df: pl.DataFrame) -> pl.DataFrame:
    """Add LIST_FEATURES from ``two_tower_score`` over each (customer_id, as_of) group.

    The group must be the list the model will rank: a customer's whole candidate list
    at serving time and in validation; in training, build_ranking_dataset computes them
    on the candidate list before negatives are thinned. Rows with a NaN/null score get
    nulls. Without a two_tower_score column the frame is returned unchanged.
    """
    if TWO_TOWER_SCORE not in df.columns:
        return df
    score = pl.col(TWO_TOWER_SCORE).cast(pl.Float64).fill_nan(None)
    group = ["customer_id", "as_of"]
    return df.with_columns(
        score.rank("min", descending=True).over(group).cast(pl.Int32).alias("two_tower_rank"),
        (score - score.max().over(group)).cast(pl.Float32).alias("two_tower_gap"),
    )


def list_features_of(scores: np.ndarray) -> dict[str, np.ndarray]:
    """LIST_FEATURES of ONE customer's candidate list from its two-tower scores (NumPy).

    The same values add_list_features gives that list (NaN where it gives null), for
    single-request serving paths that do not build frames.
    """
    s = np.asarray(scores, dtype=np.float64)
    ok = ~np.isnan(s)
    valid = np.sort(s[ok])
    rank = np.full(s.shape, np.nan)
    rank[ok] = valid.size - np.searchsorted(valid, s[ok], side="right") + 1
    gap = np.full(s.shape, np.nan, dtype=np.float32)
    if valid.size:
        gap[ok] = (s[ok] - valid[-1]).astype(np.float32)
    return {"two_tower_rank": rank, "two_tower_gap": gap}


def feature_rows(
    pairs: pl.DataFrame,
    transactions: pl.DataFrame | pl.LazyFrame,
    articles: pl.DataFrame,
    customers: pl.DataFrame | None,
    pair_scorer: PairScorer | None = None,
    article_sales: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Add every ranking feature to (customer_id, article_id, as_of) rows, order kept.

    Context (month of as_of), customer attributes, the tutorial's article attributes and
    the point-in-time interaction features. The two-tower score comes from
    `pair_scorer` for every row, or from a ``two_tower_score`` column already in
    `pairs` (e.g. candidates with their retrieval scores); without either it is left
    out, never filled for some rows only. `article_sales`: see add_interaction_features
    (the serving path). LIST_FEATURES are computed over each (customer_id, as_of) group
    of `pairs` unless `pairs` already holds them, so pass each customer's whole list.
    """
    for c in ID_COLUMNS:
        if c not in pairs.columns:
            raise ValueError(f"pairs lacks column {c!r}; it has {pairs.columns}")
    has_score = TWO_TOWER_SCORE in pairs.columns
    if has_score and pairs[TWO_TOWER_SCORE].null_count():
        raise ValueError(
            f"pairs.{TWO_TOWER_SCORE} has {pairs[TWO_TOWER_SCORE].null_count()} null(s); "
            "a score must exist for every row or none"
        )
    out = pairs.with_columns(month_columns(pl.col("as_of")))
    if customers is not None:
        cust_cols = [c for c in CUSTOMER_FEATURES if c in customers.columns and c not in out.columns]
        if cust_cols:
            out = out.join(
                customers.select("customer_id", *cust_cols).unique("customer_id"),
                on="customer_id",
                how="left",
                maintain_order="left",
            )
    art_cols = [c for c in ARTICLE_FEATURES if c in articles.columns and c not in out.columns]
    if art_cols:
        out = out.join(
            articles.select("article_id", *art_cols).unique("article_id"),
            on="article_id",
            how="left",
            maintain_order="left",
        )
    out = add_interaction_features(
        out,
        transactions,
        articles,
        pair_scorer=None if has_score else pair_scorer,
        article_sales=article_sales,
    )
    if not all(c in out.columns for c in LIST_FEATURES):
        out = add_list_features(out.drop([c for c in LIST_FEATURES if c in out.columns]))
    return out


def feature_columns(df: pl.DataFrame) -> list[str]:
    """The model's input columns in `df`, in a fixed order (ids, label, helpers excluded)."""
    known = (
        *CONTEXT_FEATURES,
        *CUSTOMER_FEATURES,
        *ARTICLE_FEATURES,
        *INTERACTION_FEATURES,
        TWO_TOWER_SCORE,
        *LIST_FEATURES,
    )
    return [c for c in known if c in df.columns]


def build_ranking_dataset(
    transactions: pl.DataFrame | pl.LazyFrame,
    articles: pl.DataFrame,
    customers: pl.DataFrame | None,
    windows: Sequence[Window],
    negatives: str = "retrieval",
    candidates: CandidateFn | None = None,
    pair_scorer: PairScorer | None = None,
    k: int = 100,
    per_positive: int = 10,
    positives: str | None = None,
    seed: int = 42,
    retrieval_train_end: date | None = None,
    negatives_per_customer: int | None = None,
    customer_ids: Collection[str] | None = None,
    max_customers: int | None = None,
) -> pl.DataFrame:
    """Labelled ranking rows for the given windows: ids, ``label`` (Int8) and features.

    negatives: "retrieval" (the customer's top-k candidates not bought; needs
    `candidates`) or "random" (`per_positive` uniform catalogue articles per positive).
    positives: "all" (every distinct purchase in the window) or "retrieved" (only
    purchases among the customer's candidates, so both classes come from the list the
    ranker re-orders at serving time; needs `candidates`). Default (None): "retrieved"
    with retrieval negatives, "all" with random ones. With "all" and retrieval
    negatives, every negative is a candidate but many positives are not, so the model
    learns "candidate-like means not bought" (measured: MAP@12 0.032 vs 0.085).
    retrieval_train_end: the first date the retrieval model did NOT train on; a window
    starting earlier raises, because its two-tower scores would be in-sample.
    negatives_per_customer: keep at most this many retrieval negatives per customer and
    window, drawn uniformly (seeded) — at full scale every buyer's whole candidate list
    is tens of millions of rows; uniform thinning keeps each list's composition.
    customer_ids: only label rows of these customers (e.g. an evaluation sample).
    max_customers: keep a seeded uniform sample of at most this many buyers per window
    (all of a sampled customer's rows are kept); bounds the candidate lists built per
    week at full scale, for both negative kinds alike.
    """
    if negatives not in NEGATIVE_KINDS:
        raise ValueError(f"negatives must be one of {NEGATIVE_KINDS}, got {negatives!r}")
    if positives is None:
        positives = "retrieved" if negatives == "retrieval" else "all"
    if positives not in ("all", "retrieved"):
        raise ValueError(f"positives must be 'all' or 'retrieved', got {positives!r}")
    if (negatives == "retrieval" or positives == "retrieved") and candidates is None:
        raise ValueError(f"negatives={negatives!r}, positives={positives!r} need a candidates function")
    if retrieval_train_end is not None:
        early = [w for w in windows if w.start < retrieval_train_end]
        if early:
            raise ValueError(
                f"ranking window starting {early[0].start} overlaps the retrieval model's training "
                f"data (which ends before {retrieval_train_end}); two-tower scores would be in-sample"
            )
    catalogue = articles["article_id"]
    labelled: list[pl.DataFrame] = []
    for i, window in enumerate(windows):
        pos = label_rows(transactions, window)
        if customer_ids is not None:
            pos = pos.filter(pl.col("customer_id").is_in(pl.Series(list(customer_ids), dtype=pl.String).implode()))
        if max_customers is not None:
            pos = sample_customers(pos, max_customers, seed + i)
        if positives == "retrieved" or negatives == "retrieval":
            cands = _window_candidates(pos, candidates, k)
        if positives == "retrieved":
            pos = pos.join(cands.select(ID_COLUMNS), on=list(ID_COLUMNS), how="semi")
        keep = list(ID_COLUMNS)
        if negatives == "random":
            neg = random_negatives(pos, catalogue, per_positive, seed=seed + i)
        else:
            # customers whose positives were all dropped get no rows at all
            cands = cands.join(pos.select("customer_id").unique(), on="customer_id", how="semi")
            if positives == "retrieved" and pair_scorer is not None:
                # every row is a candidate: score the whole list and place each row in it
                # BEFORE thinning, as serving will place it in the list it ranks
                cands = _scored_list(cands, pair_scorer)
                keep += [TWO_TOWER_SCORE, *LIST_FEATURES]
                pos = pos.join(cands.select(keep), on=list(ID_COLUMNS), how="left", maintain_order="left")
            neg = cands.join(pos, on=list(ID_COLUMNS), how="anti", maintain_order="left")
            if negatives_per_customer is not None:
                neg = _thin(neg, negatives_per_customer, seed + i)
        labelled.append(
            pl.concat(
                [
                    pos.select(keep).with_columns(pl.lit(1, dtype=pl.Int8).alias(LABEL)),
                    neg.select(keep).with_columns(pl.lit(0, dtype=pl.Int8).alias(LABEL)),
                ]
            )
        )
    rows = pl.concat(labelled) if labelled else pl.DataFrame(
        schema={"customer_id": pl.String, "article_id": pl.String, "as_of": pl.Date, LABEL: pl.Int8}
    )
    rows = rows.sort("as_of", "customer_id", LABEL, "article_id", descending=[False, False, True, False])
    return feature_rows(rows, transactions, articles, customers, pair_scorer)


def _scored_list(cands: pl.DataFrame, pair_scorer: PairScorer) -> pl.DataFrame:
    """Candidates with the pair scorer's two_tower_score and their LIST_FEATURES."""
    parts = []
    for (as_of,), group in cands.group_by("as_of", maintain_order=True):
        scores = np.asarray(
            pair_scorer(group["customer_id"].to_list(), group["article_id"].to_list(), as_of),
            dtype=np.float32,
        )
        parts.append(group.with_columns(pl.Series(TWO_TOWER_SCORE, scores, dtype=pl.Float32)))
    return add_list_features(pl.concat(parts)) if parts else add_list_features(
        cands.with_columns(pl.lit(None, dtype=pl.Float32).alias(TWO_TOWER_SCORE))
    )


def sample_customers(rows: pl.DataFrame, n: int, seed: int) -> pl.DataFrame:
    """Rows of at most n customers, drawn uniformly (seeded) from the sorted distinct ids."""
    if n < 0:
        raise ValueError(f"max_customers must be >= 0, got {n}")
    ids = rows["customer_id"].unique().sort()
    if ids.len() <= n:
        return rows
    pick = ids.gather(np.sort(np.random.default_rng(seed).choice(ids.len(), n, replace=False)))
    return rows.filter(pl.col("customer_id").is_in(pick.implode()))


def _thin(neg: pl.DataFrame, n: int, seed: int) -> pl.DataFrame:
    """At most n rows per (customer_id, as_of), chosen uniformly at random (seeded), order kept."""
    if n < 0:
        raise ValueError(f"negatives_per_customer must be >= 0, got {n}")
    draw = np.random.default_rng(seed).random(neg.height)
    return (
        neg.with_columns(pl.Series("_draw", draw))
        .filter(pl.col("_draw").rank("ordinal").over("customer_id", "as_of") <= n)
        .drop("_draw")
    )


def _window_candidates(pos: pl.DataFrame, candidates: CandidateFn | None, k: int) -> pl.DataFrame:
    """All top-k candidates of the window's buying customers (bought ones included)."""
    assert candidates is not None
    if pos.height == 0:
        return candidate_frame(candidates, [], date(1970, 1, 1), k)
    as_of = pos["as_of"][0]
    return candidate_frame(candidates, pos["customer_id"].unique().sort().to_list(), as_of, k)
