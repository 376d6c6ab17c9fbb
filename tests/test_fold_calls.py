"""One superstep per exchange (``SessionGraphBuilder.fold_calls``): the model-call
nodes of an unconditional chain run in one LangGraph node, one checkpoint per
exchange, and each call's result is journalled (a pending write of the exchange's
checkpoint under a derived task id, awaited) before the next call starts. A run that
stops between two calls of an exchange resumes from the exchange's checkpoint and
replays the journalled members instead of calling the model again. Same transcript,
same per-node outputs and the same turn states as the default layout; runs made in
either layout continue in the other; fork and replay work per turn."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from graph_helpers import custom_minimal as _custom
from graph_helpers import strip_latency as _strip
from langgraph.checkpoint.memory import InMemorySaver

from therasim._internal.checkpoint import open_checkpointer
from therasim.config import CourseSpec
from therasim.context import SimContext
from therasim.contract import Slot
from therasim.graphs import executor, preset
from therasim.graphs.builder import FOLD_CALLS_ENV, JOURNAL, JOURNAL_SEP, SessionGraphBuilder
from therasim.graphs.session import initial_session_state, session_recursion_limit
from therasim.profiles import example_profiles
from therasim.providers import ModelPool
from therasim.testing import FunctionChatModel, SchemaFakeChatModel
from therasim.traces import _after_turn, _before_turn


def _builder(name: str, fold_calls: bool) -> SessionGraphBuilder:
    b = _custom() if name == "custom" else preset(name)
    b.fold_calls = fold_calls
    return b


class _Calls:
    """A model function answering as SchemaFakeChatModel, counting calls by node and
    exchange; ``crash_at`` (node, exchange) raises there once (a process stopping
    mid-exchange)."""

    def __init__(self, crash_at: tuple[str, int] | None = None) -> None:
        self.fake = SchemaFakeChatModel()
        self.calls: list[tuple[str, int]] = []
        self.crash_at = crash_at

    def __call__(self, messages: list[Any], kw: dict[str, Any], info: Any) -> str:
        key = (info.node, int(info.ids.get("exchange") or 0))
        if key == self.crash_at:
            self.crash_at = None
            raise RuntimeError("simulated crash")
        out = str(self.fake.invoke(messages, **{k: v for k, v in kw.items() if k != "stop"}).content)
        self.calls.append(key)
        return out


def _ctx(model: Any, turns: int) -> SimContext:
    return SimContext(models=ModelPool({"default": FunctionChatModel(fn=model)}), course=CourseSpec(max_turns=turns))


def _cfg(turns: int) -> dict[str, Any]:
    return {"configurable": {"thread_id": "t"}, "recursion_limit": session_recursion_limit(turns)}


async def _session(b: SessionGraphBuilder, saver: Any, model: Any, turns: int, lean: bool = True) -> dict[str, Any]:
    g = b.compile(checkpointer=saver)
    state = initial_session_state(example_profiles()[0])
    run = executor.ainvoke(g, state, _cfg(turns), context=_ctx(model, turns), durability="sync") if lean else g.ainvoke(state, _cfg(turns), context=_ctx(model, turns), durability="sync")
    return dict(await run)


@pytest.mark.parametrize(("name", "lean"), [("lean", True), ("full", True), ("minimal", True), ("custom", True), ("lean", False), ("custom", False)])
def test_one_checkpoint_per_exchange_same_trace(name: str, lean: bool, tmp_path: Path) -> None:
    turns = 3

    async def go() -> None:
        ma, mb = _Calls(), _Calls()
        a = await _session(_builder(name, False), InMemorySaver(), ma, turns, lean)
        async with open_checkpointer(str(tmp_path / "cp.sqlite")) as saver:
            b = _builder(name, True)
            f = await _session(b, saver, mb, turns, lean)
            g = b.compile(checkpointer=saver)
            hist = [s async for s in g.aget_state_history(_cfg(turns))]
            assert hist and all(s.values for s in hist[:-1])
            for t in range(1, turns + 1):  # the recorded turn and the state before each turn, as inspect/fork read them
                sf = await _after_turn(g, "t", t)
                assert [x for x in sf.values["transcript"] if x["exchange"] == t - 1] == [x for x in f["transcript"] if x["exchange"] == t - 1]
                bf = await _before_turn(g, b, "t", t)
                assert bf.values["exchange"] == t - 1 and len(bf.values["transcript"]) == 2 * (t - 1)
        assert json.dumps(_strip(a), sort_keys=True) == json.dumps(_strip(f), sort_keys=True)
        assert ma.calls == mb.calls  # the same calls, in the same order
        if name in ("lean", "minimal"):  # no conditional edge: one superstep per exchange (input, start, then one per exchange)
            assert len(hist) == 2 + turns
        with sqlite3.connect(tmp_path / "cp.sqlite") as c:
            rows = c.execute("SELECT DISTINCT task_id FROM writes WHERE channel = ?", (JOURNAL,)).fetchall()
        # a journal entry before each model call of a step but its first: lean 2 an exchange, minimal 1, full 2 + 2
        # (planner path), custom 1 on the odd exchange only (noter, then counselor)
        assert len(rows) == {"lean": 2 * turns, "minimal": turns, "full": 4 * turns, "custom": 1}[name]
        assert all(JOURNAL_SEP in r[0] for r in rows)

    asyncio.run(go())


@pytest.mark.parametrize(
    ("name", "crash", "first", "second"),
    [
        ("lean", ("counselor", 1), "lean", "lean"),
        ("lean", ("analyst", 2), "lean", "pregel"),
        ("lean", ("counselor", 0), "pregel", "lean"),
        ("minimal", ("counselor", 0), "lean", "lean"),
        ("full", ("risk_review", 1), "lean", "lean"),
    ],
)
def test_a_run_stopped_between_two_calls_resumes_without_repeating_them(name: str, crash: tuple[str, int], first: str, second: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The model fails at a call in the middle of an exchange (the calls before it in that
    exchange finished and were journalled); the session resumed from its checkpoint
    (another process: a fresh saver on the same file) calls the model for that call and the
    ones after it only, under either executor, and ends with the uninterrupted run's transcript."""
    turns = 3

    async def go() -> None:
        ref = _Calls()
        a = await _session(_builder(name, True), InMemorySaver(), ref, turns)
        m = _Calls(crash_at=crash)
        monkeypatch.setenv(executor.EXECUTOR_ENV, first)
        path = str(tmp_path / "cp.sqlite")
        async with open_checkpointer(path) as saver:
            with pytest.raises(RuntimeError, match="simulated crash"):
                await _session(_builder(name, True), saver, m, turns)
        monkeypatch.setenv(executor.EXECUTOR_ENV, second)
        async with open_checkpointer(path) as saver:
            g = _builder(name, True).compile(checkpointer=saver)
            out = await executor.ainvoke(g, None, _cfg(turns), context=_ctx(m, turns), durability="sync")
        assert m.calls == ref.calls  # every call once: none of the finished ones again
        assert json.dumps(_strip(a), sort_keys=True) == json.dumps(_strip(dict(out)), sort_keys=True)

    asyncio.run(go())


