"""The events log: durable appends, replay, torn tails, duplicates, several writers, hand-over."""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import sys

import polars as pl
import pytest

from hmrec.serving.events import (
    EventLog,
    EventLogError,
    mark_ingested,
    pending_events,
    purchases_frame,
    read_events,
)

C1, C2 = "a" * 64, "b" * 64
DAY = dt.date(2020, 9, 22)


def test_append_then_read_back_in_order(tmp_path):
    log = EventLog(tmp_path)
    first, _ = log.append("purchase", C1, "0108775015", DAY, price=0.025, sales_channel_id=2)
    second, _ = log.append("click", C2, "0108775044", DAY, event_id="ev-2")
    assert (first.seq, second.seq) == (1, 2)
    assert second.event_id == "ev-2" and len(first.event_id) == 32
    events = read_events(tmp_path)  # a separate reader, with no close() of the writer
    assert [(e.seq, e.type, e.customer_id, e.article_id, e.t_dat) for e in events] == [
        (1, "purchase", C1, "0108775015", DAY), (2, "click", C2, "0108775044", DAY)]
    assert events[0].price == pytest.approx(0.025) and events[0].sales_channel_id == 2
    assert (tmp_path / "events" / "events.jsonl").read_bytes().count(b"\n") == 2


def test_reopened_log_continues_the_sequence_and_remembers_ids(tmp_path):
    EventLog(tmp_path).append("purchase", C1, "0108775015", DAY, event_id="x")
    again = EventLog(tmp_path)
    assert [e.seq for e in again.open()] == [1]
    written, _ = again.append("purchase", C1, "0108775015", DAY, event_id="x")
    assert written is None  # a retry of an accepted event writes nothing
    nxt, _ = again.append("purchase", C2, "0108775015", DAY)
    assert nxt.seq == 2 and len(read_events(tmp_path)) == 2


def test_torn_last_line_is_cut_on_open(tmp_path):
    log = EventLog(tmp_path)
    log.append("purchase", C1, "0108775015", DAY)
    path = tmp_path / "events" / "events.jsonl"
    with open(path, "ab") as f:
        f.write(b'{"seq":2,"event_id":"half","ty')  # a write cut short: never acknowledged
    assert [e.seq for e in read_events(tmp_path)] == [1]  # readers skip it
    fresh = EventLog(tmp_path)
    assert [e.seq for e in fresh.open()] == [1]
    assert path.read_bytes().endswith(b"}\n")  # cut
    nxt, _ = fresh.append("purchase", C2, "0108775015", DAY)
    assert nxt.seq == 2 and [e.customer_id for e in read_events(tmp_path)] == [C1, C2]


def test_a_corrupt_line_is_an_error_naming_file_and_line(tmp_path):
    log = EventLog(tmp_path)
    log.append("purchase", C1, "0108775015", DAY)
    path = tmp_path / "events" / "events.jsonl"
    with open(path, "ab") as f:
        f.write(b"not json\n")
    with pytest.raises(EventLogError, match=r"events\.jsonl, line 2: unreadable event b'not json"):
        EventLog(tmp_path).open()
    with pytest.raises(EventLogError, match="line 2"):
        read_events(tmp_path)


def test_two_writers_share_one_sequence(tmp_path):
    a, b = EventLog(tmp_path), EventLog(tmp_path)
    a.open(), b.open()
    e1, _ = a.append("purchase", C1, "0108775015", DAY)
    e2, seen = b.append("purchase", C2, "0108775015", DAY)
    assert (e1.seq, e2.seq) == (1, 2)
    assert [e.seq for e in seen] == [1]  # b learnt a's event before writing its own
    assert [e.seq for e in a.catch_up()] == [2]
    assert a.catch_up() == []


def test_an_acknowledged_event_survives_kill_9(tmp_path):
    """The writer prints its ack after append() returns, then is killed without any cleanup."""
    code = (
        "import datetime as dt, sys, time; from hmrec.serving.events import EventLog; "
        f"log = EventLog({str(tmp_path)!r}); "
        f"ev, _ = log.append('purchase', {C1!r}, '0108775015', dt.date(2020, 9, 22)); "
        "print(ev.seq, flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    ack = proc.stdout.readline().strip()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ack == "1" and proc.returncode == -signal.SIGKILL
    assert [(e.seq, e.customer_id) for e in EventLog(tmp_path).open()] == [(1, C1)]


def test_pending_and_mark_ingested(tmp_path):
    log = EventLog(tmp_path)
    for c in (C1, C2, C1):
        log.append("purchase", c, "0108775015", DAY)
    assert [e.seq for e in pending_events(tmp_path)] == [1, 2, 3]
    mark_ingested(tmp_path, 2)
    assert [e.seq for e in pending_events(tmp_path)] == [3]
    assert log.ingested_seq() == 2
    with pytest.raises(ValueError, match="cannot go back"):
        mark_ingested(tmp_path, 1)
    assert not list((tmp_path / "events").glob(".*tmp"))


def test_purchases_frame_has_the_raw_transaction_columns(tmp_path):
    log = EventLog(tmp_path)
    log.append("purchase", C1, "0108775015", DAY, price=0.5, sales_channel_id=1)
    log.append("click", C1, "0108775044", DAY)
    log.append("purchase", C2, "0108775044", DAY)
    frame = purchases_frame(read_events(tmp_path))
    assert frame.columns[:5] == ["t_dat", "customer_id", "article_id", "price", "sales_channel_id"]
    assert frame.schema["t_dat"] == pl.Date and frame.schema["sales_channel_id"] == pl.Int8
    assert frame["customer_id"].to_list() == [C1, C2]  # clicks are not purchases
    assert frame["price"].to_list()[1] is None
    assert purchases_frame([]).height == 0


def test_unknown_event_type_is_refused_before_writing(tmp_path):
    log = EventLog(tmp_path)
    with pytest.raises(ValueError, match="event type must be one of"):
        log.append("refund", C1, "0108775015", DAY)
    assert read_events(tmp_path) == []


def test_a_repeated_id_is_answered_from_memory_and_the_index_survives_a_reopen(tmp_path):
    """The reply to a retry comes from the in-memory index (the log's read counter does not
    move); a new EventLog on the same file (a restart) rebuilds it with one read."""
    log = EventLog(tmp_path)
    log.open()
    for i in range(2000):
        log.append("click" if i % 2 else "purchase", C1 if i % 3 else C2, "0108775015", DAY, event_id=f"id-{i}")
    reads = log.reads
    written, others = log.append("click", C1, "0108775015", DAY, event_id="id-17")
    assert written is None and others == []
    found = log.find("id-17")
    assert (found.seq, found.type, found.customer_id, found.event_id) == (18, "click", C1, "id-17")
    assert log.reads == reads  # nothing was read to answer it
    assert log.find("never-sent") is None
    again = EventLog(tmp_path)
    assert len(again.open()) == 2000 and again.reads == 1
    assert again.find("id-17") == found and again.last_seq == 2000
    assert again.append("click", C1, "0108775015", DAY, event_id="id-1999")[0] is None
    assert [e.event_id for e in again.read_known()] == [f"id-{i}" for i in range(2000)]
