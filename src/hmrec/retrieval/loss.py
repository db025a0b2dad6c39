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
several times; backward only scales the stored gradients. Per chunk: one matmul (with
-log q folded in as an extra column), accidental hits set from a short list of
(row, column) pairs instead of a B x B comparison, one row-wise softmax kernel (one exp
per logit), and two matmuls for the gradients. With ``low_precision`` the logits
matmul runs in bf16 (fp32 accumulation); softmax and gradients stay fp32.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


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

    Repeated items in a batch are few, so listing them (sort, then pair up members of
    repeated groups) is far cheaper than a B x B comparison.
    """
    k = item_keys.detach().cpu().numpy()
    order = np.argsort(k, kind="stable")
    sk = k[order]
    same_as_next = sk[1:] == sk[:-1]
    if not same_as_next.any():
        empty = torch.zeros(0, dtype=torch.int64)
        return empty, empty
    group = np.cumsum(np.concatenate([[True], ~same_as_next])) - 1
    member = np.bincount(group)[group] > 1
    idx, g = order[member], group[member]
    pair = g[:, None] == g[None, :]
    np.fill_diagonal(pair, False)
    a, b = np.nonzero(pair)
    rows, cols = idx[a], idx[b]
    o = np.argsort(rows, kind="stable")
    return torch.from_numpy(rows[o].astype(np.int64)), torch.from_numpy(cols[o].astype(np.int64))


#: Below this softmax probability of the positive, its -log is recomputed with log_softmax.
_TINY = 1e-30


class _FusedInBatchSoftmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, query, item, log_q, hit_rows, hit_cols, low_precision, chunk):  # type: ignore[override]
        b = query.shape[0]
        q32 = query.detach().float()
        i32 = item.detach().float()
        # Fold "- log q" into the matmul: [q, 1] @ [i, -log q]^T. In bf16, -log q (up to ~17)
        # is split into a bf16 high part and a bf16 remainder so it stays exact to ~1e-5.
        qa, ia = q32, i32
        ones = torch.ones(b, 1)
        if low_precision:
            if log_q is None:
                qa, ia = q32.to(torch.bfloat16), i32.to(torch.bfloat16)
            else:
                neg = log_q.detach().float().neg().unsqueeze(1)
                hi = neg.to(torch.bfloat16)
                lo = (neg - hi.float()).to(torch.bfloat16)
                qa = torch.cat([q32, ones, ones], dim=1).to(torch.bfloat16)
                ia = torch.cat([i32.to(torch.bfloat16), hi, lo], dim=1)
        elif log_q is not None:
            qa = torch.cat([q32, ones], dim=1)
            ia = torch.cat([i32, log_q.detach().float().neg().unsqueeze(1)], dim=1)
        ia_t = ia.T
        hr = hit_rows.numpy() if hit_rows is not None else None
        d_query = torch.empty_like(q32)
        d_item = torch.zeros_like(i32)
        total = torch.zeros((), dtype=torch.float64)
        needs_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        for s in range(0, b, chunk):
            e = min(b, s + chunk)
            rows = torch.arange(e - s)
            diag = rows + s
            logits = torch.mm(qa[s:e], ia_t)
            if low_precision:
                logits = logits.float()
            if hr is not None and hr.size:
                lo_, hi_ = np.searchsorted(hr, [s, e])
                if hi_ > lo_:
                    logits[hit_rows[lo_:hi_] - s, hit_cols[lo_:hi_]] = float("-inf")
            p = torch.softmax(logits, dim=1)  # one row-wise kernel: max, exp+sum, scale (rows stay in L1)
            p_pos = p[rows, diag]
            nll = p_pos.log().neg_()
            tiny = p_pos < _TINY  # -log(p) would lose precision: recompute those rows exactly
            if bool(tiny.any()):
                t = tiny.nonzero().squeeze(1)
                nll[t] = -torch.log_softmax(logits[t], dim=1)[torch.arange(len(t)), diag[t]]
            total += nll.sum(dtype=torch.float64)
            if needs_grad:
                p[rows, diag] -= 1.0  # softmax - onehot = B * dLoss/dlogits
                torch.mm(p, i32, out=d_query[s:e])
                d_item.addmm_(p.T, q32[s:e])
        if needs_grad:
            ctx.save_for_backward(d_query.div_(b).to(query.dtype), d_item.div_(b).to(item.dtype))
        return (total / b).to(query.dtype)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        d_query, d_item = ctx.saved_tensors
        return grad_out * d_query, grad_out * d_item, None, None, None, None, None


def fused_in_batch_softmax_loss(
    query: torch.Tensor,
    item: torch.Tensor,
    log_q: torch.Tensor | None = None,
    item_keys: torch.Tensor | None = None,
    remove_accidental_hits: bool = False,
    low_precision: bool = False,
    chunk: int = 256,
) -> torch.Tensor:
    """Same value and gradients as :func:`in_batch_softmax_loss`, cache-friendly (see module doc).

    Gradients are computed in the forward pass, so call it once per backward; the
    log_q and item_keys inputs get no gradient.
    """
    hit_rows = hit_cols = None
    if remove_accidental_hits:
        if item_keys is None:
            raise ValueError("remove_accidental_hits needs item_keys (the item identity of each column)")
        hit_rows, hit_cols = accidental_hit_pairs(item_keys)
    return _FusedInBatchSoftmax.apply(query, item, log_q, hit_rows, hit_cols, bool(low_precision), int(chunk))
