"""Raw loader: exact dtypes, lenient real-file quirks, and precise rejections."""

from __future__ import annotations

import json
import pickle
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from rich.console import Console
from rich.table import Table

from hmrec.data import (
    RAW_FILES,
    RawDataError,
    ValidationReport,
    find_raw_files,
    load_articles,
    load_customers,
    load_raw,
    load_transactions,
    polars_schema,
    validate_dir,
)
from hmrec.data.schema import ARTICLES, CUSTOMERS, TRANSACTIONS

C1 = "00000dbacae5abe5e23885899a1fa44253a17956c6d1c3d25f88aa139fdfc657"
C2 = "0000423b00ade91418cceaf3b26c6af3dd342b51fd051eec9c12fb36984420fa"
C3 = "000058a12d5b43e67d225668fa1f8d618c13dc232df0cad8ffe7ad4a1091e318"
POSTAL = "52043ee2162cf5aa7ee79974281641c6f11a68d276429a91f8ca0d4b6efa8100"

ART_HEADER = ",".join(c.name for c in ARTICLES)
CUST_HEADER = ",".join(c.name for c in CUSTOMERS)
TX_HEADER = ",".join(c.name for c in TRANSACTIONS)


def article_row(article_id: str, product_code: str | None = None, desc: str = "Jersey top.") -> str:
    product_code = product_code or article_id[:-3]
    return (
        f"{article_id},{product_code},Strap top,253,Vest top,Garment Upper body,1010016,Solid,"
        "9,Black,4,Dark,5,Black,1676,Jersey Basic,A,Ladieswear,1,Ladieswear,16,"
        f"Womens Everyday Basics,1002,Jersey Basic,{desc}"
    )


ARTICLE_ROWS = [
    article_row("0108775015"),
    # real-file quirk: no leading zero; free text with a quoted comma
    article_row("108775044", "108775", desc='"White top, narrow straps."'),
    article_row("0110065001", desc=""),  # empty detail_desc is legal
]
CUSTOMER_ROWS = [
    f"{C1},,,ACTIVE,NONE,49.0,{POSTAL}",  # float age, NONE
    f"{C2},1.0,1.0,ACTIVE,Regularly,25,{POSTAL}",
    f"{C3},,,,None,,{POSTAL}",  # empty status and age, None (mixed case kept)
]
TX_ROWS = [
    f"2018-09-20,{C1},0108775015,0.0508474576271186,2",
    f"2018-09-20,{C1},0108775015,0.0508474576271186,2",  # identical row: legal
    f"2018-09-21,{C2},108775044,0.0305084745762711,1",  # id without leading zero
    f"2020-09-22,{C3},0110065001,0.0152542372881355,2",
]


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def make_dir(
    root: Path,
    articles: list[str] | None = None,
    customers: list[str] | None = None,
    transactions: list[str] | None = None,
) -> Path:
    """A data dir of three tiny hand-written CSVs; each list replaces the default rows."""
    root.mkdir(parents=True, exist_ok=True)
    write_csv(root / "articles.csv", ART_HEADER, ARTICLE_ROWS if articles is None else articles)
    write_csv(
        root / "customers.csv", CUST_HEADER, CUSTOMER_ROWS if customers is None else customers
    )
    write_csv(
        root / "transactions_train.csv",
        TX_HEADER,
        TX_ROWS if transactions is None else transactions,
    )
    return root


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return make_dir(tmp_path / "raw")


# ------------------------------------------------------------------- happy path


def test_loaded_frames_have_exact_contract_schema(data_dir: Path) -> None:
    raw = load_raw(data_dir)
    assert raw.articles.schema == polars_schema("articles")
    assert raw.customers.schema == polars_schema("customers")
    assert raw.transactions.schema == polars_schema("transactions")
    assert len(raw.articles.columns) == 25 and len(raw.customers.columns) == 7


def test_lenient_cases_are_normalised_or_kept(data_dir: Path) -> None:
    raw = load_raw(data_dir)
    a, c, t = raw.articles, raw.customers, raw.transactions
    assert a["article_id"].to_list() == ["0108775015", "0108775044", "0110065001"]
    assert a["product_code"].to_list() == ["0108775", "0108775", "0110065"]
    assert a["detail_desc"].to_list() == ["Jersey top.", "White top, narrow straps.", None]
    assert c["age"].to_list() == [49, 25, None]
    assert c["FN"].to_list() == [None, 1.0, None]
    assert c["fashion_news_frequency"].to_list() == ["NONE", "Regularly", "None"]
    assert c["club_member_status"].to_list() == ["ACTIVE", "ACTIVE", None]
    # identical rows kept, file order kept, ids padded so they match the articles file
    assert t.height == 4
    assert t.row(0) == t.row(1)
    assert t["article_id"].to_list() == ["0108775015", "0108775015", "0108775044", "0110065001"]
    assert t["t_dat"].to_list() == [
        date(2018, 9, 20),
        date(2018, 9, 20),
        date(2018, 9, 21),
        date(2020, 9, 22),
    ]
    assert t["sales_channel_id"].to_list() == [2, 2, 1, 2]
    assert t["price"][2] == pytest.approx(0.0305084745762711, rel=1e-6)


