"""Soak test of the HTTP service: a mixed load for minutes, measured minute by minute.

Usage:
    apt-get install -y wrk
    python benchmarks/bench_soak.py                    # 10 minutes, MEDIUM home under /tmp
    python benchmarks/bench_soak.py --minutes 1 --prefill 100000

What it does:
1. A fresh copy of the trained home (bench_serving.ensure_home / fresh_home); with
   --prefill N, N click events (unique ids) are written to its events log first, so
   the duplicate-reply time is measured with at least N events behind it.
2. Starts the service (--workers, default 1) and drives it with wrk over --clients
   keep-alive connections, one wrk run per minute: GET /recommendations for random
   stored customers, and one request in --event-every a POST /events (half purchases,
   half clicks); one event in --retry-every repeats the connection thread's previous
   event (a client's retry: same id, same body). wrk writes every acknowledged event
   reply (200) to a file.
3. Per minute: requests/s, p50/p99/max latency and errors; after it (no load), the
   time of a retried event id's reply over 50 POSTs; resident memory of the server
   processes every 5 s throughout.
4. At the end (server stopped): every acknowledged event id is in the log exactly once,
   with the seq its reply named, and no id is in the log twice.
Results are written to benchmarks/results/serving_soak.json through machine.py.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serving import (  # noqa: E402
    TOKEN,
    Wrk,
    client_cpu_seconds,
    cpu_seconds,
    ensure_home,
    free_port,
    fresh_home,
    health,
    home_facts,
    machine_cpu_seconds,
    server_processes,
    start_server,
    stop_server,
)
from machine import Run, describe, write_result  # noqa: E402

from hmrec.serving.events import LOG_FILE, Event, events_dir, read_events  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def prefill(home: Path, n: int, customers: list[str], articles: list[str], day: dt.date) -> None:
    """Write n click events (seq 1..n, ids 'pre-<i>') to the home's events log, one fsync."""
    directory = events_dir(home / "store")
    directory.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
    with open(directory / LOG_FILE, "wb") as f:
        for i in range(n):
            ev = Event(seq=i + 1, event_id=f"pre-{i}", type="click", customer_id=customers[i % len(customers)],
                       article_id=articles[(7 * i) % len(articles)], t_dat=day, received_at=stamp)
            f.write(ev.to_line())
        f.flush()
        os.fsync(f.fileno())


class RssSampler(threading.Thread):
    """Resident memory (MB) of the server processes every `every_s` seconds."""

    def __init__(self, procs, every_s: float = 5.0) -> None:
        super().__init__(daemon=True)
        self.procs, self.every_s = procs, every_s
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()
        self.t0 = time.monotonic()

    def run(self) -> None:
        while not self.stop.is_set():
            rss = 0
            for p in self.procs:
                try:
                    rss += p.memory_info().rss
                except Exception:  # noqa: BLE001 - a process that went away counts nothing
                    pass
            self.samples.append((round(time.monotonic() - self.t0, 1), round(rss / 2**20, 1)))
            self.stop.wait(self.every_s)


def acknowledged(prefix: Path) -> list[dict]:
    """Every event reply wrk saw with status 200 (one JSON object per line, per thread)."""
    out = []
    for path in sorted(prefix.parent.glob(prefix.name + ".*")):
        for line in path.read_text().splitlines():
            if line.strip():
                out.append(json.loads(line))
    return out


def duplicate_reply_ms(url: str, reply: dict, times: int = 50) -> dict:
    """Repeat an acknowledged event (its id and fields) `times` times: latency of the
    duplicate reply, and whether each reply named the first one's seq."""
    body = {"type": reply["type"], "customer_id": reply["customer_id"], "article_id": reply["article_id"],
            "t_dat": reply["t_dat"], "event_id": reply["event_id"]}
    lat, ok = [], True
    with httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        for _ in range(times):
            t = time.perf_counter()
            r = client.post("/events", json=body)
            lat.append((time.perf_counter() - t) * 1000)
            got = r.json()
            ok = ok and r.status_code == 200 and got["duplicate"] is True and got["seq"] == reply["seq"]
    lat.sort()
    return {"median_ms": round(statistics.median(lat), 3), "p99_ms": round(lat[int(0.99 * (len(lat) - 1))], 3),
            "max_ms": round(lat[-1], 3), "replies_correct": ok}


