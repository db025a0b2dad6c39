"""Where a benchmark ran: the facts every results file carries, and small shared helpers.

Every ``benchmarks/results/*.json`` is written through :func:`write_result`, which adds a
``"machine"`` block: git commit (and whether the tree had uncommitted changes), CPU model
and a summary of its vector flags, core count, Python and PyTorch versions, the load
average before and after the run, and a yardstick: the time of one fixed fp32 step
(2048 x 16 in-batch softmax, cross-entropy, backward) measured before and after, so a
figure taken while the machine was busy or slow can be told from one taken when it was idle.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent
#: The CPU flags that decide which kernels run (a summary of /proc/cpuinfo's long list).
VECTOR_FLAGS = ("sse4_2", "avx", "fma", "avx2", "avx512f", "avx512bw", "avx512_bf16", "avx512_vnni", "amx_tile",
                "amx_bf16", "asimd", "sve")


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def git_commit() -> str:
    """HEAD's commit, with '+dirty' when the work tree differs from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head or "unknown") + ("+dirty" if dirty else "")


def cpu_facts() -> dict:
    """CPU model, the vector flags it has (of VECTOR_FLAGS) and the core count."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "Model") and model in ("", platform.machine(), platform.processor()):
                model = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {"cpu_model": model, "vector_flags": [f for f in VECTOR_FLAGS if f in flags],
            "cores": os.cpu_count(), "machine": platform.machine()}


def yardstick_ms(reps: int = 5, n: int = 30) -> float:
    """ms of one fixed fp32 step (2048 x 16 in-batch softmax, cross-entropy, backward) on one
    thread, best of ``reps``; ~9 ms on an idle 2-core AVX-512 machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        g = torch.Generator().manual_seed(0)
        q = torch.randn(2048, 16, generator=g, requires_grad=True)
        i = torch.randn(2048, 16, generator=g, requires_grad=True)
        labels = torch.arange(2048)
        for _ in range(3):
            torch.nn.functional.cross_entropy(q @ i.T, labels).backward()
        best = float("inf")
        for _ in range(reps):
            t = time.perf_counter()
            for _ in range(n):
                torch.nn.functional.cross_entropy(q @ i.T, labels).backward()
            best = min(best, (time.perf_counter() - t) / n * 1000)
        return round(best, 3)
    finally:
        torch.set_num_threads(threads)


def yardstick_ms_in_child(timeout: float = 300) -> float | None:
    """:func:`yardstick_ms` measured in a child process (None if it fails), so that this
    process neither imports PyTorch nor keeps the step's buffers: importing torch and
    running the step raise a process's peak RSS (ru_maxrss) by about 0.5 GB, which would
    swamp the peak of a benchmark that does not use torch itself."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from machine import yardstick_ms; "
            "print(yardstick_ms())")
    try:
        proc = subprocess.run([sys.executable, "-c", code, str(Path(__file__).resolve().parent)],
                              capture_output=True, text=True, timeout=timeout, check=True)
        return float(proc.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


class Run:
    """Measures the conditions around a benchmark: ``with Run() as run: ...; run.facts()``.

    ``isolate=True`` measures the yardstick in a child process (:func:`yardstick_ms_in_child`),
    for benchmarks whose peak RSS must not include PyTorch."""

    def __init__(self, yardstick: bool = True, isolate: bool = False) -> None:
        self.yardstick = yardstick
        self.isolate = isolate
        self.before: dict = {}
        self.after: dict = {}

    def _sample(self) -> dict:
        out = {"loadavg": [round(x, 2) for x in os.getloadavg()], "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        if self.yardstick:
            out["yardstick_ms"] = yardstick_ms_in_child() if self.isolate else yardstick_ms()
        return out

    def __enter__(self) -> "Run":
        self.before = self._sample()
        return self

    def __exit__(self, *exc: object) -> None:
        self.after = self._sample()

    def facts(self) -> dict:
        """The ``machine`` block of a results file."""
        out = {"commit": git_commit(), **cpu_facts(), "python": platform.python_version(),
               "torch": _torch_version(), "before": self.before, "after": self.after or self._sample()}
        if self.isolate and self.yardstick:
            out["yardstick_process"] = "child"
        return out


def _torch_version() -> str | None:
    """PyTorch's version, without importing it when this process has not (importing it
    costs ~0.25 GB of RSS)."""
    if "torch" in sys.modules:
        return sys.modules["torch"].__version__
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover
        return None
    try:
        return version("torch")
    except PackageNotFoundError:
        return None


def write_result(path: Path, payload: dict, run: Run) -> Path:
    """Write ``payload`` plus the machine block to ``path`` atomically (tmp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({**payload, "machine": run.facts()}, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def describe(run: Run) -> str:
    """One line for the terminal: CPU, commit, load and yardstick."""
    f = run.facts()
    ys = [s.get("yardstick_ms") for s in (f["before"], f["after"]) if s.get("yardstick_ms") is not None]
    return (f"{f['cpu_model']} ({f['cores']} cores; {', '.join(f['vector_flags'])}), commit {f['commit']}, "
            f"load {f['before']['loadavg'][0]} -> {f['after']['loadavg'][0]}"
            + (f", yardstick {' -> '.join(f'{y:.2f}' for y in ys)} ms" if ys else ""))
