"""Load test of the HTTP service: steady tail latency, reads only and under writes.

Usage:
    apt-get install -y wrk                       # the load generator (C; required)
    python benchmarks/bench_serving.py           # MEDIUM home under /tmp (trained if missing)
    python benchmarks/bench_serving.py --runs 5 --duration 10 --workers 1,2 --mixes reads,mixed --profile

What it does:
1. Makes sure a trained home exists (data, features, two-tower, CatBoost, registry) at
   the requested size; MEDIUM = 5,000 customers.
2. For each worker count and each mix, starts the service (hmrec.serving.api.serve) in
   its own process on a free loopback port, on a fresh copy of the home's store and
   registry database (so every server starts with an empty events log), and waits for
   every worker's /health to say 200.
3. A warm-up, then `--runs` consecutive runs of `wrk` for `--duration` seconds each over
   `--clients` keep-alive connections. Every run is reported, not the best one:
   requests/s, p50/p90/p99/max latency, errors, the server's CPU per request, the load
   average when the run started and (one worker) the full garbage collections the
   server ran during it (from /health).
   Mixes: ``reads``: GET /recommendations/{random stored customer}?k=12;
   ``mixed``: the same, but one request in `--event-every` (default 5) is a POST /events,
   half purchases, half clicks, of a random stored customer and catalogue article, each
   with a new event id.
4. With --profile, py-spy samples the one-worker server during one more run of each mix
   and the samples are summarised: where a request's time goes.
Targets (per run, 16 connections): p99 <= 50 ms; >= 600 req/s with one worker, >= 1,000
with two. Figures are printed and written to benchmarks/results/serving.json through
benchmarks/machine.py (commit, CPU model, load and a yardstick before and after).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import Run, describe, write_result  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_P99_MS = 50.0
TARGET_RPS = {1: 600.0, 2: 1000.0}
TOKEN = "bench-token-0123456789"
MIXES = ("reads", "mixed")

#: wrk script. Arguments: customers file, articles file, seed, one event in `every` requests
#: (0: reads only), token, event id prefix, file prefix for acknowledged events ("": none),
#: one event in `retry_every` repeats the thread's previous event (0: never).
WRK_SCRIPT = r"""
local ids, arts = {}, {}
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
end
function init(args)
  for line in io.lines(args[1]) do ids[#ids + 1] = line end
  for line in io.lines(args[2]) do arts[#arts + 1] = line end
  math.randomseed(tonumber(args[3]) * 1000 + (tid or 0))
  every = tonumber(args[4])
  token = args[5]
  tag = args[6]
  if args[7] ~= "" then ack = io.open(args[7] .. "." .. tostring(tid), "a") end
  retry_every = tonumber(args[8])
  n, sent, last_body = 0, 0, nil
  headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}
end
function request()
  n = n + 1
  if every > 0 and n % every == 0 then
    sent = sent + 1
    local body
    if retry_every > 0 and last_body ~= nil and sent % retry_every == 0 then
      body = last_body
    else
      local kind = (sent % 2 == 0) and "purchase" or "click"
      body = string.format('{"type":"%s","customer_id":"%s","article_id":"%s","event_id":"%s-%d-%d"}',
                           kind, ids[math.random(#ids)], arts[math.random(#arts)], tag, tid, sent)
      last_body = body
    end
    return wrk.format("POST", "/events", headers, body)
  end
  return wrk.format("GET", "/recommendations/" .. ids[math.random(#ids)] .. "?k=12")
end
function response(status, headers, body)
  if ack ~= nil and status == 200 and string.sub(body, 1, 11) == '{"event_id"' then
    ack:write(body, "\n")
    ack:flush()
  end
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50": %d, "p90": %d, "p99": %d, "max": %d, "mean": %f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
"""


# ---------------------------------------------------------------------------- setup
def ensure_home(home: Path, size: str) -> dict:
    """Train a home of `size` unless one with registered champions exists."""
    from hmrec.config import Settings
    from hmrec.registry import ModelRegistry, RegistryError

    settings = Settings(HOME_DIR=home, CUSTOMER_DATA_SIZE=size)
    try:
        if (home / "mlflow.db").exists():
            ModelRegistry.from_settings(settings).get_version("ranking_model", alias="champion")
            return {"trained_now": False}
    except RegistryError:
        pass
    from hmrec.pipelines.data import run_data_step
    from hmrec.pipelines.features import run_feature_pipeline
    from hmrec.pipelines.train import train_ranking_stage, train_retrieval_stage

    t0 = time.perf_counter()
    print(f"training a {size} home in {home} (data, features, two-tower, ranking) ...", flush=True)
    run_data_step(settings)
    run_feature_pipeline(settings)
    train_retrieval_stage(settings)
    train_ranking_stage(settings)
    return {"trained_now": True, "train_seconds": round(time.perf_counter() - t0, 1)}


def home_facts(home: Path) -> tuple[list[str], list[str], dict]:
    """Stored customer ids, catalogue article ids, and the home's sizes."""
    from hmrec.features import groups
    from hmrec.store import FeatureStore

    fs = FeatureStore(home / "store")
    customers = fs.get_feature_group(groups.CUSTOMERS.name).read(["customer_id"])["customer_id"].to_list()
    articles = fs.get_feature_group(groups.ARTICLES.name).read(["article_id"])["article_id"].to_list()
    facts = {"customers": len(customers), "articles": len(articles),
             "transactions": fs.get_feature_group(groups.TRANSACTIONS.name).count()}
    return customers, articles, facts


def fresh_home(home: Path, into: Path) -> Path:
    """A copy of the store and the registry database (artifacts stay where the database
    points): the server's events log starts empty and the trained home is never written."""
    shutil.rmtree(into, ignore_errors=True)
    into.mkdir(parents=True)
    shutil.copytree(home / "store", into / "store", ignore=shutil.ignore_patterns("events"))
    shutil.copy2(home / "mlflow.db", into / "mlflow.db")
    return into


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(home: Path, port: int, workers: int, timeout_s: float = 600.0) -> tuple[subprocess.Popen, float]:
    """The service in its own process; returns once every worker answers /health 200."""
    code = ("from hmrec.config import Settings; from hmrec.serving.api import serve\n"
            "if __name__ == '__main__':\n"
            f"    serve(Settings(HOME_DIR={str(home)!r}, API_TOKEN={TOKEN!r}), host='127.0.0.1', port={port}, "
            f"workers={workers})")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    url = f"http://127.0.0.1:{port}"
    ready = 0
    deadline = time.monotonic() + timeout_s
    while ready < 4 * workers:  # every worker answers /health 200 (requests land on any of them)
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read() if proc.stderr else ''}")
        if time.monotonic() > deadline:
            proc.kill()
            raise TimeoutError(f"{url}/health not 200 from every worker within {timeout_s:.0f} s")
        try:
            ok = httpx.get(f"{url}/health", timeout=5).status_code == 200
        except httpx.TransportError:
            ok = False
        ready = ready + 1 if ok else 0
        time.sleep(0.05 if ok else 0.2)
    return proc, time.perf_counter() - t0


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def server_processes(proc: subprocess.Popen) -> list[psutil.Process]:
    """The serving processes: the server itself, or its workers when it has some."""
    parent = psutil.Process(proc.pid)
    return [parent, *parent.children(recursive=True)]


def machine_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy (every process, kernel included)."""
    t = psutil.cpu_times()
    return sum(getattr(t, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq", "steal"))


def client_cpu_seconds() -> float:
    """CPU seconds of this process's finished children: the wrk runs."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def per_process_cpu(procs: list[psutil.Process]) -> list[float]:
    out = []
    for p in procs:
        try:
            t = p.cpu_times()
            out.append(t.user + t.system)
        except psutil.NoSuchProcess:
            out.append(0.0)
    return out


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def health(url: str) -> dict:
    return httpx.get(f"{url}/health", timeout=10).json()


# ---------------------------------------------------------------------------- load generator
class Wrk:
    """wrk with WRK_SCRIPT, for one server: files for ids and the script in `work`."""

    def __init__(self, work: Path, customers: list[str], articles: list[str], seed: int, threads: int = 1) -> None:
        if shutil.which("wrk") is None:
            raise SystemExit("wrk is required: apt-get install -y wrk")
        self.ids = work / "customers.txt"
        self.ids.write_text("\n".join(customers) + "\n")
        self.arts = work / "articles.txt"
        self.arts.write_text("\n".join(articles) + "\n")
        self.script = work / "bench.lua"
        self.script.write_text(WRK_SCRIPT)
        self.seed = seed
        self.threads = threads
        self.calls = 0

    def run(self, url: str, clients: int, seconds: float, event_every: int = 0, acks: Path | None = None,
            retry_every: int = 0, tag: str = "ev") -> dict:
        """One wrk run; event ids are `tag`-<thread>-<n> (unique per call: tag gets the call number)."""
        self.calls += 1
        out = subprocess.run(
            ["wrk", "-t", str(min(self.threads, clients)), "-c", str(clients), "-d", f"{max(1, round(seconds))}s",
             "--timeout", "10s", "-s", str(self.script), url, "--", str(self.ids), str(self.arts),
             str(self.seed + self.calls), str(event_every), TOKEN, f"{tag}{self.calls}",
             "" if acks is None else str(acks), str(retry_every)],
            capture_output=True, text=True, timeout=seconds + 120)
        if out.returncode != 0:
            raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr.strip()}")
        line = next(ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON "))
        raw = json.loads(line[len("WRKJSON "):])
        errors = raw["connect"] + raw["read"] + raw["write"] + raw["status"] + raw["timeout"]
        secs = raw["duration_us"] / 1e6
        return {"requests": raw["requests"], "seconds": round(secs, 2), "rps": round(raw["requests"] / secs, 1),
                "p50_ms": raw["p50"] / 1000, "p90_ms": raw["p90"] / 1000, "p99_ms": raw["p99"] / 1000,
                "max_ms": raw["max"] / 1000, "mean_ms": round(raw["mean"] / 1000, 3), "errors": errors,
                "error_kinds": {k: raw[k] for k in ("connect", "read", "write", "status", "timeout") if raw[k]}}


# ---------------------------------------------------------------------------- profile
#: Parts of the request path, recognised by a frame in a sampled stack (inclusive time).
PROFILE_PARTS = [
    ("recommend (all 4 stages)", "recommend_many (hmrec/serving/recommender.py"),
    ("  stage 1: retrieval (FAISS + popular)", "__call__ (hmrec/retrieval/candidates.py"),
    ("    FAISS search", "search (faiss/"),
    ("  stage 2: filter", "_filter_one (hmrec/serving/recommender.py"),
    ("  two-tower pair scores", "score_pairs (hmrec/retrieval/candidates.py"),
    ("  ranking features (NumPy)", "features_many (hmrec/serving/lookups.py"),
    ("  catboost Pool (inputs)", "Pool.__init__ (catboost/core.py"),
    ("  catboost predict", "_base_predict"),
    ("  stage 4: order + padding", "_ordered (hmrec/serving/recommender.py"),
    ("recommendation handler after the batch (JSON body)", "recommendations (hmrec/serving/api.py"),
    ("POST /events (log append + apply)", "record (hmrec/serving/api.py"),
    ("  events log append (write + fdatasync)", "append (hmrec/store/events_log.py"),
    ("  apply a purchase (recommender.add_purchases)", "add_purchases (hmrec/serving/recommender.py"),
    ("  online store upsert", "_update_online (hmrec/serving/api.py"),
    ("catch_up (other workers' events, reload check)", "catch_up (hmrec/serving/api.py"),
    ("JSON response rendering", "render (starlette/responses.py"),
    ("request validation (FastAPI)", "solve_dependencies (fastapi/dependencies/utils.py"),
]


def summarise_profile(raw: Path, top: int = 20) -> dict:
    """py-spy's collapsed stacks -> share of samples per part of the request path
    (inclusive) and per leaf function (self time)."""
    leaf: Counter = Counter()
    parts: Counter = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        leaf[stack.split(";")[-1]] += n
        for name, marker in PROFILE_PARTS:
            if marker in stack:
                parts[name] += n
    if not total:
        return {}
    # what is not in a named part: uvicorn/h11 parsing, routing, asyncio, the middleware
    named = parts["recommend (all 4 stages)"] + parts["POST /events (log append + apply)"] + parts[
        "recommendation handler after the batch (JSON body)"] + parts["catch_up (other workers' events, reload check)"]
    return {
        "samples": total,
        "inclusive_share": {name: round(parts[name] / total, 3) for name, _ in PROFILE_PARTS if parts[name]},
        "rest (HTTP stack: uvicorn, h11, routing, asyncio)": round(max(total - named, 0) / total, 3),
        "self_share_top": {k: round(v / total, 3) for k, v in leaf.most_common(top)},
    }


def py_spy() -> str | None:
    for candidate in (shutil.which("py-spy"), str(Path(sys.executable).parent / "py-spy")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def profile(pid: int, url: str, wrk: Wrk, clients: int, seconds: float, event_every: int, out: Path) -> dict | None:
    """One more run at `clients` while py-spy samples the server (200 Hz)."""
    spy = py_spy()
    if spy is None:
        print("py-spy not found (pip install py-spy): no profile")
        return None
    raw = out / f"serving_profile_{pid}.txt"
    rec = subprocess.Popen([spy, "record", "--pid", str(pid), "--duration", str(int(seconds) + 2), "--rate", "200",
                            "--format", "raw", "--output", str(raw), "--nonblocking"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    load = wrk.run(url, clients, seconds, event_every=event_every, tag="prof")
    try:
        rec.wait(timeout=seconds + 60)
    except subprocess.TimeoutExpired:
        rec.kill()
    if not raw.exists():
        print(f"py-spy failed: {rec.stderr.read() if rec.stderr else ''}")
        return None
    return {"load": load, **summarise_profile(raw)}


# ---------------------------------------------------------------------------- main
def measure(args: argparse.Namespace, home: Path, wrk: Wrk, workers: int, mix: str, work: Path) -> dict:
    """A fresh server, a warm-up, then args.runs runs of args.duration seconds: every run."""
    event_every = args.event_every if mix == "mixed" else 0
    served = fresh_home(home, work / f"home_{mix}_{workers}")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc, ready_s = start_server(served, port, workers)
    procs = server_processes(proc)
    print(f"{mix}, {workers} worker(s): ready in {ready_s:.1f} s; load average {os.getloadavg()[0]:.2f}", flush=True)
    runs, prof = [], None
    try:
        wrk.run(url, args.clients, args.warmup, event_every=event_every, tag="warm")
        for i in range(args.runs):
            h0 = health(url)
            per0, client0, machine0 = per_process_cpu(procs), client_cpu_seconds(), machine_cpu_seconds()
            la = os.getloadavg()
            res = wrk.run(url, args.clients, args.duration, event_every=event_every, tag=f"r{i}-")
            per = [b - a for a, b in zip(per0, per_process_cpu(procs))]
            client, machine = client_cpu_seconds() - client0, machine_cpu_seconds() - machine0
            cpu = sum(per)
            h1 = health(url)
            secs = res["seconds"]
            res.update(run=i + 1, server_cpu_ms_per_request=round(cpu / max(res["requests"], 1) * 1000, 3),
                       server_cpu_cores=round(cpu / secs, 2),
                       # one figure per serving process (with workers: the supervisor first)
                       server_cpu_cores_per_process=[round(x / secs, 2) for x in per],
                       client_cpu_cores=round(client / secs, 2),
                       # busy cores of the whole machine minus server and wrk: other people's work
                       other_cpu_cores=round(max(machine - cpu - client, 0.0) / secs, 2),
                       load_average=[round(x, 2) for x in la])
            if workers == 1:  # /health reaches the one worker: exact
                n = h1["batches"] - h0["batches"]
                res["mean_batch_size"] = round((h1["batched_requests"] - h0["batched_requests"]) / n, 2) if n else None
                if "gc" in h1 and "gc" in h0:
                    res["full_gc"] = h1["gc"]["full_collections"] - h0["gc"]["full_collections"]
                    res["full_gc_pause_ms"] = round(h1["gc"]["full_pause_ms_total"] - h0["gc"]["full_pause_ms_total"], 1)
            res["meets_targets"] = (res["p99_ms"] <= TARGET_P99_MS and res["rps"] >= TARGET_RPS.get(workers, 0)
                                    and res["errors"] == 0)
            runs.append(res)
            print(f"  run {i + 1}: {res['rps']:>7.1f} req/s  p50 {res['p50_ms']:.1f} ms  p90 {res['p90_ms']:.1f} ms  "
                  f"p99 {res['p99_ms']:.1f} ms  max {res['max_ms']:.1f} ms  errors {res['errors']}  "
                  f"cpu {res['server_cpu_ms_per_request']:.2f} ms/req, cores: server "
                  f"{res['server_cpu_cores_per_process']} wrk {res['client_cpu_cores']} others "
                  f"{res['other_cpu_cores']}  batch ~{res.get('mean_batch_size')}  "
                  f"full gc {res.get('full_gc')}  (load {la[0]:.2f})", flush=True)
        if args.profile and workers == 1:
            prof = profile(proc.pid, url, wrk, args.clients, args.duration, event_every, work)
        rss_mb = sum(p.memory_info().rss for p in procs if p.is_running()) / 2**20
        events = health(url).get("events_logged")
    finally:
        stop_server(proc)
    return {"mix": mix, "workers": workers, "server_ready_s": round(ready_s, 1), "server_rss_mb": round(rss_mb, 1),
            "events_logged_at_end": events, "runs": runs,
            "all_runs_meet_targets": all(r["meets_targets"] for r in runs), "profile": prof}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, default=Path(tempfile.gettempdir()) / "hmrec_bench_serving_MEDIUM")
    ap.add_argument("--size", default="MEDIUM")
    ap.add_argument("--runs", type=int, default=5, help="consecutive runs per (workers, mix); every one reported")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--clients", type=int, default=16, help="keep-alive connections")
    ap.add_argument("--workers", default="1,2", help="server worker processes to try, e.g. 1,2")
    ap.add_argument("--mixes", default="reads,mixed", help=f"comma-separated of {MIXES}")
    ap.add_argument("--event-every", type=int, default=5, help="mixed: one POST /events in this many requests")
    ap.add_argument("--wrk-threads", type=int, default=1)
    ap.add_argument("--profile", action="store_true", help="sample the 1-worker server with py-spy, each mix")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", type=Path, default=RESULTS / "serving.json")
    args = ap.parse_args()
    mixes = [m for m in args.mixes.split(",") if m]
    if unknown := [m for m in mixes if m not in MIXES]:
        raise SystemExit(f"unknown mix {unknown}; choose from {MIXES}")

    prepared = ensure_home(args.home, args.size)
    customers, articles, facts = home_facts(args.home)
    work = Path(tempfile.mkdtemp(prefix="bench_serving_"))
    wrk = Wrk(work, customers, articles, args.seed, threads=args.wrk_threads)
    results = []
    try:
        with Run() as run:
            for workers in [int(w) for w in args.workers.split(",")]:
                for mix in mixes:
                    results.append(measure(args, args.home, wrk, workers, mix, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    payload = {
        "benchmark": "serving",
        "size": args.size,
        "home": str(args.home),
        "data": facts,
        "prepared": prepared,
        "client": f"wrk -t {args.wrk_threads} -c {args.clients} (keep-alive), {args.runs} consecutive runs of "
                  f"{args.duration:g} s after a {args.warmup:g} s warm-up; every run reported",
        "requests": {"reads": "GET /recommendations/{random stored customer}?k=12",
                     "mixed": f"as reads, but 1 request in {args.event_every} is POST /events (half purchases, "
                              "half clicks; random stored customer and catalogue article; a new event id each)"},
        "targets": {"p99_ms": TARGET_P99_MS, "rps": {f"{w} worker(s)": r for w, r in TARGET_RPS.items()}},
        "results": results,
    }
    for r in results:
        if r["profile"]:
            print(f"profile, {r['mix']}, 1 worker (share of server samples):")
            for k, v in r["profile"].get("inclusive_share", {}).items():
                print(f"  {v:6.1%}  {k}")
    write_result(args.out, payload, run)
    print(describe(run))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
