"""Load test of the HTTP service: throughput and latency at 1, 16 and 64 concurrent clients.

Usage:
    apt-get install -y wrk                       # the load generator (C, ~no CPU of its own)
    python benchmarks/bench_serving.py           # MEDIUM home under /tmp (trained if missing)
    python benchmarks/bench_serving.py --home ~/.hmrec --duration 30 --profile

What it does:
1. Makes sure a trained home exists (data, features, two-tower, CatBoost, registry) at
   the requested size; MEDIUM = 5,000 customers.
2. Starts the service (hmrec.serving.api.serve) in its own process on a free loopback
   port and waits for /health to say 200 (the time this takes is reported).
3. For each concurrency: a short warm-up, then `wrk` (or, without wrk, an asyncio +
   httpx client in a separate process) requests GET /recommendations/{id}?k=12 for
   random stored customers for `--duration` seconds over keep-alive connections.
   Reported: requests/s, p50/p95/p99/max latency, errors (non-2xx, socket errors,
   timeouts), and the server's CPU seconds per request (psutil), which does not depend
   on what else the machine runs.
   The service answers concurrent requests in micro-batches (hmrec.serving.batching);
   the mean batch size per level is read from /health (exact with one worker).
4. With --profile, py-spy samples the server during one more run at 16 clients and the
   samples are summarised: where the request path spends its time.
Figures are printed and written to benchmarks/results/serving.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
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

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_P99_MS_AT_16 = 50.0
TARGET_RPS = 300.0

WRK_SCRIPT = r"""
local ids = {}
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
end
function init(args)
  for line in io.lines(args[1]) do ids[#ids + 1] = line end
  math.randomseed(tonumber(args[2]) * 1000 + (tid or 0))
end
function request()
  return wrk.format("GET", "/recommendations/" .. ids[math.random(#ids)] .. "?k=12")
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50": %d, "p90": %d, "p95": %d, "p99": %d, "max": %d, "mean": %f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(95), latency:percentile(99),
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


def home_facts(home: Path) -> tuple[list[str], dict]:
    from hmrec.features import groups
    from hmrec.store import FeatureStore

    fs = FeatureStore(home / "store")
    customers = fs.get_feature_group(groups.CUSTOMERS.name).read(["customer_id"])["customer_id"].to_list()
    facts = {"customers": len(customers), "articles": fs.get_feature_group(groups.ARTICLES.name).count(),
             "transactions": fs.get_feature_group(groups.TRANSACTIONS.name).count()}
    return customers, facts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(home: Path, port: int, workers: int) -> tuple[subprocess.Popen, float]:
    code = ("from hmrec.config import Settings; from hmrec.serving.api import serve\n"
            "if __name__ == '__main__':\n"
            f"    serve(Settings(HOME_DIR={str(home)!r}), host='127.0.0.1', port={port}, workers={workers})")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    url = f"http://127.0.0.1:{port}"
    ready = 0
    while ready < 4 * workers:  # every worker answers /health 200 (requests land on any of them)
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            ok = httpx.get(f"{url}/health", timeout=5).status_code == 200
        except httpx.TransportError:
            ok = False
        ready = ready + 1 if ok else 0
        time.sleep(0.05 if ok else 0.2)
    return proc, time.perf_counter() - t0


def server_processes(proc: subprocess.Popen) -> list[psutil.Process]:
    """The serving processes: the server itself, or its workers when it has some."""
    parent = psutil.Process(proc.pid)
    return [parent, *parent.children(recursive=True)]


def batch_counts(url: str) -> tuple[int, int]:
    """(batches, requests) the micro-batcher of the worker answering /health has run."""
    body = httpx.get(f"{url}/health", timeout=5).json()
    return body.get("batches", 0), body.get("batched_requests", 0)


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


# ---------------------------------------------------------------------------- load generators
def run_wrk(url: str, ids_file: Path, script: Path, clients: int, seconds: float, seed: int) -> dict:
    threads = max(1, min(2, clients))
    out = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(clients), "-d", f"{max(1, round(seconds))}s", "--timeout", "10s", "-s", str(script),
         url, "--", str(ids_file), str(seed)],
        capture_output=True, text=True, check=True)
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON "))
    raw = json.loads(line[len("WRKJSON "):])
    errors = raw["connect"] + raw["read"] + raw["write"] + raw["status"] + raw["timeout"]
    secs = raw["duration_us"] / 1e6
    return {"requests": raw["requests"], "seconds": round(secs, 2), "rps": round(raw["requests"] / secs, 1),
            "p50_ms": raw["p50"] / 1000, "p95_ms": raw["p95"] / 1000, "p99_ms": raw["p99"] / 1000,
            "max_ms": raw["max"] / 1000, "mean_ms": round(raw["mean"] / 1000, 3), "errors": errors,
            "error_kinds": {k: raw[k] for k in ("connect", "read", "write", "status", "timeout") if raw[k]}}


async def _httpx_load(url: str, ids: list[str], clients: int, seconds: float, seed: int) -> dict:
    rng = random.Random(seed)
    latencies: list[float] = []
    errors = Counter()
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=10) as client:
        async def worker() -> None:
            while time.perf_counter() < deadline:
                path = f"/recommendations/{rng.choice(ids)}?k=12"
                t = time.perf_counter()
                try:
                    r = await client.get(path)
                    if r.status_code != 200:
                        errors[f"status_{r.status_code}"] += 1
                except httpx.HTTPError as exc:
                    errors[type(exc).__name__] += 1
                    continue
                latencies.append(time.perf_counter() - t)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - start
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1000, 3)

    n = len(latencies)
    return {"requests": n, "seconds": round(elapsed, 2), "rps": round(n / elapsed, 1), "p50_ms": pct(50),
            "p95_ms": pct(95), "p99_ms": pct(99), "max_ms": round(latencies[-1] * 1000, 3),
            "mean_ms": round(sum(latencies) / n * 1000, 3), "errors": sum(errors.values()), "error_kinds": dict(errors)}


