"""The in-batch softmax loss as a small C kernel (native/softmax_loss.c), built at first use.

Why: the PyTorch fused loss (loss.py) is bound by three small-K matrix products and by
Python dispatch per row chunk; the C kernel keeps each block of logits in cache, never
writes a B x B matrix to memory, and runs its row ranges on several threads with one call each
(ctypes releases the GIL), so both cores of a small machine work on one batch.

The kernel is built per padded embedding size by native_build.py. Without a compiler,
or if the build fails, :func:`available` is False and the trainer uses the PyTorch
fused loss (same values within float rounding).

Results are bit-identical for any number of threads: the rows are always split into
the same RANGES ranges, each with its own d_item buffer, summed in a fixed order. They
are also bit-identical between builds for different instruction sets that have FMA
(HMREC_NATIVE_MARCH=native on an AVX-512 CPU and x86-64-v3, for instance): the kernel
uses its target's vector width, but every output is the same operations in the same
order (see softmax_loss.c). A build without FMA (x86-64-v2) rounds the products apart.
"""

from __future__ import annotations

import ctypes
import threading

import numpy as np
import torch

from hmrec.retrieval import native_build

#: Floats the kernel pads the embedding size to, and columns per item tile (the layout,
#: whatever the vector width of the build); columns are padded to twice it.
VW = 16
#: Rows per block inside the kernel (row ranges are multiples of it; the same for every build).
RB = 8
#: Fixed number of row ranges per batch (see module doc); threads beyond it are idle.
RANGES = 4
#: Rows per block of the AMX kernel (two tiles of 16 rows).
RB_AMX = 32
_SIGNATURES = {
    "hmrec_softmax_loss_rows": (
        ctypes.c_double,
        [ctypes.c_int64, ctypes.c_int64, *[ctypes.c_void_p] * 6, ctypes.c_int64, ctypes.c_int64, ctypes.c_float,
         *[ctypes.c_void_p] * 3],
    )
}
_AMX_SIGNATURES = {
    "hmrec_amx_init": (ctypes.c_int, []),
    "hmrec_amx_operands": (None, [ctypes.c_int64, *[ctypes.c_void_p] * 5]),
    "hmrec_softmax_loss_amx_rows": (
        ctypes.c_double,
        [ctypes.c_int64, ctypes.c_int64, *[ctypes.c_void_p] * 9, ctypes.c_int64, ctypes.c_int64, ctypes.c_float,
         *[ctypes.c_void_p] * 5],
    ),
}
_amx_ready: dict[int, bool] = {}


def padded_dim(dim: int) -> int:
    """The embedding size rounded up to whole vectors (the kernel is built per padded size)."""
    return -(-dim // VW) * VW


def _library(padded: int, target: str | None = None) -> ctypes.CDLL | None:
    return native_build.load("softmax_loss", padded, _SIGNATURES, target)


def available(dim: int = 16, target: str | None = None) -> bool:
    """True when the kernel for this embedding size is built (building it if needed) for
    ``-march=target`` (default: native_build.march())."""
    return _library(padded_dim(dim), target) is not None


def _amx_library(padded: int) -> ctypes.CDLL | None:
    """The AMX kernel, or None: it exists for an embedding size of 16 on CPUs with AMX-BF16
    (Intel Sapphire Rapids and later) where Linux grants the tile state."""
    if padded != 16:
        return None
    lib = native_build.load("softmax_loss_amx", padded, _AMX_SIGNATURES)
    if lib is None:
        return None
    if padded not in _amx_ready:
        _amx_ready[padded] = lib.hmrec_amx_init() == 0
    return lib if _amx_ready[padded] else None


def amx_available(dim: int = 16) -> bool:
    """True when the bf16 AMX kernel runs here (see :func:`loss_and_grads`, precision='bf16')."""
    return _amx_library(padded_dim(dim)) is not None


def _ptr(a: np.ndarray) -> int:
    return a.ctypes.data


def _pad(x: np.ndarray, rows: int, cols: int) -> np.ndarray:
    if x.shape == (rows, cols) and x.flags.c_contiguous:
        return x
    out = np.zeros((rows, cols), dtype=np.float32)
    out[: x.shape[0], : x.shape[1]] = x
    return out


def _row_ranges(bp: int, block: int) -> list[tuple[int, int]]:
    """RANGES fixed row ranges of whole blocks (empty ones dropped)."""
    n_blocks = bp // block
    bounds = [round(k * n_blocks / RANGES) * block for k in range(RANGES + 1)]
    return [(bounds[k], bounds[k + 1]) for k in range(RANGES) if bounds[k] < bounds[k + 1]]


class _Scratch(threading.local):
    """Per-thread work buffers, reused across calls: fresh ones (hundreds of KB) would be
    mapped and zeroed by the OS on every call."""

    def __init__(self) -> None:
        self.buffers: dict[tuple, tuple[np.ndarray, int]] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: type) -> tuple[np.ndarray, int]:
        """The buffer and its address."""
        key = (name, shape, dtype)
        if key not in self.buffers:
            a = np.empty(shape, dtype=dtype)
            self.buffers[key] = (a, _ptr(a))
        return self.buffers[key]


_scratch = _Scratch()


