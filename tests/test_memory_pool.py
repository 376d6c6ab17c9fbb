"""Memory calls run on a pool of their own sized to the courses in flight
(therasim.memory.pool), and a patterns-only risk scan runs inline (issue #17: the
gaps around session-end memory writes)."""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from therasim.errors import TherasimError
from therasim.memory import pool as mpool
from therasim.memory.pool import MAX_WORKERS, MemoryPool
from therasim.nodes.recall import remember
from therasim.policies import risk_assessment
from therasim.policies.risk import scan
from therasim.testing import FunctionChatModel, HashEmbedding

sys.path.insert(0, str(Path(__file__).parent))
from _run_target import reply
from conftest import slow_upsert_block_store  # type: ignore[import-not-found]


def test_the_pool_runs_as_many_calls_at_once_as_it_is_sized_for() -> None:
    """40 calls that each wait for all 40 to have started finish on a pool sized to 40;
    on a pool of 6 (what asyncio.to_thread's pool has on 2 cores) the 7th never starts."""

    async def go(p: MemoryPool, n: int, timeout: float) -> list[int]:
        bar = threading.Barrier(n, timeout=timeout)
        return await asyncio.gather(*(p.run(bar.wait) for _ in range(n)))

    p = MemoryPool(6)
    assert p.ensure(40) == 40 and p.workers == 40
    assert sorted(asyncio.run(go(p, 40, 10.0))) == list(range(40))
    assert p.threads == 40
    small = MemoryPool(6)
    with pytest.raises(threading.BrokenBarrierError):
        asyncio.run(go(small, 7, 0.5))
    p.shutdown()
    small.shutdown()


def test_the_pool_grows_never_shrinks_and_is_bounded() -> None:
    p = MemoryPool(8)
    assert p.threads == 0  # threads start only when calls come
    assert asyncio.run(p.run(lambda a, b: a + b, 2, 3)) == 5
    assert p.ensure(100) == 100
    assert p.ensure(10) == 100
    assert p.ensure(10**6) == MAX_WORKERS
    assert asyncio.run(p.run(threading.current_thread)).name.startswith("therasim-memory")
    with pytest.raises(ValueError, match="workers"):
        MemoryPool(0)
    p.shutdown()


def test_the_runner_sizes_the_pool_to_its_concurrency(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from therasim import memory
    from therasim.runner import arun_dir, start_run

    monkeypatch.setattr(memory, "make_embedding", lambda spec: HashEmbedding())
    sized: list[int] = []
    monkeypatch.setattr(mpool, "size_memory_pool", lambda n: sized.append(n) or n)
    models = {"default": FunctionChatModel(fn=reply)}
    cfg = {"course": {"preset": "minimal", "sessions": 1, "max_turns": 1}, "memory": {"embedding": "hash"}, "seed": 5}
    rd, _ = start_run(cfg, sample=1, out=tmp_path / "r", models=models)
    assert asyncio.run(arun_dir(rd, concurrency=48, models=models)).ok
    assert sized == [48]


def _view(cid: str) -> dict[str, Any]:
    summary = {"session": 1, "themes": ["sleep"], "progress": "some", "facts": [f"{cid} sleeps badly"], "homework": "", "risk": "none", "plan": "keep a diary"}
    return {"session": 1, "course_key": f"k-{cid}", "client_id": cid, "summaries": [summary], "recollections": [{"session": 1, "remembers": "we talked", "feels": "lighter", "homework": ""}], "last": {"transcript": []}, "pending": {}}


def test_courses_ending_a_session_together_share_upserts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """24 courses write their session's memories at once through ``remember``: with a
    thread per course their writes gather into a few upserts per role (on a 6-thread
    pool at most 6 could: 24 writes took at least 4 upserts a role), and every
    course's items are stored."""
    ids = [f"c{i}" for i in range(24)]
    store, calls = slow_upsert_block_store(str(tmp_path / "m"), ids, monkeypatch, 0.3)
    monkeypatch.setattr(mpool, "_POOL", MemoryPool(6))
    mpool.size_memory_pool(len(ids))
    ctx = SimpleNamespace(sim=SimpleNamespace(memory=store))

    async def go() -> list[dict[str, Any]]:
        return await asyncio.gather(*(remember(_view(cid), ctx) for cid in ids))  # type: ignore[arg-type]

    out = asyncio.run(go())
    assert all(len(o["pending"]["memory_written"]["counselor"]) == 2 for o in out)
    assert store.upserts == len(calls) <= 6  # two roles: a first writer alone, then the rest together
    assert sum(calls) == 24 * (2 + 1)  # the counselor's note and a fact; the client's note
    for cid in ids:
        assert {x["text"] for x in store.list(cid, "counselor")} >= {f"{cid} sleeps badly"}
    mpool.memory_pool().shutdown()


def test_a_failed_memory_write_surfaces_in_the_course(monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken:
        def embed(self, texts: list[str]) -> None:
            return None

        def add(self, *a: Any) -> list[str]:
            raise TherasimError("disk full")

    ctx = SimpleNamespace(sim=SimpleNamespace(memory=Broken()))
    with pytest.raises(TherasimError, match="disk full"):
        asyncio.run(remember(_view("c1"), ctx))  # type: ignore[arg-type]


def test_a_patterns_only_scan_runs_inline_and_the_classifier_off_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    text = "Some nights I think about killing myself."
    hops: list[str] = []

    async def to_thread(fn: Any, *a: Any) -> Any:
        hops.append(fn.__name__)
        return fn(*a)

    monkeypatch.setattr(risk_assessment.asyncio, "to_thread", to_thread)
    monkeypatch.setenv("THERASIM_RISK_KNN", "0")
    assert not risk_assessment.scan_uses_classifier()
    cues = asyncio.run(risk_assessment.scan_cues(text))
    assert cues == [c.as_dict() for c in scan(text, model=False)] and cues and hops == []
    # with the classifier on, the scan goes to a thread
    monkeypatch.setattr(risk_assessment, "scan_uses_classifier", lambda: True)
    monkeypatch.setattr(risk_assessment, "scan", lambda t, **kw: scan(t, model=False))
    assert asyncio.run(risk_assessment.scan_cues(text)) == cues and hops == ["<lambda>"]
