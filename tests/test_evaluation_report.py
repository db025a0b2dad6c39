"""The report folder: index.html + PNGs; every section optional."""

import datetime as dt
import json

import polars as pl
import pytest

from hmrec.evaluation import build_examples, read_report_inputs, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
METRICS = {
    "popularity": {"map_at_12": 0.01, "recall_at_12": 0.05, "ndcg_at_12": 0.02, "recall_at_100": 0.2, "reachable_share": 0.18},
    "pipeline": {"map_at_12": 0.03, "recall_at_12": 0.04, "ndcg_at_12": 0.05},
}
HISTORY = {"epoch": [1, 2, 3], "train_total_loss": [3.0, 2.0, 1.5], "val_total_loss": [3.1, 2.4, 2.2]}
CURVES = {"two_tower": {10: 0.1, 50: 0.2, 100: 0.3}, "als": {"10": 0.05, "100": 0.2}}
IMPORTANCE = {"age": 0.5, "price": 0.3, "garment_group_name": 0.2}


def _examples():
    history = pl.DataFrame(
        {
            "t_dat": [dt.date(2020, 9, 1), dt.date(2020, 9, 10), dt.date(2020, 9, 5)],
            "customer_id": ["c1", "c1", "c2"],
            "article_id": ["0000000001", "0000000002", "0000000003"],
        }
    )
    articles = pl.DataFrame(
        {
            "article_id": ["0000000001", "0000000002", "0000000003"],
            "prod_name": ["Tee", "Jeans <slim>", "Sock"],
            "product_type_name": ["T-shirt", "Trousers", "Socks"],
            "colour_group_name": ["Black", "Blue", "White"],
            "index_group_name": ["Ladieswear", "Divided", "Menswear"],
        }
    )
    recs = {"popularity": {"c1": ["0000000003", "0000000001"]}}
    return build_examples(["c1"], history, articles, recs, {"c1": ["0000000001"]})


def test_build_examples_newest_first_with_attributes():
    (ex,) = _examples()
    assert [r["article_id"] for r in ex.history] == ["0000000002", "0000000001"]
    assert ex.history[0]["t_dat"] == "2020-09-10" and ex.history[0]["prod_name"] == "Jeans <slim>"
    assert [r["prod_name"] for r in ex.recommendations["popularity"]] == ["Sock", "Tee"]
    assert ex.bought == ["0000000001"]
    assert ex.bought_rows == [{"article_id": "0000000001", "prod_name": "Tee", "product_type_name": "T-shirt",
                               "colour_group_name": "Black", "index_group_name": "Ladieswear"}]


def test_full_report_has_every_section_and_valid_pngs(tmp_path):
    index = write_report(
        tmp_path / "report", metrics=METRICS, training_histories={"two_tower": HISTORY},
        recall_curves=CURVES, feature_importance=IMPORTANCE, examples=_examples(),
        context={"test week": "2020-09-16 .. 2020-09-22"},
    )
    assert index == tmp_path / "report" / "index.html"
    pngs = sorted(p.name for p in index.parent.glob("*.png"))
    assert pngs == ["feature_importance.png", "metrics.png", "recall_at_k.png", "training_two_tower.png"]
    for name in pngs:
        assert (index.parent / name).read_bytes()[:8] == PNG_MAGIC
    page = index.read_text()
    for heading in ("Metrics on the test week", "Training curves", "Recall@K", "feature importance", "Example customers"):
        assert heading in page
    assert "Not available" not in page
    assert "http://" not in page and "https://" not in page  # self-contained
    assert "Jeans &lt;slim&gt;" in page  # escaped
    # best value per metric highlighted: pipeline's MAP and NDCG, popularity's recall@12
    assert '<td class="best">0.0300</td>' in page and '<td class="best">0.0500</td>' in page
    assert '<td class="best">0.0100</td>' not in page
    # the test-week purchase of the example is highlighted as a hit
    assert "popularity (1 hits)" in page
    assert "Bought in the test week (1 distinct)" in page


