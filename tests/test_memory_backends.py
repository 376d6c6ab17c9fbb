"""Memory backends by name, therasim's own recall filters (translated by the backend,
the same answers from the mirror and from Chroma), and a non-Chroma store driving a
whole run through the protocol alone."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import pytest

from therasim.config import MemorySpec, load_config
from therasim.errors import ConfigError
from therasim.memory import (
    MEMORY_BACKENDS,
    ChromaMemoryStore,
    MemoryFilter,
    MemoryStore,
    open_store,
    register_memory_backend,
)
from therasim.memory.chroma import chroma_where
from therasim.testing import HashEmbedding

WORDS = "sleep work shift mother drink panic train exam grief money friend walk diary breathing anger guilt".split()
KINDS = ["summary", "fact", "homework", "event", "risk", "plan"]


def _items(n: int) -> list[dict[str, Any]]:
    rng = random.Random(5)
    return [{"text": " ".join(rng.sample(WORDS, 4)) + f" {i}", "kind": rng.choice(KINDS), "session": rng.randint(1, 5), "course": f"r{i % 2}", "id": f"m{i}"} for i in range(n)]


FILTERS = [MemoryFilter(session_before=3), MemoryFilter(session=2), MemoryFilter(kinds=("fact", "plan"), session_before=4), MemoryFilter(course="r1", kinds=("risk",))]


@pytest.mark.parametrize("f", FILTERS, ids=lambda f: str(f.describe()))
def test_filters_are_translated_and_the_mirror_agrees_with_chroma(tmp_path: Path, f: MemoryFilter) -> None:
    items = _items(50)
    cached = ChromaMemoryStore.persistent(str(tmp_path / "mem"), HashEmbedding())
    direct = ChromaMemoryStore.persistent(str(tmp_path / "mem"), HashEmbedding(), cache=False)
    cached.add("c1", "counselor", [dict(it) for it in items])
    expected = {it["id"] for it in items if f.matches(it)}
    assert expected and len(expected) < len(items)  # the filter keeps some and drops some
    assert {x["id"] for x in direct.list("c1", "counselor", where=f)} == expected
    for q in ("sleep after shift", "money worries and guilt"):
        a = cached.search("c1", "counselor", q, k=6, where=f)
        b = direct.search("c1", "counselor", q, k=6, where=f)
        assert {x["id"] for x in a} <= expected and {x["id"] for x in b} <= expected
        assert [x["score"] for x in a] == pytest.approx([x["score"] for x in b], abs=1e-3)


def test_filter_translation_by_hand() -> None:
    assert chroma_where(MemoryFilter()) is None
    assert chroma_where(MemoryFilter(session_before=3)) == {"session": {"$lt": 3}}
    assert chroma_where(MemoryFilter(session_before=3, kinds=("fact",))) == {"$and": [{"session": {"$lt": 3}}, {"kind": {"$in": ["fact"]}}]}
    assert MemoryFilter(session_before=3, kinds=("fact",)).describe() == {"session_before": 3, "kinds": ["fact"]}
    with pytest.raises(ValueError, match="kinds"):
        MemoryFilter(kinds=("gossip",))


def test_nodes_do_not_speak_a_backends_filter_syntax() -> None:
    nodes = Path(__file__).resolve().parents[1] / "nodes"
    for f in nodes.glob("*.py"):
        assert not re.search(r"""["']\$(lt|lte|gt|gte|eq|ne|in|nin|and|or)["']""", f.read_text(encoding="utf-8")), f.name


class DictStore:
    """A whole MemoryStore in a dict: word-overlap scores, no Chroma."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        self.pending: list[Any] = []
        self.retried = 0
        self.searches: list[Any] = []

    def add(self, client_id: str, role: str, items: list[dict[str, Any]], embeddings: Any = None) -> list[str]:
        box = self.items.setdefault((client_id, role), {})
        for i, it in enumerate(items):
            box[str(it.get("id") or f"{len(box)}-{i}")] = {**it, "role": role, "client_id": client_id}
        return [str(it.get("id")) for it in items]

    def _pass(self, it: dict[str, Any], where: Any) -> bool:
        return where is None or where.matches(it)

    def search(self, client_id: str, role: str, query: str, k: int = 4, where: Any = None, embedding: Any = None) -> list[dict[str, Any]]:
        self.searches.append(where)
        words = set(query.lower().split())
        scored = [{**it, "score": len(words & set(it["text"].lower().split())) / (len(words) or 1)} for it in self.items.get((client_id, role), {}).values() if self._pass(it, where)]
        return sorted(scored, key=lambda it: -it["score"])[:k]

    def list(self, client_id: str, role: str, where: Any = None) -> list[dict[str, Any]]:
        return [it for it in self.items.get((client_id, role), {}).values() if self._pass(it, where)]

    def delete_client(self, client_id: str) -> None:
        for key in [k for k in self.items if k[0] == client_id]:
            del self.items[key]

    def embed(self, texts: list[str]) -> None:
        return None

    def release(self, client_id: str) -> None:
        pass

    def flush(self) -> int:
        return 0


def test_a_backend_registered_by_name_runs_a_course(tmp_path: Path) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from _run_target import reply

    from therasim.runner import check_names, run
    from therasim.testing import FunctionChatModel

    store = DictStore()
    assert isinstance(store, MemoryStore)
    register_memory_backend("dict-test", lambda spec, default_path, scope: store)
    try:
        assert open_store(MemorySpec(backend="dict-test")) is store and open_store(MemorySpec(backend="none")) is None
        cfg = {"course": {"preset": "minimal", "sessions": 3, "max_turns": 2}, "memory": {"backend": "dict-test"}, "seed": 4}
        res = run(cfg, sample=1, out=tmp_path, models={"default": FunctionChatModel(fn=reply)})
        assert res.ok
        assert store.items and all(it["session"] in (1, 2, 3) for box in store.items.values() for it in box.values())
        # the recall nodes asked in therasim's terms
        assert any(isinstance(w, MemoryFilter) and w.session_before is not None for w in store.searches)
    finally:
        MEMORY_BACKENDS.pop("dict-test", None)
    with pytest.raises(ConfigError, match=r"memory\.backend.*dict-test"):
        check_names(load_config({"memory": {"backend": "dict-test"}}))
