"""Exact target ranks against the whole catalogue in C (native/target_ranks.c).

Why: validation metrics rank every validation row's article among all 105k articles.
The NumPy path writes and re-reads a score per (query, article), hundreds of gigabytes
at full size (most of a FULL training run's time went there); the kernel keeps scores
in registers. Same definition as metrics.ranks_of_targets, which stays the fallback
when no C compiler is available.
"""

from __future__ import annotations

import ctypes
import os

import numpy as np

from hmrec.retrieval import native_build

#: Items per column tile (the kernel's layout, whatever its vector width).
VW = 16
#: Queries per block (the kernel's RB): item tiles are read once per block.
RB = 16
_SIGNATURES = {
    "hmrec_target_ranks": (None, [ctypes.c_int64, *[ctypes.c_void_p] * 6, ctypes.c_int64, ctypes.c_int64,
                                  ctypes.c_void_p])
}


def _library(dim: int, target: str | None = None) -> ctypes.CDLL | None:
    return native_build.load("target_ranks", dim, _SIGNATURES, target)


def available(dim: int, target: str | None = None) -> bool:
    """True when the kernel for this embedding size is built (building it if needed) for
    ``-march=target`` (default: native_build.march())."""
    return _library(dim, target) is not None


def target_ranks(
    query_emb: np.ndarray, item_emb: np.ndarray, query_index: np.ndarray, target_item: np.ndarray,
    threads: int | None = None, target: str | None = None,
) -> np.ndarray:
    """rank[t] = #{j : s_j > s_t} + #{j < target_t : s_j == s_t} for s = query_emb[query_index[t]] . item_emb.

    Float32 embeddings; raises RuntimeError where the kernel cannot be built. target: the
    -march value of the kernel's build (default: native_build.march()).
    """
    q = np.asarray(query_emb, dtype=np.float32)
    items = np.asarray(item_emb, dtype=np.float32)
    dim = items.shape[1]
    lib = _library(dim, target)
    if lib is None:
        raise RuntimeError("the native rank kernel is not available on this machine")
    n_items, nq = items.shape[0], q.shape[0]
    np_ = -(-n_items // VW) * VW
    padded = np.zeros((np_, dim), dtype=np.float32)
    padded[:n_items] = items
    tiles = native_build.column_tiles(padded, VW)
    bias = np.full(np_, -np.inf, dtype=np.float32)
    bias[:n_items] = 0.0
    nq_pad = -(-max(nq, 1) // RB) * RB
    qp = np.zeros((nq_pad, dim), dtype=np.float32)
    qp[:nq] = q
    qi = np.asarray(query_index, dtype=np.int64)
    order = np.argsort(qi, kind="stable")
    owner = np.ascontiguousarray(qi[order])
    target = np.ascontiguousarray(np.asarray(target_item, dtype=np.int64)[order])
    n_blocks = nq_pad // RB
    tstart = np.searchsorted(owner // RB, np.arange(n_blocks + 1)).astype(np.int64)
    out_sorted = np.zeros(len(order), dtype=np.int64)
    fn = lib.hmrec_target_ranks
    threads = max(1, threads or min(os.cpu_count() or 1, 8))
    # about 4 ranges per thread, balanced by target count (blocks differ in targets)
    n_ranges = max(1, min(n_blocks, 4 * threads))
    cuts = np.searchsorted(tstart, np.linspace(0, len(order), n_ranges + 1)).clip(0, n_blocks)
    bounds = sorted(set(int(c) for c in cuts) | {0, n_blocks})
    ranges = [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    ptr = [a.ctypes.data for a in (tiles, bias, qp, tstart, owner, target)]

    def run(r: tuple[int, int]) -> None:
        fn(np_, *ptr, r[0], r[1], out_sorted.ctypes.data)

    if threads > 1 and len(ranges) > 1:
        list(native_build.pool(threads).map(run, ranges))
    else:
        for r in ranges:
            run(r)
    out = np.empty(len(order), dtype=np.int64)
    out[order] = out_sorted
    return out
