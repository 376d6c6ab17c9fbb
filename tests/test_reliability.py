"""Reliability: every injected fault kind is survived (or ends in a typed error once
the budget is spent), the circuit breaker moves a course to a healthy replica, a
faulty cohort finishes with nothing lost, and a `chroma run` restart mid-run loses
no memory write."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port, start_stub, wait_port  # type: ignore[import-not-found]
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel, Field

from therasim._internal.http import Breakers, ProviderError
from therasim._internal.retry import RetryPolicy
from therasim.config import ModelSpec
from therasim.providers import ModelPool, make_chat_model, replica_order
from therasim.structured import agenerate_structured, agenerate_text


class _Stub:
    def __init__(self, *args: str) -> None:
        self.proc, self.port = start_stub(*args)
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def metrics(self) -> dict[str, Any]:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics") as r:
            return json.loads(r.read())  # type: ignore[no-any-return]

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def stub_factory():
    made: list[_Stub] = []

    def make(*args: str) -> _Stub:
        s = _Stub(*args)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


class Mood(BaseModel):
    intensity: int = Field(ge=0, le=10)
    label: str = Field(min_length=2, max_length=40)


MSGS = [SystemMessage(content="You rate moods."), HumanMessage(content="I slept badly again.")]


@pytest.mark.parametrize("kind", ["http_500", "http_429", "reset", "hang", "truncated", "malformed", "out_of_range", "empty"])
def test_each_fault_kind_is_survived(stub_factory, kind: str) -> None:
    stub = stub_factory("--fault", f"{kind}=0.5", "--seed", "3")
    model = make_chat_model(ModelSpec(provider="openai", model="stub", base_url=stub.url, max_retries=8, timeout_s=1.5))

    async def go() -> list[Any]:
        out = []
        for i in range(6):
            obj, stats = await agenerate_structured(model, Mood, MSGS, seed=i, max_attempts=4)
            out.append((obj, stats))
        text, st = await agenerate_text(model, MSGS, seed=99)
        await model.aclose_loop()  # type: ignore[attr-defined]
        return [*out, (text, st)]

    results = asyncio.run(go())
    assert all(isinstance(o, Mood) for o, _ in results[:-1])
    injected = stub.metrics()["faults"].get(kind, 0)
    assert injected > 0
    retried = sum(s.retries for _, s in results)
    assert retried >= 1  # every injected fault cost a retry, at the transport or the schema level
    if kind == "out_of_range":
        assert any("less than or equal to 10" in e for _, s in results for e in s.errors)


def test_budget_spent_is_a_typed_error_naming_the_cause(stub_factory) -> None:
    stub = stub_factory("--fault", "http_500=1.0")
    model = make_chat_model(ModelSpec(provider="openai", model="stub", base_url=stub.url, max_retries=2, timeout_s=2))

    async def go() -> None:
        try:
            await agenerate_text(model, MSGS)
        finally:
            await model.aclose_loop()  # type: ignore[attr-defined]

    with pytest.raises(ProviderError, match=r"failed after 3 attempt\(s\) \(retry budget spent\); last: http_500") as ei:
        asyncio.run(go())
    assert ei.value.kind == "http_500" and ei.value.attempts == 3


def test_circuit_breaker_moves_a_course_to_a_healthy_replica(stub_factory) -> None:
    bad = stub_factory("--fault", "http_500=1.0")
    good = stub_factory()
    urls = [bad.url, good.url]
    course = next(f"run/c{i}" for i in range(100) if replica_order(urls, f"run/c{i}")[0] == bad.url)
    breakers = Breakers()
    model = make_chat_model(ModelSpec(provider="openai", model="stub", base_url=urls, max_retries=6, timeout_s=2), course_key=course, breakers=breakers)

    async def go() -> list[Any]:
        out = []
        for i in range(8):
            msg = await model.ainvoke(MSGS, seed=i)
            out.append(msg.response_metadata["transport"])
        await model.aclose_loop()  # type: ignore[attr-defined]
        return out

    transports = asyncio.run(go())
    assert all(t["url"].startswith(good.url.rsplit("/v1", 1)[0]) for t in transports)
    assert breakers[bad.url.rstrip("/")].trips >= 1
    assert transports[-1]["attempts"] == 1  # once open, the bad replica is skipped outright
    assert bad.metrics()["requests"] < 8 + 8  # not hammered on every call


def test_sync_calls_share_the_transport_and_the_pool_owns_the_breakers(stub_factory) -> None:
    bad = stub_factory("--fault", "http_500=1.0")
    good = stub_factory()
    urls = [bad.url, good.url]
    spec = ModelSpec(provider="openai", model="stub", base_url=urls, max_retries=6, timeout_s=2)
    pool, other = ModelPool({"default": spec}), ModelPool({"default": spec})
    courses = [f"run/c{i}" for i in range(100) if replica_order(urls, f"run/c{i}")[0] == bad.url][:2]
    first = pool.get("counselor", courses[0])
    # sync invoke: the same client (retries, breaker, failover), not another library's rules
    msg = first.invoke(MSGS, seed=1)
    tr = msg.response_metadata["transport"]
    assert tr["url"].startswith(good.url.rsplit("/v1", 1)[0]) and tr["attempts"] > 1
    assert pool.breakers[bad.url.rstrip("/")].trips >= 1
    # another course of the same pool skips the open replica at once; another pool does not know it
    assert pool.get("counselor", courses[1]).invoke(MSGS, seed=2).response_metadata["transport"]["attempts"] == 1
    assert other.get("counselor", courses[1]).invoke(MSGS, seed=3).response_metadata["transport"]["attempts"] > 1


def test_retry_policy_counts_and_budget() -> None:
    waits: list[float] = []
    calls = {"n": 0}

    def flaky() -> str:
        calls["n"] += 1
        if calls["n"] < 4:
            raise ConnectionError("down")
        return "up"

    policy = RetryPolicy(max_retries=None, base_s=0.2, cap_s=0.5, budget_s=10, jitter=False)
    assert policy.call(flaky, transient=lambda e: isinstance(e, ConnectionError), sleep=waits.append) == "up"
    assert waits == [0.2, 0.4, 0.5]  # doubling, capped
    with pytest.raises(ValueError):  # not transient: no retry
        policy.call(lambda: int("x"), transient=lambda e: isinstance(e, ConnectionError), sleep=waits.append)
    assert len(waits) == 3
    assert RetryPolicy(max_retries=2).give_up(2, 0.0) == "retry budget spent"
    assert RetryPolicy(budget_s=1.0).give_up(0, 1.0) == "time budget spent"
    assert RetryPolicy(max_retries=0, budget_s=0).give_up(0, 0.0) is not None
    with pytest.raises(ValueError, match="max_retries"):
        RetryPolicy(max_retries=-1)


def test_faulty_cohort_completes_with_nothing_lost(tmp_path: Path) -> None:
    from therasim.bench import bench

    res = bench(profile="zero", faults=0.2, arms=("therasim",), clients=6, sessions=2, turns=3, concurrency=6, checkpoint_sizes=False, out_dir=tmp_path, echo=lambda s: None)
    assert res["courses_completed"] == res["courses_total"] == 6
    assert res["turns_lost"] == 0 and res["turns_duplicated"] == 0
    assert res["retries"] > 0 and sum(res["fault_counts"].values()) > 0


def test_chroma_server_restart_mid_run_loses_no_memory(tmp_path: Path, stub_factory) -> None:
    """Kill the `chroma run` server while courses are writing memory, start it again:
    the run completes and every memory id the transcripts list is in Chroma."""
    from therasim.rundir import read_jsonl
    from therasim.runner import resume, start_run

    exe = shutil.which("chroma") or str(Path(sys.executable).parent / "chroma")
    port = free_port()
    env = {"ANONYMIZED_TELEMETRY": "False", "PATH": "/usr/bin:/bin"}

    def start() -> subprocess.Popen:
        p = subprocess.Popen([exe, "run", "--path", str(tmp_path / "srv"), "--host", "127.0.0.1", "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        wait_port(port, p, 60, "/api/v2/heartbeat")
        return p

    chroma = start()
    stub = stub_factory("--profile", "api-like", "--time-scale", "0.15")  # slow enough that courses are mid-run during the outage
    cfg = {
        "models": {"default": {"provider": "openai", "model": "stub", "base_url": stub.url, "max_retries": 4, "timeout_s": 10}},
        "course": {"preset": "minimal", "sessions": 3, "max_turns": 2},
        "memory": {"backend": "chroma-http", "port": port, "embedding": "hash"},
        "concurrency": 3,
        "seed": 4,
    }
    rd, _ = start_run(cfg, sample=3, out=tmp_path / "runs")
    import threading

    result: dict[str, Any] = {}
    t = threading.Thread(target=lambda: result.setdefault("res", resume(rd.root)))
    t.start()
    deadline = time.time() + 120
    while time.time() < deadline and not list(read_jsonl(rd.transcripts)):
        time.sleep(0.05)
    assert list(read_jsonl(rd.transcripts)), "no session finished"
    chroma.terminate()
    chroma.wait(10)
    time.sleep(2.0)  # memory writes fail and are retried while the server is down
    chroma = start()
    t.join(300)
    try:
        res = result["res"]
        assert res.ok and len(res.completed) == 3, res.summary()
        assert res.memory_retries > 0  # the outage was seen and ridden out
        assert res.memory_pending == 0
        import chromadb
        from chromadb.config import Settings

        from therasim.memory import ChromaMemoryStore
        from therasim.testing import HashEmbedding

        fresh = ChromaMemoryStore(chromadb.HttpClient(host="127.0.0.1", port=port, settings=Settings(anonymized_telemetry=False)), HashEmbedding(), cache=False, scope=rd.manifest()["memory_scope"])
        expected = 0
        for r in read_jsonl(rd.transcripts):
            for role, ids in (r.get("memory_written") or {}).items():
                stored = {m["id"] for m in fresh.list(r["client_id"], role)}
                assert set(ids) <= stored, (r["client_id"], r["session"], role)
                expected += len(ids)
        assert expected > 0
    finally:
        chroma.terminate()
        chroma.wait(10)
