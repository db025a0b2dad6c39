"""Feature views: a named, versioned, persisted query that produces training data.

The definition (groups, versions, columns, join keys, labels) is stored as JSON and
the query is rebuilt from it, so a model can record `(view name, version)` and any
later process gets exactly the same columns from exactly the same groups.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl

from hmrec.store.errors import FeatureStoreError
from hmrec.store.query import EVENT_TIME_COLUMN, Query
from hmrec.store.splits import TimeSplit, random_split, split_by_time, time_split_bounds


class FeatureView:
    """Get one from `FeatureStore.get_or_create_feature_view` / `get_feature_view`."""

    def __init__(self, meta: dict[str, Any], query: Query):
        self._meta = meta
        self._query = query

    @property
    def name(self) -> str:
        return self._meta["name"]

    @property
    def version(self) -> int:
        return self._meta["version"]

    @property
    def description(self) -> str:
        return self._meta["description"]

    @property
    def labels(self) -> list[str]:
        return list(self._meta["labels"])

    @property
    def query(self) -> Query:
        return self._query

    @property
    def columns(self) -> list[str]:
        return self._query.columns

    def __repr__(self) -> str:
        return f"FeatureView(name={self.name!r}, version={self.version}, query={self._query!r})"

    @property
    def metadata(self) -> dict[str, Any]:
        """What a model needs to name its training data: groups, versions, columns, keys."""
        q = self._query
        groups = [{"name": q.group.name, "version": q.group.version, "columns": q.selected, "role": "root"}]
        join_keys = []
        for j in q.joins:
            g = j.query.group
            groups.append(
                {"name": g.name, "version": g.version, "columns": j.query.selected, "role": q.kind(j) + "_join"}
            )
            join_keys.append({"group": g.name, "on": list(j.on), "kind": q.kind(j), "prefix": j.prefix})
        return {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "groups": groups,
            "join_keys": join_keys,
            "columns": q.columns,
            "labels": self.labels,
            "event_time": q.group.event_time,
            "query": q.to_dict(),
        }

    # -------------------------------------------------------------- training data
    def training_data(
        self, start: dt.date | dt.datetime | None = None, end: dt.date | dt.datetime | None = None
    ) -> pl.DataFrame:
        """All rows (root event time in [start, end) when given), point-in-time joined."""
        return self._query.read(start=start, end=end)

    def last_event_day(self) -> dt.date | None:
        """The last day present in the root group (by its event time)."""
        root = self._query.group
        et = self._require_time()
        value = root.scan([et]).select(pl.col(et).max()).collect().item()
        if value is None:
            return None
        return value.date() if isinstance(value, dt.datetime) else value

    def split_bounds(
        self,
        validation_start: dt.date | str | None = None,
        test_start: dt.date | str | None = None,
        test_days: int = 7,
        validation_days: int = 7,
    ) -> TimeSplit:
        """The windows `train_validation_test_split` would use (record them with the model)."""
        self._require_time()
        last = self.last_event_day() if test_start is None else None
        return time_split_bounds(last, validation_start, test_start, test_days, validation_days)

    def train_validation_test_split(
        self,
        validation_start: dt.date | str | None = None,
        test_start: dt.date | str | None = None,
        test_days: int = 7,
        validation_days: int = 7,
    ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        """(train, validation, test) by the root event time; windows as in `hmrec.store.splits`."""
        bounds = self.split_bounds(validation_start, test_start, test_days, validation_days)
        data = self._query.execute(end=bounds.test_end, with_event_time=True)
        parts = split_by_time(data, EVENT_TIME_COLUMN, bounds)
        return tuple(p.drop(EVENT_TIME_COLUMN) for p in parts)  # type: ignore[return-value]

    def train_test_split(self, test_size: float, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Random split, for compatibility with the reference course only: it leaks the
        future into training. Pipelines use `train_validation_test_split`."""
        return random_split(self.training_data(), test_size, seed)

    def _require_time(self) -> str:
        root = self._query.group
        et = root.event_time
        if et is None:
            raise FeatureStoreError(
                f"feature view {self.name!r} v{self.version}: root {root.label} has no event time, so it "
                "cannot be split by time; use train_test_split"
            )
        dtype = (root.schema or {})[et]
        if not isinstance(dtype, (pl.Date, pl.Datetime)):
            raise FeatureStoreError(f"time split needs a Date or Datetime event time; {et!r} is {dtype}")
        return et
