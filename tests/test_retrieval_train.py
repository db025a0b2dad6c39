"""Training finds planted structure, is deterministic, and reports what the issue asks."""

from __future__ import annotations

import numpy as np
import pytest
from _retrieval_toy import toy_data

from hmrec.retrieval import TwoTowerConfig, evaluate, train

CFG = TwoTowerConfig(batch_size=256, num_epochs=6, num_threads=1, seed=7)


@pytest.fixture(scope="module")
def data():
    return toy_data(n_customers=300, n_articles=400, purchases=24, seed=0)


@pytest.fixture(scope="module")
def result(data):
    train_df, val_df, articles = data
    return train(train_df, val_df, articles, CFG)


def test_planted_structure_is_learnt_and_beats_popularity(result):
    m = result.metrics
    assert set(m) == {"two_tower", "popularity", "random"}
    tt, pop, rnd = m["two_tower"], m["popularity"], m["random"]
    assert tt["top_100_accuracy"] > pop["top_100_accuracy"] + 0.2
    assert tt["recall_at_100"] > pop["recall_at_100"] + 0.2
    assert tt["top_10_accuracy"] > 2 * pop["top_10_accuracy"]
    assert pop["top_100_accuracy"] > rnd["top_100_accuracy"]
    # random baseline on 400 articles: top-100 accuracy about 100/400
    assert rnd["top_100_accuracy"] == pytest.approx(0.25, abs=0.06)


def test_history_reports_losses_throughput_and_best_epoch(result):
    h = result.history
    assert [e.epoch for e in h] == list(range(1, 7))
    for e in h:
        assert e.train_total_loss == pytest.approx(e.train_retrieval_loss + e.train_regularization_loss)
        assert e.val_total_loss == pytest.approx(e.val_retrieval_loss + e.val_regularization_loss)
        assert e.train_regularization_loss > 0 and e.samples_per_second > 0
        assert "top_100_accuracy" in e.metrics and "ndcg_at_12" in e.metrics
    assert h[-1].train_retrieval_loss < h[0].train_retrieval_loss
    assert h[-1].val_retrieval_loss < h[0].val_retrieval_loss
    best = max(h, key=lambda e: e.metrics["top_100_accuracy"])
    assert result.best_epoch == min(e.epoch for e in h if e.metrics["top_100_accuracy"] == best.metrics["top_100_accuracy"])
    # the returned model is the best epoch's: final metrics equal that epoch's
    assert result.metrics["two_tower"]["top_100_accuracy"] == pytest.approx(best.metrics["top_100_accuracy"])


def test_same_seed_same_losses_and_embeddings(data, result):
    train_df, val_df, articles = data
    short = TwoTowerConfig(batch_size=256, num_epochs=2, num_threads=1, seed=7, eval_every_epoch=False)
    a = train(train_df, val_df, articles, short)
    b = train(train_df, val_df, articles, short)
    assert [e.train_retrieval_loss for e in a.history] == [e.train_retrieval_loss for e in b.history]
    assert [e.val_retrieval_loss for e in a.history] == [e.val_retrieval_loss for e in b.history]
    np.testing.assert_array_equal(a.model.item_tower.embed(articles), b.model.item_tower.embed(articles))
    np.testing.assert_array_equal(a.model.query_tower.embed(val_df), b.model.query_tower.embed(val_df))
    # the first epoch of the longer run with the same seed is the same epoch
    assert result.history[0].train_retrieval_loss == a.history[0].train_retrieval_loss
    # worker threads inside the step change nothing
    t = train(train_df, val_df, articles, TwoTowerConfig(**{**short.__dict__, "step_threads": 2}))
    assert [e.train_retrieval_loss for e in t.history] == [e.train_retrieval_loss for e in a.history]
    np.testing.assert_array_equal(t.model.item_tower.embed(articles), a.model.item_tower.embed(articles))
    c = train(train_df, val_df, articles, TwoTowerConfig(batch_size=256, num_epochs=1, num_threads=1, seed=8))
    assert c.history[0].train_retrieval_loss != a.history[0].train_retrieval_loss


def test_fast_path_learns_as_well_as_the_exact_one(data, result):
    train_df, val_df, articles = data
    fast = train(train_df, val_df, articles, TwoTowerConfig(**{**CFG.__dict__, "fast_matmul": True}))
    exact = result.metrics["two_tower"]["top_100_accuracy"]
    assert fast.metrics["two_tower"]["top_100_accuracy"] == pytest.approx(exact, abs=0.05)


