"""The synthetic generator: exact Kaggle format, realistic marginals, planted structure, determinism."""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from hmrec.data.loader import load_raw
from hmrec.data.synthetic import GenerationSummary, default_n_articles, generate
from hmrec.data.synthetic_articles import REAL_ARTICLES, allocate, make_catalogue, read_taxonomy

N = 4000  # customers in the shared dataset: big enough for marginals, a few seconds to make
HIER = ["index_group_no", "index_group_name", "index_code", "index_name", "section_no", "section_name",
        "garment_group_no", "garment_group_name", "department_no", "department_name",
        "product_group_name", "product_type_no", "product_type_name"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, GenerationSummary]:
    out = tmp_path_factory.mktemp("synthetic")
    return out, generate(out, n_customers=N, seed=7)


def _text(path: Path) -> pl.DataFrame:
    """A file as the raw text cells (no type inference), as a strict reader sees it."""
    return pl.read_csv(path, infer_schema=False)


@pytest.fixture(scope="module")
def frames(data):
    out, _ = data
    articles = pl.read_csv(out / "articles.csv", schema_overrides={"article_id": pl.String, "product_code": pl.String})
    customers = pl.read_csv(out / "customers.csv")
    tx = pl.read_csv(out / "transactions_train.csv", schema_overrides={"article_id": pl.String, "t_dat": pl.Date})
    return articles, customers, tx


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


# ----------------------------------------------------------------------------- determinism

def test_same_seed_same_bytes_and_other_seed_other_bytes(tmp_path):
    a = generate(tmp_path / "a", n_customers=300, seed=1)
    generate(tmp_path / "b", n_customers=300, seed=1)
    generate(tmp_path / "c", n_customers=300, seed=2)
    da, db, dc = (_digest(tmp_path / x) for x in "abc")
    assert da == db
    assert set(da) == {"articles.csv", "customers.csv", "transactions_train.csv"}
    assert all(da[k] != dc[k] for k in da)
    assert a.rows["customers"] == 300 and a.rows["articles"] == default_n_articles(300)


def test_summary_matches_files_and_no_temp_files_left(data):
    out, summary = data
    assert sorted(p.name for p in out.iterdir()) == ["articles.csv", "customers.csv", "transactions_train.csv"]
    for key, path in summary.paths.items():
        assert path.exists()
        assert _text(path).height == summary.rows[key]
    assert summary.rows["customers"] == N
    assert summary.seconds > 0


def test_progress_reports_every_stage(tmp_path):
    calls = []
    generate(tmp_path, n_customers=50, seed=3, progress=lambda stage, done, total: calls.append((stage, done, total)))
    assert calls[0] == ("articles and customers", 1, 1)
    assert calls[-1] == ("transactions", 734, 734)


def test_bad_arguments_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="n_customers"):
        generate(tmp_path, n_customers=0)
    with pytest.raises(ValueError, match="fmt"):
        generate(tmp_path, n_customers=10, fmt="xlsx")
    with pytest.raises(ValueError, match="n_articles"):
        generate(tmp_path, n_customers=10, n_articles=0)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- exact format

def test_columns_and_id_formats_are_kaggle_exact(data):
    out, _ = data
    art, cus, tx = (_text(out / f) for f in ("articles.csv", "customers.csv", "transactions_train.csv"))
    assert art.columns[:3] == ["article_id", "product_code", "prod_name"] and len(art.columns) == 25
    assert art.columns[-1] == "detail_desc"
    assert cus.columns == ["customer_id", "FN", "Active", "club_member_status", "fashion_news_frequency",
                           "age", "postal_code"]
    assert tx.columns == ["t_dat", "customer_id", "article_id", "price", "sales_channel_id"]
    assert art["article_id"].str.contains(r"^0\d{9}$").all()
    assert (art["article_id"].str.slice(0, 7) == art["product_code"]).all()
    assert art["article_id"].is_unique().all()
    assert cus["customer_id"].str.contains(r"^[0-9a-f]{64}$").all()
    assert cus["postal_code"].str.contains(r"^[0-9a-f]{64}$").all()
    assert cus["customer_id"].is_unique().all()
    assert set(cus["FN"].unique().to_list()) == {"1.0", None}
    assert set(cus["Active"].unique().to_list()) == {"1.0", None}
    assert set(cus["club_member_status"].drop_nulls().unique().to_list()) <= {"ACTIVE", "PRE-CREATE", "LEFT CLUB"}
    assert set(cus["fashion_news_frequency"].drop_nulls().unique().to_list()) <= {"NONE", "None", "Regularly", "Monthly"}
    assert cus["age"].drop_nulls().str.contains(r"^\d{2}\.0$").all()
    assert tx["t_dat"].str.contains(r"^20\d\d-\d\d-\d\d$").all()
    assert tx["article_id"].str.contains(r"^0\d{9}$").all()
    assert set(tx["sales_channel_id"].unique().to_list()) == {"1", "2"}
    assert tx["price"].str.contains(r"^0\.\d+$").all()
    assert tx["customer_id"].is_in(cus["customer_id"].implode()).all()
    assert tx["article_id"].is_in(art["article_id"].implode()).all()


