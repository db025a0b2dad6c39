"""In-batch sampled softmax for two towers (the TFRS ``Retrieval`` task), two ways.

For a batch of B (query, positive item) pairs the logits are ``Q @ I.T`` (B x B); row i's
label is column i, every other item of the batch is a negative. Options:

- logQ correction (Yi et al., RecSys 2019): popular items are sampled as negatives
  more often, so subtract ``log q_j`` (q_j = the item's sampling probability) from
  every logit of column j. This turns the sampled softmax into an unbiased estimate of
  the full softmax and stops the model from simply down-ranking popular items.
- accidental-hit removal: if column j holds the same item as row i's positive
  (j != i), it is not a negative; its logit is set to -inf.

The loss is the mean cross-entropy over the batch (TFRS sums; Adam is insensitive to
the scale, and a mean is comparable across batch sizes).

:func:`in_batch_softmax_loss` is the exact, readable reference (plain autograd).
:func:`fused_in_batch_softmax_loss` computes the same loss AND its gradients in one
pass over row chunks of the logits, so each chunk (chunk x B floats, 2 MB at 256 x
2048) stays in the CPU cache instead of streaming a 16 MB matrix through memory
several times; backward only scales the stored gradients. Per chunk it runs one
matmul that already subtracts log q and a per-row upper bound of the logits (extra
columns), so exp cannot overflow and no max pass is needed; accidental hits are set
from a short list of (row, column) pairs instead of a B x B comparison; then exp in
place, E @ I, the row sums, and one matmul for the item gradients. Rows whose
normaliser underflows (a very loose bound) are recomputed exactly. With
``low_precision`` the logits matmul runs in bf16 (fp32 accumulation; log q and the
bound are split in two bf16 columns each so they stay exact); exp and gradients stay fp32.

:func:`native_in_batch_softmax_loss` does the same in a small C kernel (native_loss.py),
about twice as fast on one core and parallel over row ranges without Python per chunk.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F

from hmrec.retrieval import native_loss


def in_batch_logits(
    query: torch.Tensor,
    item: torch.Tensor,
    log_q: torch.Tensor | None = None,
    item_keys: torch.Tensor | None = None,
    remove_accidental_hits: bool = False,
    low_precision: bool = False,
) -> torch.Tensor:
    """B x B logits with the optional corrections applied (fp32; bf16 matmul if low_precision)."""
    if low_precision:
        logits = (query.to(torch.bfloat16) @ item.to(torch.bfloat16).T).float()
    else:
        logits = query @ item.T
    if log_q is not None:
        logits = logits - log_q.to(logits.dtype)[None, :]
    if remove_accidental_hits:
        if item_keys is None:
            raise ValueError("remove_accidental_hits needs item_keys (the item identity of each column)")
        hits = item_keys[:, None] == item_keys[None, :]
        hits.fill_diagonal_(False)
        logits = logits.masked_fill(hits, float("-inf"))
    return logits


def in_batch_softmax_loss(
    query: torch.Tensor,
    item: torch.Tensor,
    log_q: torch.Tensor | None = None,
    item_keys: torch.Tensor | None = None,
    remove_accidental_hits: bool = False,
    low_precision: bool = False,
) -> torch.Tensor:
    """Mean in-batch softmax cross-entropy (reference implementation)."""
    logits = in_batch_logits(query, item, log_q, item_keys, remove_accidental_hits, low_precision)
    labels = torch.arange(logits.shape[0], device=logits.device)
    return F.cross_entropy(logits, labels)


def accidental_hit_pairs(item_keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, column) positions i != j with item_keys[i] == item_keys[j], sorted by row.

    Listing them costs the sum of the squared group sizes (sort, then pair each member of a
    repeated group with the other members of its group), far less than a B x B
    comparison, and less than comparing all repeated rows with each other: time-local
    batches of real data repeat hundreds of best sellers.
    """
    k = item_keys.detach().cpu().numpy()
    order = np.argsort(k)  # any order of equal keys gives the same pairs
    sk = k[order]
    same_as_next = sk[1:] == sk[:-1]
    if not same_as_next.any():
        empty = torch.zeros(0, dtype=torch.int64)
        return empty, empty
    group = np.cumsum(np.concatenate([[True], ~same_as_next])) - 1
    sizes = np.bincount(group)
    starts = np.cumsum(sizes) - sizes
    members = np.flatnonzero(sizes[group] > 1)  # positions in sorted order
    reps = sizes[group[members]]
    me = np.repeat(members, reps)
    # the k-th repeat of a member pairs it with the k-th position of its group
    within = np.arange(len(me)) - np.repeat(np.cumsum(reps) - reps, reps)
    other = starts[group[me]] + within
    keep = other != me
    rows, cols = order[me[keep]], order[other[keep]]
    o = np.argsort(rows, kind="stable")
    return torch.from_numpy(rows[o].astype(np.int64)), torch.from_numpy(cols[o].astype(np.int64))