def test_a_run_made_in_the_old_layout_resumes_in_the_new_one_and_back(tmp_path: Path) -> None:
    """A session stopped mid-exchange under the default layout (one step per model call)
    continues with ``fold_calls`` (the rest of the exchange as one step), and one stopped
    with ``fold_calls`` continues under the default layout (the journal is not read there:
    the exchange's finished calls run again): both end with the uninterrupted transcript."""
    turns = 3

    async def go() -> None:
        ref = _Calls()
        a = await _session(_builder("lean", False), InMemorySaver(), ref, turns)
        for made, resumed in ((False, True), (True, False)):
            m = _Calls(crash_at=("counselor", 1))
            path = str(tmp_path / f"cp-{made}.sqlite")
            async with open_checkpointer(path) as saver:
                with pytest.raises(RuntimeError, match="simulated crash"):
                    await _session(_builder("lean", made), saver, m, turns)
            async with open_checkpointer(path) as saver:
                g = _builder("lean", resumed).compile(checkpointer=saver)
                out = await executor.ainvoke(g, None, _cfg(turns), context=_ctx(m, turns), durability="sync")
            assert json.dumps(_strip(a), sort_keys=True) == json.dumps(_strip(dict(out)), sort_keys=True), (made, resumed)
            if not made:  # the old layout had checkpointed the analyst: nothing repeats
                assert m.calls == ref.calls

    asyncio.run(go())


