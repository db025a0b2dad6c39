"""Synthetic H&M transactions: trips, baskets and the nested taste choice, one day at a time.

Part of the synthetic generator (see ``hmrec.data.synthetic`` for the whole
generative model). All work is vectorised over the trips and items of a day; the
only Python loop is over the 734 days. Rows are streamed to the output in chunks so
the full size (~32M rows) never sits in memory as strings.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import numpy as np
import polars as pl

from hmrec.data.synthetic_articles import N_DAYS, PRICE_DIVISOR, Catalogue, demand
from hmrec.data.synthetic_customers import Population

#: First day of the transaction window (day index 0).
START_DATE = date(2018, 9, 20)
_EPOCH_DAY0 = (START_DATE - date(1970, 1, 1)).days
#: How many of each customer's latest purchases are remembered for repurchases.
HISTORY = 128
#: Rounds of redrawing an item that repeats an article the customer already has.
REDRAWS = 5
#: P(an item is bought in several units) and the extra units' geometric parameter.
MULTI_UNIT_P, MULTI_UNIT_GEOM = 0.075, 0.8


def day_intensity() -> np.ndarray:
    """Relative shop traffic of each day: yearly and weekly cycles, Black Fridays, a spring-2020 dip."""
    d = np.arange(N_DAYS)
    doy = (d + 262) % 365.25
    yearly = 1 + 0.25 * np.cos(2 * np.pi * (doy - 170) / 365.25)
    weekday = (d + 3) % 7  # 2018-09-20 was a Thursday (Monday = 0)
    weekly = np.select([weekday == 5, weekday == 6], [1.15, 0.9], 1.0)
    trend = 1 - 0.15 * d / N_DAYS
    events = np.ones(N_DAYS)
    for black_friday in (64, 435):  # 2018-11-23, 2019-11-29
        events[black_friday - 3: black_friday + 4] = 1.4
        events[black_friday] = 3.0
    events[542:604] = 0.6  # 2020-03-15 .. 2020-05-15
    return yearly * weekly * trend * events


def draw_trips(pop: Population, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Every shopping trip: customer, day, basket size, channel; sorted by (day, customer)."""
    cust = np.repeat(np.arange(len(pop.trips), dtype=np.int32), pop.trips)
    cum = np.cumsum(day_intensity())
    cum0 = np.concatenate([[0.0], cum])
    lo, hi = cum0[pop.start_day[cust]], cum[pop.end_day[cust]]
    day = np.searchsorted(cum, lo + rng.random(len(cust)) * (hi - lo), side="right")
    day = np.clip(day, pop.start_day[cust], pop.end_day[cust]).astype(np.int16)
    size = np.minimum(1 + rng.negative_binomial(1.0, 0.4, len(cust)), 30).astype(np.int16)
    channel = np.where(rng.random(len(cust)) < pop.online_share[cust], 2, 1).astype(np.int8)
    order = np.lexsort((cust, day))
    return {"cust": cust[order], "day": day[order], "size": size[order], "channel": channel[order]}


def _pick_rows(cum: np.ndarray, row: np.ndarray, u: np.ndarray) -> np.ndarray:
    """For each query, the column whose cumulative weight in ``cum[row]`` first exceeds u * total.

    One searchsorted over all rows at once: row r's normalised cumulative weights are
    shifted into (r, r + 1], so the flattened array is sorted.
    """
    n_rows, n_cols = cum.shape
    total = cum[:, -1:]
    flat = (cum / np.where(total > 0, total, 1.0) + np.arange(n_rows)[:, None]).ravel()
    pos = np.searchsorted(flat, row + u, side="right") - row * n_cols
    return np.clip(pos, 0, n_cols - 1)


