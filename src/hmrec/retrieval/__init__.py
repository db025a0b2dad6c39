"""Two-tower retrieval: towers over raw features, in-batch softmax training with sparse
embedding updates, exact whole-catalogue metrics, and a FAISS candidate index.

Entry points: :func:`train` (frames of the ``retrieval`` feature view -> TrainResult),
:class:`TwoTowerModel` (``save``/``load``; ``query_tower.embed(df)``,
``item_tower.embed(df)``), :class:`CandidateIndex` (``build``, ``retrieve``), and
``python -m hmrec.retrieval.ddp`` under torchrun.
"""

from hmrec.retrieval.config import TwoTowerConfig
from hmrec.retrieval.features import FeatureSpec, embedding, normalized, one_hot, raw
from hmrec.retrieval.index import CandidateIndex
from hmrec.retrieval.model import TwoTowerModel
from hmrec.retrieval.trainer import EpochStats, TrainResult, evaluate, train

__all__ = [
    "CandidateIndex",
    "EpochStats",
    "FeatureSpec",
    "TrainResult",
    "TwoTowerConfig",
    "TwoTowerModel",
    "embedding",
    "evaluate",
    "normalized",
    "one_hot",
    "raw",
    "train",
]
