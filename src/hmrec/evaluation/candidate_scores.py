"""Candidate-set metrics of the evaluation harness: Recall@K at several cut-offs and the
reachable share, for systems that hand over candidate lists.

The per-list formulas (MAP@K, Recall@K, NDCG@K) and their per-customer accumulator
``ListScores`` are hmrec.retrieval.list_metrics', shared with retrieval and ranking.

* reachable share (pooled, not per customer) = the share of all distinct
  (customer, article) test purchases whose article is in that customer's candidate
  list: the ceiling on what any ranker over those candidates can hit.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from hmrec.retrieval.list_metrics import customer_order


class CandidateScores:
    """Running sums of candidate Recall@K (per customer, at every cut-off) and of the pooled
    reachable share (Recall@K curves: `curve` adds cut-offs K <= k)."""

    def __init__(self, k: int = 100, curve: Sequence[int] = ()) -> None:
        self.k = k
        self.cutoffs = sorted({*(c for c in curve if 0 < c <= k), k})
        self.n = 0
        self.recalls: dict[int, list[float]] = {c: [] for c in self.cutoffs}
        self.customers: list[str] = []
        self.reached = 0
        self.total = 0

    def add(self, actual: Mapping[str, Iterable], candidates: Mapping[str, Sequence]) -> None:
        for customer, bought in actual.items():
            relevant = set(bought)
            if not relevant:
                continue
            # where each relevant article first appears: |relevant ∩ listed[:c]| for every
            # cut-off c from one pass over the list (a FULL test week has ~90k customers)
            first: dict = {}
            for i, article in enumerate(list(candidates.get(customer, ()))[: self.k]):
                if article in relevant and article not in first:
                    first[article] = i
            positions = sorted(first.values())
            self.n += 1
            self.customers.append(customer)
            for c in self.cutoffs:
                self.recalls[c].append(bisect_left(positions, c) / len(relevant))
            self.reached += len(positions)
            self.total += len(relevant)

    def means(self) -> dict[str, float]:
        # exact sums: the means do not depend on the order customers arrive in
        out = {f"recall_at_{c}": (math.fsum(v) / self.n if self.n else 0.0) for c, v in self.recalls.items()}
        out["reachable_share"] = self.reached / self.total if self.total else 0.0
        return out

    def per_customer(self) -> tuple[list[str], dict[str, np.ndarray]]:
        """(customer ids sorted, {recall_at_C: values in that order}) for every cut-off C
        (the reachable share is pooled over purchases, not a mean over customers: no values)."""
        order = customer_order(self.customers)
        return ([self.customers[i] for i in order],
                {f"recall_at_{c}": np.asarray(v, dtype=np.float64)[order] for c, v in self.recalls.items()})
