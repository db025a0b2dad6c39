"""Dense id codes: sorted, deterministic, stable when new ids arrive."""

import polars as pl

from hmrec.features.ids import assign_codes, build_article_ids, build_customer_ids


def test_codes_sorted_by_id_whatever_the_input_order():
    a = assign_codes(pl.Series(["c", "a", "b", "a"]), "customer_id")
    b = assign_codes(pl.Series(["b", "c", "a"]), "customer_id")
    assert a.equals(b)
    assert a.schema == pl.Schema({"customer_id": pl.String, "customer_idx": pl.UInt32})
    assert a.rows() == [("a", 0), ("b", 1), ("c", 2)]


def test_existing_codes_kept_and_new_ids_appended():
    first = assign_codes(pl.Series(["b", "d"]), "article_id")
    second = assign_codes(pl.Series(["a", "d", "c", "b"]), "article_id", existing=first)
    assert second.rows() == [("b", 0), ("d", 1), ("a", 2), ("c", 3)]
    assert second["article_idx"].is_unique().all()


def test_builders_use_entity_columns():
    c = build_customer_ids(pl.DataFrame({"customer_id": ["y", "x"], "age": [1, 2]}))
    a = build_article_ids(pl.DataFrame({"article_id": ["0000000002", "0000000001"]}))
    assert c.rows() == [("x", 0), ("y", 1)]
    assert a.rows() == [("0000000001", 0), ("0000000002", 1)]


def test_attach_codes_adds_codes_and_rejects_unknown_ids():
    import pytest

    from hmrec.features.errors import FeatureInputError
    from hmrec.features.ids import attach_codes

    tx = pl.DataFrame({"customer_id": ["y", "x", "y"], "article_id": ["a2", "a1", "a1"]})
    cmap = assign_codes(pl.Series(["x", "y", "z"]), "customer_id")
    amap = assign_codes(pl.Series(["a1", "a2"]), "article_id")
    out = attach_codes(tx, cmap, amap)
    assert out["customer_idx"].to_list() == [1, 0, 1] and out["article_idx"].to_list() == [1, 0, 0]
    assert out["customer_id"].to_list() == ["y", "x", "y"]
    with pytest.raises(FeatureInputError) as exc:
        attach_codes(tx.with_columns(customer_id=pl.Series(["y", "q", "y"])), cmap, amap)
    assert (exc.value.column, exc.value.row, exc.value.value) == ("customer_id", 2, "q")
