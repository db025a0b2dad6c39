"""The C in-batch softmax kernel: same loss and gradients as the reference, any thread count."""

from __future__ import annotations

import math

import pytest
from native_kernels import PORTABLE, fresh_cache, needs_kernel, no_compiler  # noqa: F401 (fixture)
import torch

from hmrec.retrieval import native_build, native_loss
from hmrec.retrieval.config import TwoTowerConfig
from hmrec.retrieval.loss import in_batch_softmax_loss, native_in_batch_softmax_loss

pytestmark = no_compiler


def _inputs(b: int, d: int, seed: int, scale: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    q = (torch.randn(b, d, generator=g) * scale).requires_grad_(True)
    i = (torch.randn(b, d, generator=g) * scale).requires_grad_(True)
    keys = torch.randint(0, max(1, b // 3), (b,), generator=g)  # many accidental hits
    log_q = torch.log(torch.rand(b, generator=g) * 1e-3 + 1e-7)
    return q, i, keys, log_q


@needs_kernel
def test_the_kernel_builds_here():
    assert native_loss.available(16)


@needs_kernel
@pytest.mark.parametrize("b,d", [(1, 16), (5, 16), (37, 8), (64, 16), (300, 20), (2048, 16)])
@pytest.mark.parametrize("corrections", [False, True])
def test_value_and_gradients_equal_the_reference(b, d, corrections):
    q, i, keys, log_q = _inputs(b, d, seed=b + d)
    lq, k = (log_q, keys) if corrections else (None, None)
    ref = in_batch_softmax_loss(q, i, lq, k, corrections)
    gq, gi = torch.autograd.grad(ref, [q, i])
    got = native_in_batch_softmax_loss(q, i, lq, k, corrections, threads=2)
    nq, ni = torch.autograd.grad(got * 3.0, [q, i])  # backward scales by the upstream gradient
    assert got.item() == pytest.approx(ref.item(), rel=2e-6, abs=1e-6)
    torch.testing.assert_close(nq, 3 * gq, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(ni, 3 * gi, rtol=1e-4, atol=1e-7)


@needs_kernel
def test_bit_identical_for_any_number_of_threads():
    q, i, keys, log_q = _inputs(1000, 16, seed=7)
    runs = [native_loss.loss_and_grads(q, i, log_q, keys, threads=t) for t in (1, 2, 3, 4)]
    for value, dq, di in runs[1:]:
        assert value == runs[0][0]
        assert torch.equal(dq, runs[0][1]) and torch.equal(di, runs[0][2])


@needs_kernel
def test_extreme_logits_stay_finite_and_exact():
    # a hopeless positive (probability underflows float32) and huge logit ranges
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0], [3.0, -2.0]], requires_grad=True)
    i = torch.tensor([[-60.0, 0.0], [60.0, 1.0], [0.0, 40.0]], requires_grad=True)
    ref = in_batch_softmax_loss(q, i)
    gq, gi = torch.autograd.grad(ref, [q, i])
    got = native_in_batch_softmax_loss(q, i)
    nq, ni = torch.autograd.grad(got, [q, i])
    assert math.isfinite(got.item()) and got.item() == pytest.approx(ref.item(), rel=1e-6)
    torch.testing.assert_close(nq, gq, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ni, gi, rtol=1e-5, atol=1e-6)


@needs_kernel
def test_keys_beyond_int32_are_remapped():
    q, i, keys, log_q = _inputs(100, 16, seed=9)
    ref = in_batch_softmax_loss(q, i, log_q, keys, True)
    got = native_in_batch_softmax_loss(q, i, log_q, keys * (1 << 40) - (1 << 50), True)
    assert got.item() == pytest.approx(ref.item(), rel=2e-6)


@needs_kernel
def test_a_batch_of_one_article_repeated_has_zero_loss():
    # every column is the same article: all off-diagonal entries are hits, p(positive) = 1
    q, i, _, _ = _inputs(40, 16, seed=3)
    keys = torch.zeros(40, dtype=torch.int64)
    got = native_in_batch_softmax_loss(q, i, item_keys=keys, remove_accidental_hits=True)
    assert got.item() == pytest.approx(0.0, abs=1e-6)


@needs_kernel
@pytest.mark.parametrize("target", PORTABLE)
@pytest.mark.parametrize("b,d,corrections", [(5, 16, True), (300, 20, True), (2048, 16, True), (777, 32, False)])
def test_portable_builds_equal_the_reference(fresh_cache, target, b, d, corrections):
    # the AVX2 (8 floats) and SSE (4 floats) kernels: other vector widths and register
    # blocks, the same loss and gradients. Tolerances: float32 rounding of B-term sums
    # (loss), and of each gradient entry relative to its size
    q, i, keys, log_q = _inputs(b, d, seed=b + d)
    lq, k = (log_q, keys) if corrections else (None, None)
    ref = in_batch_softmax_loss(q, i, lq, k, corrections)
    gq, gi = torch.autograd.grad(ref, [q, i])
    value, dq, di = native_loss.loss_and_grads(q, i, lq, k, threads=2, target=target)
    assert value == pytest.approx(ref.item(), rel=2e-6, abs=1e-6)
    torch.testing.assert_close(dq, gq, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(di, gi, rtol=1e-4, atol=1e-7)


@needs_kernel
@pytest.mark.parametrize("target", PORTABLE)
def test_portable_builds_keep_extreme_logits_finite(fresh_cache, target):
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0], [3.0, -2.0]], requires_grad=True)
    i = torch.tensor([[-60.0, 0.0], [60.0, 1.0], [0.0, 40.0]], requires_grad=True)
    ref = in_batch_softmax_loss(q, i)
    gq, gi = torch.autograd.grad(ref, [q, i])
    value, dq, di = native_loss.loss_and_grads(q, i, None, None, target=target)
    assert math.isfinite(value) and value == pytest.approx(ref.item(), rel=1e-6)
    torch.testing.assert_close(dq, gq, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(di, gi, rtol=1e-5, atol=1e-6)


@needs_kernel
@pytest.mark.skipif(not native_build.runs_here("x86-64-v3"), reason="this CPU cannot run x86-64-v3 (AVX2 + FMA) code")
@pytest.mark.parametrize("b,d", [(300, 20), (2048, 16), (777, 32)])
def test_native_and_avx2_builds_are_bit_identical(fresh_cache, b, d):
    # every output is the same operations in the same order whatever the vector width
    # (16 floats on an AVX-512 CPU, 8 with AVX2), so where both use FMA the bits agree
    q, i, keys, log_q = _inputs(b, d, seed=b * d)
    native = native_loss.loss_and_grads(q, i, log_q, keys, threads=2, target="native")
    avx2 = native_loss.loss_and_grads(q, i, log_q, keys, threads=2, target="x86-64-v3")
    assert native[0] == avx2[0]
    assert torch.equal(native[1], avx2[1]) and torch.equal(native[2], avx2[2])


def test_disabled_by_environment(monkeypatch):
    monkeypatch.setattr(native_build, "_loaded", {})
    monkeypatch.setattr(native_build, "_warned_disabled", False)
    monkeypatch.setenv("HMREC_NATIVE", "0")
    with pytest.warns(RuntimeWarning, match="turned off"):
        assert not native_loss.available(16)


def test_trainer_config_chooses_the_kernel():
    from hmrec.retrieval.trainer import loss_path

    # HMREC_NATIVE=0 (or a failed build): the PyTorch loss runs
    assert loss_path(TwoTowerConfig())[0] == ("native" if native_loss.available(16) else "torch")
    assert loss_path(TwoTowerConfig(loss_kernel="torch"))[0] == "torch"
    with pytest.raises(ValueError, match="loss_kernel"):
        TwoTowerConfig(loss_kernel="cuda")