def test_missing_sections_are_skipped_cleanly(tmp_path):
    index = write_report(tmp_path / "empty")
    assert list(index.parent.glob("*.png")) == []
    page = index.read_text()
    assert "Not available in this run: metric table, training curves, Recall@K curves, feature importance, example customers" in page

    index = write_report(tmp_path / "partial", metrics=METRICS, training_histories=HISTORY, recall_curves={})
    assert sorted(p.name for p in index.parent.glob("*.png")) == ["metrics.png", "training_model.png"]
    assert "Recall@K curves, feature importance, example customers" in index.read_text()


def test_history_without_loss_series_is_skipped(tmp_path):
    index = write_report(tmp_path / "r", training_histories={"m": {"epoch": [1, 2]}})
    assert list(index.parent.glob("*.png")) == []
    assert "training curves" in index.read_text()


def test_read_report_inputs_collects_earlier_steps(tmp_path):
    assert read_report_inputs(tmp_path) == {}
    (tmp_path / "evaluate.json").write_text(json.dumps({"step": "evaluate", "metrics": METRICS, "recall_curves": {"als": {"10": 0.1}}}))
    (tmp_path / "ranking.json").write_text(json.dumps({"step": "ranking", "feature_importance": IMPORTANCE}))
    (tmp_path / "retrieval.json").write_text(json.dumps({"step": "retrieval", "history": HISTORY}))
    found = read_report_inputs(tmp_path)
    assert found["metrics"] == METRICS
    assert found["feature_importance"] == IMPORTANCE
    assert found["recall_curves"] == {"als": {"10": 0.1}}
    assert found["training_histories"] == {"retrieval": HISTORY}
    index = write_report(tmp_path / "report", **found)
    assert (index.parent / "training_retrieval.png").is_file()


def test_per_epoch_records_are_plotted_like_a_dict_of_lists(tmp_path):
    records = [
        {"epoch": 1, "train_total_loss": 2.0, "val_total_loss": 2.5, "train_retrieval_loss": 1.9, "metrics": {"x": 1}},
        {"epoch": 2, "train_total_loss": 1.0, "val_total_loss": 2.0, "train_retrieval_loss": 0.9, "metrics": {}},
    ]
    from hmrec.evaluation.report import normalise_history

    assert normalise_history(records) == {
        "epoch": [1.0, 2.0], "train_total_loss": [2.0, 1.0], "val_total_loss": [2.5, 2.0], "train_retrieval_loss": [1.9, 0.9]
    }
    index = write_report(tmp_path / "r", training_histories={"two_tower": records})
    assert (index.parent / "training_two_tower.png").read_bytes()[:8] == PNG_MAGIC


INTERVALS = {
    "popularity": {"map_at_12": [0.008, 0.012], "recall_at_12": [0.045, 0.055], "ndcg_at_12": [0.015, 0.025],
                   "recall_at_100": [0.19, 0.21]},
    "pipeline": {"map_at_12": [0.025, 0.035], "recall_at_12": [0.035, 0.045], "ndcg_at_12": [0.045, 0.055]},
}
DIFFERENCES = {"popularity": {"map_at_12": {"diff": 0.02, "ci95": [0.014, 0.026]},
                              "recall_at_12": {"diff": -0.01, "ci95": [-0.017, 0.003]}}}


def test_report_shows_intervals_customer_count_and_paired_differences(tmp_path):
    index = write_report(tmp_path / "ci", metrics=METRICS, intervals=INTERVALS, differences=DIFFERENCES,
                         n_customers=12_345)
    page = index.read_text()
    assert "Metrics on the test week (12,345 customers)" in page
    assert '<td class="best">0.0300<span class="ci">[0.0250, 0.0350]</span></td>' in page
    assert '<td>0.0100<span class="ci">[0.0080, 0.0120]</span></td>' in page
    # the difference whose interval is above 0 is marked better; the one including 0 is not
    assert '<td class="better">+0.0200<span class="ci">[0.0140, 0.0260]</span></td>' in page
    assert '<td>-0.0100<span class="ci">[-0.0170, 0.0030]</span></td>' in page
    assert "MAP@12 (12,345 customers): pipeline beats popularity" in page
    # error bars change the chart
    plain = write_report(tmp_path / "plain", metrics=METRICS)
    assert (index.parent / "metrics.png").read_bytes() != (plain.parent / "metrics.png").read_bytes()
    assert "Paired differences" not in plain.read_text()


