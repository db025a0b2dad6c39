"""The command line, driven as a user would (subprocess of the installed entry point)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HMREC = [sys.executable, "-m", "hmrec.cli"]


def hmrec(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run([*HMREC, *args], capture_output=True, text=True, env=full_env, cwd=cwd)


@pytest.mark.parametrize("command", [[], ["data"], ["data", "generate"], ["data", "validate"], ["features"],
                                     ["train"], ["train", "retrieval"], ["train", "ranking"], ["evaluate"],
                                     ["serve"], ["run"]])
def test_every_command_has_help(command):
    result = hmrec(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout


def test_generate_then_validate(tmp_path):
    out = tmp_path / "raw"
    gen = hmrec("data", "generate", "--customers", "120", "--seed", "3", "--out", str(out))
    assert gen.returncode == 0, gen.stderr
    assert sorted(p.name for p in out.glob("*.csv")) == ["articles.csv", "customers.csv", "transactions_train.csv"]
    val = hmrec("data", "validate", "--data-dir", str(out))
    assert val.returncode == 0, val.stderr
    assert "customers rows" in val.stdout and "120" in val.stdout


def test_validate_rejects_bad_data_with_one_line_reason(tmp_path):
    out = tmp_path / "raw"
    assert hmrec("data", "generate", "--customers", "50", "--out", str(out)).returncode == 0
    tx = out / "transactions_train.csv"
    lines = tx.read_text().splitlines()
    fields = lines[3].split(",")
    fields[4] = "3"  # sales_channel_id must be 1 or 2
    lines[3] = ",".join(fields)
    tx.write_text("\n".join(lines) + "\n")
    result = hmrec("data", "validate", "--data-dir", str(out))
    assert result.returncode == 1
    message = " ".join(result.stderr.split())
    assert "transactions_train.csv" in message and "sales_channel_id" in message
    assert "row 3" in message and "'3'" in message


def test_missing_data_dir_is_a_clean_error(tmp_path):
    result = hmrec("run", "--home", str(tmp_path / "home"), "--data-dir", str(tmp_path / "nowhere"))
    assert result.returncode == 1
    assert "missing raw file" in result.stderr
    assert "Traceback" not in result.stderr


def test_home_from_environment(tmp_path):
    home = tmp_path / "envhome"
    result = hmrec("data", "generate", "--customers", "30", env={"HMREC_HOME": str(home)})
    assert result.returncode == 0, result.stderr
    assert (home / "data" / "customers.csv").exists()


def test_a_users_data_dir_is_used_whole_unless_a_size_is_chosen(tmp_path, monkeypatch):
    """`hmrec run --data-dir DIR` on someone's Kaggle files must not sample 1,000 customers."""
    from hmrec.cli import make_settings
    from hmrec.config import CustomerDataSize

    monkeypatch.delenv("CUSTOMER_DATA_SIZE", raising=False)
    monkeypatch.delenv("HMREC_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env here
    assert make_settings(tmp_path / "h").CUSTOMER_DATA_SIZE is CustomerDataSize.SMALL  # generated data
    assert make_settings(tmp_path / "h", tmp_path / "kaggle").CUSTOMER_DATA_SIZE is CustomerDataSize.FULL
    chosen = make_settings(tmp_path / "h", tmp_path / "kaggle", CUSTOMER_DATA_SIZE=CustomerDataSize.MEDIUM)
    assert chosen.CUSTOMER_DATA_SIZE is CustomerDataSize.MEDIUM
    monkeypatch.setenv("CUSTOMER_DATA_SIZE", "LARGE")
    assert make_settings(tmp_path / "h", tmp_path / "kaggle").CUSTOMER_DATA_SIZE is CustomerDataSize.LARGE


def test_a_bad_setting_names_itself_and_its_value(tmp_path):
    result = hmrec("train", "retrieval", "--home", str(tmp_path / "home"),
                   env={"TWO_TOWER_EARLY_STOPPING_PATIENCE": "three"})
    assert result.returncode == 1
    message = " ".join(result.stderr.split())
    assert "TWO_TOWER_EARLY_STOPPING_PATIENCE='three'" in message and "integer" in message
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("word", ["none", "None", "null", ""])
def test_none_words_unset_optional_settings_only(monkeypatch, word):
    from hmrec.config import Settings

    monkeypatch.setenv("TWO_TOWER_EARLY_STOPPING_PATIENCE", word)
    monkeypatch.setenv("FILTER_POLICY", "none")  # a string setting keeps the word
    s = Settings()
    assert s.TWO_TOWER_EARLY_STOPPING_PATIENCE is None
    assert s.FILTER_POLICY == "none"
