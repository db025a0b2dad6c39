"""Atomic writes: success replaces, failure leaves the previous version as it was."""

from __future__ import annotations

import json

import pytest

from hmrec.store.atomic import replaced_folder, write_json


def test_write_json_replaces_and_leaves_no_temporary_files(tmp_path):
    target = tmp_path / "reports" / "step.json"
    write_json(target, {"a": 1})
    write_json(target, {"a": 2, "when": tmp_path})  # non-JSON values are written as strings
    assert json.loads(target.read_text()) == {"a": 2, "when": str(tmp_path)}
    assert [p.name for p in target.parent.iterdir()] == ["step.json"]


def test_write_json_failure_keeps_the_old_file(tmp_path):
    target = tmp_path / "step.json"
    write_json(target, {"a": 1})
    with pytest.raises(ValueError):
        write_json(target, {"a": 2, "b": Circular()})
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["step.json"]


class Circular:
    def __str__(self) -> str:  # default=str is called on it; make that fail like a broken payload
        raise ValueError("cannot serialise")


def test_replaced_folder_swaps_only_on_success(tmp_path):
    target = tmp_path / "model"
    with replaced_folder(target) as tmp:
        (tmp / "weights").write_text("v1")
    with pytest.raises(RuntimeError):
        with replaced_folder(target) as tmp:
            (tmp / "weights").write_text("half-written v2")
            raise RuntimeError("crash mid-write")
    assert (target / "weights").read_text() == "v1"
    with replaced_folder(target) as tmp:
        (tmp / "weights").write_text("v2")
    assert (target / "weights").read_text() == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
