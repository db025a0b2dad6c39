"""Dense integer codes for customer and article ids (`customer_ids`, `article_ids` groups).

Ids are strings at the edges and UInt32 codes inside (tensors, joins). The mapping
is computed once and stored in the feature store so every pipeline uses the same
one. Codes are assigned in sorted order of the id string (deterministic: the same
ids give the same codes whatever the file order). When a mapping already exists,
its codes are kept and only new ids are appended, sorted, after the largest code,
so a model trained on an earlier mapping stays valid.
"""

from __future__ import annotations

import polars as pl

from hmrec.features.errors import FeatureInputError

CUSTOMER_IDS_GROUP = "customer_ids"
ARTICLE_IDS_GROUP = "article_ids"
CODE_DTYPE = pl.UInt32


def code_column(id_col: str) -> str:
    """customer_id -> customer_idx, article_id -> article_idx."""
    return id_col.removesuffix("_id") + "_idx"


def ids_schema(id_col: str) -> dict[str, pl.DataType]:
    return {id_col: pl.String(), code_column(id_col): CODE_DTYPE()}


def ids_features(id_col: str) -> dict[str, str]:
    return {
        id_col: "Id string as in the raw files.",
        code_column(id_col): "Dense 0-based integer code (sorted by id; new ids appended after the largest code).",
    }


def assign_codes(ids: pl.Series | pl.DataFrame, id_col: str, existing: pl.DataFrame | None = None) -> pl.DataFrame:
    """Mapping id -> dense code for the distinct ids given (plus every id of ``existing``).

    Returns columns [id_col, <entity>_idx], sorted by code.
    """
    code = code_column(id_col)
    series = ids[id_col] if isinstance(ids, pl.DataFrame) else ids.rename(id_col)
    new = series.drop_nulls().unique().sort().to_frame(id_col)
    if existing is None or existing.height == 0:
        return new.with_row_index(code).select(id_col, pl.col(code).cast(CODE_DTYPE))
    existing = existing.select(id_col, pl.col(code).cast(CODE_DTYPE)).sort(code)
    start = int(existing[code].max()) + 1
    added = new.join(existing, on=id_col, how="anti").sort(id_col)
    added = added.with_row_index(code, offset=start).select(id_col, pl.col(code).cast(CODE_DTYPE))
    return pl.concat([existing, added])


def build_customer_ids(customers: pl.DataFrame, existing: pl.DataFrame | None = None) -> pl.DataFrame:
    return assign_codes(customers["customer_id"], "customer_id", existing)


def build_article_ids(articles: pl.DataFrame, existing: pl.DataFrame | None = None) -> pl.DataFrame:
    return assign_codes(articles["article_id"], "article_id", existing)


def attach_codes(
    transactions: pl.DataFrame, customer_ids: pl.DataFrame, article_ids: pl.DataFrame
) -> pl.DataFrame:
    """Add customer_idx / article_idx to transaction rows, and re-point the id strings at the
    mapping's own strings.

    The second part is a memory measure: a loaded file holds 31.8M separate copies of
    64-character customer ids (~2.5 GB); after this, each row holds a 16-byte view into
    the 1.37M distinct ids of the mapping. Values are unchanged. The lookup is a cast to
    an Enum whose categories are the ids in code order (no join: no 31.8M-row copy).
    Raises FeatureInputError for an id that is not in its mapping (first such row).
    """
    out = transactions
    for id_col, mapping in (("customer_id", customer_ids), ("article_id", article_ids)):
        code = code_column(id_col)
        by_code = mapping.select(id_col, pl.col(code).cast(CODE_DTYPE)).sort(code)
        if not by_code[code].equals(pl.int_range(by_code.height, dtype=CODE_DTYPE, eager=True).alias(code)):
            raise ValueError(f"{code} mapping is not dense 0..n-1; build it with assign_codes")
        ids = by_code[id_col]
        codes = out[id_col].cast(pl.Enum(ids), strict=False).to_physical().cast(CODE_DTYPE).alias(code)
        unknown = codes.is_null() & out[id_col].is_not_null()
        if unknown.any() or out[id_col].null_count():
            row = int((unknown | out[id_col].is_null()).arg_true()[0])
            raise FeatureInputError("transactions", id_col, row + 1, out[id_col][row], f"{id_col} has no {code}")
        out = out.with_columns(ids.gather(codes).alias(id_col), codes)
    return out
