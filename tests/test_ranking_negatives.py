"""Negatives never equal a purchase of the same customer in the same window; ratios hold."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from hmrec.ranking.negatives import candidate_frame, random_negatives

D1, D2 = date(2020, 5, 4), date(2020, 5, 11)
CATALOGUE = [f"a{i:03d}" for i in range(200)]


def _positives() -> pl.DataFrame:
    rows = [("c1", "a001", D1), ("c1", "a002", D1), ("c2", "a001", D1), ("c1", "a005", D2)]
    rows += [("c3", f"a{i:03d}", D1) for i in range(10, 25)]
    return pl.DataFrame(rows, schema=["customer_id", "article_id", "as_of"], orient="row")


def test_random_ratio_is_exact_and_no_negative_is_a_purchase() -> None:
    pos = _positives()
    neg = random_negatives(pos, CATALOGUE, per_positive=10, seed=3)
    counts = dict(neg.group_by("customer_id", "as_of").len().select(
        pl.concat_str("customer_id", pl.col("as_of").cast(pl.String), separator="@"), "len"
    ).iter_rows())
    assert counts == {f"c1@{D1}": 20, f"c2@{D1}": 10, f"c1@{D2}": 10, f"c3@{D1}": 150}
    assert neg.height == 10 * pos.height
    clash = neg.join(pos, on=["customer_id", "article_id", "as_of"], how="semi")
    assert clash.height == 0
    assert neg.unique().height == neg.height  # distinct within a customer and date
    assert set(neg["article_id"]) <= set(CATALOGUE)


def test_random_negative_excludes_only_same_window() -> None:
    # c1 bought a005 on D2 only; on D1 a005 is a legal negative, on D2 never
    pos = _positives()
    hits_d1 = hits_d2 = 0
    for seed in range(30):
        neg = random_negatives(pos, CATALOGUE[:8], per_positive=3, seed=seed)
        c1 = neg.filter(pl.col("customer_id") == "c1")
        hits_d1 += c1.filter((pl.col("as_of") == D1) & (pl.col("article_id") == "a005")).height
        hits_d2 += c1.filter((pl.col("as_of") == D2) & (pl.col("article_id") == "a005")).height
    assert hits_d2 == 0
    assert hits_d1 > 0


def test_random_is_deterministic_and_seed_matters() -> None:
    pos = _positives()
    a = random_negatives(pos, CATALOGUE, seed=1)
    b = random_negatives(pos.reverse(), CATALOGUE, seed=1)
    c = random_negatives(pos, CATALOGUE, seed=2)
    assert a.equals(b)
    assert not a.equals(c)


def test_random_caps_at_the_catalogue_left() -> None:
    pos = pl.DataFrame({"customer_id": ["c1", "c1"], "article_id": ["a000", "a001"], "as_of": [D1, D1]})
    neg = random_negatives(pos, CATALOGUE[:6], per_positive=10, seed=0)
    assert sorted(neg["article_id"]) == ["a002", "a003", "a004", "a005"]


def test_random_covers_catalogue_uniformly() -> None:
    pos = pl.DataFrame({"customer_id": [f"c{i}" for i in range(2000)], "article_id": ["a000"] * 2000, "as_of": [D1] * 2000})
    neg = random_negatives(pos, CATALOGUE[:21], per_positive=10, seed=0)
    counts = neg["article_id"].value_counts()
    assert "a000" not in set(counts["article_id"])
    assert counts.height == 20
    assert counts["count"].min() > 850 and counts["count"].max() < 1150  # 1000 expected each


def fake_candidates(cids: list[str], as_of: date, k: int) -> dict[str, list[tuple[str, float]]]:
    # everyone gets a000.. in order, plus a repeat that must be dropped
    out = {c: [(f"a{i:03d}", float(100 - i)) for i in range(k)] + [("a000", 0.0)] for c in cids}
    return out


def test_candidate_frame_batches_and_dedupes() -> None:
    calls = []

    def cands(cids: list[str], as_of: date, k: int) -> dict[str, list[tuple[str, float]]]:
        calls.append(list(cids))
        return fake_candidates(cids, as_of, k)

    out = candidate_frame(cands, ["c1", "c2", "c1", "c3"], D1, k=3, batch_size=2)
    assert calls == [["c1", "c2"], ["c3"]]
    assert out.height == 9
    assert out.filter(pl.col("customer_id") == "c3")["article_id"].to_list() == ["a000", "a001", "a002"]
    assert out.schema["retrieval_score"] == pl.Float32


def test_missing_column_raises() -> None:
    with pytest.raises(ValueError, match="as_of"):
        random_negatives(pl.DataFrame({"customer_id": ["c"], "article_id": ["a"]}), CATALOGUE)
