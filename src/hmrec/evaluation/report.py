"""The evaluation report: one folder with a self-contained index.html and PNG charts.

Why a folder of static files: it opens from disk on any machine (no server, no
network: no scripts, fonts or styles from elsewhere), can be attached to a CI run, and
its PNGs can be quoted in the README. Each section is optional: when its input is
missing the section is left out and listed as "not available", never an error, so a
partial run (e.g. baselines only) still gets a report.

Sections: metric table (systems x metrics, best value per metric highlighted, each
with its 95% bootstrap interval over the evaluated customers, and a bar chart with the
intervals as error bars; the pipeline's paired differences to every other system, and
the customer count), training curves (loss per epoch, train vs validation, and the metric the
two-tower model is selected on per checkpoint beside popularity's), Recall@K curves of
the candidate generators, ranking feature importance, and example customers (recent
purchases with article attributes, then each system's list; test-week hits marked).
"""

from __future__ import annotations

import datetime as dt
import html
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from hmrec.evaluation.evaluate import EvaluationResult
from hmrec.evaluation.intervals import summary_line, verdict
from hmrec.evaluation.split import EvaluationSplit

INDEX_FILE = "index.html"
#: The report folder under <home>/reports.
REPORT_DIR = "report"
METRICS_PNG = "metrics.png"
RECALL_PNG = "recall_at_k.png"
IMPORTANCE_PNG = "feature_importance.png"
#: Preferred column order of the metric table; other metrics follow alphabetically.
METRIC_ORDER = ("map_at_12", "recall_at_12", "ndcg_at_12", "recall_at_100", "reachable_share")
#: Article attributes shown for example customers (when the articles frame has them).
ARTICLE_COLUMNS = ("prod_name", "product_type_name", "colour_group_name", "index_group_name")

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0 1em}th,td{border:1px solid #ddd;padding:.3em .6em;text-align:right}
th{background:#f3f3f3}td.name,th.name{text-align:left}td.best{background:#d9f2d9;font-weight:bold}
td.hit{background:#d9f2d9}.ci{display:block;font-size:.8em;color:#777;font-weight:normal}
td.better{background:#d9f2d9}td.worse{background:#f6dada}img{max-width:100%;border:1px solid #eee}.muted{color:#777}
.example{margin-bottom:2em}.lists{display:flex;flex-wrap:wrap;gap:1em}.lists table{font-size:.85em}
"""


@dataclass
class CustomerExample:
    """One customer to show: recent purchases, what each system recommends, what they then bought."""

    customer_id: str
    history: list[dict[str, Any]]
    recommendations: dict[str, list[dict[str, Any]]]
    bought: list[str] = field(default_factory=list)
    bought_rows: list[dict[str, Any]] = field(default_factory=list)


def _article_lookup(articles: pl.DataFrame | None, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    if articles is None or not ids:
        return {}
    cols = [c for c in ARTICLE_COLUMNS if c in articles.columns]
    rows = articles.filter(pl.col("article_id").is_in(list(set(ids)))).select("article_id", *cols)
    return {r["article_id"]: r for r in rows.iter_rows(named=True)}


def build_examples(
    customer_ids: Sequence[str],
    history: pl.DataFrame,
    articles: pl.DataFrame | None,
    recommendations: Mapping[str, Mapping[str, Sequence[str]]],
    test_purchases: Mapping[str, Sequence[str]] | None = None,
    n_recent: int = 10,
) -> list[CustomerExample]:
    """Example customers from raw frames: last `n_recent` purchases (newest first) with attributes.

    `recommendations` is system -> customer -> article ids (EvaluationResult.examples).
    """
    out: list[CustomerExample] = []
    for customer in customer_ids:
        recent = (
            history.filter(pl.col("customer_id") == customer)
            .with_row_index("_row")
            .sort(["t_dat", "_row"], descending=[True, True])
            .head(n_recent)
        )
        lists = {s: list(per.get(customer, ())) for s, per in recommendations.items()}
        bought = list((test_purchases or {}).get(customer, ()))
        ids = recent["article_id"].to_list() + bought + [a for listed in lists.values() for a in listed]
        attrs = _article_lookup(articles, ids)

        def row(article_id: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
            base = {"article_id": article_id, **{k: v for k, v in attrs.get(article_id, {}).items() if k != "article_id"}}
            return {**(extra or {}), **base}

        hist_rows = [row(a, {"t_dat": str(d)}) for d, a in zip(recent["t_dat"].to_list(), recent["article_id"].to_list(), strict=True)]
        out.append(
            CustomerExample(
                customer_id=customer,
                history=hist_rows,
                recommendations={s: [row(a) for a in listed] for s, listed in lists.items()},
                bought=bought,
                bought_rows=[row(a) for a in bought],
            )
        )
    return out


# ---------------------------------------------------------------- charts -----------------------------------------


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def _metric_names(metrics: Mapping[str, Mapping[str, float]]) -> list[str]:
    present = {m for values in metrics.values() for m in values}
    return [m for m in METRIC_ORDER if m in present] + sorted(present - set(METRIC_ORDER))


def _error_bars(values: Sequence[float], bounds: Sequence[Sequence[float] | None]) -> list[list[float]]:
    """matplotlib's asymmetric yerr ([below], [above]) from [lo, hi] intervals; 0 where none."""
    below, above = [], []
    for v, b in zip(values, bounds, strict=True):
        below.append(max(0.0, v - float(b[0])) if b else 0.0)
        above.append(max(0.0, float(b[1]) - v) if b else 0.0)
    return [below, above]


def plot_metrics(metrics: Mapping[str, Mapping[str, float]], path: Path,
                 intervals: Mapping[str, Mapping[str, Sequence[float]]] | None = None,
                 n_customers: int | None = None) -> Path:
    """Grouped bars: one group per metric, one bar per system; 95% intervals as error bars."""
    names = _metric_names(metrics)
    systems = list(metrics)
    fig = Figure(figsize=(max(6.0, 1.6 * len(names) + 2), 4.0))
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(systems))
    for i, system in enumerate(systems):
        xs = [j + (i - (len(systems) - 1) / 2) * width for j in range(len(names))]
        values = [float(metrics[system].get(m, 0.0) or 0.0) for m in names]
        ax.bar(xs, values, width, label=system)
        bounds = [(intervals or {}).get(system, {}).get(m) for m in names]
        with_bounds = [j for j, b in enumerate(bounds) if b]
        if with_bounds:  # error bars only where there is an interval (not on the pooled reachable share)
            pick = lambda seq: [seq[j] for j in with_bounds]  # noqa: E731
            ax.errorbar(pick(xs), pick(values), yerr=_error_bars(pick(values), pick(bounds)), fmt="none",
                        ecolor="black", elinewidth=0.8, capsize=2)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("value")
    title = "Test week: systems side by side"
    if intervals:
        title += " (95% intervals" + (f", {n_customers:,} customers)" if n_customers else ")")
    ax.set_title(title)
    ax.legend(fontsize="small")
    return _save(fig, path)


def normalise_history(history: Mapping[str, Sequence[float]] | Sequence[Mapping[str, Any]]) -> dict[str, list[float]]:
    """Dict of lists from either a dict of lists or per-epoch records (the retrieval
    trainer's ``EpochStats`` as dicts); non-numeric and nested values are dropped."""
    if isinstance(history, Mapping):
        return {k: list(v) for k, v in history.items() if isinstance(v, Sequence) and not isinstance(v, str)}
    out: dict[str, list[float]] = {}
    for i, record in enumerate(history):
        for key, value in record.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out.setdefault(key, [float("nan")] * i).append(float(value))
        for series in out.values():
            series.extend([float("nan")] * (i + 1 - len(series)))
    return out


def _loss_stems(history: Mapping[str, Sequence[float]]) -> list[str]:
    """The quantities with train_* and/or val_* series, time per epoch left out (not a training curve)."""
    stems = {k[len("train_"):] for k in history if k.startswith("train_")} | {
        k[len("val_"):] for k in history if k.startswith("val_")
    }
    return sorted(s for s in stems
                  if not s.endswith("seconds") and (history.get(f"train_{s}") or history.get(f"val_{s}")))


@dataclass
class SelectionCurve:
    """The metric a model is selected on, at each checkpoint, beside baselines' value of it."""

    metric: str
    x: list[float]
    values: list[float]
    x_label: str = "epoch"
    baselines: dict[str, float] = field(default_factory=dict)


#: Keys of a retrieval checkpoint record that are not the selection metric.
_CHECKPOINT_KEYS = ("epoch", "rows", "best")


def selection_curve(doc: Mapping[str, Any], metric: str = "top_100_accuracy",
                    baseline: str = "popularity") -> SelectionCurve | None:
    """The selection metric per checkpoint from a retrieval.json document: its ``checkpoints``
    (whose metric is the one key besides epoch, rows and best), else ``metric`` in each
    per-epoch ``history`` record's ``metrics``; `baseline`'s value from ``metrics``. None
    when the document has neither."""
    points = [c for c in doc.get("checkpoints") or () if isinstance(c, Mapping)]
    if points:
        metric = next((k for k in points[0] if k not in _CHECKPOINT_KEYS), metric)
        points = [c for c in points if isinstance(c.get(metric), (int, float))]
        epochs = [c.get("epoch") for c in points]
        by_epoch = len(set(epochs)) == len(epochs)
        x = [float(c["epoch"] if by_epoch else c.get("rows", i)) for i, c in enumerate(points)]
        label = "epoch" if by_epoch else "training rows seen"
        values = [float(c[metric]) for c in points]
    else:
        records = [r for r in doc.get("history") or () if isinstance(r, Mapping)]
        records = [r for r in records if isinstance((r.get("metrics") or {}).get(metric), (int, float))]
        x = [float(r.get("epoch", i + 1)) for i, r in enumerate(records)]
        values = [float(r["metrics"][metric]) for r in records]
        label = "epoch"
    if not values:
        return None
    reference = (doc.get("metrics") or {}).get(baseline) or {}
    baselines = {baseline: float(reference[metric])} if isinstance(reference.get(metric), (int, float)) else {}
    return SelectionCurve(metric, x, values, label, baselines)


def _plot_selection(ax: Any, name: str, curve: SelectionCurve) -> None:
    ax.plot(curve.x, curve.values, "-o", label=name, markersize=3)
    for baseline, value in curve.baselines.items():
        ax.axhline(value, linestyle="--", color="grey", label=baseline)
    ax.set_xlabel(curve.x_label)
    if curve.x_label == "epoch":
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"{name}: {curve.metric} (model selection)")
    ax.legend(fontsize="small")


def plot_training_history(
    name: str, history: Mapping[str, Sequence[float]] | Sequence[Mapping[str, Any]], path: Path,
    selection: SelectionCurve | None = None,
) -> Path | None:
    """One panel per quantity with train_* and/or val_* series against epoch, then the
    selection metric per checkpoint beside its baselines; None if nothing to plot."""
    history = normalise_history(history)
    stems = _loss_stems(history)
    n_panels = len(stems) + (selection is not None)
    if not n_panels:
        return None
    fig = Figure(figsize=(4.5 * min(n_panels, 3), 3.5 * ((n_panels + 2) // 3)))
    if selection is not None:
        _plot_selection(fig.add_subplot((n_panels + 2) // 3, min(n_panels, 3), n_panels), name, selection)
    for i, stem in enumerate(stems):
        ax = fig.add_subplot((n_panels + 2) // 3, min(n_panels, 3), i + 1)
        for prefix, style in (("train", "-o"), ("val", "--s")):
            ys = list(history.get(f"{prefix}_{stem}") or [])
            if ys:
                epochs = list(history.get("epoch") or range(1, len(ys) + 1))[: len(ys)]
                ax.plot(epochs, ys, style, label="train" if prefix == "train" else "validation", markersize=3)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"{name}: {stem}")
        ax.legend(fontsize="small")
    return _save(fig, path)


def plot_feature_importance(importance: Mapping[str, float], path: Path, top: int = 30) -> Path:
    """Horizontal bars of the `top` largest shares (in the order given, largest first), as PNG."""
    items = list(importance.items())[:top][::-1]
    fig = Figure(figsize=(8, 0.3 * len(items) + 1.5))
    ax = fig.add_subplot()
    ax.barh([n for n, _ in items], [v for _, v in items], color="#3b6ea5")
    ax.set_xlabel("share of importance (PredictionValuesChange)")
    ax.set_title("Ranking model feature importance")
    path.parent.mkdir(parents=True, exist_ok=True)
    return _save(fig, path)


def plot_recall_curves(curves: Mapping[str, Mapping[int | str, float]], path: Path) -> Path:
    """Recall@K against K (log axis), one line per system."""
    fig = Figure(figsize=(6.5, 4.0))
    ax = fig.add_subplot()
    for system, curve in curves.items():
        points = sorted((int(k), float(v)) for k, v in curve.items())
        ax.plot([p[0] for p in points], [p[1] for p in points], "-o", label=system, markersize=3)
    ax.set_xscale("log")
    ax.set_xlabel("K (candidates)")
    ax.set_ylabel("Recall@K")
    ax.set_title("Retrieval: Recall@K on the test week")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, path)


# ---------------------------------------------------------------- html -------------------------------------------


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return html.escape(str(value))


def _interval_html(bounds: Sequence[float] | None) -> str:
    if not bounds:
        return ""
    return f'<span class="ci">[{float(bounds[0]):.4f}, {float(bounds[1]):.4f}]</span>'


def _metric_table(metrics: Mapping[str, Mapping[str, float]],
                  intervals: Mapping[str, Mapping[str, Sequence[float]]] | None = None) -> str:
    names = _metric_names(metrics)
    best = {}
    for m in names:
        values = [v for s in metrics if isinstance(v := metrics[s].get(m), (int, float)) and v == v]
        best[m] = max(values) if values else None
    head = "".join(f"<th>{html.escape(m)}</th>" for m in names)
    rows = []
    for system, values in metrics.items():
        cells = []
        for m in names:
            v = values.get(m)
            if v is None:
                cells.append('<td class="muted">–</td>')
            else:
                cls = ' class="best"' if best[m] is not None and v == best[m] else ""
                ci = _interval_html((intervals or {}).get(system, {}).get(m))
                cells.append(f"<td{cls}>{_fmt(v)}{ci}</td>")
        rows.append(f'<tr><td class="name">{html.escape(system)}</td>{"".join(cells)}</tr>')
    return f'<table><tr><th class="name">system</th>{head}</tr>{"".join(rows)}</table>'


def _differences_table(differences: Mapping[str, Mapping[str, Mapping[str, Any]]], reference: str) -> str:
    """Rows: the other systems; cells: reference - system with its paired 95% interval,
    green when the interval is above 0, red when below, plain when it includes 0."""
    present = {m for by_metric in differences.values() for m in by_metric}
    names = [m for m in METRIC_ORDER if m in present] + sorted(present - set(METRIC_ORDER))
    head = "".join(f"<th>{html.escape(m)}</th>" for m in names)
    rows = []
    for system, by_metric in differences.items():
        cells = []
        for m in names:
            d = by_metric.get(m)
            if d is None:
                cells.append('<td class="muted">–</td>')
                continue
            cls = {"better": ' class="better"', "worse": ' class="worse"'}.get(verdict(d), "")
            cells.append(f"<td{cls}>{float(d['diff']):+.4f}{_interval_html(d['ci95'])}</td>")
        rows.append(f'<tr><td class="name">{html.escape(reference)} − {html.escape(system)}</td>{"".join(cells)}</tr>')
    return f'<table><tr><th class="name">paired difference</th>{head}</tr>{"".join(rows)}</table>'


def _rows_table(rows: list[dict[str, Any]], hits: set[str] | None = None, title: str | None = None) -> str:
    if not rows:
        return '<p class="muted">none</p>'
    cols = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th class=\"name\">{html.escape(c)}</th>" for c in cols)
    body = []
    for r in rows:
        cls = ' class="hit"' if hits and r.get("article_id") in hits else ""
        body.append("<tr>" + "".join(f'<td class="name"{"" if not cls else cls}>{_fmt(r.get(c, ""))}</td>' for c in cols) + "</tr>")
    caption = f"<caption>{html.escape(title)}</caption>" if title else ""
    return f"<table>{caption}<tr>{head}</tr>{''.join(body)}</table>"


def _examples_html(examples: Sequence[CustomerExample]) -> str:
    parts = []
    for ex in examples:
        hits = set(ex.bought)
        lists = "".join(
            _rows_table(rows, hits, f"{system} ({sum(r['article_id'] in hits for r in rows)} hits)")
            for system, rows in ex.recommendations.items()
        )
        parts.append(
            f'<div class="example"><h3>customer {html.escape(ex.customer_id[:16])}…</h3>'
            f"<h4>Recent purchases before the test week (newest first)</h4>{_rows_table(ex.history)}"
            f"<h4>Bought in the test week ({len(hits)} distinct)</h4>"
            f"{_rows_table(ex.bought_rows or [{'article_id': a} for a in ex.bought])}"
            f'<p class="muted">Recommended articles the customer then bought are highlighted.</p>'
            f'<h4>Recommendations</h4><div class="lists">{lists}</div></div>'
        )
    return "".join(parts)


def write_report(
    out_dir: Path | str,
    metrics: Mapping[str, Mapping[str, float]] | None = None,
    training_histories: Mapping[str, Mapping[str, Sequence[float]] | Sequence[Mapping[str, Any]]] | None = None,
    recall_curves: Mapping[str, Mapping[int | str, float]] | None = None,
    feature_importance: Mapping[str, float] | None = None,
    examples: Sequence[CustomerExample] | None = None,
    title: str = "hmrec: offline evaluation",
    context: Mapping[str, Any] | None = None,
    intervals: Mapping[str, Mapping[str, Sequence[float]]] | None = None,
    differences: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
    n_customers: int | None = None,
    reference: str = "pipeline",
    selection_curves: Mapping[str, SelectionCurve] | None = None,
) -> Path:
    """Write <out_dir>/index.html and the PNGs for the sections whose input is given; returns index.html.

    `training_histories` is model name -> history dict ({"epoch": [...],
    "train_total_loss": [...], "val_total_loss": [...], ...}); a single history dict
    (one with an "epoch" key) is accepted too, and so are per-epoch records
    ([{"epoch": 1, "train_total_loss": ..., ...}, ...], the retrieval trainer's form). `context` adds key/value lines at the top
    (test window, number of customers, ...). `intervals` (system -> metric -> [lo, hi]) and
    `differences` (system -> metric -> {"diff", "ci95"}: `reference` minus that system) are
    evaluate.json's; `n_customers` is how many customers they resample. `selection_curves`
    (model name -> SelectionCurve) adds the metric each model was selected on to its
    training-curve figure. The page is written last, atomically.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sections: list[str] = []
    missing: list[str] = []

    def add(name: str, html_parts: Sequence[str]) -> None:
        if html_parts:
            sections.extend(html_parts)
        else:
            missing.append(name)

    add("metric table", _metric_sections(out, metrics, intervals, differences, n_customers, reference))
    add("training curves", _training_sections(out, training_histories, selection_curves))
    curves = {s: c for s, c in (recall_curves or {}).items() if c}
    if curves:
        plot_recall_curves(curves, out / RECALL_PNG)
    add("Recall@K curves", [f'<h2>Retrieval: Recall@K</h2><img src="{RECALL_PNG}" alt="Recall@K curves">']
        if curves else [])
    if feature_importance:
        plot_feature_importance(dict(sorted(feature_importance.items(), key=lambda kv: -kv[1])), out / IMPORTANCE_PNG)
    add("feature importance", [(f'<h2>Ranking: feature importance</h2><img src="{IMPORTANCE_PNG}" '
                                'alt="feature importance">')] if feature_importance else [])
    add("example customers", ["<h2>Example customers</h2>" + _examples_html(examples)] if examples else [])
    return _write_page(out, title, context, sections, missing)


def _metric_sections(out: Path, metrics: Mapping[str, Mapping[str, float]] | None,
                     intervals: Mapping[str, Mapping[str, Sequence[float]]] | None,
                     differences: Mapping[str, Mapping[str, Mapping[str, Any]]] | None,
                     n_customers: int | None, reference: str) -> list[str]:
    """The metric table and chart, then the paired differences to `reference` (none without metrics)."""
    if not metrics:
        return []
    plot_metrics(metrics, out / METRICS_PNG, intervals, n_customers)
    who = f" ({n_customers:,} customers)" if n_customers is not None else ""
    noise = ""
    if intervals:
        count = f"{n_customers:,} " if n_customers is not None else ""
        noise = (f"Beneath each value: its 95% bootstrap interval over the {count}"
                 "evaluated customers (percentile bootstrap, customers resampled with replacement); "
                 "the value would likely fall in about that range for another sample of as many customers. ")
    sections = [(
        f"<h2>Metrics on the test week{html.escape(who)}</h2>{_metric_table(metrics, intervals)}"
        f'<p class="muted">Best value per metric highlighted. {html.escape(noise)}MAP@12 is the Kaggle '
        f"definition; Recall@100 and the reachable share are for candidate generators.</p>"
        f'<img src="{METRICS_PNG}" alt="metrics chart">'
    )]
    if differences:
        verdict_line = summary_line(
            {s: d for s, d in differences.items() if not s.startswith(f"{reference}_")},
            "map_at_12", reference=reference, n_customers=n_customers, label="MAP@12")
        sections.append(
            f"<h2>Is {html.escape(reference)} better? Paired differences</h2>"
            f"<p>{html.escape(verdict_line)}</p>{_differences_table(differences, reference)}"
            f'<p class="muted">{html.escape(reference)} minus each system, with the 95% interval of the '
            "difference (the same resampled customers for both systems). Green: the whole interval is "
            "above 0; red: below 0; plain: it includes 0, so this test week cannot tell the two "
            "apart at this sample size.</p>"
        )
    return sections


def _training_sections(out: Path, training_histories: Any,
                       selection_curves: Mapping[str, SelectionCurve] | None) -> list[str]:
    """One training-curve figure per model (see write_report for the accepted history forms)."""
    if isinstance(training_histories, Sequence) or (training_histories and "epoch" in training_histories):
        training_histories = {"model": training_histories}
    images = []
    selections = dict(selection_curves or {})
    histories = dict(training_histories or {})
    for name in dict.fromkeys([*histories, *selections]):
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)
        png = plot_training_history(name, histories.get(name, {}), out / f"training_{safe}.png", selections.get(name))
        if png is not None:
            images.append(f'<img src="{png.name}" alt="training curves of {html.escape(name)}">')
    if not images:
        return []
    return ["<h2>Training curves (loss per epoch, train vs validation; the selection metric "
            "per checkpoint beside popularity)</h2>" + "".join(images)]


def _write_page(out: Path, title: str, context: Mapping[str, Any] | None, sections: Sequence[str],
                missing: Sequence[str]) -> Path:
    """<out>/index.html: context lines, what is missing, then the sections; written atomically."""
    ctx = dict(context or {})
    ctx.setdefault("written", dt.datetime.now().replace(microsecond=0).isoformat())
    ctx_html = "".join(f"<li>{html.escape(str(k))}: {html.escape(str(v))}</li>" for k, v in ctx.items())
    missing_html = (
        f'<p class="muted">Not available in this run: {html.escape(", ".join(missing))}.</p>' if missing else ""
    )
    page = (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1><ul>{ctx_html}</ul>"
        f"{missing_html}{''.join(sections)}</body></html>"
    )
    target = out / INDEX_FILE
    fd, tmp = tempfile.mkstemp(dir=out, prefix=".index.", suffix=".html")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(page)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def read_report_inputs(reports_dir: Path | str) -> dict[str, Any]:
    """Collect what earlier steps wrote to <home>/reports: metrics and Recall@K curves
    (evaluate.json), feature importance (ranking.json), training history (a "history" key
    in retrieval.json or ranking.json, if present) and the retrieval model's selection metric
    per checkpoint (`selection_curve`). Missing files give missing keys."""
    reports = Path(reports_dir)
    found: dict[str, Any] = {}

    def load(name: str) -> dict[str, Any] | None:
        path = reports / name
        if not path.is_file():
            return None
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        return doc if isinstance(doc, dict) else None

    if (ev := load("evaluate.json")) is not None:
        if ev.get("metrics"):
            found["metrics"] = ev["metrics"]
        for key in ("intervals", "differences"):
            if ev.get(key):
                found[key] = ev[key]
        if isinstance(ev.get("n_customers"), int):
            found["n_customers"] = ev["n_customers"]
        if ev.get("reference"):
            found["reference"] = ev["reference"]
        if ev.get("recall_curves"):
            found["recall_curves"] = ev["recall_curves"]
    if (rk := load("ranking.json")) is not None and rk.get("feature_importance"):
        found["feature_importance"] = rk["feature_importance"]
    histories = {}
    for step in ("retrieval", "ranking"):
        doc = load(f"{step}.json")
        if doc is not None and isinstance(doc.get("history"), (dict, list)) and doc["history"]:
            histories[step] = doc["history"]
    if histories:
        found["training_histories"] = histories
    if (rt := load("retrieval.json")) is not None and (curve := selection_curve(rt)) is not None:
        found["selection_curves"] = {"retrieval": curve}
    return found


def write_evaluation_report(
    reports_dir: Path | str,
    split: EvaluationSplit,
    result: EvaluationResult,
    articles: pl.DataFrame | None = None,
    training_histories: Mapping[str, Mapping[str, Sequence[float]]] | None = None,
    feature_importance: Mapping[str, float] | None = None,
) -> Path:
    """The `hmrec evaluate` report: <reports_dir>/report/index.html from this run's result plus
    what earlier steps left in `reports_dir` (feature importance from ranking.json, training
    histories); explicit arguments win over what is found on disk."""
    found = read_report_inputs(reports_dir)
    examples = build_examples(
        sorted({c for per in result.examples.values() for c in per}),
        split.history,
        articles,
        result.examples,
        split.test_purchases(),
    )
    return write_report(
        Path(reports_dir) / REPORT_DIR,
        metrics=result.metrics,
        training_histories=training_histories or found.get("training_histories"),
        recall_curves=result.recall_curves or found.get("recall_curves"),
        feature_importance=feature_importance or found.get("feature_importance"),
        selection_curves=found.get("selection_curves"),
        examples=examples,
        intervals=result.intervals,
        differences=result.differences,
        n_customers=result.n_customers,
        reference=result.reference,
        context={
            "test week": f"{result.test_start} .. {result.test_end} (end exclusive)",
            "customers evaluated (bought in the test week)": result.n_customers,
            "evaluation seconds": round(result.seconds, 1),
        },
    )
