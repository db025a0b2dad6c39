"""Online store: materialize, lookups (single, batched), upsert, atomic replace, offline parity."""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from hmrec.store import FeatureStore, FeatureStoreError, InvalidFeatureDataError, OnlineStore, SchemaMismatchError

SCHEMA = {
    "customer_id": pl.String,
    "age": pl.Float32,
    "n": pl.Int64,
    "club": pl.Categorical,
    "group": pl.Enum(["0-18", "19-25"]),
    "member": pl.Boolean,
    "first": pl.Date,
    "seen": pl.Datetime("us"),
    "seen_tz": pl.Datetime("ms", "Europe/Stockholm"),
    "code": pl.UInt32,
    "emb": pl.List(pl.Float32),
    "vec": pl.Array(pl.Float64, 2),
}


def frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "customer_id": ["a" * 64, "b" * 64, "c" * 64],
            "age": [23.5, None, 0.1],
            "n": [1, 2**40, -3],
            "club": ["ACTIVE", "ABSENT", "ACTIVE"],
            "group": ["19-25", None, "0-18"],
            "member": [True, False, None],
            "first": [dt.date(2018, 9, 20), dt.date(2020, 9, 22), None],
            "seen": [dt.datetime(2020, 1, 2, 3, 4, 5, 678901), None, dt.datetime(1969, 12, 31, 23, 59)],
            "seen_tz": [dt.datetime(2020, 6, 1, 12, 0, 0, 5000), None, dt.datetime(2020, 12, 1)],
            "code": [4_000_000_000, 0, 7],
            "emb": [[0.1, 0.2], [], None],
            "vec": [[1.0, 2.0], [3.0, 4.0], [5.5, -6.5]],
        },
        schema=SCHEMA,
    )


@pytest.fixture
def online(tmp_path: Path):
    store = OnlineStore(tmp_path / "online.sqlite")
    yield store
    store.close()


def test_get_returns_the_same_values_as_the_frame(online):
    df = frame()
    assert online.materialize("customers", df, key="customer_id") == 3
    for row in df.to_dicts():
        assert online.get("customers", row["customer_id"]) == row
    assert online.get("customers", "zzz") is None
    assert online.count("customers") == 3
    assert online.tables() == ["customers"]
    assert online.key_column("customers") == "customer_id"


def test_get_many_keeps_input_order_and_flags_missing_keys(online):
    df = frame()
    online.materialize("customers", df, key="customer_id")
    keys = ["c" * 64, "nope", "a" * 64, "c" * 64]
    got = online.get_many("customers", keys)
    assert got["customer_id"].to_list() == keys
    assert got["_found"].to_list() == [True, False, True, True]
    assert got.schema == {**df.schema, "_found": pl.Boolean}
    expected = pl.concat([df[2:3], df[0:1], df[2:3]])
    assert_frame_equal(got.filter("_found").drop("_found"), expected, categorical_as_str=True)
    missing = got.row(1, named=True)
    assert all(v is None for k, v in missing.items() if k not in ("customer_id", "_found"))
    assert online.get_many("customers", []).height == 0


def test_get_many_in_batches_larger_than_one_query(online):
    n = 2_500
    df = pl.DataFrame({"id": range(n), "x": [i * 0.5 for i in range(n)]})
    online.materialize("big", df, key="id")
    keys = list(range(n - 1, -1, -1)) + [n + 5]
    got = online.get_many("big", keys)
    assert got["id"].to_list() == keys
    assert got["x"].to_list()[:3] == [(n - 1) * 0.5, (n - 2) * 0.5, (n - 3) * 0.5]
    assert got["_found"].sum() == n


def test_online_values_match_offline_feature_group(tmp_path):
    fs = FeatureStore(tmp_path / "store")
    fg = fs.get_or_create_feature_group("customers", primary_key=["customer_id"], schema=SCHEMA)
    fg.insert(frame())
    assert fs.materialize(fg) == 3
    offline = fg.read().sort("customer_id")
    online = fs.online.get_many("customers", offline["customer_id"].to_list()).drop("_found")
    assert_frame_equal(online, offline, categorical_as_str=True)
    for row in offline.to_dicts():
        assert fs.online.get("customers", row["customer_id"]) == row
    fs.online.close()


