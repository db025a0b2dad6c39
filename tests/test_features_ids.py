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
