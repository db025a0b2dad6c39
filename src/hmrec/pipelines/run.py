"""`hmrec run`: every step in order, each reading its inputs from the previous step's
store/registry output, ending with one summary.

`step_hook`, when given, wraps each step (``with step_hook(name): ...``); the end-to-end
benchmark uses it to measure time, CPU and peak memory per step on the very code path
`hmrec run` takes, instead of a copy of it.
"""

from __future__ import annotations

import ctypes
import gc
import time
from contextlib import AbstractContextManager, ExitStack, contextmanager
from typing import Callable, Iterator

from rich.console import Console

from hmrec.config import Settings
from hmrec.data import load_raw
from hmrec.pipelines.data import ensure_data
from hmrec.pipelines.evaluate import run_evaluate_step
from hmrec.pipelines.features import run_feature_pipeline
from hmrec.pipelines.progress import step_progress
from hmrec.pipelines.summary import evaluation_summary, features_table, steps_table, training_table
from hmrec.pipelines.train import train_ranking_stage, train_retrieval_stage
from hmrec.serving.loading import candidate_budget

#: The steps of `hmrec run`, in order (the names the summary and `step_hook` see).
STEPS = ("data", "features", "train_retrieval", "train_ranking", "evaluate")

StepHook = Callable[[str], AbstractContextManager]


def release_memory() -> None:
    """Hand memory freed by a finished step back to the system before the next one starts.

    Each step drops its frames and tensors when it returns, but glibc's malloc keeps
    freed heap pages for reuse, so the next step would start with the last one's peak
    still resident and the two add up (FULL: several GB after two-tower training)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def run_all(settings: Settings, console: Console, step_hook: StepHook | None = None,
            from_step: str = STEPS[0]) -> dict[str, float]:
    """Run the whole pipeline; return seconds per step (keys: STEPS).

    `from_step` skips the steps before it: they must have run on this home before (each
    step reads its inputs from the store and registry, so nothing else is needed)."""
    if from_step not in STEPS:
        raise ValueError(f"unknown step {from_step!r}; steps are {', '.join(STEPS)}")
    todo = set(STEPS[STEPS.index(from_step):])
    seconds: dict[str, float] = {}

    @contextmanager
    def step(name: str) -> Iterator[None]:
        with ExitStack() as stack:
            if step_hook is not None:
                stack.enter_context(step_hook(name))
            t0 = time.perf_counter()
            try:
                yield
            finally:
                seconds[name] = time.perf_counter() - t0
                release_memory()

    console.rule(f"[bold]hmrec run[/] size={settings.CUSTOMER_DATA_SIZE.value} home={settings.HOME_DIR}")

    # The raw files are read once: the data step's validation is the load the feature
    # pipeline needs (FULL: ~45 s and a second 4.5 GB load saved). `held` is emptied as the
    # frames are handed over, so the feature pipeline can free them as it goes.
    if "data" in todo:
        with step("data"), step_progress(console) as progress:
            data_dir, _ = ensure_data(settings, progress=progress)
            held = [load_raw(data_dir, drop_unknown_references=settings.DROP_UNKNOWN_REFERENCES)]
        console.print(held[0].report.to_table())

    if "features" in todo:
        with step("features"), step_progress(console) as progress:
            features = run_feature_pipeline(settings, raw=held.pop(), progress=progress)
        console.print(features_table(features))

    trained = []
    if "train_retrieval" in todo:
        with step("train_retrieval"), step_progress(console) as progress:
            trained.append(train_retrieval_stage(settings, progress=progress))
    if "train_ranking" in todo:
        with step("train_ranking"), step_progress(console) as progress:
            trained.append(train_ranking_stage(settings, progress=progress))
    if trained:
        console.print(training_table(trained, settings))

    with step("evaluate"), step_progress(console) as progress:
        evaluation = run_evaluate_step(settings, progress=progress)
    console.print(evaluation_summary(evaluation.result, candidate_budget(settings),
                                     f"Headline: test week {evaluation.result.test_start} .."))
    console.print(f"report: {evaluation.report_path}")
    console.print(steps_table(seconds))
    return seconds
