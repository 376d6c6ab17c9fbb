"""The recall mirror gives the same answers as Chroma's own query, stays in step
with writes and deletes, and keeps roles apart."""

from __future__ import annotations

import random

import pytest

from therasim.memory import ChromaMemoryStore
from therasim.memory.chroma import _match
from therasim.testing import HashEmbedding

WORDS = "sleep work shift mother drink panic train exam grief money friend walk diary breathing anger guilt".split()


@pytest.fixture
def stores(tmp_path):
    path = str(tmp_path / "mem")
    cached = ChromaMemoryStore.persistent(path, HashEmbedding())
    direct = ChromaMemoryStore.persistent(path, HashEmbedding(), cache=False)
    return cached, direct


def _items(rng: random.Random, n: int) -> list[dict]:
    kinds = ["summary", "fact", "homework", "event", "risk", "plan"]
    return [{"text": " ".join(rng.sample(WORDS, 4)) + f" {i}", "kind": rng.choice(kinds), "session": rng.randint(1, 5), "id": f"m{i}"} for i in range(n)]


@pytest.mark.parametrize("where", [None, {"session": {"$lt": 3}}, {"kind": "fact"}, {"session": {"$gte": 2}, "kind": {"$in": ["fact", "plan"]}}, {"$or": [{"session": 1}, {"kind": "risk"}]}])
def test_mirror_matches_chroma_query(stores, where):
    cached, direct = stores
    rng = random.Random(3)
    cached.add("c1", "counselor", _items(rng, 60))
    for q in ("sleep after shift", "panic on the train", "money worries and guilt"):
        a = cached.search("c1", "counselor", q, k=5, where=where)
        b = direct.search("c1", "counselor", q, k=5, where=where)
        assert [x["score"] for x in a] == pytest.approx([x["score"] for x in b], abs=1e-3)
        assert {x["id"] for x in a if x["score"] > (a[-1]["score"] + 1e-3)} <= {x["id"] for x in b}
        assert all(_match(x, where) for x in a)


def test_mirror_follows_writes_and_deletes(stores, tmp_path):
    cached, _ = stores
    cached.add("c2", "counselor", [{"text": "sleep diary every night", "kind": "homework", "session": 1}])
    assert cached.search("c2", "counselor", "sleep diary")[0]["text"] == "sleep diary every night"  # loads the mirror
    cached.add("c2", "counselor", [{"text": "panic on trains", "kind": "fact", "session": 2}])
    assert cached.search("c2", "counselor", "panic trains", k=1)[0]["text"] == "panic on trains"  # write seen
    cached.add("c2", "counselor", [{"id": cached.list("c2", "counselor", where={"session": 2})[0]["id"], "text": "panic on buses", "kind": "fact", "session": 2}])
    assert cached.search("c2", "counselor", "panic buses", k=1)[0]["text"] == "panic on buses"  # overwrite seen
    assert len(cached.search("c2", "counselor", "x", k=10)) == 2
    assert cached.search("c2", "client", "panic") == []  # roles apart
    cached.delete_client("c2")
    assert cached.search("c2", "counselor", "panic") == []
    # another store object on the same folder (as after a restart) loads from Chroma
    cached.add("c3", "client", [{"text": "I walked every day", "kind": "fact", "session": 1}])
    reopened = ChromaMemoryStore.persistent(str(tmp_path / "mem"), HashEmbedding())
    assert reopened.search("c3", "client", "walked")[0]["text"] == "I walked every day"


def test_unsupported_filter_falls_back_to_chroma(stores):
    cached, _ = stores
    cached.add("c4", "counselor", [{"text": "sleep", "kind": "fact", "session": 1}])
    # $contains-style document filters are not mirrored; the where goes to Chroma unchanged
    with pytest.raises(Exception):  # noqa: B017 - Chroma rejects the bogus operator itself
        cached.search("c4", "counselor", "sleep", where={"session": {"$bogus": 1}})


def test_bounded_hnsw_cache_keeps_every_write_and_new_clients_never_query_chroma(tmp_path):
    # at most two HNSW indexes loaded: writes to six clients' collections evict and
    # reload them; nothing written is lost
    store = ChromaMemoryStore.persistent(str(tmp_path / "m"), HashEmbedding(), hnsw_cache=2)
    assert store.client._server.hnsw_cache_size == 2
    for i in range(6):
        assert store.search(f"c{i}", "counselor", "sleep") == []  # a new client: mirrored as empty
        store.add(f"c{i}", "counselor", [{"text": f"sleeps badly {i}", "kind": "fact", "session": 1}])
        store.add(f"c{i}", "counselor", [{"text": f"walks daily {i}", "kind": "fact", "session": 2}])
    direct = ChromaMemoryStore(store.client, HashEmbedding(), cache=False)
    for i in range(6):
        assert store.search(f"c{i}", "counselor", "walks", k=1)[0]["text"] == f"walks daily {i}"  # mirror followed the writes
        assert {x["text"] for x in direct.search(f"c{i}", "counselor", "sleep", k=5)} == {f"sleeps badly {i}", f"walks daily {i}"}
    # a finished course's client is released: no mirror entry or handle left, data still there
    store.release("c0")
    from therasim.memory.chroma import _collection_name

    gone = {_collection_name("c0", r, store.scope) for r in ("counselor", "client")}
    assert not gone & set(store._cols) and not gone & set(store._mirror._d) and len(store._mirror._d) == 5
    assert store.search("c0", "counselor", "walks", k=1)[0]["text"] == "walks daily 0"  # reloaded from Chroma
