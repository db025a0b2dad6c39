"""Rich tables for end-of-step summaries (built from the same dicts the reports hold)."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table


def generation_table(summary, out_dir: Path) -> Table:
    """Rows per generated file, where they are, and how long it took."""
    table = Table(title=f"Generated H&M-format data in {out_dir}")
    table.add_column("file")
    table.add_column("rows", justify="right")
    for name, path in summary.paths.items():
        table.add_row(Path(path).name, f"{summary.rows[name]:,}")
    table.add_row("seconds", f"{summary.seconds:.1f}")
    return table


def steps_table(step_seconds: dict[str, float]) -> Table:
    """Wall-clock time per pipeline step."""
    table = Table(title="Steps")
    table.add_column("step")
    table.add_column("seconds", justify="right")
    for step, seconds in step_seconds.items():
        table.add_row(step, f"{seconds:.1f}")
    table.add_row("total", f"{sum(step_seconds.values()):.1f}", style="bold")
    return table


def features_table(summary) -> Table:
    """Rows and Delta commit per feature group, plus the online tables."""
    table = Table(title=f"Feature store: {summary.store_dir}")
    table.add_column("feature group")
    table.add_column("rows", justify="right")
    table.add_column("commit", justify="right")
    table.add_column("online rows", justify="right")
    for name, rows in summary.rows.items():
        online = summary.online_rows.get(name)
        table.add_row(name, f"{rows:,}", str(summary.table_versions.get(name, "")),
                      "" if online is None else f"{online:,}")
    view = summary.view
    if view:
        table.add_row(f"view {view['name']} v{view['version']}", "", "", "")
    table.add_row("seconds", f"{summary.seconds.get('total', 0):.1f}", "", "")
    return table
