"""In-batch softmax: hand-computed values, logQ correction, accidental hits, fused path."""

from __future__ import annotations

import math

import pytest
import torch

from hmrec.retrieval.loss import fused_in_batch_softmax_loss, in_batch_logits, in_batch_softmax_loss

Q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
I = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # logits = [[1, 1], [0, 1]]


def test_loss_equals_hand_computed_value():
    # row 0: -log(e/(e+e)) = log 2; row 1: -log(e/(1+e)) = log(1 + 1/e)
    expected = (math.log(2.0) + math.log(1.0 + math.exp(-1.0))) / 2
    assert in_batch_softmax_loss(Q, I).item() == pytest.approx(expected, abs=1e-6)


def test_logq_correction_shifts_each_column_by_minus_log_q():
    log_q = torch.log(torch.tensor([0.5, 0.01]))
    plain = in_batch_logits(Q, I)
    corrected = in_batch_logits(Q, I, log_q=log_q)
    torch.testing.assert_close(corrected - plain, -log_q.expand(2, 2))
    # row 0: logits [1 - log .5, 1 - log .01]; row 1: [0 - log .5, 1 - log .01]
    l00, l01 = 1 - math.log(0.5), 1 - math.log(0.01)
    l10, l11 = -math.log(0.5), 1 - math.log(0.01)
    expected = (-(l00 - math.log(math.exp(l00) + math.exp(l01))) - (l11 - math.log(math.exp(l10) + math.exp(l11)))) / 2
    assert in_batch_softmax_loss(Q, I, log_q=log_q).item() == pytest.approx(expected, abs=1e-5)


def test_accidental_hits_are_masked_but_not_the_positive():
    keys = torch.tensor([7, 9, 7])
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    i = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])
    logits = in_batch_logits(q, i, item_keys=keys, remove_accidental_hits=True)
    assert logits[0, 2] == float("-inf") and logits[2, 0] == float("-inf")
    assert torch.isfinite(logits.diagonal()).all()
    assert logits[1].isfinite().all()
    # row 0 after masking: logits [1, 0]; row 1: [0, 2, 0]; row 2: [(masked), 2, 3]
    expected = (
        -math.log(math.e / (math.e + 1))
        - math.log(math.exp(2) / (1 + math.exp(2) + 1))
        - math.log(math.exp(3) / (math.exp(2) + math.exp(3)))
    ) / 3
    loss = in_batch_softmax_loss(q, i, item_keys=keys, remove_accidental_hits=True)
    assert loss.item() == pytest.approx(expected, abs=1e-5)
    assert loss.item() < in_batch_softmax_loss(q, i).item()  # without masking the hit is a "negative"


@pytest.mark.parametrize("chunk,threads", [(1, 1), (3, 1), (64, 1), (3, 2), (8, 3)])
def test_fused_loss_matches_reference_value_and_gradients(chunk, threads):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(37, 8, generator=g, requires_grad=True)
    i = torch.randn(37, 8, generator=g, requires_grad=True)
    keys = torch.randint(0, 10, (37,), generator=g)
    log_q = torch.randn(37, generator=g)
    ref = in_batch_softmax_loss(q, i, log_q, keys, True)
    gq, gi = torch.autograd.grad(ref, [q, i])
    fused = fused_in_batch_softmax_loss(q, i, log_q, keys, True, chunk=chunk, threads=threads)
    fq, fi = torch.autograd.grad(fused * 2.0, [q, i])  # backward scales by the upstream gradient
    assert fused.item() == pytest.approx(ref.item(), rel=1e-6)
    torch.testing.assert_close(fq, 2 * gq, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(fi, 2 * gi, rtol=1e-5, atol=1e-7)


def test_low_precision_logits_stay_close_to_exact():
    g = torch.Generator().manual_seed(1)
    q = torch.randn(256, 16, generator=g) * 0.3
    i = torch.randn(256, 16, generator=g) * 0.3
    exact = in_batch_softmax_loss(q, i).item()
    fast = fused_in_batch_softmax_loss(q, i, low_precision=True).item()
    assert fast == pytest.approx(exact, rel=1e-2)


def test_hit_removal_without_keys_is_an_error():
    with pytest.raises(ValueError, match="item_keys"):
        in_batch_softmax_loss(Q, I, remove_accidental_hits=True)


def test_hit_pairs_equal_brute_force_comparison():
    from hmrec.retrieval.loss import accidental_hit_pairs

    keys = torch.tensor([5, 1, 5, 2, 1, 5, 9])
    rows, cols = accidental_hit_pairs(keys)
    brute = (keys[:, None] == keys[None, :]) & ~torch.eye(7, dtype=torch.bool)
    assert sorted(zip(rows.tolist(), cols.tolist())) == sorted(map(tuple, brute.nonzero().tolist()))
    assert rows.tolist() == sorted(rows.tolist())
    assert accidental_hit_pairs(torch.tensor([3, 1, 2]))[0].numel() == 0


def test_fused_loss_is_exact_when_a_positive_is_hopeless():
    # the positive's probability underflows float32: -log p must still be exact
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    i = torch.tensor([[-60.0, 0.0], [60.0, 1.0]], requires_grad=True)
    ref = in_batch_softmax_loss(q, i)
    fused = fused_in_batch_softmax_loss(q, i)
    assert math.isfinite(fused.item()) and fused.item() == pytest.approx(ref.item(), rel=1e-6)


def test_low_precision_with_logq_stays_close_to_exact():
    g = torch.Generator().manual_seed(2)
    q = torch.randn(300, 16, generator=g) * 0.3
    i = torch.randn(300, 16, generator=g) * 0.3
    log_q = torch.log(torch.rand(300, generator=g) * 1e-5 + 1e-8)  # -log q up to ~18
    exact = in_batch_softmax_loss(q, i, log_q).item()
    assert fused_in_batch_softmax_loss(q, i, log_q, low_precision=True).item() == pytest.approx(exact, rel=2e-3)
    assert fused_in_batch_softmax_loss(q, i, log_q).item() == pytest.approx(exact, rel=1e-6)


def test_fused_loss_falls_back_to_exact_rows_when_the_logit_bound_is_loose():
    # |q| * max|i| = 100 overestimates every logit of row 0 by >= 100: exp underflows there
    q = torch.tensor([[10.0, 0.0], [0.0, 1.0], [0.5, 0.5]], requires_grad=True)
    i = torch.tensor([[0.0, 10.0], [-1.0, 0.0], [0.2, 0.1]], requires_grad=True)
    keys = torch.tensor([1, 2, 1])
    log_q = torch.tensor([-1.0, -2.0, -3.0])
    ref = in_batch_softmax_loss(q, i, log_q, keys, True)
    gq, gi = torch.autograd.grad(ref, [q, i])
    fused = fused_in_batch_softmax_loss(q, i, log_q, keys, True, chunk=2)
    fq, fi = torch.autograd.grad(fused, [q, i])
    assert fused.item() == pytest.approx(ref.item(), rel=1e-6)
    torch.testing.assert_close(fq, gq, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fi, gi, rtol=1e-5, atol=1e-6)
