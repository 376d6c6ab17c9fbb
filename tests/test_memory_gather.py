"""Memory writes of different clients wait a little to share a Chroma upsert when
others are expected (``ChromaMemoryStore.gather_wait``; docs/benchmarks.md, "why cost
rose within a long run"): the decision, and that a gathered batch stores every
writer's items and returns to each only once its upsert is done."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import slow_upsert_block_store  # type: ignore[import-not-found]

from therasim.errors import TherasimError
from therasim.memory import chroma
from therasim.memory.chroma import GATHER_WRITERS, ChromaMemoryStore
from therasim.testing import HashEmbedding

KEY = (1, "counselor")


def _store(tmp_path: Path, gather_s: float = 0.5) -> ChromaMemoryStore:
    s = ChromaMemoryStore.persistent(str(tmp_path / "m"), HashEmbedding(), layout="blocks", scope="s")
    s.gather_s = gather_s
    return s


def test_a_lone_course_never_waits(tmp_path: Path) -> None:
    s = _store(tmp_path)
    # one client's own writes, however close together, say nothing about other clients
    assert [s.gather_wait(KEY, "c1", t) for t in (0.0, 0.01, 0.02, 0.03)] == [0.0] * 4


def test_the_wait_follows_the_gap_between_clients_writes(tmp_path: Path) -> None:
    s = _store(tmp_path)
    s.gather_writers = 8
    assert s.gather_wait(KEY, "c1", 10.0) == 0.0  # nothing known yet
    # c2 10 ms after c1: the mean gap is 10 ms, so 7 more writers take ~70 ms
    assert s.gather_wait(KEY, "c2", 10.01) == pytest.approx(7 * 0.01)
    # then a 1 s gap: the moving average 0.8 * 0.01 + 0.2 * 1.0 = 0.208 s, the wait capped at 0.5 s
    assert s.gather_wait(KEY, "c3", 11.01) == pytest.approx(0.5)
    # sparse writes (a mean gap longer than the cap): no more expected in time, no wait
    assert s.gather_wait(KEY, "c4", 13.01) == 0.0
    # another collection keeps its own estimate
    assert s.gather_wait((2, "client"), "c5", 13.02) == 0.0


def test_the_writers_a_batch_waits_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``GATHER_WRITERS`` (8) by default; ``THERASIM_MEMORY_GATHER_WRITERS`` sets it: at
    64 a 5 ms gap between clients' writes gives a wait of 63 x 5 ms, a 10 ms gap hits the
    500 ms cap; a bad setting names the variable."""
    assert GATHER_WRITERS == 8
    assert _store(tmp_path / "a").gather_writers == 8
    monkeypatch.setenv("THERASIM_MEMORY_GATHER_WRITERS", "64")
    s = _store(tmp_path / "b")
    assert s.gather_writers == 64
    s.gather_wait(KEY, "c1", 10.0)
    assert s.gather_wait(KEY, "c2", 10.005) == pytest.approx(63 * 0.005)
    assert s.gather_wait((2, "client"), "c1", 20.0) == 0.0
    assert s.gather_wait((2, "client"), "c2", 20.01) == pytest.approx(0.5)
    monkeypatch.setenv("THERASIM_MEMORY_GATHER_WRITERS", "0")
    with pytest.raises(TherasimError, match="THERASIM_MEMORY_GATHER_WRITERS"):
        _store(tmp_path / "c")


