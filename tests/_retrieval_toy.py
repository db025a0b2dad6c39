"""Planted-structure toy data for the retrieval tests (not a test module).

Customers and articles fall into ``n_groups`` taste groups; a customer buys from its
own group with probability ``p_own`` (Zipf-like popularity inside the group), otherwise
from the global popularity. A model that learns the groups beats global popularity by
far; global popularity only knows which articles sell most overall.
"""

from __future__ import annotations

import hashlib
import math
from datetime import date, timedelta

import numpy as np
import polars as pl

GARMENTS = ["Jersey Basic", "Dresses Ladies", "Trousers", "Knitwear", "Shoes", "Outdoor", "Swimwear", "Socks and Tights"]
INDEX_GROUPS = ["Ladieswear", "Baby/Children", "Divided", "Menswear", "Sport"]


def customer_id(i: int, seed: int) -> str:
    return hashlib.sha256(f"c{seed}-{i}".encode()).hexdigest()


def toy_data(
    n_customers: int = 300,
    n_articles: int = 400,
    n_groups: int = 8,
    purchases: int = 24,
    days: int = 56,
    p_own: float = 0.9,
    seed: int = 0,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(train_df, val_df, articles_df); validation = the last 7 days."""
    rng = np.random.default_rng(seed)
    art_group = np.arange(n_articles) % n_groups
    article_ids = [f"{108775000 + 3 * a:010d}" for a in range(n_articles)]
    articles = pl.DataFrame(
        {
            "article_id": article_ids,
            "garment_group_name": [GARMENTS[(a // n_groups) % len(GARMENTS)] for a in range(n_articles)],
            "index_group_name": [INDEX_GROUPS[g % len(INDEX_GROUPS)] for g in art_group],
            "prod_name": [f"art {a}" for a in range(n_articles)],
        }
    )
    cust_group = rng.integers(0, n_groups, n_customers)
    ages = rng.integers(16, 80, n_customers).astype(np.float32)
    ages[rng.random(n_customers) < 0.1] = np.nan
    # Zipf popularity within each group, and a global popularity mixing everything.
    weight = 1.0 / (np.arange(n_articles) // n_groups + 1.0) ** 0.8
    rows = []
    start = date(2020, 6, 1)
    for c in range(n_customers):
        own = np.flatnonzero(art_group == cust_group[c])
        p_in = weight[own] / weight[own].sum()
        for _ in range(purchases):
            if rng.random() < p_own:
                a = int(rng.choice(own, p=p_in))
            else:
                a = int(rng.choice(n_articles, p=weight / weight.sum()))
            d = int(rng.integers(0, days))
            rows.append((c, a, d))
    cs, as_, ds = (np.array(x) for x in zip(*rows))
    t_dat = [start + timedelta(days=int(d)) for d in ds]
    month = np.array([t.month for t in t_dat])
    age = ages[cs]
    df = pl.DataFrame(
        {
            "customer_id": [customer_id(int(c), seed) for c in cs],
            "article_id": [article_ids[a] for a in as_],
            "t_dat": t_dat,
            "price": rng.random(len(cs)).astype(np.float32) * 0.05,
            "month_sin": np.sin(2 * math.pi * month / 12),
            "month_cos": np.cos(2 * math.pi * month / 12),
            "age": pl.Series(age, dtype=pl.Float32, nan_to_null=True),
            "club_member_status": ["ACTIVE"] * len(cs),
            "age_group": ["30-40"] * len(cs),
        }
    ).join(articles.select("article_id", "garment_group_name", "index_group_name"), on="article_id", how="left", maintain_order="left")
    df = df.sort("t_dat", "customer_id", maintain_order=True)
    cut = start + timedelta(days=days - 7)
    return df.filter(pl.col("t_dat") < cut), df.filter(pl.col("t_dat") >= cut), articles