def test_journal_of_another_graph_is_refused(tmp_path: Path) -> None:
    """A journal written by a folded node with other members is not replayed into this one."""
    from therasim.errors import TherasimError
    from therasim.graphs.builder import _read_journal

    async def go() -> None:
        saver = InMemorySaver()
        cfg = {"configurable": {"thread_id": "t", "checkpoint_ns": "", "checkpoint_id": "1"}}
        from langgraph.checkpoint.base import empty_checkpoint

        cp = empty_checkpoint()
        cp["id"] = "1"
        await saver.aput({"configurable": {"thread_id": "t", "checkpoint_ns": ""}}, cp, {}, {})
        await saver.aput_writes(cfg, [(JOURNAL, {"member": 0, "node": "client", "update": {}, "interrupts": 0})], f"abc{JOURNAL_SEP}1")
        assert set(await _read_journal(saver, cfg, "abc", ("client", "counselor"))) == {0}
        assert await _read_journal(saver, cfg, "abd", ("client", "counselor")) == {}
        with pytest.raises(TherasimError, match="resume with the graph the run was made with"):
            await _read_journal(saver, cfg, "abc", ("memory_recall", "counselor"))

    asyncio.run(go())


def test_interrupts_in_a_folded_exchange(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two members of one folded exchange call ``interrupt()`` in turn: each resume gives
    each its own answer (the journalled member is replayed with its interrupt count), the
    client's model call is not repeated, and the transcript is the default layout's."""
    from langgraph.types import Command, interrupt

    def build(fold_calls: bool) -> SessionGraphBuilder:
        async def ask(view: Any, ctx: Any) -> dict[str, Any]:
            return {"current": {"approved": {"answer": interrupt("approve?")}}}

        async def ask2(view: Any, ctx: Any) -> dict[str, Any]:
            return {"current": {"checked": {"answer": interrupt("check?")}}}

        b = preset("minimal").copy()
        b.add_node("approve", ask, side="counselor", writes=(Slot("approved", turn="counselor"),), after="client")
        b.add_node("check", ask2, side="counselor", writes=(Slot("checked", turn="counselor"),), after="approve")
        b.fold_calls = fold_calls
        return b

    def run(fold_calls: bool, lean: bool) -> tuple[list[Any], Any, list[tuple[str, int]]]:
        m = _Calls()
        g = build(fold_calls).compile(checkpointer=InMemorySaver())
        cfg = {"configurable": {"thread_id": "t"}, "recursion_limit": 100}
        state = initial_session_state(example_profiles()[0])
        asked = []
        inv = executor.ainvoke if lean else (lambda g, i, c, **kw: g.ainvoke(i, c, **kw))
        out = asyncio.run(inv(g, state, cfg, context=_ctx(m, 1)))
        for answer in ("yes", "checked"):
            asked.append([i.value for i in out["__interrupt__"]])
            out = asyncio.run(inv(g, Command(resume=answer), cfg, context=_ctx(m, 1)))
        return asked, out, m.calls

    ref = run(False, False)
    assert ref[0] == [["approve?"], ["check?"]] and ref[1]["transcript"][1]["approved"] == {"answer": "yes"} and ref[1]["transcript"][1]["checked"] == {"answer": "checked"}
    for lean in (True, False):
        got = run(True, lean)
        assert got[0] == ref[0] and _strip(got[1]) == _strip(ref[1]), lean
        assert got[2] == ref[2] == [("client", 0), ("counselor", 0)], lean


def test_fold_calls_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from therasim.errors import TherasimError

    monkeypatch.setenv(FOLD_CALLS_ENV, "1")
    assert SessionGraphBuilder().fold_calls and preset("lean").fold_calls and preset("lean").copy().fold_calls
    monkeypatch.setenv(FOLD_CALLS_ENV, "0")
    assert not preset("lean").fold_calls
    monkeypatch.setenv(FOLD_CALLS_ENV, "maybe")
    with pytest.raises(TherasimError, match=FOLD_CALLS_ENV):
        preset("lean")


def test_fold_calls_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """``course.fold_calls`` sets the run's session builder (course_builder, and the
    builder replay/fork/inspect make from a manifest); unset, the environment decides."""
    from therasim.graphs.course import course_builder
    from therasim.traces import _session_builder

    monkeypatch.delenv(FOLD_CALLS_ENV, raising=False)
    assert course_builder(CourseSpec(preset="lean")).session.fold_calls  # the default: one superstep per exchange
    assert not course_builder(CourseSpec(preset="lean", fold_calls=False)).session.fold_calls
    mine = preset("minimal")
    b = course_builder(CourseSpec(fold_calls=False), mine)
    assert not b.session.fold_calls and mine.fold_calls and b.session.order == mine.order  # the caller's builder is not changed
    monkeypatch.setenv(FOLD_CALLS_ENV, "0")
    assert not course_builder(CourseSpec(preset="lean")).session.fold_calls
    assert course_builder(CourseSpec(preset="lean", fold_calls=True)).session.fold_calls
    man = {"config": {"course": {"preset": "lean", "fold_calls": True}}}
    assert _session_builder(man).fold_calls
    monkeypatch.delenv(FOLD_CALLS_ENV)
    assert not _session_builder({"config": {"course": {"preset": "lean", "fold_calls": False}}}).fold_calls


def test_the_layout_a_run_is_made_in_goes_into_its_manifest(monkeypatch, tmp_path: Path) -> None:
    """Review of session 14: with THERASIM_FOLD_CALLS=1 and the config unset the manifest
    said ``fold_calls: null``, so a resume, inspect or replay from a shell without the
    variable built the default layout (and repeated the interrupted exchange's calls)."""
    from therasim.config import RunConfig
    from therasim.errors import ConfigError
    from therasim.runner import start_run
    from therasim.traces import _session_builder

    monkeypatch.setenv(FOLD_CALLS_ENV, "1")
    rd, _ = start_run(RunConfig(), out=tmp_path / "on")
    man = json.loads((rd.root / "manifest.json").read_text())
    assert man["config"]["course"]["fold_calls"] is True
    monkeypatch.delenv(FOLD_CALLS_ENV)
    assert _session_builder(man).fold_calls  # rebuilt in the run's layout without the variable
    rd, _ = start_run(RunConfig(), out=tmp_path / "default")
    assert json.loads((rd.root / "manifest.json").read_text())["config"]["course"]["fold_calls"] is True
    monkeypatch.setenv(FOLD_CALLS_ENV, "0")
    rd, _ = start_run(RunConfig(), out=tmp_path / "off")
    assert json.loads((rd.root / "manifest.json").read_text())["config"]["course"]["fold_calls"] is False
    monkeypatch.delenv(FOLD_CALLS_ENV)
    assert not _session_builder(json.loads((rd.root / "manifest.json").read_text())).fold_calls
    mine = preset("lean")
    mine.fold_calls = False
    rd, _ = start_run(RunConfig(), out=tmp_path / "builder", session_builder=mine)
    assert json.loads((rd.root / "manifest.json").read_text())["config"]["course"]["fold_calls"] is False
    monkeypatch.setenv(FOLD_CALLS_ENV, "maybe")
    with pytest.raises(ConfigError, match="THERASIM_FOLD_CALLS='maybe'") as e:
        start_run(RunConfig(), out=tmp_path / "bad")
    assert "course.preset" not in str(e.value)
    assert not (tmp_path / "bad").exists()


def test_a_manifest_without_the_layout_reads_as_the_per_call_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run made before ``course.fold_calls`` was recorded (session 14 of #17) was made
    in the per-call layout: its manifest reads as ``fold_calls: false``, so resume,
    inspect, replay and fork build that layout and not today's default."""
    from therasim._internal.rundir import RunDir
    from therasim.config import RunConfig
    from therasim.runner import start_run
    from therasim.traces import _session_builder

    monkeypatch.delenv(FOLD_CALLS_ENV, raising=False)
    rd, _ = start_run(RunConfig(), out=tmp_path)
    man = json.loads(rd.manifest_path.read_text())
    del man["config"]["course"]["fold_calls"]
    rd.manifest_path.write_text(json.dumps(man))
    read = RunDir(rd.root).manifest()
    assert read["config"]["course"]["fold_calls"] is False
    assert not _session_builder(read).fold_calls and preset("lean").fold_calls


class _Heard:
    """A callback handler: the chain runs it sees, and the ``langgraph_node`` each chat
    model call carries beside the node its ``therasim:node:`` tag names."""

    def __init__(self) -> None:
        from langchain_core.callbacks import AsyncCallbackHandler

        heard = self

        class H(AsyncCallbackHandler):
            async def on_chain_start(self, serialized: Any, inputs: Any, *, name: str | None = None, **kw: Any) -> None:
                heard.chains.append(str(name))

            async def on_chat_model_start(self, serialized: Any, messages: Any, *, tags: list[str] | None = None, metadata: dict[str, Any] | None = None, **kw: Any) -> None:
                node = next(t.split(":", 2)[2] for t in tags or [] if t.startswith("therasim:node:"))
                heard.models.append(((metadata or {}).get("langgraph_node"), node))

        self.chains: list[str] = []
        self.models: list[tuple[Any, str]] = []
        self.handler = H()


@pytest.mark.parametrize("fold_calls", [True, False])
@pytest.mark.parametrize("name", ["lean", "full"])
def test_a_listener_sees_each_member_of_a_folded_exchange_as_its_node(name: str, fold_calls: bool) -> None:
    """With a callback handler (a tracer, ``stream_mode="messages"``) each member of a
    folded node runs as a callback run named after it, and its model calls carry its
    own name as ``langgraph_node``: the counselor's call is ``counselor`` in both
    layouts, not the exchange's first node."""
    turns = 2
    h = _Heard()
    g = _builder(name, fold_calls).compile(checkpointer=InMemorySaver())
    cfg = {**_cfg(turns), "callbacks": [h.handler]}
    out = asyncio.run(g.ainvoke(initial_session_state(example_profiles()[0]), cfg, context=_ctx(_Calls(), turns), durability="sync"))
    assert out["ended"] and h.models
    assert all(meta == node for meta, node in h.models), h.models
    nodes = {node for _, node in h.models}
    assert {"client", "counselor"} <= nodes
    for node in (*nodes, "record", "termination"):
        assert node in h.chains, (node, h.chains)


@pytest.mark.parametrize("fold_calls", [True, False])
def test_streamed_speech_names_each_speaker(fold_calls: bool) -> None:
    """``therasim.streaming.stream_session`` (what ``therasim session --stream`` prints)
    names the client's and the counselor's speech after each, in both layouts."""
    from therasim.streaming import stream_session

    turns = 2
    g = _builder("minimal", fold_calls).compile()
    ctx = _ctx(_Calls(), turns)

    async def go() -> tuple[list[tuple[str, str]], dict[str, Any]]:
        pieces: list[tuple[str, str]] = []
        final: dict[str, Any] = {}
        async for kind, payload in stream_session(g, initial_session_state(example_profiles()[0]), ctx):
            if kind == "speech":
                pieces.append(payload)
            elif kind == "final":
                final = payload
        return pieces, final

    pieces, final = asyncio.run(go())
    speakers = [n for i, (n, _) in enumerate(pieces) if i == 0 or pieces[i - 1][0] != n]
    assert speakers == ["client", "counselor"] * turns
    said = {n: "".join(t for m, t in pieces if m == n) for n in ("client", "counselor")}
    assert said == {s: "".join(t["text"] for t in final["transcript"] if t["speaker"] == s) for s in ("client", "counselor")}
