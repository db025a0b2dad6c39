"""Column specs of the three raw H&M files (the Kaggle format, exactly).

One table of specs drives both parsing and validation in ``loader.py``, so the
dtypes every other package relies on are written down in exactly one place.
Each column has a *kind* (how its text is parsed and checked), the Polars dtype it
ends up with, and whether an empty cell is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import polars as pl

#: Table name -> file stem in a data dir (``<stem>.csv`` or ``<stem>.parquet``).
RAW_FILES: dict[str, str] = {
    "articles": "articles",
    "customers": "customers",
    "transactions": "transactions_train",
}

#: File suffixes the loader understands, in order of preference when both exist.
RAW_SUFFIXES: tuple[str, ...] = (".parquet", ".csv")

Kind = Literal[
    "article_id",  # 1-10 digits, zero-padded to 10
    "product_code",  # 1-7 digits, zero-padded to 7
    "customer_id",  # exactly 64 lowercase hex characters
    "text",  # kept as in the file
    "int",  # integer code; "12" or "12.0"
    "flag",  # FN / Active: 1.0 (or 0) or empty
    "age",  # whole number of years, 0..150; "49" or "49.0"
    "date",  # YYYY-MM-DD
    "price",  # finite, >= 0
    "channel",  # 1 or 2
]


@dataclass(frozen=True)
class ColumnSpec:
    """One raw column: name, parse kind, final dtype, and whether empty cells are legal."""

    name: str
    kind: Kind
    dtype: pl.DataType
    nullable: bool = False


def _text(name: str, nullable: bool = False) -> ColumnSpec:
    return ColumnSpec(name, "text", pl.String(), nullable)


def _int32(name: str) -> ColumnSpec:
    return ColumnSpec(name, "int", pl.Int32())


ARTICLES: tuple[ColumnSpec, ...] = (
    ColumnSpec("article_id", "article_id", pl.String()),
    ColumnSpec("product_code", "product_code", pl.String()),
    _text("prod_name"),
    _int32("product_type_no"),
    _text("product_type_name"),
    _text("product_group_name"),
    _int32("graphical_appearance_no"),
    _text("graphical_appearance_name"),
    _int32("colour_group_code"),
    _text("colour_group_name"),
    _int32("perceived_colour_value_id"),
    _text("perceived_colour_value_name"),
    _int32("perceived_colour_master_id"),
    _text("perceived_colour_master_name"),
    _int32("department_no"),
    _text("department_name"),
    _text("index_code"),
    _text("index_name"),
    _int32("index_group_no"),
    _text("index_group_name"),
    _int32("section_no"),
    _text("section_name"),
    _int32("garment_group_no"),
    _text("garment_group_name"),
    _text("detail_desc", nullable=True),
)

CUSTOMERS: tuple[ColumnSpec, ...] = (
    ColumnSpec("customer_id", "customer_id", pl.String()),
    ColumnSpec("FN", "flag", pl.Float32(), nullable=True),
    ColumnSpec("Active", "flag", pl.Float32(), nullable=True),
    _text("club_member_status", nullable=True),
    _text("fashion_news_frequency", nullable=True),
    ColumnSpec("age", "age", pl.Int16(), nullable=True),
    _text("postal_code"),
)

TRANSACTIONS: tuple[ColumnSpec, ...] = (
    ColumnSpec("t_dat", "date", pl.Date()),
    ColumnSpec("customer_id", "customer_id", pl.String()),
    ColumnSpec("article_id", "article_id", pl.String()),
    ColumnSpec("price", "price", pl.Float32()),
    ColumnSpec("sales_channel_id", "channel", pl.Int8()),
)

#: Table name -> its column specs, in file order.
SCHEMAS: dict[str, tuple[ColumnSpec, ...]] = {
    "articles": ARTICLES,
    "customers": CUSTOMERS,
    "transactions": TRANSACTIONS,
}

#: Table name -> the column that must be unique in it (None: duplicates are legal).
PRIMARY_KEYS: dict[str, str | None] = {
    "articles": "article_id",
    "customers": "customer_id",
    "transactions": None,
}


def polars_schema(table: str) -> pl.Schema:
    """The exact schema of the frame the loader returns for ``table``."""
    return pl.Schema([(c.name, c.dtype) for c in SCHEMAS[table]])
