"""Errors of the feature store.

One base class (`FeatureStoreError`) so callers can catch everything the store raises
with one clause; the subclasses say what went wrong precisely enough to act on.
"""

from __future__ import annotations


class FeatureStoreError(Exception):
    """Base class for every error the feature store raises on purpose."""


class FeatureGroupNotFound(FeatureStoreError, LookupError):
    """No feature group with that name and version; the message lists what exists."""


class FeatureViewNotFound(FeatureStoreError, LookupError):
    """No feature view with that name and version; the message lists what exists."""


class SchemaMismatchError(FeatureStoreError, ValueError):
    """A frame does not match a table's schema; the message names the table, the
    column, the expected and the actual type. Nothing was written."""

    def __init__(self, table: str, column: str, expected: str, actual: str, detail: str = "") -> None:
        self.table = table
        self.column = column
        self.expected = expected
        self.actual = actual
        msg = f"{table}: column {column!r}: expected {expected}, got {actual}"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg + "; nothing was written")


class InvalidFeatureDataError(FeatureStoreError, ValueError):
    """Values that break a table's rules (a null primary key or event time); the
    message names the table, column, row and value. Nothing was written."""
