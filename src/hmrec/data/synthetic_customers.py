"""Synthetic H&M customers: Kaggle columns plus latent tastes and shopping activity.

Part of the synthetic generator (see ``hmrec.data.synthetic`` for the whole
generative model). Each customer has an age (bimodal, from the packaged real age
sample), a persona drawn with age-dependent odds (woman / young / parent / man /
sporty), and from those plus individual noise a persistent taste: a score per
index, per garment group, per perceived colour master, and a price-level slope.
Activity (number of shopping trips, active period, online share) is heavy-tailed
and independent of taste.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from hmrec.data.synthetic_articles import INDEX_CODES, N_DAYS, read_taxonomy

CUSTOMER_COLUMNS = ["customer_id", "FN", "Active", "club_member_status", "fashion_news_frequency",
                    "age", "postal_code"]
PERSONAS = ["woman", "young", "parent", "man", "sporty"]

# Log-preference of each persona for the 10 indexes, in INDEX_CODES order
#            A     B     C     D     F     G     H     I     J     S
_PERSONA_INDEX = np.array([
    [2.0, 1.2, 1.0, 0.3, -1.2, -1.0, -1.0, -1.0, -1.0, 0.0],   # woman
    [0.6, 0.8, 1.2, 2.4, -1.0, -2.0, -2.0, -1.5, -1.5, 0.2],   # young (Divided)
    [1.2, 0.4, 0.3, -0.5, -0.3, 0.0, 0.0, 0.0, 0.8, -0.5],     # parent (+ children's sizes by child age)
    [-2.0, -2.5, -1.5, 0.2, 2.8, -1.2, -1.0, -1.0, -1.2, 0.6],  # man
    [0.6, 0.3, 0.0, 0.3, 0.5, -1.5, -1.5, -1.5, -1.5, 2.8],    # sporty
])
# Age tilt (per 15 years above 35) of some garment groups, and of colours.
_GARMENT_AGE_TILT = {"Trousers Denim": -0.3, "Knitwear": 0.3, "Jersey Basic": 0.2, "Accessories": -0.2,
                     "Blouses": 0.3, "Shorts": -0.2}
_COLOUR_AGE_TILT = {"Black": -0.3, "White": -0.1, "Beige": 0.3, "Blue": 0.2, "Pink": -0.1}

#: Share of customers who never buy (the real file lists ~0.7% customers without transactions).
NON_BUYER_SHARE = 0.007


@dataclass
class Population:
    """Customers frame (Kaggle columns) plus latent arrays aligned with its rows."""

    frame: pl.DataFrame
    age: np.ndarray  # true age (also for customers whose age is missing in the file)
    persona: np.ndarray  # int8 position in PERSONAS
    taste_index: np.ndarray  # (n, 10) float32
    taste_garment: np.ndarray  # (n, n_garment_groups) float32
    taste_price: np.ndarray  # (n,) float32 slope on the price tier
    taste_colour: np.ndarray  # (n, n_colours) float32
    online_share: np.ndarray  # (n,) probability that a trip is online (sales channel 2)
    trips: np.ndarray  # (n,) int32 number of shopping trips (0 = never buys)
    start_day: np.ndarray  # (n,) int32 first day the customer may shop
    end_day: np.ndarray  # (n,) int32 last day the customer may shop
    repurchase: np.ndarray  # (n,) probability that an item re-buys an earlier article


def hex_ids(rng: np.random.Generator, n: int) -> pl.Series:
    """``n`` random 64-character lowercase hex ids (SHA-256-like), vectorised."""
    raw = rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
    lut = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    out = np.empty((n, 64), dtype=np.uint8)
    out[:, 0::2] = lut[raw >> 4]
    out[:, 1::2] = lut[raw & 15]
    return pl.Series(out.view("S64").ravel()).cast(pl.String)


def _ages(rng: np.random.Generator, n: int) -> np.ndarray:
    """Integer ages from the real 5-year-bin sample; 16..19 in the first bin, a thin tail past 79."""
    sample = read_taxonomy("customer_age_sample")
    lo = sample["age_from"].to_numpy()
    p = sample["customers"].to_numpy() / sample["customers"].sum()
    b = rng.choice(len(lo), size=n, p=p)
    start = np.maximum(lo[b], 16)
    width = lo[b] + 5 - start
    age = start + np.floor(rng.random(n) * width).astype(np.int64)
    last = b == len(lo) - 1
    age[last] += np.minimum(rng.geometric(0.25, n)[last] - 1, 20)
    return np.minimum(age, 99)


def _gauss(x: np.ndarray, mu: float, sd: float) -> np.ndarray:
    return np.exp(-0.5 * ((x - mu) / sd) ** 2)


def make_population(n_customers: int, garment_groups: list[str], colour_masters: list[str],
                    rng: np.random.Generator, taste_scale: float = 1.25) -> Population:
    """Draw ``n_customers`` customers with their file columns, tastes and activity."""
    if n_customers < 1:
        raise ValueError(f"n_customers must be >= 1, got {n_customers}")
    n = n_customers
    ids = hex_ids(rng, n)
    age = _ages(rng, n).astype(np.float64)

    # --- persona, with age-dependent odds -------------------------------------------------
    young = 0.55 / (1 + np.exp((age - 27) / 3))
    parent = 0.45 * _gauss(age, 34, 6) + 0.12 * _gauss(age, 62, 6)
    man = np.full(n, 0.13)
    sporty = np.full(n, 0.05)
    woman = np.maximum(1 - young - parent - man - sporty, 0.1)
    odds = np.stack([woman, young, parent, man, sporty], axis=1)
    cum = np.cumsum(odds / odds.sum(axis=1, keepdims=True), axis=1)
    persona = (rng.random((n, 1)) > cum).sum(axis=1).clip(0, 4).astype(np.int8)

    # --- tastes -----------------------------------------------------------------------------
    t_index = _PERSONA_INDEX[persona] + rng.normal(0, 0.7, (n, len(INDEX_CODES)))
    is_parent = persona == 2
    child_age = np.where(age < 50, age - 30, age - 60) + rng.normal(0, 4, n)
    child_age = np.clip(child_age, 0, 16)
    ix = {c: i for i, c in enumerate(INDEX_CODES)}
    t_index[:, ix["G"]] += is_parent * 2.4 * _gauss(child_age, 1.5, 2.0)
    t_index[:, ix["H"]] += is_parent * 2.4 * _gauss(child_age, 6.0, 2.5)
    t_index[:, ix["I"]] += is_parent * 2.4 * _gauss(child_age, 12.0, 2.5)
    age_z = (age - 35) / 15
    gg_tilt = np.array([_GARMENT_AGE_TILT.get(g, 0.0) for g in garment_groups])
    t_garment = rng.normal(0, 0.6, (n, len(garment_groups))) + age_z[:, None] * gg_tilt[None, :]
    col_tilt = np.array([_COLOUR_AGE_TILT.get(c, 0.0) for c in colour_masters])
    t_colour = rng.normal(0, 0.5, (n, len(colour_masters))) + age_z[:, None] * col_tilt[None, :]
    t_price = rng.normal(0.35 * age_z, 0.5)

    # --- activity ------------------------------------------------------------------------------
    buyer = rng.random(n) >= NON_BUYER_SHARE
    # active period: ~flat number of active customers over time (joins balance churn)
    kind = rng.choice(4, size=n, p=[0.45, 0.2, 0.2, 0.15])  # always / joins / churns / both
    one = rng.integers(0, N_DAYS, n)
    a, b = np.sort(rng.integers(0, N_DAYS, (n, 2)), axis=1).T
    start = np.select([kind == 1, kind == 3], [one, a], 0).astype(np.int32)
    end = np.select([kind == 2, kind == 3], [one, b], N_DAYS - 1).astype(np.int32)
    rate = np.minimum(rng.lognormal(np.log(2.1), 1.4, n), 120.0)  # trips per year
    trips = np.where(buyer, 1 + rng.poisson(rate * (end - start + 1) / 365.25), 0).astype(np.int32)
    online = rng.beta(1.2, 0.5, n)
    repurchase = rng.beta(1.0, 22.0, n)

    # --- file columns -------------------------------------------------------------------------
    fn = rng.random(n) < 0.348
    active = fn & (rng.random(n) < 0.973)
    status = np.where(rng.random(n) < 0.0676, "PRE-CREATE", "ACTIVE").astype(object)
    u = rng.random(n)
    status[u < 0.0044] = None
    status[(u >= 0.0044) & (u < 0.0047)] = "LEFT CLUB"
    v = rng.random(n)
    news = np.where(fn, np.where(v < 0.0018, "Monthly", "Regularly"), "NONE").astype(object)
    news[~fn & (v < 0.018)] = None
    news[~fn & (v >= 0.018) & (v < 0.018 + 2 / 1_371_980)] = "None"  # as in the real file (2 rows)
    age_missing = rng.random(n) < 0.0116
    n_postal = max(1, round(0.32 * n))  # ~0.26 n of them used, as real (352,899 for 1.37M)
    postal_pool = hex_ids(rng, n_postal)
    weight = rng.lognormal(0.0, 1.0, n_postal)
    weight[0] = 0.087 * weight[1:].sum() / 0.913 if n_postal > 1 else 1.0  # one very common code
    postal = rng.choice(n_postal, size=n, p=weight / weight.sum())

    frame = pl.DataFrame({
        "customer_id": ids,
        "FN": pl.Series(np.where(fn, 1.0, np.nan)).fill_nan(None),
        "Active": pl.Series(np.where(active, 1.0, np.nan)).fill_nan(None),
        "club_member_status": pl.Series(status.tolist(), dtype=pl.String),
        "fashion_news_frequency": pl.Series(news.tolist(), dtype=pl.String),
        "age": pl.Series(np.where(age_missing, np.nan, age)).fill_nan(None),
        "postal_code": postal_pool.gather(postal),
    })
    f32 = np.float32
    return Population(
        frame=frame,
        age=age,
        persona=persona,
        taste_index=(taste_scale * t_index).astype(f32),
        taste_garment=(taste_scale * t_garment).astype(f32),
        taste_price=(taste_scale * t_price).astype(f32),
        taste_colour=(taste_scale * t_colour).astype(f32),
        online_share=online,
        trips=trips,
        start_day=start.astype(np.int32),
        end_day=end,
        repurchase=repurchase,
    )
