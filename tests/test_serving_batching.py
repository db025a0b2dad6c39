"""Micro-batching: the batcher's rules (when a batch runs, what each waiter gets back),
batched answers equal to single answers on a tiny trained home, and a real server whose
concurrent requests are answered in batches with the same answers as one at a time."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import socket

import httpx
import numpy as np
import polars as pl
import pytest
from serving_home import (
    SCORE_ATOL,
    SCORE_RTOL,
    ServerThread,
    assert_same_answer,
    tiny_settings,
    trained_home,
    wait_for,
)

from hmrec.ranking import feature_rows
from hmrec.ranking.model import MISSING_CATEGORY
from hmrec.serving.api import create_app
from hmrec.serving.batching import MicroBatcher
from hmrec.serving.loading import load_recommender
from hmrec.serving.recommender import FILTER_POLICIES, RecommendationRequest


# ---------------------------------------------------------------------------- the batcher
def _recording(fail_on: set[int] | None = None):
    """A batch function that doubles numbers, records each batch, and hands back a
    ValueError in the place of every item in `fail_on`."""
    calls: list[list[int]] = []

    def run(items):
        calls.append(list(items))
        return [ValueError(f"bad item {x}") if x in (fail_on or set()) else 2 * x for x in items]

    return run, calls


async def _requests(batcher: MicroBatcher, items: list[int]) -> list:
    """Concurrent requests as the HTTP layer makes them: arrived, submit, left."""
    async def one(x: int):
        batcher.arrived()
        try:
            return await batcher.submit(x)
        except ValueError as exc:
            return exc
        finally:
            batcher.left()

    return await asyncio.gather(*(one(x) for x in items))


def test_concurrent_requests_are_answered_by_one_call_in_order():
    run, calls = _recording()
    batcher = MicroBatcher(run, max_batch=64, max_wait_s=10.0)  # the wait is never reached
    assert asyncio.run(_requests(batcher, list(range(10)))) == [2 * x for x in range(10)]
    assert calls == [list(range(10))]
    assert (batcher.batches, batcher.items) == (1, 10)


def test_an_error_reaches_only_its_own_request():
    run, calls = _recording(fail_on={3, 7})
    out = asyncio.run(_requests(MicroBatcher(run, max_wait_s=10.0), list(range(10))))
    assert [str(x) for x in out if isinstance(x, ValueError)] == ["bad item 3", "bad item 7"]
    assert [x for x in out if not isinstance(x, ValueError)] == [2 * x for x in range(10) if x not in (3, 7)]
    assert len(calls) == 1


def test_a_failing_batch_function_fails_every_waiter_and_the_next_batch_works():
    state = {"fail": True}

    def run(items):
        if state["fail"]:
            raise RuntimeError("model exploded")
        return list(items)

    batcher = MicroBatcher(run, max_wait_s=10.0)

    async def go():
        first = await asyncio.gather(*(batcher.submit(x) for x in range(3)), return_exceptions=True)
        state["fail"] = False
        return first, await batcher.submit(5)

    first, second = asyncio.run(go())
    assert all(isinstance(x, RuntimeError) and "exploded" in str(x) for x in first)
    assert second == 5


def test_batches_never_exceed_max_batch():
    run, calls = _recording()
    out = asyncio.run(_requests(MicroBatcher(run, max_batch=4, max_wait_s=10.0), list(range(10))))
    assert out == [2 * x for x in range(10)]
    assert [len(c) for c in calls] == [4, 4, 2]
    assert [x for c in calls for x in c] == list(range(10))


def test_a_lone_request_does_not_wait():
    """With nothing else accepted the batch runs at once, not after max_wait_s."""
    run, calls = _recording()
    batcher = MicroBatcher(run, max_wait_s=3600.0)

    async def go():
        return await asyncio.wait_for(_requests(batcher, [21]), timeout=60)

    assert asyncio.run(go()) == [42]
    assert calls == [[21]]


def test_a_request_that_never_submits_delays_the_batch_by_max_wait_only():
    """An accepted request that fails before submitting (e.g. a 4xx) is still counted while in
    flight; the waiting one is answered when max_wait_s runs out, alone."""
    run, calls = _recording()
    batcher = MicroBatcher(run, max_wait_s=0.05)

    async def go():
        batcher.arrived()  # accepted, never submits, never leaves during the test
        return await asyncio.wait_for(_requests(batcher, [1]), timeout=60)

    assert asyncio.run(go()) == [2]
    assert calls == [[1]]


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(lambda xs: xs, max_batch=0)
    with pytest.raises(ValueError, match="max_wait_s"):
        MicroBatcher(lambda xs: xs, max_wait_s=-1)


# ---------------------------------------------------------------------------- the recommender
@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return trained_home(tmp_path_factory)


@pytest.fixture(scope="module")
def rec(home):
    return load_recommender(tiny_settings(home))


def _buyers(rec, n: int) -> list[str]:
    counts = rec.history.group_by("customer_id").len().sort(["len", "customer_id"], descending=[True, False])
    return counts["customer_id"].head(n).to_list()


def _same(a, b) -> None:
    """A batched answer and a single one: FAISS and the pair scores run over other batch
    shapes, so floats may differ in their last bits; articles and order may not."""
    assert a.at == b.at
    assert_same_answer(a, b, f"{a.customer_id} on {a.at}")


@pytest.mark.parametrize("policy", FILTER_POLICIES)
def test_batched_answers_equal_single_answers(rec, policy):
    r = rec.with_policy(policy)
    day = r.last_day() + dt.timedelta(days=1)
    customers = _buyers(r, 20) + r.customers["customer_id"].tail(20).to_list()
    requests = [RecommendationRequest(c, day, 12) for c in customers]
    # more than one FAISS chunk, two days, other k, a repeated customer, cold starts
    requests += [RecommendationRequest(c, day - dt.timedelta(days=30), 5) for c in customers[:7]]
    requests += [RecommendationRequest(customers[0], day, 3), RecommendationRequest("e" * 64, day, 12, age=30),
                 RecommendationRequest("f" * 64, day, 4)]
    batched = r.recommend_many(requests)
    assert len(batched) == len(requests)
    for req, got in zip(requests, batched):
        _same(got, r.recommend(req.customer_id, req.at, req.k, age=req.age))
        assert len(got.article_ids) == req.k
    assert sum(x.stages.count("ranking") for x in batched) > 0
    assert batched[-1].cold_start and batched[-2].cold_start


def test_a_bad_request_in_a_batch_fails_alone(rec):
    day = rec.last_day() + dt.timedelta(days=1)
    customers = _buyers(rec, 4)
    requests = [RecommendationRequest(customers[0], day, 12), RecommendationRequest(customers[1], day, 0),
                RecommendationRequest(customers[2], day, 12), RecommendationRequest(customers[3], day, -5)]
    out = rec.recommend_many(requests)
    assert isinstance(out[1], ValueError) and "k must be >= 1" in str(out[1])
    assert isinstance(out[3], ValueError)
    _same(out[0], rec.recommend(customers[0], day, 12))
    _same(out[2], rec.recommend(customers[2], day, 12))


def test_a_failure_inside_the_vectorised_call_is_isolated(rec):
    """A request whose day the models cannot handle fails; the others in its batch are
    answered one by one instead of all failing."""
    day = rec.last_day() + dt.timedelta(days=1)
    customers = _buyers(rec, 3)
    good = [RecommendationRequest(c, day, 12) for c in customers]
    bad = RecommendationRequest(customers[0], "not a date", 12)  # type: ignore[arg-type]
    out = rec.recommend_many([good[0], bad, good[1], good[2]])
    assert isinstance(out[1], Exception)
    for i, req in zip((0, 2, 3), good):
        _same(out[i], rec.recommend(req.customer_id, req.at, req.k))


# ---------------------------------------------------------------------------- over HTTP
def _raw_get(port: int, path: str) -> socket.socket:
    """Send one complete GET (Connection: close) and return the socket, unread: the request
    sits in the server's accept queue / socket buffer until its event loop gets to it."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=120)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    return sock


