"""A tiny trained home (store + registry) for the serving tests, and a real server in a
subprocess or a thread.

Training runs once per test process (the pipelines are the ones `hmrec run` calls, with
small epochs); each server gets its own copy of the store and registry database, so a
test that posts events or registers a model changes nothing another test sees.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from hmrec.config import Settings

_BUILT: dict[str, Path] = {}
TOKEN = "test-token-0123456789"

# Tolerances for numbers one computation gives through two code paths or two batch shapes
# (one row vs many, the service vs the offline pipeline). BLAS picks its kernel by shape
# and CPU, so a float32 embedding may differ in its last bit (seen on AMD: 3 of 17 values
# one ulp apart); anything larger than a few ulps is a real difference (other features,
# another model, a stale table), which these still catch.
#: Query embeddings (float32, values of order 0.1-1): a few ulps.
EMBEDDING_RTOL, EMBEDDING_ATOL = 1e-6, 1e-6
#: Ranker scores: an input a few ulps off moves a tree's score by far less than this,
#: while another feature value or model moves it by orders of magnitude more.
SCORE_RTOL, SCORE_ATOL = 1e-5, 1e-7


def assert_embeddings_close(got, want, what: str = "query embeddings") -> None:
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64),
                               rtol=EMBEDDING_RTOL, atol=EMBEDDING_ATOL, err_msg=what)


def assert_same_answer(got, want, what: str = "") -> None:
    """Two answers (Recommendation objects) to one request: the same articles in the same
    order (what a user sees), the same stages, and scores equal within SCORE_RTOL."""
    assert (got.customer_id, got.cold_start) == (want.customer_id, want.cold_start), what
    assert got.article_ids == want.article_ids, what
    assert got.stages == want.stages, what
    np.testing.assert_allclose(got.scores, want.scores, rtol=SCORE_RTOL, atol=SCORE_ATOL, err_msg=what)


def tiny_settings(home: Path, **overrides) -> Settings:
    values = {"HOME_DIR": home, "TWO_TOWER_NUM_EPOCHS": 2, "TWO_TOWER_MODEL_BATCH_SIZE": 256,
              "RANKING_ITERATIONS": 20, "RANKING_DEPTH": 4, "SEED": 7}
    values.update(overrides)
    return Settings(**values)


def trained_home(tmp_path_factory) -> Path:
    """Generate ~300 customers, build features, train and register both models: once per
    test session (pytest-xdist workers of one session share it; the first one builds it
    under a file lock). Tests never write into it: servers get copies."""
    if "home" not in _BUILT:
        base = tmp_path_factory.getbasetemp()
        if os.environ.get("PYTEST_XDIST_WORKER"):
            base = base.parent  # the session's folder, shared by its workers
        home = base / "serving-trained-home"
        with open(base / "serving-trained-home.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (home / "ready").exists():
                _build(home)
                (home / "ready").touch()
        _BUILT["home"] = home
    return _BUILT["home"]


def _build(home: Path) -> None:
    from hmrec.data import generate
    from hmrec.pipelines.features import run_feature_pipeline
    from hmrec.pipelines.train import train_ranking_stage, train_retrieval_stage

    shutil.rmtree(home, ignore_errors=True)  # a build that died half way
    settings = tiny_settings(home)
    generate(settings.data_dir, n_customers=300, seed=7)
    run_feature_pipeline(settings)
    train_retrieval_stage(settings)
    train_ranking_stage(settings)


def copy_home(src: Path, dst: Path) -> Path:
    """The store and the registry database (artifacts stay where the database points)."""
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src / "store", dst / "store")
    shutil.copy2(src / "mlflow.db", dst / "mlflow.db")
    return dst


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(base_url: str, timeout_s: float = 300.0, proc: subprocess.Popen | None = None) -> httpx.Response:
    """Poll /health until 200 (fails if the server process dies first)."""
    deadline = time.monotonic() + timeout_s
    last: Exception | httpx.Response | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
        try:
            r = httpx.get(f"{base_url}/health", timeout=5)
            if r.status_code == 200:
                return r
            last = r
        except httpx.TransportError as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{base_url} not ready: {last!r}")


def wait_for(check, what: str, timeout_s: float = 300.0, every_s: float = 0.05):
    """Call `check()` until it returns something truthy and return that; after `timeout_s`
    fail naming `what` was waited for and the last value seen. Every poll loop in the
    serving tests goes through here, so none can hang."""
    deadline = time.monotonic() + timeout_s
    last = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout_s:.0f} s for {what}; last seen: {last!r}")
        time.sleep(every_s)


class ServerProcess:
    """`serve(Settings())` in a child process, configured through the environment."""

    def __init__(self, home: Path, workers: int = 1, **env: str) -> None:
        self.home = home
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "HMREC_HOME": str(home), **env}
        self.proc: subprocess.Popen | None = None

    def start(self) -> ServerProcess:
        code = ("import sys; from hmrec.config import Settings; from hmrec.serving.api import serve; "
                f"serve(Settings(), host='127.0.0.1', port={self.port}, workers={self.workers})")
        self.proc = subprocess.Popen([sys.executable, "-c", code], env=self.env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        wait_ready(self.url, proc=self.proc)
        return self

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class ServerThread:
    """A real uvicorn server for an app object, in a thread of this process."""

    def __init__(self, app) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self, ready: bool = True) -> ServerThread:
        self.thread.start()
        wait_for(lambda: self.server.started or not self.thread.is_alive(), f"uvicorn to start on {self.url}",
                 timeout_s=60, every_s=0.02)
        if not self.server.started:
            raise RuntimeError(f"uvicorn on {self.url} stopped before it started")
        if ready:
            wait_ready(self.url)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
