"""The feature store: feature groups (offline Delta Lake tables), feature views
(point-in-time joins, time splits) and the online store (SQLite).

Shaped like Hopsworks' API: `fs.get_or_create_feature_group(...)`, `fg.insert(df)`,
`fg.select([...]).join(other.select([...]), on=...)`, `fs.get_or_create_feature_view(...)`.
"""

from hmrec.store.errors import (
    FeatureGroupNotFound,
    FeatureStoreError,
    FeatureViewNotFound,
    InvalidFeatureDataError,
    SchemaMismatchError,
)
from hmrec.store.feature_group import FeatureGroup
from hmrec.store.feature_store import FeatureStore
from hmrec.store.feature_view import FeatureView
from hmrec.store.online import OnlineStore
from hmrec.store.query import Query
from hmrec.store.splits import TimeSplit

__all__ = [
    "FeatureGroup",
    "FeatureGroupNotFound",
    "FeatureStore",
    "FeatureStoreError",
    "FeatureView",
    "FeatureViewNotFound",
    "InvalidFeatureDataError",
    "OnlineStore",
    "Query",
    "SchemaMismatchError",
    "TimeSplit",
]
