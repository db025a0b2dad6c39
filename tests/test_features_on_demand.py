"""On-demand features: one function, same numbers for a training frame and a serving request."""

import math
from datetime import date, datetime

import polars as pl
import pytest

from hmrec.features.on_demand import days_since, month_cos, month_sin, request_features, with_request_features


def test_month_sin_cos_values():
    assert month_sin(date(2020, 3, 1)) == pytest.approx(math.sin(2 * math.pi * 3 / 12), abs=1e-7)
    assert month_cos(date(2020, 3, 1)) == pytest.approx(0.0, abs=1e-7)
    assert month_cos(date(2020, 12, 31)) == pytest.approx(1.0)
    assert month_sin(date(2020, 6, 15)) == pytest.approx(0.0, abs=1e-7)
    assert month_cos(date(2020, 6, 15)) == pytest.approx(-1.0)


def test_frame_and_request_paths_are_bit_identical():
    days = [date(2020, m, d) for m in range(1, 13) for d in (1, 28)]
    df = with_request_features(pl.DataFrame({"t_dat": days}))
    assert df.schema["month_sin"] == pl.Float32 and df.schema["month_cos"] == pl.Float32
    for row in df.iter_rows(named=True):
        assert row["month_sin"] == month_sin(row["t_dat"])
        assert row["month_cos"] == month_cos(row["t_dat"])
        assert request_features(row["t_dat"]) == {"month_sin": row["month_sin"], "month_cos": row["month_cos"]}


def test_datetime_request_and_datetime_column():
    ts = datetime(2020, 9, 22, 18, 30)
    df = pl.DataFrame({"ts": [ts]}).select(s=month_sin(pl.col("ts")), c=month_cos(pl.col("ts")))
    assert df["s"][0] == month_sin(ts) == month_sin(date(2020, 9, 1))
    assert df["c"][0] == month_cos(ts)


def test_bad_request_type_is_a_clear_error():
    with pytest.raises(TypeError, match="date"):
        month_sin("2020-09-22")


def test_days_since_expr_and_python_agree():
    df = pl.DataFrame({"d": [date(2020, 3, 1), date(2020, 3, 1)], "last": [date(2020, 2, 27), None]})
    out = df.select(days_since(pl.col("d"), pl.col("last")).alias("x"))["x"].to_list()
    assert out == [3, None]  # 2020 is a leap year
    assert days_since(date(2020, 3, 1), date(2020, 2, 27)) == 3
    assert days_since(datetime(2020, 3, 1, 23), date(2020, 2, 27)) == 3
    assert days_since(date(2020, 3, 1), None) is None
