"""Build and load the C kernels in ``native/`` at first use (no build step at install).

Why at run time: the kernels are compiled for the instruction set of the machine that
trains and with the embedding size as a compile-time constant, so the inner loops are
fully unrolled vector code. A kernel is a single C file with no dependency beyond libm;
building one takes well under a second.

Target ISA: ``-march=$HMREC_NATIVE_MARCH``, default ``native`` (the CPU this runs on).
Any value gcc accepts works, e.g. ``x86-64-v3`` (AVX2 + FMA) or ``x86-64-v2`` (SSE4.2),
for a cache shared by several kinds of machines or to compare builds. The kernels pick
their vector width from what the target has (16 floats with AVX-512, 8 with AVX2, 4
otherwise), with register blocks sized for it. If no flag set with ``-march`` compiles,
a plain ``-O3`` build is tried. An x86-64 level this CPU lacks flags for is not loaded
(it would end the process at its first such instruction); for other -march values the
user answers for it. ``HMREC_NATIVE=0`` never builds or loads a kernel.

The compiler is $CC, else ``cc``, ``gcc`` or ``clang`` on the PATH. Libraries are kept
in HMREC_CACHE_DIR, else $XDG_CACHE_HOME/hmrec, else ~/.cache/hmrec, named with a hash of
the source, the compiler and its version, the flags and (for ``-march=native``) the
CPU's feature list, so any change builds a new library. Builds for other flags or CPUs
are never removed: a cache directory shared by several machines (NFS) must not lose a
library another machine is about to load. A build writes a temporary file, writes the
library's sha256 beside it (``<library>.sha256``) and renames the library into place, so
parallel processes never load half a library; a library whose bytes do not match its
sha256 is rebuilt, not loaded. When a kernel cannot be used, :func:`load` returns None
after one warning line saying why, and the callers use their PyTorch path (same results
within float rounding).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import re
import shutil
import subprocess
import tempfile
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

SOURCES = Path(__file__).with_name("native")
#: Set HMREC_NATIVE=0 to never build or load a kernel (the PyTorch paths run).
DISABLE_ENV = "HMREC_NATIVE"
#: The gcc -march value the kernels are built for (default "native").
MARCH_ENV = "HMREC_NATIVE_MARCH"
DEFAULT_MARCH = "native"
#: Seconds a compiler call may take before the build counts as failed.
COMPILE_TIMEOUT_S = 120
_MARCH_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")

_lock = threading.Lock()
_loaded: dict[tuple[str, int, str], ctypes.CDLL | None] = {}
_pools: dict[int, ThreadPoolExecutor] = {}
_warned_disabled = False


def enabled() -> bool:
    """False when the user turned the kernels off (HMREC_NATIVE=0)."""
    return os.environ.get(DISABLE_ENV, "1") != "0"


def march() -> str:
    """The -march value builds use: $HMREC_NATIVE_MARCH, else 'native'."""
    return os.environ.get(MARCH_ENV, "").strip() or DEFAULT_MARCH


def flag_sets(target: str) -> tuple[list[str], ...]:
    """Compiler flag sets, tried in order: the first that compiles is used."""
    if not _MARCH_RE.fullmatch(target):
        raise RuntimeError(f"{MARCH_ENV}={target!r} is not a -march value")
    return (["-O3", f"-march={target}"], ["-O3"])


def cache_dir() -> Path:
    """Where built kernels are kept (created on demand)."""
    env = os.environ.get("HMREC_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hmrec"


def compiler() -> str | None:
    """The C compiler to use, or None."""
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


@functools.lru_cache(maxsize=None)
def compiler_version(cc: str) -> str:
    """First line of ``cc --version`` ('' when it says nothing): part of the cache key."""
    try:
        done = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return ""
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0].strip() if lines else ""


def _cpu_id() -> str:
    """Something that changes when the CPU's instruction set does (for -march=native)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


#: CPU flags (as /proc/cpuinfo names them) code built for an x86-64 level needs.
X86_LEVELS = {
    "x86-64": (),
    "x86-64-v2": ("ssse3", "sse4_1", "sse4_2", "popcnt", "cx16"),
    "x86-64-v3": ("ssse3", "sse4_1", "sse4_2", "popcnt", "cx16", "avx", "avx2", "fma", "bmi1", "bmi2", "f16c",
                  "movbe"),
}


def _x86() -> bool:
    return platform.machine() in ("x86_64", "AMD64")


def _missing_flags(target: str) -> list[str]:
    """The CPU flags an x86-64 level needs that this CPU lacks."""
    flags = set(_cpu_id().partition(":")[2].split())
    return [f for f in X86_LEVELS[target] if f not in flags]


def runs_here(target: str) -> bool:
    """True when code built for ``-march=target`` can run on this CPU: 'native', and the
    x86-64 levels of X86_LEVELS on an x86-64 CPU with their flags; False for others."""
    if target == "native":
        return True
    return target in X86_LEVELS and _x86() and not _missing_flags(target)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _intact(lib: Path) -> bool:
    """True when lib exists and its bytes match the sha256 written when it was built."""
    try:
        want = lib.with_name(lib.name + ".sha256").read_text().split()[0]
        return _sha256(lib) == want
    except (OSError, IndexError):
        return False


