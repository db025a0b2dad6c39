"""Row-sparse AdamW for embedding tables: only the rows in the batch are touched.

Why: a dense optimizer step over 1.37M x 16 customer rows (plus two moment tables)
costs more than the whole rest of a training step; a batch touches at most 2048 rows.

What it does per step, for the distinct rows r of the batch (gradients of repeated
ids are summed first):

- Adam moments of r are updated with r's gradient, bias correction uses the global step
  (as torch.optim.SparseAdam / TF LazyAdam do): rows not in the batch keep stale moments
  and do not move, i.e. "lazy" Adam.
- Decoupled weight decay (AdamW) with *catch-up*: dense AdamW multiplies every row by
  (1 - lr * wd) at every step. We remember when each row was last updated and, when it
  is touched again, multiply it by (1 - lr * wd) ** (steps elapsed) before the Adam
  step. :meth:`flush` applies the pending decay to all rows (called before evaluating
  or saving), so after a flush every row has received exactly the decay dense AdamW
  would have given it. (Decaying only touched rows once per touch would leave rare
  customers practically unregularised.)

The update runs in a small C kernel (native/sparse_adamw.c: one visit per row instead of
gathers, a dozen element-wise ops and two scatters) when native_build can build it, else
in PyTorch; the two agree within float rounding (tests compare them).

The caller hands in gradients as (ids, rows): no torch.sparse tensors, so the same
code serves DistributedDataParallel (ranks all-gather ids and rows, then apply the
identical update).
"""

from __future__ import annotations

import ctypes

import numpy as np
import torch

from hmrec.retrieval import native_build

#: Step counters are kept as float32 beside the moments; exact up to 2**24 steps.
MAX_STEPS = 1 << 24
_SIGNATURES = {"hmrec_lazy_adamw_rows": (None, [ctypes.c_int64, *[ctypes.c_void_p] * 7, *[ctypes.c_float] * 7])}


class LazyRowAdamW:
    """AdamW for one embedding table, updating only touched rows (see module doc).

    Memory layout: the optimiser state of row r is one contiguous row
    ``[exp_avg (d) | exp_avg_sq (d) | last_step (1)]``, so a step does one random gather
    and one scatter into the state (the cost of a step is dominated by cache/TLB misses
    on these big tables, not by arithmetic).
    """

    def __init__(
        self,
        weight: torch.Tensor,
        lr: float = 0.01,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        native: bool = True,
        target: str | None = None,
    ) -> None:
        if weight.dtype != torch.float32 or not weight.is_contiguous():
            raise ValueError("LazyRowAdamW needs a contiguous float32 table")
        self.weight = weight  # updated in place (pass parameter.data)
        self.lr = float(lr)
        self.beta1, self.beta2 = (float(b) for b in betas)
        self.eps = float(eps)
        self.weight_decay = float(weight_decay)
        d = weight.shape[1]
        self.dim = d
        self.state = torch.zeros(weight.shape[0], 2 * d + 1, dtype=torch.float32)
        self.step_count = 0
        # target: the -march value of the kernel's build (default: native_build.march())
        self._native = native_build.load("sparse_adamw", d, _SIGNATURES, target) if native else None

    @property
    def exp_avg(self) -> torch.Tensor:
        return self.state[:, : self.dim]

    @property
    def exp_avg_sq(self) -> torch.Tensor:
        return self.state[:, self.dim : 2 * self.dim]

    @property
    def last_step(self) -> torch.Tensor:
        return self.state[:, 2 * self.dim]

    @property
    def decay_factor(self) -> float:
        """Per-step multiplicative decay of dense AdamW."""
        return 1.0 - self.lr * self.weight_decay

    @torch.no_grad()
    def step(self, ids: torch.Tensor, grad_rows: torch.Tensor, rows: torch.Tensor | None = None) -> None:
        """One AdamW step on the rows ``ids`` (may repeat) with gradients ``grad_rows``.

        ``rows`` may pass ``weight[ids]`` when the caller already gathered it (the
        forward pass did), saving one random read of the table.
        """
        if self.step_count + 1 >= MAX_STEPS:
            raise RuntimeError(f"LazyRowAdamW supports at most {MAX_STEPS} steps")
        self.step_count += 1
        t = self.step_count
        d = self.dim
        ids_np = ids.numpy()
        order = np.argsort(ids_np)  # deterministic; repeated ids are summed in this order
        sorted_ids = ids_np[order]
        first = np.empty(len(sorted_ids), dtype=bool)
        first[:1] = True
        np.not_equal(sorted_ids[1:], sorted_ids[:-1], out=first[1:])
        starts = np.flatnonzero(first)
        bias1 = 1.0 - self.beta1**t
        bias2 = 1.0 - self.beta2**t
        if self._native is not None:
            ids_u = np.ascontiguousarray(sorted_ids[starts], dtype=np.int64)
            bounds = np.append(starts, len(order)).astype(np.int64)
            order = order.astype(np.int64, copy=False)
            grad_c = grad_rows.detach().float().contiguous()
            src = rows.detach().float().contiguous() if rows is not None else None
            self._native.hmrec_lazy_adamw_rows(
                len(ids_u), ids_u.ctypes.data, order.ctypes.data, bounds.ctypes.data, grad_c.data_ptr(),
                None if src is None else src.data_ptr(), self.weight.data_ptr(), self.state.data_ptr(), float(t),
                self.decay_factor if self.weight_decay else 1.0,
                self.beta1, self.beta2, self.eps, bias2, self.lr / bias1,
            )
            return
        g_sorted = grad_rows.float().numpy()[order]
        grad_np = g_sorted if len(starts) == len(order) else np.add.reduceat(g_sorted, starts, axis=0)
        uniq = torch.from_numpy(sorted_ids[starts].astype(np.int64))
        grad = torch.from_numpy(grad_np)
        if rows is not None:
            w = rows.detach().index_select(0, torch.from_numpy(order[starts]))
        else:
            w = self.weight.index_select(0, uniq)
        st = self.state.index_select(0, uniq)
        m, v, last = st[:, :d], st[:, d : 2 * d], st[:, 2 * d]
        if self.weight_decay:
            w.mul_(torch.pow(self.decay_factor, last.sub(t).neg_()).unsqueeze(1))
        last.fill_(float(t))
        m.mul_(self.beta1).add_(grad, alpha=1.0 - self.beta1)
        v.mul_(self.beta2).addcmul_(grad, grad, value=1.0 - self.beta2)
        denom = v.div(bias2).sqrt_().add_(self.eps)
        w.addcdiv_(m, denom, value=-self.lr / bias1)
        self.weight.index_copy_(0, uniq, w)
        self.state.index_copy_(0, uniq, st)

    @torch.no_grad()
    def flush(self) -> None:
        """Apply the decay owed by rows not touched since their last update."""
        if not self.weight_decay or self.step_count == 0:
            return
        elapsed = self.last_step.sub(self.step_count).neg_()
        self.weight.mul_(torch.pow(self.decay_factor, elapsed).unsqueeze(1))
        self.state[:, 2 * self.dim] = float(self.step_count)

    def state_dict(self) -> dict:
        return {"state": self.state, "step_count": self.step_count}
