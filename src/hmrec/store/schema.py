"""Column types of feature tables: what is allowed, how it is persisted, how it is checked.

A feature group declares a *logical* schema (the Polars types readers get back). Delta
Lake cannot hold every Polars type as is (no unsigned integers, no categoricals, only
microsecond timestamps), so each logical type has a *storage* type it is written as,
chosen so the round trip is lossless (UInt32 is stored as Int64, not Int32, so values
above 2**31 survive). Reads cast back to the logical type.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from hmrec.store.errors import FeatureStoreError, SchemaMismatchError

Schema = dict[str, pl.DataType]

_SIMPLE: dict[str, pl.DataType] = {
    "Boolean": pl.Boolean(),
    "Int8": pl.Int8(),
    "Int16": pl.Int16(),
    "Int32": pl.Int32(),
    "Int64": pl.Int64(),
    "UInt8": pl.UInt8(),
    "UInt16": pl.UInt16(),
    "UInt32": pl.UInt32(),
    "Float32": pl.Float32(),
    "Float64": pl.Float64(),
    "String": pl.String(),
    "Categorical": pl.Categorical(),
    "Date": pl.Date(),
    "Binary": pl.Binary(),
}

# Unsigned integers widen to the next signed type so every value fits.
_UNSIGNED_STORAGE = {"UInt8": pl.Int16(), "UInt16": pl.Int32(), "UInt32": pl.Int64()}


def dtype_to_json(dtype: pl.DataType) -> dict[str, Any]:
    """A JSON-able description of a supported Polars type (raises for unsupported ones)."""
    if isinstance(dtype, type):
        dtype = dtype()
    if isinstance(dtype, pl.Datetime):
        return {"type": "Datetime", "time_unit": dtype.time_unit, "time_zone": dtype.time_zone}
    if isinstance(dtype, pl.Decimal):
        return {"type": "Decimal", "precision": dtype.precision, "scale": dtype.scale}
    if isinstance(dtype, pl.Enum):
        return {"type": "Enum", "categories": dtype.categories.to_list()}
    if isinstance(dtype, pl.Array):
        return {"type": "Array", "inner": dtype_to_json(dtype.inner), "size": dtype.size}
    if isinstance(dtype, pl.List):
        return {"type": "List", "inner": dtype_to_json(dtype.inner)}
    if isinstance(dtype, pl.Struct):
        return {"type": "Struct", "fields": [[f.name, dtype_to_json(f.dtype)] for f in dtype.fields]}
    name = type(dtype).__name__
    if name in _SIMPLE:
        return {"type": name}
    raise FeatureStoreError(
        f"type {dtype} cannot be stored in a feature group; supported: {', '.join(_SIMPLE)}, "
        "Datetime, Decimal, Enum, List, Array, Struct"
    )


def dtype_from_json(spec: dict[str, Any]) -> pl.DataType:
    """Inverse of `dtype_to_json`."""
    kind = spec["type"]
    if kind == "Datetime":
        return pl.Datetime(spec["time_unit"], spec["time_zone"])
    if kind == "Decimal":
        return pl.Decimal(spec["precision"], spec["scale"])
    if kind == "Enum":
        return pl.Enum(spec["categories"])
    if kind == "Array":
        return pl.Array(dtype_from_json(spec["inner"]), spec["size"])
    if kind == "List":
        return pl.List(dtype_from_json(spec["inner"]))
    if kind == "Struct":
        return pl.Struct({name: dtype_from_json(inner) for name, inner in spec["fields"]})
    if kind in _SIMPLE:
        return _SIMPLE[kind]
    raise FeatureStoreError(f"unknown type {kind!r} in stored metadata")


def schema_to_json(schema: Schema) -> list[list[Any]]:
    """Ordered [[column, type], ...] (a list, so column order survives JSON)."""
    return [[name, dtype_to_json(dtype)] for name, dtype in schema.items()]


def schema_from_json(spec: list[list[Any]]) -> Schema:
    return {name: dtype_from_json(dtype) for name, dtype in spec}


def normalize_schema(schema: dict[str, Any]) -> Schema:
    """Type instances for every column (accepts classes such as `pl.Int64`); raises for unsupported types."""
    return {name: dtype_from_json(dtype_to_json(dtype)) for name, dtype in schema.items()}


def storage_dtype(dtype: pl.DataType) -> pl.DataType:
    """The type a logical column is written to Delta Lake as."""
    if isinstance(dtype, type):
        dtype = dtype()
    name = type(dtype).__name__
    if name in _UNSIGNED_STORAGE:
        return _UNSIGNED_STORAGE[name]
    if isinstance(dtype, (pl.Categorical, pl.Enum)):
        return pl.String()
    if isinstance(dtype, pl.Datetime):
        return pl.Datetime("us", "UTC" if dtype.time_zone else None)  # Delta: UTC or naive
    if isinstance(dtype, pl.Array):
        return pl.List(storage_dtype(dtype.inner))
    if isinstance(dtype, pl.List):
        return pl.List(storage_dtype(dtype.inner))
    if isinstance(dtype, pl.Struct):
        return pl.Struct({f.name: storage_dtype(f.dtype) for f in dtype.fields})
    dtype_to_json(dtype)  # raises for unsupported types
    return dtype


def storage_schema(schema: Schema) -> Schema:
    return {name: storage_dtype(dtype) for name, dtype in schema.items()}


def to_storage(df: pl.DataFrame, schema: Schema) -> pl.DataFrame:
    """Cast a frame that matches `schema` to its storage types (no-op for most columns)."""
    casts = [
        pl.col(name).cast(storage_dtype(dtype))
        for name, dtype in schema.items()
        if storage_dtype(dtype) != dtype
    ]
    return df.with_columns(casts) if casts else df


def from_storage(frame: pl.DataFrame | pl.LazyFrame, schema: Schema) -> Any:
    """Cast storage columns present in `frame` back to their logical types."""
    names = frame.collect_schema().names() if isinstance(frame, pl.LazyFrame) else frame.columns
    casts = [
        pl.col(name).cast(schema[name])
        for name in names
        if name in schema and storage_dtype(schema[name]) != schema[name]
    ]
    return frame.with_columns(casts) if casts else frame


def same_dtype(actual: pl.DataType, expected: pl.DataType) -> bool:
    """Strict type equality (Polars' `==` treats a bare class as a wildcard, we do not)."""
    return dtype_to_json_or_none(actual) == dtype_to_json_or_none(expected)


def dtype_to_json_or_none(dtype: pl.DataType) -> dict[str, Any] | None:
    try:
        return dtype_to_json(dtype)
    except FeatureStoreError:
        return {"type": repr(dtype)}


def conform(df: pl.DataFrame, schema: Schema, table: str) -> pl.DataFrame:
    """Check `df` against `schema` and return it with the schema's column order.

    Raises SchemaMismatchError for a missing or extra column or a different type. A
    column of the Null type (all values missing, type unknown) is accepted and cast,
    because Polars gives that type to a column built from only None values.
    """
    if not isinstance(df, pl.DataFrame):
        raise SchemaMismatchError(table, "*", "a polars DataFrame", type(df).__name__)
    expected_cols = list(schema)
    missing = [c for c in expected_cols if c not in df.columns]
    if missing:
        c = missing[0]
        raise SchemaMismatchError(
            table, c, str(schema[c]), "missing", f"missing columns: {missing}; expected columns: {expected_cols}"
        )
    extra = [c for c in df.columns if c not in schema]
    if extra:
        c = extra[0]
        raise SchemaMismatchError(
            table, c, "no such column", str(df.schema[c]), f"unexpected columns: {extra}; expected columns: {expected_cols}"
        )
    null_casts = []
    for name, expected in schema.items():
        actual = df.schema[name]
        if isinstance(actual, pl.Null):
            null_casts.append(pl.col(name).cast(expected))
        elif not same_dtype(actual, expected):
            raise SchemaMismatchError(table, name, str(expected), str(actual))
    out = df.select(expected_cols)
    return out.with_columns(null_casts) if null_casts else out
