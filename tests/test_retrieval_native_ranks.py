"""The C rank kernel: the same exact ranks as the chunked NumPy scoring, ties included."""

from __future__ import annotations

import numpy as np
import pytest
from native_kernels import PORTABLE, fresh_cache, needs_kernel, no_compiler  # noqa: F401 (fixture)

from hmrec.retrieval import native_build, native_ranks
from hmrec.retrieval.metrics import ranks_of_targets

pytestmark = no_compiler


@needs_kernel
def test_hand_computed_ranks_with_ties_broken_by_catalogue_order():
    items = np.array([[1.0, 0.0], [3.0, 0.0], [2.0, 0.0], [3.0, 0.0], [0.0, 5.0]], dtype=np.float32)
    q = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    # query 0 scores: 1, 3, 2, 3, 0 -> order 1, 3, 2, 0, 4 ; query 1 scores: 0, 0, 0, 0, 5
    got = native_ranks.target_ranks(q, items, np.array([0, 0, 0, 0, 1, 1, 1]), np.array([1, 3, 2, 4, 4, 0, 3]))
    assert got.tolist() == [0, 1, 2, 4, 0, 1, 4]


@needs_kernel
@pytest.mark.parametrize("nq,n_items,dim,n_targets", [(1, 1, 17, 1), (5, 37, 17, 9), (17, 16, 16, 40),
                                                      (40, 1000, 16, 100), (300, 5003, 17, 900)])
def test_equal_to_the_numpy_path(nq, n_items, dim, n_targets):
    rng = np.random.default_rng(nq + n_items)
    q = rng.standard_normal((nq, dim)).astype(np.float32)
    items = rng.standard_normal((n_items, dim)).astype(np.float32)
    qi, ti = rng.integers(0, nq, n_targets), rng.integers(0, n_items, n_targets)
    native = ranks_of_targets(q, items, qi, ti, native=True)
    assert np.array_equal(native, ranks_of_targets(q, items, qi, ti, native=False))
    assert native.min() >= 0 and native.max() < n_items


@needs_kernel
def test_many_ties_equal_to_the_numpy_path():
    rng = np.random.default_rng(5)  # small integers: exact scores, lots of ties
    q = rng.integers(-2, 3, (50, 17)).astype(np.float32)
    items = rng.integers(-2, 3, (700, 17)).astype(np.float32)
    qi, ti = rng.integers(0, 50, 400), rng.integers(0, 700, 400)
    assert np.array_equal(ranks_of_targets(q, items, qi, ti, native=True), ranks_of_targets(q, items, qi, ti, native=False))


@needs_kernel
@pytest.mark.parametrize("target", PORTABLE)
def test_portable_builds_give_the_exact_ranks(fresh_cache, target):
    # the AVX2 and SSE kernels (8 and 4 floats per vector, smaller register blocks): ranks
    # are exact integers, so equal, ties included (small integer embeddings: many ties)
    rng = np.random.default_rng(11)
    for q, items in [(rng.standard_normal((70, 17)), rng.standard_normal((3001, 17))),
                     (rng.integers(-2, 3, (50, 16)), rng.integers(-2, 3, (700, 16)))]:
        q, items = q.astype(np.float32), items.astype(np.float32)
        qi, ti = rng.integers(0, len(q), 300), rng.integers(0, len(items), 300)
        got = native_ranks.target_ranks(q, items, qi, ti, threads=2, target=target)
        assert np.array_equal(got, ranks_of_targets(q, items, qi, ti, native=False))


@needs_kernel
def test_same_ranks_for_any_number_of_threads():
    rng = np.random.default_rng(2)
    q = rng.standard_normal((200, 17)).astype(np.float32)
    items = rng.standard_normal((3000, 17)).astype(np.float32)
    qi, ti = rng.integers(0, 200, 500), rng.integers(0, 3000, 500)
    one = native_ranks.target_ranks(q, items, qi, ti, threads=1)
    assert np.array_equal(one, native_ranks.target_ranks(q, items, qi, ti, threads=3))


def test_out_of_range_queries_are_an_error():
    q = np.zeros((2, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="query positions"):
        ranks_of_targets(q, np.zeros((3, 4), dtype=np.float32), np.array([2]), np.array([0]))