def test_sixteen_writers_in_flight_share_one_upsert(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``gather_writers`` 64: sixteen clients of a block in flight, their writes 30 ms
    apart: with other clients' writes expected the first waits and all sixteen share one
    upsert (the sixteenth, the last client in flight, sends it). With eight writers at
    most (the default) they take two upserts of eight."""
    ids = [f"c{i:02d}" for i in range(16)]
    store, calls = slow_upsert_block_store(str(tmp_path / "m"), ids, monkeypatch, 0.0)
    store.gather_s = 30.0
    store.gather_writers = 64
    key = (id(store._col(ids[0], "counselor")), "counselor")
    store.gather_wait(key, "x1", time.monotonic() - 0.4)
    store.gather_wait(key, "x2", time.monotonic() - 0.2)
    for cid in ids:
        store.search(cid, "counselor", "sleep")  # sixteen courses in flight
    threads = [threading.Thread(target=store.add, args=(cid, "counselor", [{"text": f"{cid} sleeps badly", "kind": "fact", "session": 1}]), kwargs={"embeddings": store.embed([f"{cid} sleeps badly"])}) for cid in ids]
    for t in threads:
        t.start()
        time.sleep(0.03)
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert calls == [16] and store.upserts == 1
    for cid in ids:
        assert [x["text"] for x in store.list(cid, "counselor")] == [f"{cid} sleeps badly"]


def test_gathering_off_and_a_bad_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = _store(tmp_path, gather_s=0.0)
    assert [s.gather_wait(KEY, c, t) for c, t in (("c1", 0.0), ("c2", 0.001), ("c3", 0.002))] == [0.0] * 3
    monkeypatch.setenv("THERASIM_MEMORY_GATHER_MS", "0")
    assert chroma._gather_s() == 0.0
    monkeypatch.setenv("THERASIM_MEMORY_GATHER_MS", "250")
    assert chroma._gather_s() == 0.25
    monkeypatch.setenv("THERASIM_MEMORY_GATHER_MS", "soon")
    with pytest.raises(TherasimError, match="THERASIM_MEMORY_GATHER_MS"):
        chroma._gather_s()


def _eight_clients_expected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], Any, list[int]]:
    """A block store whose collection expects other clients' writes: eight clients in
    flight (each recalled at its session's start), writes of other clients seen 200 ms
    apart, so a first batch waits 7 x ~0.2 s for seven more, far longer than eight
    writes 30 ms apart take to arrive (~0.2 s): the eighth sends it."""
    ids = [f"c{i}" for i in range(8)]
    store, calls = slow_upsert_block_store(str(tmp_path / "m"), ids, monkeypatch, 0.0)
    store.gather_s = 30.0
    store.gather_writers = 8  # eight at most (the default; with more the eighth also sends it: every client in flight joined)
    key = (id(store._col(ids[0], "counselor")), "counselor")
    store.gather_wait(key, "x1", time.monotonic() - 0.4)
    store.gather_wait(key, "x2", time.monotonic() - 0.2)
    for cid in ids:
        store.search(cid, "counselor", "sleep")
    return ids, store, calls


def test_writers_arriving_one_by_one_share_one_upsert(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Eight clients' writes arrive 30 ms apart (one at a time: without gathering each
    would find no upsert in flight and send its own); with other clients' writes
    expected, the first waits, the others join it, and the eighth sends the batch:
    one upsert carries all eight, and each writer finds its items stored."""
    ids, store, calls = _eight_clients_expected(tmp_path, monkeypatch)
    done: dict[str, list[str]] = {}

    def write(cid: str) -> None:
        done[cid] = store.add(cid, "counselor", [{"text": f"{cid} sleeps badly", "kind": "fact", "session": 1}], embeddings=store.embed([f"{cid} sleeps badly"]))

    threads = []
    for cid in ids:
        t = threading.Thread(target=write, args=(cid,))
        t.start()
        threads.append(t)
        time.sleep(0.03)
    for t in threads:
        t.join(60)
    assert calls == [8]  # one upsert of eight items
    assert store.upserts == 1
    for cid in ids:
        assert len(done[cid]) == 1
        assert [x["text"] for x in store.list(cid, "counselor")] == [f"{cid} sleeps badly"]


def test_no_wait_without_other_clients_in_flight_and_none_once_all_joined(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks layout: with no other client of the block in flight a write goes at once
    however busy the collection looked; with three in flight the batch goes as soon as
    all three have joined, long before its wait (~30 s here) would end."""
    ids = ["a", "b", "c", "d"]
    store, calls = slow_upsert_block_store(str(tmp_path / "m"), ids, monkeypatch, 0.0)
    store.gather_s = 30.0
    col = store._col(ids[0], "counselor")
    key = (id(col), "counselor")
    store.release(ids[0])
    store.gather_wait(key, "x1", time.monotonic() - 10.0)  # a gap of 5 s: a wait of 30 s
    store.gather_wait(key, "x2", time.monotonic() - 5.0)
    store.add("d", "counselor", [{"text": "d alone", "kind": "fact", "session": 1}], embeddings=store.embed(["d alone"]))
    assert calls == [1]
    store.release("d")
    for cid in ids[:3]:
        store.search(cid, "counselor", "sleep")  # three courses in flight
    threads = [threading.Thread(target=store.add, args=(cid, "counselor", [{"text": f"{cid} ok", "kind": "fact", "session": 1}]), kwargs={"embeddings": store.embed([f"{cid} ok"])}) for cid in ids[:3]]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not any(t.is_alive() for t in threads)
    assert calls == [1, 3]


def test_writers_on_the_loop_share_one_upsert_and_hold_no_thread_while_waiting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``aadd`` (what the memory nodes call): the same gathering as the threaded test
    above, on the event loop. Eight clients' writes 30 ms apart share one upsert, each
    writer returns its ids once it is stored and finds its item; while they wait to
    share it, no memory thread is held (only the upsert itself runs on the pool)."""
    import asyncio

    from therasim.memory.pool import memory_pool

    ids, store, calls = _eight_clients_expected(tmp_path, monkeypatch)
    busy: list[int] = []
    real_submit = memory_pool().submit

    def counting_submit(fn: object, *a: object) -> object:
        busy.append(1)
        fut = real_submit(fn, *a)  # type: ignore[arg-type]
        fut.add_done_callback(lambda f: busy.pop())
        return fut

    monkeypatch.setattr(memory_pool(), "submit", counting_submit)
    most: list[int] = []

    async def go() -> dict[str, list[str]]:
        async def write(cid: str) -> list[str]:
            return await store.aadd(cid, "counselor", [{"text": f"{cid} sleeps badly", "kind": "fact", "session": 1}], embeddings=store.embed([f"{cid} sleeps badly"]))

        tasks = {}
        for cid in ids:
            tasks[cid] = asyncio.create_task(write(cid))
            await asyncio.sleep(0.03)
            most.append(len(busy))
        return {cid: await t for cid, t in tasks.items()}

    done = asyncio.run(go())
    assert calls == [8]
    assert store.upserts == 1
    assert max(most) <= 1  # seven writers waiting for the eighth, none of them on a thread
    for cid in ids:
        assert len(done[cid]) == 1
        assert [x["text"] for x in store.list(cid, "counselor")] == [f"{cid} sleeps badly"]
        assert store.search(cid, "counselor", "sleeps badly")[0]["text"] == f"{cid} sleeps badly"  # the mirror has it


def test_a_cancelled_writer_on_the_loop_strands_nobody(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first writer of a batch is cancelled while the batch gathers: the batch is
    still sent by its own task, the other writers return once it is stored, and the
    cancelled writer's items (already in the batch) are stored too."""
    import asyncio

    ids = ["a", "b", "c"]
    store, calls = slow_upsert_block_store(str(tmp_path / "m"), ids, monkeypatch, 0.05)
    store.gather_s = 30.0
    key = (id(store._col("a", "counselor")), "counselor")
    store.gather_wait(key, "x1", time.monotonic() - 0.4)  # other clients' writes 200 ms apart: the first batch waits
    store.gather_wait(key, "x2", time.monotonic() - 0.2)
    for cid in ids:
        store.search(cid, "counselor", "x")

    async def go() -> list[str]:
        first = asyncio.create_task(store.aadd("a", "counselor", [{"text": "a one", "kind": "fact", "session": 1}], embeddings=store.embed(["a one"])))
        await asyncio.sleep(0.05)
        first.cancel()
        rest = [asyncio.create_task(store.aadd(c, "counselor", [{"text": f"{c} one", "kind": "fact", "session": 1}], embeddings=store.embed([f"{c} one"]))) for c in ("b", "c")]
        out = await asyncio.wait_for(asyncio.gather(*rest), 20)
        with pytest.raises(asyncio.CancelledError):
            await first
        return [i for ids_ in out for i in ids_]

    assert len(asyncio.run(go())) == 2
    assert calls == [3]  # all three clients joined: sent at once, one upsert
    assert [x["text"] for x in store.list("a", "counselor")] == ["a one"]


def test_a_bad_item_on_the_loop_fails_only_its_writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch whose upsert fails on one writer's item: each writer then sends its own
    part, so only the bad one raises (as on the threaded path)."""
    import asyncio

    ids = ["a", "b", "z"]
    store, calls = slow_upsert_block_store(str(tmp_path / "m"), ids, monkeypatch, 0.0)
    store.add("z", "counselor", [{"text": "z first", "kind": "fact", "session": 1}], embeddings=store.embed(["z first"]))  # the collection's dimension
    store.release("z")
    store.gather_s = 30.0
    for cid in ids[:2]:
        store.search(cid, "counselor", "x")

    async def go() -> list[object]:
        good = store.aadd("a", "counselor", [{"text": "a fine", "kind": "fact", "session": 1}], embeddings=store.embed(["a fine"]))
        bad = store.aadd("b", "counselor", [{"text": "b odd", "kind": "fact", "session": 1}], embeddings=[[float("nan")] * 3])  # wrong dimension
        return list(await asyncio.gather(good, bad, return_exceptions=True))

    good, bad = asyncio.run(go())
    assert isinstance(good, list) and len(good) == 1
    assert isinstance(bad, Exception)
    assert calls[0] == 1 and sorted(calls[1:]) == [1, 1]  # the batch could not be sent whole: each writer sent its own part
    assert [x["text"] for x in store.list("a", "counselor")] == ["a fine"]
    assert store.list("b", "counselor") == []


def test_a_write_on_the_loop_takes_a_held_collection_without_a_memory_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``aadd`` needs its collection's handle: the first write of a block opens it on the
    memory pool; a later write finds the handle this store holds on the loop, so only
    its upsert runs on the pool (one memory-thread call per write, not two). The
    client's use of its block is recorded either way (a released client's next write
    keeps its block open), and a held ``_lock`` sends the lookup to the pool."""
    import asyncio

    from therasim.memory.pool import memory_pool

    store = _store(tmp_path, gather_s=0.0)
    store.assign_blocks(["a", "b"], 4)
    real_submit = memory_pool().submit
    submitted: list[str] = []

    def counting_submit(fn: Any, *a: Any) -> Any:
        submitted.append(getattr(fn, "args", ("",))[0].__class__.__name__)
        return real_submit(fn, *a)

    monkeypatch.setattr(memory_pool(), "submit", counting_submit)

    async def write(cid: str, text: str) -> list[str]:
        return await store.aadd(cid, "counselor", [{"text": text, "kind": "fact", "session": 1}], embeddings=store.embed([text]))

    asyncio.run(write("a", "a sleeps badly"))
    assert len(submitted) == 2  # the block opened, then the upsert
    submitted.clear()
    asyncio.run(write("a", "a walks daily"))
    assert len(submitted) == 1  # the upsert only
    store.release("a")
    assert "a" not in store._blocks[0].users
    submitted.clear()
    asyncio.run(write("a", "a reads at night"))
    assert len(submitted) == 1 and "a" in store._blocks[0].users
    with store._lock:  # another thread inside _col: the loop does not wait for it
        assert store._held_col("a", "counselor") is None
    submitted.clear()
    asyncio.run(write("b", "b sleeps well"))  # b's first write, its block held: on the loop too
    assert len(submitted) == 1 and store._blocks[0].users == {"a", "b"}
    assert [x["text"] for x in store.list("a", "counselor")] == ["a sleeps badly", "a walks daily", "a reads at night"]
    assert store.upserts == 4
    store.close()