def test_evaluate_on_another_window_matches_training_report(data, result):
    train_df, val_df, articles = data
    m = evaluate(result.model, val_df, train_df, articles, CFG)
    assert m["two_tower"] == pytest.approx(result.metrics["two_tower"])
    assert m["popularity"] == pytest.approx(result.metrics["popularity"])


def test_early_stopping_ends_after_patience_epochs_without_a_better_metric(data, result):
    """With patience p, training stops p epochs after the best one (or runs every epoch)."""
    train_df, val_df, articles = data
    h = [e.metrics["top_100_accuracy"] for e in result.history]
    # replay the rule on the full run's curve: where would patience 1 stop?
    best, stale, stop = -1.0, 0, len(h)
    for k, v in enumerate(h, start=1):
        if v > best:
            best, stale = v, 0
        else:
            stale += 1
            if stale >= 1:
                stop = k
                break
    stopped = train(train_df, val_df, articles, TwoTowerConfig(**{**CFG.__dict__, "patience": 1}))
    assert len(stopped.history) == stop
    # same seed: the epochs it ran are the full run's epochs
    assert [e.train_retrieval_loss for e in stopped.history] == [e.train_retrieval_loss for e in result.history[:stop]]


def test_settings_map_onto_the_training_config():
    from hmrec.config import Settings

    cfg = TwoTowerConfig.from_settings(
        Settings(
            TWO_TOWER_EARLY_STOPPING_PATIENCE=2,
            TWO_TOWER_BATCHING="shuffle",
            TWO_TOWER_POPULARITY_PRIOR_DAYS=14,
            TWO_TOWER_PRIOR_SMOOTHING=0.5,
            TWO_TOWER_NUM_THREADS=2,
            TWO_TOWER_STEP_THREADS=1,
        )
    )
    assert (cfg.patience, cfg.batching, cfg.popularity_prior_days, cfg.prior_smoothing) == (2, "shuffle", 14, 0.5)
    assert (cfg.num_threads, cfg.step_threads) == (2, 1)
    assert TwoTowerConfig.from_settings(Settings(TWO_TOWER_EARLY_STOPPING_PATIENCE=None)).patience is None


def test_checkpoints_inside_long_epochs_select_the_model_and_stop_early(data):
    """eval_every_rows adds model-selection points inside an epoch (what FULL-size epochs need)."""
    train_df, val_df, articles = data
    cfg = TwoTowerConfig(**{**CFG.__dict__, "num_epochs": 3, "eval_every_rows": 1024, "patience": None})
    res = train(train_df, val_df, articles, cfg)
    per_epoch = -(-train_df.height // 256)  # batches per epoch
    mids = (per_epoch - 1) // 4  # a checkpoint after every 4 batches, not after the last one
    assert len(res.checkpoints) == 3 * (mids + 1)
    rows = [c["rows"] for c in res.checkpoints]
    assert rows == sorted(rows) and rows[0] == 1024 and rows[-1] == 3 * train_df.height
    assert [e.rows for e in res.history] == [train_df.height] * 3
    values = [c["top_100_accuracy"] for c in res.checkpoints]
    best = values.index(max(values))
    assert [c["best"] for c in res.checkpoints].count(True) >= 1 and res.checkpoints[best]["best"]
    # the returned weights are those of the best checkpoint, wherever it fell
    assert res.metrics["two_tower"]["top_100_accuracy"] == pytest.approx(values[best])
    assert res.best_epoch == res.checkpoints[best]["epoch"]

    # patience counts checkpoints: training stops mid-epoch, 2 points after the best one
    stopped = train(train_df, val_df, articles, TwoTowerConfig(**{**cfg.__dict__, "patience": 2}))
    last = stopped.checkpoints[-1]
    flags = [c["best"] for c in stopped.checkpoints]
    assert flags[-2:] == [False, False] and True not in flags[len(flags) - 2 :]
    assert stopped.checkpoints == res.checkpoints[: len(stopped.checkpoints)]
    assert sum(e.rows for e in stopped.history) == last["rows"] or last["rows"] % train_df.height == 0


def test_time_order_sorts_by_day_with_seeded_random_ties():
    import numpy as np

    from hmrec.retrieval.trainer import time_order

    days = np.array([5, 3, 5, 3, 4, 5, 3, 4], dtype=np.int32)
    order = time_order(days, seed=1)
    assert sorted(order.tolist()) == list(range(8))
    assert days[order].tolist() == [3, 3, 3, 4, 4, 5, 5, 5]
    assert np.array_equal(order, time_order(days, seed=1))
    orders = {tuple(time_order(days, seed=s)) for s in range(10)}
    assert len(orders) > 1  # ties are shuffled, differently per seed