def test_loader_reads_generated_files(data):
    out, summary = data
    raw = load_raw(out)
    assert raw.report.rows == summary.rows
    assert raw.report.date_min == date(2018, 9, 20) and raw.report.date_max == date(2020, 9, 22)


def test_parquet_holds_the_same_values_as_csv(tmp_path):
    generate(tmp_path / "csv", n_customers=200, seed=5)
    generate(tmp_path / "pq", n_customers=200, seed=5, fmt="parquet")
    for stem, dates in (("articles", {}), ("customers", {}), ("transactions_train", {"t_dat": pl.Date})):
        csv = pl.read_csv(tmp_path / "csv" / f"{stem}.csv", infer_schema=False)
        pq = pl.read_parquet(tmp_path / "pq" / f"{stem}.parquet")
        assert pq.columns == csv.columns
        as_text = pq.select(pl.all().cast(pl.String))
        if stem != "customers":  # floats: compare as numbers, the text form differs (1.0 vs 1)
            assert as_text.drop("price", strict=False).equals(csv.drop("price", strict=False))
        else:
            assert as_text.select(pl.col(pl.String)).drop("FN", "Active", "age").equals(
                csv.drop("FN", "Active", "age"))
    tx_csv = pl.read_csv(tmp_path / "csv" / "transactions_train.csv")
    tx_pq = pl.read_parquet(tmp_path / "pq" / "transactions_train.parquet")
    assert np.array_equal(tx_csv["price"].to_numpy(), tx_pq["price"].to_numpy())


# ----------------------------------------------------------------------------- catalogue

def test_every_article_fits_the_real_hierarchy_colours_and_appearances(frames):
    articles, _, _ = frames
    hier = read_taxonomy("hierarchy").select(HIER).unique()
    assert articles.select(HIER).join(hier, on=HIER, how="anti").height == 0
    colour_cols = ["colour_group_code", "colour_group_name", "perceived_colour_value_id",
                   "perceived_colour_value_name", "perceived_colour_master_id", "perceived_colour_master_name"]
    colours = read_taxonomy("colours").select(colour_cols)
    assert articles.select(colour_cols).join(colours, on=colour_cols, how="anti").height == 0
    appear = read_taxonomy("graphical_appearance").select("graphical_appearance_no", "graphical_appearance_name")
    assert articles.select(appear.columns).join(appear, on=appear.columns, how="anti").height == 0
    # one product code = one product: same hierarchy and name for all its colour variants
    per_code = articles.group_by("product_code").agg(pl.col(c).n_unique() for c in HIER + ["prod_name"])
    assert (per_code.drop("product_code").max_horizontal() == 1).all()
    assert articles.height / per_code.height > 1.3  # several articles per product code
    assert 0 < articles["detail_desc"].null_count() < 0.02 * articles.height  # real: 0.4% empty


def test_full_size_catalogue_has_the_real_cardinalities():
    cat = make_catalogue(REAL_ARTICLES, np.random.default_rng(0))
    f = cat.frame
    real = {"product_type_name": 131, "product_group_name": 19, "graphical_appearance_no": 30,
            "colour_group_code": 50, "perceived_colour_value_id": 8, "perceived_colour_master_id": 20,
            "department_name": 250, "index_code": 10, "index_group_name": 5, "section_name": 56,
            "garment_group_no": 21}
    assert {c: f[c].n_unique() for c in real} == real
    counts = f.group_by(HIER).len()
    hier = read_taxonomy("hierarchy").select(HIER + ["article_count"])
    joined = hier.join(counts, on=HIER, how="left")
    assert (joined["len"] == joined["article_count"]).all()  # every combination, exactly its real count
    assert 40_000 < f["product_code"].n_unique() < 56_000  # real: 47,224


