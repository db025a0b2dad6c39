"""Synthetic H&M data in the exact Kaggle format, with planted, learnable structure.

Why: every test and ``make run`` need data, the real files are 3.5 GB behind a
Kaggle login, and model quality can only be judged on data whose structure is
known. ``generate`` writes ``articles.csv``, ``customers.csv`` and
``transactions_train.csv`` that the loader cannot tell from the real ones (same
columns, id shapes, value sets, date range 2018-09-20..2020-09-22), deterministic
for a seed (same bytes), up to the full size (1,371,980 customers, 105,542
articles, ~32M transactions) on a 2-core laptop.

The generative model (docs/synthetic_data.md has the details and the numbers):

1. Catalogue (``synthetic_articles``). Product codes (1..75 colour variants each,
   real size distribution) get a hierarchy combination (index group, index,
   section, garment group, department, product group, product type) with the real
   frequency; articles get a colour combination and a graphical appearance with
   the real frequencies. At 105,542 articles each combination gets exactly its
   real count. Each product code has a launch day (seasonal types ~75 days before
   their peak), a selling window, an exponential demand decay (slow for basics), a
   base price (product group x type x index group x lognormal, snapped to shop
   price points; its tercile within the type is the *price tier* -1/0/+1), a
   markdown late in the window, and a lognormal popularity (x a per-variant factor).
   Demand of article a on day d:  pop_a * ramp/decay(d - launch_a) * season_a(d),
   zero outside the window.
2. Customers (``synthetic_customers``). Age from the real bimodal sample; a persona
   (woman / young / parent / man / sporty) with age-dependent odds (young ~ under
   27, parent ~ 28-40 and grandparents ~ 62); persistent tastes = persona profile
   over the 10 indexes (parents' children's-size index follows the child's age)
   + individual N(0, 0.7) per index, individual N(0, 0.6) per garment group and
   N(0, 0.5) per colour master (both tilted with age), and a price slope
   N(0.35 * (age - 35)/15, 0.5). Activity: 0.7% never buy; the others shop on
   1 + Poisson(rate x active years) trips, rate lognormal (median 2.1/yr, sigma
   1.4, capped at 120/yr); 45% are active all along, 20% join, 20% churn, 15% both.
   All taste scores are scaled by 1.25.
3. Transactions (``synthetic_transactions``). Trip days follow the daily traffic
   (yearly cycle, weekends, Black Fridays, a spring-2020 dip) inside the
   customer's active period; a trip is a basket of 1 + NegBin items on one
   channel (online share per customer, Beta mean 0.7). Each item is a nested
   choice: segment s (index x garment group x price tier) with probability
   proportional to exp(taste_index + taste_garment + price_slope * tier) x demand of s
   that day; then a colour master ~ exp(taste_colour) x demand of that colour in s;
   then an article of that cell proportional to its demand. A pick the customer
   already has (last 128 articles) or picked that day is redrawn (up to 5 times).
   Some items (per-customer Beta(1, 22) rate) instead re-buy one of the customer's
   last 128 articles from an earlier day that is still on sale; ~7.5% of items are
   bought in several units (identical rows). The price paid is the base price,
   marked down late in life, sometimes -10%.

So popularity (with trends and seasons) is a strong baseline, and a model that
learns each customer's index / garment / colour / price tastes from their history
beats it; the tests check both.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from hmrec.data.synthetic_articles import MAX_ARTICLES, REAL_ARTICLES, make_catalogue
from hmrec.data.synthetic_customers import make_population
from hmrec.data.synthetic_transactions import simulate

#: Customers in the real data (the FULL size).
REAL_CUSTOMERS = 1_371_980
#: Smallest default catalogue, so small customer samples still see a varied catalogue.
MIN_DEFAULT_ARTICLES = 1_500
FILE_STEMS = {"articles": "articles", "customers": "customers", "transactions": "transactions_train"}


@dataclass
class GenerationSummary:
    """What ``generate`` wrote: file paths, rows per file, seconds, and the inputs."""

    paths: dict[str, Path]
    rows: dict[str, int]
    seconds: float
    n_customers: int
    n_articles: int
    seed: int
    fmt: str


def default_n_articles(n_customers: int) -> int:
    """Catalogue size for a customer count: the real one at full size, shrinking with sqrt."""
    scaled = round(REAL_ARTICLES * min(1.0, math.sqrt(n_customers / REAL_CUSTOMERS)))
    return max(MIN_DEFAULT_ARTICLES, scaled)


class _Writer:
    """Writes frames in chunks to ``<path>.tmp`` and renames at the end (atomic)."""

    def __init__(self, path: Path, fmt: str):
        self.path, self.fmt = path, fmt
        self.tmp = path.with_name(path.name + ".tmp")
        self._fh = None
        self._pq = None

    def write(self, df: pl.DataFrame) -> None:
        if self.fmt == "csv":
            if self._fh is None:
                self._fh = open(self.tmp, "wb")
                df.write_csv(self._fh, include_header=True)
            else:
                df.write_csv(self._fh, include_header=False)
        else:
            import pyarrow.parquet as pq

            table = df.to_arrow()
            if self._pq is None:
                self._pq = pq.ParquetWriter(self.tmp, table.schema)
            self._pq.write_table(table)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
        if self._pq is not None:
            self._pq.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        for h in (self._fh, self._pq):
            if h is not None:
                h.close()
        self.tmp.unlink(missing_ok=True)


def _write_all(df: pl.DataFrame, path: Path, fmt: str) -> None:
    w = _Writer(path, fmt)
    try:
        w.write(df)
    except BaseException:
        w.abort()
        raise
    w.close()


def generate(out_dir: str | Path, n_customers: int = 1000, n_articles: int | None = None, seed: int = 42,
             fmt: str = "csv", progress: Callable[[str, int, int], None] | None = None) -> GenerationSummary:
    """Write a synthetic H&M dataset (articles, customers, transactions_train) into ``out_dir``.

    ``n_articles`` defaults to ``default_n_articles(n_customers)``. ``fmt`` is "csv"
    (exact Kaggle text) or "parquet" (same values, typed columns). ``progress`` is
    called as ``progress(stage, done, total)``. Each file is written to a temporary
    name and renamed when complete, so a crash never leaves a half file.
    """
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt must be 'csv' or 'parquet', got {fmt!r}")
    if n_customers < 1:
        raise ValueError(f"n_customers must be >= 1, got {n_customers}")
    n_articles = default_n_articles(n_customers) if n_articles is None else int(n_articles)
    if not 1 <= n_articles <= MAX_ARTICLES:
        raise ValueError(f"n_articles must be in 1..{MAX_ARTICLES:,}, got {n_articles}")
    start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {k: out / f"{stem}.{fmt}" for k, stem in FILE_STEMS.items()}
    rng_articles, rng_customers, rng_tx = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))

    cat = make_catalogue(n_articles, rng_articles)
    pop = make_population(n_customers, cat.garment_groups, cat.colour_masters, rng_customers)
    _write_all(cat.frame, paths["articles"], fmt)
    _write_all(pop.frame, paths["customers"], fmt)
    if progress is not None:
        progress("articles and customers", 1, 1)

    writer = _Writer(paths["transactions"], fmt)
    try:
        n_tx = simulate(cat, pop, rng_tx, writer.write, progress=progress)
    except BaseException:
        writer.abort()
        raise
    writer.close()
    return GenerationSummary(
        paths=paths,
        rows={"articles": cat.frame.height, "customers": pop.frame.height, "transactions": n_tx},
        seconds=time.perf_counter() - start,
        n_customers=n_customers,
        n_articles=n_articles,
        seed=seed,
        fmt=fmt,
    )
