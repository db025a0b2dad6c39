"""Customer sampling: reproducible for a seed, complete histories, only the touched articles."""

from __future__ import annotations

import polars as pl
import pytest

from hmrec.data.loader import RawData, load_raw
from hmrec.data.sampling import sample_customers
from hmrec.data.synthetic import generate


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> RawData:
    out = tmp_path_factory.mktemp("sampling")
    generate(out, n_customers=600, seed=11)
    return load_raw(out)


def test_same_seed_gives_the_same_sample(raw):
    a = sample_customers(raw, 100, seed=3)
    b = sample_customers(raw, 100, seed=3)
    assert a.customers.equals(b.customers)
    assert a.transactions.equals(b.transactions)
    assert a.articles.equals(b.articles)


def test_other_seed_gives_another_sample(raw):
    a = set(sample_customers(raw, 100, seed=3).customers["customer_id"])
    b = set(sample_customers(raw, 100, seed=4).customers["customer_id"])
    assert a != b and len(a) == len(b) == 100


def test_sample_does_not_depend_on_row_order(raw):
    shuffled = RawData(raw.articles, raw.customers.sample(fraction=1.0, shuffle=True, seed=0),
                       raw.transactions, raw.report)
    assert set(sample_customers(shuffled, 50, seed=9).customers["customer_id"]) == set(
        sample_customers(raw, 50, seed=9).customers["customer_id"])


def test_all_transactions_of_sampled_customers_and_only_theirs(raw):
    s = sample_customers(raw, 120, seed=5)
    chosen = s.customers["customer_id"]
    assert chosen.n_unique() == 120
    expected = raw.transactions.filter(pl.col("customer_id").is_in(chosen.implode()))
    assert s.transactions.equals(expected)  # every row, file order kept, identical rows included
    assert s.transactions["customer_id"].is_in(chosen.implode()).all()
    touched = set(s.transactions["article_id"])
    assert set(s.articles["article_id"]) == touched
    assert s.articles.columns == raw.articles.columns
    assert s.report.rows == {"articles": len(touched), "customers": 120, "transactions": s.transactions.height}
    assert s.report.n_customers_referenced == s.transactions["customer_id"].n_unique()


def test_sample_larger_than_population_keeps_everyone(raw):
    s = sample_customers(raw, 10_000, seed=1)
    assert s.customers.equals(raw.customers)
    assert s.transactions.equals(raw.transactions)


def test_sample_size_must_be_positive(raw):
    with pytest.raises(ValueError, match="n must be >= 1"):
        sample_customers(raw, 0, seed=1)
