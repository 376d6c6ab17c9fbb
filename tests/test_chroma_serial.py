"""Calls into embedded Chroma run one at a time in the process; a Chroma server's
client is called freely (memory.chroma.EMBEDDED_CHROMA_LOCK: two threads inside
Chroma's Rust bindings at once can deadlock on the GIL and a Rust lock)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from therasim.memory.chroma import EMBEDDED_CHROMA_LOCK, ChromaMemoryStore
from therasim.memory.embeddings import HashEmbedding


class _Probe:
    """Counts the threads inside the fake Chroma at once."""

    def __init__(self, meet: threading.Barrier | None = None) -> None:
        self.lock = threading.Lock()
        self.inside = 0
        self.most = 0
        self.calls = 0
        self.meet = meet  # a server's client: queries wait here for another caller, proving overlap

    def enter(self, meet: bool = False) -> None:
        with self.lock:
            self.inside += 1
            self.calls += 1
            self.most = max(self.most, self.inside)
        if meet and self.meet is not None:
            self.meet.wait(timeout=10)
        else:
            time.sleep(0.005)  # long enough for another thread to come in if nothing keeps it out
        with self.lock:
            self.inside -= 1


class _Collection:
    def __init__(self, probe: _Probe) -> None:
        self.probe = probe

    def count(self) -> int:
        self.probe.enter()
        return 1

    def query(self, **kw: Any) -> dict[str, Any]:
        self.probe.enter(meet=True)
        return {"ids": [[]], "documents": [[]], "metadatas": [[]], "distances": [[]]}

    def upsert(self, **kw: Any) -> None:
        self.probe.enter()

    def get(self, **kw: Any) -> dict[str, Any]:
        self.probe.enter()
        return {"ids": [], "documents": [], "metadatas": [], "embeddings": []}


class _Settings:
    def __init__(self, impl: str) -> None:
        self.chroma_api_impl = impl


class _Client:
    def __init__(self, impl: str, probe: _Probe) -> None:
        self.impl = impl
        self.probe = probe

    def get_settings(self) -> _Settings:
        return _Settings(self.impl)

    def get_or_create_collection(self, name: str, **kw: Any) -> _Collection:
        self.probe.enter()
        return _Collection(self.probe)

    def get_collection(self, name: str, **kw: Any) -> _Collection:
        self.probe.enter()
        return _Collection(self.probe)


def _hammer(store: ChromaMemoryStore, threads: int) -> list[BaseException]:
    errors: list[BaseException] = []
    emb = HashEmbedding()

    def work(i: int) -> None:
        try:
            for j in range(3):
                store.search(f"c{i}", "client", "how was the week", k=2, embedding=emb([f"q{i}-{j}"])[0])
                store.add(f"c{i}", "client", [{"text": f"fact {i}-{j}", "session": 1}])
        except BaseException as e:  # reported below
            errors.append(e)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in ts), "a memory thread did not finish"
    return errors


@pytest.mark.parametrize("impl", ["chromadb.api.rust.RustBindingsAPI", "chromadb.api.segment.SegmentAPI"])
def test_embedded_chroma_calls_one_at_a_time(impl: str) -> None:
    probe = _Probe()
    store = ChromaMemoryStore(_Client(impl, probe), HashEmbedding(), cache=False, layout="per-client")
    assert _hammer(store, 8) == []
    assert probe.calls >= 8 * 3 * 2  # count, query and upsert of every thread reached the fake
    assert probe.most == 1, f"{probe.most} threads were inside embedded Chroma at once"


def test_embedded_chroma_waiter_releases_the_lock_holder() -> None:
    """A thread holding the lock (as a memory thread inside Chroma) keeps the others
    out until it leaves; they then run."""
    probe = _Probe()
    store = ChromaMemoryStore(_Client("chromadb.api.rust.RustBindingsAPI", probe), HashEmbedding(), cache=False, layout="per-client")
    done = threading.Event()

    def one() -> None:
        store.search("c1", "client", "q", k=1, embedding=HashEmbedding()(["q"])[0])
        done.set()

    with EMBEDDED_CHROMA_LOCK:
        t = threading.Thread(target=one)
        t.start()
        time.sleep(0.2)
        assert probe.calls == 0 and not done.is_set()
    t.join(timeout=10)
    assert done.is_set() and probe.calls >= 2


def test_server_client_calls_overlap() -> None:
    probe = _Probe(meet=threading.Barrier(2))
    store = ChromaMemoryStore(_Client("chromadb.api.fastapi.FastAPI", probe), HashEmbedding(), cache=False, layout="per-client")
    assert _hammer(store, 2) == []
    assert probe.most == 2  # the barrier only opens when two callers are inside at once
