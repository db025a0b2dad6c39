"""Feature groups: registry, upsert, schema enforcement, atomicity, time travel."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import deltalake
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from hmrec.store import (
    FeatureGroupNotFound,
    FeatureStore,
    FeatureStoreError,
    InvalidFeatureDataError,
    SchemaMismatchError,
    delta_io,
)

SCHEMA = {"customer_id": pl.Int64, "age": pl.Float32, "club": pl.String}


def customers(ids, ages, clubs=None) -> pl.DataFrame:
    clubs = clubs or [f"c{i}" for i in ids]
    return pl.DataFrame({"customer_id": ids, "age": ages, "club": clubs}, schema=SCHEMA)


def sorted_rows(df: pl.DataFrame, key: str = "customer_id") -> pl.DataFrame:
    return df.sort(key)


@pytest.fixture
def fs(tmp_path: Path) -> FeatureStore:
    return FeatureStore(tmp_path / "store")


@pytest.fixture
def fg(fs: FeatureStore):
    return fs.get_or_create_feature_group(
        "customers",
        version=1,
        primary_key=["customer_id"],
        description="customer profile",
        features={"age": "age in years", "club": "club status"},
        schema=SCHEMA,
    )


# ----------------------------------------------------------------------- registry
def test_create_persists_metadata_and_get_returns_it(fs, fg, tmp_path):
    again = FeatureStore(tmp_path / "store").get_feature_group("customers", 1)
    assert again.primary_key == ["customer_id"]
    assert again.event_time is None
    assert again.description == "customer profile"
    assert again.features == {"age": "age in years", "club": "club status"}
    assert again.schema == {"customer_id": pl.Int64(), "age": pl.Float32(), "club": pl.String()}
    assert fs.list_feature_groups() == [("customers", 1)]
    assert (tmp_path / "store" / "offline" / "customers_v1" / "_delta_log").is_dir()


def test_unknown_group_or_version_error_lists_what_exists(fs, fg):
    with pytest.raises(FeatureGroupNotFound, match=r"version 2.*existing versions of 'customers': \[1\]"):
        fs.get_feature_group("customers", 2)
    with pytest.raises(FeatureGroupNotFound, match=r"no feature group 'articles'.*existing: customers v1"):
        fs.get_feature_group("articles", 1)


def test_get_latest_version_with_none(fs, fg):
    fs.get_or_create_feature_group("customers", version=3, primary_key=["customer_id"], schema=SCHEMA)
    assert fs.get_feature_group("customers", None).version == 3
    assert fs.list_feature_groups() == [("customers", 1), ("customers", 3)]


def test_get_or_create_existing_with_different_definition_is_rejected(fs, fg):
    with pytest.raises(FeatureStoreError, match="primary key"):
        fs.get_or_create_feature_group("customers", 1, primary_key=["club"])
    with pytest.raises(FeatureStoreError, match="schema"):
        fs.get_or_create_feature_group("customers", 1, primary_key=["customer_id"], schema={**SCHEMA, "age": pl.Float64})
    same = fs.get_or_create_feature_group("customers", 1, primary_key=["customer_id"], features={"age": "years"})
    assert same.features["age"] == "years"
    assert fs.get_feature_group("customers", 1).features["age"] == "years"


def test_invalid_names_and_definitions_are_rejected(fs):
    with pytest.raises(FeatureStoreError, match="invalid feature group name"):
        fs.get_or_create_feature_group("Bad Name", primary_key=["a"])
    with pytest.raises(FeatureStoreError, match="version"):
        fs.get_or_create_feature_group("ok", version=0, primary_key=["a"])
    with pytest.raises(FeatureStoreError, match="needs primary_key"):
        fs.get_or_create_feature_group("ok")
    with pytest.raises(FeatureStoreError, match="primary key column 'x'"):
        fs.get_or_create_feature_group("ok", primary_key=["x"], schema={"a": pl.Int64})
    with pytest.raises(FeatureStoreError, match="event time column 'when'"):
        fs.get_or_create_feature_group("ok", primary_key=["a"], event_time="when", schema={"a": pl.Int64})
    with pytest.raises(FeatureStoreError, match="cannot be stored"):
        fs.get_or_create_feature_group("ok", primary_key=["a"], schema={"a": pl.Int64, "d": pl.Duration("us")})
    assert fs.list_feature_groups() == []


def test_delete_feature_group(fs, fg):
    fg.insert(customers([1], [30.0]))
    fs.delete_feature_group("customers", 1)
    assert fs.list_feature_groups() == []
    assert not fg.path.exists()


# ------------------------------------------------------------------------- upsert
def test_insert_upserts_by_primary_key(fg):
    v1 = fg.insert(customers([1, 2, 3], [20.0, 30.0, 40.0]))
    v2 = fg.insert(customers([3, 4], [41.0, 50.0], ["new3", "new4"]))
    assert v2 == v1 + 1
    got = sorted_rows(fg.read())
    assert got["customer_id"].to_list() == [1, 2, 3, 4]
    assert got["age"].to_list() == [20.0, 30.0, 41.0, 50.0]
    assert got["club"].to_list() == ["c1", "c2", "new3", "new4"]
    assert fg.count() == 4


def test_reinserting_the_same_rows_leaves_an_identical_table(fg):
    df = customers([5, 1, 3], [20.0, None, 40.0])
    fg.insert(df)
    first = fg.read()
    fg.insert(df)
    fg.insert(df)
    assert_frame_equal(fg.read(), first)
    assert fg.count() == 3


def test_inserting_no_rows_makes_no_commit(fg):
    v = fg.insert(customers([1], [1.0]))
    assert fg.insert(customers([], [])) == v
    assert fg.commit_version() == v and fg.count() == 1


def test_duplicate_keys_inside_one_frame_keep_the_last(fg):
    fg.insert(customers([1, 2, 1], [10.0, 20.0, 11.0], ["a", "b", "c"]))
    got = sorted_rows(fg.read())
    assert got.rows() == [(1, 11.0, "c"), (2, 20.0, "b")]


def test_composite_primary_key_upsert(fs):
    g = fs.get_or_create_feature_group("sales", primary_key=["article_id", "day"], event_time="day")
    day = dt.date(2020, 1, 1)
    df = pl.DataFrame({"article_id": [1, 1, 2], "day": [day, day + dt.timedelta(1), day], "n": [1, 2, 3]})
    g.insert(df)
    g.insert(pl.DataFrame({"article_id": [1, 3], "day": [day, day], "n": [10, 30]}))
    got = g.read().sort("article_id", "day")
    assert got["n"].to_list() == [10, 2, 3, 30]


@pytest.mark.parametrize("key_type", [pl.Int32, pl.String])
def test_composite_key_of_any_type_upserts_every_path(fs, key_type):
    """Integer keys are packed into one integer internally; other keys are compared as structs."""
    g = fs.get_or_create_feature_group("pairs", primary_key=["a", "b"], schema={"a": key_type, "b": pl.Date, "v": pl.Int64})
    b0, b1 = dt.date(2020, 1, 1), dt.date(2020, 1, 2)

    def rows(a, b, v):
        return pl.DataFrame({"a": a, "b": b, "v": v}, schema={"a": pl.Int64, "b": pl.Date, "v": pl.Int64}).cast({"a": key_type})

    g.insert(rows([1, 1, 2], [b0, b1, b0], [1, 2, 3]))
    g.insert(rows([1, 3, 1], [b1, b0, b1], [20, 30, 21]))  # rewrite; (1, b1) twice: last wins
    g.insert(rows([4], [b0], [4]))  # append
    got = g.read().sort("a", "b")
    assert got.select(pl.col("a").cast(pl.String), "v").rows() == [("1", 1), ("1", 21), ("2", 3), ("3", 30), ("4", 4)]
    assert [h["operation"] for h in g.history()][1:] == ["insert:append", "insert:rewrite", "insert:append"]


@pytest.mark.parametrize("rewrite_max_rows", [0, 10**9], ids=["merge", "rewrite"])
def test_partial_upsert_paths_agree(tmp_path, rewrite_max_rows):
    """Delta MERGE (big tables) and read-modify-overwrite (smaller ones) give the same rows."""
    fs = FeatureStore(tmp_path / "s", rewrite_max_rows=rewrite_max_rows)
    g = fs.get_or_create_feature_group("customers", primary_key=["customer_id"], schema=SCHEMA)
    g.insert(customers([1, 2, 3], [1.0, 2.0, 3.0]))
    g.insert(customers([2, 9], [20.0, 90.0]))
    assert sorted_rows(g.read()).rows() == [(1, 1.0, "c1"), (2, 20.0, "c2"), (3, 3.0, "c3"), (9, 90.0, "c9")]
    expected_op = "insert:merge" if rewrite_max_rows == 0 else "insert:rewrite"
    assert g.history()[-1]["operation"] == expected_op


def test_insert_strategy_is_append_for_new_keys_and_replace_all_when_every_key_is_replaced(fg):
    fg.insert(customers([1, 2], [1.0, 2.0]))
    fg.insert(customers([3], [3.0]))
    fg.insert(customers([1, 2, 3, 4], [1.5, 2.5, 3.5, 4.5]))
    ops = [c["operation"] for c in fg.history()]
    assert ops[1:] == ["insert:append", "insert:append", "insert:replace_all"]
    assert sorted_rows(fg.read())["age"].to_list() == [1.5, 2.5, 3.5, 4.5]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    batches=st.lists(
        st.lists(st.tuples(st.integers(0, 12), st.floats(-5, 5, allow_nan=False, width=32)), max_size=8),
        min_size=1,
        max_size=4,
    ),
    merge=st.booleans(),
)
def test_upsert_matches_a_dictionary_model(tmp_path_factory, batches, merge):
    fs = FeatureStore(tmp_path_factory.mktemp("s"), rewrite_max_rows=0 if merge else 10**9)
    g = fs.get_or_create_feature_group("customers", primary_key=["customer_id"], schema=SCHEMA)
    model: dict[int, float] = {}
    for batch in batches:
        g.insert(customers([k for k, _ in batch], [v for _, v in batch]))
        for k, v in batch:
            model[k] = v
    got = sorted_rows(g.read())
    assert got["customer_id"].to_list() == sorted(model)
    assert got["age"].to_list() == pytest.approx([model[k] for k in sorted(model)])


# ----------------------------------------------------------------- schema checks
@pytest.mark.parametrize(
    "bad, column, expected, actual",
    [
        (pl.DataFrame({"customer_id": [1], "age": [1.0]}, schema={"customer_id": pl.Int64, "age": pl.Float32}),
         "club", "String", "missing"),
        (customers([1], [1.0]).with_columns(extra=pl.lit(1)), "extra", "no such column", "Int32"),
        (customers([1], [1.0]).with_columns(pl.col("age").cast(pl.Float64)), "age", "Float32", "Float64"),
        (customers([1], [1.0]).with_columns(pl.col("customer_id").cast(pl.String)), "customer_id", "Int64", "String"),
    ],
    ids=["missing", "extra", "wrong-float", "wrong-key-type"],
)
def test_schema_mismatch_is_rejected_and_nothing_is_written(fg, bad, column, expected, actual):
    fg.insert(customers([1, 2], [10.0, 20.0]))
    version, before = fg.commit_version(), fg.read()
    with pytest.raises(SchemaMismatchError) as err:
        fg.insert(bad)
    e = err.value
    assert (e.table, e.column, e.expected, e.actual) == ("feature group 'customers' v1", column, expected, actual)
    assert "customers" in str(e) and column in str(e) and "nothing was written" in str(e)
    assert fg.commit_version() == version
    assert_frame_equal(fg.read(), before)


def test_schema_is_fixed_by_the_first_insert(fs):
    g = fs.get_or_create_feature_group("free", primary_key=["id"])
    assert g.schema is None
    assert g.read().shape == (0, 0)
    with pytest.raises(FeatureStoreError, match="has no schema yet"):
        g.select(["x"])
    g.insert(pl.DataFrame({"id": [1], "x": ["a"]}))
    assert fs.get_feature_group("free").schema == {"id": pl.Int64(), "x": pl.String()}
    with pytest.raises(SchemaMismatchError, match="'x': expected String, got Int64"):
        g.insert(pl.DataFrame({"id": [2], "x": [5]}))


def test_schema_fixed_through_another_object_is_seen(fs, tmp_path):
    a = fs.get_or_create_feature_group("free", primary_key=["id"])
    b = FeatureStore(tmp_path / "store").get_feature_group("free")
    a.insert(pl.DataFrame({"id": [1], "x": ["a"]}))
    with pytest.raises(SchemaMismatchError, match="'x': expected String, got Float64"):
        b.insert(pl.DataFrame({"id": [2], "x": [1.5]}))
    assert b.read().rows() == [(1, "a")]


def test_schema_given_later_to_a_group_without_one(fs):
    fs.get_or_create_feature_group("free", primary_key=["id"])
    g = fs.get_or_create_feature_group("free", primary_key=["id"], schema={"id": pl.Int32, "x": pl.String})
    assert g.schema == {"id": pl.Int32(), "x": pl.String()}
    assert g.read().schema == {"id": pl.Int32, "x": pl.String}
    with pytest.raises(SchemaMismatchError, match="'id': expected Int32, got Int64"):
        g.insert(pl.DataFrame({"id": [1], "x": ["a"]}))


def test_all_null_column_is_accepted_for_a_known_schema(fg):
    fg.insert(pl.DataFrame({"customer_id": [1], "age": [None], "club": ["x"]}))
    assert fg.read().rows() == [(1, None, "x")]


def test_column_order_of_the_frame_does_not_matter(fg):
    fg.insert(customers([1], [3.0]).select(["club", "age", "customer_id"]))
    assert fg.read().columns == ["customer_id", "age", "club"]


def test_null_primary_key_or_event_time_is_rejected_with_row(fs):
    g = fs.get_or_create_feature_group("tx", primary_key=["id"], event_time="t")
    with pytest.raises(InvalidFeatureDataError, match=r"column 'id' row 1: value is null"):
        g.insert(pl.DataFrame({"id": [1, None], "t": [dt.date(2020, 1, 1)] * 2}))
    with pytest.raises(InvalidFeatureDataError, match=r"column 't' row 0"):
        g.insert(pl.DataFrame({"id": [1], "t": [None]}, schema={"id": pl.Int64, "t": pl.Date}))
    assert g.commit_version() is None


def test_event_time_must_be_temporal(fs):
    with pytest.raises(FeatureStoreError, match="use Date or Datetime"):
        fs.get_or_create_feature_group("x", primary_key=["id"], event_time="t", schema={"id": pl.Int64, "t": pl.String})


def test_logical_types_round_trip(fs):
    """Types Delta cannot hold as is (unsigned, categorical, enum, array, ns/tz datetimes) come back as declared."""
    schema = {
        "id": pl.UInt32,
        "cat": pl.Categorical,
        "enum": pl.Enum(["a", "b"]),
        "vec": pl.Array(pl.Float32, 2),
        "lst": pl.List(pl.Int16),
        "ts": pl.Datetime("us", "Europe/Stockholm"),
        "ms": pl.Datetime("ms"),
        "u8": pl.UInt8,
        "d": pl.Date,
        "b": pl.Boolean,
    }
    df = pl.DataFrame(
        {
            "id": [4_000_000_000, 1],
            "cat": ["x", "y"],
            "enum": ["b", "a"],
            "vec": [[1.5, 2.5], [0.0, -1.0]],
            "lst": [[1, 2], []],
            "ts": [dt.datetime(2020, 5, 1, 12), dt.datetime(2021, 1, 1)],
            "ms": [dt.datetime(2020, 1, 1, 0, 0, 0, 123000), None],
            "u8": [255, 0],
            "d": [dt.date(2020, 9, 22), dt.date(1999, 1, 1)],
            "b": [True, None],
        },
        schema=schema,
    )
    g = fs.get_or_create_feature_group("types", primary_key=["id"], schema=schema)
    g.insert(df)
    got = g.read().sort("id", descending=True)
    assert got.schema == df.schema
    assert_frame_equal(got, df, categorical_as_str=True)
    g.insert(df.head(1).with_columns(u8=pl.lit(7, pl.UInt8)))
    assert g.read().sort("id")["u8"].to_list() == [0, 7]


# ------------------------------------------------------------------ time travel
def test_read_as_of_an_earlier_commit(fg):
    v_a = fg.insert(customers([1, 2], [1.0, 2.0]))
    v_b = fg.insert(customers([2, 3], [20.0, 30.0]))
    fg.overwrite(customers([7], [7.0]))
    assert sorted_rows(fg.read(as_of=v_a)).rows() == [(1, 1.0, "c1"), (2, 2.0, "c2")]
    assert sorted_rows(fg.read(as_of=v_b))["age"].to_list() == [1.0, 20.0, 30.0]
    assert fg.read().rows() == [(7, 7.0, "c7")]
    assert fg.read(as_of=0).height == 0  # the empty table made at creation
    with pytest.raises(FeatureStoreError, match=r"no commit 99; commits are 0\.\.3"):
        fg.read(as_of=99)
    hist = fg.history()
    assert [h["version"] for h in hist] == [0, 1, 2, 3]
    assert [h["rows"] for h in hist[1:]] == [2, 3, 1]  # rows written by each commit
    assert hist[-1]["operation"] == "overwrite"


def test_read_columns_and_scan(fg):
    fg.insert(customers([1, 2], [1.0, 2.0]))
    assert fg.read(["club"]).columns == ["club"]
    lazy = fg.scan(["customer_id", "age"]).filter(pl.col("age") > 1.5).collect()
    assert lazy.rows() == [(2, 2.0)]
    with pytest.raises(FeatureStoreError, match=r"no column\(s\) \['nope'\]"):
        fg.read(["nope"])


def test_latest_keeps_the_last_row_per_entity(fs):
    g = fs.get_or_create_feature_group("snap", primary_key=["cid", "t"], event_time="t")
    d = dt.date(2020, 1, 1)
    g.insert(pl.DataFrame({"cid": [1, 1, 2], "t": [d + dt.timedelta(2), d, d], "x": [3, 1, 5]}))
    assert g.entity_key == ["cid"]
    assert g.latest().sort("cid").rows() == [(1, d + dt.timedelta(2), 3), (2, d, 5)]


# ------------------------------------------------------------------- atomicity
def _failing_writer(monkeypatch, fail_after_files: int):
    """Make the store's Parquet writer break after some data files were written."""
    real = delta_io.write_parquet_file
    calls = {"n": 0}

    def broken(part, path):
        if calls["n"] == fail_after_files:
            raise OSError("disk unplugged (simulated)")
        calls["n"] += 1
        return real(part, path)

    monkeypatch.setattr(delta_io, "write_parquet_file", broken)
    return calls


