"""Reproducible customer sampling: a smaller dataset with the same shape as the full one.

Why: SMALL / MEDIUM / LARGE runs (CUSTOMER_DATA_SIZE) work on a sample of the
customers. The sample must be the same for the same seed (the Hopsworks H&M tutorial's
sampler ignored its seed, so its runs could not be compared), and it must keep
every transaction of the sampled customers so histories are complete.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from hmrec.data.loader import RawData
from hmrec.data.validation import ValidationReport


def sample_customers(raw: RawData, n: int, seed: int) -> RawData:
    """``n`` customers drawn uniformly without replacement, with all their transactions.

    Customers are drawn among all customers of the file (including the few who never
    bought), from their ids in sorted order, so the sample depends only on the set
    of ids and the seed, not on row order. The articles frame keeps only the
    articles the sampled transactions touch. Row order of every frame is the input's.
    If ``n`` is at least the number of customers, all of them are kept. The report
    describes the sample (rows, date range, referenced ids); dropped counts are the
    source's.
    """
    if n < 1:
        raise ValueError(f"sample size n must be >= 1, got {n}")
    ids = raw.customers.get_column("customer_id").sort()
    if n >= ids.len():
        chosen = ids
    else:
        pick = np.sort(np.random.default_rng(seed).choice(ids.len(), size=n, replace=False))
        chosen = ids.gather(pick)
    keep = chosen.implode()
    customers = raw.customers.filter(pl.col("customer_id").is_in(keep))
    transactions = raw.transactions.filter(pl.col("customer_id").is_in(keep))
    articles = raw.articles.filter(
        pl.col("article_id").is_in(transactions.get_column("article_id").unique().implode())
    )
    t_dat = transactions.get_column("t_dat")
    src = raw.report
    report = ValidationReport(
        data_dir=src.data_dir,
        files=dict(src.files),
        rows={"articles": articles.height, "customers": customers.height, "transactions": transactions.height},
        date_min=t_dat.min(),
        date_max=t_dat.max(),
        n_customers_referenced=transactions.get_column("customer_id").n_unique(),
        n_articles_referenced=transactions.get_column("article_id").n_unique(),
        dropped=dict(src.dropped),
        seconds=src.seconds,
    )
    return RawData(articles=articles, customers=customers, transactions=transactions, report=report)