def run_httpx(url: str, ids_file: Path, clients: int, seconds: float, seed: int) -> dict:
    """The asyncio client in its own process (so it does not share the benchmark's GIL)."""
    code = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            "import bench_serving as b, asyncio; "
            f"ids = open({str(ids_file)!r}).read().split(); "
            f"print(json.dumps(asyncio.run(b._httpx_load({url!r}, ids, {clients}, {seconds}, {seed}))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------- profile
def summarise_profile(raw: Path, top: int = 15) -> dict:
    """py-spy's collapsed stacks -> share of samples per leaf function (self time) and
    per recognisable part of the request path (inclusive time)."""
    leaf: Counter = Counter()
    parts: Counter = Counter()
    total = 0
    markers = [
        ("catboost Pool (inputs)", "Pool.__init__ (catboost/core.py"),
        ("catboost predict", "_base_predict"),
        ("ranking features (lookups)", "features_many (hmrec/serving/lookups.py"),
        ("stage 1: retrieval stage call", "__call__ (hmrec/retrieval/candidates.py"),
        ("two-tower pair scores", "score_pairs (hmrec/retrieval/candidates.py"),
        ("filter (stage 2)", "_filter_one (hmrec/serving/recommender.py"),
        ("recommend (all 4 stages)", "recommend_many (hmrec/serving/recommender.py"),
        ("JSON response", "render (starlette/responses.py"),
        ("idle (waiting for requests)", "select (selectors.py"),
    ]
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        leaf[frames[-1]] += n
        for name, marker in markers:
            if marker in stack:
                parts[name] += n
    if not total:
        return {}
    # every request-handling stack sits inside uvicorn's h11 protocol and FastAPI's router,
    # so what is not the recommender is the HTTP stack (parsing, routing, validation, JSON)
    parts["HTTP stack: h11, FastAPI, JSON (all but recommend)"] = (
        total - parts["recommend (all 4 stages)"] - parts["idle (waiting for requests)"])
    return {
        "samples": total,
        "inclusive_share": {k: round(v / total, 3) for k, v in parts.most_common()},
        "self_share_top": {k: round(v / total, 3) for k, v in leaf.most_common(top)},
    }


