"""Train/validation/test splits: by time (the protocol) and at random (compatibility only).

Time split (docs/architecture.md, time layout), boundaries are calendar days at midnight:

    train       event time <  validation_start
    validation  validation_start <= event time < test_start
    test        test_start <= event time < test_start + test_days

Defaults: test_start = (last day present) - test_days + 1, so the test window is the
last `test_days` calendar days that end on the last day in the data (Kaggle: 2020-09-16
.. 2020-09-22); validation_start = test_start - validation_days. Rows after the test
window (only possible with an explicit test_start) belong to no split.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import polars as pl

from hmrec.store.errors import FeatureStoreError


@dataclass(frozen=True)
class TimeSplit:
    """The three windows, as dates: [.., validation_start) [validation_start, test_start) [test_start, test_end)."""

    validation_start: dt.date
    test_start: dt.date
    test_end: dt.date

    def to_dict(self) -> dict[str, str]:
        return {
            "validation_start": self.validation_start.isoformat(),
            "test_start": self.test_start.isoformat(),
            "test_end": self.test_end.isoformat(),
        }


def _as_date(value: dt.date | dt.datetime | str) -> dt.date:
    if isinstance(value, str):
        return dt.date.fromisoformat(value)
    if isinstance(value, dt.datetime):
        return value.date()
    return value


def time_split_bounds(
    last_day: dt.date | dt.datetime | None,
    validation_start: dt.date | str | None = None,
    test_start: dt.date | str | None = None,
    test_days: int = 7,
    validation_days: int = 7,
) -> TimeSplit:
    """Resolve the defaults of the time split into three explicit windows."""
    if test_days < 1 or validation_days < 0:
        raise FeatureStoreError(f"test_days must be >= 1 and validation_days >= 0, got {test_days}, {validation_days}")
    if test_start is None:
        if last_day is None:
            raise FeatureStoreError("cannot place the test window: the data is empty")
        ts = _as_date(last_day) - dt.timedelta(days=test_days - 1)
    else:
        ts = _as_date(test_start)
    vs = _as_date(validation_start) if validation_start is not None else ts - dt.timedelta(days=validation_days)
    if vs > ts:
        raise FeatureStoreError(f"validation_start {vs} is after test_start {ts}")
    return TimeSplit(vs, ts, ts + dt.timedelta(days=test_days))


def split_by_time(df: pl.DataFrame, time_column: str, bounds: TimeSplit) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Cut `df` into train, validation, test by `time_column` (Date or Datetime)."""
    dtype = df.schema[time_column]
    t = pl.col(time_column)

    def lit(d: dt.date) -> pl.Expr:
        if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None:
            return pl.lit(d).cast(pl.Datetime(dtype.time_unit)).dt.replace_time_zone(dtype.time_zone)
        return pl.lit(d).cast(dtype)

    vs, ts, te = lit(bounds.validation_start), lit(bounds.test_start), lit(bounds.test_end)
    col = df[time_column]
    if col.null_count() == 0 and col.is_sorted():
        # Rows in time order (the transactions file's own order): each window is a contiguous
        # run of rows, so it is a slice (no copy) instead of a filtered copy of ~all rows.
        a, b, c = df.select((t < vs).sum().alias("a"), (t < ts).sum().alias("b"), (t < te).sum().alias("c")).row(0)
        return df.slice(0, a), df.slice(a, max(b - a, 0)), df.slice(b, max(c - b, 0))
    train = df.filter(t < vs)
    validation = df.filter((t >= vs) & (t < ts))
    test = df.filter((t >= ts) & (t < te))
    return train, validation, test


def random_split(df: pl.DataFrame, test_size: float, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Random train/test split, rows kept in their order. Leaks the future: avoid for evaluation."""
    if not 0.0 < test_size < 1.0:
        raise FeatureStoreError(f"test_size must be between 0 and 1 (exclusive), got {test_size}")
    n = df.height
    n_test = int(round(n * test_size))
    mask = np.zeros(n, dtype=bool)
    mask[np.random.default_rng(seed).permutation(n)[:n_test]] = True
    s = pl.Series(mask)
    return df.filter(~s), df.filter(s)