def _parquet_files(path: Path) -> int:
    return sum(1 for p in path.iterdir() if p.suffix == ".parquet")


@pytest.mark.parametrize("path_kind", ["append", "replace_all", "rewrite"])
def test_failed_write_midway_leaves_previous_state_readable(fg, monkeypatch, path_kind):
    n = 30_000
    ids = list(range(n))
    fg.insert(customers(ids[:10], [1.0] * 10))
    before, version, files = fg.read(), fg.commit_version(), _parquet_files(fg.path)
    if path_kind == "append":
        new = customers(ids[10:], [2.0] * (n - 10))
    elif path_kind == "replace_all":
        new = customers(ids, [3.0] * n)
    else:
        new = customers(ids[5:], [4.0] * (n - 5))
    fg.rows_per_file = 1000  # several files, so parts really land on disk before the failure
    calls = _failing_writer(monkeypatch, fail_after_files=25)
    with pytest.raises(Exception, match="disk unplugged"):
        fg.insert(new)
    assert calls["n"] == 25
    assert _parquet_files(fg.path) > files  # part of the data was written ...
    assert fg.commit_version() == version  # ... but never committed
    assert_frame_equal(fg.read(), before)
    monkeypatch.undo()
    fg.insert(new)  # the table still takes writes
    assert fg.count() == n


