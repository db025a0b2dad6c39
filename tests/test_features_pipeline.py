"""Feature pipeline end to end on tiny generated data: idempotent, complete, consistent online/offline."""

from datetime import timedelta

import polars as pl
import pytest

from hmrec.config import Settings
from hmrec.data import generate, load_raw
from hmrec.features import attach_article_sales, attach_customer_activity, groups
from hmrec.features.errors import FeatureInputError
from hmrec.features.views import RETRIEVAL_VIEW, activity_query
from hmrec.pipelines.features import run_feature_pipeline
from hmrec.store import FeatureStore


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("raw")
    generate(d, n_customers=60, seed=3)
    return d


def settings_for(tmp_path, data_dir) -> Settings:
    return Settings(HOME_DIR=tmp_path / "home", DATA_DIR=data_dir)


def snapshot(fs: FeatureStore) -> dict[str, pl.DataFrame]:
    out = {}
    for spec in groups.ALL_GROUPS:
        df = fs.get_feature_group(spec.name, spec.version).read()
        out[spec.name] = df.sort(spec.primary_key)
    return out


@pytest.mark.parametrize("mode", ["overwrite", "upsert"])
def test_running_twice_leaves_identical_tables(tmp_path, data_dir, mode):
    s = settings_for(tmp_path, data_dir)
    first = run_feature_pipeline(s, mode=mode)
    fs = FeatureStore(s.store_dir)
    before = snapshot(fs)
    second = run_feature_pipeline(s, mode=mode)
    after = snapshot(FeatureStore(s.store_dir))
    assert first.rows == second.rows
    for name, df in before.items():
        assert df.height > 0, name
        assert df.equals(after[name]), name
        pk = next(g.primary_key for g in groups.ALL_GROUPS if g.name == name)
        assert df.select(pk).is_duplicated().sum() == 0, name
    # the second run committed new versions (not a no-op) with the same content
    assert all(second.table_versions[n] > first.table_versions[n] for n in first.table_versions)


def test_groups_complete_and_view_matches_transactions(tmp_path, data_dir):
    s = settings_for(tmp_path, data_dir)
    raw = load_raw(data_dir)
    summary = run_feature_pipeline(s, raw=raw)
    fs = FeatureStore(s.store_dir)
    assert summary.rows["transactions"] == raw.transactions.height  # identical rows kept
    assert summary.rows["customers"] == raw.customers.height  # missing ages kept
    assert raw.customers["age"].null_count() > 0
    assert sorted(fs.list_feature_groups()) == sorted((g.name, 1) for g in groups.ALL_GROUPS)

    fv = fs.get_feature_view(RETRIEVAL_VIEW, 1)
    assert fv.columns == ["customer_id", "article_id", "t_dat", "price", "month_sin", "month_cos",
                          "age", "club_member_status", "age_group", "garment_group_name", "index_group_name"]
    td = fv.training_data()
    assert td.height == raw.transactions.height
    assert td.null_count().sum_horizontal().item() == 0  # every purchase found its customer and article
    cust = fs.get_feature_group("customers").read(["customer_id", "age", "age_group"])
    check = td.join(cust, on="customer_id", how="left", suffix="_c")
    assert (check["age"] == check["age_c"]).all() and (check["age_group"] == check["age_group_c"]).all()
    assert {g["name"] for g in fv.metadata["groups"]} == {"transactions", "customers", "articles"}

    # ids: dense, sorted, cover every id
    cids = fs.get_feature_group("customer_ids").read().sort("customer_idx")
    assert cids["customer_idx"].to_list() == list(range(raw.customers.height))
    assert cids["customer_id"].is_sorted()
    assert (s.reports_dir / "features.json").is_file()


def test_point_in_time_view_of_aggregates_matches_direct_computation(tmp_path, data_dir):
    s = settings_for(tmp_path, data_dir)
    raw = load_raw(data_dir)
    run_feature_pipeline(s, raw=raw)
    fs = FeatureStore(s.store_dir)
    got = activity_query(fs).read().sort("customer_id", "article_id", "t_dat", "line_no")
    labels = got.select("customer_id", "article_id", "t_dat", "line_no")
    sales = fs.get_feature_group("article_sales_windows").read()
    act = fs.get_feature_group("customer_activity").read()
    want = attach_customer_activity(attach_article_sales(labels, sales), act)
    for c in ("sales_7d", "sales_28d", "purchase_count", "purchase_days"):
        assert got[c].fill_null(0).to_list() == want[c].to_list(), c
    assert got["last_purchase_date"].to_list() == want["last_purchase_date"].to_list()
    # never a purchase from the label's own day or later
    assert (got["last_purchase_date"].is_null() | (got["last_purchase_date"] < got["t_dat"])).all()


