"""Data step of the pipeline: make sure raw files exist (generate them if the user has
none), then validate them.

Generated data lives under ``<home>/data`` with a small ``_generated.json`` that records
how it was made, so a later run with another size or seed regenerates instead of
silently reusing stale files. A user's own ``--data-dir`` is never written to.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from hmrec.config import FULL_CUSTOMERS, Settings
from hmrec.data import RAW_FILES, ValidationReport, generate, validate_dir

GENERATED_MARKER = "_generated.json"


@dataclass
class DataStepResult:
    """What the data step did: where the files are, whether it generated them, the report."""

    data_dir: Path
    generated: bool
    report: ValidationReport


def _raw_files_present(data_dir: Path) -> bool:
    return all(
        any((data_dir / f"{stem}.{ext}").exists() for ext in ("csv", "parquet"))
        for stem in RAW_FILES.values()
    )


def generation_params(settings: Settings) -> dict:
    """The parameters that define a generated dataset (compared to decide on reuse)."""
    n = settings.CUSTOMER_DATA_SIZE.n_customers or FULL_CUSTOMERS
    return {"n_customers": n, "seed": settings.SEED}


def ensure_data(settings: Settings, progress=None) -> tuple[Path, bool]:
    """Return the raw data dir, generating synthetic data when the user gave none.

    Returns (data_dir, generated_now)."""
    data_dir = settings.data_dir
    if settings.DATA_DIR is not None:
        if not _raw_files_present(data_dir):
            missing = [s for s in RAW_FILES.values()
                       if not any((data_dir / f"{s}.{e}").exists() for e in ("csv", "parquet"))]
            raise FileNotFoundError(
                f"{data_dir}: missing raw file(s) {', '.join(m + '.csv' for m in missing)}"
            )
        return data_dir, False
    params = generation_params(settings)
    marker = data_dir / GENERATED_MARKER
    if _raw_files_present(data_dir) and marker.exists():
        if json.loads(marker.read_text()) == params:
            return data_dir, False
    data_dir.mkdir(parents=True, exist_ok=True)
    generate(data_dir, n_customers=params["n_customers"], seed=params["seed"], progress=progress)
    marker.write_text(json.dumps(params))
    return data_dir, True


def run_data_step(settings: Settings, progress=None) -> DataStepResult:
    """Generate (if needed) and validate the raw data."""
    data_dir, generated = ensure_data(settings, progress=progress)
    report = validate_dir(data_dir, drop_unknown_references=settings.DROP_UNKNOWN_REFERENCES)
    return DataStepResult(data_dir=data_dir, generated=generated, report=report)
