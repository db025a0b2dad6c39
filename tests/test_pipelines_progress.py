"""Progress of long steps when the output is not a terminal (a file, a CI log)."""

import io
import time

from rich.console import Console

from hmrec.pipelines import progress as progress_mod
from hmrec.pipelines.progress import StepProgress, step_progress


def test_plain_line_names_the_task_units_done_and_rate():
    p = StepProgress(None)
    assert p.plain_line() is None  # nothing to say before the first update
    p("retrieval: epoch 1/3 rows", 2048, 8192)
    line = p.plain_line()
    assert "retrieval: epoch 1/3 rows: 2,048/8,192" in line and line.endswith("/s)")


def test_a_file_console_gets_periodic_lines_without_any_update(monkeypatch):
    monkeypatch.setattr(progress_mod, "HEARTBEAT_SECONDS", 0.05)
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)
    with step_progress(console) as p:
        p("retrieval: epoch 1/2 rows", 4096, 16384)
        deadline = time.monotonic() + 30
        while out.getvalue().count("\n") < 2:  # the step goes quiet; lines keep coming
            assert time.monotonic() < deadline, f"no periodic progress lines within 30 s: {out.getvalue()!r}"
            time.sleep(0.01)
    lines = out.getvalue().splitlines()
    assert all("retrieval: epoch 1/2 rows: 4,096/16,384" in line for line in lines)
    # no live-bar control codes in a file
    assert "\x1b" not in out.getvalue()