def _raw_response(sock: socket.socket) -> tuple[int, dict]:
    """Status and JSON body of the reply on `sock` (read to EOF; the server closes)."""
    data = b""
    with sock:
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


def test_concurrent_http_requests_are_batched_and_answered_as_single_ones(home, rec):
    """Requests waiting together are answered by one batch, with the answers they get alone.

    No timing window: the test holds the recommender's lock, sends one request and waits
    until the server's batcher has started it (its batch counter says so): the event loop
    is now blocked on the lock. The other requests are then sent in full; the server
    cannot read them until the lock is released, so they all wait together, whatever the
    machine's speed."""
    app = create_app(tiny_settings(home), recommender=rec)
    srv = ServerThread(app).start()
    batcher = app.state.batcher
    try:
        customers = _buyers(rec, 24) + ["a" * 64]
        base = (batcher.batches, batcher.items)
        with rec._lock:
            first = _raw_get(srv.port, f"/recommendations/{customers[0]}?k=7")
            wait_for(lambda: batcher.batches == base[0] + 1, "the first request's batch to start")
            rest = [_raw_get(srv.port, f"/recommendations/{c}?k=7") for c in customers[1:]]
        replies = [_raw_response(s) for s in [first, *rest]]
        assert batcher.items - base[1] == len(customers)
        # the first alone, then the 24 that waited together: in one batch (or a few, never one each)
        assert batcher.batches - base[0] < len(customers) - 1, (batcher.batches - base[0], len(customers))
        with httpx.Client(base_url=srv.url, timeout=120) as client:
            for c, (status, body) in zip(customers, replies):
                assert status == 200, body
                alone = client.get(f"/recommendations/{c}?k=7")
                assert body["cold_start"] == (c == "a" * 64)
                assert [i["article_id"] for i in body["items"]] == [i["article_id"] for i in alone.json()["items"]]
                np.testing.assert_allclose([i["score"] for i in body["items"]],
                                           [i["score"] for i in alone.json()["items"]], rtol=SCORE_RTOL,
                                           atol=SCORE_ATOL, err_msg=c)
    finally:
        srv.stop()