def test_error_bars_are_the_distances_to_the_interval_bounds():
    from hmrec.evaluation.report import _error_bars

    below, above = _error_bars([0.03, 0.01, 0.2], [[0.025, 0.035], None, [0.21, 0.3]])
    assert below == pytest.approx([0.005, 0.0, 0.0]) and above == pytest.approx([0.005, 0.0, 0.1])


def test_read_report_inputs_carries_intervals_to_the_report(tmp_path):
    doc = {"step": "evaluate", "metrics": METRICS, "intervals": INTERVALS, "differences": DIFFERENCES,
           "n_customers": 321, "reference": "pipeline"}
    (tmp_path / "evaluate.json").write_text(json.dumps(doc))
    found = read_report_inputs(tmp_path)
    assert found["intervals"] == INTERVALS and found["differences"] == DIFFERENCES and found["n_customers"] == 321
    page = write_report(tmp_path / "report", **found).read_text()
    assert "(321 customers)" in page and '<span class="ci">[0.0080, 0.0120]</span>' in page


RETRIEVAL_DOC = {
    "metrics": {"two_tower": {"top_100_accuracy": 0.42}, "popularity": {"top_100_accuracy": 0.25}},
    "history": [
        {"epoch": 1, "train_total_loss": 8.0, "val_total_loss": 6.0, "train_seconds": 0.1,
         "metrics": {"top_100_accuracy": 0.19}},
        {"epoch": 2, "train_total_loss": 7.0, "val_total_loss": 5.5, "train_seconds": 0.1,
         "metrics": {"top_100_accuracy": 0.24}},
    ],
}


def test_selection_curve_reads_checkpoints_else_history_beside_popularity():
    from hmrec.evaluation.report import selection_curve

    from_history = selection_curve(RETRIEVAL_DOC)
    assert (from_history.metric, from_history.x, from_history.values) == ("top_100_accuracy", [1.0, 2.0], [0.19, 0.24])
    assert from_history.baselines == {"popularity": 0.25}
    checkpoints = [{"epoch": 1, "rows": 10, "top_100_accuracy": 0.2, "best": True},
                   {"epoch": 1, "rows": 20, "top_100_accuracy": 0.3, "best": True}]
    from_checkpoints = selection_curve({**RETRIEVAL_DOC, "checkpoints": checkpoints})
    assert from_checkpoints.values == [0.2, 0.3]
    assert (from_checkpoints.x, from_checkpoints.x_label) == ([10.0, 20.0], "training rows seen")  # two in one epoch
    assert selection_curve({"history": {"epoch": [1]}}) is None


def test_training_figure_plots_the_selection_metric_not_seconds(tmp_path):
    from hmrec.evaluation.report import _loss_stems, normalise_history, plot_training_history

    history = normalise_history(RETRIEVAL_DOC["history"])
    assert _loss_stems(history) == ["total_loss"]  # train_seconds is not a training curve
    assert plot_training_history("m", {"train_seconds": [0.1, 0.2]}, tmp_path / "none.png") is None
    (tmp_path / "retrieval.json").write_text(json.dumps(RETRIEVAL_DOC))
    found = read_report_inputs(tmp_path)
    assert found["selection_curves"]["retrieval"].baselines == {"popularity": 0.25}
    page = write_report(tmp_path / "report", **found).read_text()
    assert "selection metric" in page
    assert (tmp_path / "report" / "training_retrieval.png").read_bytes()[:8] == PNG_MAGIC