def test_failed_merge_leaves_previous_state_readable(tmp_path, monkeypatch):
    fs = FeatureStore(tmp_path / "s", rewrite_max_rows=0)
    g = fs.get_or_create_feature_group("customers", primary_key=["customer_id"], schema=SCHEMA)
    g.insert(customers([1, 2, 3], [1.0, 2.0, 3.0]))
    before, version = g.read(), g.commit_version()
    real_merge = deltalake.DeltaTable.merge

    def broken_merge(self, source, *args, **kwargs):
        table = pa.table(source)

        def stream():
            yield table.to_batches()[0]
            raise OSError("killed during merge (simulated)")

        return real_merge(self, pa.RecordBatchReader.from_batches(table.schema, stream()), *args, **kwargs)

    monkeypatch.setattr(deltalake.DeltaTable, "merge", broken_merge)
    with pytest.raises(Exception, match="killed during merge"):
        g.insert(customers([2, 4], [20.0, 40.0]))
    assert g.commit_version() == version
    assert_frame_equal(g.read(), before)
    monkeypatch.undo()
    g.insert(customers([2, 4], [20.0, 40.0]))
    assert sorted_rows(g.read())["age"].to_list() == [1.0, 20.0, 3.0, 40.0]


def test_process_killed_mid_insert_leaves_previous_state_readable(fg, tmp_path):
    """A real crash: the writing process dies (os._exit) while Parquet files are being written."""
    fg.insert(customers([1, 2], [1.0, 2.0]))
    before, version = fg.read(), fg.commit_version()
    script = textwrap.dedent(
        f"""
        import os, polars as pl
        from hmrec.store import FeatureStore, delta_io
        real = delta_io.write_parquet_file
        written = []
        def dying(part, path):
            if len(written) == 25:
                os._exit(17)
            written.append(path)
            return real(part, path)
        delta_io.write_parquet_file = dying
        g = FeatureStore({str(tmp_path / "store")!r}).get_feature_group("customers", 1)
        g.rows_per_file = 1000
        n = 30_000
        g.insert(pl.DataFrame({{"customer_id": range(n), "age": [9.0] * n, "club": ["x"] * n}},
                              schema={{"customer_id": pl.Int64, "age": pl.Float32, "club": pl.String}}))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 17, proc.stderr
    assert fg.commit_version() == version
    assert_frame_equal(fg.read(), before)
    fg.insert(customers([3], [3.0]))
    assert sorted_rows(fg.read())["customer_id"].to_list() == [1, 2, 3]


def test_latest_at_ignores_rows_after_the_day(fs):
    g = fs.get_or_create_feature_group("snap_at", primary_key=["cid", "t"], event_time="t")
    d = dt.date(2020, 1, 1)
    g.insert(pl.DataFrame({"cid": [1, 1, 1, 2], "t": [d, d + dt.timedelta(2), d + dt.timedelta(4), d + dt.timedelta(1)],
                           "x": [10, 11, 12, 20]}))
    assert g.latest(at=d).rows() == [(1, d, 10)]
    assert g.latest(["x"], at=d + dt.timedelta(3)).rows() == [(20,), (11,)]  # ordered by event time
    assert g.latest(["x"]).rows() == [(20,), (12,)]


def test_writes_keep_row_order_across_files_and_chunks(fs):
    """Storage order is the frame's order, also for a frame of many chunks written as many files
    (deltalake's own writer hands chunks to parallel tasks and can store them in another order)."""
    g = fs.get_or_create_feature_group("ordered", primary_key=["i"])
    g.rows_per_file = 700
    n = 10_000
    chunks = [pl.DataFrame({"i": pl.int_range(a, min(a + 333, n), eager=True), "s": "x" * 40})
              for a in range(0, n, 333)]
    frame = pl.concat([c.reverse() for c in reversed(chunks)], rechunk=False)  # descending, many chunks
    assert frame.n_chunks() > 1
    g.overwrite(frame)
    assert g.read()["i"].to_list() == frame["i"].to_list()
    assert _parquet_files(g.path) == -(-n // 700)
    assert g.count() == n
    # Append: the new commit's rows come first, each commit in its own order.
    g.insert(pl.DataFrame({"i": [20_001, 20_000], "s": ["y", "y"]}))
    assert g.read()["i"].head(3).to_list() == [20_001, 20_000, n - 1]
    # Per-file statistics let readers skip files: every file states its key range.
    table = deltalake.DeltaTable(str(g.path))
    adds = pl.DataFrame(pa.table(table.get_add_actions(flatten=True))).to_dict(as_series=False)
    assert sum(adds["num_records"]) == n + 2
    assert min(adds["min.i"]) == 0 and max(adds["max.i"]) == 20_001


def test_failed_first_write_leaves_no_table(fs, monkeypatch):
    g = fs.get_or_create_feature_group("fresh", primary_key=["i"])  # no schema: no table yet
    assert g.commit_version() is None
    g.rows_per_file = 10
    _failing_writer(monkeypatch, fail_after_files=2)
    with pytest.raises(OSError, match="disk unplugged"):
        g.insert(pl.DataFrame({"i": list(range(100))}))
    assert g.commit_version() is None and g.schema is None
    monkeypatch.undo()
    g.insert(pl.DataFrame({"i": ["a", "b"]}))  # any schema may still be the first
    assert g.read()["i"].to_list() == ["a", "b"]
