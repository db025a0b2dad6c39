"""Two processes under torchrun (DDP, gloo) train an equivalent model on tiny data."""

from __future__ import annotations

import json
import subprocess
import sys

from dataclasses import replace

import pytest
from _retrieval_toy import toy_data

from hmrec.config import Settings
from hmrec.retrieval import TwoTowerConfig, TwoTowerModel, train


def test_torchrun_two_processes_gives_identical_replicas_and_comparable_quality(tmp_path):
    train_df, val_df, articles = toy_data(n_customers=300, n_articles=400, purchases=24, seed=0)
    for name, df in (("train", train_df), ("val", val_df), ("articles", articles)):
        df.write_parquet(tmp_path / f"{name}.parquet")
    out = tmp_path / "out"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "hmrec.retrieval.ddp",
        "--train", str(tmp_path / "train.parquet"), "--val", str(tmp_path / "val.parquet"),
        "--articles", str(tmp_path / "articles.parquet"), "--out", str(out),
        "--batch-size", "256", "--epochs", "6", "--seed", "7",
    ]  # fmt: skip
    # the timeout only guards against a hung rendezvous; it is not a speed assertion
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert result["world_size"] == 2
    assert result["replicas_identical"] is True
    # unset options follow the settings, as in a single-process run (early stopping included)
    single = train(train_df, val_df, articles, replace(TwoTowerConfig.from_settings(Settings()), batch_size=256,
                                                       num_epochs=6, num_threads=1, seed=7))
    assert 1 <= len(result["history"]) <= 6
    assert len(result["history"]) == len(single.history)
    ddp = result["metrics"]["two_tower"]
    pop = result["metrics"]["popularity"]
    assert ddp["top_100_accuracy"] > pop["top_100_accuracy"] + 0.2
    assert ddp["recall_at_100"] > pop["recall_at_100"] + 0.2

    assert ddp["top_100_accuracy"] == pytest.approx(single.metrics["two_tower"]["top_100_accuracy"], abs=0.08)
    # the saved model loads: 16 tower dimensions + the popularity prior column
    model = TwoTowerModel.load(out / "model")
    assert model.item_tower.embed(articles).shape == (articles.height, 17)
