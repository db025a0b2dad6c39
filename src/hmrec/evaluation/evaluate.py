"""The offline evaluation harness: every system, the same test customers, one JSON.

Why a harness and not per-model scripts: a metric means something only next to the
same metric for the baselines on the same split and the same customers. Systems are plugged in as callables ``recommend(customer_ids, k) ->
{customer_id: [article_id, ...]}``, so the two-tower model and the 4-stage pipeline
(built later, in ``hmrec.serving``) join the table without this module knowing them.

A system may also expose a candidate generator (the retrieval stage, top
``candidate_k`` = 100): then it gets Recall@100 and the reachable share as well.

Output: ``<reports_dir>/evaluate.json`` =
``{"step": "evaluate", "split": "test", "seconds": ..., "metrics": {SYSTEM: {METRIC: value}}}``
plus context keys (test window, number of customers, seconds per system, Recall@K
curves of the candidate generators) and how much of each figure is noise
(``hmrec.evaluation.intervals``; docs/metrics.md):

* ``"intervals": {SYSTEM: {METRIC: [lo, hi]}}``: 95% percentile bootstrap interval of
  every per-customer metric (MAP@12, Recall@12, NDCG@12, candidate Recall@K; not the
  pooled reachable share), resampling the ``n_customers`` evaluated customers;
* ``"differences": {SYSTEM: {METRIC: {"diff": reference - SYSTEM, "ci95": [lo, hi]}}}``:
  the reference system's (``"reference"``, the pipeline) paired difference to every
  other system, the same resampled customers for both;
* ``"bootstrap"``: resamples, seed and level.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from hmrec.evaluation.baselines import (
    ALSBaseline,
    PopularityBaseline,
    PopularityByAgeBaseline,
    RepurchasePopularityBaseline,
)
from hmrec.evaluation.candidate_scores import CandidateScores
from hmrec.evaluation.intervals import (
    BOOTSTRAP_SEED,
    LEVEL,
    N_RESAMPLES,
    bootstrap_interval,
    paired_difference,
)
from hmrec.evaluation.split import (
    EvaluationInputError,
    EvaluationSplit,
    split_test_week,
)
from hmrec.retrieval.list_metrics import ListScores
from hmrec.store.atomic import write_json

#: recommend(customer_ids, k) -> {customer_id: [article_id, ...]} (best first)
RecommendFn = Callable[[Sequence[str], int], Mapping[str, Sequence[str]]]

REPORT_FILE = "evaluate.json"
#: Cut-offs of the Recall@K curve computed from each candidate list.
RECALL_CURVE = (1, 5, 10, 12, 20, 50, 100)
#: Customers per batch: bounds the lists held at once (a FULL test week has ~90k customers).
BATCH_SIZE = 20_000
#: The system whose paired differences to every other system are reported.
REFERENCE = "pipeline"


@dataclass
class System:
    """A system under evaluation: its final top-k lists and, optionally, its retrieval candidates."""

    recommend: RecommendFn | None = None
    candidates: RecommendFn | None = None


def as_system(obj: System | RecommendFn | Any) -> System:
    """Accept a System, an object with ``recommend`` (and maybe ``candidates``), or a bare callable."""
    if isinstance(obj, System):
        return obj
    if hasattr(obj, "recommend"):
        return System(recommend=obj.recommend, candidates=getattr(obj, "candidates", None))
    if callable(obj):
        return System(recommend=obj)
    raise TypeError(f"cannot evaluate {obj!r}: expected a System, an object with recommend(), or a callable")


@dataclass
class EvaluationResult:
    """Metrics per system, plus what the report needs (curves, example lists)."""

    metrics: dict[str, dict[str, float]]
    seconds: float
    n_customers: int
    test_start: str | None = None
    test_end: str | None = None
    k: int = 12
    candidate_k: int = 100
    system_seconds: dict[str, float] = field(default_factory=dict)
    recall_curves: dict[str, dict[int, float]] = field(default_factory=dict)
    #: system -> customer -> top-k list, only for the customers asked to be kept (report examples)
    examples: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    #: system -> metric -> [lo, hi]: 95% bootstrap interval over the evaluated customers
    intervals: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    #: system -> metric -> {"diff": reference - system, "ci95": [lo, hi]} (paired bootstrap)
    differences: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    reference: str = REFERENCE
    n_resamples: int = N_RESAMPLES
    bootstrap_seed: int = BOOTSTRAP_SEED
    #: system -> metric -> per-customer values, every system in the same (sorted) customer
    #: order; what the intervals resample (not written to evaluate.json)
    per_customer: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False, compare=False)

    def compute_intervals(self) -> None:
        """The 95% bootstrap interval of every per-customer metric of every system."""
        self.intervals = {
            system: {m: list(bootstrap_interval(v, self.n_resamples, self.bootstrap_seed))
                     for m, v in values.items() if m in self.metrics.get(system, {}) and len(v)}
            for system, values in self.per_customer.items()
        }

    def compare(self, reference: str | None = None, skip: Collection[str] = ()) -> None:
        """Paired differences of `reference` (default: the `reference` field) to every other
        system but those in `skip` (e.g. the system `reference` is an alias of), on every
        metric both have per customer. Nothing when `reference` was not evaluated."""
        self.reference = reference or self.reference
        ref = self.per_customer.get(self.reference)
        self.differences = {}
        if ref is None:
            return
        for system, values in self.per_customer.items():
            if system == self.reference or system in skip:
                continue
            shared = {m: paired_difference(ref[m], v, self.n_resamples, self.bootstrap_seed)
                      for m, v in values.items() if m in ref and len(v)}
            if shared:
                self.differences[system] = shared

    def to_dict(self) -> dict[str, Any]:
        """The evaluate.json document (``metrics`` per system + context keys + intervals)."""
        return {
            "step": "evaluate",
            "split": "test",
            "seconds": round(self.seconds, 3),
            "metrics": self.metrics,
            "n_customers": self.n_customers,
            "intervals": self.intervals,
            "reference": self.reference if self.differences else None,
            "differences": self.differences,
            "bootstrap": {"method": "percentile; customers resampled with replacement; differences paired",
                          "resamples": self.n_resamples, "seed": self.bootstrap_seed, "level": LEVEL},
            "test_window": {"start": self.test_start, "end_exclusive": self.test_end},
            "k": self.k,
            "candidate_k": self.candidate_k,
            "system_seconds": {s: round(v, 3) for s, v in self.system_seconds.items()},
            "recall_curves": {s: {str(c): v for c, v in curve.items()} for s, curve in self.recall_curves.items()},
        }


def _check_lists(system: str, lists: Mapping[str, Sequence[str]], known: set[str] | None) -> None:
    if not isinstance(lists, Mapping):
        raise EvaluationInputError(f"system {system!r} returned {type(lists).__name__}, expected a dict")
    if known is None:
        return
    for customer, listed in lists.items():
        if known.issuperset(listed):  # the usual case, checked in C; the loop names the culprit
            continue
        for article in listed:
            if article not in known:
                raise EvaluationInputError(
                    f"system {system!r} recommended unknown article {article!r} to customer {customer!r}"
                )


def evaluate_systems(
    actual: Mapping[str, Sequence[str]],
    systems: Mapping[str, System | RecommendFn | Any],
    k: int = 12,
    candidate_k: int = 100,
    keep_customers: Sequence[str] = (),
    known_articles: Collection[str] | None = None,
    split: EvaluationSplit | None = None,
    batch_size: int = BATCH_SIZE,
    progress: Callable[..., None] | None = None,
) -> EvaluationResult:
    """Score every system on the customers of `actual` (customer -> articles bought in the test week).

    Every system is asked for exactly the same customers (sorted), `batch_size` at a time:
    for each batch, every system in turn, candidates (top `candidate_k`) before the top-k
    lists. Metrics are summed as batches go, so no system's lists for a whole FULL test
    week are ever held, and systems that share work (the pipeline's filter policies share
    one retrieval) can reuse it within a batch. `known_articles`, when given, makes any
    recommendation outside the catalogue an error naming the system, customer and
    article. `keep_customers` selects whose lists are kept for the report's examples.
    ``progress("evaluate", customers_done, customers_total)`` is called after each batch.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    started = time.perf_counter()
    customers = sorted(c for c, bought in actual.items() if len(bought) > 0)
    known = set(known_articles) if known_articles is not None else None
    keep = set(keep_customers)
    plugged = {name: as_system(obj) for name, obj in systems.items()}
    lists = {name: ListScores(k) for name, s in plugged.items() if s.recommend is not None}
    cands = {name: CandidateScores(candidate_k, RECALL_CURVE) for name, s in plugged.items()
             if s.candidates is not None}
    seconds = {name: 0.0 for name in plugged}
    examples: dict[str, dict[str, list[str]]] = {name: {} for name in plugged} if keep else {}
    for start in range(0, len(customers), batch_size):
        batch = customers[start : start + batch_size]
        targets = {c: actual[c] for c in batch}
        kept = [c for c in batch if c in keep]
        for name, system in plugged.items():
            t0 = time.perf_counter()
            top: Mapping[str, Sequence[str]] | None = None
            if system.candidates is not None:
                found = system.candidates(batch, candidate_k)
                _check_lists(name, found, known)
                cands[name].add(targets, found)
                top = found
            if system.recommend is not None:
                top = system.recommend(batch, k)
                _check_lists(name, top, known)
                lists[name].add(targets, top)
            for c in kept:
                examples[name][c] = list(top.get(c, ()))[:k] if top is not None else []
            seconds[name] += time.perf_counter() - t0
        if progress is not None:
            progress("evaluate", min(start + batch_size, len(customers)), len(customers))
    metrics: dict[str, dict[str, float]] = {}
    curves: dict[str, dict[int, float]] = {}
    per_customer: dict[str, dict[str, np.ndarray]] = {}
    for name in plugged:
        scores: dict[str, float] = dict(lists[name].means()) if name in lists else {}
        values: dict[str, np.ndarray] = {}
        if name in lists:
            values.update(_aligned(name, lists[name].per_customer(), customers))
        if name in cands:
            cand = cands[name].means()
            scores[f"recall_at_{candidate_k}"] = cand[f"recall_at_{candidate_k}"]
            scores["reachable_share"] = cand["reachable_share"]
            curves[name] = {c: cand[f"recall_at_{c}"] for c in sorted({*RECALL_CURVE, candidate_k}) if c <= candidate_k}
            key = f"recall_at_{candidate_k}"
            values[key] = _aligned(name, cands[name].per_customer(), customers)[key]
        metrics[name] = scores
        per_customer[name] = values
    if keep:  # in the order asked for, as before batching
        examples = {name: {c: per.get(c, []) for c in keep_customers} for name, per in examples.items()}
    result = EvaluationResult(
        metrics=metrics,
        seconds=time.perf_counter() - started,
        n_customers=len(customers),
        test_start=split.test_start.isoformat() if split is not None else None,
        test_end=split.test_end.isoformat() if split is not None else None,
        k=k,
        candidate_k=candidate_k,
        system_seconds=seconds,
        recall_curves=curves,
        examples=examples,
        per_customer=per_customer,
    )
    result.compute_intervals()
    result.compare(REFERENCE)
    result.seconds = time.perf_counter() - started
    return result