def test_smaller_catalogues_scale_cardinalities_and_keep_index_group_shares(frames):
    articles, _, _ = frames
    assert articles.height == default_n_articles(N)
    assert 60 < articles["product_type_name"].n_unique() < 131
    assert articles["index_group_name"].n_unique() == 5
    real = {"Ladieswear": 0.377, "Baby/Children": 0.329, "Divided": 0.144, "Menswear": 0.119, "Sport": 0.032}
    shares = dict(articles["index_group_name"].value_counts(normalize=True).iter_rows())
    for group, share in real.items():
        assert abs(shares[group] - share) < 0.01, group


def test_allocate_is_exact_and_proportional():
    rng = np.random.default_rng(0)
    counts = np.array([5, 0, 1, 94])
    assert allocate(counts, 100, rng).tolist() == [5, 0, 1, 94]
    out = allocate(counts, 10, rng)
    assert out.sum() == 10 and out[1] == 0 and out[3] in (9, 10) and out[0] in (0, 1)


# ----------------------------------------------------------------------------- customers

def test_ages_are_bimodal_with_about_one_percent_missing(frames):
    _, customers, _ = frames
    age = customers["age"]
    assert 0.004 < age.null_count() / customers.height < 0.022
    a = age.drop_nulls().to_numpy()
    assert a.min() >= 16 and a.max() <= 99
    young, middle, fifties = ((a >= 20) & (a < 30)).mean(), ((a >= 35) & (a < 45)).mean(), ((a >= 45) & (a < 55)).mean()
    assert young > 1.8 * middle and fifties > 1.3 * middle  # peaks in the 20s and around 50


def test_customer_flags_have_real_proportions(frames):
    _, customers, _ = frames
    fn = customers["FN"].is_not_null().mean()
    assert 0.31 < fn < 0.39
    assert customers.filter(pl.col("Active").is_not_null() & pl.col("FN").is_null()).height == 0
    status = dict(customers["club_member_status"].value_counts(normalize=True).iter_rows())
    assert 0.89 < status["ACTIVE"] < 0.96
    news = dict(customers["fashion_news_frequency"].value_counts(normalize=True).iter_rows())
    assert 0.60 < news["NONE"] < 0.68


# ----------------------------------------------------------------------------- transactions

def test_dates_channels_prices(frames):
    _, _, tx = frames
    assert tx["t_dat"].min() == date(2018, 9, 20) and tx["t_dat"].max() == date(2020, 9, 22)
    assert tx["t_dat"].is_sorted()
    assert abs((tx["sales_channel_id"] == 2).mean() - 0.70) < 0.04
    price = tx["price"]
    assert price.min() > 0 and price.max() < 0.6
    assert 0.015 < price.median() < 0.04


def test_identical_rows_and_repurchases_have_real_shares(frames):
    _, _, tx = frames
    identical = 1 - tx.unique().height / tx.height
    assert 0.065 < identical < 0.115
    first = tx.group_by("customer_id", "article_id").agg(pl.col("t_dat").min().alias("first"))
    repeat = tx.join(first, on=["customer_id", "article_id"]).select((pl.col("t_dat") > pl.col("first")).mean()).item()
    assert 0.02 < repeat < 0.065


def test_activity_is_heavy_tailed_and_some_never_buy(frames):
    _, customers, tx = frames
    per = tx.group_by("customer_id").len()["len"]
    assert 0 < customers.height - per.len() < 0.03 * customers.height
    assert 6 <= per.median() <= 13
    assert per.max() > 15 * per.median()
    assert per.mean() > 1.6 * per.median()
    basket = tx.group_by("customer_id", "t_dat").len()["len"]
    assert basket.mean() > 2.0


