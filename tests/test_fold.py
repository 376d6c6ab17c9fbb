"""Folded session graphs: bookkeeping and other ``fold`` nodes run in the superstep
of the node before them. Same transcript, same per-node outputs, same recorded
turn state as the unfolded graph, fewer checkpoints; runs checkpointed by an
unfolded graph continue under a folded one."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from therasim.config import CourseSpec
from therasim.context import SimContext
from therasim.contract import NodeSpec, Slot
from therasim.graphs import SessionGraphBuilder, preset
from therasim.graphs.session import initial_session_state, session_recursion_limit
from therasim.profiles import example_profiles
from therasim.providers import ModelPool
from therasim.testing import SchemaFakeChatModel
from therasim.traces import _after_turn, _before_turn


class _Store:
    """A memory store double: memory_recall only searches."""

    def search(self, client_id: str, role: str, query: str, k: int, where: Any = None) -> list[dict[str, Any]]:
        words = query.split()
        return [{"id": f"m{i}", "text": f"earlier: {w}", "session": 1, "kind": "fact", "score": round(1 / (i + 1), 3)} for i, w in enumerate(words[:k])]


def _strip(x: Any) -> Any:
    """The trace without wall-clock fields."""
    if isinstance(x, dict):
        return {k: _strip(v) for k, v in x.items() if k != "latency_s"}
    if isinstance(x, list):
        return [_strip(v) for v in x]
    return x


def _ctx(turns: int, store: Any = None) -> SimContext:
    return SimContext(models=ModelPool({"default": SchemaFakeChatModel()}), course=CourseSpec(max_turns=turns), memory=store)


def _cfg(tid: str, turns: int) -> dict[str, Any]:
    return {"configurable": {"thread_id": tid}, "recursion_limit": session_recursion_limit(turns)}


async def _run(b: SessionGraphBuilder, fold: bool, turns: int, session: int = 1, store: Any = None) -> tuple[dict[str, Any], Any, list[Any]]:
    saver = InMemorySaver()
    g = b.build(fold=fold).compile(checkpointer=saver)
    cfg = _cfg("t", turns)
    final = await g.ainvoke(initial_session_state(example_profiles()[0], session=session), config=cfg, context=_ctx(turns, store), durability="sync")
    return final, g, [s async for s in g.aget_state_history(cfg)]


@pytest.mark.parametrize("fold_calls", [False, True])
@pytest.mark.parametrize(("name", "session"), [("lean", 2), ("full", 1), ("minimal", 1)])
def test_folded_graph_same_trace_fewer_checkpoints(name: str, session: int, fold_calls: bool) -> None:
    turns = 3
    b = preset(name)
    b.fold_calls = fold_calls

    async def go() -> None:
        a, ga, ha = await _run(b, False, turns, session, _Store())
        f, gf, hf = await _run(b, True, turns, session, _Store())
        assert json.dumps(_strip(a), sort_keys=True) == json.dumps(_strip(f), sort_keys=True)
        if name == "lean":  # memory_recall ran (folded into the client's step) and its items were recorded
            assert a["transcript"][0]["recalled"] and f["transcript"][0]["recalled"] == a["transcript"][0]["recalled"]
        # unfolded: a step per node and record and termination (lean: client, memory_recall,
        # analyst, counselor, record, termination); folded per call: the model-calling nodes
        # (record and termination, and memory_recall, join the step before them); one superstep
        # per exchange: one step, or two in full (its crisis route cuts the exchange after risk_control)
        steps = {"lean": (6, 1 if fold_calls else 3), "full": (9, 2 if fold_calls else 6), "minimal": (4, 1 if fold_calls else 2)}[name]
        assert (len(ha) - 2, len(hf) - 2) == (steps[0] * turns, steps[1] * turns)  # input and start, then one checkpoint a step
        for t in range(1, turns + 1):  # inspect: the recorded state of each turn is the same
            sa, sf = await _after_turn(ga, "t", t), await _after_turn(gf, "t", t)
            ta = [x for x in sa.values["transcript"] if x["exchange"] == t - 1]
            tf = [x for x in sf.values["transcript"] if x["exchange"] == t - 1]
            assert _strip(ta) == _strip(tf) and len(tf) == 2
            # fork/replay start: the same state before each turn
            ba, bf = await _before_turn(ga, b, "t", t), await _before_turn(gf, b, "t", t)
            assert _strip(ba.values) == _strip(bf.values)

    asyncio.run(go())


def test_folded_graph_continues_checkpoints_of_an_unfolded_one() -> None:
    """A run paused (or killed) at a step that is folded now continues under the folded
    graph: the folded nodes are still in the graph on their own."""
    turns = 3
    b = preset("lean")

    async def straight() -> dict[str, Any]:
        return (await _run(b, False, turns, 2, _Store()))[0]

    want = asyncio.run(straight())
    for stop in ("memory_recall", "record", "termination"):

        async def go(stop: str = stop) -> dict[str, Any]:
            saver = InMemorySaver()
            cfg = _cfg(f"t-{stop}", turns)
            old = b.build(fold=False).compile(checkpointer=saver, interrupt_before=[stop])
            await old.ainvoke(initial_session_state(example_profiles()[0], session=2), config=cfg, context=_ctx(turns, _Store()))
            assert (await old.aget_state(cfg)).next == (stop,)
            new = b.compile(checkpointer=saver)
            return await new.ainvoke(None, config=cfg, context=_ctx(turns, _Store()))  # type: ignore[no-any-return]

        got = asyncio.run(go())
        assert _strip(got) == _strip(want), stop


def test_custom_fold_nodes_and_conditionals() -> None:
    seen: list[str] = []

    def tag(view: Any, ctx: Any) -> dict[str, Any]:
        seen.append(view["current"]["client_text"])  # sees the client's output of this step
        return {"current": {"tag": len(view["current"]["client_text"])}}

    tag_spec = NodeSpec("tag", tag, "counselor", reads=("client_text",), writes=(Slot("tag"),), fold=True)
    minimal = preset("minimal")
    minimal.fold_calls = False  # the per-call layout: only fold nodes join the step before them
    b = minimal.copy().add(tag_spec, after="client")
    assert b.groups() == [["client", "tag"], ["counselor", "record", "termination"]]
    # after a conditional edge nothing is folded; a route straight to record still works
    c = b.copy().add_conditional_edges("tag", lambda v: "skip" if v["exchange"] % 2 else "talk", {"skip": "record", "talk": "counselor"})
    assert c.groups() == [["client", "tag"], ["counselor", "record", "termination"]]
    d = minimal.copy().add(tag_spec, after="client").add_conditional_edges("client", lambda v: "t", {"t": "tag", "c": "counselor"})
    assert d.groups() == [["client"], ["tag"], ["counselor", "record", "termination"]]
    # replacing a fold node's function drops the fold (the new one may call a model)
    assert b.copy().replace_node("tag", tag).groups() == [["client"], ["tag"], ["counselor", "record", "termination"]]
    assert b.groups(fold=False) == [[n] for n in ("client", "tag", "counselor", "record", "termination")]
    # one superstep per exchange (the default): every node joins the one before it, up to a conditional edge
    one = [x.copy() for x in (b, c, d)]
    for x in one:
        x.fold_calls = True
    assert [x.groups() for x in one] == [
        [["client", "tag", "counselor", "record", "termination"]],
        [["client", "tag"], ["counselor", "record", "termination"]],
        [["client"], ["tag", "counselor", "record", "termination"]],
    ]

    async def go(builder: SessionGraphBuilder) -> list[dict[str, Any]]:
        out = []
        for fold in (False, True):
            seen.clear()
            final, _, _ = await _run(builder, fold, 4)
            out.append(_strip(final))
            assert len(seen) == 4
        return out

    for x, y in ((b, c), (one[0], one[1])):  # per call, then one superstep per exchange
        plain, folded = asyncio.run(go(x))
        assert plain == folded
        client = {t["exchange"]: len(t["text"]) for t in folded["transcript"] if t["speaker"] == "client"}
        assert {t["exchange"]: t.get("tag") for t in folded["transcript"] if t["speaker"] == "counselor"} == client
        plain, folded = asyncio.run(go(y))
        assert plain == folded
        assert [t["exchange"] for t in folded["transcript"] if t["speaker"] == "counselor"] == [0, 2]  # odd exchanges skip the counselor


class _WritingStore(_Store):
    """The double, remembering what was written (the course's ``remember`` step)."""

    def __init__(self) -> None:
        self.added: list[tuple[str, str, list[dict[str, Any]]]] = []

    def embed(self, texts: list[str]) -> None:
        return None

    def add(self, client_id: str, role: str, items: list[dict[str, Any]], embeddings: Any = None) -> list[str]:
        self.added.append((client_id, role, [dict(it) for it in items]))
        return [it["id"] for it in items]


@pytest.mark.parametrize("fold_calls", [False, True])
def test_folded_course_same_records_and_memory_writes(fold_calls: bool) -> None:
    """A course folded (``recall``, ``remember``, ``finish``; with ``fold_calls`` every
    step after ``events``, each model call journalled) files the unfolded course's
    records and writes the same memories, in fewer checkpoints."""
    from therasim.graphs.course import course_builder, initial_course_state, run_course

    spec = CourseSpec(preset="lean", sessions=2, max_turns=2, fold_calls=fold_calls)
    c = course_builder(spec)
    assert c.fold_calls is fold_calls
    if fold_calls:
        assert c.groups() == [["events"], [*c.order[1:], "finish"]]
    else:
        assert c.groups()[1:3] == [["measures", "recall"], ["session"]] and c.groups()[-1] == ["closing_measures", "finish"]
    assert c.groups(fold=False) == [[n] for n in (*c.order, "finish")]

    async def go(fold: bool) -> tuple[dict[str, Any], list[Any], int]:
        saver, store = InMemorySaver(), _WritingStore()
        c.fold = fold
        g = c.compile(checkpointer=saver)
        ctx = SimContext(models=ModelPool({"default": SchemaFakeChatModel()}), course=spec, memory=store)
        final = await run_course(g, initial_course_state(example_profiles()[0], run_id="r", sessions=2), ctx, thread_id="r/c/course")
        steps = len([s async for s in g.aget_state_history({"configurable": {"thread_id": "r/c/course"}})])
        return final, store.added, steps

    (a, wa, sa), (f, wf, sf) = asyncio.run(go(False)), asyncio.run(go(True))
    c.fold = True
    assert json.dumps(_strip(a), sort_keys=True, default=str) == json.dumps(_strip(f), sort_keys=True, default=str)
    assert wa == wf and wa  # the same memories written
    assert [r["session"] for r in f["records"]] == [1, 2] and f["records"][1]["recall"]
    # recall, remember and finish folded in each of the two sessions; with fold_calls
    # each iteration is two steps (events, the rest) instead of eleven
    assert sa - sf == (9 if fold_calls else 3) * 2