def _aligned(system: str, scored: tuple[list[str], dict[str, np.ndarray]],
             customers: Sequence[str]) -> dict[str, np.ndarray]:
    """Per-customer values of `system`, checked to be for exactly the evaluated customers (sorted),
    so every system's values line up customer by customer for the paired differences."""
    ids, values = scored
    if ids != list(customers):
        raise EvaluationInputError(f"system {system!r} was scored on {len(ids):,} customers, "
                                   f"not the {len(customers):,} evaluated")
    return values


def write_evaluation(result: EvaluationResult | Mapping[str, Any], reports_dir: Path | str) -> Path:
    """Write <reports_dir>/evaluate.json atomically: a crash keeps the old one."""
    doc = result.to_dict() if isinstance(result, EvaluationResult) else dict(result)
    return write_json(Path(reports_dir) / REPORT_FILE, doc)


def pick_examples(split: EvaluationSplit, n: int = 3, seed: int = 42) -> list[str]:
    """A few test customers with some history, chosen reproducibly, for the report."""
    with_history = (
        split.history.select("customer_id")
        .unique()
        .join(split.test.select("customer_id").unique(), on="customer_id", how="inner")
        .sort("customer_id")["customer_id"]
        .to_list()
    )
    pool = with_history or split.test_customers()
    return sorted(random.Random(seed).sample(pool, min(n, len(pool))))