class _DaySampler:
    """Nested choice of articles for one day's items (segment -> colour -> article)."""

    def __init__(self, cat: Catalogue, pop: Population):
        self.cat, self.pop = cat, pop
        self.n_seg = len(cat.seg_index)
        self.n_col = cat.n_colours
        cell = cat.segment.astype(np.int64) * self.n_col + cat.colour
        self.by_cell = np.argsort(cell, kind="stable")
        sorted_cells = cell[self.by_cell]
        n_cells = self.n_seg * self.n_col
        self.cell_start = np.searchsorted(sorted_cells, np.arange(n_cells), side="left")
        self.cell_end = np.searchsorted(sorted_cells, np.arange(n_cells), side="right")
        # tastes as multiplicative factors, once (the day loop then only gathers and multiplies)
        self.e_index = np.exp(pop.taste_index)
        self.e_garment = np.exp(pop.taste_garment)
        self.e_price = np.exp(pop.taste_price[:, None] * np.array([-1.0, 0.0, 1.0], dtype=np.float32))
        self.e_colour = np.exp(pop.taste_colour)
        self.seg_tier = (cat.seg_tier + 1).astype(np.int64)

    def prepare(self, day: int) -> np.ndarray:
        """Compute the day's demand of every article, cell and segment; returns article demand."""
        w = demand(self.cat, day)
        if not w.any():  # nothing on sale (only in tiny catalogues): sell from the whole catalogue
            w = self.cat.popularity.copy()
        self.cum = np.concatenate([[0.0], np.cumsum(w[self.by_cell])])
        self.w_cell = (self.cum[self.cell_end] - self.cum[self.cell_start]).reshape(self.n_seg, self.n_col)
        self.w_seg = self.w_cell.sum(axis=1)
        return w

    def draw(self, item_c: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One article per item, for the items' customers ``item_c`` (sorted; on the prepared day)."""
        cat, cum = self.cat, self.cum
        # 1) segment: customer taste (index + garment group + price slope) x segment demand;
        #    item_c is sorted, so its customers come in runs
        first = np.r_[True, item_c[1:] != item_c[:-1]]
        uc, inv = item_c[first], np.cumsum(first) - 1
        p_seg = (self.e_index[uc][:, cat.seg_index] * self.e_garment[uc][:, cat.seg_garment]
                 * self.e_price[uc][:, self.seg_tier]).astype(np.float64) * self.w_seg[None, :]
        seg = _pick_rows(np.cumsum(p_seg, axis=1), inv, rng.random(len(item_c)))
        # 2) colour within the segment: colour taste x demand of that colour in the segment
        p_col = self.w_cell[seg] * self.e_colour[item_c]
        col = _pick_rows(np.cumsum(p_col, axis=1), np.arange(len(item_c)), rng.random(len(item_c)))
        # 3) article within (segment, colour) by demand alone
        c = seg * self.n_col + col
        start, end = self.cell_start[c], self.cell_end[c]
        target = cum[start] + rng.random(len(item_c)) * (cum[end] - cum[start])
        pos = np.clip(np.searchsorted(cum, target, side="right") - 1, start, np.maximum(end - 1, start))
        return self.by_cell[pos].astype(np.int32)


def _repeats_in_day(cust: np.ndarray, art: np.ndarray) -> np.ndarray:
    """True for each (customer, article) pair already seen earlier in the day's items."""
    key = cust.astype(np.int64) * (1 << 31) + art
    order = np.argsort(key, kind="stable")
    ks = key[order]
    rep = np.zeros(len(key), dtype=bool)
    rep[order[1:]] = ks[1:] == ks[:-1]
    return rep


class _History:
    """Each customer's last HISTORY articles (ring buffer), for repurchases of earlier days."""

    def __init__(self, n_customers: int):
        self.items = np.full((n_customers, HISTORY), -1, dtype=np.int32)
        self.count = np.zeros(n_customers, dtype=np.int64)

    def recall(self, cust: np.ndarray, on_sale: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One remembered article per customer that is still on sale (-1 when none), uniformly."""
        held = self.items[cust]
        ok = (held >= 0) & on_sale[np.maximum(held, 0)]
        n_ok = ok.sum(axis=1)
        k = np.floor(rng.random(len(cust)) * n_ok).astype(np.int64)  # the k-th eligible one
        col = np.argmax(np.cumsum(ok, axis=1) > k[:, None], axis=1)
        return np.where(n_ok > 0, held[np.arange(len(cust)), col], -1)

    def holds(self, cust: np.ndarray, art: np.ndarray) -> np.ndarray:
        """Whether each article is among its customer's remembered purchases."""
        return (self.items[cust] == art[:, None]).any(axis=1)

    def remember(self, cust: np.ndarray, art: np.ndarray) -> None:
        """Append the day's items; ``cust`` is sorted, so each customer's items are one run."""
        if len(cust) == 0:
            return
        starts = np.flatnonzero(np.r_[True, cust[1:] != cust[:-1]])
        run = np.diff(np.r_[starts, len(cust)])
        rank = np.arange(len(cust)) - np.repeat(starts, run)
        n_day = np.repeat(run, run)
        keep = rank >= n_day - HISTORY  # only the last HISTORY of a long basket survive anyway
        c, r = cust[keep], rank[keep] - np.maximum(n_day[keep] - HISTORY, 0)
        self.items[c, (self.count[c] + r) % HISTORY] = art[keep]
        self.count[cust[starts]] += np.minimum(run, HISTORY)


def simulate(cat: Catalogue, pop: Population, rng: np.random.Generator,
             write: Callable[[pl.DataFrame], None], chunk_rows: int = 2_000_000,
             progress: Callable[[str, int, int], None] | None = None) -> int:
    """Draw all transactions day by day and hand them to ``write`` in chunks; returns rows written."""
    trips = draw_trips(pop, rng)
    sampler = _DaySampler(cat, pop)
    history = _History(len(pop.trips))
    bounds = np.searchsorted(trips["day"], np.arange(N_DAYS + 1))
    article_ids = cat.frame.get_column("article_id")
    customer_ids = pop.frame.get_column("customer_id")
    buf: list[tuple[np.ndarray, ...]] = []
    buffered = written = 0

    def flush() -> None:
        nonlocal buf, buffered, written
        if not buf:
            return
        day, cust, art, price, chan = (np.concatenate(x) for x in zip(*buf))
        write(pl.DataFrame({
            "t_dat": pl.Series(day.astype(np.int32) + _EPOCH_DAY0).cast(pl.Date),
            "customer_id": customer_ids.gather(cust),
            "article_id": article_ids.gather(art),
            "price": price,
            "sales_channel_id": pl.Series(chan).cast(pl.Int64),
        }))
        written += len(day)
        buf, buffered = [], 0

    for d in range(N_DAYS):
        s, e = bounds[d], bounds[d + 1]
        if e > s:
            size = trips["size"][s:e]
            trip_of_item = np.repeat(np.arange(e - s), size)
            item_c = trips["cust"][s:e][trip_of_item]
            w = sampler.prepare(d)
            art = sampler.draw(item_c, rng)
            # fashion is rarely bought twice: redraw picks the customer already has (or has
            # already picked today), a few rounds; repurchases are drawn explicitly below
            for _ in range(REDRAWS):
                dup = _repeats_in_day(item_c, art) | history.holds(item_c, art)
                if not dup.any():
                    break
                art[dup] = sampler.draw(item_c[dup], rng)
            # repurchase: some items re-buy an article from an earlier day, if still on sale
            redo = rng.random(len(item_c)) < pop.repurchase[item_c]
            again = history.recall(item_c[redo], w > 0, rng)
            redo[redo] = again >= 0
            again = again[again >= 0]
            art[redo] = again
            history.remember(item_c, art)
            # price: base price, markdown late in the article's life, some member/campaign discounts
            shop = cat.base_price[art] * np.where(d >= cat.markdown_day[art], cat.markdown_factor[art], 1.0)
            shop = shop * np.where(rng.random(len(art)) < 0.1, 0.9, 1.0)
            price = np.round(shop, 2) / PRICE_DIVISOR
            # several units of the same article = identical rows
            units = 1 + (rng.random(len(art)) < MULTI_UNIT_P) * rng.geometric(MULTI_UNIT_GEOM, len(art))
            rows = np.repeat(np.arange(len(art)), units)
            buf.append((np.full(len(rows), d, dtype=np.int16), item_c[rows], art[rows], price[rows],
                        trips["channel"][s:e][trip_of_item][rows]))
            buffered += len(rows)
            if buffered >= chunk_rows:
                flush()
        if progress is not None and (d % 7 == 6 or d == N_DAYS - 1):
            progress("transactions", d + 1, N_DAYS)
    flush()
    if written == 0:  # e.g. one customer who never buys: still a valid file with its header
        write(pl.DataFrame(schema={"t_dat": pl.Date, "customer_id": pl.String, "article_id": pl.String,
                                   "price": pl.Float64, "sales_channel_id": pl.Int64}))
    return written
