"""Integration: a 3-session course on the embedded model (llama.cpp + SmolLM2-135M)
with real Chroma memory and the real MiniLM embedding."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from therasim.config import CourseSpec, ModelSpec
from therasim.context import SimContext
from therasim.graphs import CourseGraphBuilder, initial_course_state, run_course
from therasim.memory import ChromaMemoryStore, MiniLMEmbedding
from therasim.profiles import example_profiles
from therasim.providers import ModelPool

pytestmark = pytest.mark.embedded
CANARY = "CANARY-course-3b7d"


def test_three_session_course_recalls_a_session_one_memory_by_relevance(tmp_path) -> None:
    emb = MiniLMEmbedding()
    store = ChromaMemoryStore.persistent(str(tmp_path / "memory"), emb)
    p = example_profiles()[1]
    # in the surface layer: disclosed from the first turn (deeper layers unlock later: policies/disclosure.py)
    p = p.model_copy(update={"hidden": p.hidden.model_copy(update={"personality": f"{p.hidden.personality} {CANARY}"})})
    records: list[dict[str, Any]] = []
    prompts: list[tuple[str, str, str]] = []
    k = 2
    ctx = SimContext(
        models=ModelPool({"default": ModelSpec(sampling={"seed": 11})}),
        course=CourseSpec(max_turns=2, sessions=3),
        memory=store,
        recall_k=k,
        seed=11,
        on_record=records.append,
        on_prompt=lambda node, side, msgs: prompts.append((node, side, "\n".join(str(m.content) for m in msgs))),
    )
    out = asyncio.run(run_course(CourseGraphBuilder("minimal").compile(), initial_course_state(p, sessions=3), ctx))
    assert out["done"] and [r["session"] for r in records] == [1, 2, 3]
    assert all(r["turns"] for r in records)

    # Session 3's start-of-session recall: session-1 counselor memories, ranked by relevance.
    trace = records[2]["recall"]["counselor"]
    items = trace["items"]
    assert items and all(i["session"] == 1 for i in items)
    pool = store.list(p.id, "counselor", where={"session": 1})
    assert len(pool) >= len(items)
    # Independent ranking: cosine between the query and every session-1 memory.
    q = np.asarray(emb([trace["query"]])[0])
    vecs = np.asarray(emb([m["text"] for m in pool]))
    sims = vecs @ q
    # Compared by similarity, not by id: the small model sometimes writes the same
    # memory text twice, and equal texts tie in any order.
    sim_of = {m["id"]: float(s) for m, s in zip(pool, sims, strict=True)}
    top = sorted((float(s) for s in sims), reverse=True)[: len(items)]
    assert np.allclose([sim_of[i["id"]] for i in items], top, atol=1e-5)
    assert [i["score"] for i in items] == sorted((i["score"] for i in items), reverse=True)

    # The recalled session-1 memory is in the session-3 counselor prompt.
    s3 = [t for node, side, t in prompts if node == "counselor" and "SESSION 3 GOALS" in t]
    assert s3 and all(items[0]["text"] in t for t in s3)

    # Double-blind with memory: the canary never reaches a counselor-side prompt and
    # counselor memory never holds it.
    assert not any(CANARY in t for _, side, t in prompts if side == "counselor")
    assert any(CANARY in t for _, side, t in prompts if side == "client")
    assert not any(CANARY in m["text"] for m in store.list(p.id, "counselor"))
    # Measures were answered from the model, item by item.
    for r in records:
        m = r["measures"]
        assert m is not None and (m.get("error") or len(m["phq9"]["items"]) == 9)
