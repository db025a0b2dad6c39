"""The 4-stage recommender's single-request path against its batch path (the reference),
on a tiny trained home: same articles, same scores, before and after new purchases."""

from __future__ import annotations

import copy
import datetime as dt

import numpy as np
import polars as pl
import pytest
from serving_home import assert_embeddings_close, assert_same_answer, tiny_settings, trained_home

from hmrec.features import groups
from hmrec.registry import ModelRegistry
from hmrec.serving.loading import candidate_budget, load_retrieval_stage
from hmrec.serving.recommender import FILTER_POLICIES, FourStageRecommender, _top_k
from hmrec.store import FeatureStore


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return trained_home(tmp_path_factory)


@pytest.fixture(scope="module")
def parts(home):
    """The champion models and the store's features, read once."""
    settings = tiny_settings(home)
    fs, registry = FeatureStore(settings.store_dir), ModelRegistry.from_settings(settings)
    stage = load_retrieval_stage(settings, fs, registry)
    ranker = registry.load("ranking_model", alias="champion").unwrap_python_model().model
    articles = fs.get_feature_group(groups.ARTICLES.name).read()
    history = fs.get_feature_group(groups.TRANSACTIONS.name).read(["t_dat", "customer_id", "article_id"])
    return settings, stage, ranker, articles, history


@pytest.fixture()
def rec(parts):
    """A fresh recommender per test (tests add purchases to it; the stage is not changed)."""
    settings, stage, ranker, articles, history = parts
    return FourStageRecommender(stage, ranker, articles, stage.customers, history,
                                filter_policy=settings.FILTER_POLICY, retrieval_k=candidate_budget(settings))


def _day_after(rec) -> dt.date:
    return rec.last_day() + dt.timedelta(days=1)


def _buyers(rec, n: int) -> list[str]:
    """Customers with the most purchases (they exercise every filter rule)."""
    counts = rec.history.group_by("customer_id").len().sort(["len", "customer_id"], descending=[True, False])
    return counts["customer_id"].head(n).to_list()


def _assert_same(batch, single):
    """Batch-path and single-path answers: the same articles in the same order; scores
    within SCORE_RTOL (the two paths compute pair scores over other array shapes)."""
    for b, s in zip(batch, single, strict=True):
        assert_same_answer(s, b, s.customer_id)


@pytest.mark.parametrize("policy", FILTER_POLICIES)
def test_single_requests_equal_the_batch_path(rec, policy):
    r = rec.with_policy(policy)
    customers = _buyers(r, 25) + r.customers["customer_id"].tail(5).to_list() + ["f" * 64]
    for at in (_day_after(r), _day_after(r) - dt.timedelta(days=40)):
        batch = r.recommend_batch(customers, at, k=12)
        single = [r.recommend(c, at, k=12) for c in customers]
        _assert_same(batch, single)
        assert sum(x.stages.count("ranking") for x in single) > 0


def test_answers_do_not_depend_on_who_else_is_in_the_batch(rec):
    at = _day_after(rec)
    customers = _buyers(rec, 12)
    alone = [rec.recommend_batch([c], at, k=12)[0] for c in customers]
    _assert_same(rec.recommend_batch(customers, at, k=12), alone)


def test_embeddings_equal_the_offline_retrieval_stage(rec, parts):
    """The recommender's per-day embedding table (every customer in one batch) holds what
    RetrievalStage computes for a batch of 50 customers (the offline pipeline's way), within
    a few ulps: BLAS may round other batch shapes differently."""
    stage = parts[1]
    at = _day_after(rec)
    customers = rec.customers["customer_id"].head(50).to_list()
    assert_embeddings_close(rec.query_embeddings(customers, at), stage.query_embeddings(customers, at))
    assert_embeddings_close(rec.query_embeddings(customers[7:9], at), stage.query_embeddings(customers, at)[7:9])
    # and the two-tower candidates are the stage's own
    ours = rec.retrieval(customers[:5], at, 30)
    theirs = stage(customers[:5], at, 30)
    assert {c: [a for a, _ in v] for c, v in ours.items()} == {c: [a for a, _ in v] for c, v in theirs.items()}