def _hit_groups(keys: np.ndarray, bp: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Columns grouped by article, from one sort of the keys.

    Returns (group of each column as int32, padded to bp with -1; 1 where the row's
    article is in another column too; group_start; members: columns sorted by group).
    """
    b = keys.shape[0]
    order = np.argsort(keys)  # the order inside a group does not matter
    sorted_keys = keys[order]
    first = np.empty(b, dtype=bool)
    first[:1] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=first[1:])
    starts = np.flatnonzero(np.append(first, True)).astype(np.int32)
    group = np.full(bp, -1, dtype=np.int32)
    group[order] = np.cumsum(first) - 1
    has_hit = np.zeros(bp, dtype=np.uint8)
    has_hit[:b] = np.diff(starts)[group[:b]] > 1
    return group, has_hit, starts, order.astype(np.int32)


def loss_and_grads(
    query: torch.Tensor,
    item: torch.Tensor,
    log_q: torch.Tensor | None,
    item_keys: torch.Tensor | None,
    threads: int = 1,
    precision: str = "fp32",
    target: str | None = None,
) -> tuple[float, torch.Tensor, torch.Tensor]:
    """Mean in-batch softmax loss and its gradients w.r.t. query and item.

    item_keys: the item identity of each column; given, accidental hits (another column
    holding row r's article) are removed inside the kernel. None: no removal.
    precision: 'fp32' (softmax_loss.c, exact up to float rounding) or 'bf16' (the AMX
    kernel, softmax_loss_amx.c: logits to ~2^-16, gradient products with bf16
    probabilities; needs :func:`amx_available`).
    target: the -march value of the fp32 kernel's build (default: native_build.march()).
    """
    b, d = query.shape
    dp, bp = padded_dim(d), -(-b // (2 * VW)) * 2 * VW  # the kernels take column tiles in pairs
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    lib = _library(dp, target) if precision == "fp32" else _amx_library(dp)
    if lib is None:
        raise RuntimeError(f"the native {precision} in-batch softmax is not available on this machine")
    q = _pad(query.detach().float().numpy(), bp, dp)
    it = _pad(item.detach().float().numpy(), bp, dp)
    bias = np.full(bp, -np.inf, dtype=np.float32)
    bias[:b] = 0.0 if log_q is None else -log_q.detach().float().numpy()
    groups = None
    if item_keys is not None and b > 0:
        groups = _hit_groups(item_keys.detach().numpy(), bp)
    dq = np.empty((bp, dp), dtype=np.float32)
    ranges = _row_ranges(bp, RB if precision == "fp32" else RB_AMX)
    scale = float(np.float32(1.0 / b))

    if precision == "fp32":
        di = np.empty((len(ranges), bp, dp), dtype=np.float32)
        tiles = native_build.column_tiles(it, VW)
        # padding columns get group -1: a key no row has
        keys_p, has_hit_p = (None, None) if groups is None else (_ptr(groups[0]), _ptr(groups[1]))
        ptrs = (_ptr(q), _ptr(it), _ptr(tiles), _ptr(bias), keys_p, has_hit_p)

        def run(k: int) -> float:
            work = _scratch.get("fp32_work", (RB, bp + VW), np.float32)[1]
            start, stop = ranges[k]
            return lib.hmrec_softmax_loss_rows(b, bp, *ptrs, start, stop, scale, _ptr(dq), _ptr(di[k]), work)
    else:
        di = _scratch.get("amx_di", (len(ranges), bp, dp), np.float32)[0]  # summed into a new array below
        q_hl = np.empty((bp, 32), dtype=np.uint16)
        it_logit = np.empty((bp // 16, 2, 16, 32), dtype=np.uint16)
        it_pair = np.empty((2, bp // 2, 16, 2), dtype=np.uint16)
        lib.hmrec_amx_operands(bp, _ptr(q), _ptr(it), _ptr(q_hl), _ptr(it_logit), _ptr(it_pair))
        hit_ptrs: tuple = (None, None, None)
        if groups is not None:
            row_group = np.where(groups[1] > 0, groups[0], np.int32(-1))  # -1: no hit to remove
            hit_ptrs = (_ptr(row_group), _ptr(groups[2]), _ptr(groups[3]))
        ptrs = (_ptr(q), _ptr(it), _ptr(q_hl), _ptr(it_logit), _ptr(it_pair), _ptr(bias), *hit_ptrs)

        out = (_ptr(dq), *(_ptr(di[k]) for k in range(len(ranges))))

        def run(k: int) -> float:
            work = _scratch.get("amx_work", (RB_AMX + 1, bp), np.float32)[1]
            er = _scratch.get("amx_er", (RB_AMX, bp + 32), np.uint16)[1]
            ev = _scratch.get("amx_ev", (bp // 16, 16, 32), np.uint16)[1]  # no row of it is read before written
            start, stop = ranges[k]
            return lib.hmrec_softmax_loss_amx_rows(b, bp, *ptrs, start, stop, scale, out[0], out[1 + k], work, er, ev)

    if threads > 1 and len(ranges) > 1:
        totals = list(native_build.pool(min(threads, len(ranges))).map(run, range(len(ranges))))
    else:
        totals = [run(k) for k in range(len(ranges))]
    d_item = di[0] if precision == "fp32" else di[0].copy()
    for k in range(1, len(ranges)):
        d_item += di[k]
    if precision == "bf16":  # tiles of dims x items -> rows
        d_item = d_item.reshape(bp // 16, 16, 16).transpose(0, 2, 1).reshape(bp, 16)
    d_query = torch.from_numpy(dq[:b, :d]) if (bp, dp) != (b, d) else torch.from_numpy(dq)
    d_item_t = torch.from_numpy(np.ascontiguousarray(d_item[:b, :d]))
    return sum(totals) / b, d_query, d_item_t
