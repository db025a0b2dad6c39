"""The harness: hand-computed metrics, evaluate.json shape, extra systems as callables."""

import json
import math

import pytest

from hmrec.data import generate, load_raw
from hmrec.evaluation import (
    EvaluationInputError,
    System,
    evaluate_systems,
    recall_at_k,
    run_evaluation,
    write_evaluation,
    write_evaluation_report,
)
from hmrec.evaluation.candidate_scores import CandidateScores
from hmrec.retrieval.list_metrics import ListScores

# c1 bought A and B; c2 bought C; c3 bought nothing (not evaluated)
ACTUAL = {"c1": ["A", "B"], "c2": ["C"], "c3": []}
# c1: hit at 1 and 3, a repeated A at 4 never scores twice; c2: no hit
LISTS = {"c1": ["A", "X", "B", "A"], "c2": ["X", "Y"]}
CANDIDATES = {"c1": ["X", "A"], "c2": ["C"]}

def list_scores(actual, predicted, k=12):
    scores = ListScores(k)
    scores.add(actual, predicted)
    return scores.means()


def candidate_scores(actual, candidates, k=100, curve=()):
    scores = CandidateScores(k, curve)
    scores.add(actual, candidates)
    return scores.means()


AP_C1 = (1 / 1 + 2 / 3) / 2
NDCG_C1 = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))


def test_list_scores_match_hand_computation():
    scores = list_scores(ACTUAL, LISTS, k=12)
    assert scores["map_at_12"] == pytest.approx(AP_C1 / 2)
    assert scores["recall_at_12"] == pytest.approx(0.5)
    assert scores["ndcg_at_12"] == pytest.approx(NDCG_C1 / 2)


def test_list_scores_cut_at_k_and_missing_customer_scores_zero():
    # with k=2 c1 only hits A: AP = 1 / min(2, 2) = 0.5, recall 0.5
    scores = list_scores(ACTUAL, {"c1": ["A", "X", "B"]}, k=2)
    assert scores["map_at_2"] == pytest.approx(0.5 / 2)
    assert scores["recall_at_2"] == pytest.approx(0.5 / 2)
    assert recall_at_k(["A", "B"], ["B", "B", "A"], 2) == 0.5


def test_fewer_purchases_than_k_normalise_by_purchases():
    # one purchase found at position 2 of 12: AP = 1/2 (not 1/24)
    assert list_scores({"c": ["Z"]}, {"c": ["Y", "Z"]})["map_at_12"] == pytest.approx(0.5)


def test_candidate_scores_recall_mean_and_pooled_reachable_share():
    scores = candidate_scores(ACTUAL, CANDIDATES, k=100, curve=(1,))
    assert scores["recall_at_100"] == pytest.approx((0.5 + 1.0) / 2)
    assert scores["reachable_share"] == pytest.approx(2 / 3)
    assert scores["recall_at_1"] == pytest.approx((0.0 + 1.0) / 2)


def test_candidate_scores_count_a_repeated_candidate_once_at_its_first_place():
    # c bought A, B, C; A is listed at 2 and again at 4, B at 5 (beyond k=4), C never
    actual = {"c": ["A", "B", "C"], "d": ["Q"]}
    listed = {"c": ["X", "A", "Y", "A", "B"], "d": ["Q", "Q"]}
    scores = candidate_scores(actual, listed, k=4, curve=(1, 2, 3))
    assert scores["recall_at_1"] == pytest.approx((0 + 1) / 2)
    assert scores["recall_at_2"] == pytest.approx((1 / 3 + 1) / 2)
    assert scores["recall_at_4"] == pytest.approx((1 / 3 + 1) / 2)
    assert scores["reachable_share"] == pytest.approx(2 / 4)  # A and Q of the 4 purchases


def test_an_unknown_article_is_named_with_its_system_and_customer():
    with pytest.raises(EvaluationInputError, match="'sys' recommended unknown article 'Z' to customer 'c1'"):
        evaluate_systems(ACTUAL, {"sys": lambda ids, k: {c: ["A", "Z"] for c in ids}}, known_articles={"A", "B"})