def test_added_purchases_reach_both_paths_alike(rec):
    at = _day_after(rec)
    strict = rec.with_policy("exclude_purchased")
    buyer = _buyers(rec, 1)[0]
    newcomer = "a" * 64  # not in the store: cold until they buy
    top = strict.recommend(buyer, at, k=5).article_ids[0]
    assert strict.recommend(newcomer, at).cold_start
    popular_before = strict.popular(at, None, 12)
    rows = pl.DataFrame({"t_dat": [at - dt.timedelta(days=1)] * 3, "customer_id": [buyer, newcomer, newcomer],
                         "article_id": [top, top, popular_before[-1]]})
    strict.add_purchases(rows)  # with_policy shares state with rec
    after = strict.recommend(buyer, at, k=12)
    assert top not in after.article_ids
    fresh = strict.recommend(newcomer, at, k=12)
    assert not fresh.cold_start and top not in fresh.article_ids
    assert strict.last_day() == at - dt.timedelta(days=1)
    customers = [buyer, newcomer, *_buyers(rec, 10)]
    for r in (strict, rec.with_policy("exclude_purchased_except_repurchase")):
        _assert_same(r.recommend_batch(customers, at, k=12), [r.recommend(c, at, k=12) for c in customers])


def test_sales_counts_follow_added_purchases(rec):
    at = _day_after(rec)
    rec.warm_up(at)
    article = rec.articles["article_id"][0]
    before = rec._lookups.sales(int((at - dt.date(1970, 1, 1)).days))[0][0]
    rec.add_purchases(pl.DataFrame({"t_dat": [at - dt.timedelta(days=2)] * 2,
                                    "customer_id": _buyers(rec, 2), "article_id": [article] * 2}))
    assert rec._lookups.sales(int((at - dt.date(1970, 1, 1)).days))[0][0] == before + 2


def test_popularity_padding_grows_with_k(rec):
    at = _day_after(rec)
    assert len(rec.popular(at, None, 5)) == 5
    long = rec.recommend("0" * 64, at, k=60)  # cached for n=5 first: must not cap at 5
    assert len(long.article_ids) == 60 == len(set(long.article_ids))
    assert long.article_ids[:5] == rec.popular(at, None, 5)


def test_cold_start_uses_the_age_group_when_given(rec):
    at = _day_after(rec)
    plain = rec.recommend("1" * 64, at, k=12)
    young = rec.recommend("2" * 64, at, k=12, age=19)
    assert plain.cold_start and young.cold_start
    assert set(plain.stages) == {"popularity"} and len(young.article_ids) == 12


def test_k_must_be_positive(rec):
    with pytest.raises(ValueError, match="k must be >= 1"):
        rec.recommend(_buyers(rec, 1)[0], _day_after(rec), k=0)


def test_top_k_orders_ties_by_article_id_like_the_batch_path():
    scores = np.array([1.0, 2.0, 2.0, 0.5, 2.0])
    ids = ["d", "c", "b", "a", "e"]
    assert _top_k(scores, ids, 2) == [2, 1]  # the three 2.0s: b, c, e
    assert _top_k(scores, ids, 5) == [2, 1, 4, 0, 3]
    assert _top_k(np.array([3.0, 1.0, 2.0]), ["x", "y", "z"], 2) == [0, 2]


def test_a_customer_with_purchases_but_no_attributes(parts):
    """History rows of a customer missing from the customers table: cold until they buy
    again, then both paths see all their purchases alike."""
    settings, stage, ranker, articles, history = parts
    ghost = "c" * 64
    day = history["t_dat"].max()
    art = history["article_id"][0]
    extra = pl.DataFrame({"t_dat": [day - dt.timedelta(days=3)], "customer_id": [ghost], "article_id": [art]})
    rec = FourStageRecommender(stage, ranker, articles, stage.customers, pl.concat([history, extra]),
                               filter_policy="exclude_purchased", retrieval_k=candidate_budget(settings))
    at = day + dt.timedelta(days=1)
    assert rec.recommend(ghost, at).cold_start
    rec.add_purchases(extra.with_columns(pl.lit(day).alias("t_dat"), pl.lit(articles["article_id"][1]).alias(
        "article_id")))
    one = rec.recommend(ghost, at, k=12)
    assert not one.cold_start and art not in one.article_ids and articles["article_id"][1] not in one.article_ids
    assert rec.purchase_days(ghost) == [day - dt.timedelta(days=3), day]
    _assert_same(rec.recommend_batch([ghost], at, k=12), [one])


def test_the_retrieval_stage_counts_added_purchases_through_its_public_hook(parts):
    stage = parts[1]
    mine = copy.copy(stage)  # what the recommender does: the loaded stage stays as it was
    at = stage.history["t_dat"].max() + dt.timedelta(days=1)
    before = mine.popular(at)
    assert before, "the stage must have a popularity source"
    newcomer = next(a for a in stage.index.article_ids.to_list() if a not in before)
    mine.add_purchases(pl.DataFrame({"t_dat": [at - dt.timedelta(days=1)] * 500,
                                     "customer_id": ["b" * 64] * 500, "article_id": [newcomer] * 500}))
    assert mine.popular(at)[0] == newcomer
    assert stage.popular(at) == before
    assert mine.history.height == stage.history.height + 500
    mine.add_purchases(pl.DataFrame({"t_dat": [], "customer_id": [], "article_id": []},
                                    schema={"t_dat": pl.Date, "customer_id": pl.String, "article_id": pl.String}))
    assert mine.history.height == stage.history.height + 500


