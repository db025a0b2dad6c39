"""The evaluation split: the test week and the history before it.

Why a module of its own: every system (baselines, two-tower, the 4-stage pipeline)
must be measured on the same customers and the same purchases, and must never see
the test week while fitting. One function cuts the raw transactions once; everything
else takes its result.

The test window is the last ``test_days`` calendar days ending on the last day in the
data (Kaggle: 2020-09-16 .. 2020-09-22), unless ``test_start`` is given. History is
everything strictly before the test window (the training and validation windows of
the model pipelines together: a baseline has no hyper-parameters to validate).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl

from hmrec.store.splits import TimeSplit, split_by_time, time_split_bounds

TRANSACTION_COLUMNS = ("t_dat", "customer_id", "article_id")


class EvaluationInputError(ValueError):
    """Input to the evaluation that cannot be evaluated (missing columns, empty windows)."""


@dataclass(frozen=True)
class EvaluationSplit:
    """History (fit on it) and test week (score on it) of one dataset."""

    history: pl.DataFrame
    test: pl.DataFrame
    bounds: TimeSplit

    @property
    def test_start(self) -> dt.date:
        return self.bounds.test_start

    @property
    def test_end(self) -> dt.date:
        """First day after the test window."""
        return self.bounds.test_end

    def test_purchases(self) -> dict[str, list[str]]:
        """Customer -> distinct articles bought in the test week, in order of first purchase.

        Duplicates (several units, or the same article on two days) count once: the
        Kaggle MAP@12 scores each relevant article once.
        """
        frame = (
            self.test.with_row_index("_row")
            .group_by("customer_id", "article_id")
            .agg(pl.col("_row").min())
            .sort("_row")
            .group_by("customer_id", maintain_order=True)
            .agg(pl.col("article_id"))
            .sort("customer_id")
        )
        return dict(zip(frame["customer_id"].to_list(), frame["article_id"].to_list(), strict=True))

    def test_customers(self) -> list[str]:
        """Customers with at least one test-week purchase, sorted (the evaluated population)."""
        return self.test["customer_id"].unique().sort().to_list()


def split_test_week(
    transactions: pl.DataFrame,
    test_days: int = 7,
    test_start: dt.date | str | None = None,
) -> EvaluationSplit:
    """Cut raw transactions (hmrec.data contract) into history and the test week.

    Rows after the test window (possible only with an explicit ``test_start``)
    belong to neither part, so nothing from the future leaks into history.
    """
    missing = [c for c in TRANSACTION_COLUMNS if c not in transactions.columns]
    if missing:
        raise EvaluationInputError(f"transactions: missing column(s) {missing}; got {transactions.columns}")
    if transactions.height == 0:
        raise EvaluationInputError("transactions: no rows, so there is no test week to evaluate on")
    last_day = transactions["t_dat"].max()
    bounds = time_split_bounds(last_day, test_start=test_start, test_days=test_days, validation_days=0)
    history, validation, test = split_by_time(transactions, "t_dat", bounds)
    # validation_days=0 makes the validation window empty; keep the check honest anyway
    if validation.height:
        history = pl.concat([history, validation])
    if test.height == 0:
        raise EvaluationInputError(
            f"transactions: no rows in the test window {bounds.test_start}..{bounds.test_end} (exclusive)"
        )
    if history.height == 0:
        raise EvaluationInputError(f"transactions: no rows before the test window starting {bounds.test_start}")
    return EvaluationSplit(history=history, test=test, bounds=bounds)
