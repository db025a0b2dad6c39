"""The C in-batch softmax kernel: same loss and gradients as the reference, any thread count."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from hmrec.retrieval import native_build, native_loss
from hmrec.retrieval.config import TwoTowerConfig
from hmrec.retrieval.loss import in_batch_softmax_loss, native_in_batch_softmax_loss

pytestmark = pytest.mark.skipif(native_build.compiler() is None, reason="no C compiler")


def _inputs(b: int, d: int, seed: int, scale: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    q = (torch.randn(b, d, generator=g) * scale).requires_grad_(True)
    i = (torch.randn(b, d, generator=g) * scale).requires_grad_(True)
    keys = torch.randint(0, max(1, b // 3), (b,), generator=g)  # many accidental hits
    log_q = torch.log(torch.rand(b, generator=g) * 1e-3 + 1e-7)
    return q, i, keys, log_q


def test_the_kernel_builds_here():
    assert native_loss.available(16)


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


def test_bit_identical_for_any_number_of_threads():
    q, i, keys, log_q = _inputs(1000, 16, seed=7)
    runs = [native_loss.loss_and_grads(q, i, log_q, keys, threads=t) for t in (1, 2, 3, 4)]
    for value, dq, di in runs[1:]:
        assert value == runs[0][0]
        assert torch.equal(dq, runs[0][1]) and torch.equal(di, runs[0][2])


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


def test_keys_beyond_int32_are_remapped():
    q, i, keys, log_q = _inputs(100, 16, seed=9)
    ref = in_batch_softmax_loss(q, i, log_q, keys, True)
    got = native_in_batch_softmax_loss(q, i, log_q, keys * (1 << 40) - (1 << 50), True)
    assert got.item() == pytest.approx(ref.item(), rel=2e-6)


def test_a_batch_of_one_article_repeated_has_zero_loss():
    # every column is the same article: all off-diagonal entries are hits, p(positive) = 1
    q, i, _, _ = _inputs(40, 16, seed=3)
    keys = torch.zeros(40, dtype=torch.int64)
    got = native_in_batch_softmax_loss(q, i, item_keys=keys, remove_accidental_hits=True)
    assert got.item() == pytest.approx(0.0, abs=1e-6)


def test_build_is_cached_and_a_broken_compiler_falls_back(tmp_path, monkeypatch):
    monkeypatch.setenv("HMREC_CACHE_DIR", str(tmp_path))
    first = native_build.build("softmax_loss", 32)
    stamp = first.stat().st_mtime_ns
    assert native_build.build("softmax_loss", 32) == first and first.stat().st_mtime_ns == stamp
    assert first.parent == tmp_path
    # a build for another CPU or flags (same kernel and size, another key) is kept: a
    # cache shared by several machines must not lose a library another one loads
    other = tmp_path / ("softmax_loss_d32_" + "0" * 16 + ".so")
    other.write_bytes(b"other machine's build")
    first.unlink()
    rebuilt = native_build.build("softmax_loss", 32)
    assert rebuilt.exists() and other.read_bytes() == b"other machine's build"
    # a compiler that fails: no library, one warning, callers take the PyTorch path
    monkeypatch.setattr(native_build, "_loaded", {})
    monkeypatch.setenv("CC", "false")
    monkeypatch.setenv("HMREC_CACHE_DIR", str(tmp_path / "other"))
    with pytest.warns(RuntimeWarning, match="not used.*PyTorch path runs instead"):
        assert native_build.load("softmax_loss", 48, {}) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning
        assert native_build.load("softmax_loss", 48, {}) is None


def test_disabled_by_environment(monkeypatch):
    monkeypatch.setattr(native_build, "_loaded", {})
    monkeypatch.setenv("HMREC_NATIVE", "0")
    assert not native_loss.available(16)


def test_trainer_config_chooses_the_kernel():
    from hmrec.retrieval.trainer import loss_path

    assert loss_path(TwoTowerConfig())[0] == "native"
    assert loss_path(TwoTowerConfig(loss_kernel="torch"))[0] == "torch"
    with pytest.raises(ValueError, match="loss_kernel"):
        TwoTowerConfig(loss_kernel="cuda")
