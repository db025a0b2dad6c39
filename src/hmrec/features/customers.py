"""The `customers` feature group: one row per customer, cleaned and binned.

Missing ages (about 1% of real customers): the customer is KEPT. ``age`` is filled
with the median of the known ages (Float32; ``DEFAULT_AGE`` when no age is known at
all), ``age_missing`` = 1 marks the filled rows, and ``age_group`` is "UNKNOWN" for
them. So every model gets a usable number, nobody vanishes from training, and a
model that cares can still tell filled from real ages. The median is computed over
the customers table (not over time), so it is the same on every run of the same data.
"""

from __future__ import annotations

import polars as pl

from hmrec.features.errors import FeatureInputError

GROUP_NAME = "customers"
PRIMARY_KEY = ["customer_id"]
#: Used only when no customer has a known age (median age of the real H&M customers).
DEFAULT_AGE = 32.0

#: (label, lowest age, highest age) inclusive; ages are whole years.
AGE_BINS: list[tuple[str, int, int | None]] = [
    ("0-18", 0, 18),
    ("19-25", 19, 25),
    ("26-35", 26, 35),
    ("36-45", 36, 45),
    ("46-55", 46, 55),
    ("56-65", 56, 65),
    ("66+", 66, None),
]
AGE_UNKNOWN = "UNKNOWN"
CLUB_ABSENT = "ABSENT"
#: fashion_news_frequency as found in the file (compared case-insensitively) -> normalised value.
NEWS_FREQUENCY = {"none": "NONE", "regularly": "Regularly", "monthly": "Monthly"}

FEATURES: dict[str, str] = {
    "customer_id": "Customer id (64 hex chars), as in the raw file.",
    "age": "Age in years; missing ages filled with the median known age (see age_missing).",
    "age_missing": "1 if the raw age was missing and `age` holds the fill value, else 0.",
    "age_group": "Age bin 0-18, 19-25, 26-35, 36-45, 46-55, 56-65, 66+; UNKNOWN if age missing.",
    "club_member_status": "ACTIVE / PRE-CREATE / LEFT CLUB; ABSENT when missing.",
    "fashion_news_frequency": "NONE / Regularly / Monthly (NONE, None, empty and missing -> NONE).",
    "FN": "1 if the customer gets fashion news, else 0.",
    "Active": "1 if the customer is active for communication, else 0.",
    "postal_code": "Hashed postal code (64 hex chars).",
}

SCHEMA: dict[str, pl.DataType] = {
    "customer_id": pl.String(),
    "age": pl.Float32(),
    "age_missing": pl.Int8(),
    "age_group": pl.String(),
    "club_member_status": pl.String(),
    "fashion_news_frequency": pl.String(),
    "FN": pl.Int8(),
    "Active": pl.Int8(),
    "postal_code": pl.String(),
}


def age_group_expr(age: pl.Expr) -> pl.Expr:
    """Bin whole-year ages into AGE_BINS labels; null -> UNKNOWN."""
    expr = pl.when(age.is_null()).then(pl.lit(AGE_UNKNOWN))
    for label, low, high in AGE_BINS:
        cond = age >= low if high is None else age.is_between(low, high)
        expr = expr.when(cond).then(pl.lit(label))
    return expr.otherwise(pl.lit(AGE_UNKNOWN))


def age_group(age: int | float | None) -> str:
    """The same binning for one value (serving a customer not yet in the store)."""
    if age is None or age != age:  # None or NaN
        return AGE_UNKNOWN
    for label, low, high in AGE_BINS:
        if age >= low and (high is None or age <= high):
            return label
    return AGE_UNKNOWN


def _news_frequency_expr() -> pl.Expr:
    raw = pl.col("fashion_news_frequency").str.strip_chars().str.to_lowercase()
    return (
        pl.when(raw.is_null() | (raw == ""))
        .then(pl.lit("NONE"))
        .otherwise(raw.replace_strict(NEWS_FREQUENCY, default=None, return_dtype=pl.String))
    )


def _check_news_frequency(customers: pl.DataFrame) -> None:
    raw = customers["fashion_news_frequency"].str.strip_chars().str.to_lowercase()
    bad = raw.is_not_null() & (raw != "") & ~raw.is_in(list(NEWS_FREQUENCY))
    if bad.any():
        i = int(bad.arg_true()[0])
        raise FeatureInputError(
            GROUP_NAME, "fashion_news_frequency", i + 1, customers["fashion_news_frequency"][i],
            "expected one of NONE, None, Regularly, Monthly or empty",
        )


def build_customers(customers: pl.DataFrame) -> pl.DataFrame:
    """Raw typed customers frame (hmrec.data.load_customers) -> `customers` feature group rows."""
    _check_news_frequency(customers)
    median = customers["age"].median()
    fill = DEFAULT_AGE if median is None else float(median)
    club = pl.col("club_member_status").str.strip_chars()
    return customers.select(
        pl.col("customer_id"),
        pl.col("age").cast(pl.Float32).fill_null(fill).alias("age"),
        pl.col("age").is_null().cast(pl.Int8).alias("age_missing"),
        age_group_expr(pl.col("age")).alias("age_group"),
        pl.when(club.is_null() | (club == "")).then(pl.lit(CLUB_ABSENT)).otherwise(club).alias("club_member_status"),
        _news_frequency_expr().alias("fashion_news_frequency"),
        (pl.col("FN") == 1).fill_null(False).cast(pl.Int8).alias("FN"),
        (pl.col("Active") == 1).fill_null(False).cast(pl.Int8).alias("Active"),
        pl.col("postal_code"),
    )
