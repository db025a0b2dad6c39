"""Rich progress bars for long steps, handed to library code as a plain callable.

Library code (data, features, retrieval, ...) must not depend on Rich, so it takes an
optional ``progress(task, completed, total)`` callable. The CLI passes a StepProgress.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                           TimeElapsedColumn)


class StepProgress:
    """Callable ``progress(task, completed, total=None)``.

    One bar per step: "features: customers" and "features: articles" update the same
    bar (the part before the colon names it) and the text shows the current stage."""

    def __init__(self, progress: Progress):
        self._progress = progress
        self._tasks: dict[str, int] = {}

    def __call__(self, task: str, completed: float, total: float | None = None) -> None:
        key = task.split(":", 1)[0]
        if key not in self._tasks:
            self._tasks[key] = self._progress.add_task(task, total=total)
        self._progress.update(self._tasks[key], completed=completed, total=total, description=task)


@contextmanager
def step_progress(console: Console | None = None) -> Iterator[StepProgress]:
    """A live progress display for the duration of a step."""
    progress = Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=console, transient=False,
    )
    with progress:
        yield StepProgress(progress)
