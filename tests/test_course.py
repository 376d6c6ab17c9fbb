"""Course graph on deterministic doubles and real Chroma: steps, records, threads,
ablations, determinism, resume, failures recorded, and the memory canary."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from langchain_core.messages import BaseMessage
from langgraph.checkpoint.memory import InMemorySaver

from therasim.config import CourseSpec
from therasim.context import SimContext
from therasim.errors import TherasimError
from therasim.graphs import (
    CourseGraphBuilder,
    course_builder,
    initial_course_state,
    preset,
    run_course,
)
from therasim.memory import ChromaMemoryStore
from therasim.nodes.events import draw_event
from therasim.nodes.planner import measured_trend
from therasim.profiles import example_profiles, sample_profiles
from therasim.providers import ModelPool
from therasim.testing import FunctionChatModel, HashEmbedding, SchemaFakeChatModel, client_turn_json

CANARY = "CANARY-51c2-CLIENTSIDE"


@pytest.fixture
def store(tmp_path):
    return ChromaMemoryStore.persistent(str(tmp_path / "mem"), HashEmbedding())


def _ctx(model: Any, store: Any = None, sessions: int = 3, turns: int = 2, **kw: Any) -> SimContext:
    return SimContext(models=ModelPool({"default": model}), course=CourseSpec(max_turns=turns, sessions=sessions), memory=store, **kw)


def _course(builder: CourseGraphBuilder, ctx: SimContext, profile=None, checkpointer=None, thread_id=None, sessions=3) -> dict[str, Any]:
    profile = profile or example_profiles()[0]
    g = builder.compile(checkpointer=checkpointer)
    return asyncio.run(run_course(g, initial_course_state(profile, sessions=sessions), ctx, thread_id=thread_id))


def test_course_runs_every_step_and_files_one_record_per_session(store):
    recs: list[dict[str, Any]] = []
    p = example_profiles()[0]
    p = p.model_copy(update={"initial_state": p.initial_state.model_copy(update={"wish_to_continue": 10.0})})  # attends every session
    out = _course(CourseGraphBuilder("full"), _ctx(SchemaFakeChatModel(seed=3), store, on_record=recs.append), profile=p)
    assert [r["session"] for r in recs] == [1, 2, 3]
    assert out["done"] is True
    for r in recs:
        assert r["turns"] and r["thread_id"] == f"adhoc/{r['client_id']}/s{r['session']}"
        m = r["measures"]
        assert set(m["phq9"]["items"]) == {"interest", "down", "sleep", "tired", "appetite", "failure", "concentration", "psychomotor", "self_harm"}
        assert len(m["gad7"]["items"]) == 7 and m["phq9"]["total"] == sum(m["phq9"]["items"].values())
        assert all(0 <= v <= 3 for v in m["phq9"]["items"].values())
        assert r["summary"]["themes"] and r["recollection"]["remembers"]
        assert r["memory_written"]["counselor"] and r["memory_written"]["client"]
    assert recs[0]["event_before"] is None and recs[1]["event_before"]["gap_days"] > 0
    assert recs[0]["plan"]["for_session"] == 2 and recs[2]["plan"] is None
    assert recs[2]["measures_after"]["when"] == "post-course" and recs[1]["measures_after"] is None
    # session 3 recalls older (session-1) counselor memories by relevance, with scores
    items = recs[2]["recall"]["counselor"]["items"]
    assert items and all(i["session"] == 1 and isinstance(i["score"], float) for i in items)
    # memory kinds land in the right role's collection
    counselor = store.list(out["client_id"], "counselor")
    assert {m["kind"] for m in counselor} <= {"summary", "fact"}
    # one note per session, holding the summary's risk and plan (nodes.recall.counselor_note)
    for r in recs:
        (note,) = [m for m in counselor if m["kind"] == "summary" and m["session"] == r["session"]]
        assert note["text"].startswith(f"Session {r['session']} note:") and f"Plan: {r['summary']['plan'].strip()}" in note["text"]
        assert f"Risk (peak {r['summary'].get('risk_peak', 'none')}): {r['summary']['risk'].strip()}" in note["text"]
    client = store.list(out["client_id"], "client")
    assert sorted(m["session"] for m in client if m["kind"] == "summary") == [1, 2, 3]
    assert any(m["kind"] == "event" for m in store.list(out["client_id"], "client"))


def test_session_threads_are_top_level_checkpoint_threads(store):
    saver = InMemorySaver()
    _course(CourseGraphBuilder("minimal"), _ctx(SchemaFakeChatModel(seed=1), store), checkpointer=saver, thread_id="adhoc/maria/course", sessions=2)
    threads = {c.config["configurable"]["thread_id"] for c in saver.list(None)}
    assert {"adhoc/maria/course", "adhoc/maria/s1", "adhoc/maria/s2"} <= threads
    nss = {c.config["configurable"].get("checkpoint_ns", "") for c in saver.list({"configurable": {"thread_id": "adhoc/maria/s1"}})}
    assert nss == {""}


def test_same_seed_same_profiles_and_events(store, tmp_path):
    assert [p.model_dump() for p in sample_profiles(6, seed=9)] == [p.model_dump() for p in sample_profiles(6, seed=9)]
    assert [p.model_dump() for p in sample_profiles(6, seed=9)] != [p.model_dump() for p in sample_profiles(6, seed=10)]
    draws = [draw_event(5, "c1", s) for s in range(2, 8)]
    assert draws == [draw_event(5, "c1", s) for s in range(2, 8)]
    assert draws != [draw_event(6, "c1", s) for s in range(2, 8)]

    def events(seed: int, path: str) -> list[Any]:
        st = ChromaMemoryStore.persistent(path, HashEmbedding())
        out = _course(CourseGraphBuilder("minimal"), _ctx(SchemaFakeChatModel(seed=2), st, seed=seed), sessions=4)
        return out["events"]

    a, b, c = events(1, str(tmp_path / "a")), events(1, str(tmp_path / "b")), events(2, str(tmp_path / "c"))
    assert a == b and len(a) == 3
    assert [(e["gap_days"], e["beat"]) for e in a] != [(e["gap_days"], e["beat"]) for e in c]


def test_ablations_are_one_line(store):
    recs: list[dict[str, Any]] = []
    b = CourseGraphBuilder(preset("minimal")).without("memory", "events", "measures")
    assert b.order == ["session", "summarise_counselor", "summarise_client", "planner"]
    _course(b, _ctx(SchemaFakeChatModel(seed=4), store, on_record=recs.append), sessions=2)
    assert all(r["recall"] is None and r["event_before"] is None and r["measures"] is None for r in recs)
    assert store.list(recs[0]["client_id"], "counselor") == []

    seen = []

    def my_planner(view, ctx):
        seen.append(view["session"])
        return {"goals": [f"custom goal {view['session']}"]}

    recs.clear()
    b2 = CourseGraphBuilder("minimal").without("memory").replace_step("planner", my_planner)
    _course(b2, _ctx(SchemaFakeChatModel(seed=4), store, on_record=recs.append), sessions=2)
    assert seen == [1, 2] and recs[1]["goals"] == ["custom goal 1"]
    spec = CourseSpec(events=False, planner=False, memory=False, measures=True)
    assert course_builder(spec).order == ["measures", "session", "summarise_counselor", "summarise_client", "session_measures", "closing_measures"]
    with pytest.raises(TherasimError, match="unknown course step or group 'memroy'"):
        CourseGraphBuilder().without("memroy")
    with pytest.raises(TherasimError, match="cannot be removed"):
        CourseGraphBuilder().remove_step("session")


def test_custom_step_with_a_view(store):
    def counselor_audit(view, ctx):
        assert "inner" not in view  # counselor side: no hidden state
        with pytest.raises(KeyError):
            view["profile"]
        return {}

    b = CourseGraphBuilder("minimal").without("memory").add_step("audit", counselor_audit, side="counselor", after="session")
    assert b.order.index("audit") == b.order.index("session") + 1
    _course(b, _ctx(SchemaFakeChatModel(seed=5), store), sessions=1)


def _scripted(fail: set[str] | None = None, canary_in_recollection: bool = False):
    fail = fail or set()
    prompts: list[tuple[str, str]] = []

    def reply(messages: list[BaseMessage], kw: dict[str, Any]) -> str:
        system = "\n".join(str(m.content) for m in messages)
        text = "\n".join(str(m.content) for m in messages)
        prompts.append((system[:40], text))
        if "filling in two questionnaires" in system:
            if "measures" in fail:
                return "not json at all"
            return json.dumps({f: 1 for f in ("phq_interest", "phq_down", "phq_sleep", "phq_tired", "phq_appetite", "phq_failure", "phq_concentration", "phq_psychomotor", "phq_self_harm", "gad_nervous", "gad_cant_stop_worry", "gad_worry_too_much", "gad_trouble_relaxing", "gad_restless", "gad_irritable", "gad_afraid")})
        if "private notes after session" in system:
            return json.dumps({"themes": ["sleep", "work stress"], "progress": "talked about night shifts and sleep", "homework": "sleep diary", "risk": "none observed", "plan": "review the sleep diary", "facts": ["works night shifts"]})
        if "thinking back on counseling session" in system:
            extra = f" {CANARY}" if canary_in_recollection and CANARY in text else ""
            return json.dumps({"remembers": "we talked about my sleep" + extra, "feels": "a bit lighter", "homework": "sleep diary"})
        if "clinical supervisor" in system:
            if "planner" in fail:
                return json.dumps({"efficacy": "improving", "decision": "switch", "modality": "hypnosis", "reason": "x", "goals": ["g"]})
            return json.dumps({"efficacy": "unclear", "decision": "keep", "modality": "cbt", "reason": "too early to tell", "goals": ["sleep diary review"]})
        if "role-playing a CLIENT" in system:
            return client_turn_json("I still sleep badly after my shifts.", wants_to_end=False)
        return "What did you notice about your sleep this week?"

    return FunctionChatModel(fn=reply), prompts


def test_invalid_outputs_are_recorded_not_defaulted(store):
    model, _ = _scripted(fail={"measures", "planner"})
    recs: list[dict[str, Any]] = []
    _course(CourseGraphBuilder("minimal"), _ctx(model, store, on_record=recs.append), sessions=2)
    m = recs[0]["measures"]
    assert m["phq9"] is None and "MeasuresAnswer invalid after 3 attempts" in m["error"]
    plan = recs[0]["plan"]
    assert "CoursePlan invalid" in plan["error"] and plan["modality"] == "cbt" and plan["decision"] == "keep"
    assert any(c.get("errors") for c in plan["calls"])


def test_memory_canary_stays_client_side(store):
    """A canary in the hidden profile and in client-side memory never reaches a
    counselor prompt, and counselor recall never returns client memories."""
    p = example_profiles()[0]
    p = p.model_copy(update={"hidden": p.hidden.model_copy(update={"backstory": f"{p.hidden.backstory} {CANARY}"})})
    store.add(p.id, "client", [{"text": f"I never told anyone about {CANARY} and sleep", "kind": "fact", "session": 0}])
    model, _ = _scripted(canary_in_recollection=True)
    by_side: dict[str, list[str]] = {"client": [], "counselor": [], "system": []}
    recs: list[dict[str, Any]] = []
    ctx = _ctx(model, store, on_record=recs.append, on_prompt=lambda node, side, msgs: by_side[side].append("\n".join(str(m.content) for m in msgs)))
    _course(CourseGraphBuilder("full"), ctx, profile=p, sessions=3)
    assert by_side["counselor"] and not any(CANARY in t for t in by_side["counselor"])
    assert any(CANARY in t for t in by_side["client"])  # the canary was reachable: the test can fail
    assert any(CANARY in m["text"] for m in store.list(p.id, "client"))
    for r in recs:
        rc = (r["recall"] or {}).get("counselor") or {}
        assert not any(CANARY in i["text"] for i in rc.get("items", []))
        for t in r["turns"]:
            assert not any(CANARY in i["text"] for i in (t.get("recalled") or []))
    for q in (CANARY, "sleep", "I never told anyone"):
        assert all(CANARY not in m["text"] for m in store.search(p.id, "counselor", q, k=50))


def test_resume_continues_an_interrupted_session(store):
    """A crash in session 2 leaves session 1 finished; the rerun does not redo it and
    continues session 2 from its last checkpoint."""
    saver = InMemorySaver()
    calls = {"n": 0, "crash_at": None}
    model, _prompts = _scripted()

    def crashing(messages: list[BaseMessage], kw: dict[str, Any]) -> str:
        calls["n"] += 1
        if calls["crash_at"] is not None and calls["n"] == calls["crash_at"]:
            raise RuntimeError("simulated crash")
        return model.fn(messages, kw)

    recs: list[dict[str, Any]] = []
    # count calls of a clean 1-session run to aim the crash inside session 2's second exchange
    ctx = _ctx(FunctionChatModel(fn=crashing), store, on_record=recs.append)
    g = CourseGraphBuilder("minimal").compile(checkpointer=saver)
    calls["crash_at"] = 10**9
    asyncio.run(run_course(CourseGraphBuilder("minimal").compile(), initial_course_state(example_profiles()[1], sessions=1), _ctx(FunctionChatModel(fn=crashing), None)))
    per_session = calls["n"]
    calls.update(n=0, crash_at=per_session + 4)
    with pytest.raises(RuntimeError, match="simulated crash"):
        asyncio.run(run_course(g, initial_course_state(example_profiles()[0], sessions=2), ctx, thread_id="adhoc/maria/course"))
    assert [r["session"] for r in recs] == [1]
    sg = CourseGraphBuilder("minimal").session.compile(checkpointer=saver)
    s2 = asyncio.run(sg.aget_state({"configurable": {"thread_id": "adhoc/maria/s2"}}))
    assert s2.values["exchange"] >= 1 and s2.next
    done_exchanges = s2.values["exchange"]
    calls.update(n=0, crash_at=None)
    out = asyncio.run(run_course(g, None, ctx, thread_id="adhoc/maria/course"))
    assert out["done"] and [r["session"] for r in recs] == [1, 2]
    assert calls["n"] < per_session  # session 1 not redone, session 2 not restarted
    assert [t["exchange"] for t in recs[1]["turns"] if t["speaker"] == "client"][:done_exchanges] == list(range(done_exchanges))
    # a finished course returns without running anything
    calls["n"] = 0
    asyncio.run(run_course(g, None, ctx, thread_id="adhoc/maria/course"))
    assert calls["n"] == 0


def test_measured_trend():
    def m(phq: int, gad: int) -> dict[str, Any]:
        return {"phq9": {"total": phq}, "gad7": {"total": gad}}

    assert measured_trend([m(15, 10)])["label"] == "unclear"
    assert measured_trend([m(15, 10), m(9, 9)])["label"] == "improving"
    assert measured_trend([m(5, 5), m(11, 6)])["label"] == "worsening"
    assert measured_trend([m(10, 10), {"phq9": None}, m(12, 8)])["label"] == "no_change"
