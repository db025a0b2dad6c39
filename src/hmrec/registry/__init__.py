"""Model registry (MLflow): register models with lineage, load them back, the champion alias.

    from hmrec.registry import ModelRegistry, RankingPyfunc, fingerprint
    reg = ModelRegistry.from_settings(settings)
    v = reg.register("ranking_model", RankingPyfunc(ranking_model), example_df, params, metrics,
                     feature_view={"name": "ranking", "version": 1, "columns": [...]},
                     data_fingerprint=fingerprint(train_df), metric_name="val_roc_auc")
    model = reg.load("ranking_model", alias="champion")   # .predict(raw_features_df)
"""

from hmrec.registry.fingerprint import fingerprint
from hmrec.registry.pyfunc_models import CandidatePyfunc, HmrecPyfunc, QueryPyfunc, RankingPyfunc
from hmrec.registry.registry import (
    CHAMPION,
    ModelRegistry,
    RegisteredVersion,
    RegistryError,
    VersionInfo,
)
from hmrec.registry.tracking import default_artifact_location, tracking_uri, using_uri

__all__ = [
    "CHAMPION",
    "HmrecPyfunc",
    "ModelRegistry",
    "RankingPyfunc",
    "QueryPyfunc",
    "CandidatePyfunc",
    "RegisteredVersion",
    "RegistryError",
    "VersionInfo",
    "default_artifact_location",
    "fingerprint",
    "tracking_uri",
    "using_uri",
]
