"""What the loader says about raw files: the error it raises and the report it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from rich.table import Table

#: Reasons a transaction row can be dropped when ``drop_unknown_references=True``.
#: A row whose customer AND article are both unknown counts once, as unknown_customer.
DROP_REASONS: tuple[str, ...] = ("unknown_customer", "unknown_article")


class RawDataError(ValueError):
    """A raw file is unusable; says where (file, column, 1-based data row) and what (value).

    ``row`` counts data rows from 1 with the header excluded; ``column``, ``row`` and
    ``value`` are None when the problem is not tied to one cell (missing file, empty file).
    """

    def __init__(
        self,
        file: str,
        column: str | None,
        row: int | None,
        value: Any,
        reason: str,
    ) -> None:
        self.file = file
        self.column = column
        self.row = row
        self.value = value
        self.reason = reason
        super().__init__(str(self))

    def __str__(self) -> str:
        shown = "<empty>" if self.value is None else repr(self.value)
        column = "-" if self.column is None else self.column
        row = "-" if self.row is None else str(self.row)
        return f"{self.file}: column {column}, row {row}, value {shown}: {self.reason}"

    def __reduce__(self):  # keep the attributes across pickling (multiprocessing, pytest-xdist)
        return (type(self), (self.file, self.column, self.row, self.value, self.reason))


@dataclass
class ValidationReport:
    """Summary of a data dir as loaded: what downstream steps will see, and what was dropped."""

    data_dir: str
    files: dict[str, str]  # table -> path read
    rows: dict[str, int]  # table -> rows kept
    date_min: date | None
    date_max: date | None
    n_customers_referenced: int  # distinct customers in the kept transactions
    n_articles_referenced: int  # distinct articles in the kept transactions
    dropped: dict[str, int] = field(default_factory=lambda: {r: 0 for r in DROP_REASONS})
    seconds: float = 0.0

    @property
    def n_dropped(self) -> int:
        """Transactions dropped, all reasons together."""
        return sum(self.dropped.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (dates as ISO strings), for reports/<step>.json."""
        return {
            "data_dir": self.data_dir,
            "files": dict(self.files),
            "rows": dict(self.rows),
            "date_min": None if self.date_min is None else self.date_min.isoformat(),
            "date_max": None if self.date_max is None else self.date_max.isoformat(),
            "n_customers_referenced": self.n_customers_referenced,
            "n_articles_referenced": self.n_articles_referenced,
            "dropped": dict(self.dropped),
            "n_dropped": self.n_dropped,
            "seconds": round(self.seconds, 3),
        }

    def to_table(self) -> Table:
        """A Rich table for the CLI's summary."""
        table = Table(title=f"Raw data: {self.data_dir}", show_header=True)
        table.add_column("item")
        table.add_column("value", justify="right")
        for name, n in self.rows.items():
            table.add_row(f"{name} rows", f"{n:,}")
        dates = "-" if self.date_min is None else f"{self.date_min} .. {self.date_max}"
        table.add_row("transaction dates", dates)
        table.add_row("customers referenced", f"{self.n_customers_referenced:,}")
        table.add_row("articles referenced", f"{self.n_articles_referenced:,}")
        for reason, n in self.dropped.items():
            table.add_row(f"dropped: {reason.replace('_', ' ')}", f"{n:,}")
        table.add_row("seconds", f"{self.seconds:.2f}")
        return table
