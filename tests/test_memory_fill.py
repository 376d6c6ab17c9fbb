"""The recall mirror filled from a store's own writes: the same bits as a mirror
loaded from Chroma, and no read of Chroma for a client whose memories are all this
store's writes (a block the store created)."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import numpy as np
import pytest

from therasim.memory import ChromaMemoryStore
from therasim.memory import chroma as chroma_mod
from therasim.memory.chroma import _collection_name
from therasim.memory.mirror import as_stored
from therasim.testing import HashEmbedding

WORDS = "sleep work shift mother drink panic train exam grief money friend walk diary breathing anger guilt".split()


def _vectors(rng: np.random.Generator, d: int) -> np.ndarray:
    n = 40
    sparse = rng.integers(0, 3, size=(n, d)) * (rng.random((n, d)) < 0.1) + (np.arange(d) == 0)
    raw = np.concatenate([rng.normal(size=(n, d)), sparse, rng.normal(size=(n, d)) * 10, rng.random((n, d)) * 1e-3 + 1e-6])
    unit = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    return np.concatenate([raw, unit]).astype("float32")


@pytest.mark.parametrize("d", [64, 384])
def test_as_stored_is_what_chroma_gives_back_bit_for_bit(tmp_path: Path, d: int) -> None:
    store = ChromaMemoryStore.persistent(str(tmp_path / "m"), HashEmbedding(), scope="run", layout="blocks")
    store.assign_blocks(["c"])
    vecs = _vectors(np.random.default_rng(d), d)
    items = [{"text": f"item {i}", "kind": "fact", "session": 1, "id": f"i{i}"} for i in range(len(vecs))]
    store.add("c", "counselor", items, embeddings=vecs)
    got = store._get("c", "counselor", None, ["embeddings"])
    order = np.argsort([int(i[1:]) for i in got["ids"]])
    back = np.asarray(got["embeddings"], dtype="float32")[order]
    assert not np.array_equal(back, vecs)  # Chroma does not give back what it was given...
    assert np.array_equal(as_stored(vecs).view(np.uint32), back.view(np.uint32))  # ...but exactly this
    assert as_stored(np.zeros((1, d), dtype="float32")) is None


def _items(rng: random.Random, session: int, n: int) -> list[dict]:
    kinds = ["summary", "fact", "homework", "risk", "plan"]
    return [{"text": " ".join(rng.sample(WORDS, rng.randint(3, 8))), "kind": rng.choice(kinds), "session": session, "course": "k", "id": f"s{session}-{i}"} for i in range(n)]


async def _write_cohort(store: ChromaMemoryStore, clients: list[str], sessions: int, vectors: np.random.Generator | None = None) -> None:
    rng = random.Random(7)

    async def course(cid: str) -> None:
        for s in range(1, sessions + 1):
            for role in ("counselor", "client"):
                items = _items(rng, s, rng.randint(2, 9))
                vecs = store.embed([it["text"] for it in items]) if vectors is None else vectors.normal(size=(len(items), 64)).astype("float32") * 10
                await store.aadd(cid, role, items, vecs)
            await asyncio.sleep(rng.random() * 0.01)

    await asyncio.gather(*(course(c) for c in clients))


def _recalls(store: ChromaMemoryStore, clients: list[str]) -> list:
    rng = random.Random(11)
    out = []
    for cid in clients:
        for role in ("counselor", "client"):
            for _ in range(6):
                q = " ".join(rng.sample(WORDS, 4))
                out.append(store.search(cid, role, q, k=4))
                out.append(store.search(cid, role, q, k=4, where={"session": {"$lt": 2}}))
    return out


def test_a_new_blocks_mirror_is_filled_from_writes_and_equals_chroma_bit_for_bit(tmp_path: Path) -> None:
    path = str(tmp_path / "m")
    clients = [f"c{i}" for i in range(12)]
    store = ChromaMemoryStore.persistent(path, HashEmbedding(), scope="run", layout="blocks")
    store.assign_blocks(clients)
    asyncio.run(_write_cohort(store, clients, sessions=2))
    filled = _recalls(store, clients)
    # one read checked the first filled entry against Chroma; no other recall read Chroma
    assert store.fill_checks == 1 and store.reads == 1 and store._fill_checked is True
    mats = {c: store._mirror.get(_collection_name(c, "counselor", "run")).mat.copy() for c in clients}
    store.close()
    # the same memories loaded from Chroma (a store on the existing folder reads them)
    loaded = ChromaMemoryStore.persistent(path, HashEmbedding(), scope="run", layout="blocks")
    loaded.assign_blocks(clients)
    again = _recalls(loaded, clients)
    assert loaded.reads == 2 * len(clients) and loaded.fill_checks == 0
    assert again == filled  # ids, texts, metadata and float scores: equal
    for c in clients:
        assert np.array_equal(loaded._mirror.get(_collection_name(c, "counselor", "run")).mat.view(np.uint32), mats[c].view(np.uint32))


def test_a_recall_before_any_write_reads_nothing_and_later_writes_are_seen(tmp_path: Path) -> None:
    store = ChromaMemoryStore.persistent(str(tmp_path / "m"), HashEmbedding(), scope="run", layout="blocks")
    store.assign_blocks(["a", "b"])
    store.add("b", "client", [{"text": "opens the block", "kind": "fact", "session": 1}])
    reads = store.reads
    assert store.search("a", "counselor", "sleep") == []
    assert store.reads == reads  # a client of a block this store made, never written: nothing to read
    assert "a" in store._blocks[0].users  # in use of its block, as a read would have made it (group commit counts them)
    store.add("a", "counselor", [{"text": "sleeps badly after shifts", "kind": "fact", "session": 1}])
    assert store.search("a", "counselor", "sleep", k=1)[0]["text"] == "sleeps badly after shifts"


def test_released_and_existing_blocks_clients_are_read_from_chroma(tmp_path: Path) -> None:
    path = str(tmp_path / "m")
    store = ChromaMemoryStore.persistent(path, HashEmbedding(), scope="run", layout="blocks", open_blocks=0)
    store.assign_blocks(["a", "b"], block_size=1)
    store.add("a", "counselor", [{"text": "walks daily", "kind": "fact", "session": 1}])
    store.release("a")  # its entry dropped, its block closed: a later write is not the first
    store.add("a", "counselor", [{"text": "sleeps badly", "kind": "fact", "session": 2}])
    assert {x["text"] for x in store.search("a", "counselor", "walks sleeps", k=5)} == {"walks daily", "sleeps badly"}
    # a second store on the existing folder reads what is there
    other = ChromaMemoryStore.persistent(path, HashEmbedding(), scope="run", layout="blocks")
    other.assign_blocks(["a", "b"], block_size=1)
    assert {x["text"] for x in other.search("a", "counselor", "walks sleeps", k=5)} == {"walks daily", "sleeps badly"}
    assert other.reads == 1


def test_a_chroma_that_keeps_vectors_otherwise_turns_filling_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chroma_mod, "as_stored", lambda v: np.asarray(v, dtype="float32"))  # the written vectors, not Chroma's
    path = str(tmp_path / "m")
    clients = [f"c{i}" for i in range(6)]
    store = ChromaMemoryStore.persistent(path, HashEmbedding(), scope="run", layout="blocks")
    store.assign_blocks(clients)
    asyncio.run(_write_cohort(store, clients, sessions=2, vectors=np.random.default_rng(5)))  # vectors Chroma changes
    got = _recalls(store, clients)
    assert store._fill_checked is False and store.reads > len(clients)  # the rest loaded from Chroma
    store.close()
    loaded = ChromaMemoryStore.persistent(path, HashEmbedding(), scope="run", layout="blocks")
    loaded.assign_blocks(clients)
    assert _recalls(loaded, clients) == got