def test_online_lookups_equal_offline_values(tmp_path, data_dir):
    s = settings_for(tmp_path, data_dir)
    raw = load_raw(data_dir)
    summary = run_feature_pipeline(s, raw=raw)
    fs = FeatureStore(s.store_dir)
    assert sorted(fs.online.tables()) == ["article_sales_windows", "articles", "customer_activity", "customers"]
    customers = fs.get_feature_group("customers").read()
    for row in customers.head(10).iter_rows(named=True):
        assert fs.online.get("customers", row["customer_id"]) == row
    articles = fs.get_feature_group("articles").read()
    keys = articles["article_id"].head(7).to_list() + ["9999999999"]
    many = fs.online.get_many("articles", keys)
    assert many["_found"].to_list() == [True] * 7 + [False]
    assert many.drop("_found").head(7).equals(articles.head(7))
    assert fs.online.get("articles", "9999999999") is None

    # aggregates online = as of the day after the last purchase
    as_of = summary.as_of
    assert as_of == raw.transactions["t_dat"].max() + timedelta(days=1)
    arts = fs.online.get_many("article_sales_windows", articles["article_id"].to_list())
    labels = articles.select("article_id").with_columns(t_dat=pl.lit(as_of))
    want = attach_article_sales(labels, fs.get_feature_group("article_sales_windows").read())
    assert arts["sales_7d"].fill_null(0).to_list() == want["sales_7d"].to_list()
    assert arts["sales_28d"].fill_null(0).to_list() == want["sales_28d"].to_list()
    assert sum(want["sales_7d"]) == raw.transactions.filter(pl.col("t_dat") >= as_of - timedelta(days=7)).height
    cid = raw.transactions["customer_id"][0]
    online = fs.online.get("customer_activity", cid)
    assert online["purchase_count"] == raw.transactions.filter(pl.col("customer_id") == cid).height
    assert online["last_purchase_date"] == raw.transactions.filter(pl.col("customer_id") == cid)["t_dat"].max()


def test_id_codes_are_kept_when_new_customers_arrive(tmp_path, data_dir):
    s = settings_for(tmp_path, data_dir)
    raw = load_raw(data_dir)
    few = raw.customers.sort("customer_id").tail(20)  # the LAST ids in sorted order
    tx = raw.transactions.filter(pl.col("customer_id").is_in(few["customer_id"].implode()))
    small = type(raw)(raw.articles, few, tx, raw.report)
    run_feature_pipeline(s, raw=small)
    fs = FeatureStore(s.store_dir)
    first = fs.get_feature_group("customer_ids").read()
    run_feature_pipeline(s, raw=raw)
    second = fs.get_feature_group("customer_ids").read()
    kept = first.join(second, on="customer_id", suffix="_2")
    assert kept.height == 20 and (kept["customer_idx"] == kept["customer_idx_2"]).all()
    assert sorted(second["customer_idx"].to_list()) == list(range(raw.customers.height))


def test_bad_value_fails_before_anything_is_written(tmp_path, data_dir):
    s = settings_for(tmp_path, data_dir)
    raw = load_raw(data_dir)
    run_feature_pipeline(s, raw=raw)
    fs = FeatureStore(s.store_dir)
    before = snapshot(fs)
    versions = {g.name: fs.get_feature_group(g.name).commit_version() for g in groups.ALL_GROUPS}
    bad_customers = raw.customers.with_columns(
        pl.when(pl.int_range(pl.len()) == 4).then(pl.lit("Weekly")).otherwise(pl.col("fashion_news_frequency"))
        .alias("fashion_news_frequency"))
    bad_tx = raw.transactions.with_columns(pl.col("price") * 2)  # would change the table if written
    with pytest.raises(FeatureInputError) as exc:
        run_feature_pipeline(s, raw=type(raw)(raw.articles, bad_customers, bad_tx, raw.report))
    assert exc.value.row == 5 and exc.value.value == "Weekly"
    after = snapshot(FeatureStore(s.store_dir))
    assert all(before[n].equals(after[n]) for n in before)
    assert versions == {g.name: fs.get_feature_group(g.name).commit_version() for g in groups.ALL_GROUPS}


def test_unknown_article_in_transactions_fails_before_anything_is_written(tmp_path, data_dir):
    s = settings_for(tmp_path, data_dir)
    raw = load_raw(data_dir)
    bad_tx = raw.transactions.with_columns(
        pl.when(pl.int_range(pl.len()) == 9).then(pl.lit("0000000001")).otherwise(pl.col("article_id"))
        .alias("article_id"))
    with pytest.raises(FeatureInputError) as exc:
        run_feature_pipeline(s, raw=type(raw)(raw.articles, raw.customers, bad_tx, raw.report))
    assert (exc.value.column, exc.value.row, exc.value.value) == ("article_id", 10, "0000000001")
    assert FeatureStore(s.store_dir).list_feature_groups() == []


def test_sampling_to_the_configured_size(tmp_path, data_dir):
    s = Settings(HOME_DIR=tmp_path / "home", DATA_DIR=data_dir, CUSTOMER_DATA_SIZE="SMALL")
    raw = load_raw(data_dir)
    # SMALL is 1,000 customers: more than the 60 here, so nothing is sampled
    summary = run_feature_pipeline(s, raw=raw)
    assert summary.sampled_customers is None and summary.rows["customers"] == 60
