"""Queries over feature groups: select columns, join on keys, point-in-time correct.

    q = transactions.select(["customer_id", "t_dat", "price"]) \
            .join(customers.select(["age"]), on="customer_id") \
            .join(sales.select(["sales_7d"]), on="article_id")

Join semantics (a left join: no left row is ever dropped or duplicated; a missing
feature is null):
  * point-in-time — the root group and the joined group both have an event time,
    and the joined group's event time is not one of the join keys: each left row
    gets, per key, the latest right row whose event time is AT OR BEFORE the left
    row's event time; a right row from later is never used.
  * latest — the joined group has an event time but the root has none: each left
    row gets the latest right row of its key.
  * plain — otherwise (the join keys identify one right row).
The join keys must cover the joined group's primary key (apart from its event
time), so no join can multiply rows. A Date compared with a Datetime is the
Datetime at midnight.

Output: the root's selected columns, then each join's selected columns (minus the
join keys, with `prefix` prepended if given), in the root table's row order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

import polars as pl

from hmrec.store.errors import FeatureStoreError
from hmrec.store.schema import same_dtype

if TYPE_CHECKING:
    import datetime as dt

    from hmrec.store.feature_group import FeatureGroup

_T = "__hmrec_pit_time__"
_ROW = "__hmrec_row__"
#: Column holding the root event time when a caller asks for it (splits need it).
EVENT_TIME_COLUMN = "__hmrec_event_time__"


@dataclass(frozen=True)
class _Join:
    query: Query
    on: list[str]
    prefix: str | None

    def output_names(self) -> dict[str, str]:
        """Right column -> output name, for the selected non-key columns."""
        p = self.prefix or ""
        return {c: p + c for c in self.query.selected if c not in self.on}


class Query:
    """Selected columns of a root feature group plus joins; build with `fg.select(...)`."""

    def __init__(self, group: FeatureGroup, columns: Sequence[str], joins: Sequence[_Join] = ()):
        self._group = group
        self._columns = list(dict.fromkeys(columns))
        self._joins = list(joins)

    @property
    def group(self) -> FeatureGroup:
        return self._group

    @property
    def selected(self) -> list[str]:
        """The root group's selected columns."""
        return list(self._columns)

    @property
    def joins(self) -> list[_Join]:
        return list(self._joins)

    @property
    def columns(self) -> list[str]:
        """Output column names, in order."""
        out = list(self._columns)
        for j in self._joins:
            out.extend(j.output_names().values())
        return out

    def __repr__(self) -> str:
        parts = [f"{self._group.name}_v{self._group.version}{self._columns}"]
        parts += [f"join {j.query.group.name}_v{j.query.group.version}{j.query.selected} on {j.on}" for j in self._joins]
        return "Query(" + " ".join(parts) + ")"

    # ------------------------------------------------------------------ building
    def join(self, other: Query, on: str | Sequence[str], prefix: str | None = None) -> Query:
        """A new query with `other` left-joined on `on` (names shared by both sides)."""
        if not isinstance(other, Query):
            raise FeatureStoreError(f"join expects a Query (fg.select([...])), got {type(other).__name__}")
        if other._joins:
            raise FeatureStoreError("join a query without joins of its own; chain .join() calls on the root instead")
        keys = [on] if isinstance(on, str) else list(on)
        if not keys:
            raise FeatureStoreError("join needs at least one key in `on`")
        right = other.group
        right_schema = right.schema or {}
        left_types = self._available_types()
        for k in keys:
            if k not in right_schema:
                raise FeatureStoreError(f"join key {k!r} is not a column of {right.label}; columns: {list(right_schema)}")
            if k not in left_types:
                raise FeatureStoreError(
                    f"join key {k!r} is not available on the left side ({self._group.label} columns "
                    f"or columns selected by earlier joins): {sorted(left_types)}"
                )
            if not same_dtype(left_types[k], right_schema[k]):
                raise FeatureStoreError(
                    f"join key {k!r}: type {left_types[k]} on the left, {right_schema[k]} in {right.label}; "
                    "cast one of them so they match"
                )
        uncovered = [c for c in right.entity_key if c not in keys]
        if uncovered:
            raise FeatureStoreError(
                f"join of {right.label} on {keys} does not cover its primary key {right.primary_key} "
                f"(missing {uncovered}); each left row must match at most one right row"
            )
        new = _Join(other, keys, prefix)
        taken = set(self.columns)
        clash = [name for name in new.output_names().values() if name in taken or name.startswith("__hmrec")]
        if clash:
            raise FeatureStoreError(
                f"joining {right.label} would repeat column(s) {clash}; pass prefix=... or select fewer columns"
            )
        if self._group.event_time and right.event_time and right.event_time not in keys:
            _common_time_type(self._group.schema[self._group.event_time], right.schema[right.event_time], right.label)  # type: ignore[index]
        return Query(self._group, self._columns, [*self._joins, new])

    def _available_types(self) -> dict[str, pl.DataType]:
        """Columns a join key can refer to: any root column, or an earlier join's output."""
        types = dict(self._group.schema or {})
        for j in self._joins:
            rs = j.query.group.schema or {}
            for col, out in j.output_names().items():
                types.setdefault(out, rs[col])
        return types

    def kind(self, join: _Join) -> str:
        """'pit', 'latest' or 'plain' (see the module docstring)."""
        right = join.query.group
        if right.event_time is None or right.event_time in join.on:
            return "plain"
        if self._group.event_time is None:
            return "latest"
        return "pit"

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        return {
            "group": self._group.name,
            "version": self._group.version,
            "columns": list(self._columns),
            "joins": [
                {
                    "group": j.query.group.name,
                    "version": j.query.group.version,
                    "columns": j.query.selected,
                    "on": list(j.on),
                    "prefix": j.prefix,
                }
                for j in self._joins
            ],
        }

    @classmethod
    def from_dict(cls, spec: dict[str, Any], get_group: Callable[[str, int], FeatureGroup]) -> Query:
        """Rebuild a query from `to_dict()` output, resolving groups with `get_group`."""
        q = get_group(spec["group"], spec["version"]).select(spec["columns"])
        for j in spec["joins"]:
            q = q.join(get_group(j["group"], j["version"]).select(j["columns"]), on=j["on"], prefix=j["prefix"])
        return q

    # ------------------------------------------------------------------ execution
    def read(self, start: dt.date | dt.datetime | None = None, end: dt.date | dt.datetime | None = None) -> pl.DataFrame:
        """Execute: root rows with start <= event time < end (when given), joined."""
        return self.execute(start=start, end=end)

    def execute(
        self,
        start: dt.date | dt.datetime | None = None,
        end: dt.date | dt.datetime | None = None,
        with_event_time: bool = False,
    ) -> pl.DataFrame:
        """`read`, optionally with the root event time as column EVENT_TIME_COLUMN (first)."""
        root = self._group
        et = root.event_time
        if (start is not None or end is not None or with_event_time) and et is None:
            raise FeatureStoreError(f"{root.label} has no event time; cannot filter or split by time")
        root_schema = root.schema or {}
        produced: set[str] = set()
        needed = list(self._columns)
        for j in self._joins:
            needed += [k for k in j.on if k not in produced]
            produced.update(j.output_names().values())
        needed = [c for c in needed if c in root_schema]
        kinds = [self.kind(j) for j in self._joins]
        if et is not None and ("pit" in kinds or with_event_time or start is not None or end is not None):
            needed.append(et)
        needed = list(dict.fromkeys(needed))

        lf = root.scan(needed)
        if start is not None:
            lf = lf.filter(pl.col(et) >= _time_literal(start, root_schema[et]))  # type: ignore[index]
        if end is not None:
            lf = lf.filter(pl.col(et) < _time_literal(end, root_schema[et]))  # type: ignore[index]
        if with_event_time:
            lf = lf.with_columns(pl.col(et).alias(EVENT_TIME_COLUMN))  # type: ignore[arg-type]

        lookups = self._lookups(kinds, root_schema)
        left = self._collect_with_codes(lf, lookups) if lookups else None
        if left is None:  # no lookup joins, or a key without a match: every join the general way
            lookups = {}
            left = lf.collect()
        for i, (j, kind) in enumerate(zip(self._joins, kinds)):
            if i in lookups:
                left = _attach_lookup(left, lookups[i], i)
            else:
                left = self._join_one(left, j, kind)

        out = self.columns
        return left.select(([EVENT_TIME_COLUMN] if with_event_time else []) + out)

    # -- lookup joins: one String key of the root, at most one right row per key ------------
    def _lookups(self, kinds: list[str], root_schema: dict[str, pl.DataType]) -> dict[int, pl.DataFrame]:
        """Right frames of the joins that can run as array lookups, by join index.

        A plain or latest join on one String column of the root, whose right rows have
        distinct keys, is a lookup: the root's key is coded as the row number of its
        right row (an Enum cast while scanning, so the root's 64-character id strings
        are never all held: 4 bytes a row instead of ~80), and each right column is
        gathered by that code, with no hash join over the root's rows. The key column
        itself is then the right frame's strings, gathered (16-byte views into one
        shared buffer). Same values, same order as the hash join it replaces.
        """
        out: dict[int, pl.DataFrame] = {}
        for i, (j, kind) in enumerate(zip(self._joins, kinds)):
            if kind == "pit" or len(j.on) != 1:
                continue
            key = j.on[0]
            if key not in root_schema or not isinstance(root_schema[key], pl.String):
                continue
            right = self._right_frame(j, kind)
            keys = right[key]
            if keys.null_count() or not keys.is_unique().all():
                continue
            out[i] = right
        return out

    def _collect_with_codes(self, lf: pl.LazyFrame, lookups: dict[int, pl.DataFrame]) -> pl.DataFrame | None:
        """Collect the root with a code column per lookup join (streaming, so id strings are
        dropped as they are coded) and the key columns re-made from the right frames' strings.
        None when some non-null key has no right row (rare; the general path then keeps the
        key's own value, at the cost of reading the root a second time)."""
        codes, key_source = [], {}
        for i, right in lookups.items():
            key = self._joins[i].on[0]
            code = pl.col(key).cast(pl.Enum(right[key]), strict=False).to_physical()
            codes += [code.alias(_code(i)), (code.is_null() & pl.col(key).is_not_null()).alias(_miss(i))]
            key_source.setdefault(key, i)
        left = lf.with_columns(codes).drop(list(key_source)).collect(engine="streaming")
        if any(left[_miss(i)].any() for i in lookups):  # rare: keep the keys' own values instead
            return None
        left = left.drop(_miss(i) for i in lookups)
        return left.with_columns(
            lookups[i][key].gather(left[_code(i)]).alias(key) for key, i in key_source.items()
        )

    def _right_frame(self, j: _Join, kind: str) -> pl.DataFrame:
        """The joined group's rows a plain or latest join uses: key(s) + selected columns, renamed."""
        right_group = j.query.group
        rename = j.output_names()
        right_cols = list(dict.fromkeys(j.on + list(rename)))
        if kind == "latest":
            rt = right_group.event_time
            right = (
                right_group.scan(list(dict.fromkeys(right_cols + [rt])))  # type: ignore[list-item]
                .collect()
                .sort(rt, maintain_order=True)  # type: ignore[arg-type]
                .unique(subset=j.on, keep="last", maintain_order=True)
            )
            return right.select(j.on + list(rename)).rename(rename)
        return right_group.scan(right_cols).select(j.on + list(rename)).rename(rename).collect()

    def _join_one(self, left: pl.DataFrame, j: _Join, kind: str) -> pl.DataFrame:
        if kind != "pit":
            return left.join(self._right_frame(j, kind), on=j.on, how="left", maintain_order="left")
        right_group = j.query.group
        rename = j.output_names()
        right_cols = list(dict.fromkeys(j.on + list(rename) + [right_group.event_time]))  # type: ignore[list-item]
        return self._join_pit(left, j, right_group.scan(right_cols), rename)

    def _join_pit(self, left: pl.DataFrame, j: _Join, rlf: pl.LazyFrame, rename: dict[str, str]) -> pl.DataFrame:
        root_et = self._group.event_time
        right_group = j.query.group
        rt = right_group.event_time
        ltype = self._group.schema[root_et]  # type: ignore[index]
        rtype = right_group.schema[rt]  # type: ignore[index]
        common = _common_time_type(ltype, rtype, right_group.label)
        left = left.with_columns(_as_time(pl.col(root_et), ltype, common).alias(_T))  # type: ignore[arg-type]
        if left.height == 0:
            right = rlf.head(0).select(j.on + list(rename)).rename(rename).collect()
            return left.join(right, on=j.on, how="left").drop(_T)
        # Right rows later than every left row can never be used: skip them while scanning.
        max_t = left[_T].max()
        right = (
            rlf.with_columns(_as_time(pl.col(rt), rtype, common).alias(_T))  # type: ignore[arg-type]
            .filter(pl.col(_T) <= max_t)
            .select(j.on + [_T] + list(rename))
            .rename(rename)
            .collect()
        )
        # join_asof needs both sides sorted by time within each key group. Sorting
        # the right side by time alone is cheaper than by (key, time) and enough;
        # the left side is sorted by time (stably) and put back in order afterwards.
        if not right[_T].is_sorted():
            right = right.sort(_T)
        restore = not left[_T].is_sorted()
        if restore:
            left = left.with_row_index(_ROW).sort(_T, maintain_order=True)
        joined = left.join_asof(
            right, on=_T, by=j.on, strategy="backward", allow_exact_matches=True, check_sortedness=False
        )
        if restore:
            joined = joined.sort(_ROW).drop(_ROW)
        return joined.drop(_T)


