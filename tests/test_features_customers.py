"""`customers` group: missing values, normalisation, age bins."""

import polars as pl
import pytest

from hmrec.features.customers import SCHEMA, age_group, build_customers
from hmrec.features.errors import FeatureInputError

RAW_SCHEMA = {
    "customer_id": pl.String, "FN": pl.Float32, "Active": pl.Float32, "club_member_status": pl.String,
    "fashion_news_frequency": pl.String, "age": pl.Int16, "postal_code": pl.String,
}


def raw(rows):
    cols = list(RAW_SCHEMA)
    return pl.DataFrame([dict(zip(cols, r)) for r in rows], schema=RAW_SCHEMA)


def cid(i):
    return f"{i:064x}"


def test_cleaning_and_missing_values():
    df = raw([
        (cid(1), 1.0, 1.0, "ACTIVE", "Regularly", 24, "p1"),
        (cid(2), None, None, None, None, None, "p2"),
        (cid(3), None, 1.0, "PRE-CREATE", "None", 30, "p3"),
        (cid(4), 1.0, None, "LEFT CLUB", "NONE", 70, "p4"),
        (cid(5), None, None, "", "", 40, "p5"),
        (cid(6), None, None, "ACTIVE", "Monthly", 17, "p6"),
    ])
    out = build_customers(df)
    assert dict(out.schema) == SCHEMA
    assert out.height == 6  # nobody dropped, missing age included
    assert out["customer_id"].to_list() == [cid(i) for i in range(1, 7)]
    assert out["club_member_status"].to_list() == ["ACTIVE", "ABSENT", "PRE-CREATE", "LEFT CLUB", "ABSENT", "ACTIVE"]
    assert out["fashion_news_frequency"].to_list() == ["Regularly", "NONE", "NONE", "NONE", "NONE", "Monthly"]
    assert out["FN"].to_list() == [1, 0, 0, 1, 0, 0]
    assert out["Active"].to_list() == [1, 0, 1, 0, 0, 0]
    # median of known ages [24, 30, 70, 40, 17] = 30
    assert out["age"].to_list() == [24.0, 30.0, 30.0, 70.0, 40.0, 17.0]
    assert out["age_missing"].to_list() == [0, 1, 0, 0, 0, 0]
    assert out["age_group"].to_list() == ["19-25", "UNKNOWN", "26-35", "66+", "36-45", "0-18"]
    assert out["postal_code"].to_list() == ["p1", "p2", "p3", "p4", "p5", "p6"]


@pytest.mark.parametrize(
    "age,label",
    [(0, "0-18"), (18, "0-18"), (19, "19-25"), (25, "19-25"), (26, "26-35"), (35, "26-35"), (36, "36-45"),
     (45, "36-45"), (46, "46-55"), (55, "46-55"), (56, "56-65"), (65, "56-65"), (66, "66+"), (99, "66+")],
)
def test_age_bin_edges_frame_and_scalar_agree(age, label):
    out = build_customers(raw([(cid(1), None, None, None, None, age, "p")]))
    assert out["age_group"][0] == label
    assert age_group(age) == label


def test_all_ages_missing_uses_default():
    out = build_customers(raw([(cid(1), None, None, None, None, None, "p")]))
    assert out["age"][0] == 32.0 and out["age_missing"][0] == 1 and out["age_group"][0] == "UNKNOWN"
    assert age_group(None) == "UNKNOWN"


def test_unknown_news_frequency_names_column_row_value():
    df = raw([(cid(1), None, None, None, "Monthly", 30, "p"), (cid(2), None, None, None, "Daily", 30, "p")])
    with pytest.raises(FeatureInputError) as exc:
        build_customers(df)
    assert exc.value.column == "fashion_news_frequency" and exc.value.row == 2 and exc.value.value == "Daily"
    assert "Daily" in str(exc.value) and "row 2" in str(exc.value)
