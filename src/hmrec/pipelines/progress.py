"""Progress for long steps, handed to library code as a plain callable.

Library code (data, features, retrieval, ...) must not depend on Rich, so it takes an
optional ``progress(task, completed, total)`` callable. The CLI passes a StepProgress:
a Rich bar on a terminal; elsewhere (output to a file or a CI log, where a live bar
prints nothing until it ends) one plain line at least every HEARTBEAT_SECONDS with the
task, the units done and the rate, so a long step never looks hung.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                           TimeElapsedColumn)

#: Longest silence of a step whose output is not a terminal (seconds).
HEARTBEAT_SECONDS = 20.0


class StepProgress:
    """Callable ``progress(task, completed, total=None)``.

    One bar per step: "features: customers" and "features: articles" update the same
    bar (the part before the colon names it) and the text shows the current stage."""

    def __init__(self, progress: Progress | None, console: Console | None = None):
        self._progress = progress
        self._console = console
        self._tasks: dict[str, int] = {}
        self._lock = threading.Lock()
        self._start = time.perf_counter()
        self._state: tuple[str, float, float | None] | None = None
        self._rate_from: tuple[float, float] = (self._start, 0.0)  # (time, completed) of the last line

    def __call__(self, task: str, completed: float, total: float | None = None) -> None:
        if self._progress is not None:
            key = task.split(":", 1)[0]
            if key not in self._tasks:
                self._tasks[key] = self._progress.add_task(task, total=total)
            self._progress.update(self._tasks[key], completed=completed, total=total, description=task)
            return
        with self._lock:
            if self._state is not None and completed < self._state[1]:  # a new pass (e.g. the next epoch)
                self._rate_from = (time.perf_counter(), 0.0)
            self._state = (task, completed, total)

    def plain_line(self) -> str | None:
        """The current state as one line (None before the first update); resets the rate window."""
        with self._lock:
            if self._state is None:
                return None
            task, completed, total = self._state
            now = time.perf_counter()
            t_prev, c_prev = self._rate_from
            rate = (completed - c_prev) / (now - t_prev) if now > t_prev else 0.0
            self._rate_from = (now, completed)
        done = f"{completed:,.0f}" + (f"/{total:,.0f}" if total else "")
        return f"[{now - self._start:7.0f} s] {task}: {done} ({rate:,.1f}/s)"

    def _heartbeat(self, stop: threading.Event) -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            line = self.plain_line()
            if line is not None and self._console is not None:
                self._console.print(line, highlight=False, soft_wrap=True)


@contextmanager
def step_progress(console: Console | None = None) -> Iterator[StepProgress]:
    """A live progress display on a terminal, plain periodic lines elsewhere."""
    console = console or Console()
    if not console.is_terminal:
        reporter = StepProgress(None, console)
        stop = threading.Event()
        beat = threading.Thread(target=reporter._heartbeat, args=(stop,), name="hmrec-progress", daemon=True)
        beat.start()
        try:
            yield reporter
        finally:
            stop.set()
            beat.join()
        return
    progress = Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=console, transient=False,
    )
    with progress:
        yield StepProgress(progress, console)
