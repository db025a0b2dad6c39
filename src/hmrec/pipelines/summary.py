"""Rich tables for end-of-step summaries (built from the same dicts the reports hold)."""

from __future__ import annotations

from pathlib import Path

from rich import box
from rich.console import Group
from rich.table import Table

from hmrec.evaluation.intervals import summary_line


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


#: Metrics shown in the training summary, in this order, when a system has them.
SUMMARY_METRICS = ("top_100_accuracy", "recall_at_100", "ndcg_at_12", "map_at_12", "recall_at_12", "roc_auc")


def metrics_table(title: str, metrics: dict[str, dict[str, float]], names=SUMMARY_METRICS) -> Table:
    """Systems (model beside its baselines) x metrics, best value per column in bold."""
    present = [m for m in names if any(m in v for v in metrics.values())]
    table = Table(title=title)
    table.add_column("system")
    for m in present:
        table.add_column(m, justify="right")
    best = {m: max((v[m] for v in metrics.values() if isinstance(v.get(m), (int, float))), default=None)
            for m in present}
    for system, values in metrics.items():
        cells = []
        for m in present:
            v = values.get(m)
            if not isinstance(v, (int, float)):
                cells.append("")
            else:
                cells.append(f"[bold]{v:.4f}[/]" if v == best[m] else f"{v:.4f}")
        table.add_row(system, *cells)
    return table


def training_table(results, settings) -> Table:
    """One table per stage with its metrics, registered versions and time spent registering,
    and why a stage skipped its comparison models (so `hmrec train` says it as `hmrec run` does)."""
    from rich.console import Group

    parts = []
    for result in results:
        parts.append(metrics_table(f"{result.name} (validation week)", result.metrics))
        reg = Table(title=f"{result.name}: registered models ({settings.mlflow_uri})")
        for col in ("model", "version", "champion", "decision"):
            reg.add_column(col)
        for r in result.registered:
            reg.add_row(r.name, str(r.version), "yes" if r.champion else "no", r.decision)
        parts.append(reg)
        parts.append(f"{result.name}: " + ", ".join(f"{k} {v:.1f}s" for k, v in result.seconds.items()))
        if result.extra.get("comparisons_skipped"):
            parts.append(f"{result.name}: {result.extra['comparisons_skipped']}")
    return Group(*parts)


#: Short system names for the 80-column evaluation table (others are shown whole).
SHORT_SYSTEMS = {
    "popularity": "popular",
    "popularity_by_age": "pop_by_age",
    "repurchase_popularity": "repurch+pop",
    "two_tower": "two_tower",
    "pipeline_none": "pipe:none",
    "pipeline_exclude_purchased": "pipe:excl",
    "pipeline_exclude_purchased_except_repurchase": "pipe:excl-r",
}
#: List metrics of the evaluation table (each value has its interval beneath it), before
#: candidate Recall@K and the reachable share.
TABLE_METRICS = ("map_at_12", "recall_at_12", "ndcg_at_12")
SHORT_METRICS = {"map_at_12": "MAP@12", "recall_at_12": "R@12", "ndcg_at_12": "NDCG@12",
                 "reachable_share": "reach"}


def short_system(name: str) -> str:
    return SHORT_SYSTEMS.get(name, name)


def short_metric(name: str) -> str:
    if name in SHORT_METRICS:
        return SHORT_METRICS[name]
    if name.startswith("recall_at_"):
        return "R@" + name[len("recall_at_"):]
    return name


def _num(value: float) -> str:
    """4 decimals, without the leading 0 of a value in (-1, 1) (intervals are two of these)."""
    text = f"{value:.4f}"
    return text.replace("0.", ".", 1) if text.startswith(("0.", "-0.")) else text


def evaluation_table(result, candidate_k: int, title: str = "test week") -> Table:
    """Systems x (MAP@12, Recall@12, candidate Recall@K, reachable share): each value with its
    95% bootstrap interval beneath it, best value per column in bold; fits 80 columns."""
    metrics = result.metrics
    names = [m for m in (*TABLE_METRICS, f"recall_at_{candidate_k}", "reachable_share")
             if any(m in v for v in metrics.values())]
    table = Table(title=f"{title} ({result.n_customers:,} customers; 95% intervals)", box=box.SIMPLE_HEAD,
                  show_edge=False, pad_edge=False)
    table.add_column("system", no_wrap=True)
    for m in names:
        table.add_column(short_metric(m), justify="right", no_wrap=True)
    best = {m: max((v[m] for v in metrics.values() if isinstance(v.get(m), (int, float))), default=None)
            for m in names}
    for system, values in metrics.items():
        cells = []
        for m in names:
            v = values.get(m)
            if not isinstance(v, (int, float)):
                cells.append("")
                continue
            cell = f"[bold]{v:.4f}[/]" if v == best[m] else f"{v:.4f}"
            interval = result.intervals.get(system, {}).get(m)
            if interval is not None:
                cell += f"\n[dim]{_num(interval[0])}-{_num(interval[1])}[/]"
            cells.append(cell)
        table.add_row(short_system(system), *cells)
    return table


def evaluation_verdict(result, metric: str = "map_at_12") -> str:
    """The one line on whether the pipeline beats each baseline (and two-tower alone): never
    'beats' when the 95% interval of the paired difference includes zero."""
    differences = {s: d for s, d in result.differences.items() if not s.startswith(f"{result.reference}_")}
    return summary_line(differences, metric, reference=result.reference, n_customers=result.n_customers,
                        label=SHORT_METRICS.get(metric, metric))


def evaluation_summary(result, candidate_k: int, title: str = "test week") -> Group:
    """What `hmrec evaluate` and `hmrec run` print: the table, the names it shortened, and
    the verdict on the pipeline against the other systems."""
    parts: list = [evaluation_table(result, candidate_k, title)]
    shortened = [f"{short_system(s)}={s}" for s in result.metrics if short_system(s) != s]
    if shortened:
        parts.append("[dim]" + ", ".join(shortened) + "[/]")
    if result.differences:
        parts.append(evaluation_verdict(result))
    return Group(*parts)
