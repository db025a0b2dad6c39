"""Errors of the feature pipeline."""

from __future__ import annotations

from typing import Any


class FeatureInputError(ValueError):
    """A raw value the feature pipeline cannot turn into a feature.

    Raised before anything is written, naming the table, column, 1-based row of the
    input frame (same order as the file), the value and what was expected.
    """

    def __init__(self, table: str, column: str, row: int | None, value: Any, expected: str) -> None:
        self.table, self.column, self.row, self.value, self.expected = table, column, row, value, expected
        super().__init__(f"{table}: column {column!r}, row {row}: value {value!r} — {expected}")
