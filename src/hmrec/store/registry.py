"""Where the store keeps things on disk, and the metadata files that describe them.

Layout under the store root:

    offline/<name>_v<version>/                 Delta Lake table of a feature group
    metadata/feature_groups/<name>_v<version>.json
    metadata/feature_views/<name>_v<version>.json
    online.sqlite                              online store

Metadata is one small JSON file per object, written to a temporary file and renamed
into place, so a crash never leaves half a file and two pipelines writing different
objects never contend for one shared file.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from hmrec.store.atomic import write_json  # noqa: F401  (the store modules call registry.write_json)
from hmrec.store.errors import FeatureStoreError

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_FILE = re.compile(r"^(?P<name>[a-z][a-z0-9_]*)_v(?P<version>[0-9]+)\.json$")

GROUPS = "feature_groups"
VIEWS = "feature_views"


def check_name(kind: str, name: str, version: int) -> None:
    """Names become file names and SQL identifiers: keep them to [a-z0-9_]."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise FeatureStoreError(
            f"invalid {kind} name {name!r}: use lower-case letters, digits and '_', starting with a letter"
        )
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise FeatureStoreError(f"invalid {kind} version {version!r} for {name!r}: use an integer >= 1")


def key(name: str, version: int) -> str:
    return f"{name}_v{version}"


def metadata_path(root: Path, kind: str, name: str, version: int) -> Path:
    return root / "metadata" / kind / f"{key(name, version)}.json"


def table_path(root: Path, name: str, version: int) -> Path:
    return root / "offline" / key(name, version)


def read_json(path: Path) -> dict[str, Any]:
    try:
        with path.open(encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise FeatureStoreError(f"{path}: corrupt metadata file ({exc})") from exc


def list_entries(root: Path, kind: str) -> list[tuple[str, int]]:
    """(name, version) pairs of one kind, sorted by name then version."""
    folder = root / "metadata" / kind
    if not folder.is_dir():
        return []
    out = []
    for p in folder.iterdir():
        m = _FILE.match(p.name)
        if m:
            out.append((m["name"], int(m["version"])))
    return sorted(out)


def describe_existing(entries: list[tuple[str, int]], name: str) -> str:
    """'versions of X: [1, 2]' or 'existing: a v1, b v2' for not-found messages."""
    versions = [v for n, v in entries if n == name]
    if versions:
        return f"existing versions of {name!r}: {versions}"
    if not entries:
        return "the store has none"
    return "existing: " + ", ".join(f"{n} v{v}" for n, v in entries)