def test_report_counts_and_renders(data_dir: Path) -> None:
    report = validate_dir(data_dir)
    assert isinstance(report, ValidationReport)
    assert report.rows == {"articles": 3, "customers": 3, "transactions": 4}
    assert (report.date_min, report.date_max) == (date(2018, 9, 20), date(2020, 9, 22))
    assert report.n_customers_referenced == 3
    assert report.n_articles_referenced == 3
    assert report.dropped == {"unknown_customer": 0, "unknown_article": 0}
    d = json.loads(json.dumps(report.to_dict()))
    assert d["date_min"] == "2018-09-20" and d["rows"]["transactions"] == 4
    assert d["n_dropped"] == 0 and d["seconds"] >= 0
    table = report.to_table()
    assert isinstance(table, Table) and table.row_count == 9
    console = Console(record=True, width=120)
    console.print(table)
    text = console.export_text()
    assert "2018-09-20 .. 2020-09-22" in text and "dropped: unknown customer" in text


def test_single_file_loaders_and_extra_columns(tmp_path: Path) -> None:
    write_csv(tmp_path / "t.csv", TX_HEADER + ",extra", [r + ",x" for r in TX_ROWS])
    t = load_transactions(tmp_path / "t.csv")
    assert t.columns == [c.name for c in TRANSACTIONS]
    assert load_articles(make_dir(tmp_path / "d") / "articles.csv").height == 3
    assert load_customers(tmp_path / "d" / "customers.csv").height == 3


def test_crlf_and_bom_are_accepted(tmp_path: Path) -> None:
    text = "\ufeff" + "\r\n".join([TX_HEADER, *TX_ROWS]) + "\r\n"
    (tmp_path / "t.csv").write_text(text, encoding="utf-8")
    t = load_transactions(tmp_path / "t.csv")
    assert t.height == 4 and t["sales_channel_id"].to_list() == [2, 2, 1, 2]


# -------------------------------------------------------------------- rejections


def replace(rows: list[str], index: int, row: str) -> list[str]:
    out = list(rows)
    out[index] = row
    return out


