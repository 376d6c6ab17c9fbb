"""Nodes run without a callback run when nothing listens, and the loop's router reads
one channel: same states, same checkpoints as LangGraph's traced sequence; with a
callback handler, every node's run is still reported."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from graph_helpers import strip_latency as _strip
from langchain_core.callbacks import AsyncCallbackHandler
from langgraph.checkpoint.memory import InMemorySaver

from therasim.config import CourseSpec
from therasim.context import SimContext
from therasim.graphs import preset
from therasim.graphs.builder import _Ended, untraced
from therasim.graphs.session import initial_session_state, session_recursion_limit
from therasim.profiles import example_profiles
from therasim.providers import ModelPool
from therasim.testing import SchemaFakeChatModel


def _ctx(turns: int) -> SimContext:
    return SimContext(models=ModelPool({"default": SchemaFakeChatModel()}), course=CourseSpec(max_turns=turns))


class _Chains(AsyncCallbackHandler):
    def __init__(self) -> None:
        self.started: list[str] = []

    async def on_chain_start(self, serialized: Any, inputs: Any, *, name: str | None = None, **kw: Any) -> None:
        self.started.append(str(name))


async def _run(g: Any, turns: int, callbacks: list[Any] | None = None) -> tuple[dict[str, Any], list[Any]]:
    cfg: dict[str, Any] = {"configurable": {"thread_id": "t"}, "recursion_limit": session_recursion_limit(turns)}
    if callbacks:
        cfg["callbacks"] = callbacks
    final = await g.ainvoke(initial_session_state(example_profiles()[0]), config=cfg, context=_ctx(turns), durability="sync")
    return final, [s async for s in g.aget_state_history({"configurable": {"thread_id": "t"}})]


def _shape(history: list[Any]) -> list[tuple[Any, ...]]:
    """Each checkpoint as what a reader sees of it: values, next nodes, step, source, writes."""
    return [(_strip(s.values), s.next, s.metadata.get("step"), s.metadata.get("source"), sorted(s.config["configurable"]), [t.name for t in s.tasks]) for s in history]


@pytest.mark.parametrize("fold_calls", ["1", "0"])  # one superstep per exchange (the default), per model call
@pytest.mark.parametrize("name", ["lean", "full", "minimal"])
def test_untraced_nodes_same_states_and_checkpoints(name: str, fold_calls: str, monkeypatch: pytest.MonkeyPatch) -> None:
    turns = 2
    monkeypatch.setenv("THERASIM_FOLD_CALLS", fold_calls)
    quiet = preset(name).compile(checkpointer=InMemorySaver())
    monkeypatch.setenv("THERASIM_TRACED_NODES", "1")
    traced = preset(name).compile(checkpointer=InMemorySaver())
    seqs = lambda g: {type(pn.node).__name__ for pn in g.nodes.values()}  # noqa: E731
    assert "UntracedSeq" in seqs(quiet) and "UntracedSeq" not in seqs(traced)
    a, ha = asyncio.run(_run(quiet, turns))
    b, hb = asyncio.run(_run(traced, turns))
    assert _strip(a) == _strip(b) and len(a["transcript"]) == 2 * turns
    assert _shape(ha) == _shape(hb)


@pytest.mark.parametrize("fold_calls", ["1", "0"])
def test_a_callback_handler_still_sees_every_node(fold_calls: str, monkeypatch: pytest.MonkeyPatch) -> None:
    turns = 1
    monkeypatch.setenv("THERASIM_FOLD_CALLS", fold_calls)
    quiet, traced = preset("lean").compile(checkpointer=InMemorySaver()), None
    h = _Chains()
    final, _ = asyncio.run(_run(quiet, turns, callbacks=[h]))
    assert final["ended"]
    for node in ("client", "memory_recall", "analyst", "counselor", "record", "termination"):
        assert node in h.started, h.started  # the traced sequence ran: the handler saw the node (a folded member as its own run)
    del traced


def test_untraced_node_sees_its_config() -> None:
    """A node reading LangGraph's config (get_config) finds its task's config, as in
    LangGraph's own sequence."""
    from langgraph.config import get_config
    from langgraph.graph import START, StateGraph
    from typing_extensions import TypedDict

    class S(TypedDict, total=False):
        seen: str

    async def node(state: S) -> S:
        return {"seen": str(get_config()["configurable"].get("thread_id"))}

    g = StateGraph(S)
    g.add_node("n", node)
    g.add_edge(START, "n")
    c = untraced(g.compile(checkpointer=InMemorySaver()))
    out = asyncio.run(c.ainvoke({}, {"configurable": {"thread_id": "abc"}}))
    assert out == {"seen": "abc"}


def test_loop_router_reads_only_ended() -> None:
    g = preset("lean").build()
    (spec,) = g.branches["termination"].values()
    assert spec.input_schema is _Ended and set(_Ended.__annotations__) == {"ended"}