def test_article_popularity_is_heavy_tailed_and_sold_in_windows(frames):
    articles, _, tx = frames
    sales = tx.group_by("article_id").agg(pl.len(), (pl.col("t_dat").max() - pl.col("t_dat").min()).dt.total_days().alias("span"))
    s = np.sort(sales["len"].to_numpy())[::-1]
    assert s[: max(1, len(s) // 100)].sum() > 0.08 * s.sum()  # top 1% of articles
    assert sales["span"].median() < 250  # of a 734-day window
    assert sales.height < articles.height  # some articles never sell


def test_seasonal_categories_sell_in_their_season(frames):
    articles, _, tx = frames
    t = tx.join(articles.select("article_id", "product_type_name"), on="article_id").with_columns(
        month=pl.col("t_dat").dt.month())
    def share(types: list[str], months: list[int]) -> float:
        m = t.filter(pl.col("month").is_in(months))
        return m["product_type_name"].is_in(types).mean()
    summer = ["Swimsuit", "Bikini top", "Swimwear bottom", "Shorts", "Sandals"]
    winter = ["Coat", "Jacket", "Sweater", "Hat/beanie", "Gloves", "Scarf", "Boots"]
    assert share(summer, [6, 7]) > 3 * share(summer, [12, 1])
    assert share(winter, [11, 12, 1]) > 1.8 * share(winter, [6, 7])


# ----------------------------------------------------------------------------- planted structure

def _recall_at_100(tx: pl.DataFrame, articles: pl.DataFrame, shuffle_histories: bool = False) -> tuple[float, float]:
    """Last-week Recall@100: global popularity vs popularity x the customer's own facet shares.

    The personal model scores article a for customer c as recent popularity times, for
    index, garment group and colour master, c's smoothed share of purchases in a's
    value over the global share. With shuffled histories it learns nothing personal.
    """
    facets = ["index_code", "garment_group_name", "perceived_colour_master_name"]
    ar = articles.with_row_index("a").with_columns(
        [(pl.col(f).rank("dense").cast(pl.Int64) - 1).alias(f"f{i}") for i, f in enumerate(facets)])
    tx = tx.join(ar.select("article_id", "a", "f0", "f1", "f2"), on="article_id")
    end = tx["t_dat"].max()
    test = tx.filter(pl.col("t_dat") > pl.lit(end) - pl.duration(days=7))
    train = tx.filter(pl.col("t_dat") <= pl.lit(end) - pl.duration(days=7))
    tend = train["t_dat"].max()
    n_a = ar.height
    recent = lambda days: np.bincount(  # noqa: E731
        train.filter(pl.col("t_dat") > pl.lit(tend) - pl.duration(days=days))["a"].to_numpy(), minlength=n_a)
    pop1, pop4 = recent(7).astype(float), recent(28).astype(float)
    top = set(np.argsort(-pop1, kind="stable")[:100].tolist())
    fa = [ar[f"f{i}"].to_numpy() for i in range(3)]
    glob = [np.bincount(train[f"f{i}"].to_numpy(), minlength=int(fa[i].max()) + 1) / train.height for i in range(3)]
    truth = test.group_by("customer_id").agg(pl.col("a").unique()).sort("customer_id")
    hist = train.group_by("customer_id").agg("f0", "f1", "f2").sort("customer_id")
    if shuffle_histories:
        perm = np.random.default_rng(0).permutation(hist.height)
        hist = hist.with_columns(pl.col("customer_id").gather(perm))
    hist = {r[0]: r[1:] for r in hist.iter_rows()}
    r_pop, r_me = [], []
    for cid, arts in truth.iter_rows():
        arts = set(arts)
        r_pop.append(len(arts & top) / len(arts))
        h = hist.get(cid)
        score = pop4 + pop1
        if h is not None:
            for i in range(3):
                cnt = np.bincount(np.asarray(h[i]), minlength=len(glob[i]))
                score = score * ((cnt + 10 * glob[i]) / (len(h[i]) + 10) / np.maximum(glob[i], 1e-9))[fa[i]]
        r_me.append(len(arts & set(np.argsort(-score, kind="stable")[:100].tolist())) / len(arts))
    return float(np.mean(r_pop)), float(np.mean(r_me))


def test_customer_tastes_beat_popularity_and_noise_does_not(frames):
    articles, _, tx = frames
    pop, personal = _recall_at_100(tx, articles)
    _, shuffled = _recall_at_100(tx, articles, shuffle_histories=True)
    assert pop > 0.2  # popularity is a strong baseline ...
    assert personal > 1.15 * pop  # ... that learning each customer's taste clearly beats
    assert shuffled < pop  # someone else's history does not help


def test_tiny_catalogues_and_populations_still_make_valid_files(tmp_path):
    summary = generate(tmp_path, n_customers=2, n_articles=1, seed=0)  # one article, often not on sale
    raw = load_raw(tmp_path)
    assert raw.report.rows == summary.rows
    assert summary.rows["articles"] == 1 and summary.rows["transactions"] > 0
