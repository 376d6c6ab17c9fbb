"""Chroma memory layouts: "shared" (one collection per run scope and role, the client
in metadata and in every read's filter) answers exactly what "per-client" (one
collection per client and role, runs made before it) answers; runs record their
layout, and runs made before the record keep theirs on resume, inspect and fork."""

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


def _answers(store: ChromaMemoryStore) -> list[Any]:
    out: list[Any] = []
    for cid in CLIENTS:
        for role in ("counselor", "client"):
            out.append(sorted((x["id"], x["text"]) for x in store.list(cid, role)))
            for f in FILTERS:
                for q in ("sleep after the night shift", "money and guilt", "walk with a friend"):
                    out.append([(x["id"], x["text"], x["client_id"], x["role"], round(x["score"], 3)) for x in store.search(cid, role, q, k=5, where=f)])
    return out


def test_shared_layout_recalls_what_the_per_client_layout_recalls(tmp_path: Path) -> None:
    answers = {}
    for layout in ("shared", "per-client"):
        path = str(tmp_path / layout)
        _fill(ChromaMemoryStore.persistent(path, HashEmbedding(), layout=layout, scope="run-a"))
        for cache in (True, False):  # the recall mirror, and Chroma's own filtered query
            answers[layout, cache] = _answers(ChromaMemoryStore.persistent(path, HashEmbedding(), layout=layout, scope="run-a", cache=cache))
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


def _collections(rd: Any) -> list[str]:
    c = ChromaMemoryStore.persistent(str(rd.memory), HashEmbedding()).client
    return sorted(col.name for col in c.list_collections())


def test_runs_record_their_layout_and_older_runs_keep_theirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from therasim import memory
    from therasim.native import OpenRun
    from therasim.runner import resume, start_run
    from therasim.traces import fork

    monkeypatch.setattr(memory, "make_embedding", lambda spec: HashEmbedding())
    cfg = {"course": {"preset": "minimal", "sessions": 2, "max_turns": 2}, "memory": {"embedding": "hash"}, "seed": 5}
    models = {"default": FunctionChatModel(fn=reply)}
    runs = {}
    for layout in ("shared", "legacy"):
        rd, _ = start_run(cfg, sample=3, out=tmp_path / layout, models=models)
        if layout == "legacy":  # a run made before the manifest recorded a layout
            man = json.loads(rd.manifest_path.read_text())
            del man["memory_layout"]
            rd.manifest_path.write_text(json.dumps(man))
        assert resume(rd.root, models=models).ok
        runs[layout] = rd
    assert runs["shared"].manifest()["memory_layout"] == "shared"
    assert [n.split("-")[0] for n in _collections(runs["shared"])] == ["run", "run"]
    assert len(_collections(runs["legacy"])) == 6 and all(n.startswith("m-") for n in _collections(runs["legacy"]))
    # the same cohort, seed and model: the same memories recalled in session 2 under either layout
    # (ids name the run's course key, so they differ between the runs; the rest must not)
    recalled = {k: {r["client_id"]: re.sub(r'"id": "[0-9a-f]+", ', "", json.dumps(r["recall"], sort_keys=True)) for r in rd.records() if r["session"] == 2} for k, rd in runs.items()}
    assert len(recalled["shared"]) == 3 and recalled["shared"] == recalled["legacy"]
    assert all(json.loads(r)["client"]["items"] for r in recalled["shared"].values())
    for rd in runs.values():
        cid = rd.records()[0]["client_id"]
        with OpenRun(rd.root, models=models) as opened:
            assert opened.context.memory.list(cid, "counselor")  # an opened run reads its own layout
        rec = fork(rd, cid, 2, 1, models=models, branch="again")
        assert rec["turns"]
    assert _collections(runs["legacy"])[0].startswith("m-") and len(_collections(runs["legacy"])) == 6  # nothing moved
