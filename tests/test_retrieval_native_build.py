"""native_build: the cache of built kernels, the target ISA setting, and what happens when
the compiler fails (a real compiler, or a script standing in for a broken one)."""

from __future__ import annotations

import ctypes
import hashlib
import os
import stat
import warnings
from pathlib import Path

import pytest

from hmrec.retrieval import native_build

needs_compiler = pytest.mark.skipif(native_build.compiler() is None, reason="no C compiler")
needs_loading = pytest.mark.skipif(not native_build.enabled(), reason="native kernels turned off (HMREC_NATIVE=0)")


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty cache directory for this test, and no library loaded by an earlier one."""
    monkeypatch.setenv("HMREC_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(native_build, "_loaded", {})
    return tmp_path


def _script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@needs_compiler
def test_build_is_cached_with_its_checksum(cache):
    first = native_build.build("softmax_loss", 32)
    stamp = first.stat().st_mtime_ns
    assert first.parent == cache
    assert native_build.build("softmax_loss", 32) == first and first.stat().st_mtime_ns == stamp
    checksum = first.with_name(first.name + ".sha256").read_text().split()[0]
    assert checksum == hashlib.sha256(first.read_bytes()).hexdigest()
    assert not [n for n in _files(cache) if n.endswith(".tmp")]


@needs_compiler
def test_a_corrupted_library_is_rebuilt_not_loaded(cache):
    lib = native_build.build("sparse_adamw", 24)
    good = lib.read_bytes()
    lib.write_bytes(good[: len(good) // 2])  # a truncated copy, e.g. a disk or a copy gone wrong
    assert native_build.build("sparse_adamw", 24) == lib
    assert lib.read_bytes() != good[: len(good) // 2]
    assert native_build._intact(lib)
    # a library without its checksum file is not trusted either
    lib.with_name(lib.name + ".sha256").unlink()
    lib.write_bytes(b"\x7fELF not really")
    assert native_build.build("sparse_adamw", 24) == lib and native_build._intact(lib)
    if native_build.enabled():
        assert ctypes.CDLL(str(lib)).hmrec_lazy_adamw_rows


@needs_compiler
def test_builds_for_other_cpus_and_flags_survive(cache):
    # what other machines sharing this cache (NFS) left: same kernel and size, other keys
    others = {f"softmax_loss_d16_{c * 16}.so": b"their library" for c in "0af"}
    for name, data in others.items():
        (cache / name).write_bytes(data)
        (cache / (name + ".sha256")).write_text(hashlib.sha256(data).hexdigest() + "\n")
    v2 = native_build.build("softmax_loss", 16, "x86-64-v2") if os.uname().machine == "x86_64" else None
    here = native_build.build("softmax_loss", 16)
    for name, data in others.items():
        assert (cache / name).read_bytes() == data and (cache / (name + ".sha256")).exists()
    if v2 is not None:
        assert v2 != here and v2.exists()


@needs_compiler
def test_the_target_isa_comes_from_the_environment_and_keys_the_cache(cache, monkeypatch):
    monkeypatch.delenv(native_build.MARCH_ENV, raising=False)
    assert native_build.march() == "native"
    monkeypatch.setenv(native_build.MARCH_ENV, "x86-64-v2")
    assert native_build.march() == "x86-64-v2"
    assert native_build.flag_sets("x86-64-v2")[0] == ["-O3", "-march=x86-64-v2"]
    assert native_build.flag_sets("x86-64-v2")[-1] == ["-O3"]  # the fallback without -march stays
    with pytest.raises(RuntimeError, match="not a -march value"):
        native_build.flag_sets("native -fplugin=x.so")
    # a -march the compiler does not know: the plain -O3 build is used instead
    lib = native_build.build("sparse_adamw", 8, "no-such-cpu-anywhere")
    assert lib.exists() and lib != native_build.build("sparse_adamw", 8, "native")


@needs_compiler
def test_the_compiler_version_is_part_of_the_key(cache, tmp_path, monkeypatch):
    real = native_build.compiler()
    fake = tmp_path / "bin" / "cc"
    fake.parent.mkdir()
    monkeypatch.setenv("CC", str(fake))
    paths = []
    for version in ("1.0", "2.0"):  # the same compiler path, upgraded in place
        _script(fake, f'[ "$1" = --version ] && {{ echo "wrapper cc {version}"; exit 0; }}\nexec {real} "$@"\n')
        native_build.compiler_version.cache_clear()
        paths.append(native_build.build("sparse_adamw", 8))
    native_build.compiler_version.cache_clear()
    assert native_build.compiler_version(str(fake)) == "wrapper cc 2.0"
    native_build.compiler_version.cache_clear()
    assert paths[0] != paths[1] and all(p.exists() for p in paths)


def test_a_failing_compiler_leaves_no_file_and_warns_once(cache, tmp_path, monkeypatch):
    # a compiler that writes half an output file and fails, as a real one can
    bad = _script(tmp_path / "badcc", 'while [ $# -gt 0 ]; do [ "$1" = -o ] && echo junk > "$2"; shift; done\n'
                                     'echo "badcc: error: out of cheese" >&2\nexit 1\n')
    monkeypatch.setenv("CC", bad)
    monkeypatch.setenv(native_build.DISABLE_ENV, "1")
    monkeypatch.setattr(native_build, "_warned_disabled", False)
    with pytest.raises(RuntimeError, match="out of cheese"):
        native_build.build("softmax_loss", 16)
    assert [n for n in _files(cache) if not n.startswith("badcc")] == []
    with pytest.warns(RuntimeWarning) as caught:
        assert native_build.load("softmax_loss", 48, {}) is None
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "\n" not in message and "out of cheese" in message and "PyTorch path runs instead" in message
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning for the same kernel
        assert native_build.load("softmax_loss", 48, {}) is None
    assert [n for n in _files(cache) if not n.startswith("badcc")] == []


def test_a_hanging_compiler_is_stopped_and_leaves_no_file(cache, tmp_path, monkeypatch):
    monkeypatch.setenv("CC", _script(tmp_path / "slowcc", "exec sleep 60\n"))
    monkeypatch.setattr(native_build, "COMPILE_TIMEOUT_S", 1)
    native_build.compiler_version.cache_clear()
    monkeypatch.setattr(native_build, "compiler_version", lambda cc: "slowcc")  # --version would hang too
    with pytest.raises(RuntimeError, match="ran over 1 s"):
        native_build.build("softmax_loss", 16)
    assert [n for n in _files(cache) if not n.startswith("slowcc")] == []


def test_turned_off_by_environment(cache, monkeypatch):
    monkeypatch.setenv(native_build.DISABLE_ENV, "0")
    monkeypatch.setattr(native_build, "_warned_disabled", False)
    with pytest.warns(RuntimeWarning, match="turned off"):
        assert native_build.load("softmax_loss", 16, {}) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one line in all, not one per kernel
        assert native_build.load("target_ranks", 16, {}) is None
    assert _files(cache) == []  # nothing was built


def test_a_level_this_cpu_cannot_run_is_not_loaded(cache, monkeypatch):
    # a CPU with SSE4.2 but no AVX2: x86-64-v3 code would die on its first AVX2 instruction
    monkeypatch.setattr(native_build, "_cpu_id", lambda: "flags\t: fpu sse sse2 ssse3 sse4_1 sse4_2 popcnt cx16")
    monkeypatch.setattr(native_build, "_x86", lambda: True)
    monkeypatch.setenv(native_build.DISABLE_ENV, "1")
    assert not native_build.runs_here("x86-64-v3") and native_build.runs_here("x86-64-v2")
    with pytest.warns(RuntimeWarning, match="lacks avx, avx2, fma.*PyTorch path runs instead"):
        assert native_build.load("softmax_loss", 16, {}, "x86-64-v3") is None
    assert _files(cache) == []


@needs_compiler
@needs_loading
def test_loaded_once_per_kernel_size_and_target(cache):
    sig = {"hmrec_lazy_adamw_rows": (None, [])}
    a = native_build.load("sparse_adamw", 8, sig)
    assert a is not None and native_build.load("sparse_adamw", 8, sig) is a
    if os.uname().machine == "x86_64":
        b = native_build.load("sparse_adamw", 8, sig, "x86-64-v2")
        assert b is not None and b is not a
