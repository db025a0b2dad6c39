"""The feature store: registry of feature groups and views, plus the online store.

    fs = FeatureStore(settings.store_dir)
    fg = fs.get_or_create_feature_group("customers", version=1, primary_key=["customer_id"])
    fg.insert(df)
    fv = fs.get_or_create_feature_view("retrieval", version=1, query=fg.select([...]).join(...))

Shaped like Hopsworks' API (what the reference course uses), local and embedded.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any, Sequence

import polars as pl

from hmrec.store import registry
from hmrec.store.errors import FeatureGroupNotFound, FeatureStoreError, FeatureViewNotFound
from hmrec.store.feature_group import DEFAULT_REWRITE_MAX_ROWS, FeatureGroup, check_group_columns
from hmrec.store.feature_view import FeatureView
from hmrec.store.online import OnlineStore
from hmrec.store.query import Query
from hmrec.store.schema import Schema, normalize_schema, same_dtype, schema_to_json

_FORMAT = 1


class FeatureStore:
    """A feature store rooted at one folder (offline Delta tables, JSON metadata, SQLite online)."""

    def __init__(self, root: Path | str, rewrite_max_rows: int = DEFAULT_REWRITE_MAX_ROWS):
        self.root = Path(root)
        self.rewrite_max_rows = rewrite_max_rows
        self._online: OnlineStore | None = None

    def __repr__(self) -> str:
        return f"FeatureStore(root={str(self.root)!r})"

    @property
    def online(self) -> OnlineStore:
        """The online store at <root>/online.sqlite (opened on first use)."""
        if self._online is None:
            self._online = OnlineStore(self.root / "online.sqlite")
        return self._online

    # ------------------------------------------------------------ feature groups
    def get_feature_group(self, name: str, version: int | None = 1) -> FeatureGroup:
        """The group (name, version); version None = the highest version."""
        entries = registry.list_entries(self.root, registry.GROUPS)
        if version is None:
            versions = [v for n, v in entries if n == name]
            if not versions:
                raise FeatureGroupNotFound(
                    f"no feature group {name!r} in {self.root}; {registry.describe_existing(entries, name)}"
                )
            version = max(versions)
        path = registry.metadata_path(self.root, registry.GROUPS, name, version)
        if not path.is_file():
            raise FeatureGroupNotFound(
                f"no feature group {name!r} version {version} in {self.root}; "
                f"{registry.describe_existing(entries, name)}"
            )
        return FeatureGroup(self.root, registry.read_json(path), self.rewrite_max_rows)

    def get_or_create_feature_group(
        self,
        name: str,
        version: int = 1,
        primary_key: Sequence[str] | None = None,
        event_time: str | None = None,
        description: str = "",
        features: dict[str, str] | None = None,
        schema: Schema | None = None,
    ) -> FeatureGroup:
        """Return the existing group, or create it.

        An existing group must agree with every argument given (primary key, event
        time, schema): a different definition needs a new version. Feature
        descriptions given for an existing group are added or updated.
        """
        registry.check_name("feature group", name, version)
        if primary_key is None or isinstance(primary_key, str):
            primary_key = [primary_key] if isinstance(primary_key, str) else None
        path = registry.metadata_path(self.root, registry.GROUPS, name, version)
        if path.is_file():
            fg = self.get_feature_group(name, version)
            self._check_same(fg, primary_key, event_time, schema)
            if schema is not None and fg.schema is None:
                self._set_schema(fg, schema)
            if features:
                self._update_descriptions(fg, features, description)
            return fg
        if not primary_key:
            raise FeatureStoreError(f"feature group {name!r} v{version} does not exist; creating it needs primary_key")
        primary_key = list(primary_key)
        if schema is not None:
            try:
                schema = normalize_schema(schema)
            except FeatureStoreError as exc:
                raise FeatureStoreError(f"feature group {name!r}: {exc}") from None
            check_group_columns(name, schema, primary_key, event_time)
        self._check_descriptions(name, features or {}, schema)
        meta: dict[str, Any] = {
            "format": _FORMAT,
            "name": name,
            "version": version,
            "primary_key": primary_key,
            "event_time": event_time,
            "description": description,
            "features": dict(features or {}),
            "schema": None if schema is None else schema_to_json(schema),
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        }
        fg = FeatureGroup(self.root, meta, self.rewrite_max_rows)
        fg.create_table()
        registry.write_json(path, meta)
        return fg

    def _set_schema(self, fg: FeatureGroup, schema: Schema) -> None:
        """Fix the schema of a group created without one and not yet written."""
        try:
            schema = normalize_schema(schema)
        except FeatureStoreError as exc:
            raise FeatureStoreError(f"{fg.label}: {exc}") from None
        check_group_columns(fg.name, schema, fg.primary_key, fg.event_time)
        meta = fg.to_dict()
        meta["schema"] = schema_to_json(schema)
        fg._meta = meta
        fg.create_table()
        registry.write_json(registry.metadata_path(self.root, registry.GROUPS, fg.name, fg.version), meta)

    @staticmethod
    def _check_descriptions(name: str, features: dict[str, str], schema: Schema | None) -> None:
        if schema is not None:
            unknown = [c for c in features if c not in schema]
            if unknown:
                raise FeatureStoreError(f"feature group {name!r}: descriptions for unknown columns {unknown}")

    @staticmethod
    def _check_same(
        fg: FeatureGroup, primary_key: Sequence[str] | None, event_time: str | None, schema: Schema | None
    ) -> None:
        def differs(what: str, stored: object, given: object) -> FeatureStoreError:
            return FeatureStoreError(
                f"{fg.label} exists with {what} {stored}, not {given}; create a new version for a new definition"
            )

        if primary_key is not None and list(primary_key) != fg.primary_key:
            raise differs("primary key", fg.primary_key, list(primary_key))
        if event_time is not None and event_time != fg.event_time:
            raise differs("event time", fg.event_time, event_time)
        stored = fg.schema
        if schema is not None and stored is not None:
            same = list(schema) == list(stored) and all(same_dtype(schema[c], stored[c]) for c in stored)
            if not same:
                raise differs("schema", stored, dict(schema))

    def _update_descriptions(self, fg: FeatureGroup, features: dict[str, str], description: str) -> None:
        meta = fg.to_dict()
        self._check_descriptions(fg.name, features, fg.schema)
        merged = {**meta["features"], **features}
        if merged == meta["features"] and (not description or description == meta["description"]):
            return
        meta["features"] = merged
        if description:
            meta["description"] = description
        registry.write_json(registry.metadata_path(self.root, registry.GROUPS, fg.name, fg.version), meta)
        fg._meta = meta

    def list_feature_groups(self) -> list[tuple[str, int]]:
        return registry.list_entries(self.root, registry.GROUPS)

    def delete_feature_group(self, name: str, version: int) -> None:
        """Remove a group's table and metadata (views using it stop working)."""
        fg = self.get_feature_group(name, version)
        shutil.rmtree(fg.path, ignore_errors=True)
        registry.metadata_path(self.root, registry.GROUPS, name, version).unlink(missing_ok=True)

    # ------------------------------------------------------------ feature views
    def get_or_create_feature_view(
        self,
        name: str,
        query: Query | None = None,
        version: int = 1,
        labels: Sequence[str] | None = None,
        description: str = "",
    ) -> FeatureView:
        """Return the existing view, or create it from `query`.

        An existing view must have the same query and labels as given (if given): a
        different definition needs a new version, or models would name views that no
        longer produce their training data.
        """
        registry.check_name("feature view", name, version)
        path = registry.metadata_path(self.root, registry.VIEWS, name, version)
        labels = list(labels or [])
        if path.is_file():
            fv = self.get_feature_view(name, version)
            if query is not None and query.to_dict() != fv.query.to_dict():
                raise FeatureStoreError(
                    f"feature view {name!r} v{version} exists with a different query "
                    f"({fv.query!r}); create a new version for a new definition"
                )
            if labels and labels != fv.labels:
                raise FeatureStoreError(
                    f"feature view {name!r} v{version} exists with labels {fv.labels}, not {labels}"
                )
            return fv
        if query is None:
            raise FeatureStoreError(f"feature view {name!r} v{version} does not exist; creating it needs query=")
        missing = [c for c in labels if c not in query.columns]
        if missing:
            raise FeatureStoreError(f"feature view {name!r}: labels {missing} are not columns of the query {query.columns}")
        meta = {
            "format": _FORMAT,
            "name": name,
            "version": version,
            "description": description,
            "labels": labels,
            "query": query.to_dict(),
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        }
        registry.write_json(path, meta)
        return FeatureView(meta, query)

    def get_feature_view(self, name: str, version: int | None = 1) -> FeatureView:
        """The view (name, version), its query rebuilt from the stored definition."""
        entries = registry.list_entries(self.root, registry.VIEWS)
        if version is None:
            versions = [v for n, v in entries if n == name]
            if not versions:
                raise FeatureViewNotFound(
                    f"no feature view {name!r} in {self.root}; {registry.describe_existing(entries, name)}"
                )
            version = max(versions)
        path = registry.metadata_path(self.root, registry.VIEWS, name, version)
        if not path.is_file():
            raise FeatureViewNotFound(
                f"no feature view {name!r} version {version} in {self.root}; "
                f"{registry.describe_existing(entries, name)}"
            )
        meta = registry.read_json(path)
        try:
            query = Query.from_dict(meta["query"], self.get_feature_group)
        except FeatureGroupNotFound as exc:
            raise FeatureStoreError(f"feature view {name!r} v{version} uses a group that is gone: {exc}") from exc
        return FeatureView(meta, query)

    def list_feature_views(self) -> list[tuple[str, int]]:
        return registry.list_entries(self.root, registry.VIEWS)

    def delete_feature_view(self, name: str, version: int) -> None:
        self.get_feature_view(name, version)
        registry.metadata_path(self.root, registry.VIEWS, name, version).unlink(missing_ok=True)

    # ------------------------------------------------------------ online
    def materialize(
        self,
        fg: FeatureGroup,
        table: str | None = None,
        columns: Sequence[str] | None = None,
        at: dt.date | dt.datetime | None = None,
    ) -> int:
        """Copy the latest row per entity key of `fg` into the online store.

        Table name defaults to the group's name; the key is the group's entity key
        (which must be one column). With `at`, each key gets its row valid at that
        event time (`FeatureGroup.latest(at=...)`): what change-point tables, whose
        rows can start in the future (a sale leaving a 28-day window), need for
        serving on day `at`. Returns the rows stored.
        """
        if len(fg.entity_key) != 1:
            raise FeatureStoreError(
                f"{fg.label}: the online store needs a one-column key, the entity key is {fg.entity_key}"
            )
        key = fg.entity_key[0]
        cols = list(dict.fromkeys([key] + list(columns if columns is not None else fg.schema or [])))
        df: pl.DataFrame = fg.latest(cols, at=at)
        return self.online.materialize(table or fg.name, df, key)
