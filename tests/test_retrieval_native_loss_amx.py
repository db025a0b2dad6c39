"""The AMX (bf16 tile) in-batch softmax kernel: close to the fp32 reference, deterministic,
and chosen only where it runs."""

from __future__ import annotations

import math

import pytest
import torch

from hmrec.retrieval import native_loss
from hmrec.retrieval.config import TwoTowerConfig
from hmrec.retrieval.loss import in_batch_softmax_loss, native_in_batch_softmax_loss
from hmrec.retrieval.trainer import loss_path

amx = pytest.mark.skipif(not native_loss.amx_available(16), reason="no AMX-BF16 tiles on this CPU")


def _inputs(b: int, seed: int, scale: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    q = (torch.randn(b, 16, generator=g) * scale).requires_grad_(True)
    i = (torch.randn(b, 16, generator=g) * scale).requires_grad_(True)
    keys = torch.randint(0, max(1, b // 3), (b,), generator=g)  # many accidental hits
    log_q = torch.log(torch.rand(b, generator=g) * 1e-3 + 1e-7)
    return q, i, keys, log_q


def _close(got: torch.Tensor, want: torch.Tensor, rel: float = 3e-3) -> bool:
    """Within rel of the reference's norm, plus the hi + lo split's 2^-16 where it is zero."""
    return float((got - want).norm()) <= rel * float(want.norm()) + 1e-5


@amx
@pytest.mark.parametrize("b", [1, 5, 31, 32, 33, 300, 2048])
@pytest.mark.parametrize("corrections", [False, True])
def test_value_and_gradients_stay_close_to_the_fp32_reference(b, corrections):
    q, i, keys, log_q = _inputs(b, seed=b)
    lq, k = (log_q, keys) if corrections else (None, None)
    ref = in_batch_softmax_loss(q, i, lq, k, corrections)
    gq, gi = torch.autograd.grad(ref, [q, i])
    got = native_in_batch_softmax_loss(q, i, lq, k, corrections, threads=2, precision="bf16")
    nq, ni = torch.autograd.grad(got * 3.0, [q, i])
    # logits carry ~2^-16 relative error, the loss sums exact-enough exps: close to fp32
    assert got.item() == pytest.approx(ref.item(), rel=2e-5, abs=2e-6)
    # probabilities rounded to bf16 (2^-9 per entry) enter the gradients: errors average out
    # (b = 1, or every column one article: no negatives, the reference gradient is 0)
    assert _close(nq, 3 * gq) and _close(ni, 3 * gi)


@amx
def test_bit_identical_for_any_number_of_threads():
    q, i, keys, log_q = _inputs(1000, seed=7)
    runs = [native_loss.loss_and_grads(q, i, log_q, keys, threads=t, precision="bf16") for t in (1, 2, 4)]
    for value, dq, di in runs[1:]:
        assert value == runs[0][0]
        assert torch.equal(dq, runs[0][1]) and torch.equal(di, runs[0][2])


@amx
def test_a_negative_far_above_the_positive_is_redone_with_the_max():
    # row 0's positive scores -60 and column 1 +60: exp(120) overflows a shift by the
    # positive, so the kernel redoes that row pair with the exact max
    q = torch.tensor([[1.0] + [0.0] * 15, [0.0, 1.0] + [0.0] * 14, [3.0, -2.0] + [0.0] * 14], requires_grad=True)
    i = torch.tensor([[-60.0] + [0.0] * 15, [60.0, 1.0] + [0.0] * 14, [0.0, 40.0] + [0.0] * 14], requires_grad=True)
    ref = in_batch_softmax_loss(q, i)
    gq, gi = torch.autograd.grad(ref, [q, i])
    got = native_in_batch_softmax_loss(q, i, precision="bf16")
    nq, ni = torch.autograd.grad(got, [q, i])
    assert math.isfinite(got.item()) and got.item() == pytest.approx(ref.item(), rel=1e-5)
    assert _close(nq, gq) and _close(ni, gi)


@amx
def test_a_batch_of_one_article_repeated_has_zero_loss():
    q, i, _, _ = _inputs(40, seed=3)
    keys = torch.zeros(40, dtype=torch.int64)
    got = native_in_batch_softmax_loss(q, i, item_keys=keys, remove_accidental_hits=True, precision="bf16")
    assert got.item() == pytest.approx(0.0, abs=1e-6)


def test_other_embedding_sizes_have_no_amx_kernel():
    assert not native_loss.amx_available(32)
    q, i, _, _ = _inputs(8, seed=1)
    with pytest.raises(ValueError, match="precision"):
        native_loss.loss_and_grads(q, i, None, None, precision="fp16")


def test_trainer_picks_kernel_and_precision(monkeypatch):
    if not native_loss.available(16):
        pytest.skip("no C compiler")
    assert loss_path(TwoTowerConfig(fast_matmul=False)) == ("native", "fp32")
    assert loss_path(TwoTowerConfig(loss_kernel="torch")) == ("torch", "fp32")
    assert loss_path(TwoTowerConfig(loss_kernel="torch", fast_matmul=True)) == ("torch", "bf16")
    assert loss_path(TwoTowerConfig(output_dim=32, embedding_dim=32, hidden_dims=(32,))) == ("native", "fp32")
    # the default is fp32 whatever the CPU: a CPU with AMX does not change the precision
    monkeypatch.setattr(native_loss, "amx_available", lambda dim=16: True)
    assert loss_path(TwoTowerConfig()) == ("native", "fp32")
    assert loss_path(TwoTowerConfig(fast_matmul=True)) == ("native", "bf16")
    # a CPU without AMX: opting in to bf16 takes the PyTorch matmul or fails
    monkeypatch.setattr(native_loss, "amx_available", lambda dim=16: False)
    assert loss_path(TwoTowerConfig()) == ("native", "fp32")
    assert loss_path(TwoTowerConfig(fast_matmul=True)) == ("torch", "bf16")
    with pytest.raises(ValueError, match="AMX"):
        loss_path(TwoTowerConfig(fast_matmul=True, loss_kernel="native"))
