"""Raw H&M data: schema, loader + validation, synthetic generator, customer sampling."""

from hmrec.data.loader import (
    RawData,
    find_raw_files,
    load_articles,
    load_customers,
    load_raw,
    load_transactions,
    validate_dir,
)
from hmrec.data.schema import RAW_FILES, SCHEMAS, ColumnSpec, polars_schema
from hmrec.data.validation import DROP_REASONS, RawDataError, ValidationReport

from hmrec.data.sampling import sample_customers
from hmrec.data.synthetic import GenerationSummary, generate

__all__ = [
    "DROP_REASONS",
    "RAW_FILES",
    "SCHEMAS",
    "ColumnSpec",
    "GenerationSummary",
    "RawData",
    "RawDataError",
    "ValidationReport",
    "find_raw_files",
    "generate",
    "load_articles",
    "load_customers",
    "load_raw",
    "load_transactions",
    "polars_schema",
    "sample_customers",
    "validate_dir",
]