REJECTIONS = [
    # (id, file, rows kwarg, column, row, value, reason fragment)
    (
        "bad date",
        "transactions_train.csv",
        {"transactions": replace(TX_ROWS, 2, f"2018-13-01,{C2},0108775044,0.03,1")},
        "t_dat",
        3,
        "2018-13-01",
        "unparseable date",
    ),
    (
        "date not zero padded",
        "transactions_train.csv",
        {"transactions": replace(TX_ROWS, 0, f"2018-9-20,{C1},0108775015,0.05,2")},
        "t_dat",
        1,
        "2018-9-20",
        "unparseable date",
    ),
    (
        "empty date",
        "transactions_train.csv",
        {"transactions": replace(TX_ROWS, 3, f",{C3},0110065001,0.01,2")},
        "t_dat",
        4,
        None,
        "empty value",
    ),
    (
        "price not a number",
        "transactions_train.csv",
        {"transactions": replace(TX_ROWS, 1, f"2018-09-20,{C1},0108775015,abc,2")},
        "price",
        2,
        "abc",
        "not a price",
    ),
    (
        "negative price",
        "transactions_train.csv",
        {"transactions": replace(TX_ROWS, 3, f"2020-09-22,{C3},0110065001,-0.01,2")},
        "price",
        4,
        "-0.01",
        "negative price",
    ),
    (
        "nan price",
        "transactions_train.csv",
        {"transactions": replace(TX_ROWS, 0, f"2018-09-20,{C1},0108775015,nan,2")},
        "price",
        1,
        "nan",
        "not a price",
    ),
    (
        "channel 3",
        "transactions_train.csv",
        {"transactions": replace(TX_ROWS, 2, f"2018-09-21,{C2},0108775044,0.03,3")},
        "sales_channel_id",
        3,
        "3",
        "must be 1 or 2",
    ),
    (
        "channel text",
        "transactions_train.csv",
        {"transactions": replace(TX_ROWS, 0, f"2018-09-20,{C1},0108775015,0.05,web")},
        "sales_channel_id",
        1,
        "web",
        "must be 1 or 2",
    ),
    (
        "tx customer id uppercase",
        "transactions_train.csv",
        {"transactions": replace(TX_ROWS, 1, f"2018-09-20,{C1.upper()},0108775015,0.05,2")},
        "customer_id",
        2,
        C1.upper(),
        "malformed customer_id",
    ),
    (
        "tx article id too long",
        "transactions_train.csv",
        {"transactions": replace(TX_ROWS, 2, f"2018-09-21,{C2},10108775044,0.03,1")},
        "article_id",
        3,
        "10108775044",
        "malformed article_id",
    ),
    (
        "tx article id not digits",
        "transactions_train.csv",
        {"transactions": replace(TX_ROWS, 3, f"2020-09-22,{C3},01100650A1,0.01,2")},
        "article_id",
        4,
        "01100650A1",
        "malformed article_id",
    ),
    (
        "customer id short",
        "customers.csv",
        {"customers": replace(CUSTOMER_ROWS, 1, f"{C2[:-1]},1.0,1.0,ACTIVE,Regularly,25,{POSTAL}")},
        "customer_id",
        2,
        C2[:-1],
        "malformed customer_id",
    ),
    (
        "age not a number",
        "customers.csv",
        {"customers": replace(CUSTOMER_ROWS, 2, f"{C3},,,,None,forty,{POSTAL}")},
        "age",
        3,
        "forty",
        "not an age",
    ),
    (
        "age fractional",
        "customers.csv",
        {"customers": replace(CUSTOMER_ROWS, 0, f"{C1},,,ACTIVE,NONE,49.5,{POSTAL}")},
        "age",
        1,
        "49.5",
        "not an age",
    ),
    (
        "FN not a flag",
        "customers.csv",
        {"customers": replace(CUSTOMER_ROWS, 1, f"{C2},yes,1.0,ACTIVE,Regularly,25,{POSTAL}")},
        "FN",
        2,
        "yes",
        "not a flag",
    ),
    (
        "empty postal code",
        "customers.csv",
        {"customers": replace(CUSTOMER_ROWS, 2, f"{C3},,,,None,,")},
        "postal_code",
        3,
        None,
        "empty value",
    ),
    (
        "article id letters",
        "articles.csv",
        {"articles": replace(ARTICLE_ROWS, 2, article_row("01100650x1", "0110065"))},
        "article_id",
        3,
        "01100650x1",
        "malformed article_id",
    ),
    (
        "product code too long",
        "articles.csv",
        {"articles": replace(ARTICLE_ROWS, 0, article_row("0108775015", "01087750"))},
        "product_code",
        1,
        "01087750",
        "malformed product_code",
    ),
    (
        "int code not a number",
        "articles.csv",
        {
            "articles": replace(
                ARTICLE_ROWS, 1, article_row("108775044", "108775").replace(",253,", ",abc,")
            )
        },
        "product_type_no",
        2,
        "abc",
        "not an integer",
    ),
    (
        "empty required text",
        "articles.csv",
        {
            "articles": replace(
                ARTICLE_ROWS, 2, article_row("0110065001").replace(",Strap top,", ",,")
            )
        },
        "prod_name",
        3,
        None,
        "empty value",
    ),
    (
        "duplicate article id",
        "articles.csv",
        # the same id written with and without its leading zero is a duplicate
        {"articles": [*ARTICLE_ROWS, article_row("108775015")]},
        "article_id",
        4,
        "108775015",
        "duplicate article_id (same as row 1)",
    ),
    (
        "duplicate customer id",
        "customers.csv",
        {"customers": [*CUSTOMER_ROWS, f"{C2},,,ACTIVE,NONE,30,{POSTAL}"]},
        "customer_id",
        4,
        C2,
        "duplicate customer_id (same as row 2)",
    ),
]


@pytest.mark.parametrize(
    ("file", "rows", "column", "row", "value", "reason"),
    [case[1:] for case in REJECTIONS],
    ids=[case[0] for case in REJECTIONS],
)
def test_rejections_name_file_column_row_value(
    tmp_path: Path, file: str, rows: dict, column: str, row: int, value: str | None, reason: str
) -> None:
    root = make_dir(tmp_path / "raw", **rows)
    with pytest.raises(RawDataError) as info:
        load_raw(root)
    err = info.value
    assert Path(err.file).name == file
    assert (err.column, err.row, err.value) == (column, row, value)
    assert reason in err.reason
    message = str(err)
    assert file in message and f"column {column}" in message and f"row {row}," in message
    assert ("<empty>" if value is None else repr(value)) in message


