"""Synthetic H&M article catalogue: real category hierarchy, colours and appearances.

Part of the synthetic generator (see ``hmrec.data.synthetic`` for the whole
generative model). The catalogue facts come from the package data in
``hmrec/data/taxonomy/`` (aggregate counts of the real Kaggle catalogue); at the
real size (105,542 articles) every hierarchy combination, colour combination and
appearance gets exactly its real article count, so every cardinality is the real
one. Smaller catalogues take each combination in proportion (systematic sampling),
so rare categories drop out as they would in a random subset.

Besides the Kaggle columns, the catalogue carries the latent per-article facts the
transaction model needs (popularity, launch day, life, seasonality, taste segment,
price level), kept in NumPy arrays aligned with the frame's rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import numpy as np
import polars as pl

#: Articles in the real catalogue (the allocation is exact at this size).
REAL_ARTICLES = 105_542
#: Most articles a catalogue can hold (7-digit product codes in the real range run out).
MAX_ARTICLES = 1_000_000
#: Days in the transaction window 2018-09-20 .. 2020-09-22 (inclusive).
N_DAYS = 734
#: Normalised prices are shop prices divided by this (0.0254 ~ 14.99).
PRICE_DIVISOR = 590.0
#: Shop price points (before markdowns); base prices snap to the nearest one.
PRICE_POINTS = np.array(
    [2.99, 3.99, 4.99, 5.99, 6.99, 7.99, 9.99, 12.99, 14.99, 17.99, 19.99, 24.99, 29.99,
     34.99, 39.99, 49.99, 59.99, 69.99, 79.99, 99.99, 129.99, 149.99, 199.99, 249.99, 299.99, 349.99]
)

# Typical shop price of a product group, before the type, index and product-code factors.
_GROUP_PRICE = {
    "Garment Upper body": 19.99, "Garment Lower body": 24.99, "Garment Full body": 29.99,
    "Accessories": 9.99, "Underwear": 9.99, "Shoes": 24.99, "Swimwear": 12.99,
    "Socks & Tights": 5.99, "Nightwear": 17.99, "Items": 7.99, "Cosmetic": 7.99, "Bags": 19.99,
    "Furniture": 39.99, "Garment and Shoe care": 4.99, "Unknown": 12.99,
    "Underwear/nightwear": 14.99, "Interior textile": 14.99, "Stationery": 4.99, "Fun": 4.99,
}
_TYPE_PRICE = {
    "Coat": 2.5, "Jacket": 1.8, "Blazer": 1.7, "Outdoor overall": 1.6, "Boots": 1.6,
    "Outdoor trousers": 1.3, "Tailored Waistcoat": 1.3, "Outdoor Waistcoat": 1.4, "Sneakers": 1.2,
    "T-shirt": 0.55, "Vest top": 0.5, "Top": 0.7, "Leggings/Tights": 0.6, "Underwear Tights": 0.9,
    "Earring": 0.7, "Hair clip": 0.5, "Hair string": 0.4, "Hair/alice band": 0.5, "Sunglasses": 1.2,
}
_INDEX_GROUP_PRICE = {"Ladieswear": 1.0, "Baby/Children": 0.6, "Divided": 0.75, "Menswear": 1.1, "Sport": 1.0}

# Seasonal product types: (amplitude, peak day of year). Positive amplitude = sells at the peak.
_SUMMER, _WINTER = 180, 355
_SEASON = {
    **{t: (1.1, _SUMMER) for t in ["Swimsuit", "Bikini top", "Swimwear bottom", "Swimwear set",
                                   "Swimwear top", "Sarong", "Flip flop", "Straw hat"]},
    **{t: (0.8, _SUMMER) for t in ["Shorts", "Sandals", "Heeled sandals", "Wedge", "Sunglasses",
                                   "Bucket hat"]},
    **{t: (0.35, _SUMMER) for t in ["Vest top", "Dress", "Skirt", "Hat/brim", "Jumpsuit/Playsuit"]},
    **{t: (1.0, _WINTER) for t in ["Outdoor overall", "Gloves", "Hat/beanie", "Beanie", "Scarf",
                                   "Leg warmers", "Long John"]},
    **{t: (0.7, _WINTER) for t in ["Coat", "Boots", "Outdoor trousers", "Outdoor Waistcoat", "Bootie"]},
    **{t: (0.5, _WINTER) for t in ["Jacket", "Sweater", "Cardigan"]},
    **{t: (0.25, _WINTER) for t in ["Hoodie", "Slippers", "Pyjama set", "Blazer"]},
}
# Garment groups of basics: long selling windows and slow decay (and the most repurchased).
_BASICS = {"Jersey Basic", "Socks and Tights", "Under-, Nightwear", "Trousers Denim"}

_HIERARCHY_COLS = [
    "index_group_no", "index_group_name", "index_code", "index_name", "section_no", "section_name",
    "garment_group_no", "garment_group_name", "department_no", "department_name",
    "product_group_name", "product_type_no", "product_type_name",
]
ARTICLE_COLUMNS = [
    "article_id", "product_code", "prod_name", "product_type_no", "product_type_name",
    "product_group_name", "graphical_appearance_no", "graphical_appearance_name",
    "colour_group_code", "colour_group_name", "perceived_colour_value_id",
    "perceived_colour_value_name", "perceived_colour_master_id", "perceived_colour_master_name",
    "department_no", "department_name", "index_code", "index_name", "index_group_no",
    "index_group_name", "section_no", "section_name", "garment_group_no", "garment_group_name",
    "detail_desc",
]
#: Taste dimensions: index codes (in this order) and the 3 price tiers (-1, 0, +1).
INDEX_CODES = ["A", "B", "C", "D", "F", "G", "H", "I", "J", "S"]


def read_taxonomy(name: str) -> pl.DataFrame:
    """One CSV of the packaged taxonomy (copied from the shared facts; see taxonomy/README.md)."""
    text = resources.files("hmrec.data").joinpath("taxonomy", f"{name}.csv").read_bytes()
    return pl.read_csv(text)


def allocate(counts: np.ndarray, total: int, rng: np.random.Generator) -> np.ndarray:
    """Split ``total`` items over categories in proportion to ``counts`` (systematic sampling).

    Exact integers, summing to ``total``; each category gets floor or ceil of its share,
    and at ``total == counts.sum()`` exactly its count (so real cardinalities at full size).
    """
    counts = np.asarray(counts, dtype=np.int64)
    n = int(counts.sum())
    perm = rng.permutation(len(counts))
    cum = np.concatenate([[0], np.cumsum(counts[perm])]) * int(total)
    marks = (cum + int(rng.integers(0, n))) // n
    out = np.empty(len(counts), dtype=np.int64)
    out[perm] = np.diff(marks)
    return out


@dataclass
class Catalogue:
    """Articles frame (Kaggle columns, sorted by article_id) plus latent arrays aligned with it."""

    frame: pl.DataFrame
    popularity: np.ndarray  # float64, base demand weight
    launch_day: np.ndarray  # int32, day index of first sale (may be < 0 or >= N_DAYS)
    end_day: np.ndarray  # int32, last day it is sold
    tau: np.ndarray  # float64, decay time (days) of demand after launch
    season_amp: np.ndarray  # float64
    season_peak: np.ndarray  # float64, day of year of peak demand
    segment: np.ndarray  # int32, taste segment id (index code x garment group x price tier)
    seg_index: np.ndarray  # (S,) int, index-code position of each segment
    seg_garment: np.ndarray  # (S,) int, garment-group position of each segment
    seg_tier: np.ndarray  # (S,) float, price tier -1/0/+1 of each segment
    colour: np.ndarray  # int32, perceived colour master position 0..n_colours-1
    n_colours: int
    garment_groups: list[str]
    colour_masters: list[str]
    base_price: np.ndarray  # float64 shop price before markdown
    markdown_day: np.ndarray  # int32, from this day on the markdown factor applies
    markdown_factor: np.ndarray  # float64 in (0, 1]


def _pseudo_words(rng: np.random.Generator, n: int) -> np.ndarray:
    """Made-up product-line names (``Tilva``, ``Maro``...) from syllables; no real names copied."""
    onsets = np.array(["Ta", "Mi", "Lo", "Sa", "Je", "Ka", "Ro", "Ni", "Va", "El", "Bo", "Fi", "Ha",
                       "Li", "Ma", "No", "Pe", "Ri", "Su", "To", "Ve", "Zo", "Da", "Gi", "Ju"])
    middles = np.array(["", "l", "r", "n", "v", "s", "m", "d"])
    endings = np.array(["a", "o", "y", "e", "ie", "en", "is", "an", "el", "ia", "ka", "on"])
    words = (onsets[rng.integers(0, len(onsets), n)].astype(object)
             + middles[rng.integers(0, len(middles), n)].astype(object)
             + endings[rng.integers(0, len(endings), n)].astype(object))
    return words.astype(str)


def make_catalogue(n_articles: int, rng: np.random.Generator) -> Catalogue:
    """Draw ``n_articles`` articles grouped in product codes, with consistent hierarchy."""
    if not 1 <= n_articles <= MAX_ARTICLES:
        raise ValueError(f"n_articles must be in 1..{MAX_ARTICLES:,}, got {n_articles}")
    hier = read_taxonomy("hierarchy")
    colours = read_taxonomy("colours")
    appear = read_taxonomy("graphical_appearance")
    sizes_tab = read_taxonomy("articles_per_product_code")

    # --- hierarchy per article, then product codes inside each hierarchy combination ---------
    per_combo = allocate(hier["article_count"].to_numpy(), n_articles, rng)
    combo = np.repeat(np.arange(hier.height), per_combo)  # grouped by combination
    size_values = sizes_tab["articles_per_product_code"].to_numpy()
    size_p = sizes_tab["product_codes"].to_numpy() / sizes_tab["product_codes"].sum()
    draws = rng.choice(size_values, size=n_articles, p=size_p)
    cut = np.zeros(n_articles, dtype=bool)
    ends = np.cumsum(draws)
    cut[ends[ends < n_articles]] = True  # a new product code starts here
    cut[0] = True
    cut[1:] |= combo[1:] != combo[:-1]  # and at every combination boundary
    code = np.cumsum(cut) - 1  # product-code position of each article
    n_codes = int(code[-1]) + 1
    first = np.flatnonzero(cut)
    code_combo = combo[first]

    # --- per product code: launch, life, price, popularity ----------------------------------
    h = {c: hier[c].to_numpy() for c in _HIERARCHY_COLS}
    season = np.array([_SEASON.get(t, (0.0, 0.0)) for t in hier["product_type_name"].to_list()])
    knit = hier["garment_group_name"].to_numpy() == "Knitwear"
    season[knit & (season[:, 0] == 0)] = (0.4, _WINTER)
    code_amp, code_peak = season[code_combo, 0], season[code_combo, 1]
    seasonal = (code_amp > 0) & (rng.random(n_codes) < 0.6)  # most, not all, launch for their season
    basics = np.isin(h["garment_group_name"][code_combo], list(_BASICS))
    tau = rng.lognormal(np.log(45), 0.5, n_codes) * np.where(basics, 3.0, 1.0)
    life = (tau * rng.uniform(2.0, 4.0, n_codes)).round().astype(np.int32) + 14
    # Launch: uniform from (0.8 life) before the window to a week after it (those never sell);
    # 60% of seasonal ones ~75 days before their season's peak.
    launch = rng.uniform(-0.8 * life, N_DAYS + 7)
    year_start = np.floor((launch + 262) / 365.25) * 365.25 - 262  # day index of that Jan 1
    seasonal_launch = year_start + code_peak - 75 + rng.normal(0, 25, n_codes)
    launch = np.where(seasonal, seasonal_launch, launch).round().astype(np.int32)
    group_price = np.array([_GROUP_PRICE.get(g, 14.99) for g in h["product_group_name"]])
    type_factor = np.array([_TYPE_PRICE.get(t, 1.0) for t in h["product_type_name"]])
    ig_factor = np.array([_INDEX_GROUP_PRICE.get(g, 1.0) for g in h["index_group_name"]])
    price_z = rng.normal(0, 1, n_codes)
    raw_price = 0.97 * (group_price * type_factor * ig_factor)[code_combo] * np.exp(0.3 * price_z)
    nearest = np.abs(np.log(raw_price)[:, None] - np.log(PRICE_POINTS)[None, :]).argmin(axis=1)
    code_price = PRICE_POINTS[nearest]
    code_tier = np.where(price_z < -0.43, -1, np.where(price_z > 0.43, 1, 0))  # terciles
    code_pop = rng.lognormal(0.0, 1.0, n_codes)
    md_frac = rng.uniform(0.5, 0.9, n_codes)
    md_factor = rng.choice([0.5, 0.6, 0.7, 0.8], n_codes)

    # --- per article ------------------------------------------------------------------------
    col_idx = np.repeat(np.arange(colours.height), allocate(colours["article_count"].to_numpy(), n_articles, rng))
    col_idx = col_idx[rng.permutation(n_articles)]
    app_idx = np.repeat(np.arange(appear.height), allocate(appear["article_count"].to_numpy(), n_articles, rng))
    app_idx = app_idx[rng.permutation(n_articles)]
    popularity = code_pop[code] * rng.lognormal(0.0, 0.7, n_articles)
    launch_day = launch[code] + (rng.random(n_articles) < 0.15) * rng.integers(0, 60, n_articles)
    launch_day = launch_day.astype(np.int32)
    end_day = (launch_day + life[code]).astype(np.int32)

    # Ids: older product codes have smaller numbers (as in the real catalogue); variants 001, 002...
    code_numbers = np.sort(rng.choice(np.arange(108_775, 959_462), n_codes, replace=False))
    order = np.argsort(launch + rng.normal(0, 60, n_codes), kind="stable")
    code_number = np.empty(n_codes, dtype=np.int64)
    code_number[order] = code_numbers
    gaps = rng.geometric(0.75, n_articles)
    gaps[first] = rng.integers(1, 3, n_codes)
    cs = np.cumsum(gaps)
    variant = cs - (cs[first] - gaps[first])[code]
    article_number = code_number[code] * 1000 + variant

    # Names: one per product code; detail_desc from short templates (0.4% empty, as real).
    words = _pseudo_words(rng, n_codes)
    words = np.where(rng.random(n_codes) < 0.5, np.char.add(np.char.add(words, " "), _pseudo_words(rng, n_codes)), words)
    suffix = np.where(rng.random(n_codes) < 0.2, " " + rng.choice(["(1)", "2pk", "HW", "SS", "LS", "Slim"], n_codes), "")
    adjectives = np.array(["Soft", "Fitted", "Relaxed", "Wide", "Short", "Long", "Cropped", "Loose-fitting",
                           "Lightweight", "Chunky-knit", "Ribbed", "Padded", "Oversized", "Fine-knit"])
    fabrics = np.array(["cotton jersey", "woven fabric", "stretch denim", "viscose", "soft fleece",
                        "rib-knit fabric", "recycled polyester", "linen blend", "organic cotton", "sweatshirt fabric"])
    features = np.array(["a round neckline", "long sleeves", "an elasticated waist", "side pockets",
                         "a zip at the front", "buttons down the front", "narrow shoulder straps",
                         "a printed motif", "a concealed zip", "ribbing at the cuffs and hem"])
    desc_null = rng.random(n_codes) < 0.004

    a_code = code_combo[code]
    code_str = pl.Series(code_number[code]).cast(pl.String).str.zfill(7)
    frame = pl.DataFrame({
        "article_id": pl.Series(article_number).cast(pl.String).str.zfill(10),
        "product_code": code_str,
        "prod_name": pl.Series(words[code]) + pl.Series(suffix[code]),
        "product_type_no": h["product_type_no"][a_code],
        "product_type_name": h["product_type_name"][a_code],
        "product_group_name": h["product_group_name"][a_code],
        "graphical_appearance_no": appear["graphical_appearance_no"].to_numpy()[app_idx],
        "graphical_appearance_name": appear["graphical_appearance_name"].to_numpy()[app_idx],
        "colour_group_code": colours["colour_group_code"].to_numpy()[col_idx],
        "colour_group_name": colours["colour_group_name"].to_numpy()[col_idx],
        "perceived_colour_value_id": colours["perceived_colour_value_id"].to_numpy()[col_idx],
        "perceived_colour_value_name": colours["perceived_colour_value_name"].to_numpy()[col_idx],
        "perceived_colour_master_id": colours["perceived_colour_master_id"].to_numpy()[col_idx],
        "perceived_colour_master_name": colours["perceived_colour_master_name"].to_numpy()[col_idx],
        "department_no": h["department_no"][a_code],
        "department_name": h["department_name"][a_code],
        "index_code": h["index_code"][a_code],
        "index_name": h["index_name"][a_code],
        "index_group_no": h["index_group_no"][a_code],
        "index_group_name": h["index_group_name"][a_code],
        "section_no": h["section_no"][a_code],
        "section_name": h["section_name"][a_code],
        "garment_group_no": h["garment_group_no"][a_code],
        "garment_group_name": h["garment_group_name"][a_code],
    })
    adj = adjectives[rng.integers(0, len(adjectives), n_codes)][code]
    fab = fabrics[rng.integers(0, len(fabrics), n_codes)][code]
    feat = features[rng.integers(0, len(features), n_codes)][code]
    frame = frame.with_columns(
        pl.when(pl.Series(desc_null[code]))
        .then(None)
        .otherwise(pl.concat_str([pl.Series(adj), pl.lit(" "), pl.col("product_type_name").str.to_lowercase(),
                                  pl.lit(" in "), pl.Series(fab), pl.lit(" with "), pl.Series(feat), pl.lit(".")]))
        .alias("detail_desc")
    ).with_columns(pl.col(c).cast(pl.Int32) for c in ARTICLE_COLUMNS if c.endswith(("_no", "_code", "_id"))
                   and c not in ("article_id", "product_code", "index_code"))

    # --- taste segments (index code x garment group x price tier) and colour positions -------
    garment_groups = sorted(hier["garment_group_name"].unique().to_list())
    gg_pos = {g: i for i, g in enumerate(garment_groups)}
    ix_pos = {c: i for i, c in enumerate(INDEX_CODES)}
    a_ix = np.array([ix_pos[c] for c in h["index_code"]])[a_code]
    a_gg = np.array([gg_pos[g] for g in h["garment_group_name"]])[a_code]
    a_tier = code_tier[code]
    key = (a_ix * len(garment_groups) + a_gg) * 3 + (a_tier + 1)
    seg_keys, segment = np.unique(key, return_inverse=True)
    masters = sorted(colours["perceived_colour_master_name"].unique().to_list())
    m_pos = {m: i for i, m in enumerate(masters)}
    colour = np.array([m_pos[m] for m in colours["perceived_colour_master_name"]])[col_idx]

    # Rows in article_id order, latent arrays permuted alike.
    sort = np.argsort(article_number, kind="stable")
    frame = frame[sort].select(ARTICLE_COLUMNS)
    return Catalogue(
        frame=frame,
        popularity=popularity[sort],
        launch_day=launch_day[sort],
        end_day=end_day[sort],
        tau=tau[code][sort],
        season_amp=code_amp[code][sort],
        season_peak=code_peak[code][sort],
        segment=segment.astype(np.int32)[sort],
        seg_index=seg_keys // 3 // len(garment_groups),
        seg_garment=(seg_keys // 3) % len(garment_groups),
        seg_tier=(seg_keys % 3 - 1).astype(np.float64),
        colour=colour.astype(np.int32)[sort],
        n_colours=len(masters),
        garment_groups=garment_groups,
        colour_masters=masters,
        base_price=code_price[code][sort],
        markdown_day=(launch_day + md_frac[code] * life[code]).astype(np.int32)[sort],
        markdown_factor=md_factor[code][sort],
    )


def demand(cat: Catalogue, day: int) -> np.ndarray:
    """Demand weight of every article on ``day``: popularity x life curve x season.

    Zero outside the article's selling window [launch, end]; ramps up over the first
    week, then decays exponentially with the article's own time constant.
    """
    age = day - cat.launch_day
    alive = (age >= 0) & (day <= cat.end_day)
    life = np.minimum(1.0, (age + 1) / 7.0) * np.exp(-np.maximum(age, 0) / cat.tau)
    doy = (day + 262) % 365.25  # day 0 = 2018-09-20 = day-of-year 262
    season = np.exp(cat.season_amp * (np.cos(2 * np.pi * (doy - cat.season_peak) / 365.25) - 1.0))
    return np.where(alive, cat.popularity * life * season, 0.0)
