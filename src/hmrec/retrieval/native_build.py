"""Build and load the C kernels in ``native/`` at first use (no build step at install).

Why at run time: the kernels are compiled with ``-march=native`` for the machine that
trains (AVX-512 here, AVX2 or NEON elsewhere) and with the embedding size as a
compile-time constant, so the inner loops are fully unrolled vector code. A kernel is a
single C file with no dependency beyond libm; building one takes well under a second.

The compiler is $CC, else ``cc``, ``gcc`` or ``clang`` on the PATH. Libraries are kept
in HMREC_CACHE_DIR, else $XDG_CACHE_HOME/hmrec, else ~/.cache/hmrec, named with a hash of
the source, the flags and the CPU's feature list, so a changed source or machine
rebuilds (and removes the older build of that kernel and size); a build writes a
temporary file and renames it, so parallel processes never load half a library. When
nothing can be built, :func:`load` returns None after one warning and the callers use
their PyTorch path (same results within float rounding).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

SOURCES = Path(__file__).with_name("native")
#: Tried in order: the first set that compiles is used.
FLAG_SETS = (["-O3", "-march=native"], ["-O3"])
#: Set HMREC_NATIVE=0 to never build or load a kernel (the PyTorch paths run).
DISABLE_ENV = "HMREC_NATIVE"

_lock = threading.Lock()
_loaded: dict[tuple[str, int], ctypes.CDLL | None] = {}
_pools: dict[int, ThreadPoolExecutor] = {}


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


def _cpu_id() -> str:
    """Something that changes when the CPU's instruction set does (for -march=native)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def build(name: str, dim: int) -> Path:
    """Compile ``native/<name>.c`` with -DDIM=dim; returns the shared library's path."""
    cc = compiler()
    if cc is None:
        raise RuntimeError("no C compiler found (set CC, or install cc/gcc)")
    source_path = SOURCES / f"{name}.c"
    source = source_path.read_bytes()
    errors = []
    for flags in FLAG_SETS:
        args = [*flags, "-fno-math-errno", "-fPIC", "-shared", f"-DDIM={dim}"]
        key = hashlib.sha256(b"\0".join([source, " ".join([cc, *args]).encode(), _cpu_id().encode()])).hexdigest()[:16]
        out = cache_dir() / f"{name}_d{dim}_{key}.so"
        if out.exists():
            return out
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
        os.close(fd)
        done = subprocess.run([cc, *args, "-o", tmp, str(source_path), "-lm"], capture_output=True, text=True)
        if done.returncode == 0:
            os.replace(tmp, out)
            _prune(out)
            return out
        os.unlink(tmp)
        errors.append(f"{' '.join(args)}: {done.stderr.strip()[-500:]}")
    raise RuntimeError(f"building native/{name}.c failed:\n" + "\n".join(errors))


def _prune(keep: Path) -> None:
    """Remove older builds of the same kernel and size (a changed source or CPU left them)."""
    name_dim = keep.name.rsplit("_", 1)[0]
    for old in keep.parent.glob(f"{name_dim}_*.so"):
        if old != keep and len(old.name) == len(keep.name):
            try:
                old.unlink()  # a process that loaded it keeps its mapping
            except OSError:
                pass


def load(name: str, dim: int, signatures: dict[str, tuple[object, list[object]]]) -> ctypes.CDLL | None:
    """The kernel library for (name, dim) with its functions' ctypes signatures set, or None.

    ``signatures``: function name -> (restype, argtypes). None (with one warning per
    kernel) when building or loading fails or HMREC_NATIVE=0.
    """
    key = (name, dim)
    with _lock:
        if key not in _loaded:
            lib = None
            if os.environ.get(DISABLE_ENV, "1") != "0":
                try:
                    lib = ctypes.CDLL(str(build(name, dim)))
                    for fn_name, (restype, argtypes) in signatures.items():
                        fn = getattr(lib, fn_name)
                        fn.restype = restype
                        fn.argtypes = argtypes
                except (OSError, RuntimeError, AttributeError) as exc:
                    warnings.warn(f"native kernel {name} unavailable ({exc}); using the PyTorch path", RuntimeWarning)
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