def test_vectorised_features_equal_the_offline_feature_rows(rec):
    """The block the batch path gives CatBoost holds, cell for cell, what the offline
    pipeline's feature_rows computes for the same (customer, article, day) rows, for
    customers with long, short and no histories, and candidates they bought before."""
    lookups = rec._ready_lookups()
    assert lookups is not None, "the tiny ranker must be servable by the single-request path"
    day = rec.last_day() + dt.timedelta(days=1)
    customers = _buyers(rec, 5) + rec.customers["customer_id"].tail(2).to_list() + ["d" * 64]
    popular = rec.popular(day, None, 30)
    lists = []
    for i, c in enumerate(customers):
        bought = rec.history.filter(rec.history["customer_id"] == c)["article_id"].unique(maintain_order=True)
        lists.append(list(dict.fromkeys([*bought.head(6).to_list(), *popular[i: i + 10]])))
    flat_c = [c for c, arts in zip(customers, lists) for _ in arts]
    flat_a = [a for arts in lists for a in arts]
    scores = rec.retrieval.score_pairs(flat_c, flat_a, day)
    rows = [np.array([lookups.article_row[a] for a in arts]) for arts in lists]
    block = lookups.features_many(customers, day, rows, scores)
    got = block.features_data()

    pairs = pl.DataFrame({"customer_id": flat_c, "article_id": flat_a,
                          "as_of": [day] * len(flat_c)}, schema_overrides={"as_of": pl.Date})
    ref = feature_rows(pairs, rec.history.filter(pl.col("t_dat") < day), rec.articles, rec.customers,
                       pair_scorer=rec.retrieval.score_pairs)
    assert ref.height == len(flat_c)
    for j, name in enumerate(lookups.num_names):
        want = ref[name].cast(pl.Float64).to_numpy().astype(np.float32)
        # counts and days are exact either way; shares and the two-tower score are computed
        # over other array shapes (NumPy vs Polars, one einsum vs another): a few ulps
        np.testing.assert_allclose(got.num_feature_data[:, j], want, rtol=1e-6, atol=1e-7, err_msg=name)
    for j, name in enumerate(lookups.cat_names):
        want = [v.encode() for v in ref[name].cast(pl.String).fill_null(MISSING_CATEGORY).to_list()]
        assert got.cat_feature_data[:, j].tolist() == want, name
    # the customers' history features are not all trivial here
    k = lookups.num_names.index("customer_article_purchases")
    assert got.num_feature_data[:, k].max() >= 1
    k = lookups.num_names.index("days_since_product_purchase")
    assert (got.num_feature_data[:, k] < 9999).sum() >= 5


def test_both_pool_layouts_give_the_same_scores(rec):
    """A large block goes to CatBoost as pandas categoricals, a small one as FeaturesData:
    the scores must not depend on which."""
    from catboost import Pool

    from hmrec.serving.lookups import PANDAS_MIN_ROWS

    lookups = rec._ready_lookups()
    day = rec.last_day() + dt.timedelta(days=1)
    customers = rec.customers["customer_id"].head(40).to_list() + ["9" * 64]
    arts = rec.articles["article_id"].to_list()
    per = PANDAS_MIN_ROWS // len(customers) + 5
    lists = [[arts[(7 * i + j) % len(arts)] for j in range(per)] for i in range(len(customers))]
    flat_c = [c for c, a in zip(customers, lists) for _ in a]
    flat_a = [a for lst in lists for a in lst]
    block = lookups.features_many(customers, day, [np.array([lookups.article_row[a] for a in lst]) for lst in lists],
                                  rec.retrieval.score_pairs(flat_c, flat_a, day))
    assert len(block) >= PANDAS_MIN_ROWS
    big = lookups.predict(block)
    model = lookups.model
    small = (model.predict_proba(Pool(block.features_data(), thread_count=1))[:, 1] if lookups.kind == "classifier"
             else model.predict(Pool(block.features_data(), thread_count=1)))
    # exactly: the same float32 inputs in both layouts, and a tree ensemble sums its leaves in
    # one fixed order per row (no BLAS, no batch-shape dependence)
    np.testing.assert_array_equal(big, small)
    assert len(set(np.round(big, 6))) > 10  # not a constant model
