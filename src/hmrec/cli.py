"""The `hmrec` command line: thin orchestration over hmrec.pipelines.

Every command takes --home (env HMREC_HOME) and, where it reads raw files,
--data-dir (env HMREC_DATA_DIR). Flags override environment variables and `.env`.
Failures exit non-zero with a one-line reason on stderr.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Optional

import typer
from pydantic import ValidationError
from rich.console import Console

from hmrec.config import CustomerDataSize, Settings

app = typer.Typer(
    help="hmrec: a local-first real-time fashion recommender on the H&M dataset.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Generate or validate raw H&M files.", no_args_is_help=True)
app.add_typer(data_app, name="data")
train_app = typer.Typer(help="Train retrieval and ranking and register them (both when no stage is named).",
                        invoke_without_command=True)
app.add_typer(train_app, name="train")

console = Console()
err_console = Console(stderr=True)

HomeOpt = typer.Option(None, "--home", help="Project folder (store, registry, reports). Env: HMREC_HOME.")
DataDirOpt = typer.Option(
    None, "--data-dir", help="Raw H&M files (Kaggle CSV/Parquet). Env: HMREC_DATA_DIR. Default: generated data."
)
SizeOpt = typer.Option(None, "--size", help="CUSTOMER_DATA_SIZE: SMALL, MEDIUM, LARGE or FULL.")
SeedOpt = typer.Option(None, "--seed", help="Random seed (env SEED).")


def make_settings(home: Optional[Path] = None, data_dir: Optional[Path] = None, **overrides) -> Settings:
    """Settings from env/.env, with the CLI flags that were given taking precedence.

    A user's own ``--data-dir`` is used whole (FULL) unless a size was chosen (flag, env or
    .env): the SMALL default is for generated data, and silently sampling 1,000 customers
    of someone's Kaggle files would surprise them.
    """
    kwargs = {k: v for k, v in overrides.items() if v is not None}
    if home is not None:
        kwargs["HOME_DIR"] = home
    if data_dir is not None:
        kwargs["DATA_DIR"] = data_dir
    settings = Settings(**kwargs)
    if settings.DATA_DIR is not None and "CUSTOMER_DATA_SIZE" not in settings.model_fields_set:
        settings = Settings(**kwargs, CUSTOMER_DATA_SIZE=CustomerDataSize.FULL)
    return settings


def _reason(exc: Exception) -> str:
    """One line: a bad setting's name, value and what was wrong (pydantic's first line names
    none of them), else the exception's first line."""
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"setting {'.'.join(str(part) for part in e['loc'])}={e.get('input')!r}: {e['msg']}" for e in exc.errors()
        )
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def fails_cleanly(fn):
    """Turn expected failures (bad data, missing files, bad settings) into one stderr line + exit 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except (ValueError, FileNotFoundError, KeyError, LookupError, RuntimeError) as exc:
            err_console.print(f"[bold red]error:[/] {type(exc).__name__}: {_reason(exc)}", highlight=False)
            raise typer.Exit(code=1) from None

    return wrapper


@data_app.command("generate")
@fails_cleanly
def data_generate(
    customers: int = typer.Option(1_000, "--customers", help="Number of customers (1,371,980 = FULL)."),
    articles: Optional[int] = typer.Option(None, "--articles", help="Number of articles (default scales with customers)."),
    seed: int = typer.Option(42, "--seed", help="Random seed; the same seed gives the same files."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default <home>/data)."),
    fmt: str = typer.Option("csv", "--format", help="csv (exact Kaggle format) or parquet."),
    home: Optional[Path] = HomeOpt,
) -> None:
    """Write synthetic articles.csv, customers.csv and transactions_train.csv in the Kaggle format."""
    from hmrec.data import generate
    from hmrec.pipelines.progress import step_progress

    settings = make_settings(home)
    out_dir = out or settings.data_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    with step_progress(console) as progress:
        summary = generate(out_dir, n_customers=customers, n_articles=articles, seed=seed, fmt=fmt,
                           progress=progress)
    from hmrec.pipelines.summary import generation_table

    console.print(generation_table(summary, out_dir))


@data_app.command("validate")
@fails_cleanly
def data_validate(
    data_dir: Optional[Path] = DataDirOpt,
    drop_unknown: bool = typer.Option(
        False, "--drop-unknown/--strict",
        help="Drop transactions of unknown customers/articles (and report them) instead of failing."),
    home: Optional[Path] = HomeOpt,
) -> None:
    """Check a directory of raw files; exit non-zero on invalid data."""
    from hmrec.data import validate_dir

    settings = make_settings(home, data_dir)
    with console.status(f"validating {settings.data_dir}"):
        report = validate_dir(settings.data_dir, drop_unknown_references=drop_unknown)
    console.print(report.to_table())


@app.command("features")
@fails_cleanly
def features(
    size: Optional[CustomerDataSize] = SizeOpt,
    seed: Optional[int] = SeedOpt,
    home: Optional[Path] = HomeOpt,
    data_dir: Optional[Path] = DataDirOpt,
) -> None:
    """Build every feature group, the retrieval view and the online store from the raw files."""
    from hmrec.pipelines.features import run_feature_pipeline
    from hmrec.pipelines.progress import step_progress
    from hmrec.pipelines.summary import features_table

    settings = make_settings(home, data_dir, CUSTOMER_DATA_SIZE=size, SEED=seed)
    with step_progress(console) as progress:
        summary = run_feature_pipeline(settings, progress=progress)
    console.print(features_table(summary))


ForceOpt = typer.Option(False, "--force", help="Make the new versions champion even if their metric is worse.")


def _train(stages: list[str], home, size, seed, force) -> None:
    from hmrec.pipelines.progress import step_progress
    from hmrec.pipelines.summary import training_table
    from hmrec.pipelines.train import train_ranking_stage, train_retrieval_stage

    settings = make_settings(home, None, CUSTOMER_DATA_SIZE=size, SEED=seed)
    results = []
    with step_progress(console) as progress:
        if "retrieval" in stages:
            results.append(train_retrieval_stage(settings, progress=progress, force=force))
        if "ranking" in stages:
            results.append(train_ranking_stage(settings, progress=progress, force=force))
    console.print(training_table(results, settings))


@train_app.callback()
@fails_cleanly
def train_all(
    ctx: typer.Context,
    home: Optional[Path] = HomeOpt,
    seed: Optional[int] = SeedOpt,
    force: bool = ForceOpt,
) -> None:
    """Retrieval (two-tower + candidate index) then ranking (CatBoost), both registered in MLflow."""
    if ctx.invoked_subcommand is None:
        _train(["retrieval", "ranking"], home, None, seed, force)


@train_app.command("retrieval")
@fails_cleanly
def train_retrieval(home: Optional[Path] = HomeOpt, seed: Optional[int] = SeedOpt, force: bool = ForceOpt) -> None:
    """Train the two-tower model on the retrieval view, build the candidate index, register both towers."""
    _train(["retrieval"], home, None, seed, force)


@train_app.command("ranking")
@fails_cleanly
def train_ranking(home: Optional[Path] = HomeOpt, seed: Optional[int] = SeedOpt, force: bool = ForceOpt) -> None:
    """Train the CatBoost ranker on candidates of the champion retrieval model; register it."""
    _train(["ranking"], home, None, seed, force)


@app.command("evaluate")
@fails_cleanly
def evaluate(home: Optional[Path] = HomeOpt, seed: Optional[int] = SeedOpt) -> None:
    """Score the 4-stage pipeline (each filter policy), two-tower alone and the baselines on the test week."""
    from hmrec.pipelines.evaluate import run_evaluate_step
    from hmrec.pipelines.progress import step_progress
    from hmrec.pipelines.summary import evaluation_summary
    from hmrec.serving.loading import candidate_budget

    settings = make_settings(home, None, SEED=seed)
    with step_progress(console) as progress:
        step = run_evaluate_step(settings, progress=progress)
    console.print(evaluation_summary(step.result, candidate_budget(settings),
                                     f"test week {step.result.test_start} .."))
    console.print(f"report: {step.report_path}\nmetrics: {settings.reports_dir / 'evaluate.json'}")


@app.command("serve")
@fails_cleanly
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (loopback unless told otherwise)."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    workers: int = typer.Option(1, "--workers", min=1, max=64,
                                help="Worker processes (one per core helps; each holds its own models). "
                                "They share the events log and reload together."),
    home: Optional[Path] = HomeOpt,
) -> None:
    """Serve the 4-stage recommender over HTTP (champion models from the registry)."""
    from hmrec.serving.api import serve as run_server

    settings = make_settings(home)
    console.print(f"serving on http://{host}:{port} with {workers} worker(s) (OpenAPI page: /docs); models "
                  "load in the background, GET /health says when ready")
    run_server(settings, host=host, port=port, workers=workers)


@app.command("run")
@fails_cleanly
def run(
    size: Optional[CustomerDataSize] = SizeOpt,
    seed: Optional[int] = SeedOpt,
    home: Optional[Path] = HomeOpt,
    data_dir: Optional[Path] = DataDirOpt,
) -> None:
    """Run every step in order: data, features, training, registry, evaluation."""
    from hmrec.pipelines.run import run_all

    settings = make_settings(home, data_dir, CUSTOMER_DATA_SIZE=size, SEED=seed)
    run_all(settings, console)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
