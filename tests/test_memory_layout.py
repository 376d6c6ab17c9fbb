"""Chroma memory layouts: "shared" (one collection per run scope and role, the client
in metadata and in every read's filter) and "blocks" (the shared layout once per
block of clients, each block an embedded Chroma closed when none of its clients is
in use) answer exactly what "per-client" (one collection per client and role, runs
made before them) answers; runs record their layout, and runs made before the
record keep theirs on resume, inspect and fork."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pytest
from _run_target import reply

from therasim.memory import ChromaMemoryStore, MemoryFilter
from therasim.testing import FunctionChatModel, HashEmbedding

WORDS = "sleep work shift mother drink panic train exam grief money friend walk diary breathing anger guilt".split()
KINDS = ["summary", "fact", "homework", "event", "risk", "plan"]
CLIENTS = [f"c{i}" for i in range(12)]
FILTERS = [None, MemoryFilter(session_before=3), MemoryFilter(session=2, kinds=("fact", "plan", "summary")), MemoryFilter(course="r1")]


def _fill(store: ChromaMemoryStore) -> None:
    rng = random.Random(7)
    for cid in CLIENTS:
        for role in ("counselor", "client"):
            n = rng.randint(0, 14)  # some clients have fewer memories than k, one none
            items = [{"text": " ".join(rng.sample(WORDS, 4)) + f" {role} {i}", "kind": rng.choice(KINDS), "session": rng.randint(1, 4), "course": f"r{i % 2}"} for i in range(n)]
            for it in items[: n // 3]:
                it["id"] = f"m{items.index(it)}"  # explicit ids, the same for every client
            store.add(cid, role, items)
        store.release(cid)  # as the runner does when a course ends (blocks: its block may close)


def _answers(store: ChromaMemoryStore) -> list[Any]:
    out: list[Any] = []
    for cid in CLIENTS:
        for role in ("counselor", "client"):
            out.append(sorted((x["id"], x["text"]) for x in store.list(cid, role)))
            for f in FILTERS:
                for q in ("sleep after the night shift", "money and guilt", "walk with a friend"):
                    out.append([(x["id"], x["text"], x["client_id"], x["role"], round(x["score"], 3)) for x in store.search(cid, role, q, k=5, where=f)])
        store.release(cid)
    return out


def _store(path: str, layout: str, **kw: Any) -> ChromaMemoryStore:
    store = ChromaMemoryStore.persistent(path, HashEmbedding(), layout=layout, scope="run-a", **({"open_blocks": 1} if layout == "blocks" else {}), **kw)
    if layout == "blocks":
        store.assign_blocks(CLIENTS[:10], 3)  # four blocks of the cohort, c10 and c11 outside it ("extra")
    return store


def test_shared_layout_recalls_what_the_per_client_layout_recalls(tmp_path: Path) -> None:
    answers = {}
    for layout in ("shared", "blocks", "per-client"):
        path = str(tmp_path / layout)
        filled = _store(path, layout)
        _fill(filled)
        for cache in (True, False):  # the recall mirror, and Chroma's own filtered query
            reader = _store(path, layout, cache=cache)
            answers[layout, cache] = _answers(reader)
            if layout == "blocks":  # blocks were closed as their clients were released, and reopened to read
                assert reader.blocks_opened == 5 and len(reader._blocks) == 1
        if layout == "blocks":
            assert filled.blocks_opened == 5 and filled.blocks_closed == 4 and len(filled._blocks) == 1
            assert sorted(p.name for p in next(Path(path).glob("blocks-*")).iterdir()) == ["00000", "00001", "00002", "00003", "extra"]
    first = answers["per-client", True]
    assert sum(len(a) for a in first) > 500  # the comparison covers many items
    assert any(0 < len(a) < 5 for a in first[1:]) and any(len(a) == 5 for a in first[1:])  # fewer than k and k results
    for key, a in answers.items():
        assert a == first, key
    # every answer is the asked client's and role's own (double-blind, no other client)
    store = ChromaMemoryStore.persistent(str(tmp_path / "shared"), HashEmbedding(), scope="run-a")
    for cid in CLIENTS:
        for role in ("counselor", "client"):
            assert all(x["client_id"] == cid and x["role"] == role for x in store.list(cid, role))
    c = store.client
    assert len(c.list_collections()) == 2  # one per role, whatever the number of clients
    # another scope on the same store sees nothing; deleting one client leaves the others
    assert ChromaMemoryStore(c, HashEmbedding(), scope="run-b").list("c1", "counselor") == []
    n1 = len(store.list("c1", "counselor"))
    store.delete_client("c0")
    assert store.list("c0", "counselor") == [] and store.search("c0", "client", "sleep") == []
    assert len(store.list("c1", "counselor")) == n1 > 0


def test_unknown_layout_is_named() -> None:
    with pytest.raises(Exception, match=r"memory layout 'flat'.*shared"):
        ChromaMemoryStore(None, HashEmbedding(), layout="flat")
    with pytest.raises(Exception, match=r"'blocks' is for embedded Chroma"):
        ChromaMemoryStore(None, HashEmbedding(), layout="blocks")  # a server's client: no folder for blocks


def test_blocks_stay_open_while_a_client_is_in_use_across_threads(tmp_path: Path) -> None:
    """Many threads write and read clients of few blocks with at most one idle block
    open: a block is never closed under a client in use, and nothing is lost."""
    from concurrent.futures import ThreadPoolExecutor

    ids = [f"k{i}" for i in range(24)]
    store = ChromaMemoryStore.persistent(str(tmp_path / "b"), HashEmbedding(), layout="blocks", scope="s", open_blocks=1)
    store.assign_blocks(ids, 4)

    def course(cid: str) -> list[str]:
        for s in (1, 2):
            store.search(cid, "counselor", "sleep", k=3)
            store.add(cid, "counselor", [{"text": f"{cid} sleeps badly {s}", "kind": "fact", "session": s}, {"text": f"{cid} walks {s}", "kind": "plan", "session": s}])
            store.add(cid, "client", [{"text": f"{cid} felt heard {s}", "kind": "summary", "session": s}])
        got = sorted(x["text"] for x in store.list(cid, "counselor")) + [x["text"] for x in store.search(cid, "client", "heard", k=5)]
        store.release(cid)
        return got

    with ThreadPoolExecutor(6) as ex:
        got = list(ex.map(course, ids))
    for cid, g in zip(ids, got, strict=True):
        assert g[:4] == sorted(f"{cid} {t} {s}" for t in ("sleeps badly", "walks") for s in (1, 2)) and sorted(g[4:]) == [f"{cid} felt heard 1", f"{cid} felt heard 2"]
    assert len(store._blocks) <= 1 and store.blocks_closed >= 5
    fresh = ChromaMemoryStore.persistent(str(tmp_path / "b"), HashEmbedding(), layout="blocks", scope="s", cache=False)
    fresh.assign_blocks(ids, 4)
    assert all(len(fresh.list(cid, "counselor")) == 4 and len(fresh.list(cid, "client")) == 2 for cid in ids)
    fresh.delete_client("k5")
    assert fresh.list("k5", "counselor") == [] and len(fresh.list("k6", "counselor")) == 4


def _collections(rd: Any) -> list[str]:
    c = ChromaMemoryStore.persistent(str(rd.memory), HashEmbedding()).client
    return sorted(col.name for col in c.list_collections())


def _blocks(rd: Any) -> dict[str, list[str]]:
    import chromadb

    out = {}
    settings = ChromaMemoryStore.persistent(str(rd.memory), HashEmbedding())._settings  # a folder open in this process: the same settings
    for d in sorted(rd.memory.glob("blocks-*/*")):
        c = chromadb.PersistentClient(path=str(d), settings=settings)
        out[d.name] = sorted(col.name.split("-")[0] + "-" + col.name.split("-")[-1] for col in c.list_collections())
        c.close()
    return out


def test_runs_record_their_layout_and_older_runs_keep_theirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from therasim import memory
    from therasim.native import OpenRun
    from therasim.runner import resume, start_run
    from therasim.traces import fork

    monkeypatch.setattr(memory, "make_embedding", lambda spec: HashEmbedding())
    cfg = {"course": {"preset": "minimal", "sessions": 2, "max_turns": 2}, "memory": {"embedding": "hash"}, "seed": 5}
    models = {"default": FunctionChatModel(fn=reply)}
    runs = {}
    for layout in ("blocks", "shared", "legacy"):
        rd, _ = start_run(cfg, sample=3, out=tmp_path / layout, models=models)
        man = json.loads(rd.manifest_path.read_text())
        if layout == "legacy":  # a run made before the manifest recorded a layout
            del man["memory_layout"]
        elif layout == "shared":  # a run made before the blocks layout
            man["memory_layout"] = "shared"
            del man["memory_block_size"]
        else:
            man["memory_block_size"] = 2  # two blocks for three clients
        rd.manifest_path.write_text(json.dumps(man))
        assert resume(rd.root, models=models).ok
        runs[layout] = rd
    assert runs["blocks"].manifest()["memory_layout"] == "blocks"  # what new runs on embedded Chroma get
    assert _collections(runs["blocks"]) == [] and _blocks(runs["blocks"]) == {"00000": ["run-client", "run-counselor"], "00001": ["run-client", "run-counselor"]}
    assert [n.split("-")[0] for n in _collections(runs["shared"])] == ["run", "run"] and _blocks(runs["shared"]) == {}
    assert len(_collections(runs["legacy"])) == 6 and all(n.startswith("m-") for n in _collections(runs["legacy"]))
    # the same cohort, seed and model: the same memories recalled in session 2 under every layout
    # (ids name the run's course key, so they differ between the runs; the rest must not)
    recalled = {k: {r["client_id"]: re.sub(r'"id": "[0-9a-f]+", ', "", json.dumps(r["recall"], sort_keys=True)) for r in rd.records() if r["session"] == 2} for k, rd in runs.items()}
    assert len(recalled["shared"]) == 3 and recalled["shared"] == recalled["legacy"] == recalled["blocks"]
    assert all(json.loads(r)["client"]["items"] for r in recalled["shared"].values())
    for rd in runs.values():
        cid = rd.records()[0]["client_id"]
        with OpenRun(rd.root, models=models) as opened:
            assert opened.context.memory.list(cid, "counselor")  # an opened run reads its own layout
        rec = fork(rd, cid, 2, 1, models=models, branch="again")
        assert rec["turns"]
    assert _collections(runs["legacy"])[0].startswith("m-") and len(_collections(runs["legacy"])) == 6  # nothing moved


def test_a_second_store_opens_a_block_another_store_holds_open(tmp_path: Path) -> None:
    """Chroma's PersistentClient writes the folder into the settings it is given; each
    block's client gets its own copy, so a second store in the same process (``inspect``
    beside a run) opens a block the first still holds open, whichever it opened last."""
    ids = [f"k{i}" for i in range(8)]
    a = ChromaMemoryStore.persistent(str(tmp_path / "m"), HashEmbedding(), layout="blocks", scope="s", open_blocks=2)
    a.assign_blocks(ids, 4)
    a.add("k0", "counselor", [{"text": "k0 sleeps badly", "kind": "fact", "session": 1}])
    a.add("k4", "counselor", [{"text": "k4 walks", "kind": "plan", "session": 1}])  # opened last: another block
    assert len(a._blocks) == 2
    b = ChromaMemoryStore.persistent(str(tmp_path / "m"), HashEmbedding(), layout="blocks", scope="s", cache=False)
    b.assign_blocks(ids, 4)
    assert [x["text"] for x in b.list("k0", "counselor")] == ["k0 sleeps badly"]
    assert [x["text"] for x in b.list("k4", "counselor")] == ["k4 walks"]
