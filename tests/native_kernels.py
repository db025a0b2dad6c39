"""What the C-kernel tests share: skip marks, the portable x86-64 builds, a fresh cache."""

import pytest

from hmrec.retrieval import native_build

no_compiler = pytest.mark.skipif(native_build.compiler() is None, reason="no C compiler")
needs_kernel = pytest.mark.skipif(not native_build.enabled(), reason="native kernels turned off (HMREC_NATIVE=0)")
#: Portable x86-64 builds checked beside the native one (each where this CPU runs it).
PORTABLE = [pytest.param(m, marks=pytest.mark.skipif(not native_build.runs_here(m), reason=f"this CPU cannot run {m}"))
            for m in ("x86-64-v2", "x86-64-v3")]


@pytest.fixture(scope="module")
def fresh_cache(tmp_path_factory):
    """Kernels built anew into a temporary cache (not the user's), loaded anew."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HMREC_CACHE_DIR", str(tmp_path_factory.mktemp("kernels")))
        mp.setattr(native_build, "_loaded", {})
        yield
