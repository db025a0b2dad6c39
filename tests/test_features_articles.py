"""`articles` group: every attribute kept, name length, readable description."""

import polars as pl

from hmrec.features.articles import CATEGORICAL_PAIRS, SCHEMA, build_articles

RAW_COLUMNS = [
    "article_id", "product_code", "prod_name", "product_type_no", "product_type_name", "product_group_name",
    "graphical_appearance_no", "graphical_appearance_name", "colour_group_code", "colour_group_name",
    "perceived_colour_value_id", "perceived_colour_value_name", "perceived_colour_master_id",
    "perceived_colour_master_name", "department_no", "department_name", "index_code", "index_name",
    "index_group_no", "index_group_name", "section_no", "section_name", "garment_group_no",
    "garment_group_name", "detail_desc",
]
INT_COLS = {c for c in RAW_COLUMNS if c.endswith(("_no", "_code", "_id")) and c not in
            ("article_id", "product_code", "index_code")}


def raw(n_rows=2):
    rows = []
    for i in range(n_rows):
        r = {c: (i + 1 if c in INT_COLS else f"{c}{i}") for c in RAW_COLUMNS}
        r.update(article_id=f"{108775015 + i:010d}", product_code=f"{108775 + i:07d}")
        rows.append(r)
    rows[0].update(prod_name="Strap top", product_type_name="Vest top", product_group_name="Garment Upper body",
                   graphical_appearance_name="Solid", colour_group_name="Black", index_group_name="Ladieswear",
                   section_name="Womens Everyday Basics", garment_group_name="Jersey Basic",
                   detail_desc="Jersey top with narrow shoulder straps.")
    rows[1]["detail_desc"] = None
    schema = {c: (pl.Int32 if c in INT_COLS else pl.String) for c in RAW_COLUMNS}
    return pl.DataFrame(rows, schema=schema)


def test_all_attributes_kept_and_derived_columns():
    src = raw()
    out = build_articles(src)
    assert dict(out.schema) == SCHEMA
    for code, name in CATEGORICAL_PAIRS:
        assert out[code].to_list() == src[code].to_list()
        assert out[name].to_list() == src[name].to_list()
    assert out["article_id"].to_list() == ["0108775015", "0108775016"]
    assert out["prod_name_length"].to_list() == [9, len("prod_name1")]


def test_description_reads_well_and_survives_null_details():
    out = build_articles(raw())
    d0, d1 = out["article_description"].to_list()
    assert d0 == ("Strap top: Vest top (Garment Upper body), Solid, Black. "
                  "Category: Ladieswear / Womens Everyday Basics / Jersey Basic. "
                  "Details: Jersey top with narrow shoulder straps.")
    assert d1 is not None and d1.startswith("prod_name1: ") and "Details" not in d1