def profile(pid: int, url: str, ids_file: Path, script: Path | None, seconds: float, seed: int,
            out: Path) -> dict | None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("py-spy not found (pip install py-spy): no profile")
        return None
    raw = out / "serving_profile.txt"
    rec = subprocess.Popen([spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "200",
                            "--format", "raw", "--output", str(raw), "--nonblocking"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    load = run_wrk(url, ids_file, script, 16, seconds - 2, seed) if script else run_httpx(url, ids_file, 16, seconds - 2, seed)
    rec.wait()
    if not raw.exists():
        print(f"py-spy failed: {rec.stderr.read() if rec.stderr else ''}")
        return None
    return {"load": load, **summarise_profile(raw)}


# ---------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, default=Path(tempfile.gettempdir()) / "hmrec_bench_serving_MEDIUM")
    ap.add_argument("--size", default="MEDIUM")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per concurrency level")
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--concurrency", default="1,16,64")
    ap.add_argument("--workers", default="1,2", help="server worker processes to try, e.g. 1,2")
    ap.add_argument("--client", choices=("auto", "wrk", "httpx"), default="auto")
    ap.add_argument("--profile", action="store_true", help="sample the server with py-spy at 16 clients")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", type=Path, default=RESULTS / "serving.json")
    args = ap.parse_args()

    prepared = ensure_home(args.home, args.size)
    customers, facts = home_facts(args.home)
    client = args.client if args.client != "auto" else ("wrk" if shutil.which("wrk") else "httpx")
    work = Path(tempfile.mkdtemp(prefix="bench_serving_"))
    ids_file = work / "customers.txt"
    ids_file.write_text("\n".join(customers) + "\n")
    script = None
    if client == "wrk":
        script = work / "bench.lua"
        script.write_text(WRK_SCRIPT)

    load_before = os.getloadavg()
    runs = []
    prof = None
    for workers in [int(w) for w in args.workers.split(",")]:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc, ready_s = start_server(args.home, port, workers)
        procs = server_processes(proc)
        print(f"service ({workers} worker(s)) ready in {ready_s:.1f} s ({facts}); load generator: {client}; "
              f"load average {os.getloadavg()[0]:.1f}", flush=True)

        def drive(clients: int, seconds: float, url: str = url) -> dict:
            if client == "wrk":
                return run_wrk(url, ids_file, script, clients, seconds, args.seed)
            return run_httpx(url, ids_file, clients, seconds, args.seed)

        levels = []
        try:
            for clients in [int(c) for c in args.concurrency.split(",")]:
                drive(clients, args.warmup)
                batches0 = batch_counts(url)
                cpu0 = cpu_seconds(procs)
                la = os.getloadavg()[0]
                res = drive(clients, args.duration)
                cpu = cpu_seconds(procs) - cpu0
                batches1 = batch_counts(url)
                n_batches = batches1[0] - batches0[0]
                res.update(clients=clients,
                           server_cpu_ms_per_request=round(cpu / max(res["requests"], 1) * 1000, 3),
                           server_cpu_cores=round(cpu / res["seconds"], 2), load_average_1m=round(la, 2),
                           # with several workers /health reaches one of them: indicative only
                           mean_batch_size=round((batches1[1] - batches0[1]) / n_batches, 2) if n_batches > 0 else None)
                levels.append(res)
                print(f"  {clients:>3} clients: {res['rps']:>7.1f} req/s  p50 {res['p50_ms']:.1f} ms  "
                      f"p95 {res['p95_ms']:.1f} ms  p99 {res['p99_ms']:.1f} ms  max {res['max_ms']:.1f} ms  "
                      f"errors {res['errors']}  server CPU {res['server_cpu_ms_per_request']:.2f} ms/req "
                      f"batch ~{res['mean_batch_size']} (load avg {la:.1f})", flush=True)
            if args.profile and workers == 1:
                prof = profile(proc.pid, url, ids_file, script, max(args.duration, 10), args.seed, work)
            rss_mb = sum(p.memory_info().rss for p in procs if p.is_running()) / 2**20
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        at16 = next((lv for lv in levels if lv["clients"] == 16), None)
        runs.append({
            "workers": workers, "server_ready_s": round(ready_s, 1), "server_rss_mb": round(rss_mb, 1),
            "levels": levels,
            "targets": None if at16 is None else {
                "p99_ms_at_16_below_50": at16["p99_ms"] < TARGET_P99_MS_AT_16,
                "rps_at_16_at_least_300": at16["rps"] >= TARGET_RPS,
                "zero_errors": all(lv["errors"] == 0 for lv in levels),
            },
        })

    result = {
        "benchmark": "serving",
        "size": args.size,
        "home": str(args.home),
        "data": facts,
        "prepared": prepared,
        "client": client,
        "request": "GET /recommendations/{random stored customer}?k=12 (keep-alive)",
        "duration_s": args.duration,
        "runs": runs,
        "profile": prof,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_average_before": [round(x, 2) for x in load_before],
                    "load_average_after": [round(x, 2) for x in os.getloadavg()]},
    }
    if prof:
        print("profile (share of server samples at 16 clients):")
        for k, v in prof.get("inclusive_share", {}).items():
            print(f"  {v:6.1%}  {k}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {args.out}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