def test_materialize_takes_the_latest_row_per_entity(tmp_path):
    fs = FeatureStore(tmp_path / "store")
    fg = fs.get_or_create_feature_group("counts", primary_key=["cid", "t"], event_time="t")
    day = dt.date(2020, 1, 1)
    fg.insert(pl.DataFrame({"cid": [1, 1, 2], "t": [day, day + dt.timedelta(3), day], "n": [1, 4, 9]}))
    fs.materialize(fg, table="counts_latest", columns=["n"])
    assert fs.online.get("counts_latest", 1) == {"cid": 1, "n": 4}
    assert fs.online.get("counts_latest", 2) == {"cid": 2, "n": 9}
    fs.online.close()


def test_materialize_replaces_the_whole_table(online):
    online.materialize("t", pl.DataFrame({"k": [1, 2], "v": ["a", "b"]}), key="k")
    online.materialize("t", pl.DataFrame({"k": [3], "v": ["c"], "w": [1.0]}), key="k")
    assert online.get("t", 1) is None
    assert online.get("t", 3) == {"k": 3, "v": "c", "w": 1.0}
    assert online.count("t") == 1


def test_upsert_inserts_and_replaces_by_key(online):
    online.materialize("t", pl.DataFrame({"k": [1, 2], "v": ["a", "b"]}), key="k")
    assert online.upsert("t", pl.DataFrame({"k": [2, 5], "v": ["B", "e"]})) == 2
    assert online.get_many("t", [1, 2, 5])["v"].to_list() == ["a", "B", "e"]
    with pytest.raises(SchemaMismatchError, match="'v': expected String, got Int64"):
        online.upsert("t", pl.DataFrame({"k": [9], "v": [1]}))
    with pytest.raises(FeatureStoreError, match="keyed on 'k'"):
        online.upsert("t", pl.DataFrame({"k": [9], "v": ["x"]}), key="v")
    assert online.upsert("new", pl.DataFrame({"id": [1], "x": [2]}), key="id") == 1
    assert online.get("new", 1) == {"id": 1, "x": 2}
    with pytest.raises(FeatureStoreError, match="pass key="):
        online.upsert("other", pl.DataFrame({"id": [1]}))


def test_upsert_keeps_the_stored_row_count_without_scanning(online):
    # the table's row count (metadata) grows by the keys not stored yet: new, existing and
    # repeated keys in one batch, and more keys than one IN (...) query takes
    def stored_rows() -> int:
        return online._conn().execute("SELECT rows FROM _hmrec_tables WHERE name = 't'").fetchone()[0]

    online.materialize("t", pl.DataFrame({"k": ["a", "b"], "v": [1, 2]}), key="k")
    assert stored_rows() == 2
    online.upsert("t", pl.DataFrame({"k": ["b", "c", "c", "d"], "v": [20, 3, 30, 4]}))
    assert stored_rows() == online.count("t") == 4
    assert online.get("t", "c") == {"k": "c", "v": 30}
    many = [f"x{i}" for i in range(1200)] + ["a", "d"]
    online.upsert("t", pl.DataFrame({"k": many, "v": list(range(len(many)))}))
    assert stored_rows() == online.count("t") == 1204


def test_duplicate_keys_last_wins_and_null_key_rejected(online):
    online.materialize("t", pl.DataFrame({"k": [1, 1], "v": ["old", "new"]}), key="k")
    assert online.get("t", 1) == {"k": 1, "v": "new"}
    with pytest.raises(InvalidFeatureDataError, match="key column 'k' row 1 is null"):
        online.materialize("t", pl.DataFrame({"k": [2, None], "v": ["x", "y"]}), key="k")
    assert online.get("t", 1) == {"k": 1, "v": "new"}


def test_unknown_table_and_bad_names_are_clear_errors(online):
    with pytest.raises(FeatureStoreError, match=r"online table 'nope' does not exist.*tables: \[\]"):
        online.get("nope", 1)
    with pytest.raises(FeatureStoreError, match="invalid online table name"):
        online.materialize("drop table x;", pl.DataFrame({"k": [1]}), key="k")
    with pytest.raises(FeatureStoreError, match="key column 'id' is not in"):
        online.materialize("t", pl.DataFrame({"k": [1]}), key="id")


