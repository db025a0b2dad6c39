"""The in-batch softmax loss as a small C kernel (native/softmax_loss.c), built at first use.

Why: the PyTorch fused loss (loss.py) is bound by three small-K matrix products and by
Python dispatch per row chunk; the C kernel keeps each block of logits in cache, never
writes a B x B matrix to memory, and runs its row ranges on several threads with one call each
(ctypes releases the GIL), so both cores of a small machine work on one batch.

The kernel is built per padded embedding size by native_build.py. Without a compiler,
or if the build fails, :func:`available` is False and the trainer uses the PyTorch
fused loss (same values within float rounding).

Results are bit-identical for any number of threads: the rows are always split into
the same RANGES ranges, each with its own d_item buffer, summed in a fixed order.
"""

from __future__ import annotations

import ctypes

import numpy as np
import torch

from hmrec.retrieval import native_build

#: Vector width (floats) the kernel pads the embedding size to; columns are padded to twice it.
VW = 16
#: Rows per block inside the kernel (row ranges are multiples of it).
RB = 8
#: Fixed number of row ranges per batch (see module doc); threads beyond it are idle.
RANGES = 4
_SIGNATURES = {
    "hmrec_softmax_loss_rows": (
        ctypes.c_double,
        [ctypes.c_int64, ctypes.c_int64, *[ctypes.c_void_p] * 6, ctypes.c_int64, ctypes.c_int64, ctypes.c_float,
         *[ctypes.c_void_p] * 3],
    )
}


def padded_dim(dim: int) -> int:
    """The embedding size rounded up to whole vectors (the kernel is built per padded size)."""
    return -(-dim // VW) * VW


def _library(padded: int) -> ctypes.CDLL | None:
    return native_build.load("softmax_loss", padded, _SIGNATURES)


def available(dim: int = 16) -> bool:
    """True when the kernel for this embedding size is built (building it if needed)."""
    return _library(padded_dim(dim)) is not None


def _ptr(a: np.ndarray) -> int:
    return a.ctypes.data


def _pad(x: np.ndarray, rows: int, cols: int) -> np.ndarray:
    if x.shape == (rows, cols) and x.flags.c_contiguous:
        return x
    out = np.zeros((rows, cols), dtype=np.float32)
    out[: x.shape[0], : x.shape[1]] = x
    return out


def loss_and_grads(
    query: torch.Tensor,
    item: torch.Tensor,
    log_q: torch.Tensor | None,
    item_keys: torch.Tensor | None,
    threads: int = 1,
) -> tuple[float, torch.Tensor, torch.Tensor]:
    """Mean in-batch softmax loss and its gradients w.r.t. query and item (fp32).

    item_keys: the item identity of each column; given, accidental hits (another column
    holding row r's article) are removed inside the kernel. None: no removal.
    """
    b, d = query.shape
    dp, bp = padded_dim(d), -(-b // (2 * VW)) * 2 * VW  # the kernel takes column tiles in pairs
    lib = _library(dp)
    if lib is None:
        raise RuntimeError("the native in-batch softmax is not available on this machine")
    q = _pad(query.detach().float().numpy(), bp, dp)
    it = _pad(item.detach().float().numpy(), bp, dp)
    tiles = native_build.column_tiles(it, VW)
    bias = np.full(bp, -np.inf, dtype=np.float32)
    bias[:b] = 0.0 if log_q is None else -log_q.detach().float().numpy()
    keys = has_hit = None
    if item_keys is not None:
        k = item_keys.detach().numpy().astype(np.int64, copy=False)
        keys = np.full(bp, np.iinfo(np.int32).min, dtype=np.int32)  # padding: a key no item has
        if k.size and (k.min() <= np.iinfo(np.int32).min or k.max() > np.iinfo(np.int32).max):
            k = np.unique(k, return_inverse=True)[1]
        keys[:b] = k
        _, inverse, counts = np.unique(k, return_inverse=True, return_counts=True)
        has_hit = np.zeros(bp, dtype=np.uint8)
        has_hit[:b] = counts[inverse] > 1
    dq = np.empty((bp, dp), dtype=np.float32)
    n_blocks = bp // RB
    bounds = [round(k * n_blocks / RANGES) * RB for k in range(RANGES + 1)]
    ranges = [(bounds[k], bounds[k + 1]) for k in range(RANGES) if bounds[k] < bounds[k + 1]]
    di = np.empty((len(ranges), bp, dp), dtype=np.float32)
    fn = lib.hmrec_softmax_loss_rows
    scale = float(np.float32(1.0 / b))
    keys_p = None if keys is None else _ptr(keys)
    has_hit_p = None if has_hit is None else _ptr(has_hit)

    def run(k: int) -> float:
        work = np.empty((RB, bp + VW), dtype=np.float32)
        start, stop = ranges[k]
        return fn(b, bp, _ptr(q), _ptr(it), _ptr(tiles), _ptr(bias), keys_p, has_hit_p,
                  start, stop, scale, _ptr(dq), _ptr(di[k]), _ptr(work))

    if threads > 1 and len(ranges) > 1:
        totals = list(native_build.pool(min(threads, len(ranges))).map(run, range(len(ranges))))
    else:
        totals = [run(k) for k in range(len(ranges))]
    d_item = di[0]
    for k in range(1, len(ranges)):
        d_item += di[k]
    d_query = torch.from_numpy(dq[:b, :d]) if (bp, dp) != (b, d) else torch.from_numpy(dq)
    d_item_t = torch.from_numpy(d_item[:b, :d]) if (bp, dp) != (b, d) else torch.from_numpy(d_item)
    return sum(totals) / b, d_query, d_item_t
