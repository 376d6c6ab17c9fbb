from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
# risk.scan runs its patterns alone by default in tests (no MiniLM in the fast lane);
# the risk tests ask for the exemplar-bank detector with scan(text, knn=True).
os.environ.setdefault("THERASIM_RISK_KNN", "0")

REPO = Path(__file__).resolve().parents[1]

# The embedded lane in CI runs on two xdist workers (`-n 2 --dist load --maxschedchunk 1
# --one-cpu-per-worker`, .ci/run): each worker, and every process it starts (CLI runs,
# notebook kernels), is pinned to a CPU of its own, so llama.cpp and torch default to
# one thread each (providers._usable_cpus) instead of two workers fighting over two
# cores. Its slowest tests go first, in this order: xdist sends the first two to one
# worker and the next two to the other (one running, one queued), the rest to whichever
# worker frees up. A test missing here only runs later; the order never changes a result.
EMBEDDED_SLOWEST_FIRST = (
    "tests/test_cli_e2e.py::test_demo_inspect_fork_plot",
    "tests/test_notebooks.py::test_notebook_executes[01_custom_graph.ipynb]",
    "tests/test_embedded_course.py::",
    "tests/test_notebooks.py::test_notebook_executes[02_cohort_inspect_fork_plot.ipynb]",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--one-cpu-per-worker",
        action="store_true",
        help="pin each xdist worker (and its child processes) to a CPU of its own (the embedded lane in CI)",
    )


def _pin_process(cpu: int) -> None:
    # sched_setaffinity(0) pins the calling thread only: pin every thread there is now
    # (threads and processes started later inherit the mask).
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), {cpu})
        except OSError:  # a thread that ended meanwhile
            pass


def pytest_configure(config: pytest.Config) -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER")  # gw0, gw1, ...
    if config.getoption("one_cpu_per_worker") and worker and hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        _pin_process(cpus[int(worker[2:]) % len(cpus)])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not (config.getoption("one_cpu_per_worker") and os.environ.get("PYTEST_XDIST_WORKER")):
        return

    def rank(item: pytest.Item) -> int:
        return next((i for i, p in enumerate(EMBEDDED_SLOWEST_FIRST) if item.nodeid.startswith(p)), len(EMBEDDED_SLOWEST_FIRST))

    items.sort(key=rank)  # stable: the rest keep their order


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_stub(*args: str, timeout: float = 30.0, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, int]:
    """`therasim stub --port 0 ARGS` in a subprocess: the OS picks a free port and the
    stub binds it before printing its banner, so no other test's server can take the
    port between choosing and binding it (the race of free_port()). Returns the
    process and its port once /health answers."""
    import re
    import tempfile

    log = tempfile.NamedTemporaryFile(prefix="therasim-stub-", suffix=".log", delete=False)
    proc = subprocess.Popen([sys.executable, "-m", "therasim.cli", "stub", "--port", "0", *args], stdout=subprocess.DEVNULL, stderr=log, env=env)
    deadline = time.monotonic() + timeout
    try:
        while True:
            m = re.search(r"on http://[^:/]+:(\d+)/v1", Path(log.name).read_text(errors="replace"))
            if m:
                port = int(m.group(1))
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"stub did not start (exit {proc.poll()}): {Path(log.name).read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)
        wait_port(port, proc, max(1.0, deadline - time.monotonic()), "/health")
    finally:
        log.close()
        os.unlink(log.name)
    return proc, port


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 60.0, path: str = "/") -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early with {proc.returncode}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"server on port {port} did not come up")


@pytest.fixture(scope="session")
def gguf_path() -> str:
    from therasim.providers import default_gguf_path

    return str(default_gguf_path())


@pytest.fixture(scope="session")
def llama_server(gguf_path: str):
    """llama-cpp-python's OpenAI-compatible server over the same GGUF, on 127.0.0.1."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", gguf_path, "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--model_alias", "smollm2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, proc, 120, "/v1/models")
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(10)


# Hypothesis profiles: the default keeps CI quick; `HYPOTHESIS_PROFILE=slow` runs the
# fuzz suites with 1,000+ examples each (docs/reliability.md).
try:
    from hypothesis import HealthCheck, settings

    settings.register_profile("default", max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    settings.register_profile("slow", max_examples=1200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
except ImportError:  # hypothesis is a dev dependency
    pass


@pytest.fixture(scope="session")
def stub_url() -> Iterator[str]:
    """The stub model server (profile zero) in a thread of this process, on 127.0.0.1."""
    from aiohttp import web

    from therasim.stub import StubServer, create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(create_app(StubServer("zero")))

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        loop.run_forever()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/v1"
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    t.join(5)


def slow_upsert_block_store(path: str, ids: list[str], monkeypatch: Any, delay: float) -> tuple[Any, list[int]]:
    """A memory store of ``ids`` in one block whose Chroma upserts each take ``delay``
    seconds and record how many items they carried (the group-commit tests)."""
    from therasim.memory.chroma import ChromaMemoryStore
    from therasim.testing import HashEmbedding

    store = ChromaMemoryStore.persistent(path, HashEmbedding(), layout="blocks", scope="s")
    store.assign_blocks(ids, 256)
    col = store._col(ids[0], "counselor")
    real = type(col).upsert
    calls: list[int] = []

    def slow_upsert(self: Any, *a: Any, **kw: Any) -> Any:
        calls.append(len(kw["ids"]))
        time.sleep(delay)  # a commit that takes a while: the others' writes gather meanwhile
        return real(self, *a, **kw)

    monkeypatch.setattr(type(col), "upsert", slow_upsert)
    return store, calls