def _remove(path: str | Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _one_line(text: str, limit: int = 300) -> str:
    """The last non-empty line of a compiler's output (its error, usually), shortened."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    line = lines[-1] if lines else "no output"
    return line if len(line) <= limit else line[: limit - 3] + "..."


def build(name: str, dim: int, target: str | None = None) -> Path:
    """Compile ``native/<name>.c`` with -DDIM=dim for ``-march=target`` (default:
    :func:`march`); returns the shared library's path. Raises RuntimeError with a one-line
    reason when no flag set compiles."""
    cc = compiler()
    if cc is None:
        raise RuntimeError("no C compiler found (set CC, or install cc/gcc)")
    target = target or march()
    source_path = SOURCES / f"{name}.c"
    source = source_path.read_bytes()
    errors = []
    for flags in flag_sets(target):
        args = [*flags, "-fno-math-errno", "-fPIC", "-shared", f"-DDIM={dim}"]
        parts = [source, " ".join([cc, *args]).encode(), compiler_version(cc).encode()]
        if "-march=native" in flags:  # the instruction set depends on the CPU this runs on
            parts.append(_cpu_id().encode())
        key = hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]
        out = cache_dir() / f"{name}_d{dim}_{key}.so"
        if _intact(out):
            return out
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so.tmp", dir=out.parent)
        os.close(fd)
        try:
            try:
                done = subprocess.run([cc, *args, "-o", tmp, str(source_path), "-lm"], capture_output=True,
                                      text=True, timeout=COMPILE_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                errors.append(f"{' '.join(flags)}: compiler ran over {COMPILE_TIMEOUT_S} s")
                continue
            except OSError as exc:
                errors.append(f"{' '.join(flags)}: {exc}")
                continue
            if done.returncode != 0:
                errors.append(f"{' '.join(flags)}: {_one_line(done.stderr or done.stdout)}")
                continue
            # the checksum goes in place first: a reader that sees the new library also
            # sees its checksum (a reader between the two renames rebuilds, harmlessly)
            digest = _sha256(Path(tmp))
            fd, tmp_sum = tempfile.mkstemp(suffix=".sha256.tmp", dir=out.parent)
            with os.fdopen(fd, "w") as f:
                f.write(digest + "\n")
            os.replace(tmp_sum, out.with_name(out.name + ".sha256"))
            os.replace(tmp, out)
            return out
        finally:
            _remove(tmp)  # gone already after a successful rename
    raise RuntimeError(f"building native/{name}.c failed: " + "; ".join(errors))


def load(
    name: str, dim: int, signatures: dict[str, tuple[object, list[object]]], target: str | None = None
) -> ctypes.CDLL | None:
    """The kernel library for (name, dim, -march=target) with its functions' ctypes
    signatures set, or None.

    ``signatures``: function name -> (restype, argtypes). ``target``: the -march value,
    default :func:`march`. None (with one warning line per kernel, or one in all when
    HMREC_NATIVE=0) when building or loading fails or the kernels are turned off.
    """
    global _warned_disabled
    target = target or march()
    key = (name, dim, target)
    with _lock:
        if not enabled():
            if not _warned_disabled:
                _warned_disabled = True
                warnings.warn(f"native kernels turned off ({DISABLE_ENV}=0); the PyTorch paths run instead",
                              RuntimeWarning, stacklevel=2)
            return None
        if key not in _loaded:
            lib = None
            try:
                if target in X86_LEVELS and _x86() and _missing_flags(target):
                    # loading it would end the process at the first instruction it lacks
                    raise RuntimeError(f"this CPU lacks {', '.join(_missing_flags(target))}, which "
                                       f"-march={target} code uses")
                lib = ctypes.CDLL(str(build(name, dim, target)))
                for fn_name, (restype, argtypes) in signatures.items():
                    fn = getattr(lib, fn_name)
                    fn.restype = restype
                    fn.argtypes = argtypes
            except (OSError, RuntimeError, AttributeError) as exc:
                reason = " ".join(str(exc).split())
                warnings.warn(f"native kernel {name} (dim {dim}, -march={target}) not used: {reason}; "
                              "the PyTorch path runs instead", RuntimeWarning, stacklevel=2)
                lib = None
            _loaded[key] = lib
        return _loaded[key]


def pool(threads: int) -> ThreadPoolExecutor:
    """A shared pool of worker threads for kernel calls (ctypes releases the GIL in them)."""
    with _lock:
        if threads not in _pools:
            _pools[threads] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="hmrec-native")
        return _pools[threads]


def column_tiles(rows: np.ndarray, width: int = 16) -> np.ndarray:
    """[N][D] rows (N a multiple of width) as [N/width][D][width]: the kernels' item layout.

    Each tile holds one embedding dimension of `width` consecutive items contiguously,
    so a kernel loads a whole vector of items per dimension.
    """
    n, d = rows.shape
    return np.ascontiguousarray(rows.reshape(n // width, width, d).transpose(0, 2, 1))
