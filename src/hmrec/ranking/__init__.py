"""Ranking stage: a leak-free ranking dataset, CatBoost model, trainer and metrics.

Public API (see each module for details)::

    Window, build_ranking_dataset, feature_rows, feature_columns      # dataset.py
    LIST_FEATURES, add_list_features, list_features_of, sample_customers
    add_interaction_features, DAYS_SINCE_NEVER                       # interactions.py
    random_negatives, candidate_frame                                 # negatives.py
    RankingModel                                                      # model.py
    train_ranking, default_windows, evaluate_reranking                # trainer.py
    RankingConfig                                                     # config.py
    classification_metrics, classification_report_text                # classification.py
    average_precision_at_k, ndcg_at_k, list_metrics     # hmrec.retrieval.list_metrics (shared)
    feature_separation, null_pattern_leaks                            # leakage.py
    load_inputs, ranking_feature_view                                 # inputs.py (store)
    BlendedCandidates                                                 # candidates.py
"""

from hmrec.ranking.candidates import BlendedCandidates
from hmrec.ranking.classification import (
    classification_metrics,
    classification_report_text,
)
from hmrec.ranking.config import RankingConfig
from hmrec.ranking.dataset import (
    ARTICLE_FEATURES,
    CONTEXT_FEATURES,
    CUSTOMER_FEATURES,
    LIST_FEATURES,
    Window,
    add_list_features,
    build_ranking_dataset,
    feature_columns,
    feature_rows,
    label_rows,
    list_features_of,
    month_columns,
    sample_customers,
)
from hmrec.ranking.inputs import RankingInputs, load_inputs, ranking_feature_view
from hmrec.ranking.interactions import (
    DAYS_SINCE_NEVER,
    INTERACTION_FEATURES,
    TWO_TOWER_SCORE,
    PairScorer,
    add_interaction_features,
)
from hmrec.ranking.leakage import feature_separation, null_pattern_leaks
from hmrec.ranking.model import (
    RankingModel,
    categorical_columns,
    categorical_frame,
    to_pool,
)
from hmrec.ranking.negatives import (
    CandidateFn,
    candidate_frame,
    random_negatives,
)
from hmrec.ranking.trainer import (
    RankingResult,
    candidate_features,
    default_windows,
    evaluate_reranking,
    train_ranking,
)
from hmrec.retrieval.list_metrics import average_precision_at_k, list_metrics, ndcg_at_k

__all__ = [
    "ARTICLE_FEATURES",
    "CONTEXT_FEATURES",
    "CUSTOMER_FEATURES",
    "DAYS_SINCE_NEVER",
    "INTERACTION_FEATURES",
    "LIST_FEATURES",
    "TWO_TOWER_SCORE",
    "BlendedCandidates",
    "CandidateFn",
    "PairScorer",
    "RankingConfig",
    "RankingInputs",
    "RankingModel",
    "RankingResult",
    "Window",
    "add_interaction_features",
    "add_list_features",
    "average_precision_at_k",
    "build_ranking_dataset",
    "candidate_features",
    "candidate_frame",
    "categorical_columns",
    "categorical_frame",
    "classification_metrics",
    "classification_report_text",
    "default_windows",
    "evaluate_reranking",
    "feature_columns",
    "feature_rows",
    "feature_separation",
    "label_rows",
    "list_features_of",
    "list_metrics",
    "load_inputs",
    "month_columns",
    "ndcg_at_k",
    "null_pattern_leaks",
    "random_negatives",
    "ranking_feature_view",
    "sample_customers",
    "to_pool",
    "train_ranking",
]
