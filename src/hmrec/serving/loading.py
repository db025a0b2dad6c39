"""Build the serving objects from the registry (models by alias) and the feature store.

Everything a recommender needs comes from these two places, so training, offline
evaluation and the HTTP service load exactly the same models and features.
"""

from __future__ import annotations

from hmrec.config import Settings
from hmrec.features import groups
from hmrec.registry import ModelRegistry
from hmrec.retrieval.candidates import RetrievalStage
from hmrec.retrieval.index import CandidateIndex
from hmrec.serving.recommender import FourStageRecommender
from hmrec.store import FeatureStore


def candidate_budget(settings: Settings) -> int:
    """Candidates per customer: RETRIEVAL_K from the two-tower model plus the popular ones."""
    return settings.RETRIEVAL_K + settings.RETRIEVAL_POPULAR_CANDIDATES


def load_retrieval_stage(settings: Settings, fs: FeatureStore, registry: ModelRegistry,
                         alias: str = "champion") -> RetrievalStage:
    """The query tower of `query_model@alias`, and a FAISS index of every article embedded
    by `candidate_model@alias` (exact and cheap to rebuild at ~100k articles)."""
    query = registry.load("query_model", alias=alias).unwrap_python_model().model
    candidate = registry.load("candidate_model", alias=alias).unwrap_python_model().model
    articles = fs.get_feature_group(groups.ARTICLES.name, groups.ARTICLES.version).read()
    customers = fs.get_feature_group(groups.CUSTOMERS.name, groups.CUSTOMERS.version).read()
    history = fs.get_feature_group(groups.TRANSACTIONS.name, groups.TRANSACTIONS.version).read(
        ["t_dat", "article_id"])
    index = CandidateIndex.build(candidate, articles)
    return RetrievalStage(query, index, customers, history=history,
                          n_popular=settings.RETRIEVAL_POPULAR_CANDIDATES)


def load_recommender(settings: Settings, alias: str = "champion", filter_policy: str | None = None,
                     fs: FeatureStore | None = None, registry: ModelRegistry | None = None) -> FourStageRecommender:
    """The 4-stage recommender with the `alias` models and the store's latest features."""
    fs = fs or FeatureStore(settings.store_dir)
    registry = registry or ModelRegistry.from_settings(settings)
    retrieval = load_retrieval_stage(settings, fs, registry, alias)
    ranker = registry.load("ranking_model", alias=alias).unwrap_python_model().model
    history = fs.get_feature_group(groups.TRANSACTIONS.name, groups.TRANSACTIONS.version).read(
        ["t_dat", "customer_id", "article_id"])
    return FourStageRecommender(
        retrieval, ranker, fs.get_feature_group(groups.ARTICLES.name, groups.ARTICLES.version).read(),
        retrieval.customers, history, filter_policy=filter_policy or settings.FILTER_POLICY,
        retrieval_k=candidate_budget(settings))
