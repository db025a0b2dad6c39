"""Online store: the latest feature values per key in SQLite, for serving-time lookups.

Why SQLite: a key lookup costs microseconds, there is nothing to start, and readers
are never blocked by a writer (WAL mode). Redis is the production option with the
same three calls.

Values round-trip exactly to what the offline table returns: each table's Polars
schema is stored next to it, and values are stored losslessly (dates as day
numbers, datetimes as integers in their time unit, lists and structs as JSON).
`materialize` replaces a table atomically: rows go into a temporary table that is
renamed over the old one in the same transaction, so a reader sees the old table or
the new one, never a half-written one.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import re
import sqlite3
import threading
import zoneinfo
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import polars as pl

from hmrec.store.errors import FeatureStoreError, InvalidFeatureDataError
from hmrec.store.schema import Schema, conform, schema_from_json, schema_to_json

_META = "_hmrec_tables"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_EPOCH_DATE = dt.date(1970, 1, 1)
_EPOCH = dt.datetime(1970, 1, 1)
_UNIT_US = {"us": 1, "ms": 1000, "ns": 0.001}
#: Keys per `IN (...)` query in get_many (SQLite's default variable limit is 32766).
_BATCH = 900


def _quote(name: str) -> str:
    if '"' in name or "\x00" in name:
        raise FeatureStoreError(f"column name {name!r} cannot be used in the online store")
    return f'"{name}"'


def _check_table(table: str) -> None:
    if not isinstance(table, str) or not _IDENT.match(table) or table.startswith("_hmrec"):
        raise FeatureStoreError(f"invalid online table name {table!r}: use letters, digits and '_'")


def _sql_type(dtype: pl.DataType) -> str:
    if dtype.is_integer() or isinstance(dtype, (pl.Boolean, pl.Date, pl.Datetime)):
        return "INTEGER"
    if dtype.is_float():
        return "REAL"
    if isinstance(dtype, pl.Binary):
        return "BLOB"
    return "TEXT"


def _is_nested(dtype: pl.DataType) -> bool:
    return isinstance(dtype, (pl.List, pl.Array, pl.Struct))


def _to_storage_frame(df: pl.DataFrame, schema: Schema) -> pl.DataFrame:
    """Columns as the Python/SQLite values they are stored as."""
    exprs = []
    for name, dtype in schema.items():
        c = pl.col(name)
        if isinstance(dtype, pl.Boolean):
            exprs.append(c.cast(pl.Int8))
        elif isinstance(dtype, pl.Date):
            exprs.append(c.cast(pl.Int32))
        elif isinstance(dtype, pl.Datetime):
            exprs.append(c.dt.timestamp(dtype.time_unit))
        elif isinstance(dtype, (pl.Categorical, pl.Enum, pl.Decimal)):
            exprs.append(c.cast(pl.String))
        elif _is_nested(dtype):
            _check_nested(name, dtype)
            exprs.append(
                c.map_batches(
                    lambda s: pl.Series([None if v is None else json.dumps(v) for v in s.to_list()], dtype=pl.String),
                    return_dtype=pl.String,
                )
            )
        else:
            exprs.append(c)
    return df.select(exprs)


def _check_nested(name: str, dtype: pl.DataType) -> None:
    """JSON holds numbers, strings and booleans; nested dates etc. would not round-trip."""
    inner: list[pl.DataType] = []
    if isinstance(dtype, (pl.List, pl.Array)):
        inner = [dtype.inner]  # type: ignore[list-item]
    elif isinstance(dtype, pl.Struct):
        inner = [f.dtype for f in dtype.fields]  # type: ignore[misc]
    for d in inner:
        if _is_nested(d):
            _check_nested(name, d)
        elif not (d.is_numeric() or isinstance(d, (pl.String, pl.Boolean))) or isinstance(d, pl.Decimal):
            raise FeatureStoreError(f"online store: column {name!r} of type {dtype} is not supported (nested {d})")


def _py_reader(dtype: pl.DataType) -> Callable[[Any], Any] | None:
    """Stored value -> the Python value Polars gives for the logical type (None = as is)."""
    if isinstance(dtype, pl.Boolean):
        return bool
    if isinstance(dtype, pl.Date):
        return lambda v: _EPOCH_DATE + dt.timedelta(days=v)
    if isinstance(dtype, pl.Datetime):
        unit = dtype.time_unit or "us"
        tz = zoneinfo.ZoneInfo(dtype.time_zone) if dtype.time_zone else None
        if unit == "ns":
            to_us: Callable[[int], int] = lambda v: v // 1000  # noqa: E731
        elif unit == "ms":
            to_us = lambda v: v * 1000  # noqa: E731
        else:
            to_us = lambda v: v  # noqa: E731
        if tz is None:
            return lambda v: _EPOCH + dt.timedelta(microseconds=to_us(v))
        return lambda v: (_EPOCH.replace(tzinfo=dt.timezone.utc) + dt.timedelta(microseconds=to_us(v))).astimezone(tz)
    if isinstance(dtype, pl.Decimal):
        return decimal.Decimal
    if _is_nested(dtype):
        return json.loads
    return None


def _py_writer(dtype: pl.DataType) -> Callable[[Any], Any]:
    """A Python key value -> its stored form (for WHERE clauses)."""
    if isinstance(dtype, pl.Boolean):
        return int
    if isinstance(dtype, pl.Date):
        return lambda v: (v.date() if isinstance(v, dt.datetime) else v).toordinal() - _EPOCH_DATE.toordinal()
    if isinstance(dtype, pl.Datetime):
        return lambda v: pl.Series([v]).cast(dtype).dt.timestamp(dtype.time_unit or "us")[0]  # type: ignore[attr-defined]
    if isinstance(dtype, (pl.Decimal,)):
        return str
    return lambda v: v


def _raw_polars_type(dtype: pl.DataType) -> pl.DataType:
    """The Polars type of a column as read from SQLite, before the cast back."""
    if dtype.is_integer() or isinstance(dtype, (pl.Boolean, pl.Date, pl.Datetime)):
        return pl.Int64()
    if dtype.is_float():
        return pl.Float64()
    if isinstance(dtype, pl.Binary):
        return pl.Binary()
    return pl.String()


def _json_dtype(dtype: pl.DataType) -> pl.DataType:
    """Polars cannot decode JSON into fixed-size arrays: decode as lists, then cast."""
    if isinstance(dtype, (pl.Array, pl.List)):
        return pl.List(_json_dtype(dtype.inner))  # type: ignore[arg-type]
    if isinstance(dtype, pl.Struct):
        return pl.Struct({f.name: _json_dtype(f.dtype) for f in dtype.fields})  # type: ignore[arg-type]
    return dtype


def _from_raw(df: pl.DataFrame, schema: Schema) -> pl.DataFrame:
    exprs = []
    for name, dtype in schema.items():
        c = pl.col(name)
        if isinstance(dtype, pl.Date):
            exprs.append(c.cast(pl.Int32).cast(pl.Date))
        elif isinstance(dtype, pl.Datetime):
            exprs.append(c.cast(pl.Datetime(dtype.time_unit, None)).pipe(
                lambda e, tz=dtype.time_zone: e.dt.replace_time_zone("UTC").dt.convert_time_zone(tz) if tz else e
            ))
        elif _is_nested(dtype):
            exprs.append(c.str.json_decode(_json_dtype(dtype)).cast(dtype))
        else:
            exprs.append(c.cast(dtype))
    return df.select(exprs)


class _TableInfo:
    """What lookups need about one table, computed once per table version."""

    def __init__(self, table: str, key: str, schema: Schema, updated_at: str):
        self.key = key
        self.schema = schema
        self.updated_at = updated_at
        self.names = list(schema)
        self.readers = [_py_reader(dtype) for dtype in schema.values()]
        self.write_key = _py_writer(schema[key])
        self.select_one = f"SELECT * FROM {_quote(table)} WHERE {_quote(key)} = ?"


class OnlineStore:
    """SQLite-backed key -> latest features. Safe to share between threads."""

    def __init__(self, path: Path, timeout_s: float = 30.0):
        self.path = Path(path)
        self.timeout_s = timeout_s
        self._local = threading.local()
        self._lock = threading.Lock()
        self._conns: list[sqlite3.Connection] = []
        self._schemas: dict[str, _TableInfo] = {}

    # ------------------------------------------------------------------ plumbing
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {_META} (name TEXT PRIMARY KEY, key TEXT NOT NULL, "
                "schema TEXT NOT NULL, rows INTEGER NOT NULL, updated_at TEXT NOT NULL)"
            )
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn

    def close(self) -> None:
        """Close every connection this object opened (any thread)."""
        with self._lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()
        self._local = threading.local()
        self._schemas.clear()

    def __enter__(self) -> OnlineStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _table_info(self, table: str) -> _TableInfo:
        """Key column, schema and converters of a materialized table (FeatureStoreError if none).

        Cached per table and refreshed when the table was re-materialized (by any process).
        """
        _check_table(table)
        row = self._conn().execute(f"SELECT key, schema, updated_at FROM {_META} WHERE name = ?", (table,)).fetchone()
        if row is None:
            raise FeatureStoreError(
                f"online table {table!r} does not exist in {self.path}; tables: {self.tables()}"
            )
        info = self._schemas.get(table)
        if info is None or info.updated_at != row[2]:
            info = _TableInfo(table, row[0], schema_from_json(json.loads(row[1])), row[2])
            self._schemas[table] = info
        return info

    def tables(self) -> list[str]:
        return [r[0] for r in self._conn().execute(f"SELECT name FROM {_META} ORDER BY name")]

    def schema(self, table: str) -> Schema:
        return dict(self._table_info(table).schema)

    def key_column(self, table: str) -> str:
        return self._table_info(table).key

    def count(self, table: str) -> int:
        self._table_info(table)
        return self._conn().execute(f"SELECT COUNT(*) FROM {_quote(table)}").fetchone()[0]

    # ------------------------------------------------------------------ writes
    def _rows(self, table: str, df: pl.DataFrame, key: str, schema: Schema) -> Iterable[tuple[Any, ...]]:
        if key not in schema:
            raise FeatureStoreError(f"online table {table!r}: key column {key!r} is not in {list(schema)}")
        nulls = df[key].is_null()
        if nulls.any():
            raise InvalidFeatureDataError(
                f"online table {table!r}: key column {key!r} row {int(nulls.arg_max())} is null; nothing was written"
            )
        return _to_storage_frame(df, schema).iter_rows()

    def materialize(self, table: str, df: pl.DataFrame, key: str) -> int:
        """Replace `table` with the rows of `df` (atomically); duplicate keys: last wins.

        Returns the number of rows stored.
        """
        _check_table(table)
        if not isinstance(df, pl.DataFrame):
            raise FeatureStoreError(f"online table {table!r}: expected a polars DataFrame, got {type(df).__name__}")
        schema: Schema = dict(df.schema)
        schema_json = json.dumps(schema_to_json(schema))  # raises for unsupported types
        cols = ", ".join(f"{_quote(c)} {_sql_type(t)}" for c, t in schema.items())
        # Rows in key order fill the key's B-tree from left to right instead of splitting pages
        # all over it: 3-4x faster for 1.4M random 64-character ids. Stable, so the last of
        # duplicate keys still wins.
        if key in schema and not _is_nested(schema[key]) and not df[key].has_nulls() and not df[key].is_sorted():
            df = df.sort(key, maintain_order=True)
        rows = self._rows(table, df, key, schema)
        tmp = f"_hmrec_tmp_{table}"
        marks = ", ".join("?" * len(schema))
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(f"DROP TABLE IF EXISTS {_quote(tmp)}")
            conn.execute(f"CREATE TABLE {_quote(tmp)} ({cols}, PRIMARY KEY ({_quote(key)})) WITHOUT ROWID")
            conn.executemany(f"INSERT OR REPLACE INTO {_quote(tmp)} VALUES ({marks})", rows)
            n = conn.execute(f"SELECT COUNT(*) FROM {_quote(tmp)}").fetchone()[0]
            conn.execute(f"DROP TABLE IF EXISTS {_quote(table)}")
            conn.execute(f"ALTER TABLE {_quote(tmp)} RENAME TO {_quote(table)}")
            conn.execute(
                f"INSERT OR REPLACE INTO {_META} VALUES (?, ?, ?, ?, ?)",
                (table, key, schema_json, n, dt.datetime.now(dt.timezone.utc).isoformat()),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return n

    def upsert(self, table: str, df: pl.DataFrame, key: str | None = None) -> int:
        """Insert or replace rows by key in an existing table (creates it if missing; then
        `key` is required). The frame must match the table's schema. Returns rows written."""
        _check_table(table)
        exists = self._conn().execute(f"SELECT 1 FROM {_META} WHERE name = ?", (table,)).fetchone()
        if not exists:
            if key is None:
                raise FeatureStoreError(f"online table {table!r} does not exist; pass key= to create it")
            return self.materialize(table, df, key)
        info = self._table_info(table)
        stored_key, schema = info.key, info.schema
        if key is not None and key != stored_key:
            raise FeatureStoreError(f"online table {table!r} is keyed on {stored_key!r}, not {key!r}")
        df = conform(df, schema, f"online table {table!r}")
        rows = list(self._rows(table, df, stored_key, schema))
        at = list(schema).index(stored_key)
        keys = list(dict.fromkeys(r[at] for r in rows))
        marks = ", ".join("?" * len(schema))
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            # the stored row count grows by the keys not stored yet: looked up by primary key,
            # where a COUNT(*) after the insert scanned the whole table (1.4M customers at FULL)
            # on every POST /events
            stored = sum(
                conn.execute(
                    f"SELECT COUNT(*) FROM {_quote(table)} WHERE {_quote(stored_key)} IN ({', '.join('?' * len(part))})",
                    part,
                ).fetchone()[0]
                for part in (keys[i : i + 500] for i in range(0, len(keys), 500))
            )
            conn.executemany(f"INSERT OR REPLACE INTO {_quote(table)} VALUES ({marks})", rows)
            conn.execute(f"UPDATE {_META} SET rows = rows + ? WHERE name = ?", (len(keys) - stored, table))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return df.height

    # ------------------------------------------------------------------ reads
    def get(self, table: str, key_value: Any) -> dict[str, Any] | None:
        """The row for one key as {column: value}, or None when the key is not stored."""
        info = self._table_info(table)
        row = self._conn().execute(info.select_one, (info.write_key(key_value),)).fetchone()
        if row is None:
            return None
        return {
            name: value if value is None or reader is None else reader(value)
            for name, reader, value in zip(info.names, info.readers, row)
        }

    def get_many(self, table: str, key_values: Sequence[Any]) -> pl.DataFrame:
        """One row per requested key, in the order given (repeats repeated); a key not
        stored gives a row of nulls (the key column keeps the requested value) with
        `_found` False."""
        info = self._table_info(table)
        key, schema = info.key, info.schema
        names = info.names
        key_idx = names.index(key)
        write = info.write_key
        stored_keys = [write(k) for k in key_values]
        found: dict[Any, tuple[Any, ...]] = {}
        unique = list(dict.fromkeys(stored_keys))
        conn = self._conn()
        for i in range(0, len(unique), _BATCH):
            chunk = unique[i : i + _BATCH]
            marks = ", ".join("?" * len(chunk))
            for row in conn.execute(f"SELECT * FROM {_quote(table)} WHERE {_quote(key)} IN ({marks})", chunk):
                found[row[key_idx]] = row
        empty = [None] * len(names)
        rows = []
        flags = []
        for k in stored_keys:
            row = found.get(k)
            if row is None:
                missing = list(empty)
                missing[key_idx] = k
                rows.append(missing)
                flags.append(False)
            else:
                rows.append(row)
                flags.append(True)
        raw_schema = {n: _raw_polars_type(t) for n, t in schema.items()}
        raw = pl.DataFrame(rows, schema=raw_schema, orient="row")
        return _from_raw(raw, schema).with_columns(pl.Series("_found", flags, dtype=pl.Boolean))