def test_first_bad_row_wins_and_first_bad_column_within_it(tmp_path: Path) -> None:
    rows = [
        *TX_ROWS[:2],
        f"2018-99-21,{C2},0108775044,-1,1",  # row 3: date and price both bad
        f"2018-09-21,{C2},0108775044,oops,1",  # row 4: price bad
    ]
    with pytest.raises(RawDataError) as info:
        load_transactions(write_csv(tmp_path / "t.csv", TX_HEADER, rows))
    assert (info.value.column, info.value.row, info.value.value) == ("t_dat", 3, "2018-99-21")


def test_missing_column(tmp_path: Path) -> None:
    header = TX_HEADER.replace(",price", "")
    rows = [",".join(p for i, p in enumerate(r.split(",")) if i != 3) for r in TX_ROWS]
    path = write_csv(tmp_path / "transactions_train.csv", header, rows)
    with pytest.raises(RawDataError) as info:
        load_transactions(path)
    err = info.value
    assert (err.column, err.row, err.value) == ("price", None, None)
    assert "missing column" in str(err) and "transactions_train.csv" in str(err)


def test_header_only_file_is_empty(tmp_path: Path) -> None:
    root = make_dir(tmp_path / "raw", customers=[])
    with pytest.raises(RawDataError) as info:
        load_raw(root)
    assert Path(info.value.file).name == "customers.csv"
    assert "no data rows" in str(info.value)


def test_zero_byte_file_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "articles.csv"
    path.write_bytes(b"")
    with pytest.raises(RawDataError) as info:
        load_articles(path)
    assert info.value.file == str(path) and "empty file" in str(info.value)


def test_missing_file_in_dir(tmp_path: Path) -> None:
    root = make_dir(tmp_path / "raw")
    (root / "transactions_train.csv").unlink()
    with pytest.raises(RawDataError) as info:
        load_raw(root)
    assert "transactions_train.csv" in info.value.file and "not found" in str(info.value)