def test_policies_sharing_a_batch_answer_as_if_alone(parts):
    """The filter-policy clones share one batch's retrieval and per-pair features (the
    evaluation asks each policy for the same customers in turn): every answer and candidate
    list equals a fresh recommender's with that policy only, whatever order they are asked in."""
    settings, stage, ranker, articles, history = parts

    def fresh(policy):
        return FourStageRecommender(stage, ranker, articles, stage.customers, history, filter_policy=policy,
                                    retrieval_k=candidate_budget(settings))

    base = fresh("none")
    at = base.last_day() + dt.timedelta(days=1)
    customers = _buyers(base, 30) + base.customers["customer_id"].tail(10).to_list() + ["e" * 64]
    alone = {p: (fresh(p).candidates(customers, at, 40), fresh(p).recommend_batch(customers, at, k=12))
             for p in FILTER_POLICIES}
    for order in (FILTER_POLICIES, FILTER_POLICIES[::-1]):
        shared = fresh(order[0])
        for p in order:
            r = shared.with_policy(p)
            assert r.candidates(customers, at, 40) == alone[p][0]
            _assert_same(r.recommend_batch(customers, at, k=12), alone[p][1])
    # the policies really differ on these customers (else the test proves nothing)
    lists = {p: [x.article_ids for x in alone[p][1]] for p in FILTER_POLICIES}
    assert lists["none"] != lists["exclude_purchased"] != lists["exclude_purchased_except_repurchase"]


def test_the_serving_retrieval_follows_purchases_as_a_rebuild_would(parts):
    """ServingRetrieval updates its cached best sellers and popularity prior in place when
    purchases arrive; its answers equal those of the offline stage given the same rows
    (which recomputes everything), bit for bit, and its cached index is not rebuilt."""
    from hmrec.serving.incremental import ServingRetrieval

    stage = parts[1]
    serving = ServingRetrieval.of(stage)
    at = stage.history["t_dat"].max() + dt.timedelta(days=1)
    earlier = at - dt.timedelta(days=3)
    customers = stage.customers["customer_id"].head(12).to_list()
    for day in (earlier, at):  # caches for two days
        serving(customers, day, 30)
    assert serving.has_prior, "the tiny home's two-tower model must have a popularity prior"
    index_before = serving._index_for(at)
    assert serving._prior_counts is not None, "the prior must be followable incrementally"
    popular_before = serving.popular(at)
    articles = stage.index.article_ids.to_list()
    outsider = next(a for a in articles if a not in popular_before)
    batches = [  # an outsider climbs into the best sellers; a day outside the window; a non-catalogue article
        pl.DataFrame({"t_dat": [at - dt.timedelta(days=1)] * 40, "customer_id": [customers[0]] * 40,
                      "article_id": [outsider] * 40}),
        pl.DataFrame({"t_dat": [at - dt.timedelta(days=2), at, at - dt.timedelta(days=30)],
                      "customer_id": customers[1:4], "article_id": [popular_before[-1], articles[3], articles[4]]}),
        pl.DataFrame({"t_dat": [at - dt.timedelta(days=1)], "customer_id": [customers[5]],
                      "article_id": ["0000000001"]}),
    ]
    reference = copy.copy(stage)
    flat_c = [c for c in customers for _ in range(5)]
    flat_a = [articles[(7 * i) % len(articles)] for i in range(len(flat_c))]
    for rows in batches:
        serving.add_purchases(rows)
        reference.add_purchases(rows)
        assert serving.popular(at) == reference.popular(at)
        assert serving(customers, at, 30) == reference(customers, at, 30)
        np.testing.assert_array_equal(serving.score_pairs(flat_c, flat_a, at), reference.score_pairs(flat_c, flat_a, at))
    assert outsider in serving.popular(at) and outsider not in popular_before
    assert serving._index_for(at) is index_before  # followed in place, not rebuilt
    # the other day's best sellers were followed too (one prior index is cached at a time)
    assert serving.popular(earlier) == reference.popular(earlier)
    assert serving(customers, earlier, 30) == reference(customers, earlier, 30)
    assert serving.history.height == stage.history.height + 44 == reference.history.height
    assert stage.popular(at) == popular_before  # the loaded stage is not changed
