"""Row-sparse AdamW: equals dense AdamW on touched rows; catch-up decay for the others."""

from __future__ import annotations

import pytest
import torch
from native_kernels import PORTABLE

from hmrec.retrieval import native_build
from hmrec.retrieval.sparse_adam import LazyRowAdamW

needs_compiler = pytest.mark.skipif(native_build.compiler() is None or not native_build.enabled(),
                                    reason="no C compiler, or native kernels turned off (HMREC_NATIVE=0)")


@pytest.fixture(params=["native", "torch"])
def native(request) -> bool:
    """Every behaviour test runs on the C kernel and on the PyTorch path."""
    if request.param == "native" and native_build.compiler() is None:
        pytest.skip("no C compiler")
    if request.param == "native" and not native_build.enabled():
        pytest.skip("native kernels turned off (HMREC_NATIVE=0)")
    return request.param == "native"


@needs_compiler
def test_the_c_kernel_is_built_and_used():
    assert LazyRowAdamW(torch.zeros(4, 16))._native is not None


@needs_compiler
@pytest.mark.parametrize("target", [None, *PORTABLE])
@pytest.mark.parametrize("use_rows", [True, False])
def test_c_kernel_and_torch_path_agree(use_rows, target, tmp_path, monkeypatch):
    # target None: the default build; the portable x86-64 builds are built anew in tmp_path
    if target is not None:
        monkeypatch.setenv("HMREC_CACHE_DIR", str(tmp_path))
        monkeypatch.setattr(native_build, "_loaded", {})
    g = torch.Generator().manual_seed(3)
    w0 = torch.randn(50, 16, generator=g)
    paths = []
    for native in (True, False):
        w = w0.clone()
        opt = LazyRowAdamW(w, lr=0.05, weight_decay=0.3, native=native, target=target)
        assert (opt._native is not None) == native
        gg = torch.Generator().manual_seed(4)
        for _ in range(6):
            ids = torch.randint(0, 50, (40,), generator=gg)  # repeats: gradients are summed
            grads = torch.randn(40, 16, generator=gg)
            opt.step(ids, grads, w.index_select(0, ids) if use_rows else None)
        opt.flush()
        paths.append((w, opt.state))
    torch.testing.assert_close(paths[0][0], paths[1][0], rtol=1e-4, atol=1e-5)  # FMA contraction rounds differently
    torch.testing.assert_close(paths[0][1], paths[1][1], rtol=1e-4, atol=1e-5)
    assert not torch.equal(paths[0][0], w0)


def test_matches_dense_adamw_when_every_row_is_touched(native):
    g = torch.Generator().manual_seed(0)
    w0 = torch.randn(5, 3, generator=g)
    dense = w0.clone().requires_grad_(True)
    opt = torch.optim.AdamW([dense], lr=0.1, weight_decay=0.5)
    sparse_w = w0.clone()
    sparse = LazyRowAdamW(sparse_w, lr=0.1, weight_decay=0.5, native=native)
    for _ in range(4):
        grad = torch.randn(5, 3, generator=g)
        dense.grad = grad.clone()
        opt.step()
        # rows given twice, in two halves: gradients of repeated ids are summed
        ids = torch.tensor([4, 3, 2, 1, 0, 0, 2])
        rows = torch.cat([grad[[4, 3, 2, 1]], 0.25 * grad[[0]], 0.75 * grad[[0]], torch.zeros(1, 3)])
        rows[2] = grad[2]
        sparse.step(ids, rows)
    # the C kernel rounds in another order (FMA contraction): a looser but still tight tolerance
    tol = dict(rtol=1e-4, atol=1e-5) if native else dict(rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(sparse_w, dense.detach(), **tol)


def test_untouched_rows_do_not_move_until_catch_up_decay(native):
    w = torch.ones(3, 2)
    opt = LazyRowAdamW(w, lr=0.1, weight_decay=0.2, native=native)
    for _ in range(5):
        opt.step(torch.tensor([0]), torch.ones(1, 2))
    assert torch.equal(w[1:], torch.ones(2, 2))  # lazy: rows 1, 2 not touched yet
    opt.flush()
    torch.testing.assert_close(w[1:], torch.full((2, 2), (1 - 0.1 * 0.2) ** 5))
    # a row touched after k idle steps first receives the k owed decays, then its Adam step
    w2 = torch.ones(2, 2)
    opt2 = LazyRowAdamW(w2, lr=0.1, weight_decay=0.2, native=native)
    for _ in range(3):
        opt2.step(torch.tensor([0]), torch.ones(1, 2))
    opt2.step(torch.tensor([1]), torch.zeros(1, 2))  # zero gradient: only decay applies
    assert w2[1, 0].item() == pytest.approx((1 - 0.02) ** 4, rel=1e-6)


def test_without_weight_decay_flush_changes_nothing(native):
    w = torch.ones(4, 2)
    opt = LazyRowAdamW(w, lr=0.1, native=native)
    opt.step(torch.tensor([1]), torch.ones(1, 2))
    before = w.clone()
    opt.flush()
    assert torch.equal(w, before)
