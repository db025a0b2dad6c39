from datetime import date

import polars as pl

from hmrec.retrieval.best_sellers import best_seller_counts, best_sellers

D = date(2020, 9, 8)
TX = pl.DataFrame(
    {
        "t_dat": [date(2020, 9, d) for d in (1, 2, 2, 7, 7, 7, 8, 1, 3, 3)],
        "article_id": ["old", "b", "b", "a", "c", "c", "today", "a", "a", "b"],
        "group": ["x", "x", "y", "x", "y", "y", "x", "x", "y", "y"],
    }
)


def test_window_is_the_days_before_as_of_and_ties_go_to_the_smaller_id() -> None:
    # 7 days before the 8th: the 1st .. the 7th; the 8th itself is not counted
    assert best_sellers(TX, D, 7) == ["a", "b", "c", "old"]  # a and b 3 sales each
    assert best_sellers(TX, D, 6) == ["b", "a", "c"]  # the 1st drops out: a 2 sales, b 3, c 2
    assert best_sellers(TX, D, 7, n=2) == ["a", "b"]
    assert best_sellers(TX, D, None) == ["a", "b", "c", "old"]  # every day before the 8th
    assert best_sellers(TX, date(2020, 9, 3), None) == ["b", "a", "old"]


def test_all_articles_breaks_ties_by_total_sales_then_id() -> None:
    ranked = best_seller_counts(TX, D, 1, all_articles=True)
    assert ranked["article_id"].to_list() == ["c", "a", "b", "old"]
    assert ranked["sales"].to_list() == [2, 1, 0, 0] and ranked["total"].to_list() == [2, 3, 3, 1]


def test_by_ranks_within_each_group() -> None:
    ranked = best_seller_counts(TX, D, 7, by="group", n=2)
    assert ranked.select("group", "article_id").rows() == [("x", "a"), ("x", "b"), ("y", "b"), ("y", "c")]