def verify(store: Path, acks: list[dict]) -> dict:
    """Every acknowledged event in the log exactly once, with the seq its reply named."""
    logged = read_events(store)
    ids = Counter(e.event_id for e in logged)
    seq_of = {e.event_id: e.seq for e in logged}
    acked = {}
    for a in acks:
        acked.setdefault(a["event_id"], set()).add(a["seq"])
    missing = [i for i in acked if ids[i] == 0]
    twice = [i for i, n in ids.items() if n > 1]
    wrong_seq = [i for i, seqs in acked.items() if ids[i] and seqs != {seq_of[i]}]
    return {"log_events": len(logged), "acknowledged_replies": len(acks),
            "acknowledged_duplicates": sum(1 for a in acks if a["duplicate"]), "acknowledged_ids": len(acked),
            "missing_from_log": len(missing), "ids_in_log_more_than_once": len(twice),
            "acknowledged_with_another_seq": len(wrong_seq),
            # the server logged them, but wrk stopped before reading the reply (in flight at a run's end)
            "logged_not_acknowledged": sum(1 for i in ids if i not in acked and not i.startswith("pre-")),
            "seqs_are_1_to_n": sorted(e.seq for e in logged) == list(range(1, len(logged) + 1)),
            "ok": not missing and not twice and not wrong_seq}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, default=Path(tempfile.gettempdir()) / "hmrec_bench_serving_MEDIUM")
    ap.add_argument("--size", default="MEDIUM")
    ap.add_argument("--minutes", type=float, default=10.0, help="length of the soak (one wrk run per minute)")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--event-every", type=int, default=5, help="one POST /events in this many requests")
    ap.add_argument("--retry-every", type=int, default=10, help="one event in this many repeats the previous one")
    ap.add_argument("--prefill", type=int, default=100_000, help="click events in the log before the start")
    ap.add_argument("--wrk-threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", type=Path, default=RESULTS / "serving_soak.json")
    args = ap.parse_args()

    prepared = ensure_home(args.home, args.size)
    customers, articles, facts = home_facts(args.home)
    work = Path(tempfile.mkdtemp(prefix="bench_soak_"))
    served = fresh_home(args.home, work / "home")
    if args.prefill:
        from hmrec.features import groups
        from hmrec.store import FeatureStore

        last = FeatureStore(served / "store").get_feature_group(groups.TRANSACTIONS.name).read(["t_dat"])["t_dat"].max()
        prefill(served, args.prefill, customers, articles, last)
    wrk = Wrk(work, customers, articles, args.seed, threads=args.wrk_threads)
    acks = work / "acks"
    minutes, rss = [], None
    with Run() as run:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc, ready_s = start_server(served, port, args.workers)
        sampler = RssSampler(server_processes(proc))
        sampler.start()
        print(f"ready in {ready_s:.1f} s with {args.prefill} events in the log; load {os.getloadavg()[0]:.2f}",
              flush=True)
        try:
            left = args.minutes * 60
            i = 0
            while left > 0.5:
                i += 1
                seconds = min(60.0, left)
                left -= seconds
                la = os.getloadavg()[0]
                procs = server_processes(proc)
                cpu0, client0, machine0 = cpu_seconds(procs), client_cpu_seconds(), machine_cpu_seconds()
                res = wrk.run(url, args.clients, seconds, event_every=args.event_every, acks=acks,
                              retry_every=args.retry_every, tag=f"soak{i}-")
                cpu, client = cpu_seconds(procs) - cpu0, client_cpu_seconds() - client0
                res.update(server_cpu_cores=round(cpu / res["seconds"], 2),
                           other_cpu_cores=round(max(machine_cpu_seconds() - machine0 - cpu - client, 0) / res["seconds"], 2))
                so_far = acknowledged(acks)
                h = health(url)
                dup = duplicate_reply_ms(url, so_far[0]) if so_far else None
                res.update(minute=i, load_average_1m=round(la, 2), events_logged=h.get("events_logged"),
                           rss_mb=sampler.samples[-1][1] if sampler.samples else None, duplicate_reply=dup)
                minutes.append(res)
                print(f"  minute {i}: {res['rps']:>7.1f} req/s  p50 {res['p50_ms']:.1f} ms  p99 {res['p99_ms']:.1f} ms  "
                      f"max {res['max_ms']:.1f} ms  errors {res['errors']}  rss {res['rss_mb']} MB  "
                      f"events {res['events_logged']}  duplicate reply {dup and dup['median_ms']} ms "
                      f"(load {la:.2f}; cores: server {res['server_cpu_cores']}, others {res['other_cpu_cores']})",
                      flush=True)
        finally:
            sampler.stop.set()
            stop_server(proc)
        rss = sampler.samples
        check = verify(served / "store", acknowledged(acks))
    print(f"log check: {check}")
    payload = {
        "benchmark": "serving_soak",
        "size": args.size,
        "data": facts,
        "prepared": prepared,
        "load": f"wrk -t {args.wrk_threads} -c {args.clients}; 1 request in {args.event_every} a POST /events "
                f"(half purchases, half clicks), 1 event in {args.retry_every} a retry of the previous one",
        "workers": args.workers,
        "prefilled_events": args.prefill,
        "server_ready_s": round(ready_s, 1),
        "minutes": minutes,
        "rss_mb_every_5s": rss,
        "log_check": check,
    }
    write_result(args.out, payload, run)
    shutil.rmtree(work, ignore_errors=True)
    print(describe(run))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