class _DyingConnection:
    """A real sqlite3 connection whose bulk insert stops halfway (e.g. disk full)."""

    def __init__(self, conn: sqlite3.Connection):
        self._conn = conn

    def executemany(self, sql, rows):
        rows = list(rows)
        self._conn.executemany(sql, rows[: len(rows) // 2])
        raise sqlite3.OperationalError("database or disk is full (simulated)")

    def __getattr__(self, name):
        return getattr(self._conn, name)


def test_failed_materialize_leaves_the_old_table(tmp_path, monkeypatch):
    path = tmp_path / "online.sqlite"
    online = OnlineStore(path)
    online.materialize("t", pl.DataFrame({"k": [1, 2], "v": ["a", "b"]}), key="k")
    online.close()
    real_connect = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **kw: _DyingConnection(real_connect(*a, **kw)))
    broken = OnlineStore(path)
    with pytest.raises(sqlite3.OperationalError, match="disk is full"):
        broken.materialize("t", pl.DataFrame({"k": range(100), "v": ["new"] * 100}), key="k")
    with pytest.raises(sqlite3.OperationalError, match="disk is full"):
        broken.upsert("t", pl.DataFrame({"k": [1, 3], "v": ["x", "y"]}))
    broken.close()
    monkeypatch.undo()
    reader = OnlineStore(path)
    assert reader.get_many("t", [1, 2, 3])["v"].to_list() == ["a", "b", None]
    assert reader.count("t") == 2
    assert reader.tables() == ["t"]
    reader.close()


def test_lookups_from_several_threads(online):
    online.materialize("t", pl.DataFrame({"k": range(100), "v": [i * 2 for i in range(100)]}), key="k")
    errors: list[BaseException] = []

    def worker(offset: int) -> None:
        try:
            for i in range(offset, 100, 4):
                assert online.get("t", i) == {"k": i, "v": 2 * i}
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(o,)) for o in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_second_process_view_sees_committed_table(tmp_path):
    a = OnlineStore(tmp_path / "o.sqlite")
    b = OnlineStore(tmp_path / "o.sqlite")
    a.materialize("t", pl.DataFrame({"k": [1], "v": [1]}), key="k")
    assert b.get("t", 1) == {"k": 1, "v": 1}
    a.materialize("t", pl.DataFrame({"k": [1], "v": ["changed type"]}), key="k")
    assert b.get("t", 1) == {"k": 1, "v": "changed type"}
    a.close()
    b.close()


def test_materialize_at_a_day_takes_the_change_point_valid_then(tmp_path):
    """A change-point table: a row holds from its event time until the key's next row.
    Materialised at day D, each key gets its last row with event time <= D (not the
    latest row overall, which may start after D); keys that start after D are absent."""
    fs = FeatureStore(tmp_path / "store")
    fg = fs.get_or_create_feature_group("windows", primary_key=["aid", "valid_from"], event_time="valid_from")
    d = dt.date(2020, 9, 1)
    fg.insert(pl.DataFrame({
        "aid": ["a", "a", "a", "b", "c"],
        "valid_from": [d, d + dt.timedelta(5), d + dt.timedelta(30), d + dt.timedelta(2), d + dt.timedelta(6)],
        "sales_28d": [1, 2, 0, 7, 3],
    }))
    at = d + dt.timedelta(5)
    assert fs.materialize(fg, table="windows_at", at=at) == 2
    assert fs.online.get("windows_at", "a") == {"aid": "a", "valid_from": at, "sales_28d": 2}
    assert fs.online.get("windows_at", "b") == {"aid": "b", "valid_from": d + dt.timedelta(2), "sales_28d": 7}
    assert fs.online.get("windows_at", "c") is None  # its first row starts on day 6
    # Without `at`: the latest row of each key, whatever its day.
    fs.materialize(fg, table="windows_latest")
    assert fs.online.get("windows_latest", "a")["sales_28d"] == 0
    assert fs.online.get("windows_latest", "c")["sales_28d"] == 3
    # A datetime boundary compares with a Date event time at midnight.
    fs.materialize(fg, table="windows_dt", at=dt.datetime(2020, 9, 6, 12, 0))
    assert fs.online.get("windows_dt", "a")["sales_28d"] == 2
    fs.online.close()


def test_materialize_at_needs_an_event_time(tmp_path):
    fs = FeatureStore(tmp_path / "store")
    fg = fs.get_or_create_feature_group("plain", primary_key=["k"])
    fg.insert(pl.DataFrame({"k": [1], "v": [2]}))
    with pytest.raises(FeatureStoreError, match="no event time"):
        fs.materialize(fg, at=dt.date(2020, 1, 1))
    fs.online.close()