def test_ragged_line_names_file(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", TX_HEADER, [*TX_ROWS, TX_ROWS[0] + ",1,2"])
    with pytest.raises(RawDataError) as info:
        load_transactions(path)
    assert info.value.file == str(path)


def test_error_survives_pickling() -> None:
    err = RawDataError("a.csv", "age", 7, "x", "not an age")
    back = pickle.loads(pickle.dumps(err))
    assert (back.file, back.column, back.row, back.value, str(back)) == (
        "a.csv",
        "age",
        7,
        "x",
        str(err),
    )


# ---------------------------------------------------------- unknown references

UNKNOWN = "f" * 64
TX_WITH_UNKNOWN = [
    *TX_ROWS,
    f"2019-01-01,{UNKNOWN},0108775015,0.02,2",  # row 5: unknown customer
    f"2019-01-02,{C1},0999999001,0.02,2",  # row 6: unknown article
    f"2019-01-03,{UNKNOWN},0999999001,0.02,2",  # row 7: both unknown
    f"2019-01-04,{C2},0999999001,0.02,1",  # row 8: unknown article
]


def test_unknown_reference_is_an_error_by_default(tmp_path: Path) -> None:
    root = make_dir(tmp_path / "raw", transactions=TX_WITH_UNKNOWN)
    with pytest.raises(RawDataError) as info:
        load_raw(root)
    err = info.value
    assert Path(err.file).name == "transactions_train.csv"
    assert (err.column, err.row, err.value) == ("customer_id", 5, UNKNOWN)
    assert "unknown customer_id" in err.reason


def test_unknown_article_named_when_it_comes_first(tmp_path: Path) -> None:
    rows = [*TX_ROWS[:2], "2019-01-02," + C1 + ",999999001,0.02,2", *TX_WITH_UNKNOWN[4:]]
    root = make_dir(tmp_path / "raw", transactions=rows)
    with pytest.raises(RawDataError) as info:
        load_raw(root)
    # the value is reported as written in the file (no zero padding)
    assert (info.value.column, info.value.row, info.value.value) == ("article_id", 3, "999999001")


def test_drop_unknown_references_counts_by_reason(tmp_path: Path) -> None:
    root = make_dir(tmp_path / "raw", transactions=TX_WITH_UNKNOWN)
    raw = load_raw(root, drop_unknown_references=True)
    assert raw.transactions.equals(load_raw(make_dir(tmp_path / "clean")).transactions)
    assert raw.report.dropped == {"unknown_customer": 2, "unknown_article": 2}
    assert raw.report.n_dropped == 4
    assert raw.report.rows["transactions"] == 4
    assert raw.report.date_max == date(2020, 9, 22)
    assert validate_dir(root, drop_unknown_references=True).to_dict()["n_dropped"] == 4


# ----------------------------------------------------------------- parquet input


def test_parquet_of_text_gives_identical_frames(data_dir: Path, tmp_path: Path) -> None:
    pq_dir = tmp_path / "pq"
    pq_dir.mkdir()
    for stem in RAW_FILES.values():
        pl.read_csv(data_dir / f"{stem}.csv", infer_schema=False).write_parquet(
            pq_dir / f"{stem}.parquet"
        )
    from_csv, from_pq = load_raw(data_dir), load_raw(pq_dir)
    assert find_raw_files(pq_dir)["articles"].suffix == ".parquet"
    for table in ("articles", "customers", "transactions"):
        assert getattr(from_pq, table).equals(getattr(from_csv, table)), table
        assert getattr(from_pq, table).schema == getattr(from_csv, table).schema


def test_parquet_with_native_types_gives_identical_frames(data_dir: Path, tmp_path: Path) -> None:
    """As pandas would write it: ids as integers (zeros lost), float ages with NaN, Date."""
    pq_dir = tmp_path / "pq"
    pq_dir.mkdir()
    articles = pl.read_csv(data_dir / "articles.csv", infer_schema=False).with_columns(
        pl.col("article_id", "product_code", "product_type_no").cast(pl.Int64)
    )
    customers = pl.read_csv(data_dir / "customers.csv", infer_schema=False).with_columns(
        pl.col("FN", "Active").cast(pl.Float64),
        pl.col("age").cast(pl.Float64).fill_null(float("nan")),
    )
    tx = pl.read_csv(data_dir / "transactions_train.csv", infer_schema=False).with_columns(
        pl.col("t_dat").str.to_date(),
        pl.col("article_id").cast(pl.Int64),
        pl.col("price").cast(pl.Float64),
        pl.col("sales_channel_id").cast(pl.Int64),
    )
    articles.write_parquet(pq_dir / "articles.parquet")
    customers.write_parquet(pq_dir / "customers.parquet")
    tx.write_parquet(pq_dir / "transactions_train.parquet")
    from_csv, from_pq = load_raw(data_dir), load_raw(pq_dir)
    for table in ("articles", "customers", "transactions"):
        assert getattr(from_pq, table).equals(getattr(from_csv, table)), table


def test_parquet_bad_value_reports_row(tmp_path: Path) -> None:
    path = tmp_path / "transactions_train.parquet"
    pl.DataFrame(
        {
            "t_dat": [date(2020, 1, 1)] * 3,
            "customer_id": [C1] * 3,
            "article_id": [108775015] * 3,
            "price": [0.1, 0.2, -0.3],
            "sales_channel_id": [1, 2, 2],
        }
    ).write_parquet(path)
    with pytest.raises(RawDataError) as info:
        load_transactions(path)
    assert (info.value.column, info.value.row, info.value.value) == ("price", 3, -0.3)
    assert "negative price" in str(info.value)


# ------------------------------------------------------------- generated data


def test_generated_csv_and_parquet_load_to_identical_frames(tmp_path: Path) -> None:
    synthetic = pytest.importorskip("hmrec.data.synthetic")
    for fmt in ("csv", "parquet"):
        synthetic.generate(tmp_path / fmt, n_customers=60, n_articles=300, seed=3, fmt=fmt)
    from_csv, from_pq = load_raw(tmp_path / "csv"), load_raw(tmp_path / "parquet")
    assert from_csv.report.rows["customers"] == 60 and from_csv.report.rows["articles"] == 300
    assert from_csv.report.n_dropped == 0 and from_csv.transactions.height > 0
    for table in ("articles", "customers", "transactions"):
        assert getattr(from_csv, table).schema == polars_schema(table)
        assert getattr(from_pq, table).equals(getattr(from_csv, table)), table
    assert from_pq.report.to_dict()["rows"] == from_csv.report.to_dict()["rows"]


def test_drop_unknown_when_every_transaction_is_unknown(tmp_path: Path) -> None:
    rows = [f"2019-01-01,{UNKNOWN},0108775015,0.02,2", f"2019-01-02,{C1},0999999001,0.02,2"]
    report = validate_dir(
        make_dir(tmp_path / "raw", transactions=rows), drop_unknown_references=True
    )
    assert report.rows["transactions"] == 0
    assert report.dropped == {"unknown_customer": 1, "unknown_article": 1}
    assert (report.date_min, report.date_max, report.n_customers_referenced) == (None, None, 0)
    assert report.to_dict()["date_min"] is None and report.to_table().row_count == 9