def fit_baselines(
    split: EvaluationSplit,
    customers: pl.DataFrame,
    articles: pl.DataFrame,
    seed: int = 42,
    als_params: Mapping[str, Any] | None = None,
) -> dict[str, System]:
    """Fit the four baselines on the split's history; ALS also serves as a candidate generator."""
    fitted = [
        PopularityBaseline(),
        PopularityByAgeBaseline(),
        RepurchasePopularityBaseline(),
        ALSBaseline(seed=seed, **dict(als_params or {})),
    ]
    out: dict[str, System] = {}
    for model in fitted:
        model.fit(split.history, customers, articles)
        out[model.name] = as_system(model)
    return out


def run_evaluation(
    transactions: pl.DataFrame,
    customers: pl.DataFrame,
    articles: pl.DataFrame,
    reports_dir: Path | str | None = None,
    extra_systems: Mapping[str, System | RecommendFn | Any] | None = None,
    seed: int = 42,
    test_days: int = 7,
    k: int = 12,
    candidate_k: int = 100,
    n_examples: int = 3,
    als_params: Mapping[str, Any] | None = None,
    batch_size: int = BATCH_SIZE,
    progress: Callable[..., None] | None = None,
) -> tuple[EvaluationSplit, EvaluationResult]:
    """Split, fit the baselines, score them and `extra_systems` side by side, write evaluate.json.

    `extra_systems` (e.g. ``{"two_tower": ..., "pipeline": ...}``) must have been
    trained without the test week; they are called with the same customers.
    """
    started = time.perf_counter()
    split = split_test_week(transactions, test_days=test_days)
    systems: dict[str, Any] = dict(fit_baselines(split, customers, articles, seed=seed, als_params=als_params))
    systems.update(extra_systems or {})
    result = evaluate_systems(
        split.test_purchases(),
        systems,
        k=k,
        candidate_k=candidate_k,
        keep_customers=pick_examples(split, n_examples, seed),
        known_articles=set(articles["article_id"].to_list()),
        split=split,
        batch_size=batch_size,
        progress=progress,
    )
    result.seconds = time.perf_counter() - started
    if reports_dir is not None:
        write_evaluation(result, reports_dir)
    return split, result
