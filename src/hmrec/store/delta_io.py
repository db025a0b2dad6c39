"""Writing a frame into a Delta table as one commit, keeping its row order.

Why not `deltalake.write_deltalake`: its writer hands the input's record batches to
parallel tasks, so a frame of several chunks comes back in another order (and not
always the same one: polars issue #26912), and it first converts Polars' string
views to Arrow large strings, a full copy of every string (about 3 GB for the
32M-row transactions table). Here Polars writes the Parquet files itself, one
slice of `rows_per_file` rows after another (slices are views, no copy), named so
that their order is the frame's, and one Delta transaction adds them all. A crash
before that commit leaves only orphan files no reader sees, so the write stays
atomic.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import deltalake
import polars as pl
from deltalake.transaction import AddAction

#: Rows per Parquet file (about 100-250 MB for a transactions-like table).
DEFAULT_ROWS_PER_FILE = 4_000_000
COMPRESSION = "snappy"  # Delta Lake's default codec: fastest to write and read here


def _stat_value(value: Any) -> Any:
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def file_stats(part: pl.DataFrame) -> dict[str, Any]:
    """Delta file statistics: row and null counts, min/max of integer and date columns
    (enough for readers to skip files on key and event-time filters)."""
    simple = [c for c, t in part.schema.items() if not isinstance(t, (pl.List, pl.Array, pl.Struct))]
    ranged = [c for c, t in part.schema.items() if t.is_integer() or isinstance(t, pl.Date)]
    stats: dict[str, Any] = {"numRecords": part.height}
    if simple:
        nulls = part.select(pl.col(simple).null_count()).row(0)
        stats["nullCount"] = dict(zip(simple, nulls))
    if ranged and part.height:
        row = part.select(*[pl.col(c).min().alias(f"min:{c}") for c in ranged],
                          *[pl.col(c).max().alias(f"max:{c}") for c in ranged]).row(0)
        k = len(ranged)
        stats["minValues"] = {c: _stat_value(v) for c, v in zip(ranged, row[:k]) if v is not None}
        stats["maxValues"] = {c: _stat_value(v) for c, v in zip(ranged, row[k:]) if v is not None}
    return stats


def write_parquet_file(part: pl.DataFrame, path: Path) -> None:
    """One data file (a function of its own so tests can make a write fail midway)."""
    part.write_parquet(path, compression=COMPRESSION, statistics=True)


def commit_frame(
    table: deltalake.DeltaTable,
    path: Path,
    data: pl.DataFrame,
    arrow_schema: Any,
    mode: str,
    commit_properties: deltalake.CommitProperties,
    rows_per_file: int = DEFAULT_ROWS_PER_FILE,
) -> None:
    """Write `data` (storage types) as Parquet files under `path`, in row order, and commit
    them to `table` in one transaction (`mode` "append" or "overwrite")."""
    if rows_per_file < 1:
        raise ValueError(f"rows_per_file must be >= 1, got {rows_per_file}")
    batch = uuid.uuid4().hex
    actions = []
    for i, start in enumerate(range(0, data.height, rows_per_file)):
        part = data.slice(start, rows_per_file)
        name = f"part-{i:05d}-{batch}-c000.{COMPRESSION}.parquet"
        write_parquet_file(part, path / name)
        actions.append(
            AddAction(
                path=name,
                size=os.path.getsize(path / name),
                partition_values={},
                modification_time=int(time.time() * 1000),
                data_change=True,
                stats=json.dumps(file_stats(part)),
            )
        )
    table.create_write_transaction(actions, mode=mode, schema=arrow_schema, commit_properties=commit_properties)
