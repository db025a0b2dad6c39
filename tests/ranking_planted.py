"""Small hand-made worlds for the ranking tests (not a test module itself).

`planted_world` makes customers with a favourite index group who often re-buy
products they bought before, and a weak two-tower stand-in (favourite group + lots
of noise). A good ranker should find the repurchase and popularity signal the weak
score misses. `null_world` has purchases independent of everything: no feature can
honestly tell positives from negatives there.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl

START = date(2020, 6, 1)


def _articles(n_articles: int, rng: np.random.Generator) -> pl.DataFrame:
    ids = [f"{i:010d}" for i in range(n_articles)]
    groups = ["Ladieswear", "Menswear", "Divided", "Sport"]
    garments = ["Jersey", "Trousers", "Dresses", "Knitwear", "Shoes"]
    return pl.DataFrame(
        {
            "article_id": ids,
            "product_code": [f"{i // 3:07d}" for i in range(n_articles)],
            "prod_name": [f"p{i}" for i in range(n_articles)],
            "product_type_name": [f"type{i % 7}" for i in range(n_articles)],
            "product_group_name": [f"pg{i % 3}" for i in range(n_articles)],
            "graphical_appearance_name": [f"ga{i % 4}" for i in range(n_articles)],
            "colour_group_name": [f"col{i % 6}" for i in range(n_articles)],
            "perceived_colour_value_name": [f"pcv{i % 3}" for i in range(n_articles)],
            "perceived_colour_master_name": [f"pcm{i % 5}" for i in range(n_articles)],
            "department_name": [f"dep{i % 8}" for i in range(n_articles)],
            "index_name": [groups[(i // 3) % 4] + "_idx" for i in range(n_articles)],
            "index_group_name": [groups[(i // 3) % 4] for i in range(n_articles)],
            "section_name": [f"sec{i % 5}" for i in range(n_articles)],
            "garment_group_name": [garments[int(g)] for g in rng.integers(0, 5, n_articles)],
        }
    )


def _customers(n_customers: int, rng: np.random.Generator) -> pl.DataFrame:
    statuses = ["ACTIVE", "PRE-CREATE", None]
    return pl.DataFrame(
        {
            "customer_id": [f"{i:064x}" for i in range(n_customers)],
            "age": pl.Series([int(a) for a in rng.integers(18, 70, n_customers)], dtype=pl.Int16),
            "club_member_status": [statuses[int(s)] for s in rng.integers(0, 3, n_customers)],
            "FN": pl.Series([1.0 if f else None for f in rng.random(n_customers) < 0.4], dtype=pl.Float32),
        }
    )


def planted_world(
    n_customers: int = 300, n_articles: int = 150, n_days: int = 70, seed: int = 0
) -> dict:
    """Transactions with repurchase + favourite-group structure, and a weak score."""
    rng = np.random.default_rng(seed)
    articles = _articles(n_articles, rng)
    customers = _customers(n_customers, rng)
    groups = articles["index_group_name"].to_numpy()
    product = articles["product_code"].to_numpy()
    group_names = np.unique(groups)
    favourite = rng.integers(0, len(group_names), n_customers)
    base_pop = rng.pareto(1.5, n_articles) + 0.1
    rows: list[tuple[date, str, str]] = []
    history: dict[int, list[int]] = {c: [] for c in range(n_customers)}
    activity = rng.uniform(0.05, 0.35, n_customers)
    for day in range(n_days):
        t = START + timedelta(days=day)
        # popularity drifts week to week, so recent sales carry signal
        trend = base_pop * np.exp(0.8 * np.sin(np.arange(n_articles) * 0.37 + day / 7.0))
        for c in np.flatnonzero(rng.random(n_customers) < activity):
            past = history[c]
            if past and rng.random() < 0.45:
                prev = past[int(rng.integers(len(past)))]
                same_product = np.flatnonzero(product == product[prev])
                a = int(rng.choice(same_product))
            else:
                w = trend * np.where(groups == group_names[favourite[c]], 4.0, 1.0)
                a = int(rng.choice(n_articles, p=w / w.sum()))
            history[c].append(a)
            rows.append((t, customers["customer_id"][int(c)], articles["article_id"][a]))
    tx = pl.DataFrame(
        rows, schema={"t_dat": pl.Date, "customer_id": pl.String, "article_id": pl.String}, orient="row"
    ).with_columns(
        pl.lit(0.02, dtype=pl.Float32).alias("price"), pl.lit(2, dtype=pl.Int8).alias("sales_channel_id")
    )
    fav_of = dict(zip(customers["customer_id"].to_list(), group_names[favourite]))
    group_of = dict(zip(articles["article_id"].to_list(), groups))
    all_articles = articles["article_id"].to_list()

    noise = np.random.default_rng(seed + 1000).normal(size=(n_customers, n_articles))
    cust_index = {c: i for i, c in enumerate(customers["customer_id"].to_list())}
    art_index = {a: i for i, a in enumerate(articles["article_id"].to_list())}

    def pair_scorer(cids: list[str], aids: list[str], as_of: date) -> np.ndarray:
        # weak: favourite-group match buried in noise; fixed per pair
        ci = np.array([cust_index[c] for c in cids], dtype=np.int64)
        ai = np.array([art_index[a] for a in aids], dtype=np.int64)
        match = groups[ai] == group_names[favourite[ci]]
        return (match.astype(np.float32) + 1.5 * noise[ci, ai]).astype(np.float32)

    def candidates(cids: list[str], as_of: date, k: int) -> dict[str, list[tuple[str, float]]]:
        out = {}
        for c in cids:
            s = pair_scorer([c] * len(all_articles), all_articles, as_of)
            order = np.argsort(-s, kind="stable")[:k]
            out[c] = [(all_articles[i], float(s[i])) for i in order]
        return out

    return {
        "transactions": tx,
        "articles": articles,
        "customers": customers,
        "pair_scorer": pair_scorer,
        "candidates": candidates,
        "start": START,
        "end": START + timedelta(days=n_days),
    }


def null_world(n_customers: int = 400, n_articles: int = 120, n_days: int = 42, seed: int = 1) -> dict:
    """Purchases uniform over articles, days and customers: nothing to learn."""
    rng = np.random.default_rng(seed)
    articles = _articles(n_articles, rng)
    customers = _customers(n_customers, rng)
    n_rows = n_customers * 6
    tx = pl.DataFrame(
        {
            "t_dat": [START + timedelta(days=int(d)) for d in rng.integers(0, n_days, n_rows)],
            "customer_id": customers["customer_id"].gather(rng.integers(0, n_customers, n_rows)),
            "article_id": articles["article_id"].gather(rng.integers(0, n_articles, n_rows)),
        }
    )
    return {
        "transactions": tx,
        "articles": articles,
        "customers": customers,
        "start": START,
        "end": START + timedelta(days=n_days),
    }