#: Rows whose softmax normaliser falls below this are recomputed exactly (see _exact_rows).
_TINY = 1e-30


def _exact_rows(rows_idx, q32, i32, neg_log_q, hit_rows, hit_cols):
    """Loss terms and gradients of a few rows, by the textbook formula (fallback path)."""
    logits = q32[rows_idx] @ i32.T
    if neg_log_q is not None:
        logits = logits + neg_log_q
    if hit_rows is not None and hit_rows.numel():
        for k, r in enumerate(rows_idx.tolist()):
            cols = hit_cols[hit_rows == r]
            logits[k, cols] = float("-inf")
    log_p = torch.log_softmax(logits, dim=1)
    ar = torch.arange(len(rows_idx))
    nll = -log_p[ar, rows_idx]
    g = log_p.exp()
    g[ar, rows_idx] -= 1.0
    return nll, g @ i32, g  # g: (rows, B); d_item contribution = g.T @ q


def _split_rows(b: int, chunk: int, parts: int) -> list[tuple[int, int]]:
    """Contiguous row ranges (multiples of chunk) for ``parts`` workers."""
    n_chunks = -(-b // chunk)
    parts = max(1, min(parts, n_chunks))
    bounds = [round(k * n_chunks / parts) * chunk for k in range(parts + 1)]
    return [(bounds[k], min(b, bounds[k + 1])) for k in range(parts) if bounds[k] < b]


_POOLS: dict[int, ThreadPoolExecutor] = {}
#: Row ranges of a batch (see forward); threads beyond this number are not used.
_RANGES = 4


def _pool(n: int) -> ThreadPoolExecutor:
    if n not in _POOLS:
        _POOLS[n] = ThreadPoolExecutor(max_workers=n, thread_name_prefix="hmrec-loss")
    return _POOLS[n]


def _chunk_pass(start, stop, qa, ia_t, i32, q32, hit_rows, hit_cols, low_precision, chunk, needs_grad, d_query):
    """Rows [start, stop): loss sum, this range's d_item^T, rows needing the exact fallback."""
    d = q32.shape[1]
    b = q32.shape[0]
    hr = hit_rows.numpy() if hit_rows is not None else None
    d_item_t = torch.zeros(d, b)
    nll = torch.empty(stop - start)
    bad_rows = []
    for s in range(start, stop, chunk):
        e = min(stop, s + chunk)
        logits = torch.mm(qa[s:e], ia_t)
        if low_precision:
            logits = logits.float()
        if hr is not None and hr.size:
            lo_, hi_ = np.searchsorted(hr, [s, e])
            if hi_ > lo_:
                logits[hit_rows[lo_:hi_] - s, hit_cols[lo_:hi_]] = float("-inf")
        positive = logits.diagonal(offset=s).clone()  # row r's positive is column r
        logits.exp_()
        prod = torch.mm(logits, i32)  # E @ I (an extra ones column for z makes MKL slower)
        z = logits.sum(dim=1)
        if float(z.min()) < _TINY:
            tiny = z < _TINY
            bad = tiny.nonzero().squeeze(1)
            bad_rows.append(bad + s)
            z.masked_fill_(tiny, 1.0)  # their terms are replaced by exact ones later
            positive.masked_fill_(tiny, 0.0)
            logits[bad] = 0.0
        out = nll[s - start : e - start]
        torch.log(z, out=out).sub_(positive)
        if needs_grad:
            inv_z = z.reciprocal_().unsqueeze(1)
            torch.mul(prod, inv_z, out=d_query[s:e])
            d_item_t.addmm_(q32[s:e].mul(inv_z).T, logits)
    for bad in bad_rows:
        nll[bad - start] = 0.0
    total = nll.sum(dtype=torch.float64)
    return total, d_item_t, bad_rows


class _FusedInBatchSoftmax(torch.autograd.Function):
    """Loss and gradients in one pass over row chunks; see the module doc.

    Per chunk of rows: L = [q, 1, -m] @ [i, -log q, 1]^T = logits - m (m: a per-row upper
    bound on the logits, so exp never overflows and needs no max pass), hits -> -inf,
    E = exp(L) in place, E @ I and the row sums z of E. With P = E / z and the positive of row r at column r:
      loss_r = log z_r - L[r, r],  dq_r = (E @ I)_r / z_r - i_r,  d_item = (q / z)^T-weighted E - q.
    """

    @staticmethod
    def forward(ctx, query, item, log_q, hit_rows, hit_cols, low_precision, chunk, threads):  # type: ignore[override]
        b, d = query.shape
        q32 = query.detach().float()
        i32 = item.detach().float()
        neg_log_q = None if log_q is None else log_q.detach().float().neg()
        # per-row upper bound of the logits: |q_r| * max |i_j| + max(-log q) (Cauchy-Schwarz)
        bound = q32.norm(dim=1) * i32.norm(dim=1).max()
        if neg_log_q is not None:
            bound = bound + neg_log_q.max()
        ones = torch.ones(b, 1)
        lq_col = neg_log_q.unsqueeze(1) if neg_log_q is not None else torch.zeros(b, 1)
        if low_precision:
            # bf16 keeps 8 bits: split -log q and -bound into a bf16 head and a bf16 remainder
            # (two columns each, partnered with exact ones) so they stay exact to ~1e-5
            def split(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                head = x.to(torch.bfloat16)
                return head, (x - head.float()).to(torch.bfloat16)

            one = ones.to(torch.bfloat16)
            lq_h, lq_l = split(lq_col)
            m_h, m_l = split(-bound.unsqueeze(1))
            qa = torch.cat([q32.to(torch.bfloat16), one, one, m_h, m_l], dim=1)
            ia_t = torch.cat([i32.to(torch.bfloat16), lq_h, lq_l, one, one], dim=1).T.contiguous()
        else:
            qa = torch.cat([q32, ones, -bound.unsqueeze(1)], dim=1)
            ia_t = torch.cat([i32, lq_col, ones], dim=1).T.contiguous()
        needs_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        d_query = torch.empty_like(q32)
        # a fixed split into ranges (each with its own d_item buffer, summed in order) makes
        # the result bit-identical whatever the number of threads that run them
        ranges = _split_rows(b, chunk, _RANGES)
        args = (qa, ia_t, i32, q32, hit_rows, hit_cols, low_precision, chunk, needs_grad, d_query)
        if threads <= 1 or len(ranges) == 1:
            parts = [_chunk_pass(*r, *args) for r in ranges]
        else:
            parts = list(_pool(min(threads, len(ranges))).map(lambda r: _chunk_pass(*r, *args), ranges))
        total = sum(p[0] for p in parts)
        bad_rows = [t for p in parts for t in p[2]]
        d_item_t = parts[0][1]
        for p in parts[1:]:
            d_item_t.add_(p[1])
        if needs_grad:
            d_query.sub_(i32)
            d_item = d_item_t.T.sub(q32)
        if bad_rows:
            bad = torch.cat(bad_rows)
            nll, dq_bad, g = _exact_rows(bad, q32, i32, neg_log_q, hit_rows, hit_cols)
            total += nll.sum(dtype=torch.float64)
            if needs_grad:
                # these rows contributed nothing above (E rows zeroed); add their exact parts
                d_query[bad] = dq_bad
                d_item.add_(g.T @ q32[bad])  # g holds the -1 of each bad row's positive ...
                d_item[bad] += q32[bad]  # ... so undo the "- q" applied to every column above
        if needs_grad:
            ctx.save_for_backward(d_query.div_(b).to(query.dtype), d_item.div_(b).to(item.dtype))
        return (total / b).to(query.dtype)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        d_query, d_item = ctx.saved_tensors
        return grad_out * d_query, grad_out * d_item, None, None, None, None, None, None


def fused_in_batch_softmax_loss(
    query: torch.Tensor,
    item: torch.Tensor,
    log_q: torch.Tensor | None = None,
    item_keys: torch.Tensor | None = None,
    remove_accidental_hits: bool = False,
    low_precision: bool = False,
    chunk: int = 256,
    threads: int = 1,
) -> torch.Tensor:
    """Same value and gradients as :func:`in_batch_softmax_loss`, cache-friendly (see module doc).

    ``threads`` > 1 splits the row chunks over that many Python threads (torch releases
    the GIL inside each op); use it with torch.set_num_threads(1) to parallelise the
    loss without a synchronisation barrier inside every small op.

    Gradients are computed in the forward pass, so call it once per backward; the
    log_q and item_keys inputs get no gradient.
    """
    hit_rows = hit_cols = None
    if remove_accidental_hits:
        if item_keys is None:
            raise ValueError("remove_accidental_hits needs item_keys (the item identity of each column)")
        hit_rows, hit_cols = accidental_hit_pairs(item_keys)
    return _FusedInBatchSoftmax.apply(
        query, item, log_q, hit_rows, hit_cols, bool(low_precision), int(chunk), int(threads)
    )


class _LossWithGrads(torch.autograd.Function):
    """A loss whose gradients were computed with it: backward only scales them."""

    @staticmethod
    def forward(ctx, query, item, loss, d_query, d_item):  # type: ignore[override]
        ctx.save_for_backward(d_query, d_item)
        return loss

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        d_query, d_item = ctx.saved_tensors
        return grad_out * d_query, grad_out * d_item, None, None, None


def native_in_batch_softmax_loss(
    query: torch.Tensor,
    item: torch.Tensor,
    log_q: torch.Tensor | None = None,
    item_keys: torch.Tensor | None = None,
    remove_accidental_hits: bool = False,
    threads: int = 1,
    precision: str = "fp32",
) -> torch.Tensor:
    """Same value and gradients as :func:`in_batch_softmax_loss` from the C kernel: fp32, or
    precision='bf16' for the AMX kernel (see native_loss.loss_and_grads).

    Raises RuntimeError where the kernel cannot be built (see native_loss.available).
    Gradients are computed in the forward pass, so call it once per backward.
    """
    if remove_accidental_hits and item_keys is None:
        raise ValueError("remove_accidental_hits needs item_keys (the item identity of each column)")
    keys = item_keys if remove_accidental_hits else None
    value, d_query, d_item = native_loss.loss_and_grads(query, item, log_q, keys, threads=threads, precision=precision)
    loss = torch.tensor(value, dtype=query.dtype)
    return _LossWithGrads.apply(query, item, loss, d_query.to(query.dtype), d_item.to(item.dtype))