def test_evaluate_systems_and_json_shape(tmp_path):
    asked = []

    def bare(customer_ids, k):
        asked.append((list(customer_ids), k))
        return {c: LISTS.get(c, []) for c in customer_ids}

    result = evaluate_systems(
        ACTUAL,
        {
            "popularity": bare,
            "two_tower": System(recommend=lambda ids, k: LISTS, candidates=lambda ids, k: CANDIDATES),
        },
        keep_customers=["c1"],
    )
    assert asked == [(["c1", "c2"], 12)]  # same customers, sorted, only those who bought
    path = write_evaluation(result, tmp_path / "reports")
    assert path == tmp_path / "reports" / "evaluate.json"
    doc = json.loads(path.read_text())
    assert doc["step"] == "evaluate" and doc["split"] == "test" and doc["seconds"] >= 0
    assert doc["n_customers"] == 2
    assert set(doc["metrics"]) == {"popularity", "two_tower"}
    assert set(doc["metrics"]["popularity"]) == {"map_at_12", "recall_at_12", "ndcg_at_12"}
    tt = doc["metrics"]["two_tower"]
    assert set(tt) == {"map_at_12", "recall_at_12", "ndcg_at_12", "recall_at_100", "reachable_share"}
    assert tt["map_at_12"] == pytest.approx(AP_C1 / 2)
    assert tt["recall_at_100"] == pytest.approx(0.75)
    assert tt["reachable_share"] == pytest.approx(2 / 3)
    assert doc["recall_curves"]["two_tower"]["100"] == pytest.approx(0.75)
    assert result.examples["two_tower"] == {"c1": ["A", "X", "B", "A"]}
    assert not list((tmp_path / "reports").glob(".evaluate*"))  # no temp file left


def test_unknown_article_is_an_error_naming_system_customer_article():
    with pytest.raises(EvaluationInputError, match=r"'bad'.*'Q'.*'c1'"):
        evaluate_systems(ACTUAL, {"bad": lambda ids, k: {"c1": ["Q"]}}, known_articles={"A", "B", "C"})


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen")
    generate(out, n_customers=1500, seed=3)
    return load_raw(out)


def test_run_evaluation_on_generated_data(raw, tmp_path):
    extra = {"pipeline": lambda ids, k: {c: [] for c in ids}}
    split, result = run_evaluation(
        raw.transactions, raw.customers, raw.articles, reports_dir=tmp_path, extra_systems=extra,
        als_params={"factors": 8, "iterations": 3},
    )
    doc = json.loads((tmp_path / "evaluate.json").read_text())
    assert list(doc["metrics"]) == ["popularity", "popularity_by_age", "repurchase_popularity", "als", "pipeline"]
    assert doc["n_customers"] == len(split.test_customers()) > 0
    assert doc["metrics"]["pipeline"] == {"map_at_12": 0.0, "recall_at_12": 0.0, "ndcg_at_12": 0.0}
    for system in ("popularity", "popularity_by_age", "repurchase_popularity", "als"):
        m = doc["metrics"][system]
        assert 0.0 <= m["map_at_12"] <= 1.0
        assert 0.0 <= m["recall_at_12"] <= m["recall_at_100"] <= 1.0
        assert 0.0 < m["reachable_share"] <= 1.0
    # popularity of the last week must find something on data with trends
    assert doc["metrics"]["popularity"]["map_at_12"] > 0.0
    # deterministic given the seed
    _, again = run_evaluation(raw.transactions, raw.customers, raw.articles, als_params={"factors": 8, "iterations": 3})
    assert again.metrics == {s: v for s, v in result.metrics.items() if s != "pipeline"}

    # the report of the run, with feature importance left behind by the ranking step
    (tmp_path / "ranking.json").write_text(json.dumps({"step": "ranking", "feature_importance": {"age": 1.0}}))
    index = write_evaluation_report(tmp_path, split, result, raw.articles)
    assert index == tmp_path / "report" / "index.html"
    assert {p.name for p in index.parent.glob("*.png")} == {"metrics.png", "recall_at_k.png", "feature_importance.png"}
    page = index.read_text()
    assert page.count('<div class="example">') == 3
    assert "Not available in this run: training curves." in page


def test_list_and_candidate_scores_do_not_depend_on_customer_order_or_batches():
    import numpy as np

    rng = np.random.default_rng(3)
    actual = {f"c{i}": [f"a{j}" for j in rng.choice(40, size=int(rng.integers(1, 15)), replace=False)]
              for i in range(300)}
    lists = {c: [f"a{j}" for j in rng.permutation(40)[:30]] for c in actual}
    base_lists = list_scores(actual, lists)
    base_candidates = candidate_scores(actual, lists, k=30, curve=(1, 5, 12))
    for seed in range(5):
        keys = list(actual)
        np.random.default_rng(seed).shuffle(keys)
        ls, cs = ListScores(12), CandidateScores(30, curve=(1, 5, 12))
        for start in range(0, len(keys), 70):  # in batches, as evaluate scores a FULL week
            part = {c: actual[c] for c in keys[start:start + 70]}
            ls.add(part, lists)
            cs.add(part, lists)
        assert ls.means() == base_lists
        assert cs.means() == base_candidates
