"""The `articles` feature group: every catalogue attribute plus derived text features.

All raw columns are kept (codes AND names: codes are stable keys, names are what a
ranking model with native categorical support and a human reading a recommendation
want). Added: ``prod_name_length`` and ``article_description``, one readable
sentence per article built from its name, type, group, appearance, colour,
category (index group / section / garment group) and the free-text details.
"""

from __future__ import annotations

import polars as pl

GROUP_NAME = "articles"
PRIMARY_KEY = ["article_id"]

#: Categorical attributes as (code column, name column); index_code is a letter code.
CATEGORICAL_PAIRS: list[tuple[str, str]] = [
    ("product_type_no", "product_type_name"),
    ("graphical_appearance_no", "graphical_appearance_name"),
    ("colour_group_code", "colour_group_name"),
    ("perceived_colour_value_id", "perceived_colour_value_name"),
    ("perceived_colour_master_id", "perceived_colour_master_name"),
    ("department_no", "department_name"),
    ("index_code", "index_name"),
    ("index_group_no", "index_group_name"),
    ("section_no", "section_name"),
    ("garment_group_no", "garment_group_name"),
]

_INT = pl.Int32()
_STR = pl.String()
SCHEMA: dict[str, pl.DataType] = {
    "article_id": _STR,
    "product_code": _STR,
    "prod_name": _STR,
    "product_type_no": _INT,
    "product_type_name": _STR,
    "product_group_name": _STR,
    "graphical_appearance_no": _INT,
    "graphical_appearance_name": _STR,
    "colour_group_code": _INT,
    "colour_group_name": _STR,
    "perceived_colour_value_id": _INT,
    "perceived_colour_value_name": _STR,
    "perceived_colour_master_id": _INT,
    "perceived_colour_master_name": _STR,
    "department_no": _INT,
    "department_name": _STR,
    "index_code": _STR,
    "index_name": _STR,
    "index_group_no": _INT,
    "index_group_name": _STR,
    "section_no": _INT,
    "section_name": _STR,
    "garment_group_no": _INT,
    "garment_group_name": _STR,
    "detail_desc": _STR,
    "prod_name_length": _INT,
    "article_description": _STR,
}

FEATURES: dict[str, str] = {
    "article_id": "Article id (10-digit zero-padded string).",
    "product_code": "Product id (7 digits); articles of one product differ in colour/size.",
    "prod_name": "Product name.",
    "product_group_name": "Product group (e.g. Garment Upper body).",
    "detail_desc": "Free-text description from the catalogue (may be null).",
    "prod_name_length": "Number of characters of prod_name.",
    "article_description": "Readable description: name, type, group, appearance, colour, category, details.",
    **{code: f"Code of {name}." for code, name in CATEGORICAL_PAIRS},
    **{name: f"Categorical attribute {name.removesuffix('_name')} (name)." for _, name in CATEGORICAL_PAIRS},
}


def description_expr() -> pl.Expr:
    """One sentence per article; a null detail_desc simply leaves the details out."""
    c = pl.col
    head = pl.format(
        "{}: {} ({}), {}, {}. Category: {} / {} / {}.",
        c("prod_name"), c("product_type_name"), c("product_group_name"),
        c("graphical_appearance_name"), c("colour_group_name"),
        c("index_group_name"), c("section_name"), c("garment_group_name"),
    )
    details = c("detail_desc").str.strip_chars()
    return (
        pl.when(details.is_null() | (details == ""))
        .then(head)
        .otherwise(pl.concat_str([head, pl.lit(" Details: "), details]))
    )


def build_articles(articles: pl.DataFrame) -> pl.DataFrame:
    """Raw typed articles frame (hmrec.data.load_articles) -> `articles` feature group rows."""
    return articles.with_columns(
        pl.col("prod_name").str.len_chars().cast(pl.Int32).alias("prod_name_length"),
        description_expr().alias("article_description"),
    ).select(list(SCHEMA))