def _code(i: int) -> str:
    return f"__hmrec_code_{i}__"


def _miss(i: int) -> str:
    return f"__hmrec_miss_{i}__"


def _attach_lookup(left: pl.DataFrame, right: pl.DataFrame, i: int) -> pl.DataFrame:
    """Add the right frame's non-key columns, gathered by the lookup code of join `i`."""
    codes = left[_code(i)]
    key = right.columns[0]
    return left.with_columns(right[c].gather(codes) for c in right.columns if c != key).drop(_code(i))


def _common_time_type(ltype: pl.DataType, rtype: pl.DataType, label: str) -> pl.DataType:
    """The type both event times are compared in."""
    if same_dtype(ltype, rtype):
        return ltype
    temporal = (pl.Date, pl.Datetime)
    if isinstance(ltype, temporal) and isinstance(rtype, temporal):
        return pl.Datetime("us")
    if ltype.is_integer() and rtype.is_integer():
        return pl.Int64()
    raise FeatureStoreError(
        f"point-in-time join with {label}: event times of types {ltype} and {rtype} cannot be compared"
    )


def _as_time(expr: pl.Expr, dtype: pl.DataType, common: pl.DataType) -> pl.Expr:
    if same_dtype(dtype, common):
        return expr
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None:
        expr = expr.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    return expr.cast(common)


def _time_literal(value: Any, dtype: pl.DataType) -> pl.Expr:
    """A date/datetime boundary as a literal of the event-time column's type."""
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None:
        return pl.lit(value).cast(pl.Datetime(dtype.time_unit)).dt.replace_time_zone(dtype.time_zone)
    return pl.lit(value).cast(dtype)
